"""``keras-vc speed``: what every head costs in a training step, against a Dense + softmax head.

Two scopes, measured in one run:

- ``head``: the output layer alone on a feature vector, forward and backward (the step also
  back-propagates into the features, as inside a network), over a grid of (batch, feature
  dimension, classes);
- ``model``: a small ResNet (:func:`speed_models.small_resnet`) on 32x32x3 images with the head
  on top, at a few batch sizes.

Method. Each variant is built on a freshly initialised network (the same initial weights for
every variant), compiled with ``jit_compile=True`` (XLA) and the same SGD optimizer, and trained
on one fixed batch that already lives on the device. The first ``model.train_on_batch``
compiles the step Keras runs in ``fit``; then the timed steps are

- TensorFlow: ``model.train_on_batch`` (that compiled step plus Keras's per-call bookkeeping
  and a host synchronisation per step);
- JAX: Keras's ``train_step`` under ``jax.jit``, called back to back with the state kept on the
  device, one synchronisation per block (what ``fit`` runs; see :class:`_JaxLoop`).

Keras's per-step overhead on the same path (a one-weight model) is measured and stated. After a
warm-up (compilation, then ``warmup_steps`` more steps), the variants of one configuration take
turns: every repeat times one block of steps of every variant, in an order rotated from one
repeat to the next. A variant's figure is the median and the interquartile range of its
per-step times over the repeats; its ratio is the median (and IQR) of the paired ratios
variant / baseline of the same repeat, which cancels most of the drift of a shared machine.

Memory. ``state`` is the bytes of the variables (weights, optimizer slots, seed and metric
state), exact on every backend. ``step`` is the extra memory one training step needs on top of
it (activations kept for the backward pass, gradients, temporaries):

- TensorFlow: the device allocator's peak bytes in use during one step minus the bytes in use
  before it (``tf.config.experimental.get_memory_info``). On a CPU TensorFlow keeps these
  statistics only with its BFC allocator: the ``keras-vc speed`` command sets
  ``TF_CPU_ALLOCATOR_USE_BFC=1`` unless the variable is already set (TensorFlow reads it when
  it first allocates).
- JAX: the temporary buffer size XLA plans for the compiled step
  (``Compiled.memory_analysis().temp_size_in_bytes``), on any device; it is what the compiler
  allocates, not a reading of the allocator.

Adding a head is a few lines: a factory ``build(backbone, num_classes, seed) -> Built`` and a
:func:`register` call. A factory that needs a part of keras_vc that is not installed raises
:class:`NotAvailable`; the report then lists the variant with the reason instead of a figure.
"""

import dataclasses
import datetime
import gc
import importlib
import json
import math
import os
import platform
import time
from typing import Callable, Optional

import keras
import numpy as np

from keras_vc.benchmark import speed_models

BASELINE = "softmax"
SCOPES = ("head", "model")
IMAGE_SHAPE = (32, 32, 3)
SUPPORTED_BACKENDS = ("tensorflow", "jax")
BFC_VARIABLE = "TF_CPU_ALLOCATOR_USE_BFC"


# --------------------------------------------------------------------------------------------
# Variants


class NotAvailable(Exception):
    """Raised by a variant factory when what it needs is not in this installation."""


@dataclasses.dataclass(frozen=True)
class Built:
    """What a variant factory returns.

    Attributes:
        model: a ``keras.Model`` from the backbone's inputs to float32 logits (what a user
            trains and deploys).
        loss: the loss passed to ``compile`` (``None`` when the model adds its own losses).
        transform: optional ``transform(x, y, seed_generator) -> (x, y)`` applied to every
            training batch inside the compiled step (a data-dependent regulariser such as
            DisMax's fractional probability mixing), with a ``keras.random.SeedGenerator`` owned
            by the harness.
    """

    model: object
    loss: object = None
    transform: Optional[Callable] = None


@dataclasses.dataclass(frozen=True)
class Variant:
    """One head (or regulariser) configuration to measure.

    Attributes:
        name: the command-line name.
        title: a human-readable name for tables.
        build: ``build(backbone, num_classes, seed) -> Built``; ``backbone`` is a
            :class:`speed_models.Backbone` built for this variant alone.
        scopes: where the variant applies: ``"head"`` (on a feature vector) and/or ``"model"``
            (on the ResNet).
        note: a line for the report (what is measured, what differs from the method as
            published).
    """

    name: str
    title: str
    build: Callable
    scopes: tuple = SCOPES
    note: str = ""


VARIANTS = {}


def register(variant):
    """Adds ``variant`` to :data:`VARIANTS` (replacing one of the same name) and returns it."""
    if not isinstance(variant, Variant):
        raise ValueError(f"`variant` must be a speed.Variant, got {type(variant).__name__}.")
    unknown = [scope for scope in variant.scopes if scope not in SCOPES]
    if not variant.scopes or unknown:
        raise ValueError(f"`variant.scopes` must be a non-empty subset of {SCOPES}, "
                         f"got {variant.scopes}.")
    VARIANTS[variant.name] = variant
    return variant


