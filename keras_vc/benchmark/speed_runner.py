"""The runner of ``keras-vc speed``: build, warm up, time (interleaved) and measure variants.

Every variant of a configuration is built on a freshly initialised network (the same initial
weights for every variant), compiled with XLA and the same SGD optimizer, and trained on one
fixed on-device batch; after the warm-up the variants take turns, one block of steps each per
repeat, in an order rotated from one repeat to the next (see :mod:`keras_vc.benchmark.speed`).
"""

import gc
import math
import time

import keras
import numpy as np

from keras_vc.benchmark import speed_memory
from keras_vc.benchmark import speed_models
from keras_vc.benchmark.registry import BASELINE
from keras_vc.benchmark.registry import Built
from keras_vc.benchmark.speed_goals import config_label
from keras_vc.benchmark.speed_variants import NotAvailable

IMAGE_SHAPE = (32, 32, 3)


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



TIMERS = {
    "tensorflow": "steps timed as model.train_on_batch (one host synchronisation per step)",
    "jax": "steps timed as Keras's train_step under jax.jit, back to back with the state on "
           "the device (as fit runs them), one synchronisation per block",
}

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
        state = speed_memory.variable_bytes(self.model.variables) + speed_memory.variable_bytes(
            self.model.optimizer.variables)
        step, reason = None, None
        if keras.backend.backend() == "tensorflow":
            import tensorflow as tf

            device = speed_memory.tf_memory_device()
            reason = speed_memory.tf_allocator_problem(device)
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
    label = config_label(scope, config)
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

