"""What a ``keras-vc compare`` run measures: datasets' protocols, the plan, methods and tasks.

A run is a list of :class:`Task` objects (dataset, seed, config), each training every method in
order; the :class:`Plan` says which configs exist besides the main (``full``) models and how much
is evaluated on them, and :data:`QUICK_PLAN` is the ``--quick`` plan.
"""

import dataclasses
from typing import Optional

from keras_vc import _validation
from keras_vc.benchmark import evaluation
from keras_vc.benchmark import registry
from keras_vc.benchmark import trainers
from keras_vc.robustness import corruptions as corruptions_lib

DEFAULT_DATASETS = ("mnist1d", "digits")
BASELINE = registry.BASELINE


@dataclasses.dataclass(frozen=True)
class DatasetSettings:
    """Per-dataset settings: the protocol every method of that dataset shares, and whether
    the default run trains its open-set models (``Plan.open_set`` None; ``--open-set`` trains
    them on every dataset, ``--no-open-set`` on none)."""

    epochs: int
    batch_size: int = 64
    learning_rate: float = 1e-3
    optimizer: str = "adam"
    open_set: bool = True

    def protocol(self, epochs=None):
        return trainers.Protocol(epochs=epochs or self.epochs, batch_size=self.batch_size,
                                    learning_rate=self.learning_rate, optimizer=self.optimizer)


# The default run must fit in 10 minutes on 2 CPU cores for every method (see the timing notes
# in the report), install included. Digits is there for the far-OOD check (DATASET_NOTES): its
# open-set models (a quarter of the default run's models) are left to `--open-set`, and 15 epochs
# bring its MLP near its ceiling; MNIST-1D, the main table, keeps its open-set models and trains
# 25 epochs (30 made `make demo` 10.9 min from a fresh clone; `--epochs N` sets any count).
DATASET_SETTINGS = {
    "mnist1d": DatasetSettings(epochs=25),
    "digits": DatasetSettings(epochs=15, open_set=False),
}
OTHER_DATASET_SETTINGS = DatasetSettings(epochs=30)

DATASET_NOTES = {
    "digits": (
        "Digits is too easy for calibration claims: accuracy is near its ceiling for every head "
        "(see the table), and with 360 test samples its ECE is noisy (small differences between "
        "heads do not resolve). It is here for the far-OOD check (photo patches); read "
        "calibration on MNIST-1D."
    ),
    "mnist1d": (
        "MNIST-1D with the small 1-D CNN is the main calibration and OOD table. Softmax's "
        "uncalibrated ECE depends on the epoch count, which is why it is fixed for every method."
    ),
}


# The calibrators of the default run: all but matrix and Dirichlet scaling, whose unpenalised
# fits cost more than the rest of a model's evaluation (``--calibrators all`` adds them).
DEFAULT_CALIBRATORS = ("temperature", "vector", "histogram", "isotonic")


