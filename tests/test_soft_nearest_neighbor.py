"""The soft nearest neighbor loss against a brute-force NumPy evaluation of the paper's formula."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from scipy.special import logsumexp

from keras_vc.losses import REFERENCE_CAP
from keras_vc.losses import SoftNearestNeighborLoss
from keras_vc.losses import optimized_temperature_loss
from keras_vc.losses import soft_nearest_neighbor_loss
from keras_vc.losses import temperature_free_soft_nearest_neighbor_loss


def brute_force_snnl(features, labels, temperature, distance, epsilon=0.0):
    """Paper eq. 1 with explicit loops in float64; rows without a same-class partner are left out.
    ``epsilon`` > 0: the reference's ``-log(epsilon + ratio)`` per row."""
    x = np.asarray(features, dtype=np.float64).reshape(len(features), -1)
    n = len(x)

    def d(i, j):
        if distance == "squared_euclidean":
            return float(np.sum((x[i] - x[j]) ** 2))
        return 1.0 - float(x[i] @ x[j] / (np.linalg.norm(x[i]) * np.linalg.norm(x[j])))

    terms = []
    for i in range(n):
        numerator = sum(np.exp(-d(i, j) / temperature) for j in range(n)
                        if j != i and labels[j] == labels[i])
        denominator = sum(np.exp(-d(i, k) / temperature) for k in range(n) if k != i)
        if any(labels[j] == labels[i] for j in range(n) if j != i):
            terms.append(-np.log(epsilon + numerator / denominator))
    return float(np.mean(terms)) if terms else 0.0


def log_space_snnl(features, labels, temperature):
    """The same formula in float64 log space (scipy), valid where exp underflows."""
    x = np.asarray(features, dtype=np.float64).reshape(len(features), -1)
    d = ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)
    a = -d / temperature
    eye = np.eye(len(x), dtype=bool)
    same = (labels[:, None] == labels[None, :]) & ~eye
    terms = [logsumexp(a[i][~eye[i]]) - logsumexp(a[i][same[i]])
             for i in range(len(x)) if same[i].any()]
    return float(np.mean(terms))


@pytest.fixture(scope="module")
def batch():
    rng = np.random.default_rng(0)
    features = rng.normal(size=(24, 3, 2)).astype(np.float32)
    labels = rng.integers(0, 4, size=24)
    labels[0] = 9  # a class with a single member: its row has no partner
    return features, labels


@pytest.mark.parametrize("distance,temperatures", [
    ("squared_euclidean", (0.5, 2.0, 10.0, 100.0)),
    ("cosine", (0.05, 0.3, 1.0)),
])
def test_matches_brute_force(batch, distance, temperatures):
    features, labels = batch
    for temperature in temperatures:
        expected = brute_force_snnl(features, labels, temperature, distance)
        actual = float(soft_nearest_neighbor_loss(features, labels, temperature, distance))
        np.testing.assert_allclose(actual, expected, rtol=2e-5, atol=2e-5,
                                   err_msg=f"{distance} T={temperature}")


def test_label_formats_and_flattening_agree(batch):
    features, labels = batch
    reference = float(soft_nearest_neighbor_loss(features, labels, 2.0))
    one_hot = np.eye(10)[labels]
    for variant in (labels[:, None], one_hot, labels.astype(np.float32)):
        assert float(soft_nearest_neighbor_loss(features, variant, 2.0)) == pytest.approx(
            reference, rel=1e-6)
    flat = features.reshape(len(features), -1)
    assert float(soft_nearest_neighbor_loss(flat, labels, 2.0)) == pytest.approx(reference, 1e-6)


def test_no_row_with_a_partner_gives_zero():
    features = np.random.default_rng(1).normal(size=(4, 3)).astype(np.float32)
    assert float(soft_nearest_neighbor_loss(features, [0, 1, 2, 3], 1.0)) == 0.0


def test_finite_with_finite_gradient_at_large_squared_distances():
    rng = np.random.default_rng(2)
    # Squared distances of order 1e5, as for flattened conv activations.
    features = (rng.normal(size=(32, 500)) * 10.0).astype(np.float32)
    labels = rng.integers(0, 3, size=32)
    features[labels == 1] += 3.0
    d = ((features[:, None, :].astype(np.float64) - features[None]) ** 2).sum(-1)
    assert np.median(d[d > 0]) > 9e4
    # The naive form underflows: every exp(-d / T) is 0, so the ratio is 0 / 0.
    with np.errstate(all="ignore"):
        naive = np.exp(-d / 1.0) * (1 - np.eye(32))
        assert np.all(naive == 0.0)
    variable = tf.Variable(features)
    with tf.GradientTape() as tape:
        value = soft_nearest_neighbor_loss(variable, labels, temperature=1.0)
    gradient = tape.gradient(value, variable).numpy()
    assert np.isfinite(float(value)) and np.all(np.isfinite(gradient))
    assert np.abs(gradient).max() > 0.0
    np.testing.assert_allclose(float(value), log_space_snnl(features, labels, 1.0), rtol=1e-3)


def test_loss_class_equals_function_and_round_trips(batch):
    features, labels = batch
    loss = SoftNearestNeighborLoss(temperature=3.0, distance="cosine")
    expected = float(soft_nearest_neighbor_loss(features, labels, 3.0, "cosine"))
    assert float(loss(labels, features)) == pytest.approx(expected, rel=1e-5)
    clone = SoftNearestNeighborLoss.from_config(loss.get_config())
    assert clone.get_config() == loss.get_config()
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss))
    assert float(restored(labels, features)) == pytest.approx(expected, rel=1e-5)


