"""Post-hoc OOD detectors against independent NumPy / scikit-learn computations of each paper's
formula, streaming fits, fitting through a model, save / load and keras.ops graphs."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from sklearn.covariance import EmpiricalCovariance
from sklearn.neighbors import NearestNeighbors

from keras_vc import detectors

K, D = 3, 6


# -- independent references --------------------------------------------------------------------
def logsumexp(z):
    top = z.max(axis=1, keepdims=True)
    return (top + np.log(np.exp(z - top).sum(axis=1, keepdims=True)))[:, 0]


def softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def ref_mahalanobis(h_train, y_train, h, relative=False):
    means = np.stack([h_train[y_train == k].mean(0) for k in range(y_train.max() + 1)])
    covariance = EmpiricalCovariance(assume_centered=True).fit(h_train - means[y_train]).covariance_
    precision = np.linalg.pinv(covariance)
    distances = np.stack([np.einsum("nd,de,ne->n", h - m, precision, h - m) for m in means], 1)
    if not relative:
        return -distances.min(1)
    background = EmpiricalCovariance().fit(h_train)
    centred = h - background.location_
    md0 = np.einsum("nd,de,ne->n", centred, np.linalg.pinv(background.covariance_), centred)
    return md0 - distances.min(1)


def ref_vim(h_train, h, kernel, bias, dim):
    w = kernel.T
    u = -np.linalg.pinv(w) @ bias
    covariance = EmpiricalCovariance(assume_centered=True).fit(h_train - u).covariance_
    values, vectors = np.linalg.eigh(covariance)
    space = vectors[:, np.argsort(-values)[dim:]]
    residual = np.linalg.norm((h_train - u) @ space, axis=1)
    alpha = (h_train @ kernel + bias).max(1).mean() / residual.mean()
    return logsumexp(h @ kernel + bias) - alpha * np.linalg.norm((h - u) @ space, axis=1)


def ref_knn(h_train, h, k):
    unit = lambda a: a / np.linalg.norm(a, axis=1, keepdims=True)  # noqa: E731
    distances, _ = NearestNeighbors(n_neighbors=k).fit(unit(h_train)).kneighbors(unit(h))
    return -distances[:, -1]


def ref_react(h_train, h, kernel, bias, percentile):
    c = np.percentile(h_train, percentile)
    return logsumexp(np.minimum(h, c) @ kernel + bias)


def ref_gen(z, gamma, m):
    # 1 - p_j as the sum of the other probabilities: 1.0 - p is 0 even in float64 once the top
    # class's softmax rounds to 1 (the large-scale test rows here).
    probs = softmax(z)
    total = 0.0
    for j in range(min(m, z.shape[1])):
        order = np.argsort(-probs, axis=1, kind="stable")[:, j]
        p = probs[np.arange(len(z)), order]
        rest = np.array([np.delete(row, i).sum() for row, i in zip(probs, order)])
        total = total + p ** gamma * rest ** gamma
    return -total


# -- data and models ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    centres = rng.normal(scale=3.0, size=(K, D))
    y_train = np.repeat(np.arange(K), 60)
    mixing = rng.normal(size=(D, D))
    h_train = centres[y_train] + rng.normal(size=(y_train.size, D)) @ mixing
    h_test = np.concatenate([centres[rng.integers(0, K, 20)] + rng.normal(size=(20, D)),
                             rng.normal(scale=8.0, size=(20, D))])
    kernel, bias = rng.normal(size=(D, K)), rng.normal(size=K)
    return h_train, y_train, h_test, kernel, bias


def make_model(seed=0, activation=None):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((4,))
    hidden = keras.layers.Dense(D, activation="tanh", name="hidden")(inputs)
    return keras.Model(inputs, keras.layers.Dense(K, activation=activation, name="logits")(hidden))


def numpy_forward(model, x):
    (w1, b1), (w2, b2) = (model.get_layer(n).get_weights() for n in ("hidden", "logits"))
    h = np.tanh(x.astype(np.float64) @ w1 + b1)
    return h, h @ w2 + b2


@pytest.fixture(scope="module")
def model_data():
    rng = np.random.default_rng(1)
    model = make_model()
    x = rng.normal(size=(150, 4)).astype(np.float32)
    y = rng.integers(0, K, 150)
    x_test = np.concatenate([rng.normal(size=(20, 4)), rng.normal(scale=4, size=(20, 4))])
    return model, x, y, x_test.astype(np.float32)


# -- exact formulas on fixed features ------------------------------------------------------------
def test_logit_detectors_match_numpy(data):
    z = data[2] @ data[3] + data[4]
    np.testing.assert_allclose(detectors.MaxSoftmax().score_features(z), softmax(z).max(1),
                               rtol=1e-5)
    np.testing.assert_allclose(detectors.MaxSoftmax(temperature=3.0).score_features(z),
                               softmax(z / 3).max(1), rtol=1e-5)
    np.testing.assert_allclose(detectors.MaxLogit().score_features(z), z.max(1), rtol=1e-5)
    np.testing.assert_allclose(detectors.Energy().score_features(z), logsumexp(z), rtol=1e-5)
    np.testing.assert_allclose(detectors.Energy(temperature=2.5).score_features(z),
                               2.5 * logsumexp(z / 2.5), rtol=1e-5)
    np.testing.assert_allclose(detectors.GEN().score_features(z), ref_gen(z, 0.1, 100), rtol=1e-6)
    np.testing.assert_allclose(detectors.GEN(gamma=0.5, top_m=2).score_features(z),
                               ref_gen(z, 0.5, 2), rtol=1e-6)
    np.testing.assert_allclose(detectors.ODIN(temperature=7.0).score_features(z),
                               softmax(z / 7).max(1), rtol=1e-5)


@pytest.mark.parametrize("batch_size", [7, 4096])
def test_mahalanobis_and_rmds_match_numpy(data, batch_size):
    h_train, y_train, h_test, _, _ = data
    order = np.random.default_rng(2).permutation(y_train.size)  # classes mixed across batches
    mds = detectors.Mahalanobis().fit_features(h_train[order], y_train[order], batch_size)
    np.testing.assert_allclose(mds.score_features(h_test),
                               ref_mahalanobis(h_train, y_train, h_test), rtol=1e-8)
    rmds = detectors.RelativeMahalanobis().fit_features(h_train[order], y_train[order], batch_size)
    np.testing.assert_allclose(rmds.score_features(h_test),
                               ref_mahalanobis(h_train, y_train, h_test, relative=True),
                               rtol=1e-7, atol=1e-8)


def test_mahalanobis_streaming_is_stable_for_offset_features(data):
    # Post-ReLU-like features: a mean far above the spread; raw float64 sums would cancel.
    h_train, y_train, h_test, _, _ = data
    offset = 1e7
    mds = detectors.Mahalanobis().fit_features(h_train + offset, y_train, batch_size=16)
    np.testing.assert_allclose(mds.score_features(h_test + offset),
                               ref_mahalanobis(h_train, y_train, h_test), rtol=1e-6)


def test_mahalanobis_singular_covariance_uses_pseudo_inverse(data):
    h_train, y_train, h_test, _, _ = data
    dead = np.concatenate([h_train, np.zeros((h_train.shape[0], 2))], 1)  # two dead units
    mds = detectors.Mahalanobis().fit_features(dead, y_train)
    expected = ref_mahalanobis(h_train, y_train, h_test)
    actual = mds.score_features(np.concatenate([h_test, np.zeros((h_test.shape[0], 2))], 1))
    np.testing.assert_allclose(actual, expected, rtol=1e-7)


@pytest.mark.parametrize("k", [1, 5, 50])
def test_knn_matches_scikit_learn(data, k):
    h_train, _, h_test, _, _ = data
    knn = detectors.KNN(k=k, chunk_size=37).fit_features(h_train, batch_size=11)
    np.testing.assert_allclose(knn.score_features(h_test), ref_knn(h_train, h_test, k), atol=2e-6)


def test_knn_max_samples_keeps_a_seeded_subset(data):
    h_train, _, h_test, _, _ = data
    knn = detectors.KNN(k=3, max_samples=40, seed=3).fit_features(h_train, batch_size=16)
    unit = h_train / np.linalg.norm(h_train, axis=1, keepdims=True)
    rows = [int(np.argmin(np.abs(unit - b).sum(1))) for b in knn.bank]
    assert knn.bank.shape == (40, D) and len(set(rows)) == 40
    np.testing.assert_allclose(knn.bank, unit[rows], atol=1e-6)
    np.testing.assert_allclose(knn.score_features(h_test), ref_knn(h_train[rows], h_test, 3),
                               atol=2e-6)
    again = detectors.KNN(k=3, max_samples=40, seed=3).fit_features(h_train, batch_size=16)
    np.testing.assert_array_equal(again.bank, knn.bank)


@pytest.mark.parametrize("dim", [2, 4])
def test_vim_matches_reference(data, dim):
    h_train, _, h_test, kernel, bias = data
    vim = detectors.ViM(principal_dim=dim, head_weights=(kernel, bias))
    vim.fit_features(h_train, None, batch_size=13)
    np.testing.assert_allclose(vim.score_features(h_test),
                               ref_vim(h_train, h_test, kernel, bias, dim), rtol=1e-5)


def test_vim_default_dimension_rule(data):
    h_train, _, _, kernel, bias = data
    vim = detectors.ViM(head_weights=(kernel, bias)).fit_features(h_train)
    assert vim.residual_space.shape == (D, D - D // 2)


@pytest.mark.parametrize("percentile", [90.0, 50.0])
def test_react_matches_reference(data, percentile):
    h_train, _, h_test, kernel, bias = data
    react = detectors.ReAct(percentile=percentile, head_weights=(kernel, bias))
    react.fit_features(h_train, batch_size=17)
    np.testing.assert_allclose(react.score_features(h_test),
                               ref_react(h_train, h_test, kernel, bias, percentile), rtol=1e-5)


# -- through a model -----------------------------------------------------------------------------
class _Batches(keras.utils.PyDataset):
    def __init__(self, x, y):
        super().__init__()
        self.x, self.y = x, y

    def __len__(self):
        return 3

    def __getitem__(self, i):
        return self.x[i * 50:(i + 1) * 50], self.y[i * 50:(i + 1) * 50]


def test_fit_through_the_model_on_arrays_datasets_and_pydatasets(model_data):
    model, x, y, x_test = model_data
    h, _ = numpy_forward(model, x)
    h_test, _ = numpy_forward(model, x_test)
    expected = ref_mahalanobis(h, y, h_test)
    sources = [((x, y), {}), ((tf.data.Dataset.from_tensor_slices((x, y)).batch(32),), {}),
               ((_Batches(x, y),), {})]
    for args, _ in sources:
        det = detectors.Mahalanobis(model).fit(*args)
        assert det.score_input.layer == "hidden"
        np.testing.assert_allclose(det.score(x_test, batch_size=16), expected, rtol=1e-4)


def test_every_detector_scores_through_the_model(model_data):
    model, x, y, x_test = model_data
    h, z = numpy_forward(model, x)
    h_test, z_test = numpy_forward(model, x_test)
    kernel, bias = model.get_layer("logits").get_weights()
    expected = {
        "msp": softmax(z_test).max(1), "max_logit": z_test.max(1), "energy": logsumexp(z_test),
        "gen": ref_gen(z_test, 0.1, 100), "head": softmax(z_test).max(1),
        "odin": None, "rmds": ref_mahalanobis(h, y, h_test, relative=True),
        "mahalanobis": ref_mahalanobis(h, y, h_test), "knn": ref_knn(h, h_test, 50),
        "vim": ref_vim(h, h_test, kernel.astype(np.float64), bias, D // 2),
        "react": ref_react(h, h_test, kernel, bias, 90.0)}
    for name, cls in detectors.DETECTORS.items():
        det = detectors.get(name, model)
        assert isinstance(det, cls)
        scores = det.fit(x, y, batch_size=40).score(x_test)
        assert scores.shape == (x_test.shape[0],)
        if expected[name] is not None:
            np.testing.assert_allclose(scores, expected[name], rtol=2e-4, atol=2e-5, err_msg=name)


def test_softmax_output_is_scored_on_its_log(model_data):
    model, _, _, x_test = model_data
    probs_model = make_model(activation="softmax")
    _, z = numpy_forward(probs_model, x_test)
    msp = detectors.MaxSoftmax(probs_model)
    assert msp.score_input.log_outputs
    np.testing.assert_allclose(msp.score(x_test), softmax(z).max(1), rtol=1e-5)
    np.testing.assert_allclose(detectors.GEN(probs_model).score(x_test), ref_gen(z, 0.1, 100),
                               rtol=1e-4)
    # ViM / ReAct read W, b of the softmax Dense: the pre-softmax logits.
    react = detectors.ReAct(probs_model).fit(x_test)
    h, _ = numpy_forward(probs_model, x_test)
    kernel, bias = probs_model.get_layer("logits").get_weights()
    np.testing.assert_allclose(react.score(x_test), ref_react(h, h, kernel, bias, 90.0), rtol=1e-5)


def test_head_score_uses_the_heads_recommended_score():
    from keras_vc.layers import DistanceLogits

    keras.utils.set_random_seed(0)
    inputs = keras.Input((4,))
    hidden = keras.layers.Dense(5, activation="tanh", name="hidden")(inputs)
    model = keras.Model(inputs, DistanceLogits(3, name="head")(hidden))
    x = np.random.default_rng(0).normal(size=(12, 4)).astype(np.float32)
    det = detectors.HeadScore(model)
    assert det.score_name == "mmles"
    # DisMax MMLES on the raw logits outputs * T / entropic_scale (T = 1, scale 10).
    raw = model.predict(x, verbose=0).astype(np.float64) / 10.0
    p = softmax(raw)
    expected = raw.max(1) + raw.mean(1) + (p * np.log(p)).sum(1)
    np.testing.assert_allclose(det.score(x), expected, rtol=1e-5)


def test_odin_matches_numpy_input_gradient(model_data):
    model, _, _, x_test = model_data
    temperature, epsilon = 5.0, 0.05
    (w1, b1), (w2, b2) = (model.get_layer(n).get_weights() for n in ("hidden", "logits"))
    h, z = numpy_forward(model, x_test)
    # d/dx CE(z/T, argmax z) = ((softmax(z/T) - onehot) / T) W2^T * (1 - h^2) W1^T
    grad_z = (softmax(z / temperature) - np.eye(K)[z.argmax(1)]) / temperature
    grad_x = ((grad_z @ w2.T) * (1 - h ** 2)) @ w1.T
    x_perturbed = x_test - epsilon * np.where(grad_x >= 0, 1.0, -1.0)
    _, z_perturbed = numpy_forward(model, x_perturbed)
    det = detectors.ODIN(model, temperature=temperature, epsilon=epsilon)
    assert not det.exportable
    np.testing.assert_allclose(det.score(x_test), softmax(z_perturbed / temperature).max(1),
                               rtol=1e-5)


def test_mahalanobis_input_preprocessing_matches_numpy(model_data):
    model, x, y, x_test = model_data
    epsilon = 0.05
    (w1, _), _ = (model.get_layer(n).get_weights() for n in ("hidden", "logits"))
    h_train, _ = numpy_forward(model, x)
    h, _ = numpy_forward(model, x_test)
    means = np.stack([h_train[y == k].mean(0) for k in range(K)])
    centred = h_train - means[y]
    precision = np.linalg.pinv(centred.T @ centred / y.size)
    distances = [np.einsum("nd,de,ne->n", h - m, precision, h - m) for m in means]
    closest = np.stack(distances, 1).argmin(1)
    grad_h = 2 * (h - means[closest]) @ precision
    grad_x = (grad_h * (1 - h ** 2)) @ w1.T
    h_perturbed, _ = numpy_forward(model, x_test - epsilon * np.where(grad_x >= 0, 1.0, -1.0))
    det = detectors.Mahalanobis(model, epsilon=epsilon).fit(x, y)
    assert not det.exportable
    np.testing.assert_allclose(det.score(x_test), ref_mahalanobis(h_train, y, h_perturbed),
                               rtol=1e-4)


def test_pooling_a_convolutional_layer():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((5, 5, 2))
    conv = keras.layers.Conv2D(4, 3, activation="relu", name="conv")(inputs)
    pooled = keras.layers.GlobalAveragePooling2D()(conv)
    model = keras.Model(inputs, keras.layers.Dense(K, name="logits")(pooled))
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(60, 5, 5, 2)).astype(np.float32), np.arange(60) % K
    activations = keras.Model(inputs, conv).predict(x, verbose=0).astype(np.float64)
    for pooling, features in (("avg", activations.mean(axis=(1, 2))),
                              ("flatten", activations.reshape(60, -1))):
        det = detectors.KNN(model, layer="conv", pooling=pooling, k=3).fit(x)
        np.testing.assert_allclose(det.score(x[:10]), ref_knn(features, features[:10], 3),
                                   atol=1e-5)


# -- graphs and persistence ----------------------------------------------------------------------
def fitted_feature_detectors(data):
    h_train, y_train, _, kernel, bias = data
    return [detectors.Mahalanobis().fit_features(h_train, y_train),
            detectors.RelativeMahalanobis().fit_features(h_train, y_train),
            detectors.KNN(k=4, chunk_size=50).fit_features(h_train),
            detectors.ViM(principal_dim=3, head_weights=(kernel, bias)).fit_features(h_train),
            detectors.ReAct(head_weights=(kernel, bias)).fit_features(h_train)]


def test_score_tensor_builds_a_keras_graph(data):
    h_test = data[2]
    z_test = h_test @ data[3] + data[4]
    logit_detectors = [detectors.MaxSoftmax(), detectors.MaxLogit(), detectors.Energy(),
                       detectors.GEN()]
    for det, features in ([(d, h_test) for d in fitted_feature_detectors(data)]
                          + [(d, z_test) for d in logit_detectors]):
        inputs = keras.Input((features.shape[1],))
        graph = keras.Model(inputs, det.score_tensor(inputs))
        np.testing.assert_allclose(graph.predict(features.astype(np.float32), verbose=0),
                                   det.score_features(features), rtol=1e-4, atol=1e-4,
                                   err_msg=type(det).__name__)


def test_save_and_load_without_training_data(data, model_data, tmp_path):
    h_test = data[2]
    for det in fitted_feature_detectors(data):
        path = det.save(tmp_path / type(det).__name__)
        loaded = type(det).load(path)
        assert loaded.get_config() == det.get_config()
        np.testing.assert_array_equal(loaded.score_features(h_test), det.score_features(h_test))
    model, x, y, x_test = model_data
    det = detectors.RelativeMahalanobis(model).fit(x, y)
    loaded = detectors.RelativeMahalanobis.load(det.save(tmp_path / "rmds"), model)
    np.testing.assert_array_equal(loaded.score(x_test), det.score(x_test))
    vim = detectors.ViM(model).fit(x)
    loaded = detectors.ViM.load(vim.save(tmp_path / "vim"))
    np.testing.assert_array_equal(loaded.score_features(numpy_forward(model, x_test)[0]),
                                  vim.score_features(numpy_forward(model, x_test)[0]))
