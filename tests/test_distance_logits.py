"""DistanceLogits (IsoMax+ / DisMax) against an independent NumPy implementation of the formulas."""

import keras
import numpy as np
import pytest

from backends import gradients
from backends import tensorflow_only
from keras_vc import scores
from keras_vc.layers import DistanceLogits
from keras_vc.losses import EntropicCrossEntropy

_np = keras.ops.convert_to_numpy


def reference_logits(features, prototypes, distance_scale, mode):
    """The reference's raw logits at T = 1, written from the papers' formulas with an explicit
    (B, K, D) difference tensor (as torch.cdist without the matrix-product shortcut)."""
    features = np.asarray(features, np.float64)
    prototypes = np.asarray(prototypes, np.float64)
    unit_f = features / np.maximum(np.linalg.norm(features, axis=-1, keepdims=True), 1e-12)
    unit_p = prototypes / np.maximum(np.linalg.norm(prototypes, axis=-1, keepdims=True), 1e-12)
    distance = np.linalg.norm(unit_f[:, None, :] - unit_p[None, :, :], axis=-1)
    if mode == "isomax_plus":
        return -abs(distance_scale) * distance
    isometric = abs(distance_scale) * distance / np.sqrt(2.0)
    return -(isometric + isometric.mean(axis=1, keepdims=True))


def make_layer(mode, num_classes=6, features=9, distance_scale=-2.5, temperature=1.0,
               entropic_scale=10.0, seed=0, dtype=None):
    layer = DistanceLogits(num_classes, mode=mode, entropic_scale=entropic_scale, dtype=dtype)
    layer.build((None, features))
    rng = np.random.default_rng(seed)
    layer.prototypes.assign(rng.normal(size=(num_classes, features)).astype("float32"))
    layer.distance_scale.assign(distance_scale)
    layer.temperature.assign(temperature)
    return layer


@pytest.mark.parametrize("mode", ["isomax_plus", "dismax"])
@pytest.mark.parametrize("temperature", [1.0, 0.37])
@pytest.mark.parametrize("entropic_scale", [10.0, 1.0])
def test_logits_match_numpy(mode, temperature, entropic_scale):
    layer = make_layer(mode, temperature=temperature, entropic_scale=entropic_scale)
    features = np.random.default_rng(1).normal(size=(7, 9)).astype("float32") * 3.0
    expected = entropic_scale * reference_logits(
        features, layer.prototypes.numpy(), -2.5, mode) / temperature
    actual = layer(features)
    assert keras.backend.standardize_dtype(actual.dtype) == "float32"
    np.testing.assert_allclose(_np(actual), expected, rtol=1e-5, atol=1e-4)


def test_initial_state():
    layer = DistanceLogits(4)
    layer.build((None, 3))
    assert layer.mode == "dismax" and layer.entropic_scale == 10.0
    assert float(layer.distance_scale.numpy()) == 1.0
    assert float(layer.temperature.numpy()) == 1.0
    assert not layer.temperature.trainable
    assert [w.name for w in layer.trainable_weights] == ["prototypes", "distance_scale"]
    assert layer.prototypes.shape == (4, 3)


def test_prototypes_are_standard_normal():
    keras.utils.set_random_seed(3)
    layer = DistanceLogits(100)
    layer.build((None, 200))
    values = layer.prototypes.numpy()
    assert abs(values.mean()) < 0.02 and abs(values.std() - 1.0) < 0.02


def test_dismax_mean_term_leaves_the_softmax_unchanged():
    features = np.random.default_rng(2).normal(size=(5, 9)).astype("float32")
    dismax = _np(make_layer("dismax")(features))
    # Same distances without the mean term: isomax_plus logits / sqrt(2).
    isomax = _np(make_layer("isomax_plus")(features)) / np.sqrt(2.0)
    shift = dismax - isomax
    np.testing.assert_allclose(shift, shift[:, :1].repeat(shift.shape[1], axis=1), atol=1e-4)


