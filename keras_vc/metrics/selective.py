"""Selective classification: risk-coverage curve, AURC and AUGRC on NumPy arrays.

A classifier that abstains on its least confident inputs accepts the ``m`` most confident of
``n`` (confidence ``kappa``, by default the largest probability); the prediction is
``argmax p`` and the error ``e = 1[argmax p != y]``. Accepting the top ``m``: coverage
``c_m = m / n``, selective risk ``r_m = (1/m) sum_{j<=m} e_(j)`` (Geifman & El-Yaniv, NeurIPS
2017) and generalised risk ``g_m = c_m r_m``.

Ties: inputs with equal confidence are accepted or rejected together, so the curve has one point
per distinct confidence (at the last of the tied inputs), as in fd-shifts.

Areas (lower is better) are right-endpoint sums over those points,
``sum_j (c_j - c_{j-1}) r_j`` with ``c_0 = 0``; without ties this is the discrete
``(1/n) sum_{m=1}^n r_m``. AURC: Geifman, Uziel & El-Yaniv (ICLR 2019); AUGRC: the same sum
over ``g`` (Traub et al., NeurIPS 2024). fd-shifts and torch-uncertainty use trapezoids that
differ by O(1/n) and report x1000.
"""

import numpy as np

from keras_vc import _validation


def _confidences_and_errors(labels, probs, confidence):
    probs = _validation.check_probabilities(probs, "probs")
    labels = _validation.check_labels(labels, probs.shape[1], num_samples=probs.shape[0])
    if confidence is None:
        confidence = probs.max(axis=1)
    else:
        confidence = _validation.check_finite_array(confidence, "confidence", ndim=1)
        if confidence.shape[0] != labels.shape[0]:
            raise ValueError(f"`confidence` has {confidence.shape[0]} entries but `probs` has "
                             f"{labels.shape[0]} rows.")
    errors = (probs.argmax(axis=1) != labels).astype(np.float64)
    return confidence, errors


def risk_coverage_curve(labels, probs, confidence=None):
    """Coverages and selective risks, one point per distinct confidence.

    Args:
        labels: (n,) integer labels.
        probs: (n, K) probabilities (the prediction is their argmax).
        confidence: optional (n,) confidence, higher = more confident; default ``max p``.

    Returns:
        ``(coverages, risks)``: increasing coverages in (0, 1] ending at 1, and the selective
        risk (error rate among accepted inputs) at each.
    """
    confidence, errors = _confidences_and_errors(labels, probs, confidence)
    order = np.argsort(-confidence, kind="stable")
    kappa = confidence[order]
    accepted = np.arange(1, kappa.size + 1)
    cumulative_errors = np.cumsum(errors[order])
    last_of_tie = np.append(kappa[1:] != kappa[:-1], True)
    coverages = accepted[last_of_tie] / kappa.size
    risks = cumulative_errors[last_of_tie] / accepted[last_of_tie]
    return coverages, risks


def _area(coverages, values):
    widths = np.diff(np.concatenate([[0.0], coverages]))
    return float(np.sum(widths * values))


def aurc(labels, probs, confidence=None):
    """Area under the risk-coverage curve (right-endpoint sum; see the module docstring)."""
    coverages, risks = risk_coverage_curve(labels, probs, confidence)
    return _area(coverages, risks)


def augrc(labels, probs, confidence=None):
    """Area under the generalised risk-coverage curve ``(c, c * r)`` (Traub et al. 2024)."""
    coverages, risks = risk_coverage_curve(labels, probs, confidence)
    return _area(coverages, coverages * risks)
