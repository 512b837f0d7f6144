"""Out-of-distribution detection metrics on NumPy arrays.

Convention (ODIN, Energy, DisMax): a score is **higher for more in-distribution** inputs and
in-distribution samples are the **positive** class.

* ``auroc``: area under the ROC curve of in- vs out-of-distribution; ties count one half
  (equal to ``sklearn.metrics.roc_auc_score(is_in, score)``).
* ``aupr_in``: average precision with in-distribution as positive and the score as is;
  ``aupr_out``: average precision with out-of-distribution as positive and the negated score.
  Both are step-wise (equal to ``sklearn.metrics.average_precision_score``), not trapezoidal.
* ``fpr_at_95_tpr``: the threshold ``t`` is the highest score that keeps at least 95% of the
  in-distribution samples (``score >= t``); the result is the fraction of out-of-distribution
  samples with ``score >= t``. Libraries that treat OOD as positive (Outlier Exposure,
  torch-uncertainty ``FPRx``) compute a different number.
* ``detection_error``: ``min_t 0.5 (1 - TPR(t)) + 0.5 FPR(t)`` over all thresholds (ODIN), i.e.
  one minus the best balanced detection accuracy.
"""

import math

import numpy as np

from keras_vc import _validation


def _check_scores(scores_in, scores_out):
    scores_in = _validation.check_finite_array(scores_in, "scores_in").reshape(-1)
    scores_out = _validation.check_finite_array(scores_out, "scores_out").reshape(-1)
    return scores_in, scores_out


def auroc(scores_in, scores_out):
    """Area under the ROC curve, in-distribution positive, ties counted one half."""
    from scipy import stats  # here, not at the top: `import keras_vc` stays free of SciPy

    scores_in, scores_out = _check_scores(scores_in, scores_out)
    ranks = stats.rankdata(np.concatenate([scores_in, scores_out]))
    n_in, n_out = scores_in.size, scores_out.size
    rank_sum = ranks[:n_in].sum()
    return float((rank_sum - n_in * (n_in + 1) / 2.0) / (n_in * n_out))


def _average_precision(positive, negative):
    """Step-wise average precision: sum over distinct thresholds of (R_n - R_{n-1}) P_n."""
    scores = np.concatenate([positive, negative])
    is_positive = np.concatenate([np.ones(positive.size), np.zeros(negative.size)])
    order = np.argsort(-scores, kind="mergesort")
    scores, is_positive = scores[order], is_positive[order]
    true_positives = np.cumsum(is_positive)
    false_positives = np.cumsum(1 - is_positive)
    # Keep the last position of each run of tied scores: one operating point per threshold.
    last_of_threshold = np.r_[np.diff(scores) != 0, True]
    true_positives = true_positives[last_of_threshold]
    false_positives = false_positives[last_of_threshold]
    precision = true_positives / (true_positives + false_positives)
    recall = true_positives / positive.size
    recall_steps = np.diff(np.r_[0.0, recall])
    return float(np.sum(recall_steps * precision))


def aupr_in(scores_in, scores_out):
    """Average precision with in-distribution as the positive class."""
    scores_in, scores_out = _check_scores(scores_in, scores_out)
    return _average_precision(scores_in, scores_out)


def aupr_out(scores_in, scores_out):
    """Average precision with out-of-distribution as the positive class (score negated)."""
    scores_in, scores_out = _check_scores(scores_in, scores_out)
    return _average_precision(-scores_out, -scores_in)


def fpr_at_tpr(scores_in, scores_out, tpr=0.95):
    """Fraction of OOD samples at or above the highest threshold keeping ``tpr`` of ID samples."""
    scores_in, scores_out = _check_scores(scores_in, scores_out)
    tpr = _validation.check_float(tpr, "tpr", minimum=0.0, maximum=1.0, strict_minimum=True)
    return float(np.mean(scores_out >= threshold_at_tpr(scores_in, tpr)))


def threshold_at_tpr(scores_in, tpr=0.95):
    """The highest score ``t`` such that at least ``tpr`` of ``scores_in`` satisfy ``score >= t``.

    Used to turn an OOD score into a decision: inputs scoring below ``t`` are flagged as OOD.
    """
    scores_in = _validation.check_finite_array(scores_in, "scores_in").reshape(-1)
    tpr = _validation.check_float(tpr, "tpr", minimum=0.0, maximum=1.0, strict_minimum=True)
    keep = math.ceil(tpr * scores_in.size - 1e-9)
    return float(np.sort(scores_in)[::-1][keep - 1])


def detection_error(scores_in, scores_out):
    """``min_t 0.5 (1 - TPR(t)) + 0.5 FPR(t)`` over every threshold, in [0, 0.5]."""
    scores_in, scores_out = _check_scores(scores_in, scores_out)
    thresholds = np.unique(np.concatenate([scores_in, scores_out]))
    sorted_in, sorted_out = np.sort(scores_in), np.sort(scores_out)
    tpr = 1.0 - np.searchsorted(sorted_in, thresholds, side="left") / sorted_in.size
    fpr = 1.0 - np.searchsorted(sorted_out, thresholds, side="left") / sorted_out.size
    errors = 0.5 * (1.0 - tpr) + 0.5 * fpr
    # A threshold above every score rejects everything: error 0.5.
    return float(min(errors.min(), 0.5))


def ood_metrics(scores_in, scores_out):
    """All OOD metrics at once.

    Args:
        scores_in: scores of in-distribution samples, shape (n_in,); higher = more in-distribution.
        scores_out: scores of out-of-distribution samples, shape (n_out,).

    Returns:
        dict with ``auroc``, ``aupr_in``, ``aupr_out``, ``fpr_at_95_tpr`` and ``detection_error``
        (see the module docstring for the exact conventions).

    Example:
        >>> m = ood_metrics([0.9, 0.8, 0.7], [0.1, 0.75])
        >>> round(m["auroc"], 3)
        0.833
    """
    scores_in, scores_out = _check_scores(scores_in, scores_out)
    return {
        "auroc": auroc(scores_in, scores_out),
        "aupr_in": aupr_in(scores_in, scores_out),
        "aupr_out": aupr_out(scores_in, scores_out),
        "fpr_at_95_tpr": fpr_at_tpr(scores_in, scores_out, 0.95),
        "detection_error": detection_error(scores_in, scores_out),
    }
