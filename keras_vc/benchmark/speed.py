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

Adding a head is a few lines in :mod:`keras_vc.benchmark.registry`: a factory
``build(backbone, num_classes, seed) -> Built`` in the head's ``speed`` variants. A factory that
needs a part of keras_vc that is not installed raises :class:`speed_variants.NotAvailable`; the
report then lists the variant with the reason instead of a figure.

The variants come from :mod:`keras_vc.benchmark.registry` (one name per method, as in
``compare``); :func:`speed_variants.register` adds one at run time. The work is split into
:mod:`~keras_vc.benchmark.speed_variants` (which variants), :mod:`~keras_vc.benchmark.speed_goals`
(settings and goals), :mod:`~keras_vc.benchmark.speed_runner` (timing),
:mod:`~keras_vc.benchmark.speed_memory` (memory probes) and
:mod:`~keras_vc.benchmark.speed_report` (Markdown); this module runs them.
"""

import dataclasses
import datetime
import json
import os
import platform
import time

import keras

from keras_vc.benchmark import registry
from keras_vc.benchmark import speed_runner
from keras_vc.benchmark.registry import BASELINE
from keras_vc.benchmark.speed_goals import GOALS  # noqa: F401
from keras_vc.benchmark.speed_goals import QUICK  # noqa: F401
from keras_vc.benchmark.speed_goals import Settings
from keras_vc.benchmark.speed_goals import evaluate_goals
from keras_vc.benchmark.speed_goals import validate_settings
from keras_vc.benchmark.speed_memory import memory_method
from keras_vc.benchmark.speed_report import format_markdown
from keras_vc.benchmark.speed_runner import IMAGE_SHAPE
from keras_vc.benchmark.speed_runner import measure_configuration
from keras_vc.benchmark.speed_runner import measure_overhead
from keras_vc.benchmark.speed_variants import SCOPES
from keras_vc.benchmark.speed_variants import variants as all_variants

SUPPORTED_BACKENDS = ("tensorflow", "jax")


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
        variant_names: variant names (default: all; see :mod:`speed_variants`); the baseline
            is always measured, first.
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
    known = all_variants()
    names = list(known) if variant_names is None else list(variant_names)
    message = registry.unknown_names(names, list(known), "variant")
    if message:
        raise ValueError(f"`variant_names`: {message}.")
    names = [BASELINE] + [name for name in dict.fromkeys(names) if name != BASELINE]
    variants = [known[name] for name in names]
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
        "method": f"{speed_runner.TIMERS[backend]}, jit_compile=True, on a fixed on-device batch; "
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

