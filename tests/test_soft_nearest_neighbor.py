"""The soft nearest neighbor loss against a brute-force NumPy evaluation of the paper's formula."""

import warnings

import keras
import numpy as np
import pytest
from scipy.optimize import minimize_scalar
from scipy.special import logsumexp

from backends import compiled
from backends import gradients
from backends import tensorflow_only

from keras_vc.losses import REFERENCE_CAP
from keras_vc.losses import SoftNearestNeighborLoss
from keras_vc.losses import optimized_temperature_loss
from keras_vc.losses import soft_nearest_neighbor_loss
from keras_vc.losses import temperature_free_soft_nearest_neighbor_loss
from keras_vc.losses import soft_nearest_neighbor as snnl_lib


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


def log_space_snnl(features, labels, temperature, cap=None):
    """The same formula in float64 log space (scipy), valid where exp underflows; ``cap``: each
    row ``r`` becomes ``-log(exp(-cap) + exp(-r))``."""
    x = np.asarray(features, dtype=np.float64).reshape(len(features), -1)
    d = ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)
    a = -d / temperature
    eye = np.eye(len(x), dtype=bool)
    same = (labels[:, None] == labels[None, :]) & ~eye
    terms = np.array([logsumexp(a[i][~eye[i]]) - logsumexp(a[i][same[i]])
                      for i in range(len(x)) if same[i].any()])
    if cap is not None:
        terms = -np.logaddexp(-cap, -terms)
    return float(np.mean(terms))


def log_t_derivatives(features, labels, base, t, cap=None, h=1e-3):
    """f'(s), f''(s) of SNNL at T = base / exp(s), s = log t, by central differences in float64."""
    f = [log_space_snnl(features, labels, base / (t * np.exp(k * h)), cap) for k in (-1, 0, 1)]
    return (f[2] - f[0]) / (2 * h), (f[2] - 2 * f[1] + f[0]) / h ** 2


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


@pytest.mark.slow
def test_no_row_with_a_partner_gives_zero_and_a_warning():
    features = np.random.default_rng(1).normal(size=(4, 3)).astype(np.float32)
    with pytest.warns(UserWarning, match=r"all 4 rows .*100%.* K \+ 1 samples"):
        assert float(soft_nearest_neighbor_loss(features, [0, 1, 2, 3], 1.0)) == 0.0
    with pytest.warns(UserWarning, match="all 4 rows"):  # tensor labels, eager
        optimized_temperature_loss(features, keras.ops.convert_to_tensor([3, 1, 2, 0]), 1.0, 1.0)
    with pytest.warns(UserWarning, match="all 4 rows"):
        SoftNearestNeighborLoss(1.0)(keras.ops.one_hot(keras.ops.convert_to_tensor([0, 1, 2, 3]), 4), features)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # one pair is enough: no warning
        soft_nearest_neighbor_loss(features, [0, 1, 2, 0], 1.0)
        soft_nearest_neighbor_loss(features, keras.ops.convert_to_tensor([0, 1, 1, 2]), 1.0)


