"""The one home of confidence binning and of the calibration-error reduction.

Both the NumPy functions (:mod:`keras_vc.metrics.calibration`) and the streaming Keras metrics
(:mod:`keras_vc.metrics.streaming`) call these, so the two can never disagree on a bin edge.
They are written with ``keras.ops`` and accept NumPy arrays as well as backend tensors.

Convention (Guo et al. 2017; DisMax ``ECELoss``): ``num_bins`` equal-width bins with edges
``linspace(0, 1, num_bins + 1)``; bin ``m`` is ``(edge_m, edge_{m+1}]`` and the first bin is
closed on the left, ``[0, 1/num_bins]``. A confidence of exactly 1.0 falls in the last bin.
"""

import numpy as np
from keras import ops

NORMS = ("l1", "l2", "max")


def equal_width_bin_index(confidences, num_bins):
    """Bin index in ``[0, num_bins - 1]`` of each confidence (``(lo, hi]`` bins, first ``[0, hi]``).

    The index is the number of interior edges strictly below the confidence.
    """
    confidences = ops.convert_to_tensor(confidences)
    interior = np.linspace(0.0, 1.0, num_bins + 1)[1:-1]
    interior = ops.convert_to_tensor(interior, dtype=confidences.dtype)
    above = ops.cast(ops.expand_dims(confidences, -1) > interior, "int32")
    return ops.sum(above, axis=-1)


def bin_sums(bin_index, confidences, correct, num_bins):
    """Per-bin sample counts, confidence sums and accuracy sums, each of shape (num_bins,)."""
    one_hot = ops.one_hot(bin_index, num_bins, dtype=confidences.dtype)
    counts = ops.sum(one_hot, axis=0)
    confidence_sums = ops.matmul(ops.expand_dims(confidences, 0), one_hot)[0]
    accuracy_sums = ops.matmul(ops.expand_dims(ops.cast(correct, confidences.dtype), 0), one_hot)[0]
    return counts, confidence_sums, accuracy_sums


def calibration_error_from_bins(counts, confidence_sums, accuracy_sums, norm="l1"):
    """Reduces per-bin statistics to a calibration error; empty bins contribute nothing.

    ``l1`` is the ECE (sum of |acc - conf| weighted by bin mass), ``l2`` its root-mean-square form
    and ``max`` the MCE (largest gap over non-empty bins).
    """
    counts = ops.convert_to_tensor(counts)
    confidence_sums = ops.convert_to_tensor(confidence_sums, dtype=counts.dtype)
    accuracy_sums = ops.convert_to_tensor(accuracy_sums, dtype=counts.dtype)
    nonempty = counts > 0
    safe_counts = ops.where(nonempty, counts, ops.ones_like(counts))
    gaps = ops.where(
        nonempty, ops.abs(accuracy_sums - confidence_sums) / safe_counts, ops.zeros_like(counts)
    )
    total = ops.maximum(ops.sum(counts), ops.cast(1, counts.dtype))
    weights = counts / total
    if norm == "l1":
        return ops.sum(weights * gaps)
    if norm == "l2":
        return ops.sqrt(ops.sum(weights * ops.square(gaps)))
    if norm == "max":
        return ops.max(gaps)
    raise ValueError(f"`norm` must be one of {list(NORMS)}, got {norm!r}.")


def brier_per_sample(one_hot_labels, probs):
    """Multi-class Brier score of each row: ``sum_k (p_k - y_k)^2`` (range [0, 2])."""
    return ops.sum(ops.square(probs - one_hot_labels), axis=-1)
