"""One training step on one device equals the step on two MirroredStrategy replicas.

The comparison runs in one subprocess (``tests/distribution_check.py``): it configures two
logical CPU devices, which TensorFlow allows only before it initialises its devices, so the rest
of the suite keeps its single device. Every case starts from the same weights and takes one SGD
step on the same 128-example batch of the bundled digits, ``jit_compile=False``: under XLA,
``MirroredStrategy`` on logical CPU devices fails even for a plain ``Dense`` model (a TensorFlow
limitation, not ours), so the distributed XLA path is not tested here.

Bound: ``max |w_1 - w_2| <= 1e-5 * max(1, max |update|)``. Both runs compute the same float32
sums in a different order (two half-batch sums plus an all-reduce), which moves a weight by a few
ulps of the update (measured: at most 2.4e-7 on updates of 5e-2); a wrong replica treatment moves
it by a visible fraction of the update (before the fix: 1.7e-2 on 5.1e-2 for VariationalSoftmax,
2.5e-3 on 8.2e-3 for EntanglementModel).

Noise: the latent heads' training noise is drawn for the global batch on every replica and sliced
to the replica's rows (``keras_vc._distribute.standard_normal_rows``), so the comparison runs with
the noise on, Gaussian posteriors and the discriminator's prior samples included.

JAX (``tests/distribution_check_jax.py``, one subprocess with ``KERAS_BACKEND=jax`` and
``XLA_FLAGS=--xla_force_host_platform_device_count=2``): the same cases and bound under
``keras.distribution.DataParallel`` over the two host devices (variables replicated, the batch
sharded), compiled with XLA. ``DataParallel`` compiles one program over the global batch, so
``keras.random`` draws the same noise as on one device: the noise is on there too.

The subprocesses choose their own backend, so they run once, in the TensorFlow run of the suite.
Set ``KERAS_VC_DISTRIBUTION_REPORT=PATH`` to get the measured figures as JSON (``PATH.tf.json``,
``PATH.jax.json``); ``pytest -s`` prints them too.
"""

import importlib.util
import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from keras_vc import _distribute
from keras_vc.ops import gaussian

pytestmark = pytest.mark.tensorflow_only("tf.distribute.MirroredStrategy on logical CPU devices")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CASES = ("dense", "dismax", "isomax_plus", "variational_gaussian", "variational_deterministic",
         "bottleneck", "variational_head", "entanglement")
RELATIVE_TOLERANCE = 1e-5


JAX_CASES = CASES
SUBPROCESS_TIMEOUT_S = 900

only_once = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="the subprocess chooses its own backend; it runs in the TensorFlow run of the suite")


def run_check(script, cases, backend, extra_env=None):
    completed = subprocess.run(
        [sys.executable, os.path.join(ROOT, "tests", script), *cases],
        cwd=ROOT, capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT_S,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "KERAS_BACKEND": backend,
             **(extra_env or {})})
    assert completed.returncode == 0, completed.stderr[-4000:]
    report = json.loads(completed.stdout.strip().splitlines()[-1])
    figures = {case: result for case, result in report["steps"].items()}
    print(f"\n{backend} one device vs 2 replicas:", json.dumps(figures, indent=1))
    if os.environ.get("KERAS_VC_DISTRIBUTION_REPORT"):
        suffix = {"tensorflow": "tf", "jax": "jax"}[backend]
        with open(f"{os.environ['KERAS_VC_DISTRIBUTION_REPORT']}.{suffix}.json", "w") as f:
            json.dump({"steps": figures}, f, indent=1)
    return report


@pytest.fixture(scope="module")
def report():
    return run_check("distribution_check.py", CASES, "tensorflow")


@pytest.fixture(scope="module")
def jax_report():
    if importlib.util.find_spec("jax") is None:
        pytest.skip("JAX is not installed")
    return run_check("distribution_check_jax.py", JAX_CASES, "jax",
                     {"XLA_FLAGS": "--xla_force_host_platform_device_count=2"})


def check_step(result):
    assert "error" not in result, result["error"]
    assert result["max_update"] > 1e-4  # the step moved the weights
    bound = RELATIVE_TOLERANCE * max(1.0, result["max_update"])
    assert result["max_difference"] <= bound, result
    # EntanglementModel's inverse temperatures take their own step (0 for the other cases).
    assert result["max_variable_difference"] <= RELATIVE_TOLERANCE, result


@only_once
@pytest.mark.parametrize("case", CASES)
def test_one_step_is_the_same_on_one_device_and_two_replicas(report, case):
    check_step(report["steps"][case])


@only_once
@pytest.mark.parametrize("case", JAX_CASES)
def test_one_step_is_the_same_on_one_jax_device_and_data_parallel(jax_report, case):
    assert jax_report["devices"] == 2
    result = jax_report["steps"][case]
    check_step(result)
    # The distributed run really was distributed: the variables lived on both devices.
    assert result["variable_devices"] == 2, result


def numpy_ece(probabilities, labels, num_bins):
    """Equal-width bins (lo, hi], the first [0, 1/M]: sum_b n_b / n |conf_b - acc_b|."""
    confidences = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == labels
    index = np.clip(np.ceil(confidences * num_bins).astype(int) - 1, 0, num_bins - 1)
    total = 0.0
    for b in range(num_bins):
        rows = index == b
        if rows.any():
            total += rows.mean() * abs(confidences[rows].mean() - correct[rows].mean())
    return total


def check_streaming_metrics(metrics):
    logits = np.asarray(metrics["logits"], dtype=np.float64)
    labels = np.asarray(metrics["labels"])
    probabilities = np.exp(logits - logits.max(axis=1, keepdims=True))
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    brier = np.mean(np.sum((probabilities - np.eye(logits.shape[1])[labels]) ** 2, axis=1))
    assert metrics["brier"] == pytest.approx(brier, abs=1e-5)
    ece = numpy_ece(probabilities, labels, metrics["num_bins"])
    assert ece > 0.0
    assert metrics["ece"] == pytest.approx(ece, abs=1e-5)


@only_once
def test_streaming_metrics_aggregate_across_replicas(report):
    check_streaming_metrics(report["metrics"])


@only_once
def test_streaming_metrics_aggregate_across_jax_devices(jax_report):
    metrics = jax_report["metrics"]
    assert "error" not in metrics, metrics["error"]
    check_streaming_metrics(metrics)


def test_helpers_are_the_identity_outside_a_strategy():
    assert _distribute.num_replicas() == 1
    assert _distribute.replica_context() is None
    value = np.arange(6.0, dtype="float32").reshape(3, 2)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(_distribute.all_gather(value)),
                                  value)
    rows = _distribute.standard_normal_rows((2, 3, 4), keras.random.SeedGenerator(5), axis=1)
    draws = gaussian.standard_normal((2, 3, 4), keras.random.SeedGenerator(5))
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(rows),
                                  keras.ops.convert_to_numpy(draws))
