"""The one home of label normalisation and of the "probabilities or logits" rule.

Labels. Every public function of keras_vc accepts class ids of shape ``(n,)`` or ``(n, 1)``, or
one-hot rows ``(n, K)``:

* NumPy / eager arrays: :func:`keras_vc._validation.check_labels` returns int64 ``(n,)`` after
  checking the shape, integrality and the range ``[0, K)``.
* Tensors inside a traced or compiled loss / metric: :func:`sparse_label_tensor` decides from the
  *static* shape (:func:`label_layout`, a wrong shape is a ``ValueError`` at trace time, in
  particular one-hot rows of the wrong width), checks the values with ``check_labels`` whenever
  they are concrete (eager), and can return a per-row validity mask for the compiled case, where
  values are not known when the graph is built.
* Inside a compiled training step the losses also call :func:`assert_valid_labels`, which makes
  the step itself fail with the package's label message where the backend can raise at run time:
  a TensorFlow ``tf.function`` without XLA (``fit``'s default on a CPU-only machine) through
  ``tf.debugging.Assert``, JAX's ``jit`` (every JAX ``fit``) through ``jax.debug.callback``;
  PyTorch runs eagerly and ``check_labels`` raises directly. What remains: TensorFlow with XLA
  (``jit_compile=True``, or ``"auto"`` with a GPU) compiles the assertion away; there the invalid
  rows' loss is NaN, so ``fit`` logs ``loss: nan`` from the first step.

Probabilities or logits. One rule (:func:`is_probability_rows`): a batch whose entries are all
``>= -tolerance`` and whose rows all sum to 1 within ``tolerance`` (``PROBABILITY_TOLERANCE``,
1e-3) holds probabilities; anything else holds logits. Non-finite values are never
probabilities. The rule is ambiguous only for logits that happen to be non-negative and sum to 1
per row; pass ``from_logits`` explicitly where that can happen.
"""

import numpy as np
from keras import ops

from keras_vc import _validation

PROBABILITY_TOLERANCE = _validation.PROBABILITY_TOLERANCE
# log(0) guard when probabilities are turned into logits (log-probabilities).
_TINY_PROBABILITY = 1e-30

SPARSE, COLUMN, ONE_HOT = "sparse", "column", "one_hot"


def concrete_values(x):
    """The values of ``x`` as a NumPy array when they are known now (eager), else None (traced).

    Backend-neutral: a TensorFlow graph tensor, a JAX tracer or a symbolic tensor cannot be
    converted, and that is what tells "traced" from "eager".
    """
    if isinstance(x, np.ndarray):
        return x
    try:
        return np.asarray(ops.convert_to_numpy(x))
    except Exception:  # noqa: BLE001 - each backend raises its own type for a traced value
        return None


def label_layout(shape, num_classes, name="y_true"):
    """Which of the accepted label layouts a static ``shape`` is: ``SPARSE``, ``COLUMN``, ``ONE_HOT``.

    Args:
        shape: the static shape of the labels (``None`` for an unknown dimension).
        num_classes: the number of classes ``K`` (>= 2).
        name: the argument's name, for the message.

    Returns:
        ``"sparse"`` for ``(b,)``, ``"column"`` for ``(b, 1)``, ``"one_hot"`` for ``(b, K)``.

    Raises:
        ValueError: any other rank, a second axis that is neither 1 nor ``K`` (for example one-hot
            rows of the wrong width), or an unknown second axis.
    """
    shape = tuple(shape)
    if len(shape) == 1:
        return SPARSE
    if len(shape) == 2 and shape[1] == 1:
        return COLUMN
    if len(shape) == 2 and shape[1] == num_classes:
        return ONE_HOT
    if len(shape) == 2 and shape[1] is None:
        raise ValueError(
            f"`{name}` has shape {shape} with an unknown second axis; labels must have a static "
            f"shape (batch,), (batch, 1) or one-hot (batch, {num_classes}).")
    if len(shape) == 2:
        raise ValueError(
            f"`{name}` of shape {shape} are neither class ids (batch,) / (batch, 1) nor one-hot "
            f"rows for the {num_classes} classes of the predictions (batch, {num_classes}).")
    raise ValueError(
        f"`{name}` must have shape (batch,), (batch, 1) or one-hot (batch, {num_classes}); got "
        f"shape {shape}.")


