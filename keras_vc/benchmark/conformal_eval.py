"""Conformal prediction sets of one trained classifier, from its validation and test logits.

Protocol (stated in the report). The validation split is cut in two stratified halves drawn
from the run's seed: the **tuning half** fits the temperature the sets use (by NLL, as the
``(TS)`` figures) and RAPS's ``k_reg`` and ``lam`` (:func:`keras_vc.conformal.tune_raps`); the
**calibration half** sets the conformal threshold ``qhat``. The sets of the test split are then
built from ``softmax(logits / T_half)``. Nothing that sets ``qhat`` has seen the calibration
half, so the split-conformal guarantee ``P(y in C(x)) >= 1 - alpha`` holds exactly (marginally,
over calibration and test draws; Angelopoulos & Bates, arXiv 2107.07511). The price: ``qhat``
comes from half of the validation points, and the temperature differs slightly from the one of
the ``(TS)`` columns (fitted on all of validation).

Scores: APS (Romano et al., NeurIPS 2020) and RAPS (Angelopoulos et al., ICLR 2021), both
randomised, and LAC (Sadinle et al., JASA 2019), from :mod:`keras_vc.conformal`; coverage, set
size and the worst class's coverage from :mod:`keras_vc.metrics`.
"""

import warnings

import numpy as np

from keras_vc import calibration
from keras_vc import conformal
from keras_vc import metrics
from keras_vc.robustness import subsets

SET_SCORES = ("aps", "raps", "lac")
TEMPERATURE_OBJECTIVE = calibration.temperature.DEFAULT_OBJECTIVE


def alpha_key(alpha):
    """The figures' key of a miscoverage level (``0.1 -> "0.1"``)."""
    return f"{alpha:g}"


def split_validation(y_val, seed):
    """Stratified halves of the validation split: ``(tuning indices, calibration indices)``."""
    tuning = subsets.stratified_subset_indices(np.asarray(y_val), 0.5, seed=seed)
    calibration_half = np.setdiff1d(np.arange(len(y_val)), tuning)
    return tuning, calibration_half


def set_figures(labels, sets):
    """Coverage, mean set size and the worst class's coverage of (m, K) prediction sets."""
    return {"coverage": metrics.coverage(labels, sets),
            "set_size": metrics.mean_set_size(sets),
            "worst_class_coverage": metrics.class_conditional_coverage(labels, sets).worst}


def conformal_figures(val_logits, y_val, test_logits, y_test, alphas, seed):
    """Split-conformal sets on the test split for every ``alpha`` and score.

    Args:
        val_logits: (n_val, K) validation logits at temperature 1.
        y_val: (n_val,) validation labels.
        test_logits: (m, K) test logits at temperature 1.
        y_test: (m,) test labels.
        alphas: miscoverage levels in (0, 1).
        seed: non-negative integer: the validation halves and the randomised scores' draws.

    Returns:
        ``{"temperature": T_half, "calibration_samples": n, alpha_key: {score: {"coverage",
        "set_size", "worst_class_coverage", "qhat_infinite"}}}``. ``qhat_infinite`` is True
        when the calibration half is too small for ``alpha`` (every set is then all labels).
    """
    tuning, calibration_half = split_validation(y_val, seed)
    y_tune, y_cal = np.asarray(y_val)[tuning], np.asarray(y_val)[calibration_half]
    temperature = calibration.find_temperature(
        val_logits[tuning], y_tune, objective=TEMPERATURE_OBJECTIVE).temperature
    probs_tune = calibration.softmax(val_logits[tuning], temperature)
    probs_cal = calibration.softmax(val_logits[calibration_half], temperature)
    probs_test = calibration.softmax(test_logits, temperature)
    figures = {"temperature": temperature, "calibration_samples": int(calibration_half.size)}
    for alpha in alphas:
        k_reg, lam = conformal.tune_raps(probs_tune, y_tune, alpha=alpha, seed=seed)
        by_score = {}
        for score in SET_SCORES:
            options = {"k_reg": k_reg, "lam": lam} if score == "raps" else {}
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # an infinite qhat is flagged
                predictor = conformal.SplitConformal(score, alpha=alpha, seed=seed,
                                                     **options).fit(probs_cal, y_cal)
            by_score[score] = dict(set_figures(y_test, predictor.predict(probs_test)),
                                   qhat_infinite=bool(np.isinf(predictor.qhat)))
        by_score["raps"].update(k_reg=k_reg, lam=lam)
        figures[alpha_key(alpha)] = by_score
    return figures
