"""The methods ``keras-vc compare`` trains, each under one fixed protocol.

A method turns a freshly built backbone (identical initial weights for every method of a seed)
into a trained classifier whose output is logits. Each method lives in its own module of this
package and registers itself with :func:`register` (every module here is imported by
:func:`discover`); the softmax baseline is the reference every other method is paired with (same
split, same backbone initialisation, same batch order).

Writing a method: build the model around ``backbone`` (already built, do not rebuild or
re-initialise it), compile it with ``**protocol.compile_options()`` and fit it on
``training_dataset(split.x_train, split.y_train, protocol.batch_size, seed)`` for
``protocol.epochs`` epochs, or simply call :func:`fit_classifier`. Models in ``context`` belong
to other methods and are evaluated already, but later methods may still read them: copy
weights rather than training them in place.
"""

import dataclasses
import importlib
import pkgutil
from typing import Callable, Optional

import keras


@dataclasses.dataclass(frozen=True)
class Protocol:
    """Training settings shared by every method of a run (stated in the report).

    Attributes:
        epochs: training epochs (no early stopping for any method).
        batch_size: mini-batch size.
        learning_rate: the optimizer's learning rate.
        optimizer: a Keras optimizer name.
        jit_compile: compile the training step with XLA. Off by default in the benchmark: on
            one CPU thread XLA compilation costs about 6-8 s per model and saves nothing per
            step on these small models (measured on the MNIST-1D CNN).
        steps_per_execution: training steps run per call of the compiled function. These
            models are so small that per-step dispatch dominates: 16 steps per call make an
            MNIST-1D CNN epoch about 40% faster, with exactly the same updates.
    """

    epochs: int = 30
    batch_size: int = 64
    learning_rate: float = 1e-3
    optimizer: str = "adam"
    jit_compile: bool = False
    steps_per_execution: int = 16

    def compile_options(self):
        """Keyword arguments of ``model.compile`` that every method should pass (speed only)."""
        return {"jit_compile": self.jit_compile, "steps_per_execution": self.steps_per_execution}

    def make_optimizer(self):
        return keras.optimizers.get({"class_name": self.optimizer,
                                     "config": {"learning_rate": self.learning_rate}})


@dataclasses.dataclass(frozen=True)
class Method:
    """A method of the comparison.

    Attributes:
        name: the command-line name.
        title: a human-readable name for tables.
        train: ``train(backbone, split, protocol, seed, context) -> keras.Model`` returning a
            trained model whose output is logits (what a user gets by default). ``context`` is a
            dict of the models already trained for this dataset, seed and config (all classes,
            open-set or low-data), keyed by method name (two-stage methods start from
            ``context["softmax"]``; list it in ``requires``).
        ood_score: name of the recommended OOD score; the score itself comes from
            ``keras_vc.scores.recommended(model)`` (the output layer's ``ood_score``) or, for a
            plain output, from ``keras_vc.scores.get(ood_score)``.
        note: which probabilities are scored, stated in the report.
        extra_scores: optional ``extra_scores(model, split) -> score_fn`` where
            ``score_fn(x) -> {score_name: scores}`` adds method-specific OOD scores (DkNN).
        requires: names of methods that must be trained first in the same seed.
    """

    name: str
    title: str
    train: Callable
    ood_score: str
    note: str = ""
    extra_scores: Optional[Callable] = None
    requires: tuple = ()


METHODS = {}


# The order of the report's tables: the baseline first, then the methods of the issue.
CANONICAL_ORDER = ("softmax", "isomax_plus", "dismax", "vc", "snnl", "tst", "vtst")


def register(method):
    """Adds a method to :data:`METHODS` (its module is imported by :func:`discover`)."""
    METHODS[method.name] = method
    return method


def discover():
    """Imports every module of this package, so that each registers its method."""
    for module in pkgutil.iter_modules(__path__):
        if not module.name.startswith("_"):
            importlib.import_module(f"{__name__}.{module.name}")
    return METHODS


def ordered(names=None):
    """Method names in report order, with every method they require added (before them).

    Args:
        names: requested names (default: every registered method).

    Returns:
        A list of registered names: ``softmax`` first, then the canonical order, then any
        other method alphabetically; requirements always come before the methods needing them.

    Raises:
        ValueError: an unknown name, or a requirement that is not registered.
    """
    discover()
    names = list(METHODS) if names is None else list(names)
    unknown = [n for n in names if n not in METHODS]
    if unknown:
        raise ValueError(f"unknown method(s) {unknown}; expected some of {sorted(METHODS)}")
    wanted = set()

    def add(name, chain=()):
        if name in chain:
            raise ValueError(f"methods require each other in a cycle: {chain + (name,)}")
        if name not in METHODS:
            raise ValueError(f"method {chain[-1]!r} requires {name!r}, which is not registered")
        for requirement in METHODS[name].requires:
            add(requirement, chain + (name,))
        wanted.add(name)

    for name in names:
        add(name)

    def rank(name):
        if name in CANONICAL_ORDER:
            return (CANONICAL_ORDER.index(name), name)
        return (len(CANONICAL_ORDER), name)

    result = []

    def place(name):
        for requirement in METHODS[name].requires:
            place(requirement)
        if name not in result:
            result.append(name)

    for name in sorted(wanted, key=rank):
        place(name)
    return result


def training_dataset(x, y, batch_size, seed=None):
    """A shuffled, batched ``tf.data.Dataset`` of ``(x, y)``, reshuffled every epoch.

    Fitting from a dataset built once costs far less than fitting from NumPy arrays, for which
    Keras rebuilds its input pipeline every epoch (about 40 ms per epoch on these small models,
    more than a whole epoch of digits). With a ``seed`` the batch order of every epoch is fixed
    by it, so the methods of one seed see the same batches.

    Args:
        x: inputs (n, ...), or a tuple/dict of input arrays.
        y: targets (n, ...).
        batch_size: batch size.
        seed: shuffle seed (None: TensorFlow's global seed).

    Returns:
        A ``tf.data.Dataset`` yielding ``(x_batch, y_batch)``.
    """
    import tensorflow as tf

    data = tf.data.Dataset.from_tensor_slices((x, y))
    n = int(data.cardinality())
    return data.shuffle(n, seed=seed, reshuffle_each_iteration=True).batch(batch_size)


def fit_classifier(model, split, protocol, loss, metrics=("accuracy",), seed=None):
    """Compiles and fits ``model`` on the split's training data under the protocol.

    Args:
        model: an unbuilt or built Keras model whose output is logits.
        split: a :class:`keras_vc.data.Split`.
        protocol: the :class:`Protocol` of the run.
        loss: a Keras loss.
        metrics: metrics to compile (reported as the final training figures).
        seed: seed of the batch order (pass the run's seed so that every method of a seed
            sees the same batches).

    Returns:
        The fitted model.
    """
    model.compile(optimizer=protocol.make_optimizer(), loss=loss, metrics=list(metrics),
                  **protocol.compile_options())
    model.fit(training_dataset(split.x_train, split.y_train, protocol.batch_size, seed),
              epochs=protocol.epochs, shuffle=False, verbose=0)  # shuffled by the dataset
    return model


from keras_vc.benchmark.methods import softmax  # noqa: E402,F401

discover()