def sparse_label_tensor(y_true, num_classes, name="y_true", return_valid=False,
                        num_samples=None):
    """int32 class ids ``(b,)`` from ``(b,)``, ``(b, 1)`` or one-hot ``(b, K)`` label tensors.

    The layout comes from the static shape (:func:`label_layout`). When the values are concrete
    (eager execution, NumPy input) they are checked with
    :func:`keras_vc._validation.check_labels`, so a class id outside ``[0, K)``, a non-integer id,
    a NaN or a row that is not one-hot raises ``ValueError`` at the call. Inside a traced or
    compiled function values are unknown when it is built; ``return_valid=True`` then gives the
    caller a boolean mask of the rows that are valid labels, so that it can refuse to count the
    others (the returned ids of invalid rows are clipped into ``[0, K)`` and must be masked).

    Args:
        y_true: labels (a tensor, NumPy array or list).
        num_classes: number of classes ``K`` (>= 2).
        name: the argument's name, for messages.
        return_valid: also return the ``(b,)`` boolean validity mask.
        num_samples: the number of rows the labels must have (checked when concrete), or None.

    Returns:
        int32 ``(b,)`` class ids, or ``(ids, valid)`` with ``return_valid=True``.

    Raises:
        ValueError: a shape that is none of the accepted layouts; when values are concrete, any
            label ``check_labels`` rejects.
    """
    num_classes = _validation.check_int(num_classes, "num_classes", minimum=2)
    if y_true is None:
        raise ValueError(f"`{name}` must be labels, got None.")
    y_true = ops.convert_to_tensor(y_true)
    layout = label_layout(y_true.shape, num_classes, name)
    values = concrete_values(y_true)
    if values is not None:
        _validation.check_labels(values, num_classes, num_samples=num_samples, name=name)
    if layout == ONE_HOT:
        rows = ops.cast(y_true, "float32")
        ids = ops.cast(ops.argmax(rows, axis=-1), "int32")
        binary = ops.all(ops.logical_or(ops.equal(rows, 0.0), ops.equal(rows, 1.0)), axis=-1)
        valid = ops.logical_and(binary, ops.equal(ops.sum(rows, axis=-1), 1.0))
    else:
        flat = ops.reshape(y_true, (-1,))
        if "int" in str(flat.dtype):
            valid = ops.logical_and(flat >= 0, flat < num_classes)
            ids = ops.cast(ops.clip(flat, 0, num_classes - 1), "int32")
        else:
            flat = ops.cast(flat, "float32")
            valid = ops.logical_and(
                ops.logical_and(flat >= 0.0, flat < float(num_classes)),
                ops.equal(flat, ops.round(flat)))  # False for NaN too
            safe = ops.where(valid, flat, ops.zeros_like(flat))
            ids = ops.cast(ops.round(safe), "int32")
    if return_valid:
        return ids, valid
    return ids


def _label_message(num_classes, name):
    return (f"`{name}` holds labels that are not class ids in [0, {num_classes - 1}] "
            f"(or one-hot rows of width {num_classes}): the model's output has "
            f"num_classes={num_classes} columns. Check the head's `num_classes` against the "
            "labels (e.g. labels 0-9 need num_classes=10).")


