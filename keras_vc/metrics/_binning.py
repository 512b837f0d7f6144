"""The one home of confidence binning and of the calibration-error reduction.

Both the NumPy functions (:mod:`keras_vc.metrics.calibration`) and the streaming Keras metrics
(:mod:`keras_vc.metrics.streaming`) call these, so the two can never disagree on a bin edge.
Each formula is written once against a small array namespace: NumPy for NumPy input (fast, float64,
no framework overhead in the temperature search's hundreds of evaluations) and ``keras.ops`` for
backend tensors (inside compiled train steps).

Convention (Guo et al. 2017; DisMax ``ECELoss``): ``num_bins`` equal-width bins with edges
``linspace(0, 1, num_bins + 1)``; bin ``m`` is ``(edge_m, edge_{m+1}]`` and the first bin is
closed on the left, ``[0, 1/num_bins]``. A confidence of exactly 1.0 falls in the last bin.
"""

import numpy as np
from keras import ops

NORMS = ("l1", "l2", "max")


class _NumpyOps:
    """The subset of ``keras.ops`` used below, on NumPy arrays."""

    def __getattr__(self, name):
        return getattr(np, name)

    @staticmethod
    def convert_to_tensor(x, dtype=None):
        return np.asarray(x, dtype=dtype)

    @staticmethod
    def cast(x, dtype):
        return np.asarray(x).astype(dtype)

    @staticmethod
    def one_hot(index, num_classes, dtype):
        return np.eye(num_classes, dtype=dtype)[np.asarray(index)]


_NUMPY_OPS = _NumpyOps()


def _namespace(*arrays):
    """NumPy for NumPy (or Python) input, ``keras.ops`` as soon as one argument is a tensor."""
    if all(isinstance(a, (np.ndarray, np.generic, float, int, list)) for a in arrays):
        return _NUMPY_OPS
    return ops


def equal_width_bin_index(confidences, num_bins):
    """Bin index in ``[0, num_bins - 1]`` of each confidence (``(lo, hi]`` bins, first ``[0, hi]``).

    The index is the number of interior edges strictly below the confidence.
    """
    xp = _namespace(confidences)
    confidences = xp.convert_to_tensor(confidences)
    interior = np.linspace(0.0, 1.0, num_bins + 1)[1:-1]
    interior = xp.convert_to_tensor(interior, dtype=confidences.dtype)
    above = xp.cast(xp.expand_dims(confidences, -1) > interior, "int32")
    return xp.sum(above, axis=-1)


def bin_sums(bin_index, confidences, correct, num_bins):
    """Per-bin sample counts, confidence sums and accuracy sums, each of shape (num_bins,)."""
    xp = _namespace(bin_index, confidences, correct)
    one_hot = xp.one_hot(bin_index, num_bins, dtype=confidences.dtype)
    counts = xp.sum(one_hot, axis=0)
    confidence_sums = xp.matmul(xp.expand_dims(confidences, 0), one_hot)[0]
    accuracy_sums = xp.matmul(xp.expand_dims(xp.cast(correct, confidences.dtype), 0), one_hot)[0]
    return counts, confidence_sums, accuracy_sums


def calibration_error_from_bins(counts, confidence_sums, accuracy_sums, norm="l1"):
    """Reduces per-bin statistics to a calibration error; empty bins contribute nothing.

    ``l1`` is the ECE (sum of |acc - conf| weighted by bin mass), ``l2`` its root-mean-square form
    and ``max`` the MCE (largest gap over non-empty bins).
    """
    xp = _namespace(counts, confidence_sums, accuracy_sums)
    counts = xp.convert_to_tensor(counts)
    confidence_sums = xp.convert_to_tensor(confidence_sums, dtype=counts.dtype)
    accuracy_sums = xp.convert_to_tensor(accuracy_sums, dtype=counts.dtype)
    nonempty = counts > 0
    safe_counts = xp.where(nonempty, counts, xp.ones_like(counts))
    gaps = xp.where(
        nonempty, xp.abs(accuracy_sums - confidence_sums) / safe_counts, xp.zeros_like(counts)
    )
    total = xp.maximum(xp.sum(counts), xp.cast(1, counts.dtype))
    weights = counts / total
    if norm == "l1":
        return xp.sum(weights * gaps)
    if norm == "l2":
        return xp.sqrt(xp.sum(weights * xp.square(gaps)))
    if norm == "max":
        return xp.max(gaps)
    raise ValueError(f"`norm` must be one of {list(NORMS)}, got {norm!r}.")


def brier_per_sample(one_hot_labels, probs):
    """Multi-class Brier score of each row: ``sum_k (p_k - y_k)^2`` (range [0, 2])."""
    xp = _namespace(one_hot_labels, probs)
    return xp.sum(xp.square(probs - one_hot_labels), axis=-1)
