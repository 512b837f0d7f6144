"""keras_vc.ops.distances against float64 NumPy: precision near a prototype, tiny and zero norms,
large common offsets."""

import numpy as np
import keras
import pytest

from backends import BACKEND
from backends import gradients
from backends import tensorflow_only
from keras_vc.ops import distances

_np = keras.ops.convert_to_numpy

NORMS = [0.0, 1e-20, 1e-13, 1e-11, 1e-6, 1.0, 1e25]


def reference_prototype_distances(features, prototypes, weights):
    """``||norm(f_i) - norm(p_j)||`` in float64 with an explicit difference tensor, and the
    analytic gradients of ``sum_ij weights_ij * distance_ij`` w.r.t. the features and the raw
    prototypes (unit vectors here, all norms > 0)."""
    f = np.asarray(features, np.float64)
    p = np.asarray(prototypes, np.float64)
    f_norm = np.linalg.norm(f, axis=1, keepdims=True)
    p_norm = np.linalg.norm(p, axis=1, keepdims=True)
    u, q = f / f_norm, p / p_norm
    difference = u[:, None, :] - q[None, :, :]
    distance = np.linalg.norm(difference, axis=-1)
    direction = weights[..., None] * difference / distance[..., None]
    grad_u, grad_q = direction.sum(axis=1), -direction.sum(axis=0)
    # Through the normalisation: (I - u u^T) / ||f||.
    grad_f = (grad_u - (grad_u * u).sum(1, keepdims=True) * u) / f_norm
    grad_p = (grad_q - (grad_q * q).sum(1, keepdims=True) * q) / p_norm
    return distance, grad_f, grad_p


def near_prototypes(distance, num_rows=16, num_classes=10, width=32, seed=0):
    """Features at ``distance`` (between unit vectors) from a random prototype each, with random
    norms, and the (K, D) raw prototypes of random norms."""
    rng = np.random.default_rng(seed)
    prototypes = rng.normal(size=(num_classes, width)) * rng.uniform(0.5, 3.0, (num_classes, 1))
    prototypes = prototypes.astype(np.float32)
    classes = rng.integers(0, num_classes, size=num_rows)
    unit = prototypes[classes] / np.linalg.norm(prototypes[classes], axis=1, keepdims=True)
    orthogonal = rng.normal(size=(num_rows, width))
    orthogonal -= (orthogonal * unit).sum(1, keepdims=True) * unit
    orthogonal /= np.linalg.norm(orthogonal, axis=1, keepdims=True)
    # |unit cos(a) + orthogonal sin(a) - unit| = 2 sin(a / 2) = distance.
    angle = 2.0 * np.arcsin(distance / 2.0)
    features = (np.cos(angle) * unit + np.sin(angle) * orthogonal)
    features *= rng.uniform(0.5, 3.0, (num_rows, 1))
    return features.astype(np.float32), prototypes, classes


def tensors_and_gradients(function, features, prototypes, weights):
    import tensorflow as tf

    features, prototypes = tf.convert_to_tensor(features), tf.convert_to_tensor(prototypes)
    with tf.GradientTape() as tape:
        tape.watch([features, prototypes])
        value = function(features, prototypes)
        loss = tf.reduce_sum(value * tf.constant(weights, value.dtype))
    grad_f, grad_p = tape.gradient(loss, [features, prototypes])
    return value, tf.convert_to_tensor(grad_f), tf.convert_to_tensor(grad_p)


def value_and_gradients(function, features, prototypes, weights):
    """``function``'s value and the gradients of ``sum(weights * value)``, with the backend's
    autodiff."""
    value = _np(function(features, prototypes))
    _, (grad_f, grad_p) = gradients(
        lambda f, p: keras.ops.sum(function(f, p) * keras.ops.cast(weights, value.dtype)),
        features, prototypes)
    return value, grad_f, grad_p


def relative(actual, expected):
    return np.abs(actual - expected).max() / np.abs(expected).max()


@pytest.mark.parametrize("distance", [1e-2, 1e-3, 1e-4])
def test_prototype_distances_are_exact_near_a_prototype(distance):
    """float32 distances and gradients within ``1e-7 / distance`` of float64 (the rounding of the
    unit vectors); the matrix-product form alone is far off there (``python docs/figures/distance_precision.py``
    prints both)."""
    features, prototypes, classes = near_prototypes(distance)
    weights = np.random.default_rng(1).normal(size=(len(features), len(prototypes)))
    expected, grad_f, grad_p = reference_prototype_distances(features, prototypes, weights)
    rows = np.arange(len(features))
    np.testing.assert_allclose(expected[rows, classes], distance, rtol=1e-3)
    assert np.all(expected.argmin(axis=1) == classes)
    value, actual_f, actual_p = value_and_gradients(
        distances.prototype_distances, features, prototypes, weights)
    assert value.dtype == np.float32 and value.shape == expected.shape
    tolerance = 1e-7 / distance
    np.testing.assert_allclose(value[rows, classes], expected[rows, classes], rtol=tolerance)
    assert relative(value, expected) < 1e-6
    assert relative(actual_f, grad_f) < tolerance
    assert relative(actual_p, grad_p) < tolerance