@tensorflow_only("warnings at tf.function trace time")
def test_no_pair_warning_at_trace_time():
    """Traced with tensor labels, only a batch of fewer than 2 rows is certain to have no pair;
    NumPy labels are checked whatever the features."""
    import tensorflow as tf

    features = np.random.default_rng(1).normal(size=(4, 3)).astype(np.float32)
    with pytest.warns(UserWarning, match="batch of 1 row"):
        tf.function(lambda x, y: soft_nearest_neighbor_loss(x, y, 1.0)).get_concrete_function(
            tf.TensorSpec((1, 3)), tf.TensorSpec((1,), tf.int32))
    with pytest.warns(UserWarning, match="all 4 rows"):
        traced = tf.function(lambda x: soft_nearest_neighbor_loss(x, np.arange(4), 1.0))
        traced.get_concrete_function(tf.TensorSpec((4, 3)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tf.function(lambda x, y: soft_nearest_neighbor_loss(x, y, 1.0)).get_concrete_function(
            tf.TensorSpec((4, 3)), tf.TensorSpec((4,), tf.int32))


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
    value, (gradient,) = gradients(
        lambda f: soft_nearest_neighbor_loss(f, labels, temperature=1.0), features)
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


@pytest.fixture(scope="module")
def entangled():
    """Three overlapping classes, scaled to a median squared distance of 1."""
    rng = np.random.default_rng(12)
    labels = np.repeat(np.arange(3), 11)[:32]
    features = rng.normal(size=(32, 8)) + rng.normal(size=(3, 8))[labels]
    d = ((features[:, None] - features[None]) ** 2).sum(-1)
    return features / np.sqrt(np.median(d[d > 0])), labels


@pytest.mark.parametrize("cap", [None, REFERENCE_CAP, 0.5])
def test_log_temperature_derivatives_match_finite_differences(batch, cap):
    features, labels = batch
    base = 5.0
    distances, sparse = snnl_lib._prepare(features, labels, "squared_euclidean")
    for t in (0.2, 1.3, 20.0):
        expected = log_t_derivatives(features, labels, base, t, cap)
        actual = snnl_lib._log_temperature_derivatives(distances, sparse, t / base, cap)
        np.testing.assert_allclose([float(a) for a in actual], expected, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("cap", [None, REFERENCE_CAP])
def test_optimized_temperature_step_is_a_damped_newton_step_on_log_t(batch, entangled, cap):
    """Where SNNL is convex in log t: ``t * exp(-rate * f' / f'')`` (derivatives from NumPy),
    the Newton step bounded by ``MAX_LOG_STEP``."""
    features, labels = entangled[0].astype(np.float32), entangled[1]
    near_optimum = features, labels, 100.0, 1.05 * minimising_inverse_temperature(
        features, labels, 100.0)
    far = batch[0], batch[1], 5.0, 1.3  # SNNL grows with t here: the optimum is t -> 0
    for (features, labels, base, t), bounded in ((near_optimum, False), (far, True)):
        first, second = log_t_derivatives(features, labels, base, t, cap)
        assert second > 0 and (abs(first / second) > snnl_lib.MAX_LOG_STEP) == bounded
        _, updated = optimized_temperature_loss(features, labels, base, t, 0.5, cap=cap)
        newton = np.clip(-first / second, -snnl_lib.MAX_LOG_STEP, snnl_lib.MAX_LOG_STEP)
        np.testing.assert_allclose(float(updated), t * np.exp(0.5 * newton), rtol=1e-5)
    features, labels = batch
    base, t, rate = 5.0, 1.3, 0.5
    value, updated = optimized_temperature_loss(features, labels, base, t, rate, cap=cap)
    np.testing.assert_allclose(float(value), log_space_snnl(
        features, labels, base / float(updated), cap), rtol=1e-5)
    assert float(value) < log_space_snnl(features, labels, base / t, cap)  # it minimises SNNL
    # The returned loss is a constant in t: no gradient reaches the inverse temperature.
    _, (gradient,) = gradients(lambda v: optimized_temperature_loss(
        features, labels, base, v, rate, cap=cap)[0], np.float32(t))
    assert gradient == 0.0
    _, kept = optimized_temperature_loss(features, labels, base, t, 0.0, cap=cap)
    assert float(kept) == pytest.approx(t, rel=1e-6)


def test_optimized_temperature_step_where_snnl_is_concave(entangled):
    """Where f'' <= 0 the step is ``rate * MAX_LOG_STEP`` downhill."""
    features, labels = entangled
    features = features.astype(np.float32)
    # T = 100 >> the squared distances (~1): SNNL falls linearly in t, concave in log t.
    base, t, rate = 100.0, 1.0, 0.3
    first, second = log_t_derivatives(features, labels, base, t)
    assert second < 0 and first < 0
    _, updated = optimized_temperature_loss(features, labels, base, t, rate)
    expected = t * np.exp(-np.sign(first) * rate * snnl_lib.MAX_LOG_STEP)
    np.testing.assert_allclose(float(updated), expected, rtol=1e-5)


def test_optimized_temperature_line_search_never_increases_snnl(entangled):
    """A rate of 30 overshoots the minimum from either side; the line search shortens the step
    until SNNL does not increase."""
    features, labels = entangled
    features = features.astype(np.float32)
    base, rate = 100.0, 30.0
    optimum = minimising_inverse_temperature(features, labels, base)
    for t in (optimum / 3.0, optimum * 3.0):
        _, updated = optimized_temperature_loss(features, labels, base, t, rate)
        step = abs(np.log(float(updated) / t))
        assert 0 < step < rate * snnl_lib.MAX_LOG_STEP / 1.5  # shortened
        assert (log_space_snnl(features, labels, base / float(updated))
                <= log_space_snnl(features, labels, base / t))


def minimising_inverse_temperature(features, labels, base):
    """argmin_t SNNL(base / t) in float64 NumPy: a log grid, then a bounded 1-D search."""
    grid = np.linspace(np.log(1e-4), np.log(1e8), 121)
    values = [log_space_snnl(features, labels, base / np.exp(s)) for s in grid]
    best = int(np.argmin(values))
    assert 0 < best < len(grid) - 1, "the minimum must be inside the grid"
    result = minimize_scalar(lambda s: log_space_snnl(features, labels, base / np.exp(s)),
                             bounds=(grid[best - 1], grid[best + 1]), method="bounded",
                             options={"xatol": 1e-6})
    return float(np.exp(result.x))


# One trace for every scale (features and labels are arguments).
full_step = compiled(lambda features, labels, t: optimized_temperature_loss(
    features, labels, 100.0, t, 1.0))


@pytest.mark.parametrize("scale", [1e-2, 1.0, 1e2, 1e5])
def test_repeated_temperature_steps_converge_at_every_scale(entangled, scale):
    """From t = 1 with T0 = 100, repeated steps on fixed data never increase SNNL and settle at
    its minimiser over t, at squared distances from 1e-2 to 1e5. The reference's gradient step
    threw t to its floor and then to ~46 (SNNL 1.1 -> 239) at 1e5, and did not move at 1e-2."""
    features, labels = entangled
    features = (features * np.sqrt(scale)).astype(np.float32)
    optimum = minimising_inverse_temperature(features, labels, 100.0)
    t, losses, inverse = np.float32(1.0), [], [1.0]
    for _ in range(160):  # up to 0.1 in log t per step: 12 decades of e take 120 steps
        loss, t = full_step(features, labels, t)
        losses.append(float(loss))
        inverse.append(float(t))
    assert np.all(np.diff(losses) <= 1e-6 * abs(losses[0]))
    assert abs(np.log(inverse[-1] / optimum)) < 1e-2
    assert np.abs(np.diff(np.log(inverse[-5:]))).max() < 1e-3  # settled, no cycle
    best = log_space_snnl(features, labels, 100.0 / optimum)
    assert losses[-1] == pytest.approx(best, rel=1e-4)


def test_damped_temperature_steps_approach_the_minimiser_monotonically(entangled):
    """With the reference's rate 0.1 (a tenth of the bounded Newton step) t moves towards the
    minimiser without overshooting, at squared distances of 1e5 (where the reference's step
    cycled)."""
    features, labels = entangled
    features = (features * np.sqrt(1e5)).astype(np.float32)
    optimum = minimising_inverse_temperature(features, labels, 100.0)
    step = compiled(lambda t: optimized_temperature_loss(features, labels, 100.0, t, 0.1))
    start = 10.0 * optimum
    t, inverse = np.float32(start), [start]
    for _ in range(300):
        t = step(t)[1]
        inverse.append(float(t))
    assert np.all(np.diff(inverse) <= 0) and inverse[-1] > optimum * 0.999
    assert abs(np.log(inverse[-1] / optimum)) < 0.02  # from log(10) = 2.3


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
