"""How `make test` spreads the suite over its two pytest-xdist workers: longest work first.

Loaded with ``-p tests.xdist_schedule`` next to ``--dist loadfile``. Plain ``loadfile`` keeps
each file on one worker (its module fixtures are built once) and hands the files out in order
of their number of tests, so a file with few but slow tests (the compare run, the distribution
subprocesses, the layer contract) can start last and leave one worker running alone at the end.
This scheduler keeps the file as the unit, with two changes:

- the next unit a worker gets is the one expected to take longest (``SECONDS``, measured on the
  TensorFlow run; a file not listed counts as 0 and keeps xdist's order), so the short files
  fill the end of the run on both workers;
- files whose tests share no module fixture and each take tens of seconds (``PER_TEST``) are
  split into one unit per test, and ``tests/test_distribution.py`` into its TensorFlow and its
  JAX half (one module fixture, one subprocess each), so that no single unit is much longer
  than the others.

Which worker runs a test changes nothing in what the test checks; only the wall time does.
"""

import os

import pytest
from xdist.scheduler import LoadFileScheduling

# Files whose every test runs on its own (no module or session fixture of their own).
PER_TEST = ("tests/test_layer_contract.py", "tests/test_readme.py", "tests/test_tutorials.py")
# Rough seconds of the slow files (or of one unit) on one CI worker, per backend (--durations of
# `make test`); only the order matters.
SECONDS = {
    "tensorflow": {
        "tests/test_compare.py": 230,
        "tests/test_layer_contract.py": 190,
        "tests/test_readme.py::test_unmarked_blocks_run_in_order_in_one_namespace": 80,
        "tests/test_readme.py": 70,
        "tests/test_tutorials.py": 110,
        "tests/test_entanglement.py": 90,
        "tests/test_two_stage.py": 80,
        "tests/test_distribution.py": 110,
        "tests/test_export.py": 60,
        "tests/test_soft_nearest_neighbor.py": 55,
        "tests/test_silent_failures.py": 50,
        "tests/test_metrics.py": 45,
        "tests/test_variational_softmax.py": 40,
        "tests/test_speed.py": 40,
        "tests/test_reproducibility.py": 33,
        "tests/test_evaluate.py": 25,
        "tests/test_cli.py": 20,
    },
    "jax": {
        "tests/test_layer_contract.py": 110,
        "tests/test_entanglement.py": 60,
        "tests/test_distances.py": 45,
        "tests/test_two_stage.py": 40,
        "tests/test_soft_nearest_neighbor.py": 40,
        "tests/test_variational_softmax.py": 35,
        "tests/test_metrics.py": 30,
    },
}


def _file(nodeid):
    return nodeid.split("::", 1)[0]


class LongestFirst(LoadFileScheduling):
    """``loadfile`` that hands out the longest unit first and splits the files named above."""

    def __init__(self, config, log=None):
        super().__init__(config, log)
        self._seconds = SECONDS.get(os.environ.get("KERAS_BACKEND", "tensorflow"), {})
        self._tests_per_file = None

    def _split_scope(self, nodeid):
        path = _file(nodeid)
        if path in PER_TEST:
            return nodeid
        if path == "tests/test_distribution.py":
            return path + ("::jax" if "jax" in nodeid.split("::", 1)[-1] else "::tensorflow")
        return path

    def _expected_seconds(self, scope):
        """The unit's own seconds, or its file's shared among its units by their tests."""
        if scope in self._seconds:
            return self._seconds[scope]
        if self._tests_per_file is None:
            self._tests_per_file = {}
            for nodeid in self.collection:
                path = _file(nodeid)
                self._tests_per_file[path] = self._tests_per_file.get(path, 0) + 1
        path = _file(scope)
        seconds = self._seconds.get(path, 0)
        if not seconds:
            return 0
        return seconds * len(self.workqueue[scope]) / self._tests_per_file[path]

    def _assign_work_unit(self, node):
        longest = max(self.workqueue, key=self._expected_seconds)  # the first of equals
        self.workqueue.move_to_end(longest, last=False)
        super()._assign_work_unit(node)


@pytest.hookimpl(tryfirst=True)
def pytest_xdist_make_scheduler(config, log):
    if config.getvalue("dist") != "loadfile":
        return None
    return LongestFirst(config, log)
