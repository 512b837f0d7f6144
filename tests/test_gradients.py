"""keras_vc.ops.gradients: input gradients on the current backend, against NumPy."""

import keras
import numpy as np
import pytest
from keras import ops

from keras_vc.ops import gradients

RNG = np.random.default_rng(0)
X = RNG.normal(size=(5, 3)).astype("float32")
WEIGHTS = RNG.normal(size=3).astype("float32")


def weighted_squares(x, weights):
    return ops.sum(ops.square(x) * weights)


def test_input_gradient_matches_numpy_and_passes_extra_arguments():
    gradient = gradients.input_gradient(weighted_squares, X, ops.convert_to_tensor(WEIGHTS))
    assert gradient.dtype == np.float32 and gradient.shape == X.shape
    np.testing.assert_allclose(gradient, 2.0 * X * WEIGHTS, rtol=1e-6)


def test_compiled_gradient_reads_the_current_weights():
    layer = keras.layers.Dense(2, use_bias=False)
    layer.build((None, 3))

    def summed_outputs(x):
        return ops.sum(layer(x))

    grad = gradients.compiled_input_gradient(summed_outputs, layer)
    for kernel in (RNG.normal(size=(3, 2)), RNG.normal(size=(3, 2))):
        layer.kernel.assign(kernel.astype("float32"))
        # d sum(x W) / d x = the row sums of W, for every example.
        np.testing.assert_allclose(grad(X), np.tile(kernel.sum(axis=1), (len(X), 1)), rtol=1e-5)


def test_signed_step_counts_a_zero_gradient_as_plus_one():
    def first_column_squared(x):
        return ops.sum(ops.square(x[:, 0]))

    stepped = gradients.signed_step(first_column_squared, X, 0.1)
    signs = np.ones_like(X)
    signs[:, 0] = np.where(X[:, 0] >= 0, 1.0, -1.0)
    np.testing.assert_allclose(stepped, X + 0.1 * signs, rtol=1e-6)


@pytest.mark.skipif(keras.backend.backend() != "tensorflow",
                    reason="TensorFlow reports a missing dependence (None); JAX returns zeros")
def test_a_function_that_ignores_its_input_raises():
    with pytest.raises(ValueError, match="does not depend on its input"):
        gradients.input_gradient(lambda x: ops.sum(ops.ones((2,))), X)


def test_an_unsupported_backend_raises(monkeypatch):
    monkeypatch.setattr(keras.backend, "backend", lambda: "numpy")
    with pytest.raises(ValueError, match="not for the 'numpy' backend"):
        gradients.input_gradient(weighted_squares, X, WEIGHTS)
    with pytest.raises(ValueError, match="not for the 'numpy' backend"):
        gradients.compiled_input_gradient(weighted_squares, None)
