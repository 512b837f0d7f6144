"""Calibrators against scikit-learn or NumPy written here, their keras.ops export path,
save / load and bad input."""

import keras
import numpy as np
import pytest

from backends import compiled
from keras_vc import calibration

K = 4
ALL = [calibration.TemperatureScaling, calibration.VectorScaling, calibration.MatrixScaling,
       calibration.DirichletCalibration, calibration.HistogramBinning,
       calibration.IsotonicCalibration]


def _softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


@pytest.fixture(scope="module")
def data():
    """Logits whose labels come from a different affine map of them (miscalibrated)."""
    rng = np.random.default_rng(0)
    logits = rng.normal(scale=2.0, size=(3000, K))
    mixing = np.eye(K) * 0.6 + rng.normal(scale=0.15, size=(K, K))
    true = _softmax(logits @ mixing.T + rng.normal(scale=0.3, size=K))
    labels = (true.cumsum(axis=1) > rng.random((3000, 1))).argmax(axis=1)
    return logits[:2000], labels[:2000], logits[2000:], labels[2000:]


@pytest.fixture(scope="module")
def fitted_all(data):
    """Each calibrator fitted once on the calibration split."""
    logits, labels, _, _ = data
    return {cls: cls().fit(logits, labels) for cls in ALL}


def _nll(probs, labels):
    return -np.mean(np.log(probs[np.arange(labels.size), labels]))


def _logistic_regression_probs(features, labels, test_features):
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(C=np.inf, tol=1e-12, max_iter=20000).fit(features, labels)
    return model.predict_proba(test_features)


def _log_softmax(z):
    return np.log(_softmax(z))


def test_matrix_scaling_equals_unpenalised_multinomial_logistic_regression(data):
    logits, labels, test_logits, _ = data
    fitted = calibration.MatrixScaling().fit(logits, labels)
    expected = _logistic_regression_probs(logits, labels, test_logits)
    np.testing.assert_allclose(fitted.predict_proba(test_logits), expected, atol=2e-5)


def test_unregularised_dirichlet_equals_logistic_regression_on_log_probabilities(data):
    logits, labels, test_logits, _ = data
    fitted = calibration.DirichletCalibration().fit(logits, labels)
    expected = _logistic_regression_probs(_log_softmax(logits), labels,
                                          _log_softmax(test_logits))
    np.testing.assert_allclose(fitted.predict_proba(test_logits), expected, atol=2e-5)


def _numerical_gradient(function, theta, step=1e-6):
    grad = np.zeros_like(theta)
    for i in range(theta.size):
        e = np.zeros_like(theta)
        e[i] = step
        grad[i] = (function(theta + e) - function(theta - e)) / (2 * step)
    return grad


def test_dirichlet_odir_is_a_stationary_point_of_the_penalised_nll(data):
    logits, labels, _, _ = data
    reg_lambda, reg_mu = 0.5, 0.2
    fitted = calibration.DirichletCalibration(reg_lambda=reg_lambda, reg_mu=reg_mu).fit(
        logits, labels)
    log_p = _log_softmax(logits)

    def objective(theta):
        w, b = theta[:K * K].reshape(K, K), theta[K * K:]
        off = w[~np.eye(K, dtype=bool)]
        return (_nll(_softmax(log_p @ w.T + b), labels)
                + reg_lambda / (K * (K - 1)) * np.sum(off ** 2) + reg_mu / K * np.sum(b ** 2))

    theta = np.concatenate([fitted.weights.ravel(), fitted.bias])
    assert np.abs(_numerical_gradient(objective, theta)).max() < 1e-5
    identity = np.concatenate([np.eye(K).ravel(), np.zeros(K)])
    assert objective(theta) < objective(identity)
    # The penalty pulls the off-diagonal weights towards 0 compared with no penalty.
    free = calibration.DirichletCalibration().fit(logits, labels)
    off = ~np.eye(K, dtype=bool)
    assert np.sum(fitted.weights[off] ** 2) < np.sum(free.weights[off] ** 2)


def test_vector_scaling_is_a_stationary_point_and_recovers_a_known_map():
    rng = np.random.default_rng(1)
    logits = rng.normal(scale=2.0, size=(20000, K))
    w_true, b_true = np.array([0.5, 0.8, 1.2, 0.7]), np.array([0.3, -0.2, 0.0, 0.4])
    true = _softmax(logits * w_true + b_true)
    labels = (true.cumsum(axis=1) > rng.random((20000, 1))).argmax(axis=1)
    fitted = calibration.VectorScaling().fit(logits, labels)
    np.testing.assert_allclose(fitted.weights, w_true, atol=0.05)
    # b is identified up to a constant shift (softmax invariance).
    np.testing.assert_allclose(fitted.bias - fitted.bias.mean(), b_true - b_true.mean(),
                               atol=0.05)

    def objective(theta):
        return _nll(_softmax(logits * theta[:K] + theta[K:]), labels)

    theta = np.concatenate([fitted.weights, fitted.bias])
    assert np.abs(_numerical_gradient(objective, theta)).max() < 1e-5


def test_temperature_scaling_wraps_find_temperature(data):
    logits, labels, test_logits, _ = data
    fitted = calibration.TemperatureScaling().fit(logits, labels)
    t = calibration.find_temperature(logits, labels).temperature
    assert fitted.temperature == t
    np.testing.assert_allclose(fitted.transform(test_logits), test_logits / t)
    np.testing.assert_allclose(fitted.predict_proba(test_logits), _softmax(test_logits / t),
                               atol=1e-12)


