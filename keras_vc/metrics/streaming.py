"""Streaming Keras metrics for ``model.compile(metrics=[...])``.

They accumulate exact per-bin sums, so the value over any split into batches equals the NumPy
function of :mod:`keras_vc.metrics.calibration` on the concatenated data (up to float32 sums).
"""

import keras
from keras import ops

from keras_vc import _validation
from keras_vc.metrics import _binning


def _to_probabilities(y_pred, from_logits):
    """Probabilities from ``y_pred``; ``from_logits=None`` decides per batch.

    In the automatic mode a batch whose rows are all in [0, 1] and sum to 1 (within 1e-3) is
    taken as probabilities, anything else as logits. Pass ``from_logits`` explicitly to force it.
    """
    y_pred = ops.cast(y_pred, "float32")
    if from_logits is True:
        return ops.softmax(y_pred, axis=-1)
    if from_logits is False:
        return y_pred
    tolerance = _validation.PROBABILITY_TOLERANCE
    looks_like_probs = ops.logical_and(
        ops.logical_and(ops.min(y_pred) >= -tolerance, ops.max(y_pred) <= 1 + tolerance),
        ops.max(ops.abs(ops.sum(y_pred, axis=-1) - 1.0)) <= tolerance,
    )
    return ops.where(looks_like_probs, y_pred, ops.softmax(y_pred, axis=-1))


def _sparse_labels(y_true, num_classes):
    """Integer labels from sparse (n,), (n, 1) or one-hot (n, K) ``y_true``."""
    if len(y_true.shape) == 2 and y_true.shape[-1] == num_classes and num_classes > 1:
        return ops.argmax(y_true, axis=-1)
    return ops.cast(ops.reshape(y_true, (-1,)), "int32")


def _check_from_logits(from_logits):
    if from_logits not in (None, True, False):
        raise ValueError(f"`from_logits` must be True, False or None (auto), got {from_logits!r}.")
    return from_logits


@keras.saving.register_keras_serializable(package="keras_vc")
class ExpectedCalibrationError(keras.metrics.Metric):
    """Top-label calibration error accumulated over batches (equal-width bins).

    Args:
        num_bins: number of equal-width bins ``(lo, hi]`` (first ``[0, 1/M]``), >= 1.
        norm: ``"l1"`` (ECE), ``"l2"`` or ``"max"`` (MCE).
        from_logits: ``True`` for logits, ``False`` for probabilities, ``None`` (default) to
            detect per batch (rows in [0, 1] summing to 1 are probabilities).

    Example:
        >>> model.compile(loss="sparse_categorical_crossentropy",
        ...               metrics=[keras_vc.metrics.ExpectedCalibrationError()])
    """

    def __init__(self, num_bins=15, norm="l1", from_logits=None, name="ece", dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.num_bins = _validation.check_int(num_bins, "num_bins", minimum=1)
        self.norm = _validation.check_choice(norm, "norm", _binning.NORMS)
        self.from_logits = _check_from_logits(from_logits)
        shape = (self.num_bins,)
        self.counts = self.add_variable(shape, initializer="zeros", name="counts")
        self.confidence_sums = self.add_variable(shape, initializer="zeros", name="confidence_sums")
        self.accuracy_sums = self.add_variable(shape, initializer="zeros", name="accuracy_sums")

    def update_state(self, y_true, y_pred, sample_weight=None):
        probs = _to_probabilities(y_pred, self.from_logits)
        labels = _sparse_labels(y_true, probs.shape[-1])
        confidences = ops.max(probs, axis=-1)
        correct = ops.cast(ops.equal(ops.cast(ops.argmax(probs, axis=-1), "int32"),
                                     ops.cast(labels, "int32")), "float32")
        index = _binning.equal_width_bin_index(confidences, self.num_bins)
        one_hot = ops.one_hot(index, self.num_bins, dtype="float32")
        if sample_weight is not None:
            one_hot = one_hot * ops.reshape(ops.cast(sample_weight, "float32"), (-1, 1))
        self.counts.assign_add(ops.sum(one_hot, axis=0))
        self.confidence_sums.assign_add(ops.matmul(ops.expand_dims(confidences, 0), one_hot)[0])
        self.accuracy_sums.assign_add(ops.matmul(ops.expand_dims(correct, 0), one_hot)[0])

    def result(self):
        return _binning.calibration_error_from_bins(
            self.counts, self.confidence_sums, self.accuracy_sums, self.norm
        )

    def reset_state(self):
        for variable in (self.counts, self.confidence_sums, self.accuracy_sums):
            variable.assign(ops.zeros_like(variable))

    def get_config(self):
        config = super().get_config()
        config.update(num_bins=self.num_bins, norm=self.norm, from_logits=self.from_logits)
        return config


@keras.saving.register_keras_serializable(package="keras_vc")
class BrierScore(keras.metrics.Metric):
    """Multi-class Brier score ``mean_i sum_k (p_ik - 1[y_i = k])^2`` accumulated over batches.

    Args:
        from_logits: as in :class:`ExpectedCalibrationError`.
    """

    def __init__(self, from_logits=None, name="brier", dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.from_logits = _check_from_logits(from_logits)
        self.total = self.add_variable((), initializer="zeros", name="total")
        self.count = self.add_variable((), initializer="zeros", name="count")

    def update_state(self, y_true, y_pred, sample_weight=None):
        probs = _to_probabilities(y_pred, self.from_logits)
        num_classes = probs.shape[-1]
        one_hot = ops.one_hot(_sparse_labels(y_true, num_classes), num_classes, dtype="float32")
        per_sample = _binning.brier_per_sample(one_hot, probs)
        weights = ops.ones_like(per_sample)
        if sample_weight is not None:
            weights = ops.reshape(ops.cast(sample_weight, "float32"), (-1,)) * weights
        self.total.assign_add(ops.sum(per_sample * weights))
        self.count.assign_add(ops.sum(weights))

    def result(self):
        return self.total / ops.maximum(self.count, 1e-12)

    def reset_state(self):
        self.total.assign(0.0)
        self.count.assign(0.0)

    def get_config(self):
        config = super().get_config()
        config.update(from_logits=self.from_logits)
        return config
