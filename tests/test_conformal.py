"""Split-conformal sets: the coverage guarantee and its Beta-binomial law, exact LAC / APS / RAPS
sets against NumPy written here, RAPS tuning, export path, save / load and bad input."""

import math
import warnings
from fractions import Fraction

import keras
import numpy as np
import pytest
from scipy import stats

from backends import compiled
import keras_vc
from keras_vc import calibration
from keras_vc import conformal
from keras_vc import metrics

K = 10
CONFIGS = [("lac", False), ("aps", True), ("aps", False), ("raps", True), ("raps", False)]


def _pool(n=1000, k=K, seed=0):
    """Fixed, over-confident predictions: labels from a hotter softmax than the one reported."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(scale=2.5, size=(n, k))
    probs = calibration.softmax(logits)
    true_probs = calibration.softmax(logits, 1.8)
    labels = (true_probs.cumsum(axis=1) > rng.random((n, 1))).argmax(axis=1)
    return probs, labels


def _k(n, alpha):
    """ceil((n + 1)(1 - alpha)) in exact rational arithmetic."""
    return math.ceil((n + 1) * (1 - Fraction(str(alpha))))


def _np_scores(probs, score, uniform=None, k_reg=0, lam=0.0):
    """Every label's score from the definitions, one row and label at a time."""
    out = np.empty_like(probs)
    for i, row in enumerate(probs):
        ranking = sorted(range(row.size), key=lambda j: (-row[j], j))
        for y in range(row.size):
            if score == "lac":
                out[i, y] = 1 - row[y]
                continue
            rank = ranking.index(y) + 1
            above = sum(row[j] for j in ranking[:rank - 1])
            u = 1.0 if uniform is None else uniform[i]
            out[i, y] = above + u * row[y] + (lam * max(0, rank - k_reg) if score == "raps" else 0)
    return out


def _np_sets(cal_probs, cal_labels, test_probs, alpha, score, k_reg=0, lam=0.0):
    cal = _np_scores(cal_probs, score, k_reg=k_reg, lam=lam)[np.arange(len(cal_labels)),
                                                              cal_labels]
    k = _k(len(cal_labels), alpha)
    qhat = np.sort(cal)[k - 1] if k <= len(cal_labels) else np.inf
    return _np_scores(test_probs, score, k_reg=k_reg, lam=lam) <= qhat, qhat


@pytest.mark.parametrize("score,randomized", CONFIGS)
def test_coverage_over_random_splits_follows_the_beta_binomial_law(score, randomized):
    """600 random splits (n = 100 calibration, m = 400 test) of one fixed pool.

    Given the pool, the splits (and the uniform draws) are i.i.d. and calibration and test
    points are exchangeable, so the number of covered test points of each split is exactly
    BetaBinomial(m, l, n + 1 - l), l = ceil((n + 1)(1 - alpha)) (scores have no ties): mean
    l / (n + 1) in [1 - alpha, 1 - alpha + 1/(n + 1)]. Tolerances: 4 Monte-Carlo standard
    errors on the mean (an off-by-one quantile shifts it by 7.3), +-20% on the variance
    (about 3.5 sd of the variance estimate), KS p-value > 1e-3.
    """
    probs, labels = _pool(500)
    alpha, n, m, trials = 0.1, 100, 400, 600
    rng = np.random.default_rng(1)
    covered = np.empty(trials)
    for t in range(trials):
        perm = rng.permutation(n + m)
        cal, test = perm[:n], perm[n:]
        cp = conformal.SplitConformal(score, alpha=alpha, seed=t, randomized=randomized,
                                      k_reg=2, lam=0.05)
        sets = cp.fit(probs[cal], labels[cal]).predict(probs[test])
        covered[t] = sets[np.arange(m), labels[test]].sum()
    l = _k(n, alpha)
    law = stats.betabinom(m, l, n + 1 - l)
    coverage = covered / m
    standard_error = math.sqrt(law.var()) / m / math.sqrt(trials)
    assert 1 - alpha - 4 * standard_error <= coverage.mean()
    assert coverage.mean() <= 1 - alpha + 1 / (n + 1) + 4 * standard_error
    assert abs(coverage.mean() - l / (n + 1)) <= 4 * standard_error
    assert 0.8 <= covered.var(ddof=1) / law.var() <= 1.2
    assert stats.kstest(covered, law.cdf).pvalue > 1e-3