def test_rank_3_inputs():
    layer = make_layer("dismax")
    features = np.random.default_rng(3).normal(size=(2, 4, 9)).astype("float32")
    out = _np(layer(features))
    assert out.shape == (2, 4, 6)
    expected = 10.0 * reference_logits(features.reshape(8, 9), layer.prototypes.numpy(), -2.5,
                                       "dismax")
    np.testing.assert_allclose(out.reshape(8, 6), expected, rtol=1e-5, atol=1e-4)
    assert layer.compute_output_shape((2, 4, 9)) == (2, 4, 6)


@pytest.mark.parametrize("norm", [0.0, 1e-20, 1e-13])
def test_zero_feature_is_at_distance_one_from_every_prototype(norm):
    """As in the reference for a zero feature (``normalize(0) = 0``, ``||0 - q|| = 1``); features
    of norm below 1e-12 count as zero (they used to give sqrt(2), or vectors of norm < 1)."""
    layer = make_layer("isomax_plus")
    features = np.full((1, 9), norm / 3.0, "float32")
    out = _np(layer(features))
    np.testing.assert_allclose(out, np.full((1, 6), -10.0 * 2.5), rtol=1e-6)


def test_logits_and_gradients_near_a_prototype():
    """At distance 1e-4 from the nearest prototype, logits and gradients (features, prototypes,
    distance scale) within 1e-3 of float64; the matrix-product distance alone was 60-90x off."""
    layer = make_layer("isomax_plus", distance_scale=-2.5)
    prototypes = layer.prototypes.numpy().astype(np.float64)
    rng = np.random.default_rng(6)
    classes = np.array([0, 3, 5, 3])
    unit = prototypes[classes] / np.linalg.norm(prototypes[classes], axis=1, keepdims=True)
    orthogonal = rng.normal(size=unit.shape)
    orthogonal -= (orthogonal * unit).sum(1, keepdims=True) * unit
    orthogonal /= np.linalg.norm(orthogonal, axis=1, keepdims=True)
    features = ((unit + 1e-4 * orthogonal) * np.array([[0.7], [1.0], [2.0], [5.0]]))
    features = features.astype("float32")
    weights = rng.normal(size=(4, 6))
    # float64 NumPy: logits = -10 |s| d with d = ||u - q||; analytic gradients of sum(w * logits).
    f, p = features.astype(np.float64), prototypes
    f_norm = np.linalg.norm(f, axis=1, keepdims=True)
    p_norm = np.linalg.norm(p, axis=1, keepdims=True)
    u, q = f / f_norm, p / p_norm
    difference = u[:, None] - q[None]
    distance = np.linalg.norm(difference, axis=-1)
    direction = (-25.0 * weights)[..., None] * difference / distance[..., None]
    grad_u, grad_q = direction.sum(1), -direction.sum(0)
    expected = [-25.0 * distance,
                (grad_u - (grad_u * u).sum(1, keepdims=True) * u) / f_norm,
                (grad_q - (grad_q * q).sum(1, keepdims=True) * q) / p_norm,
                np.sign(-2.5) * -10.0 * (weights * distance).sum()]
    logits = _np(layer(features))
    _, grads = gradients(
        lambda inputs: keras.ops.sum(layer(inputs) * keras.ops.cast(weights, "float32")),
        features, variables=[layer.prototypes, layer.distance_scale])
    actual = [logits] + grads
    for name, a, b in zip(["logits", "features", "prototypes", "distance_scale"], actual, expected):
        assert np.abs(a - b).max() <= 1e-3 * np.abs(b).max(), name


@tensorflow_only("inspects a tf.function graph")
def test_no_batch_by_classes_by_features_tensor():
    """The forward and backward graphs hold no rank-3 tensor for (B, D) features."""
    import tensorflow as tf

    layer = make_layer("dismax", num_classes=50, features=40)
    loss = EntropicCrossEntropy()

    @tf.function
    def step(features, labels):
        with tf.GradientTape() as tape:
            tape.watch(features)
            value = loss(labels, layer(features))
        return tape.gradient(value, [features] + layer.trainable_weights)

    graph = step.get_concrete_function(
        tf.TensorSpec((None, 40), tf.float32), tf.TensorSpec((None,), tf.int32)).graph
    ranks = {op.name: t.shape.rank for op in graph.get_operations() for t in op.outputs
             if t.shape.rank is not None}
    assert ranks, "the traced graph has no tensors"
    assert max(ranks.values()) <= 2, {k: r for k, r in ranks.items() if r > 2}


