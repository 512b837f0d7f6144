"""Calibration metrics on NumPy arrays: ECE (and its l2 / max / adaptive variants), Brier, NLL.

Conventions, shared with :mod:`keras_vc.metrics.streaming`:

* Top-label calibration: the confidence of a sample is its largest probability, and it is
  "correct" when that class is the label (ties go to the lowest class index, as ``argmax``).
* ``binning="equal_width"``: ``num_bins`` bins ``(lo, hi]`` on [0, 1], the first one ``[0, 1/M]``.
* ``binning="equal_mass"``: the samples sorted by confidence and split into ``num_bins`` groups
  whose sizes differ by at most one (the adaptive ECE of Nixon et al. 2019); samples with equal
  confidence may fall into neighbouring groups.
* Results are fractions in [0, 1] (multiply by 100 for the "x100" tables of some papers).
"""

import numpy as np

from keras_vc import _validation
from keras_vc.metrics import _binning

BINNINGS = ("equal_width", "equal_mass")


def _checked(labels, probs):
    probs = _validation.check_probabilities(probs, "probs")
    labels = _validation.check_labels(labels, probs.shape[1], num_samples=probs.shape[0])
    return labels, probs


def top_label_statistics(labels, probs):
    """Returns (confidences, correct) of the top label after validating the inputs."""
    labels, probs = _checked(labels, probs)
    confidences = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == labels).astype(np.float64)
    return confidences, correct


def binned_statistics(labels, probs, num_bins=15, binning="equal_width"):
    """Per-bin (counts, mean confidence, accuracy, bin edges) used by ECE and reliability plots.

    Mean confidence and accuracy are NaN for empty bins. For equal-mass binning the returned
    edges are the smallest confidence of each bin followed by 1.0.
    """
    num_bins = _validation.check_int(num_bins, "num_bins", minimum=1)
    _validation.check_choice(binning, "binning", BINNINGS)
    confidences, correct = top_label_statistics(labels, probs)
    if binning == "equal_width":
        index = _binning.equal_width_bin_index(confidences, num_bins)
        edges = np.linspace(0.0, 1.0, num_bins + 1)
    else:
        order = np.argsort(confidences, kind="stable")
        index = np.empty(confidences.shape[0], dtype=np.int64)
        groups = np.array_split(order, num_bins)
        for group_id, members in enumerate(groups):
            index[members] = group_id
        lows = [confidences[g].min() if g.size else np.nan for g in groups]
        edges = np.array(lows + [1.0])
    counts, confidence_sums, accuracy_sums = _binning.bin_sums(index, confidences, correct,
                                                               num_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_confidence = np.where(counts > 0, confidence_sums / counts, np.nan)
        accuracy = np.where(counts > 0, accuracy_sums / counts, np.nan)
    return counts, mean_confidence, accuracy, edges, (confidence_sums, accuracy_sums)


def expected_calibration_error(labels, probs, num_bins=15, norm="l1", binning="equal_width"):
    """Top-label expected calibration error.

    Args:
        labels: integer class ids of shape (n,) (or (n, 1), or one-hot (n, K)).
        probs: predicted probabilities of shape (n, K); rows must sum to 1.
        num_bins: number of bins (>= 1). 15 is the DisMax / uncertainty-baselines default.
        norm: ``"l1"`` (ECE), ``"l2"`` (root-mean-square calibration error) or ``"max"`` (MCE).
        binning: ``"equal_width"`` or ``"equal_mass"`` (adaptive ECE).

    Returns:
        A float in [0, 1].

    Example:
        >>> expected_calibration_error([0, 1], [[0.9, 0.1], [0.6, 0.4]], num_bins=10)
        0.35
    """
    _validation.check_choice(norm, "norm", _binning.NORMS)
    counts, _, _, _, (confidence_sums, accuracy_sums) = binned_statistics(
        labels, probs, num_bins, binning
    )
    value = _binning.calibration_error_from_bins(counts, confidence_sums, accuracy_sums, norm)
    return float(value)


def brier_score(labels, probs):
    """Multi-class Brier score: mean over samples of ``sum_k (p_k - 1[y = k])^2``, in [0, 2]."""
    labels, probs = _checked(labels, probs)
    one_hot = np.eye(probs.shape[1])[labels]
    return float(np.mean(_binning.brier_per_sample(one_hot, probs)))


def negative_log_likelihood(labels, probs, eps=1e-12):
    """Mean negative log-probability of the true class (probabilities clipped at ``eps``)."""
    labels, probs = _checked(labels, probs)
    eps = _validation.check_float(eps, "eps", minimum=0.0)
    true_class = probs[np.arange(labels.shape[0]), labels]
    return float(-np.mean(np.log(np.maximum(true_class, eps))))


def accuracy(labels, probs):
    """Fraction of samples whose top class is the label."""
    _, correct = top_label_statistics(labels, probs)
    return float(correct.mean())