def unregister(name):
    """Removes a variant from :data:`VARIANTS` (the baseline cannot be removed)."""
    if name == BASELINE:
        raise ValueError(f"`name`: the baseline {BASELINE!r} cannot be unregistered.")
    VARIANTS.pop(name, None)


def require(module, attribute):
    """Returns ``module.attribute``, or raises :class:`NotAvailable` saying what is missing."""
    try:
        found = importlib.import_module(module)
    except ImportError as error:
        raise NotAvailable(f"cannot import {module} ({error})") from error
    if not hasattr(found, attribute):
        raise NotAvailable(f"{module}.{attribute} does not exist in this version of keras_vc")
    return getattr(found, attribute)


def _attach(backbone, head):
    return keras.Model(backbone.inputs, head(backbone.features))


def _softmax(backbone, num_classes, seed):
    head = keras.layers.Dense(num_classes, dtype="float32", name="logits")
    return Built(_attach(backbone, head),
                 keras.losses.SparseCategoricalCrossentropy(from_logits=True))


def _distance_logits(mode, fpr=False):
    def build(backbone, num_classes, seed):
        layer = require("keras_vc.layers", "DistanceLogits")
        loss = require("keras_vc.losses", "EntropicCrossEntropy")
        transform = None
        if fpr:
            mix = require("keras_vc.augment", "fractional_probability_mix")

            def transform(images, labels, seed_generator):
                # A fresh stateless seed per step, drawn from the harness's seed generator.
                return mix(images, labels, num_classes, seed=seed_generator.next())

        return Built(_attach(backbone, layer(num_classes, mode=mode)), loss(), transform)

    return build


def _variational(consistency):
    def build(backbone, num_classes, seed):
        layer = require("keras_vc.layers", "VariationalSoftmax")
        loss = require("keras_vc.losses", "VariationalClassificationLoss")
        # consistency_weight=0 drops the consistency term and its discriminator.
        kwargs = {} if consistency else {"consistency_weight": 0.0}
        return Built(_attach(backbone, layer(num_classes, seed=seed, **kwargs)), loss())

    return build


def _snnl(backbone, num_classes, seed):
    """The Dense + softmax classifier trained with SNNL on the ResNet's three stage outputs.

    ``keras_vc.models.EntanglementModel(classifier, layer_names)`` with its defaults (the
    reference's: ``alpha=10``, temperature 100 optimised every step); its ``compute_loss`` adds
    ``-alpha * sum SNNL`` of the named layers' flattened outputs.
    """
    wrapper = require("keras_vc.models", "EntanglementModel")
    built = _softmax(backbone, num_classes, seed)
    return Built(wrapper(built.model, list(backbone.hidden_names)), built.loss)


register(Variant(BASELINE, "Dense + softmax (baseline)", _softmax,
                 note="Dense(K) logits, sparse categorical cross-entropy"))
register(Variant("isomax_plus", "DistanceLogits IsoMax+", _distance_logits("isomax_plus"),
                 note="DistanceLogits(mode='isomax_plus') with EntropicCrossEntropy"))
register(Variant("dismax", "DistanceLogits DisMax", _distance_logits("dismax"),
                 note="DistanceLogits(mode='dismax') with EntropicCrossEntropy"))
register(Variant("dismax_fpr", "DistanceLogits DisMax + FPR", _distance_logits("dismax", True),
                 scopes=("model",),
                 note="DisMax with fractional probability mixing (FPR) of every batch, timed "
                      "inside the compiled step (in a tf.data pipeline it would run beside the "
                      "step instead); it mixes images, so it is measured on the full model "
                      "only"))
register(Variant("variational", "VariationalSoftmax", _variational(consistency=True),
                 note="VariationalSoftmax (defaults: Gaussian latent of 32, learned priors, "
                      "consistency_weight 0.01) with VariationalClassificationLoss"))
register(Variant("variational_no_consistency", "VariationalSoftmax, no consistency term",
                 _variational(consistency=False),
                 note="the same with consistency_weight=0 (no discriminator)"))
register(Variant("snnl", "Dense + softmax + SNNL on 3 layers", _snnl, scopes=("model",),
                 note="EntanglementModel: cross-entropy - 10 x soft nearest neighbour loss of "
                      "the three stage outputs (flattened), temperatures optimised as in the "
                      "reference; full model only (it needs hidden layers)"))


# --------------------------------------------------------------------------------------------
# Settings and goals