def assert_valid_labels(y_true, valid, num_classes, name="y_true"):
    """Makes a traced training step fail with one clear message when ``valid`` is not all True.

    Does nothing when ``y_true`` is concrete (``sparse_label_tensor`` has already checked it) or
    inside Keras' symbolic shape inference. Under TensorFlow's ``tf.function`` it adds a
    ``tf.debugging.Assert`` (an ``InvalidArgumentError`` naming the smallest and largest label
    when the step runs; XLA compiles it away), under JAX's ``jit`` a ``jax.debug.callback`` that
    raises ``ValueError`` (surfacing as the runtime error of the step). Other backends run
    eagerly.

    Args:
        y_true: the labels tensor the mask was computed from.
        valid: the ``(b,)`` boolean validity mask of :func:`sparse_label_tensor`.
        num_classes: number of classes ``K``.
        name: the argument's name, for the message.
    """
    if concrete_values(y_true) is not None:
        return
    import keras

    message = _label_message(num_classes, name)
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        if not tf.is_tensor(valid) or tf.executing_eagerly():
            return
        labels = tf.cast(y_true, tf.float32)
        tf.debugging.Assert(tf.reduce_all(valid),
                            [message, "Smallest label:", tf.reduce_min(labels),
                             "largest label:", tf.reduce_max(labels)], summarize=4)
    elif backend == "jax":
        import jax

        if not isinstance(valid, jax.core.Tracer):
            return

        def _raise_if_invalid(all_valid, low, high):
            if not bool(all_valid):
                raise ValueError(f"{message} Smallest label: {float(low):g}, largest label: "
                                 f"{float(high):g}.")

        labels = ops.cast(y_true, "float32")
        jax.debug.callback(_raise_if_invalid, ops.all(valid), ops.min(labels), ops.max(labels))


def is_probability_rows(outputs, tolerance=PROBABILITY_TOLERANCE):
    """The package's one rule: do the rows of ``outputs`` (..., K) hold probabilities?

    True when every entry is ``>= -tolerance`` and every row sums to 1 within ``tolerance``;
    False otherwise (logits), NaN or infinite entries included. Works on NumPy arrays (returns a
    Python bool) and on backend tensors (returns a scalar boolean tensor, usable under tracing).
    """
    if isinstance(outputs, np.ndarray):
        outputs = outputs.astype(np.float64)
        with np.errstate(invalid="ignore"):
            return bool(outputs.size and np.all(np.isfinite(outputs))
                        and outputs.min() >= -tolerance
                        and np.abs(outputs.sum(axis=-1) - 1.0).max() <= tolerance)
    outputs = ops.cast(outputs, "float32")
    return ops.logical_and(
        ops.all(outputs >= -tolerance),  # False for NaN
        ops.all(ops.abs(ops.sum(outputs, axis=-1) - 1.0) <= tolerance))


def check_from_logits(from_logits):
    """Checks the `from_logits` option shared by the metrics: True, False or None (automatic)."""
    if from_logits not in (None, True, False):
        raise ValueError(f"`from_logits` must be True, False or None (auto), got {from_logits!r}.")
    return from_logits


def as_probabilities(outputs, from_logits=None):
    """float32 probabilities from logits or probabilities ``(..., K)``.

    Args:
        outputs: a tensor of logits or of probability rows.
        from_logits: True (softmax), False (taken as they are) or None: decided by
            :func:`is_probability_rows` for the whole batch.

    Returns:
        A float32 tensor of the shape of ``outputs``.
    """
    from_logits = check_from_logits(from_logits)
    outputs = ops.cast(outputs, "float32")
    if from_logits is True:
        return ops.softmax(outputs, axis=-1)
    if from_logits is False:
        return outputs
    return ops.where(is_probability_rows(outputs), outputs, ops.softmax(outputs, axis=-1))


def as_logits(outputs, from_logits=None):
    """Logits from logits or probabilities ``(n, K)``: probabilities become log-probabilities.

    Log-probabilities are logits up to a per-row constant, so ``softmax`` and every temperature
    of ``softmax(z / T)`` are unchanged. NumPy input gives NumPy output in its own float dtype.

    Args:
        outputs: logits or probability rows.
        from_logits: True (returned as they are), False (log of the probabilities) or None:
            decided by :func:`is_probability_rows`.
    """
    from_logits = check_from_logits(from_logits)
    if isinstance(outputs, np.ndarray):
        if from_logits is None:
            from_logits = not is_probability_rows(outputs)
        return outputs if from_logits else np.log(np.maximum(outputs, _TINY_PROBABILITY))
    if from_logits is True:
        return outputs
    log_probs = ops.log(ops.maximum(outputs, _TINY_PROBABILITY))
    if from_logits is False:
        return log_probs
    return ops.where(is_probability_rows(outputs), log_probs, outputs)