@pytest.mark.parametrize("n,alpha", [(99, 0.1), (100, 0.1), (250, 0.05), (37, 0.2), (19, 0.05)])
def test_lac_sets_equal_the_order_statistic_rule(n, alpha):
    probs, labels = _pool(n + 300, seed=2)
    cp = conformal.SplitConformal("lac", alpha=alpha).fit(probs[:n], labels[:n])
    scores = 1 - probs[np.arange(n), labels[:n]]
    qhat = np.sort(scores)[_k(n, alpha) - 1]
    assert cp.qhat == qhat
    np.testing.assert_array_equal(cp.predict(probs[n:]), 1 - probs[n:] <= qhat)


@pytest.mark.parametrize("score,k_reg,lam", [("aps", 0, 0.0), ("raps", 2, 0.05), ("raps", 0, 0.3)])
def test_non_randomised_sets_equal_the_definition(score, k_reg, lam):
    probs, labels = _pool(400, seed=3)
    cp = conformal.SplitConformal(score, alpha=0.1, randomized=False, k_reg=k_reg, lam=lam)
    expected, qhat = _np_sets(probs[:150], labels[:150], probs[150:], 0.1, score, k_reg, lam)
    cp.fit(probs[:150], labels[:150])
    assert cp.qhat == pytest.approx(qhat, abs=1e-12)
    np.testing.assert_array_equal(cp.predict(probs[150:]), expected)


@pytest.mark.parametrize("score", ["aps", "raps"])
def test_randomised_sets_equal_the_definition_and_are_prefixes(score):
    probs, labels = _pool(300, seed=4)
    cp = conformal.SplitConformal(score, alpha=0.1, k_reg=1, lam=0.1).fit(probs[:200],
                                                                           labels[:200])
    uniform = np.random.default_rng(5).random(100)
    sets = cp.predict(probs[200:], uniform=uniform)
    scores = _np_scores(probs[200:], score, uniform=uniform, k_reg=1, lam=0.1)
    np.testing.assert_array_equal(sets, scores <= cp.qhat)
    sizes = sets.sum(axis=1)
    top = np.argsort(-probs[200:], axis=1, kind="stable")
    for row, size, ranking in zip(sets, sizes, top):
        assert set(np.flatnonzero(row)) == set(ranking[:size])


def test_randomised_sets_are_reproducible_and_depend_on_the_seed():
    probs, labels = _pool(600, seed=6)
    fit = lambda seed, r=True: conformal.SplitConformal("aps", seed=seed, randomized=r).fit(
        probs[:300], labels[:300])
    np.testing.assert_array_equal(fit(3).predict(probs[300:]), fit(3).predict(probs[300:]))
    assert fit(3).qhat != fit(4).qhat
    assert (fit(3).predict(probs[300:]) != fit(4).predict(probs[300:])).any()
    np.testing.assert_array_equal(fit(3, False).predict(probs[300:]),
                                  fit(4, False).predict(probs[300:]))


@pytest.mark.parametrize("score,randomized", CONFIGS)
def test_keras_ops_mask_matches_numpy_inside_a_traced_function(score, randomized):
    probs, labels = _pool(500, seed=7)
    cp = conformal.SplitConformal(score, randomized=randomized, k_reg=2, lam=0.05).fit(
        probs[:250], labels[:250])
    uniform = np.random.default_rng(8).random(250)

    @compiled(float32_shapes=[[None, K], [None]])  # tf.function, jax.jit, or eager (torch)
    def serve(p, u):
        return cp.predict_mask_ops(p, u if cp.uses_uniform else None)

    mask = keras.ops.convert_to_numpy(
        serve(probs[250:].astype(np.float32), uniform.astype(np.float32)))
    np.testing.assert_array_equal(mask, cp.predict(probs[250:], uniform=uniform))


def test_save_and_load_round_trip(tmp_path):
    probs, labels = _pool(400, seed=9)
    cp = conformal.SplitConformal("raps", alpha=0.05, seed=3, k_reg=2, lam=0.2).fit(
        probs[:200], labels[:200])
    path = cp.save(tmp_path / "cp")
    loaded = conformal.SplitConformal.load(path)
    assert loaded.get_config() == cp.get_config()
    assert (loaded.qhat, loaded.num_classes, loaded.num_calibration) == (cp.qhat, K, 200)
    np.testing.assert_array_equal(loaded.predict(probs[200:]), cp.predict(probs[200:]))
    with pytest.raises(ValueError, match="not fitted"):
        conformal.SplitConformal().save(tmp_path / "unfitted")