def test_loss_class_trains_an_embedding_output():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(64, 5)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int32)
    inputs = keras.Input((5,))
    embedding = keras.layers.Dense(4, name="embedding")(inputs)
    model = keras.Model(inputs, embedding)
    model.compile(keras.optimizers.Adam(1e-2), SoftNearestNeighborLoss(temperature=1.0),
                  run_eagerly=True)
    history = model.fit(x, y, batch_size=64, epochs=4, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    assert history.history["loss"][-1] < history.history["loss"][0]


def test_optimized_temperature_step(batch):
    features, labels = batch
    base, t, rate = 5.0, 1.3, 0.05

    def at(inverse):
        return brute_force_snnl(features, labels, base / inverse, "squared_euclidean")

    value, updated = optimized_temperature_loss(features, labels, base, t, rate)
    numeric_gradient = (at(t + 1e-4) - at(t - 1e-4)) / 2e-4
    np.testing.assert_allclose(float(updated), t - rate * numeric_gradient, rtol=1e-4)
    np.testing.assert_allclose(float(value), at(float(updated)), rtol=1e-5)
    assert float(value) < at(t)  # one step that *minimises* SNNL
    # The returned loss is a constant in t: no gradient reaches the inverse temperature.
    variable = tf.Variable(t)
    with tf.GradientTape() as tape:
        loss, _ = optimized_temperature_loss(features, labels, base, variable, rate)
    assert tape.gradient(loss, variable) is None


@pytest.mark.parametrize("temperature", [0.05, 0.5, 5.0])
def test_cap_is_the_reference_epsilon(batch, temperature):
    features, labels = batch
    capped = float(soft_nearest_neighbor_loss(features, labels, temperature, cap=REFERENCE_CAP))
    expected = brute_force_snnl(features, labels, temperature, "squared_euclidean", epsilon=1e-5)
    assert capped == pytest.approx(expected, rel=1e-5)
    uncapped = float(soft_nearest_neighbor_loss(features, labels, temperature))
    assert capped <= min(uncapped, REFERENCE_CAP)
    if temperature == 0.05:  # many rows far beyond the cap: the cap bites
        assert uncapped > REFERENCE_CAP > capped


def test_capped_maximisation_is_bounded():
    # Scaling features up while keeping each point's nearest neighbour in another class grows
    # eq. 1 without bound; the capped value stays below the cap.
    labels = np.arange(8) % 2
    features = np.arange(8, dtype=np.float32)[:, None]
    for scale in (1.0, 10.0, 100.0):
        raw = float(soft_nearest_neighbor_loss(scale * features, labels, 1.0))
        capped = float(soft_nearest_neighbor_loss(scale * features, labels, 1.0, cap=5.0))
        assert capped <= 5.0 and capped <= raw + 1e-5
    assert raw > 1000.0


def test_optimized_temperature_step_with_a_cap(batch):
    features, labels = batch
    base, t, rate = 0.2, 1.3, 1e-4

    def at(inverse):
        return brute_force_snnl(features, labels, base / inverse, "squared_euclidean", 1e-5)

    value, updated = optimized_temperature_loss(features, labels, base, t, rate,
                                                cap=REFERENCE_CAP)
    numeric_gradient = (at(t + 1e-4) - at(t - 1e-4)) / 2e-4
    np.testing.assert_allclose(float(updated), t - rate * numeric_gradient, rtol=1e-4)
    np.testing.assert_allclose(float(value), at(float(updated)), rtol=1e-5)


def test_temperature_free_is_the_minimum_over_temperatures(batch):
    features, labels = batch
    value, temperature = temperature_free_soft_nearest_neighbor_loss(features, labels)
    grid = np.geomspace(0.05, 500.0, 30)
    values = [brute_force_snnl(features, labels, t, "squared_euclidean") for t in grid]
    assert value <= min(values) + 1e-6
    assert value == pytest.approx(brute_force_snnl(features, labels, temperature,
                                                   "squared_euclidean"), rel=1e-5)


@pytest.mark.parametrize("kwargs,match", [
    (dict(temperature=0.0), "temperature"),
    (dict(temperature=-1.0), "temperature"),
    (dict(temperature="hot"), "temperature"),
    (dict(distance="manhattan"), "distance"),
])
def test_bad_arguments(batch, kwargs, match):
    features, labels = batch
    with pytest.raises(ValueError, match=match):
        soft_nearest_neighbor_loss(features, labels, **kwargs)
    with pytest.raises(ValueError, match=match):
        SoftNearestNeighborLoss(**kwargs)


@pytest.mark.parametrize("cap", [0.0, -2.0, "high", [5.0]])
def test_bad_cap(batch, cap):
    features, labels = batch
    with pytest.raises(ValueError, match="`cap` must be"):
        soft_nearest_neighbor_loss(features, labels, cap=cap)
    with pytest.raises(ValueError, match="`cap` must be"):
        optimized_temperature_loss(features, labels, 1.0, 1.0, cap=cap)


def test_bad_shapes(batch):
    features, labels = batch
    with pytest.raises(ValueError, match="labels"):
        soft_nearest_neighbor_loss(features, labels[:10], 1.0)
    with pytest.raises(ValueError, match="labels"):
        soft_nearest_neighbor_loss(features, labels.reshape(4, 6, 1), 1.0)
    with pytest.raises(ValueError, match="features"):
        soft_nearest_neighbor_loss(features.reshape(-1), np.arange(144) % 3, 1.0)
    with pytest.raises(ValueError, match="labels"):
        soft_nearest_neighbor_loss(features, np.full(24, np.nan), 1.0)