@dataclasses.dataclass(frozen=True)
class Settings:
    """What one run measures.

    Attributes:
        head_sizes: ``(batch, feature_dim, num_classes)`` triples of the head-alone grid.
        model_batches: batch sizes of the full-model measurement.
        model_classes: classes of the full model.
        model_widths: filters of the ResNet's stages.
        repeats: interleaved timed repeats per configuration.
        warmup_steps: untimed steps after compilation.
        block_seconds: target duration of one timed block; the steps per block are set from
            the baseline's warm-up so that a block lasts about this long (at least 1 step).
        learning_rate: of the SGD optimizer (momentum 0.9) shared by every variant.
        seed: seed of the data and of the initial weights.
    """

    head_sizes: tuple = ((256, 512, 10), (256, 512, 1000), (256, 512, 10000),
                         (256, 2048, 1000))
    model_batches: tuple = (128, 256)
    model_classes: int = 10
    model_widths: tuple = (16, 32, 64)
    repeats: int = 7
    warmup_steps: int = 2
    block_seconds: float = 0.25
    learning_rate: float = 0.01
    seed: int = 0


# Tiny sizes to check that everything runs (its figures mean nothing); one ResNet stage, since
# XLA's compilation of the convolutions dominates a quick run on a CPU.
QUICK = Settings(head_sizes=((16, 8, 10), (16, 8, 50)), model_batches=(8,), model_widths=(4,),
                 repeats=3, warmup_steps=1, block_seconds=0.0)


@dataclasses.dataclass(frozen=True)
class Goal:
    """A target of the issue: the worst median ratio of ``variants`` must stay under ``limit``."""

    title: str
    scope: str
    variants: tuple
    limit: float
    batch: Optional[int] = None
    classes: Optional[int] = None

    def matches(self, result):
        config = result["config"]
        return (result["scope"] == self.scope
                and (self.batch is None or config["batch"] == self.batch)
                and (self.classes is None or config["classes"] == self.classes))


GOALS = (
    Goal("DistanceLogits, full model", "model", ("isomax_plus", "dismax", "dismax_fpr"), 1.05),
    Goal("VariationalSoftmax, full model", "model",
         ("variational", "variational_no_consistency"), 1.10),
    Goal("SNNL on three layers, full model at batch 256", "model", ("snnl",), 1.25, batch=256),
    Goal("head alone at K = 10000 (time)", "head",
         ("isomax_plus", "dismax", "variational", "variational_no_consistency"), 1.5,
         classes=10000),
)


def validate_settings(settings):
    """Raises ValueError naming the first field of ``settings`` that is out of range."""
    for index, size in enumerate(settings.head_sizes):
        if len(size) != 3 or not all(isinstance(v, int) and v >= 1 for v in size):
            raise ValueError(f"`head_sizes[{index}]` must be three positive integers "
                             f"(batch, feature_dim, num_classes), got {size}.")
        if size[2] < 2:
            raise ValueError(f"`head_sizes[{index}]` needs at least 2 classes, got {size[2]}.")
    if not all(isinstance(b, int) and b >= 1 for b in settings.model_batches):
        raise ValueError(f"`model_batches` must be positive integers, got "
                         f"{settings.model_batches}.")
    if not settings.head_sizes and not settings.model_batches:
        raise ValueError("`head_sizes` and `model_batches` are both empty: nothing to measure.")
    if not (isinstance(settings.model_classes, int) and settings.model_classes >= 2):
        raise ValueError(f"`model_classes` must be an integer >= 2, got "
                         f"{settings.model_classes}.")
    if not settings.model_widths or not all(isinstance(w, int) and w >= 1
                                            for w in settings.model_widths):
        raise ValueError(f"`model_widths` must be positive integers, got "
                         f"{settings.model_widths}.")
    if not (isinstance(settings.repeats, int) and settings.repeats >= 1):
        raise ValueError(f"`repeats` must be an integer >= 1, got {settings.repeats}.")
    if not (isinstance(settings.warmup_steps, int) and settings.warmup_steps >= 1):
        raise ValueError(f"`warmup_steps` must be an integer >= 1, got {settings.warmup_steps}.")
    if not (settings.block_seconds >= 0 and math.isfinite(settings.block_seconds)):
        raise ValueError(f"`block_seconds` must be a finite number >= 0, got "
                         f"{settings.block_seconds}.")
    if not (settings.learning_rate > 0 and math.isfinite(settings.learning_rate)):
        raise ValueError(f"`learning_rate` must be a finite number > 0, got "
                         f"{settings.learning_rate}.")


# --------------------------------------------------------------------------------------------
# Measuring


class _TransformFirst(keras.Model):
    """Trains ``model`` on ``transform(x, y)``: input ``(x, y)``, the loss on the new targets.

    The transform runs inside the compiled step, on the device, as part of what is timed.
    """

    def __init__(self, model, transform, seed, **kwargs):
        kwargs.setdefault("name", "transform_first")  # the class name is not a valid scope name
        super().__init__(**kwargs)
        self.inner = model
        self.transform = transform
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, inputs, training=False):
        x, y = inputs
        if training:
            x, y = self.transform(x, y, self.seed_generator)
        return {"logits": self.inner(x, training=training), "targets": y}

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        return super().compute_loss(x=x, y=y_pred["targets"], y_pred=y_pred["logits"],
                                    sample_weight=sample_weight, training=training)