@dataclasses.dataclass(frozen=True)
class Plan:
    """What is measured besides the main table, and how much of it (the run-time knobs).

    Attributes:
        open_set: train the open-set models (first 60% of the classes; the rest is near-OOD):
            True on every dataset with at least 3 classes, False on none, None (default) on
            the datasets whose :class:`DatasetSettings` say so (every dataset but digits).
        low_data_fractions: training fractions of the low-data models (empty: none).
        robustness: evaluate the full models under attacks and corruptions.
        robustness_samples: size of the fixed, stratified test subset on which attacks and
            corruptions are evaluated (all of the test split when it is smaller).
        attack_epsilons: L-infinity budgets of FGSM and PGD relative to the input range width.
        pgd_steps: PGD iterations (step size ``2.5 eps / steps``, random start).
        corruption_severities: severities (1-5) of every applicable corruption.
        ood_samples: far-OOD samples per set (default: as many as test samples).
        alphas: miscoverage levels of the conformal prediction sets (see
            :mod:`keras_vc.benchmark.conformal_eval`).
        calibrators: post-hoc calibrators fitted on the full models (keys of
            ``evaluation.CALIBRATORS``; default :data:`DEFAULT_CALIBRATORS`). Matrix and
            Dirichlet scaling are the dear ones (their unpenalised fits run to the iteration
            cap: about 3 s of CPU per MNIST-1D model, ``sets_calibrators_cpu_seconds`` in the
            report).

    The defaults keep ``make demo`` within its 10 minutes on 2 CPU cores (the README gives the
    measured time): no low-data models (``--low-data 0.1`` adds them), no open-set models on
    digits (``--open-set`` adds them), neither matrix nor Dirichlet scaling (``--calibrators
    all`` adds them) and 300 robustness samples.
    """

    open_set: Optional[bool] = None
    low_data_fractions: tuple = ()
    robustness: bool = True
    robustness_samples: int = 300
    attack_epsilons: tuple = (0.01, 0.02, 0.05)
    pgd_steps: int = 10
    corruption_severities: tuple = (1, 2, 3, 4, 5)
    ood_samples: Optional[int] = None
    alphas: tuple = (0.1,)
    calibrators: tuple = DEFAULT_CALIBRATORS

    def __post_init__(self):
        if self.open_set is not None and not isinstance(self.open_set, bool):
            raise ValueError(f"`open_set` must be True, False or None, got {self.open_set!r}.")
        if not isinstance(self.robustness, bool):
            raise ValueError(f"`robustness` must be True or False, got {self.robustness!r}.")
        for f in self.low_data_fractions:
            _validation.check_float(f, "low_data_fractions", 0.0, 1.0, strict_minimum=True)
        _validation.check_int(self.robustness_samples, "robustness_samples", minimum=1)
        for e in self.attack_epsilons:
            _validation.check_float(e, "attack_epsilons", minimum=0.0, maximum=1.0)
        _validation.check_int(self.pgd_steps, "pgd_steps", minimum=1)
        for s in self.corruption_severities:
            _validation.check_int(s, "corruption_severities", minimum=1)
            if s > corruptions_lib.NUM_SEVERITIES:
                raise ValueError(f"`corruption_severities` must lie in 1-5, got {s}.")
        if self.ood_samples is not None:
            _validation.check_int(self.ood_samples, "ood_samples", minimum=1)
        for a in self.alphas:
            _validation.check_float(a, "alphas", 0.0, 1.0, strict_minimum=True)
            if a >= 1.0:
                raise ValueError(f"`alphas` must lie in (0, 1), got {a}.")
        for name in self.calibrators:
            _validation.check_choice(name, "calibrators", tuple(evaluation.CALIBRATORS))
        if not self.alphas or len(set(self.alphas)) != len(self.alphas):
            raise ValueError(f"`alphas` must be distinct levels in (0, 1), got {self.alphas!r}.")

    def configs(self, num_classes, dataset_open_set=True):
        """The configs of a dataset with ``num_classes`` classes whose
        :class:`DatasetSettings` ask (``dataset_open_set``) for open-set models or not."""
        configs = ["full"]
        open_set = dataset_open_set if self.open_set is None else self.open_set
        if open_set and num_classes >= 3:
            configs.append("open_set")
        configs += [low_data_config(f) for f in self.low_data_fractions]
        return configs


def low_data_config(fraction):
    return f"low_data_{fraction:g}"


def config_fraction(config):
    return float(config[len("low_data_"):])


@dataclasses.dataclass(frozen=True)
class Task:
    """One unit of work: every method of one dataset, seed and config."""

    dataset: str
    seed: int
    config: str
    methods: tuple
    protocol: trainers.Protocol
    plan: Plan
    keep_plot_data: bool



# --quick (with one seed and QUICK_EPOCHS, which the command sets): the main models only, without attacks and
# corruptions, and only the cheap post-hoc calibrators; a check of a set-up, not a result.
QUICK_PLAN = Plan(open_set=False, low_data_fractions=(), robustness=False,
                  calibrators=DEFAULT_CALIBRATORS)
# --quick also trains every model for this many epochs (unless --epochs is given): the point is
# that every method, its evaluation and the report run on the user's data, not the figures.
QUICK_EPOCHS = 5


def ordered_methods(names=None):
    """Method names in report order, with every method they require added (before them).

    Args:
        names: requested names (default: every method of the registry that ``compare``
            trains).

    Returns:
        A list of names: the registry's order (the softmax baseline first), then any other
        method alphabetically; requirements always come before the methods needing them.

    Raises:
        ValueError: an unknown name (a renamed one says its new name), or a requirement that
            is not registered.
    """
    methods = registry.compare_methods()
    names = list(methods) if names is None else list(names)
    message = registry.unknown_names(names, list(methods), "method")
    if message:
        raise ValueError(f"`methods`: {message}")
    wanted = set()

    def add(name, chain=()):
        if name in chain:
            raise ValueError(f"methods require each other in a cycle: {chain + (name,)}")
        if name not in methods:
            raise ValueError(f"method {chain[-1]!r} requires {name!r}, which is not registered")
        for requirement in methods[name].requires:
            add(requirement, chain + (name,))
        wanted.add(name)

    for name in names:
        add(name)
    order = list(methods)
    result = []

    def place(name):
        for requirement in methods[name].requires:
            place(requirement)
        if name not in result:
            result.append(name)

    for name in sorted(wanted, key=lambda n: (order.index(n), n)):
        place(name)
    return result
