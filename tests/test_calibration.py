"""Temperature search: recovers a known temperature, flags bound hits, rejects bad input."""

import keras
import numpy as np
import pytest

from keras_vc import calibration


def _sample(true_temperature, n=4000, k=5, seed=0):
    """Logits whose labels are drawn from softmax(logits / true_temperature)."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(scale=4.0, size=(n, k))
    probs = calibration.softmax(logits, true_temperature)
    labels = np.array([rng.choice(k, p=p) for p in probs])
    return logits, labels


@pytest.mark.parametrize("true_temperature", [0.5, 2.5])
def test_nll_search_recovers_the_temperature_that_generated_the_labels(true_temperature):
    logits, labels = _sample(true_temperature)
    result = calibration.find_temperature(logits, labels, objective="nll")
    assert result.temperature == pytest.approx(true_temperature, rel=0.1)
    assert not result.at_bound
    assert result.value <= result.value_at_one
    # The NLL at the optimum is a minimum of the independent NumPy NLL.
    def nll(t):
        p = calibration.softmax(logits, t)
        return -np.mean(np.log(p[np.arange(len(labels)), labels]))
    assert result.value == pytest.approx(nll(result.temperature), rel=1e-9)
    assert nll(result.temperature) <= min(nll(result.temperature * 1.05),
                                          nll(result.temperature / 1.05))


def test_ece_search_reduces_the_ece():
    logits, labels = _sample(3.0, seed=1)
    result = calibration.find_temperature(logits, labels, objective="ece")
    assert result.value < result.value_at_one
    assert 1.5 < result.temperature < 6.0


def test_search_is_deterministic():
    logits, labels = _sample(2.0, n=500, seed=2)
    first = calibration.find_temperature(logits, labels, objective="ece")
    assert calibration.find_temperature(logits, labels, objective="ece") == first


def test_a_validation_set_without_errors_is_flagged_at_the_bound():
    logits = np.array([[5.0, 0.0], [0.0, 5.0], [4.0, 1.0]])
    labels = np.array([0, 1, 0])
    result = calibration.find_temperature(logits, labels, objective="nll", bounds=(0.05, 20))
    assert result.at_bound
    assert result.temperature == pytest.approx(0.05, rel=1e-6)


def test_fit_temperature_on_a_dense_model_returns_without_touching_it():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 3)).astype("float32")
    y = (x[:, 0] > 0).astype("int64")
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.layers[-1].set_weights([np.array([[4.0, -4.0], [0, 0], [0, 0]]), np.zeros(2)])
    result = calibration.fit_temperature(model, (x, y), objective="nll")
    expected = calibration.find_temperature(model.predict(x, verbose=0), y, objective="nll")
    assert result == expected
    probs = calibration.apply_temperature(model.predict(x, verbose=0), result.temperature)
    assert np.allclose(probs.sum(axis=1), 1.0)


def test_fit_temperature_accepts_probability_outputs_and_datasets():
    import tensorflow as tf

    rng = np.random.default_rng(1)
    x = rng.normal(size=(128, 3)).astype("float32")
    y = (x[:, 1] > 0).astype("int64")
    dense = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    soft = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, activation="softmax")])
    soft.set_weights(dense.get_weights())
    from_logits = calibration.fit_temperature(dense, (x, y), objective="nll")
    from_probs = calibration.fit_temperature(
        soft, tf.data.Dataset.from_tensor_slices((x, y)).batch(50), objective="nll")
    assert from_probs.temperature == pytest.approx(from_logits.temperature, rel=1e-4)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(objective="brier"), "objective"),
        (dict(bounds=(2.0, 20.0)), "bounds"),
        (dict(bounds=(0.0, 20.0)), "bounds"),
        (dict(labels=np.array([0, 5])), "labels"),
        (dict(logits=np.array([[np.nan, 1.0], [0.0, 1.0]])), "logits"),
        (dict(logits=np.array([[1.0], [0.0]])), "at least 2"),
    ],
)
def test_bad_input(kwargs, match):
    arguments = dict(logits=np.array([[1.0, 0.0], [0.0, 1.0]]), labels=np.array([0, 1]))
    arguments.update(kwargs)
    with pytest.raises(ValueError, match=match):
        calibration.find_temperature(**arguments)


def test_apply_temperature_rejects_non_positive_temperatures():
    with pytest.raises(ValueError, match="temperature"):
        calibration.apply_temperature([[1.0, 0.0]], 0.0)


def test_probability_outputs_are_recognised_by_the_package_rule():
    """Rows summing to 1 within 1e-3 (e.g. a float16 softmax) are probabilities everywhere.

    The temperature search used its own, stricter rule (1e-4), so such outputs were taken as
    logits and the temperature was fitted to probabilities.
    """
    from keras_vc.calibration import temperature

    rng = np.random.default_rng(0)
    x = rng.normal(size=(30, 4)).astype("float32")
    y = rng.integers(0, 3, size=30)
    logits = x[:, :3] * 2.0
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True) * (1 + 5e-4)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Lambda(
        lambda t: keras.ops.softmax(t[:, :3] * 2.0) * (1 + 5e-4))])
    outputs, labels = temperature._collect_logits(model, (x, y), batch_size=8)
    np.testing.assert_allclose(outputs, np.log(probs), rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(labels, y)
    raw, _ = temperature._collect_logits(
        keras.Sequential([keras.Input((4,)), keras.layers.Lambda(lambda t: t[:, :3] * 2.0)]),
        (x, y), batch_size=8)
    np.testing.assert_allclose(raw, logits, rtol=1e-6)  # logits are left as they are