def test_tune_raps_picks_k_reg_from_ranks_and_the_smallest_sets():
    probs, labels = _pool(600, seed=10)
    grid = (0.0, 0.01, 0.1, 0.5)
    k_reg, lam = conformal.tune_raps(probs[:300], labels[:300], alpha=0.1, lam_grid=grid,
                                     randomized=False)
    ranks = [sorted(range(K), key=lambda j: (-p[j], j)).index(y) for p, y in
             zip(probs[:300], labels[:300])]
    assert k_reg == 1 + int(np.sort(ranks)[math.ceil(0.9 * 300) - 1])
    sizes = [_np_sets(probs[:300], labels[:300], probs[:300], 0.1, "raps", k_reg, g)[0]
             .sum(axis=1).mean() for g in grid]
    assert lam == grid[int(np.argmin(sizes))]
    with pytest.warns(UserWarning, match="tune_raps"):
        conformal.SplitConformal("raps", k_reg=k_reg, lam=lam).fit(probs[:300], labels[:300])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        conformal.SplitConformal("raps", k_reg=k_reg, lam=lam).fit(probs[300:], labels[300:])


def test_too_few_calibration_points_warns_and_returns_full_sets():
    probs, labels = _pool(20, seed=11)
    assert conformal.min_calibration_size(0.1) == 9
    with pytest.warns(UserWarning, match="at least 9 calibration samples"):
        cp = conformal.SplitConformal("lac", alpha=0.1).fit(probs[:8], labels[:8])
    assert cp.qhat == np.inf
    assert cp.predict(probs[8:]).all()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cp = conformal.SplitConformal("lac", alpha=0.1).fit(probs[:9], labels[:9])
    assert np.isfinite(cp.qhat)


def test_calibrating_on_a_calibrators_split_warns():
    rng = np.random.default_rng(12)
    logits, labels = rng.normal(size=(100, 3)), rng.integers(0, 3, 100)
    calibration.TemperatureScaling().fit(logits, labels)
    with pytest.warns(UserWarning, match="TemperatureScaling was fitted on"):
        conformal.SplitConformal().fit(calibration.softmax(logits), labels)


@pytest.mark.parametrize("kwargs,match", [
    ({"alpha": 0.0}, "alpha"), ({"alpha": 1.0}, "alpha"), ({"alpha": -0.1}, "alpha"),
    ({"alpha": float("nan")}, "alpha"), ({"score": "thr"}, "score"), ({"seed": -1}, "seed"),
    ({"randomized": 1}, "randomized"), ({"k_reg": 1.5}, "k_reg"), ({"lam": -1.0}, "lam"),
])
def test_bad_constructor_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        conformal.SplitConformal(**kwargs)


def test_bad_fit_and_predict_input():
    probs, labels = _pool(100, seed=13)
    cp = conformal.SplitConformal("aps")
    with pytest.raises(ValueError, match="not fitted"):
        cp.predict(probs)
    with pytest.raises(ValueError, match="not fitted"):
        cp.predict_mask_ops(probs)
    with pytest.raises(ValueError, match="sum to 1"):
        cp.fit(probs * 0.5, labels)
    nan_probs = probs.copy()
    nan_probs[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        cp.fit(nan_probs, labels)
    with pytest.raises(ValueError, match="labels"):
        cp.fit(probs, np.where(labels == 0, K, labels))
    with pytest.raises(ValueError, match="labels"):
        cp.fit(probs, labels[:-1])
    cp.fit(probs, labels)
    with pytest.raises(ValueError, match="classes"):
        cp.predict(calibration.softmax(np.zeros((4, K + 1))))
    with pytest.raises(ValueError, match="classes"):
        cp.predict_mask_ops(calibration.softmax(np.zeros((4, K + 1))), np.zeros(4))
    with pytest.raises(ValueError, match="uniform"):
        cp.predict(probs, uniform=np.full(100, 2.0))
    with pytest.raises(ValueError, match="uniform"):
        cp.predict_mask_ops(probs.astype(np.float32))
    with pytest.raises(ValueError, match="lam_grid"):
        conformal.tune_raps(probs, labels, lam_grid=[-0.1])
    with pytest.raises(ValueError, match="alpha"):
        conformal.tune_raps(probs, labels, alpha=1.5)


def test_exported_at_the_package_root_with_set_metrics():
    probs, labels = _pool(300, seed=14)
    sets = keras_vc.conformal.SplitConformal("lac").fit(probs[:200], labels[:200]).predict(
        probs[200:])
    assert metrics.coverage(labels[200:], sets) == sets[np.arange(100), labels[200:]].mean()