@tensorflow_only("tf.function(jit_compile=True) around a GradientTape")
@pytest.mark.parametrize("distance", [1e-3, 1e-4])
def test_prototype_distances_under_xla(distance):
    import tensorflow as tf

    features, prototypes, classes = near_prototypes(distance, seed=2)
    weights = np.random.default_rng(3).normal(size=(len(features), len(prototypes)))
    expected = reference_prototype_distances(features, prototypes, weights)
    compiled = tf.function(lambda f, p: tensors_and_gradients(
        distances.prototype_distances, f, p, weights), jit_compile=True)
    actual = [t.numpy() for t in compiled(tf.constant(features), tf.constant(prototypes))]
    rows = np.arange(len(features))
    tolerance = 1e-7 / distance
    np.testing.assert_allclose(actual[0][rows, classes], expected[0][rows, classes],
                               rtol=tolerance)
    assert relative(actual[1], expected[1]) < tolerance
    assert relative(actual[2], expected[2]) < tolerance


@pytest.mark.skipif(BACKEND == "jax", reason="JAX computes in float32 unless jax_enable_x64")
@pytest.mark.skipif(BACKEND == "torch", reason="Keras' PyTorch matmul and maximum compute float64 "
                    "operands in float32 (its type promotion maps 64-bit to 32-bit, as JAX's)")
def test_prototype_distances_in_float64():
    features, prototypes, _ = near_prototypes(1e-4, seed=2)
    weights = np.ones((len(features), len(prototypes)))
    value = _np(distances.prototype_distances(features.astype(np.float64),
                                              prototypes.astype(np.float64)))
    assert value.dtype == np.float64
    np.testing.assert_allclose(
        value, reference_prototype_distances(features, prototypes, weights)[0], rtol=1e-10)


@tensorflow_only("inspects a tf.function graph")
def test_prototype_distances_build_no_rank_3_tensor():
    import tensorflow as tf

    @tf.function
    def step(features, prototypes):
        with tf.GradientTape() as tape:
            tape.watch([features, prototypes])
            value = tf.reduce_sum(distances.prototype_distances(features, prototypes))
        return tape.gradient(value, [features, prototypes])

    graph = step.get_concrete_function(tf.TensorSpec((None, 40), tf.float32),
                                       tf.TensorSpec((50, 40), tf.float32)).graph
    ranks = [t.shape.rank for op in graph.get_operations() for t in op.outputs
             if t.shape.rank is not None]
    assert ranks and max(ranks) <= 2


def test_prototype_distances_of_rank_3_features():
    features, prototypes, _ = near_prototypes(1e-2, num_rows=8, seed=4)
    flat = _np(distances.prototype_distances(features, prototypes))
    stacked = _np(distances.prototype_distances(features.reshape(2, 4, -1), prototypes))
    assert stacked.shape == (2, 4, len(prototypes))
    np.testing.assert_array_equal(stacked.reshape(8, -1), flat)


def rows_of_norms(norms, width=8, seed=5):
    rng = np.random.default_rng(seed)
    directions = rng.normal(size=(len(norms), width))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    return (directions * np.asarray(norms)[:, None]).astype(np.float32), directions


def test_l2_normalize_tiny_zero_and_huge_norms():
    """Rows of norm below 1e-12 become exactly 0 (no gradient); all others unit vectors (a norm
    of 1e-13 used to give a vector of norm 0.1, a norm of 1e25 the zero vector)."""
    x, directions = rows_of_norms(NORMS)
    weights = np.random.default_rng(6).normal(size=x.shape).astype(np.float32)
    _, (gradient,) = gradients(lambda v: keras.ops.sum(
        distances.l2_normalize(v) * keras.ops.convert_to_tensor(weights)), x)
    unit = _np(distances.l2_normalize(x))
    tiny = np.asarray(NORMS) < distances.NORM_EPSILON
    assert np.all(unit[tiny] == 0.0) and np.all(gradient[tiny] == 0.0)
    np.testing.assert_allclose(unit[~tiny], directions[~tiny], atol=1e-6)
    assert np.all(np.isfinite(gradient))
    # The gradient of the unit vector: (I - u u^T) w / ||x||, relative to its size.
    for row in np.flatnonzero(~tiny):
        u = directions[row]
        expected = (weights[row] - (weights[row] @ u) * u) / NORMS[row]
        np.testing.assert_allclose(gradient[row], expected, rtol=1e-4,
                                   atol=1e-5 * np.abs(expected).max())


