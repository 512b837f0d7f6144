"""The head protocol (keras_vc.layers.ClassifierHead) holds for every public head."""

import keras
import numpy as np
import pytest
from backends import BACKEND

import keras_vc
from keras_vc import calibration
from keras_vc import export
from keras_vc import scores
from keras_vc.layers import BottleneckHead
from keras_vc.layers import ClassifierHead
from keras_vc.layers import DistanceLogits
from keras_vc.layers import VariationalHead
from keras_vc.layers import VariationalSoftmax
from keras_vc.layers import output_head

K, F = 3, 5
X = np.random.default_rng(0).normal(size=(16, F)).astype("float32")
Y = np.arange(16) % K

HEADS = {
    "dismax": lambda: DistanceLogits(K, mode="dismax"),
    "isomax_plus": lambda: DistanceLogits(K, mode="isomax_plus"),
    "bottleneck": lambda: BottleneckHead(K, latent_dim=4),
    "variational_head": lambda: VariationalHead(K, latent_dim=4, num_samples=3, seed=0),
    "vc_gaussian": lambda: VariationalSoftmax(K, latent_dim=4, num_samples=3, seed=0),
    "vc_deterministic": lambda: VariationalSoftmax(K, latent_dim=4, posterior="deterministic",
                                                   seed=0),
}
RECOMMENDED = {"dismax": "mmles", "isomax_plus": "max_logit", "bottleneck": "max_probability",
               "variational_head": "max_probability", "vc_gaussian": "energy",
               "vc_deterministic": "energy"}
LATENT = {"variational_head", "vc_gaussian", "vc_deterministic"}


def _np(x):
    return keras.ops.convert_to_numpy(x)


@pytest.fixture(scope="module", params=sorted(HEADS))
def head(request):
    layer = HEADS[request.param]()
    layer(X)
    return request.param, layer


def test_every_public_head_follows_the_protocol(head):
    name, layer = head
    assert isinstance(layer, ClassifierHead)
    assert layer.recommended_ood_score == RECOMMENDED[name]
    assert layer.has_latent == (name in LATENT)
    assert layer.temperature.dtype == "float32" and not layer.temperature.trainable
    spec = layer.compute_output_spec(keras.KerasTensor((None, F)))
    assert spec.shape == (None, K) and spec.dtype == "float32"


def _call_with_state(layer, state, **kwargs):
    for variable, value in zip(layer.variables, state):
        variable.assign(value)
    return _np(layer(X, **kwargs))


def test_temperature_divides_inference_outputs_only(head):
    _, layer = head
    state = [_np(v) for v in layer.variables]   # seed generator states included
    train_1 = _call_with_state(layer, state, training=True)
    infer_1 = _call_with_state(layer, state, training=False)
    score_1 = layer.ood_score(infer_1)
    state[[v.path for v in layer.variables].index(layer.temperature.path)] = np.float32(2.5)
    try:
        train_2 = _call_with_state(layer, state, training=True)
        infer_2 = _call_with_state(layer, state, training=False)
        np.testing.assert_allclose(train_2, train_1, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(infer_2, infer_1 / 2.5, rtol=1e-5, atol=1e-6)
        # The OOD score reads the logits at temperature 1: calibration does not move it.
        np.testing.assert_allclose(layer.ood_score(infer_2), score_1, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(_np(layer.ood_score(keras.ops.convert_to_tensor(infer_2))),
                                   score_1, rtol=1e-5, atol=1e-5)
    finally:
        layer.temperature.assign(1.0)


def test_ood_score_is_the_named_score_of_the_temperature_one_logits():
    layer = DistanceLogits(K, mode="dismax", entropic_scale=10.0)
    layer(X)
    outputs = _np(layer(X))
    raw = outputs.astype(np.float64) / 10.0   # the reference's logits
    probs = np.exp(raw - raw.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    expected = raw.max(1) + raw.mean(1) + (probs * np.log(probs)).sum(1)
    np.testing.assert_allclose(layer.ood_score(outputs), expected, rtol=1e-5, atol=1e-5)
    dense = BottleneckHead(K, latent_dim=4)
    outputs = _np(dense(X))
    probs = np.exp(outputs - outputs.max(1, keepdims=True))
    np.testing.assert_allclose(dense.ood_score(outputs), (probs / probs.sum(1, keepdims=True))
                               .max(1), rtol=1e-5)


def test_wrong_input_rank_has_one_message():
    with pytest.raises(ValueError, match=r"VariationalSoftmax.*\(batch, features\)"):
        VariationalSoftmax(K)(np.zeros((2, 3, 4), "float32"))
    with pytest.raises(ValueError, match=r"DistanceLogits.*\(\.\.\., features\).*Flatten"):
        DistanceLogits(K).build((None,))
    with pytest.raises(ValueError, match=r"BottleneckHead.*known number of features"):
        BottleneckHead(K, latent_dim=2).build((None, None))


@pytest.fixture(scope="module")
def head_not_last():
    return keras.Sequential([keras.Input((F,)), keras.layers.Dense(8),
                             DistanceLogits(K, name="dismax_head"), keras.layers.Dense(K)])


def test_a_head_that_is_not_the_output_layer_is_refused(head_not_last, tmp_path):
    model = head_not_last
    with pytest.raises(ValueError, match="'dismax_head'.*not the output layer"):
        output_head(model)
    with pytest.raises(ValueError, match="not the output layer"):
        calibration.fit_temperature(model, (X, Y))
    with pytest.raises(ValueError, match="not the output layer"):
        scores.recommended(model)
    if BACKEND == "tensorflow":  # elsewhere export refuses the backend first
        with pytest.raises(ValueError, match="not the output layer"):
            export.export_for_serving(model, str(tmp_path / "served"))


def test_output_head_finds_the_head_of_nested_and_plain_models():
    inner = keras.Sequential([keras.Input((F,)), keras.layers.Dense(8), DistanceLogits(K)])
    outer = keras.Sequential([keras.Input((F,)), inner])
    assert output_head(outer) is inner.layers[-1]
    plain = keras.Sequential([keras.Input((F,)), keras.layers.Dense(K)])
    assert output_head(plain) is None
    assert scores.recommended(plain)[0] == "max_probability"
    name, function = scores.recommended(outer)
    assert name == "mmles" and function == inner.layers[-1].ood_score


def test_fit_temperature_writes_the_output_head_only():
    model = keras.Sequential([keras.Input((F,)), keras.layers.Dense(8),
                              keras_vc.layers.DistanceLogits(K)])
    result = calibration.fit_temperature(model, (X, Y), objective="nll")
    assert float(_np(model.layers[-1].temperature)) == np.float32(result.temperature)