def test_histogram_binning_equals_numpy_binning(data):
    logits, labels, test_logits, _ = data
    bins = 10
    fitted = calibration.HistogramBinning(num_bins=bins).fit(logits, labels)
    p, p_test = _softmax(logits), _softmax(test_logits)
    index = lambda q: np.clip(np.ceil(q * bins).astype(int) - 1, 0, bins - 1)  # (lo, hi] bins
    table = np.empty((K, bins))
    for k in range(K):
        for m in range(bins):
            members = index(p[:, k]) == m
            table[k, m] = (labels[members] == k).mean() if members.any() else (m + 0.5) / bins
    values = table[np.arange(K), index(p_test)]
    np.testing.assert_allclose(fitted.bin_values, table)
    np.testing.assert_allclose(fitted.predict_proba(test_logits),
                               values / values.sum(axis=1, keepdims=True))


def test_isotonic_equals_sklearn_one_vs_rest_renormalised(data):
    from sklearn.isotonic import IsotonicRegression

    logits, labels, test_logits, _ = data
    fitted = calibration.IsotonicCalibration().fit(logits, labels)
    p, p_test = _softmax(logits), _softmax(test_logits)
    columns = [IsotonicRegression(y_min=0, y_max=1, out_of_bounds="clip")
               .fit(p[:, k], labels == k).predict(p_test[:, k]) for k in range(K)]
    values = np.stack(columns, axis=1)
    np.testing.assert_allclose(fitted.predict_proba(test_logits),
                               values / values.sum(axis=1, keepdims=True), atol=1e-12)


def test_all_zero_rows_become_uniform(data):
    logits, labels, test_logits, _ = data
    fitted = calibration.HistogramBinning(num_bins=5).fit(logits, labels)
    fitted.bin_values[:, -1] = 0.0  # a row whose every class falls in a zero bin
    fitted.bin_values[:, 0] = 0.0
    probs = fitted.predict_proba(np.array([[9.0, 0.0, 0.0, 0.0]]))  # bins 4, 0, 0, 0
    np.testing.assert_allclose(probs, np.full((1, K), 1 / K))


@pytest.mark.parametrize("cls", ALL)
def test_calibration_improves_held_out_nll(cls, data, fitted_all):
    logits, labels, test_logits, test_labels = data
    probs = fitted_all[cls].predict_proba(test_logits)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-12)
    assert _nll(np.clip(probs, 1e-12, 1), test_labels) < _nll(_softmax(test_logits),
                                                             test_labels)


@pytest.mark.parametrize("cls", ALL)
def test_keras_ops_path_matches_numpy_inside_a_traced_function(cls, data, fitted_all):
    logits, labels, test_logits, _ = data
    fitted = fitted_all[cls]
    assert fitted.exportable and fitted.export_note
    # tf.function with an unknown batch size, jax.jit, or eager on PyTorch.
    serve = compiled(fitted.predict_proba_ops, float32_shapes=[[None, K]])
    probs = keras.ops.convert_to_numpy(serve(test_logits.astype(np.float32)))
    np.testing.assert_allclose(probs, fitted.predict_proba(test_logits), atol=2e-5)
    if fitted.outputs_logits:
        calibrated = fitted.transform(test_logits)
        np.testing.assert_allclose(_softmax(calibrated), fitted.predict_proba(test_logits),
                                   atol=1e-12)
        np.testing.assert_allclose(np.asarray(fitted.transform_ops(test_logits.astype("float32"))),
                                   calibrated, atol=1e-4)
    else:
        with pytest.raises(ValueError, match="outputs probabilities"):
            fitted.transform(test_logits)
        with pytest.raises(ValueError, match="outputs probabilities"):
            fitted.transform_ops(test_logits)


@pytest.mark.parametrize("cls", ALL)
def test_save_and_load_round_trip(cls, data, fitted_all, tmp_path):
    logits, labels, test_logits, _ = data
    fitted = fitted_all[cls]
    loaded = cls.load(fitted.save(tmp_path / "calibrator"))
    assert loaded.get_config() == fitted.get_config()
    np.testing.assert_array_equal(loaded.predict_proba(test_logits),
                                  fitted.predict_proba(test_logits))
    with pytest.raises(ValueError, match="not fitted"):
        cls().save(tmp_path / "unfitted")


@pytest.mark.parametrize("cls", ALL)
def test_bad_input(cls, data):
    logits, labels, _, _ = data
    calibrator = cls()
    with pytest.raises(ValueError, match="not fitted"):
        calibrator.predict_proba(logits)
    with pytest.raises(ValueError, match="not fitted"):
        calibrator.predict_proba_ops(logits)
    bad = logits.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        calibrator.fit(bad, labels)
    with pytest.raises(ValueError, match="labels"):
        calibrator.fit(logits, np.where(labels == 0, K, labels))
    with pytest.raises(ValueError, match="at least 2 classes"):
        calibrator.fit(logits[:, :1], np.zeros(len(labels), dtype=int))
    calibrator.fit(logits, labels)
    with pytest.raises(ValueError, match="classes"):
        calibrator.predict_proba(logits[:, :3])
    with pytest.raises(ValueError, match="classes"):
        calibrator.predict_proba_ops(logits[:, :3])


@pytest.mark.parametrize("make,match", [
    (lambda: calibration.MatrixScaling(reg_lambda=-1.0), "reg_lambda"),
    (lambda: calibration.DirichletCalibration(reg_mu=-1.0), "reg_mu"),
    (lambda: calibration.DirichletCalibration(eps=0.0), "eps"),
    (lambda: calibration.VectorScaling(reg_mu=float("nan")), "reg_mu"),
    (lambda: calibration.HistogramBinning(num_bins=0), "num_bins"),
    (lambda: calibration.TemperatureScaling(objective="brier"), "objective"),
])
def test_bad_constructor_arguments(make, match):
    with pytest.raises(ValueError, match=match):
        make()