def test_prototype_distances_of_tiny_and_zero_features():
    """A feature of norm below 1e-12 is the zero vector: exactly 1 from every unit prototype (the
    reference's value for a zero feature; it was sqrt(2)), and passes no gradient back."""
    features, directions = rows_of_norms(NORMS)
    prototypes = np.random.default_rng(7).normal(size=(5, features.shape[1])).astype(np.float32)
    weights = np.random.default_rng(8).normal(size=(len(features), 5))
    value, grad_f, grad_p = value_and_gradients(
        distances.prototype_distances, features, prototypes, weights)
    tiny = np.asarray(NORMS) < distances.NORM_EPSILON
    np.testing.assert_allclose(value[tiny], 1.0, atol=1e-6)
    assert np.all(grad_f[tiny] == 0.0)
    assert np.all(np.isfinite(grad_f)) and np.all(np.isfinite(grad_p))
    expected, expected_f, _ = reference_prototype_distances(directions[~tiny], prototypes,
                                                            weights[~tiny])
    np.testing.assert_allclose(value[~tiny], expected, rtol=1e-6, atol=1e-6)
    expected_f = expected_f / np.asarray(NORMS)[~tiny, None]
    for actual, wanted in zip(grad_f[~tiny], expected_f):
        np.testing.assert_allclose(actual, wanted, rtol=1e-4, atol=1e-5 * np.abs(wanted).max())


def test_zero_prototype_is_at_distance_one():
    features = np.random.default_rng(9).normal(size=(4, 6)).astype(np.float32)
    prototypes = np.random.default_rng(10).normal(size=(3, 6)).astype(np.float32)
    prototypes[1] = 0.0
    value = _np(distances.prototype_distances(features, prototypes))
    np.testing.assert_allclose(value[:, 1], 1.0, atol=1e-6)


@pytest.mark.parametrize("offset", [0.0, 1e3, 1e4])
def test_pairwise_squared_euclidean_at_a_large_common_offset(offset):
    """Without centring the float32 error at offset 1000 was ~1e-5 to 1e-1 of the largest
    distance (depending on the data), at 1e4 larger than the distances themselves."""
    rng = np.random.default_rng(11)
    a = (rng.normal(size=(20, 16)) + offset).astype(np.float32)
    b = (rng.normal(size=(12, 16)) + offset).astype(np.float32)
    for left, right in ((a, b), (a, a)):
        expected = ((left[:, None].astype(np.float64) - right[None]) ** 2).sum(-1)
        actual = _np(distances.pairwise_squared_euclidean(left, right))
        assert relative(actual, expected) < 1e-6
    weights = rng.normal(size=(20, 12))
    _, (gradient,) = gradients(
        lambda v: keras.ops.sum(
            distances.pairwise_squared_euclidean(v, b) * keras.ops.cast(weights, "float32")), a)
    difference = a[:, None].astype(np.float64) - b[None]
    expected = 2.0 * (weights[..., None] * difference).sum(axis=1)
    assert relative(gradient, expected) < 1e-5


def test_pairwise_cosine_distance_of_a_zero_row():
    a = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0]], np.float32)
    np.testing.assert_allclose(_np(distances.pairwise_cosine_distance(a, a)),
                               [[1, 1, 1], [1, 0, 1], [1, 1, 0]], atol=1e-6)


def test_bad_arguments():
    with pytest.raises(ValueError, match="features"):
        distances.prototype_distances(np.ones((2, 3)), np.ones((4, 5)))
    with pytest.raises(ValueError, match="prototypes"):
        distances.prototype_distances(np.ones((2, 3)), np.ones(3))
    with pytest.raises(ValueError, match="features"):
        distances.prototype_distances(np.float32(1.0), np.ones((4, 1)))
    with pytest.raises(ValueError, match="epsilon"):
        distances.l2_normalize(np.ones((2, 3)), epsilon=-1.0)
    with pytest.raises(ValueError, match="`x`"):
        distances.l2_normalize(np.float32(1.0))
    with pytest.raises(ValueError, match="`a`"):
        distances.pairwise_squared_euclidean(np.ones(3), np.ones((2, 3)))
    with pytest.raises(ValueError, match="`b`"):
        distances.pairwise_squared_euclidean(np.ones((2, 3)), np.ones((2, 3, 1)))
    with pytest.raises(ValueError, match="same number of features"):
        distances.pairwise_squared_euclidean(np.ones((2, 3)), np.ones((2, 4)))
