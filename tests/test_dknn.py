"""Deep k-nearest neighbours against an independent NumPy computation, and the `snnl` compare
method's DkNN credibility score."""

import keras
import numpy as np
import pytest

from keras_vc.data import offline
from keras_vc.dknn import DeepKNN
from keras_vc.dknn import k_nearest_neighbors


def brute_force_neighbors(queries, points, k):
    d = ((queries[:, None, :].astype(np.float64) - points[None].astype(np.float64)) ** 2).sum(-1)
    return np.argsort(d, axis=1, kind="stable")[:, :k]


@pytest.mark.slow  # many eager shapes: each a compile on JAX
def test_neighbors_match_brute_force_across_chunks():
    rng = np.random.default_rng(0)
    points = rng.normal(size=(300, 7)).astype(np.float32)
    queries = rng.normal(size=(50, 7)).astype(np.float32)
    expected = brute_force_neighbors(queries, points, 10)
    for batch, chunk in ((16, 37), (50, 300), (7, 60)):
        actual = k_nearest_neighbors(queries, points, 10, query_batch_size=batch,
                                     chunk_size=chunk)
        assert actual.shape == (50, 10)
        np.testing.assert_array_equal(np.sort(actual, 1), np.sort(expected, 1))
        np.testing.assert_array_equal(actual[:, 0], expected[:, 0])  # nearest first


@pytest.mark.slow  # many eager shapes: each a compile on JAX
def test_neighbors_of_tens_of_thousands_of_points():
    rng = np.random.default_rng(1)
    points = rng.normal(size=(30000, 16)).astype(np.float32)
    queries = rng.normal(size=(40, 16)).astype(np.float32)
    actual = k_nearest_neighbors(queries, points, 75, query_batch_size=32, chunk_size=4096)
    expected = brute_force_neighbors(queries, points, 75)
    agreement = np.mean([len(set(a) & set(e)) / 75.0 for a, e in zip(actual, expected)])
    assert agreement > 0.999  # float32 vs float64 may swap a near-tie at the k-th place


def make_model():
    inputs = keras.Input((4,))
    a = keras.layers.Dense(6, activation="tanh", name="a")(inputs)
    b = keras.layers.Dense(5, activation="tanh", name="b")(a)
    return keras.Model(inputs, keras.layers.Dense(3, name="logits")(b))


def numpy_dknn(model, layer_names, k, x_train, y_train, x_cal, y_cal, x, trim_zeros=False):
    """The reference procedure written out in NumPy (exact neighbours)."""
    weights = {name: model.get_layer(name).get_weights() for name in ("a", "b", "logits")}

    def layers(inputs):
        a = np.tanh(inputs @ weights["a"][0] + weights["a"][1])
        b = np.tanh(a @ weights["b"][0] + weights["b"][1])
        return {"a": a, "b": b, "logits": b @ weights["logits"][0] + weights["logits"][1]}

    def nonconformity(inputs):
        total = 0
        train, queries = layers(x_train), layers(inputs)
        for name in layer_names:
            unit_train = train[name] / np.linalg.norm(train[name], axis=1, keepdims=True)
            centre = unit_train.mean(0)
            unit_query = queries[name] / np.linalg.norm(queries[name], axis=1, keepdims=True)
            neighbors = brute_force_neighbors(unit_query - centre, unit_train - centre, k)
            labels = y_train[neighbors]
            total = total + np.stack([np.sum(labels != j, axis=1) for j in range(3)], axis=1)
        return total

    calibration = np.sort(nonconformity(x_cal)[np.arange(len(y_cal)), y_cal])
    if trim_zeros:
        calibration = np.trim_zeros(calibration, "f")
    alpha = nonconformity(x)
    p = np.array([[np.mean(calibration >= a) for a in row] for row in alpha])
    return p


@pytest.fixture(scope="module")
def clusters():
    rng = np.random.default_rng(2)
    centres = rng.normal(scale=2.0, size=(3, 4))

    def draw(n):
        y = rng.integers(0, 3, size=n)
        return (centres[y] + rng.normal(scale=1.0, size=(n, 4))).astype(np.float32), y

    keras.utils.set_random_seed(0)
    return make_model(), draw(120), draw(40), draw(25)


