"""Streaming Keras metrics for ``model.compile(metrics=[...])``.

They accumulate exact per-bin sums, so the value over any split into batches equals the NumPy
function of :mod:`keras_vc.metrics.calibration` on the concatenated data (up to float32 sums).
Under ``tf.distribute`` the sums are Keras metric variables, which the strategy adds up across
replicas, so ``evaluate`` reports the metric of the global data (tests/test_distribution.py).
"""

import keras
import numpy as np
from keras import ops

from keras_vc import _labels
from keras_vc import _validation
from keras_vc.metrics import _binning


def _checked_batch(y_true, y_pred, from_logits, sample_weight):
    """Probabilities, int32 labels and per-row weights of one batch, bad rows weighted 0.

    Eager (values concrete): a non-finite prediction or a bad label raises ``ValueError`` here.
    Traced / compiled: the bad rows get weight 0 and are returned as two counts, the rows with
    a label outside ``[0, K)`` (or not a class id / one-hot row) and the rows with a NaN or
    infinite prediction, for :class:`_InvalidInputCounter` to report.
    """
    y_pred = ops.convert_to_tensor(y_pred)
    if len(y_pred.shape) != 2 or y_pred.shape[-1] is None or y_pred.shape[-1] < 2:
        raise ValueError(f"`y_pred` must have shape (batch, K) with a known K >= 2, got shape "
                         f"{tuple(y_pred.shape)}.")
    num_classes = int(y_pred.shape[-1])
    values = _labels.concrete_values(y_pred)
    if values is not None:
        _validation.check_finite_array(values, "y_pred", ndim=2, allow_empty=True)
    y_pred = ops.cast(y_pred, "float32")
    labels, valid_label = _labels.sparse_label_tensor(y_true, num_classes, name="y_true",
                                                      return_valid=True)
    finite = ops.all(ops.isfinite(y_pred), axis=-1)
    # A non-finite row becomes uniform: it passes the probability rule and does not change the
    # automatic logits / probabilities decision for the other rows (it is weighted 0 anyway).
    uniform = ops.full_like(y_pred, 1.0 / num_classes)
    probs = _labels.as_probabilities(ops.where(ops.expand_dims(finite, -1), y_pred, uniform),
                                     from_logits)
    weights = ops.cast(ops.logical_and(valid_label, finite), "float32")
    if sample_weight is not None:
        weights = weights * ops.reshape(ops.cast(sample_weight, "float32"), (-1,))
    bad_labels = ops.sum(1.0 - ops.cast(valid_label, "float32"))
    bad_predictions = ops.sum(1.0 - ops.cast(finite, "float32"))
    return probs, labels, weights, bad_labels, bad_predictions


class _InvalidInputCounter(keras.metrics.Metric):
    """Counts the rows a compiled ``update_state`` could not reject, and refuses a result then.

    Inside a compiled ``fit`` / ``evaluate`` no backend-neutral runtime assertion exists
    (``keras.ops`` has none, and TensorFlow's asserts are dropped under XLA), so a bad row is
    left out of the sums and counted. While a count is non-zero, ``result()`` is NaN inside the
    compiled step (the per-step logs) and raises ``ValueError`` when it is called eagerly, as
    Keras does at the end of every epoch of ``fit`` and at the end of ``evaluate`` on every
    backend: the run stops with the reason instead of reporting a number computed on part of
    the data. PyTorch's ``torch.compile`` (Keras' ``jit_compile=True`` there) does not trace
    the check of the concrete values in ``update_state``: it falls back to Python there, and
    the ``ValueError`` comes at the first bad batch, as in an eager step.
    """

    def _add_counters(self):
        self.invalid_labels = self.add_variable((), initializer="zeros", name="invalid_labels")
        self.invalid_predictions = self.add_variable((), initializer="zeros",
                                                     name="invalid_predictions")

    def _count(self, bad_labels, bad_predictions):
        self.invalid_labels.assign_add(bad_labels)
        self.invalid_predictions.assign_add(bad_predictions)

    def _guard(self, value):
        labels = _labels.concrete_values(self.invalid_labels)
        predictions = _labels.concrete_values(self.invalid_predictions)
        if labels is not None and predictions is not None and (labels > 0 or predictions > 0):
            raise ValueError(
                f"{type(self).__name__} (`{self.name}`) received {int(labels)} label(s) that are not class ids in "
                f"[0, K) or one-hot rows, and {int(predictions)} prediction row(s) with NaN or "
                "infinite values, since its last reset (inside a compiled step they were left "
                "out and the metric reported NaN). Fix the labels / the model's outputs.")
        invalid = self.invalid_labels + self.invalid_predictions
        return ops.where(invalid > 0, ops.cast(np.nan, "float32"), ops.cast(value, "float32"))

    def _reset_counters(self):
        self.invalid_labels.assign(0.0)
        self.invalid_predictions.assign(0.0)


