"""Set metrics, classwise ECE, risk-coverage curve, AURC and AUGRC against NumPy definitions
and hand-computed examples."""

import numpy as np
import pytest

from keras_vc import metrics


def _random(n=500, k=5, seed=0):
    rng = np.random.default_rng(seed)
    probs = rng.dirichlet(np.full(k, 0.7), size=n)
    labels = (probs.cumsum(axis=1) > rng.random((n, 1)) ** 1.5).argmax(axis=1)
    return labels, probs


def test_classwise_ece_equals_its_definition():
    labels, probs = _random()
    bins = 15
    n, k = probs.shape
    total = 0.0
    for c in range(k):
        index = np.clip(np.ceil(probs[:, c] * bins).astype(int) - 1, 0, bins - 1)
        for m in range(bins):
            members = index == m
            if members.any():
                gap = abs((labels[members] == c).mean() - probs[members, c].mean())
                total += members.sum() / n * gap
    assert metrics.classwise_calibration_error(labels, probs, num_bins=bins) == pytest.approx(
        total / k, abs=1e-12)


def test_classwise_ece_hand_example():
    # Class 0: bin (0.5, 1] holds p = 0.9, 0.6 with hits 1, 0: |0.5 - 0.75| * 2/2 = 0.25.
    # Class 1: bin [0, 0.5] holds p = 0.1, 0.4 with hits 0, 1: |0.5 - 0.25| = 0.25.
    value = metrics.classwise_calibration_error([0, 1], [[0.9, 0.1], [0.6, 0.4]], num_bins=2)
    assert value == pytest.approx(0.25)


def _curve_no_ties(labels, probs):
    order = np.argsort(-probs.max(axis=1))
    errors = (probs.argmax(axis=1) != labels)[order]
    m = np.arange(1, labels.size + 1)
    return m / labels.size, np.cumsum(errors) / m


def test_curve_aurc_and_augrc_equal_the_discrete_definitions_without_ties():
    labels, probs = _random(seed=1)
    coverages, risks = _curve_no_ties(labels, probs)
    got_c, got_r = metrics.risk_coverage_curve(labels, probs)
    np.testing.assert_allclose(got_c, coverages)
    np.testing.assert_allclose(got_r, risks)
    assert metrics.aurc(labels, probs) == pytest.approx(risks.mean(), abs=1e-12)
    assert metrics.augrc(labels, probs) == pytest.approx((coverages * risks).mean(), abs=1e-12)


def test_ties_are_accepted_together_hand_example():
    # Confidences 0.9, 0.7, 0.7, 0.6; errors 0, 1, 0, 1 (the two 0.7 are tied).
    probs = np.array([[0.9, 0.1], [0.7, 0.3], [0.3, 0.7], [0.6, 0.4]])
    labels = np.array([0, 1, 1, 1])
    coverages, risks = metrics.risk_coverage_curve(labels, probs)
    np.testing.assert_allclose(coverages, [0.25, 0.75, 1.0])
    np.testing.assert_allclose(risks, [0.0, 1 / 3, 0.5])
    assert metrics.aurc(labels, probs) == pytest.approx(0.25 * 0 + 0.5 / 3 + 0.25 * 0.5)
    assert metrics.augrc(labels, probs) == pytest.approx(0.5 * 0.75 / 3 + 0.25 * 0.5)


def test_a_perfect_ranking_reaches_the_optimal_aurc():
    labels, probs = _random(seed=2)
    correct = probs.argmax(axis=1) == labels
    confidence = correct + np.random.default_rng(3).random(labels.size) * 0.5
    n, n_correct = labels.size, correct.sum()
    m = np.arange(1, n + 1)
    optimum = np.mean(np.maximum(0, m - n_correct) / m)  # Geifman et al. 2019, discrete
    assert metrics.aurc(labels, probs, confidence=confidence) == pytest.approx(optimum)
    assert metrics.aurc(labels, probs) > optimum


def test_set_metrics_hand_example():
    sets = np.array([[1, 1, 0], [0, 1, 0], [0, 0, 0], [1, 0, 1]], dtype=bool)
    labels = np.array([0, 0, 2, 2])
    assert metrics.coverage(labels, sets) == 0.5
    assert metrics.mean_set_size(sets) == 1.25
    result = metrics.class_conditional_coverage(labels, sets)
    np.testing.assert_array_equal(result.per_class, [0.5, np.nan, 0.5])
    assert (result.worst, result.worst_class) == (0.5, 0)
    labels = np.array([0, 1, 2, 2])
    result = metrics.class_conditional_coverage(labels, sets)
    np.testing.assert_array_equal(result.per_class, [1.0, 1.0, 0.5])
    assert (result.worst, result.worst_class) == (0.5, 2)


def test_bad_input():
    labels, probs = _random(20)
    sets = probs > 0.2
    with pytest.raises(ValueError, match="sets"):
        metrics.coverage(labels, sets[0])
    with pytest.raises(ValueError, match="sets"):
        metrics.mean_set_size(probs)
    with pytest.raises(ValueError, match="labels"):
        metrics.coverage(labels[:-1], sets)
    with pytest.raises(ValueError, match="labels"):
        metrics.class_conditional_coverage(labels + 5, sets)
    with pytest.raises(ValueError, match="confidence"):
        metrics.aurc(labels, probs, confidence=np.ones(3))
    with pytest.raises(ValueError, match="probs"):
        metrics.augrc(labels, probs * 2)
    with pytest.raises(ValueError, match="num_bins"):
        metrics.classwise_calibration_error(labels, probs, num_bins=0)
    with pytest.raises(ValueError, match="labels"):
        metrics.classwise_calibration_error(labels[:-1], probs)