@pytest.mark.parametrize("trim_zeros", [False, True])
def test_deep_knn_matches_numpy(clusters, trim_zeros):
    model, (x_train, y_train), (x_cal, y_cal), (x, _) = clusters
    dknn = DeepKNN(model, ["a", "b"], k=7, batch_size=8, chunk_size=50, trim_zeros=trim_zeros)
    dknn.fit(x_train, y_train).calibrate(x_cal, y_cal)
    if not trim_zeros:
        assert np.any(dknn.calibration_scores == 0)  # so that trimming changes something
    result = dknn.predict(x)
    expected = numpy_dknn(model, ["a", "b"], 7, x_train, y_train, x_cal, y_cal, x, trim_zeros)
    np.testing.assert_allclose(result["p_values"], expected)
    np.testing.assert_array_equal(result["prediction"], expected.argmax(1))
    np.testing.assert_allclose(result["credibility"], expected.max(1))
    np.testing.assert_allclose(result["confidence"], 1 - np.sort(expected, 1)[:, -2])
    assert result["p_values"].shape == (25, 3)


def test_deep_knn_errors(clusters):
    model, (x_train, y_train), (x_cal, y_cal), (x, _) = clusters
    with pytest.raises(ValueError, match="missing"):
        DeepKNN(model, ["a", "missing"])
    with pytest.raises(ValueError, match="`k`"):
        DeepKNN(model, ["a"], k=0)
    dknn = DeepKNN(model, ["a"], k=121)
    with pytest.raises(ValueError, match="larger than the training set"):
        dknn.fit(x_train, y_train)
    dknn = DeepKNN(model, ["a"], k=5)
    with pytest.raises(ValueError, match="fit"):
        dknn.calibrate(x_cal, y_cal)
    with pytest.raises(ValueError, match="y_train"):
        dknn.fit(x_train, y_train[:10])
    dknn.fit(x_train, y_train)
    with pytest.raises(ValueError, match="calibrate"):
        dknn.predict(x)
    with pytest.raises(ValueError, match="y_cal"):
        dknn.calibrate(x_cal, y_cal + 5)


def test_deep_knn_rejects_nan_inputs_and_activations(clusters):
    model, (x_train, y_train), (x_cal, y_cal), (x, _) = clusters
    broken = x_train.copy()
    broken[4, 1] = np.nan  # used to get arbitrary neighbours without a word
    dknn = DeepKNN(model, ["a", "b"], k=5)
    with pytest.raises(ValueError, match="`x_train` contains NaN"):
        dknn.fit(broken, y_train)
    dknn.fit(x_train, y_train).calibrate(x_cal, y_cal)
    query = x.copy()
    query[0, 0] = np.inf
    with pytest.raises(ValueError, match="`x` contains NaN"):
        dknn.predict(query)
    inputs = keras.Input((4,))
    root = keras.layers.Lambda(keras.ops.sqrt, name="root")(inputs)  # NaN for negative inputs
    sqrt_model = keras.Model(inputs, keras.layers.Dense(3)(root))
    with pytest.raises(ValueError, match="layer 'root' on `x_train`"):
        DeepKNN(sqrt_model, ["root"], k=5).fit(x_train - 10.0, y_train)


@pytest.mark.slow
def test_snnl_method_extra_scores_give_dknn_credibility():
    from keras_vc.benchmark import backbones
    from keras_vc.benchmark import registry
    from keras_vc.benchmark import trainers

    split = offline.load_digits(0)
    method = registry.HEADS["snnl"]
    assert method.extra_scores is trainers.dknn_scores
    keras.utils.set_random_seed(0)
    # The method's model, trained briefly without XLA (train() = snnl_model + fit_classifier).
    model = trainers.snnl_model(backbones.mlp(), split, method.layer)
    assert model.layer_names == ["hidden_0", "hidden_1"]
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(split.x_train, split.y_train, batch_size=64, epochs=3, verbose=0)
    score_fn = method.extra_scores(model, split)
    in_distribution = score_fn(split.x_test)["dknn_credibility"]
    noise = np.random.default_rng(0).uniform(size=(100, 8, 8, 1)).astype(np.float32)
    out_of_distribution = score_fn(noise)["dknn_credibility"]
    assert in_distribution.shape == (len(split.y_test),)
    assert np.all((in_distribution >= 0) & (in_distribution <= 1))
    assert in_distribution.mean() > out_of_distribution.mean() + 0.2
