"""Backend-specific expectations without duplicating tests.

A test written once runs on every backend; where the expected outcome depends on the backend it
asks here instead of branching on strings:

    from backends import BACKEND, by_backend, gradients, tensorflow_only

    tolerance = by_backend(tensorflow=1e-6, default=1e-5)

    @tensorflow_only("tf.data input pipeline")
    def test_dataset_input(): ...

``gradients`` differentiates a scalar function of NumPy inputs with the backend's own autodiff,
and with respect to a layer's variables, so gradient checks against NumPy need no
``tf.GradientTape``.
"""

import keras
import numpy as np
import pytest

BACKEND = keras.backend.backend()
ON_TENSORFLOW = BACKEND == "tensorflow"
# The jit_compile of the tests' fits: XLA on TensorFlow and JAX. On PyTorch, Keras'
# jit_compile=True is torch.compile, whose Inductor compile of each model's train / predict step
# takes minutes on 2 CPU cores (the layer contract of a plain Dense layer: 345 s, under a second
# eagerly), so the PyTorch run fits eagerly, as Keras' default jit_compile="auto" does there;
# tests/test_metrics.py fits under torch.compile.
JIT_COMPILE = BACKEND != "torch"


def by_backend(default=None, **values):
    """The value given for the running backend (``tensorflow=``, ``jax=``, ``torch=``), else
    ``default``."""
    unknown = set(values) - {"tensorflow", "jax", "torch"}
    if unknown:
        raise ValueError(f"unknown backend(s) {sorted(unknown)}")
    return values.get(BACKEND, default)


def tensorflow_only(reason):
    """Marks a test (or, as ``pytestmark``, a module) that needs TensorFlow: skipped with
    ``reason`` on other backends (tests/conftest.py)."""
    return pytest.mark.tensorflow_only(reason)


def gradients(fn, *arrays, variables=()):
    """``d fn(*arrays) / d arrays`` (and ``d / d variables``) as NumPy, with the backend's autodiff.

    Args:
        fn: maps tensors (one per array) to a scalar tensor, with ``keras.ops`` / Keras layers.
        *arrays: NumPy arrays, the points of differentiation.
        variables: trainable Keras variables that ``fn`` reads (for example a layer's
            ``trainable_variables``), differentiated at their current values: through the
            tape on TensorFlow, as arguments of ``jax.value_and_grad`` mapped in by a
            ``keras.StatelessScope`` on JAX, as leaves of ``torch.autograd.grad`` on PyTorch.

    Returns:
        ``(value, [gradient, ...])``: ``fn``'s value and one gradient per array, then one per
        variable, as NumPy (zeros where ``fn`` does not depend on it).
    """
    arrays = [np.asarray(a) for a in arrays]
    variables = list(variables)
    if BACKEND == "tensorflow":
        import tensorflow as tf

        tensors = [tf.Variable(a) for a in arrays]
        with tf.GradientTape() as tape:
            tape.watch([variable.value for variable in variables])
            value = fn(*tensors)
        grads = tape.gradient(value, tensors + [variable.value for variable in variables])
    elif BACKEND == "jax":
        import jax

        def stateless(tensors, values):
            with keras.StatelessScope(state_mapping=list(zip(variables, values))):
                return fn(*tensors)

        value, (array_grads, variable_grads) = jax.value_and_grad(stateless, argnums=(0, 1))(
            arrays, [variable.value for variable in variables])
        grads = list(array_grads) + list(variable_grads)
    elif BACKEND == "torch":
        import torch

        tensors = [keras.ops.convert_to_tensor(a, dtype=str(a.dtype)).detach().clone()
                   .requires_grad_(True) for a in arrays]
        value = fn(*tensors)
        leaves = tensors + [variable.value for variable in variables]
        # A value that depends on none of them (all behind stop_gradient) has no grad_fn, which
        # torch.autograd.grad refuses: every gradient is zero.
        grads = (torch.autograd.grad(value, leaves, allow_unused=True) if value.requires_grad
                 else [None] * len(leaves))
        value = value.detach()
    else:
        raise ValueError(f"no gradient helper for the {BACKEND!r} backend")
    # TensorFlow and PyTorch say None where the function does not depend on an input.
    points = arrays + [np.zeros(variable.shape, variable.dtype) for variable in variables]
    return (keras.ops.convert_to_numpy(value),
            [np.zeros_like(p) if g is None else keras.ops.convert_to_numpy(g)
             for p, g in zip(points, grads)])


def tensorflow_feature(call, *args, **kwargs):
    """Runs a TensorFlow-only feature: its result on TensorFlow; elsewhere checks that it fails
    with one clear ``NotImplementedError`` naming the backend, and returns None.

    Example:
        prior = tensorflow_feature(layer.prior_distribution)
        if prior is not None:  # TensorFlow: check the TFP object
            ...
    """
    if ON_TENSORFLOW:
        return call(*args, **kwargs)
    with pytest.raises(NotImplementedError, match=f"TensorFlow.*{BACKEND!r}|{BACKEND!r}.*TensorFlow"):
        call(*args, **kwargs)
    return None


def compiled(fn=None, *, float32_shapes=None):
    """``fn`` traced the backend's way: ``tf.function`` on TensorFlow, ``jax.jit`` on JAX, as is
    on PyTorch (eager: values stay concrete, so eager-only checks run there).

    Args:
        fn: the function; without it, returns a decorator.
        float32_shapes: optional list of shapes (``None`` for an unknown size): on TensorFlow
            the ``input_signature`` of float32 ``TensorSpec``s, so that one trace serves every
            batch size as in an exported model.
    """
    if fn is None:
        return lambda function: compiled(function, float32_shapes=float32_shapes)
    if BACKEND == "tensorflow":
        import tensorflow as tf

        signature = None if float32_shapes is None else [
            tf.TensorSpec(shape, tf.float32) for shape in float32_shapes]
        return tf.function(fn, input_signature=signature)
    if BACKEND == "jax":
        import jax

        return jax.jit(fn)
    return fn
