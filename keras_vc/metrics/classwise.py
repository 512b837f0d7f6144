"""Classwise expected calibration error (Kull et al., NeurIPS 2019, arXiv 1910.12656)."""

import numpy as np

from keras_vc import _validation
from keras_vc.metrics import _binning


def classwise_calibration_error(labels, probs, num_bins=15):
    """Mean over classes of the ECE of each class's probability column.

    ``cwECE = (1/K) sum_k sum_m (|B_km| / n) |mean_{B_km} 1[y = k] - mean_{B_km} p_k|`` where
    ``B_km`` bins **all** ``n`` points by ``p_k`` with keras_vc's equal-width bins ``(lo, hi]``
    (first ``[0, 1/M]``, :mod:`keras_vc.metrics._binning`). The reference code (Kull et al.'s
    experiments) uses ``num_bins - 1`` equal-width bins plus a separate bin for ``p = 1``.

    Args:
        labels: (n,) integer labels (or one-hot).
        probs: (n, K) probabilities.
        num_bins: bins per class (>= 1).

    Returns:
        A float in [0, 1].
    """
    num_bins = _validation.check_int(num_bins, "num_bins", minimum=1)
    probs = _validation.check_probabilities(probs, "probs")
    labels = _validation.check_labels(labels, probs.shape[1], num_samples=probs.shape[0])
    index = _binning.equal_width_bin_index(probs, num_bins)
    total = 0.0
    for k in range(probs.shape[1]):
        counts, confidence_sums, hit_sums = _binning.bin_sums(
            index[:, k], probs[:, k], (labels == k).astype(np.float64), num_bins)
        total += float(_binning.calibration_error_from_bins(counts, confidence_sums, hit_sums))
    return total / probs.shape[1]