@pytest.mark.parametrize("policy", ["float32", "mixed_float16", "mixed_bfloat16", "float16",
                                    "bfloat16"])
def test_extreme_features_and_scales_stay_finite(policy):
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        compute_dtype = keras.config.dtype_policy().compute_dtype
        rng = np.random.default_rng(4)
        direction = rng.normal(size=(9,))
        direction /= np.linalg.norm(direction)
        for mode in ("isomax_plus", "dismax"):
            for scale in (1.0, -100.0, 100.0):
                layer = make_layer(mode, distance_scale=scale)
                prototype = layer.prototypes.numpy()[2].astype(np.float64)
                features = np.stack([
                    np.zeros(9),                                    # norm 0
                    1e4 * direction,                                # norm 1e4
                    1e4 * prototype / np.linalg.norm(prototype),    # at a prototype, norm 1e4
                    prototype,                                      # at zero distance
                    rng.normal(size=9),
                ])
                # NumPy has no bfloat16: the features enter in float32 and are cast to the
                # compute dtype (the cast passes the gradient through).
                features = features.astype("float32")
                labels = np.array([0, 1, 2, 2, 5])
                outputs = layer(keras.ops.cast(features, compute_dtype))
                value, grads = gradients(
                    lambda inputs: EntropicCrossEntropy()(
                        labels, layer(keras.ops.cast(inputs, compute_dtype))),
                    features, variables=layer.trainable_weights)
                where = f"{policy} {mode} scale={scale}"
                assert keras.backend.standardize_dtype(outputs.dtype) == "float32", where
                assert np.all(np.isfinite(_np(outputs))), where
                assert np.isfinite(value), where
                assert len(grads) == 1 + len(layer.trainable_weights), where
                for gradient in grads:
                    assert np.all(np.isfinite(gradient.astype(np.float32))), where
                # The zero feature is equidistant from all prototypes: it passes no gradient.
                assert np.all(grads[0][0].astype(np.float32) == 0), where
    finally:
        keras.config.set_dtype_policy(previous)


@pytest.mark.parametrize("mode,score,numpy_score", [
    ("dismax", "mmles", lambda l, p: l.max(1) + l.mean(1) + (p * np.log(p)).sum(1)),
    ("isomax_plus", "max_logit", lambda l, p: l.max(1)),
])
def test_ood_score_uses_reference_logits_at_temperature_one(mode, score, numpy_score):
    layer = make_layer(mode, temperature=2.5)
    assert layer.recommended_ood_score == score
    features = np.random.default_rng(5).normal(size=(6, 9)).astype("float32")
    raw = reference_logits(features, layer.prototypes.numpy(), -2.5, mode)
    probs = np.exp(raw - raw.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    expected = numpy_score(raw, probs)
    outputs = layer(features)
    from_numpy = layer.ood_score(_np(outputs))
    assert isinstance(from_numpy, np.ndarray)
    np.testing.assert_allclose(from_numpy, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(layer.ood_score(outputs)), expected,
                               rtol=1e-5, atol=1e-5)


def test_scores_recommended_picks_the_layer():
    layer = make_layer("dismax")
    model = keras.Sequential([keras.Input((9,)), layer])
    name, function = scores.recommended(model)
    assert name == "mmles" and function == layer.ood_score


@pytest.mark.parametrize("kwargs,match", [
    ({"num_classes": 1}, "num_classes"),
    ({"num_classes": 0}, "num_classes"),
    ({"num_classes": 2.5}, "num_classes"),
    ({"num_classes": True}, "num_classes"),
    ({"num_classes": 3, "mode": "isomax"}, "mode"),
    ({"num_classes": 3, "mode": None}, "mode"),
    ({"num_classes": 3, "entropic_scale": 0.0}, "entropic_scale"),
    ({"num_classes": 3, "entropic_scale": float("inf")}, "entropic_scale"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DistanceLogits(**kwargs)


def test_bad_input_shape():
    with pytest.raises(ValueError, match="features"):
        DistanceLogits(3).build((None,))
    with pytest.raises(ValueError, match="features"):
        DistanceLogits(3).build((None, None))