def _variable_bytes(variables):
    return int(sum(np.prod(v.shape, dtype=np.int64) * np.dtype(v.dtype).itemsize
                   for v in variables))


def _tf_memory_device():
    import tensorflow as tf

    return "GPU:0" if tf.config.list_logical_devices("GPU") else "CPU:0"


_TIMERS = {
    "tensorflow": "steps timed as model.train_on_batch (one host synchronisation per step)",
    "jax": "steps timed as Keras's train_step under jax.jit, back to back with the state on "
           "the device (as fit runs them), one synchronisation per block",
}


# A probe allocation of this many bytes must show in the allocator's peak; where it does not, the
# statistics exist but do not follow the device's allocations, and a step would read 0 bytes.
_PROBE_BYTES = 1 << 20


def _tf_allocator_problem(device):
    """Why TensorFlow's allocator statistics on ``device`` cannot measure a step (None if they can).

    Checks that the statistics exist and that they follow a probe allocation of known size:
    readings must not depend on what the process ran before.
    """
    import tensorflow as tf

    try:
        tf.config.experimental.reset_memory_stats(device)
        before = tf.config.experimental.get_memory_info(device)["current"]
        with tf.device(device):
            probe = tf.zeros((_PROBE_BYTES // 4,), dtype="float32") + 1.0
        seen = int(tf.config.experimental.get_memory_info(device)["peak"] - before)
        del probe
    except (ValueError, RuntimeError):
        return (f"TensorFlow keeps no allocator statistics on {device} (on a CPU set "
                f"{BFC_VARIABLE}=1 before TensorFlow first allocates; `keras-vc speed` does)")
    if seen < _PROBE_BYTES:
        return (f"TensorFlow's allocator statistics on {device} do not follow its allocations "
                f"(a probe of {_PROBE_BYTES} bytes read {seen} bytes)")
    return None


def memory_method():
    """``(available, description)`` of how this backend's step memory is measured."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        device = _tf_memory_device()
        problem = _tf_allocator_problem(device)
        if problem is not None:
            return False, f"not available: {problem}"
        allocator = " (BFC allocator)" if device == "CPU:0" else ""
        caveat = (" (BFC charges an allocation for the whole free chunk it takes when the rest"
                  " is too small to split, up to twice the request: figures are upper bounds)"
                  if device == "CPU:0" else "")
        return True, (f"TensorFlow allocator on {device}{allocator}: peak bytes in use during "
                      f"one step minus the bytes in use before it{caveat}")
    if backend == "jax":
        return True, ("XLA's planned temporary buffers of the compiled step "
                      "(jax Compiled.memory_analysis().temp_size_in_bytes)")
    return False, f"not available on the {backend} backend"


class _JaxLoop:
    """Keras's JAX ``train_step`` under ``jax.jit``, called back to back as ``fit`` calls it.

    The state stays on the device between steps and the host waits once per block, so the time
    is the device's step plus the dispatch that ``fit`` pays too, without ``train_on_batch``'s
    per-call bookkeeping and host synchronisation (on a GPU those took longer than the step of
    the small ResNet). Uses Keras's ``_get_jax_state``; if that ever fails the runner falls
    back to ``train_on_batch``.
    """

    def __init__(self, model, x, y):
        import jax

        self._jax = jax
        self.function = jax.jit(model.train_step, donate_argnums=0)
        self.data = (x, y, None)
        self.state = model._get_jax_state(trainable_variables=True, non_trainable_variables=True,
                                          optimizer_variables=True, metrics_variables=True)
        self.run(1)

    def run(self, steps):
        for _ in range(steps):
            logs, self.state = self.function(self.state, self.data)
        self._jax.block_until_ready(self.state)
        return float(logs["loss"])

    def temp_bytes(self):
        """XLA's planned temporary buffers of the compiled step (None if not reported)."""
        try:
            analysis = self.function.lower(self.state, self.data).compile().memory_analysis()
            return int(analysis.temp_size_in_bytes)
        except Exception:  # a platform whose compiler gives no memory analysis: no figure
            return None


class _Runner:
    """One compiled variant on one configuration: warm-up, timed blocks, memory."""

    def __init__(self, name, built, x, y, settings):
        self.name = name
        model = built.model
        if built.transform is not None:
            model = _TransformFirst(built.model, built.transform, settings.seed)
            x = (x, y)
        self.model, self.x, self.y = model, x, y
        model.compile(optimizer=keras.optimizers.SGD(settings.learning_rate, momentum=0.9),
                      loss=built.loss, jit_compile=True)
        start = time.perf_counter()
        self.loss = float(model.train_on_batch(x, y, return_dict=True)["loss"])
        self.compile_seconds = time.perf_counter() - start
        self.xla = bool(model.jit_compile)
        self.loop, self.timer = None, "train_on_batch"
        if keras.backend.backend() == "jax" and self.xla:
            try:
                self.loop, self.timer = _JaxLoop(model, x, y), "jitted train_step"
            except Exception:  # Keras internals changed: time train_on_batch instead
                self.loop = None
        self.warmup = []
        for _ in range(settings.warmup_steps):
            start = time.perf_counter()
            self.loss = self.run(1)
            self.warmup.append(time.perf_counter() - start)
        if not math.isfinite(self.loss):
            raise FloatingPointError(f"the training loss is {self.loss}")
        self.times = []

    def run(self, steps):
        """Runs ``steps`` training steps and returns the last loss (a Python float)."""
        if self.loop is not None:
            return self.loop.run(steps)
        for _ in range(steps):
            logs = self.model.train_on_batch(self.x, self.y, return_dict=True)
        return float(logs["loss"])

    def time_block(self, steps):
        start = time.perf_counter()
        self.loss = self.run(steps)
        self.times.append((time.perf_counter() - start) / steps)

    def memory(self):
        """``{"state_bytes", "step_bytes"}``; ``step_bytes`` is None where not measurable.

        Where it is None on a backend that measures, ``step_reason`` says why.
        """
        state = _variable_bytes(self.model.variables) + _variable_bytes(
            self.model.optimizer.variables)
        step, reason = None, None
        if keras.backend.backend() == "tensorflow":
            import tensorflow as tf

            device = _tf_memory_device()
            reason = _tf_allocator_problem(device)
            if reason is None:
                tf.config.experimental.reset_memory_stats(device)
                before = tf.config.experimental.get_memory_info(device)["current"]
                self.run(1)
                step = int(tf.config.experimental.get_memory_info(device)["peak"] - before)
                if step <= 0:
                    # A step writes at least its gradients: no growth means the statistics
                    # missed the step's allocations, not that it needed none.
                    step, reason = None, (f"the allocator on {device} read {step} bytes for a "
                                          f"step, which writes at least its gradients")
        elif self.loop is not None:
            step = self.loop.temp_bytes()
            if step is None:
                reason = "XLA gave no memory analysis for the compiled step"
        memory = {"state_bytes": state, "step_bytes": step}
        if step is None and reason is not None:
            memory["step_reason"] = reason
        return memory


def _quantiles(values):
    values = np.asarray(values, dtype=np.float64)
    q25, median, q75 = np.percentile(values, [25, 50, 75])
    return {"median": float(median), "q25": float(q25), "q75": float(q75)}


def _data(scope, config, seed):
    rng = np.random.default_rng(seed)
    if scope == "head":
        shape = (config["batch"], config["features"])
    else:
        shape = (config["batch"],) + IMAGE_SHAPE
    x = rng.standard_normal(shape).astype("float32")
    y = rng.integers(0, config["classes"], size=config["batch"]).astype("int32")
    return keras.ops.convert_to_tensor(x), keras.ops.convert_to_tensor(y)


def _backbone(scope, config, settings):
    keras.utils.set_random_seed(settings.seed)
    if scope == "head":
        return speed_models.feature_input(config["features"])
    return speed_models.small_resnet(IMAGE_SHAPE, settings.model_widths)


def _config_label(scope, config):
    if scope == "head":
        return f"B={config['batch']} D={config['features']} K={config['classes']}"
    return f"B={config['batch']} K={config['classes']}"


def measure_configuration(scope, config, variants, settings, log=print):
    """Builds, warms up, times (interleaved) and measures every variant on one configuration.

    Args:
        scope: ``"head"`` or ``"model"``.
        config: ``{"batch", "classes"}`` plus ``"features"`` for the head scope.
        variants: the :class:`Variant` objects, the baseline first.
        settings: the run's :class:`Settings`.
        log: a ``print``-like function for progress lines.

    Returns:
        ``{"scope", "config", "steps_per_repeat", "variants": {name: entry}}`` where an entry
        has ``status`` "ok" (with ``step_ms``, ``ratio``, ``memory``, ``compile_seconds``,
        ``xla``, ``loss``), "not applicable", "not available" or "failed" (with ``reason``).
    """
    if not variants or variants[0].name != BASELINE:
        raise ValueError(f"`variants` must start with the baseline {BASELINE!r}.")
    label = _config_label(scope, config)
    x, y = _data(scope, config, settings.seed)
    entries, runners = {}, []
    for variant in variants:
        if scope not in variant.scopes:
            entries[variant.name] = {"status": "not applicable",
                                     "reason": f"measured on the {' and '.join(variant.scopes)}"
                                               f" scope only"}
            continue
        try:
            built = variant.build(_backbone(scope, config, settings), config["classes"],
                                  settings.seed)
            runner = _Runner(variant.name, built, x, y, settings)
        except (NotAvailable, ImportError) as error:  # a part or a dependency is missing
            entries[variant.name] = {"status": "not available", "reason": str(error)}
            log(f"[{scope} {label}] {variant.name}: not available ({error})")
            continue
        except Exception as error:  # one broken variant must not end the run; it is reported
            if variant.name == BASELINE:
                raise
            entries[variant.name] = {"status": "failed",
                                     "reason": f"{type(error).__name__}: {error}"}
            log(f"[{scope} {label}] {variant.name}: FAILED ({type(error).__name__}: {error})")
            continue
        runners.append(runner)
        log(f"[{scope} {label}] {variant.name}: compiled and first step in "
            f"{runner.compile_seconds:.1f} s, warm step {np.median(runner.warmup) * 1e3:.1f} ms")
    baseline = runners[0]
    steps = _steps_per_block(baseline, settings)
    for repeat in range(settings.repeats):
        shift = repeat % len(runners)
        for runner in runners[shift:] + runners[:shift]:
            runner.time_block(steps)
    for runner in list(runners):
        if not math.isfinite(runner.loss):
            if runner is baseline:
                raise FloatingPointError(f"the baseline's training loss became {runner.loss}")
            entries[runner.name] = {
                "status": "failed", "reason": f"the training loss became {runner.loss}"}
            runners.remove(runner)
            continue
        ratios = np.asarray(runner.times) / np.asarray(baseline.times)
        entries[runner.name] = {
            "status": "ok",
            "xla": runner.xla,
            "timer": runner.timer,
            "compile_seconds": runner.compile_seconds,
            "loss": runner.loss,
            "step_ms": {k: v * 1e3 for k, v in _quantiles(runner.times).items()},
            "ratio": _quantiles(ratios),
            "memory": runner.memory(),
        }
    base_memory = entries[BASELINE]["memory"]
    for runner in runners:
        memory = entries[runner.name]["memory"]
        for key in ("state", "step"):
            value, base = memory[f"{key}_bytes"], base_memory[f"{key}_bytes"]
            memory[f"{key}_ratio"] = (value / base) if value is not None and base else None
    summary = ", ".join(f"{r.name} {entries[r.name]['ratio']['median']:.2f}x"
                        for r in runners[1:])
    log(f"[{scope} {label}] baseline {entries[BASELINE]['step_ms']['median']:.2f} ms/step "
        f"({steps} step(s) per block, {settings.repeats} repeats)"
        + (f"; {summary}" if summary else ""))
    del runners, baseline
    keras.backend.clear_session()
    gc.collect()
    return {"scope": scope, "config": config, "steps_per_repeat": steps, "variants": entries}


def measure_overhead(settings):
    """Median ms of a training step of a one-weight model, timed as the variants are.

    Every variant pays it once per step; ratios of steps not much longer than it are compressed
    towards 1.
    """
    keras.utils.set_random_seed(settings.seed)
    inputs = keras.Input((1,))
    built = Built(keras.Model(inputs, keras.layers.Dense(1)(inputs)), "mean_squared_error")
    x = keras.ops.ones((1, 1))
    runner = _Runner("overhead", built, x, x, settings)
    steps = _steps_per_block(runner, settings)
    for _ in range(settings.repeats):
        runner.time_block(steps)
    overhead = float(np.median(runner.times)) * 1e3
    del runner
    keras.backend.clear_session()
    return overhead


def _steps_per_block(runner, settings):
    if settings.block_seconds <= 0:
        return 1
    return int(np.clip(round(settings.block_seconds / np.median(runner.warmup)), 1, 1000))


def evaluate_goals(results, goals=GOALS):
    """Each goal with the worst median ratio measured for it and whether it is met."""
    evaluated = []
    for goal in goals:
        worst = None
        for result in results:
            if not goal.matches(result):
                continue
            for name in goal.variants:
                entry = result["variants"].get(name, {})
                if entry.get("status") != "ok":
                    continue
                ratio = entry["ratio"]["median"]
                if worst is None or ratio > worst["ratio"]:
                    worst = {"ratio": ratio, "variant": name,
                             "config": _config_label(result["scope"], result["config"])}
        status = "not measured" if worst is None else (
            "met" if worst["ratio"] <= goal.limit else "missed")
        evaluated.append({"goal": goal.title, "limit": goal.limit, "status": status,
                          "worst": worst})
    return evaluated


def _device_description():
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        device = jax.devices()[0]
        return f"{device.platform.upper()} ({getattr(device, 'device_kind', device.platform)})"
    if backend == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        if gpus:
            details = tf.config.experimental.get_device_details(gpus[0])
            return f"GPU ({details.get('device_name', gpus[0].name)})"
    return f"CPU ({_cpu_name()})"


def _cpu_name():
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def run_speed(variant_names=None, settings=Settings(), scopes=SCOPES, out_dir=None,
              command=None, log=print):
    """Measures every variant against the baseline; writes ``speed.json`` and ``speed.md``.

    Args:
        variant_names: names from :data:`VARIANTS` (default: all); the baseline is always
            measured, first.
        settings: a :class:`Settings`.
        scopes: a subset of ``("head", "model")``.
        out_dir: folder for the reports (created); ``None`` writes nothing.
        command: the command line, stated in the report.
        log: a ``print``-like function for progress lines.

    Returns:
        The report dict (see ``speed.json``).

    Example:
        >>> report = run_speed(["softmax", "dismax"], QUICK, out_dir=None)  # doctest: +SKIP
        >>> print(format_markdown(report))  # doctest: +SKIP
    """
    backend = keras.backend.backend()
    if backend not in SUPPORTED_BACKENDS:
        raise ValueError(f"the Keras backend must be one of {SUPPORTED_BACKENDS}, got "
                         f"{backend!r} (set KERAS_BACKEND before starting Python).")
    if not isinstance(settings, Settings):
        raise ValueError(f"`settings` must be a speed.Settings, got {type(settings).__name__}.")
    validate_settings(settings)
    scopes = tuple(scopes)
    if not scopes or any(scope not in SCOPES for scope in scopes):
        raise ValueError(f"`scopes` must be a non-empty subset of {SCOPES}, got {scopes}.")
    names = list(VARIANTS) if variant_names is None else list(variant_names)
    unknown = [name for name in names if name not in VARIANTS]
    if unknown:
        raise ValueError(f"`variant_names`: unknown variant(s) {unknown}; expected names from "
                         f"{sorted(VARIANTS)}.")
    names = [BASELINE] + [name for name in dict.fromkeys(names) if name != BASELINE]
    variants = [VARIANTS[name] for name in names]
    memory_available, memory_description = memory_method()
    report = {
        "command": command,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.platform()}; {os.cpu_count()} CPU cores; "
                   f"Python {platform.python_version()}; Keras {keras.__version__}",
        "backend": backend,
        "device": _device_description(),
        "xla": True,
        "memory": {"step_available": memory_available, "step_method": memory_description,
                   "state_method": "bytes of the model's and the optimizer's variables"},
        "settings": dataclasses.asdict(settings),
        "scopes": list(scopes),
        "method": f"{_TIMERS[backend]}, jit_compile=True, on a fixed on-device batch; "
                  f"SGD(learning_rate={settings.learning_rate}, momentum=0.9); warm-up, then "
                  f"{settings.repeats} interleaved repeats (order rotated each repeat); "
                  "median and IQR of per-step times and of paired ratios to the baseline",
        "variants": {v.name: {"title": v.title, "note": v.note, "scopes": list(v.scopes)}
                     for v in variants},
        "results": [],
    }
    start = time.perf_counter()
    configurations = []
    if "head" in scopes:
        configurations += [("head", {"batch": b, "features": d, "classes": k})
                           for b, d, k in settings.head_sizes]
    if "model" in scopes:
        configurations += [("model", {"batch": b, "classes": settings.model_classes,
                                      "image_shape": list(IMAGE_SHAPE),
                                      "widths": list(settings.model_widths)})
                           for b in settings.model_batches]
    report["overhead_ms"] = measure_overhead(settings)
    log(f"Keras's per-step overhead (a one-weight model): "
        f"{report['overhead_ms']:.2f} ms")
    for scope, config in configurations:
        report["results"].append(measure_configuration(scope, config, variants, settings, log))
    report["wall_seconds"] = time.perf_counter() - start
    report["goals"] = evaluate_goals(report["results"])
    if out_dir is not None:
        os.makedirs(out_dir, exist_ok=True)
        with open(os.path.join(out_dir, "speed.json"), "w") as handle:
            json.dump(report, handle, indent=2)
        with open(os.path.join(out_dir, "speed.md"), "w") as handle:
            handle.write(format_markdown(report))
    return report


# --------------------------------------------------------------------------------------------
# Reporting


def _duration(milliseconds):
    if milliseconds >= 1000:
        return f"{milliseconds / 1000:.2f} s"
    return f"{milliseconds:.3g} ms"


def _bytes(value):
    if value is None:
        return "n/a"
    if value < 2 ** 20:
        return f"{value / 2 ** 10:.0f} KiB"
    return f"{value / 2 ** 20:.1f} MiB"


def _time_cell(entry, is_baseline):
    if entry["status"] != "ok":
        return entry["status"]
    if is_baseline:
        return f"1.00 ({_duration(entry['step_ms']['median'])})"
    ratio = entry["ratio"]
    return f"{ratio['median']:.2f} [{ratio['q25']:.2f}, {ratio['q75']:.2f}]"


def _memory_cell(entry, is_baseline):
    if entry["status"] != "ok":
        return entry["status"]
    memory = entry["memory"]
    if is_baseline:
        return f"1.00 ({_bytes(memory['step_bytes'])})"
    if memory["step_ratio"] is None:
        return "n/a"
    return f"{memory['step_ratio']:.2f} ({_bytes(memory['step_bytes'])})"


def _table(report, scope, cell):
    results = [r for r in report["results"] if r["scope"] == scope]
    columns = [_config_label(scope, r["config"]) for r in results]
    lines = [f"| variant | {' | '.join(columns)} |", "|---" * (len(columns) + 1) + "|"]
    for name, variant in report["variants"].items():
        cells = [cell(r["variants"][name], name == BASELINE) for r in results]
        if all(c == "not applicable" for c in cells):
            continue
        lines.append(f"| {variant['title']} | {' | '.join(cells)} |")
    return lines


def format_markdown(report):
    """The report as Markdown: time and memory tables per scope, goals, what was not measured."""
    settings = report["settings"]
    lines = [
        "# keras-vc speed",
        "",
        f"Date: {report['date']}. Machine: {report['machine']}. Backend: {report['backend']} "
        f"on {report['device']}, XLA on.",
    ]
    if report.get("command"):
        lines += ["", f"Command: `{report['command']}` ({report['wall_seconds']:.0f} s)."]
    lines += [
        "",
        f"Method: {report['method']}. Time cells: median ratio to the baseline [interquartile "
        "range]; the baseline row gives its median step time. Memory cells: ratio of the step's "
        f"extra memory to the baseline's (absolute value); step memory = "
        f"{report['memory']['step_method']}. Keras's own per-step overhead (a one-weight "
        f"model, timed the same way) was {report['overhead_ms']:.2f} ms: ratios of steps not "
        "much longer than that are compressed towards 1.",
    ]
    fallbacks = sorted({f"{name} ({_config_label(r['scope'], r['config'])})"
                        for r in report["results"] for name, e in r["variants"].items()
                        if e.get("timer") == "train_on_batch" and report["backend"] == "jax"})
    if fallbacks:
        lines += ["", "Timed with train_on_batch instead (the jitted train_step could not be "
                      "used): " + ", ".join(fallbacks) + "."]
    no_xla = sorted({f"{name} ({_config_label(r['scope'], r['config'])})"
                     for r in report["results"] for name, e in r["variants"].items()
                     if e.get("status") == "ok" and not e["xla"]})
    if no_xla:
        lines += ["", "Keras turned XLA off (a layer does not support it) for: "
                  + ", ".join(no_xla) + "."]
    widths = "-".join(str(w) for w in settings["model_widths"])
    titles = {"head": "Head alone (features -> head -> loss, forward and backward)",
              "model": f"Full model (ResNet with stages of {widths} filters, on "
                       f"{IMAGE_SHAPE[0]}x{IMAGE_SHAPE[1]}x{IMAGE_SHAPE[2]} inputs)"}
    for scope in report["scopes"]:
        lines += ["", f"## {titles[scope]}", "", "Training-step time:", ""]
        lines += _table(report, scope, _time_cell)
        lines += ["", "Step memory:", ""]
        lines += _table(report, scope, _memory_cell)
        unmeasured = [f"- {report['variants'][name]['title']} "
                      f"({_config_label(scope, r['config'])}): {e['memory']['step_reason']}"
                      for r in report["results"] if r["scope"] == scope
                      for name, e in r["variants"].items()
                      if e.get("status") == "ok" and "step_reason" in e["memory"]]
        if unmeasured and report["memory"]["step_available"]:  # else the method says why
            lines += ["", "Step memory not measurable:", ""] + unmeasured
    lines += ["", "## Goals", "", "| goal | limit | worst median ratio | status |",
              "|---|---|---|---|"]
    for goal in report["goals"]:
        worst = goal["worst"]
        measured = "-" if worst is None else (
            f"{worst['ratio']:.2f} ({report['variants'][worst['variant']]['title']}, "
            f"{worst['config']})")
        lines.append(f"| {goal['goal']} | {goal['limit']:.2f} | {measured} | {goal['status']} |")
    reasons = {}
    for result in report["results"]:
        for name, entry in result["variants"].items():
            if entry["status"] in ("not available", "failed"):
                reasons.setdefault((name, entry["status"], entry["reason"]), None)
    if reasons:
        lines += ["", "Not measured:", ""]
        lines += [f"- {report['variants'][name]['title']}: {status}: {reason}"
                  for name, status, reason in reasons]
    lines += ["", "Variants:", ""]
    lines += [f"- {v['title']}: {v['note']}" for v in report["variants"].values()]
    return "\n".join(lines) + "\n"