@keras.saving.register_keras_serializable(package="keras_vc")
class ExpectedCalibrationError(_InvalidInputCounter):
    """Top-label calibration error accumulated over batches (equal-width bins).

    Args:
        num_bins: number of equal-width bins ``(lo, hi]`` (first ``[0, 1/M]``), >= 1.
        norm: ``"l1"`` (ECE), ``"l2"`` or ``"max"`` (MCE).
        from_logits: ``True`` for logits, ``False`` for probabilities, ``None`` (default) to
            decide per batch by the package's rule (``keras_vc._labels.is_probability_rows``:
            entries >= -1e-3 and rows summing to 1 within 1e-3 are probabilities).

    Bad input: labels outside ``[0, K)`` (or neither class ids nor one-hot rows of width ``K``)
    and NaN / infinite predictions raise ``ValueError`` in ``update_state`` when it runs
    eagerly. Inside a compiled ``fit`` / ``evaluate`` (TensorFlow, JAX) those rows are left
    out and counted; the metric then reads NaN in the per-step logs and raises ``ValueError``
    when Keras reads it eagerly at the end of the epoch. PyTorch's ``torch.compile`` runs the
    eager check, which raises at the first bad batch. A label shape that is none of ``(b,)``,
    ``(b, 1)``, ``(b, K)`` raises when the step is traced.

    Example:
        >>> model.compile(loss="sparse_categorical_crossentropy",
        ...               metrics=[keras_vc.metrics.ExpectedCalibrationError()])
    """

    def __init__(self, num_bins=15, norm="l1", from_logits=None, name="ece", dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.num_bins = _validation.check_int(num_bins, "num_bins", minimum=1)
        self.norm = _validation.check_choice(norm, "norm", _binning.NORMS)
        self.from_logits = _labels.check_from_logits(from_logits)
        self._add_counters()
        shape = (self.num_bins,)
        self.counts = self.add_variable(shape, initializer="zeros", name="counts")
        self.confidence_sums = self.add_variable(shape, initializer="zeros", name="confidence_sums")
        self.accuracy_sums = self.add_variable(shape, initializer="zeros", name="accuracy_sums")

    def update_state(self, y_true, y_pred, sample_weight=None):
        probs, labels, weights, bad_labels, bad_predictions = _checked_batch(
            y_true, y_pred, self.from_logits, sample_weight)
        confidences = ops.max(probs, axis=-1)
        correct = ops.cast(ops.equal(ops.cast(ops.argmax(probs, axis=-1), "int32"), labels),
                           "float32")
        index = _binning.equal_width_bin_index(confidences, self.num_bins)
        one_hot = ops.one_hot(index, self.num_bins, dtype="float32") * ops.expand_dims(weights, -1)
        self._count(bad_labels, bad_predictions)
        self.counts.assign_add(ops.sum(one_hot, axis=0))
        self.confidence_sums.assign_add(ops.matmul(ops.expand_dims(confidences, 0), one_hot)[0])
        self.accuracy_sums.assign_add(ops.matmul(ops.expand_dims(correct, 0), one_hot)[0])

    def result(self):
        return self._guard(_binning.calibration_error_from_bins(
            self.counts, self.confidence_sums, self.accuracy_sums, self.norm
        ))

    def reset_state(self):
        for variable in (self.counts, self.confidence_sums, self.accuracy_sums):
            # ops.zeros_like would read the variable's dtype through NumPy, which JAX cannot do
            # for a Keras variable.
            variable.assign(ops.zeros(variable.shape, dtype=variable.dtype))
        self._reset_counters()

    def get_config(self):
        config = super().get_config()
        config.update(num_bins=self.num_bins, norm=self.norm, from_logits=self.from_logits)
        return config


@keras.saving.register_keras_serializable(package="keras_vc")
class BrierScore(_InvalidInputCounter):
    """Multi-class Brier score ``mean_i sum_k (p_ik - 1[y_i = k])^2`` accumulated over batches.

    Args:
        from_logits: as in :class:`ExpectedCalibrationError`.

    Bad input is handled as in :class:`ExpectedCalibrationError` (a label ``>= K`` would
    otherwise get an all-zero one-hot row and a silently wrong score).
    """

    def __init__(self, from_logits=None, name="brier", dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.from_logits = _labels.check_from_logits(from_logits)
        self._add_counters()
        self.total = self.add_variable((), initializer="zeros", name="total")
        self.count = self.add_variable((), initializer="zeros", name="count")

    def update_state(self, y_true, y_pred, sample_weight=None):
        probs, labels, weights, bad_labels, bad_predictions = _checked_batch(
            y_true, y_pred, self.from_logits, sample_weight)
        num_classes = probs.shape[-1]
        one_hot = ops.one_hot(labels, num_classes, dtype="float32")
        per_sample = _binning.brier_per_sample(one_hot, probs)
        self._count(bad_labels, bad_predictions)
        self.total.assign_add(ops.sum(per_sample * weights))
        self.count.assign_add(ops.sum(weights))

    def result(self):
        return self._guard(self.total / ops.maximum(self.count, 1e-12))

    def reset_state(self):
        self.total.assign(0.0)
        self.count.assign(0.0)
        self._reset_counters()

    def get_config(self):
        config = super().get_config()
        config.update(from_logits=self.from_logits)
        return config
