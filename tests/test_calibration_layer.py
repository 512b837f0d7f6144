"""fit_temperature with DistanceLogits: the temperature lives in the layer and is saved with it."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_vc import calibration
from keras_vc import scores
from keras_vc.layers import DistanceLogits
from keras_vc.losses import EntropicCrossEntropy


def blobs(num_samples, seed):
    """Three overlapping Gaussian classes in 4-D: a classifier makes errors, so T is finite."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, size=num_samples)
    centers = np.array([[1.0, 0, 0, 0], [0, 1.0, 0, 0], [0, 0, 1.0, 0]]) * 1.5
    return (centers[labels] + rng.normal(size=(num_samples, 4))).astype("float32"), labels


@pytest.fixture(scope="module")
def trained():
    keras.utils.set_random_seed(0)
    x_train, y_train = blobs(600, 0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(16, activation="relu"),
                              DistanceLogits(3, mode="dismax")])
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss=EntropicCrossEntropy())
    model.fit(x_train, y_train, batch_size=64, epochs=8, verbose=0)
    return model, blobs(400, 1), blobs(200, 2)


def test_temperature_is_written_into_the_layer(trained, tmp_path):
    model, (x_val, y_val), (x_test, _) = trained
    layer = model.layers[-1]
    before = model.predict(x_test, verbose=0)
    result = calibration.fit_temperature(model, (x_val, y_val), objective="nll")
    try:
        assert not result.at_bound
        assert float(layer.temperature.numpy()) == pytest.approx(result.temperature, rel=1e-6)
        # Same as searching on the layer's outputs at temperature 1.
        direct = calibration.find_temperature(
            model.predict(x_val, verbose=0) * result.temperature, y_val, objective="nll")
        assert direct.temperature == pytest.approx(result.temperature, rel=1e-3)
        assert result.value <= result.value_at_one
        after = model.predict(x_test, verbose=0)
        np.testing.assert_allclose(after, before / result.temperature, rtol=1e-5, atol=1e-5)
        # The OOD score reads the reference logits at T = 1: calibration does not change it.
        np.testing.assert_allclose(layer.ood_score(after), scores.mmles(before / 10.0),
                                   rtol=1e-4, atol=1e-4)

        path = os.path.join(str(tmp_path), "calibrated.keras")
        model.save(path)
        restored = keras.saving.load_model(path)
        assert float(restored.layers[-1].temperature.numpy()) == pytest.approx(
            result.temperature, rel=1e-6)
        np.testing.assert_allclose(restored.predict(x_test, verbose=0), after, rtol=1e-5,
                                   atol=1e-6)
        # A second fit starts again from T = 1 and finds the same temperature.
        again = calibration.fit_temperature(model, (x_val, y_val), objective="nll")
        assert again.temperature == pytest.approx(result.temperature, rel=1e-6)
    finally:
        layer.temperature.assign(1.0)


def test_default_nll_objective_on_a_dataset(trained):
    model, (x_val, y_val), _ = trained
    layer = model.layers[-1]
    dataset = tf.data.Dataset.from_tensor_slices((x_val, y_val)).batch(64)
    try:
        ece = calibration.fit_temperature(model, dataset, objective="ece", verbose=0)
        assert ece.objective == "ece" and ece.value <= ece.value_at_one
        result = calibration.fit_temperature(model, dataset)
        assert result.objective == "nll" and result.value <= result.value_at_one
        assert float(layer.temperature.numpy()) == pytest.approx(result.temperature, rel=1e-6)
        from_arrays = calibration.fit_temperature(model, (x_val, y_val))
        assert from_arrays.temperature == pytest.approx(result.temperature, rel=1e-4)
    finally:
        layer.temperature.assign(1.0)


def test_failed_fit_restores_the_previous_temperature(trained):
    model, (x_val, _), _ = trained
    layer = model.layers[-1]
    layer.temperature.assign(1.7)
    try:
        with pytest.raises(ValueError, match="labels"):
            calibration.fit_temperature(model, (x_val, np.full(len(x_val), 3)))
        assert float(layer.temperature.numpy()) == pytest.approx(1.7)
    finally:
        layer.temperature.assign(1.0)
