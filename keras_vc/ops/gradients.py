"""The gradient of a scalar function with respect to an input, on the current Keras backend.

Keras 3 has no backend-agnostic gradient of a function of an input, so this module holds the one
dispatch: TensorFlow through ``tf.GradientTape``, JAX through ``jax.grad``, PyTorch through
``torch.autograd.grad``. Used by the adversarial attacks (:mod:`keras_vc.robustness.attacks`)
and by the input preprocessing of the ODIN and Mahalanobis detectors. The gradient is taken with
respect to the input only: model weights receive no gradient (on PyTorch, their ``.grad`` stays
untouched).
"""

import keras
import numpy as np
from keras import ops

BACKENDS = ("tensorflow", "jax", "torch")


def _backend():
    backend = keras.backend.backend()
    if backend not in BACKENDS:
        raise ValueError(f"Input gradients are implemented for the {list(BACKENDS)} backends, "
                         f"not for the {backend!r} backend.")
    return backend


def _to_numpy(gradient):
    if gradient is None:
        raise ValueError("The function does not depend on its input (no gradient).")
    return np.asarray(ops.convert_to_numpy(gradient))


def input_gradient(loss_fn, x, *args):
    """``d loss_fn(x, *args) / d x`` as a float32 NumPy array, computed eagerly.

    Args:
        loss_fn: maps a float32 input tensor (and ``args``) to a scalar tensor, written with
            ``keras.ops`` / Keras layers.
        x: a batch of inputs (array or tensor).
        *args: further arguments of ``loss_fn`` (labels, ...), not differentiated.

    Returns:
        The gradient, a float32 array of the shape of ``x``.

    Raises:
        ValueError: on a backend other than TensorFlow, JAX or PyTorch, or when ``loss_fn`` does
            not depend on ``x``.
    """
    backend = _backend()
    x = np.asarray(ops.convert_to_numpy(x), dtype=np.float32)
    if backend == "tensorflow":
        import tensorflow as tf

        tensor = tf.convert_to_tensor(x)
        with tf.GradientTape() as tape:
            tape.watch(tensor)
            loss = loss_fn(tensor, *args)
        gradient = tape.gradient(loss, tensor)
    elif backend == "jax":
        import jax

        gradient = jax.grad(loss_fn)(ops.convert_to_tensor(x), *args)
    else:
        import torch

        tensor = ops.convert_to_tensor(x).detach().clone().requires_grad_(True)
        (gradient,) = torch.autograd.grad(loss_fn(tensor, *args), tensor, allow_unused=True)
    return _to_numpy(gradient).astype(np.float32)


def compiled_input_gradient(loss_fn, layer):
    """``grad(x, *args)``: :func:`input_gradient` of ``loss_fn``, compiled once where it pays.

    For many gradient evaluations of one model (PGD steps): on TensorFlow a ``tf.function``
    (``reduce_retracing``), on JAX a ``jax.jit`` that takes ``layer``'s variables as arguments
    (a :class:`keras.StatelessScope` maps them), so the compiled function always reads the
    current weights. PyTorch computes eagerly.

    Args:
        loss_fn: as for :func:`input_gradient`; it may call ``layer``.
        layer: the ``keras.Layer`` / ``keras.Model`` whose variables ``loss_fn`` reads, or None
            (then JAX computes eagerly too).

    Returns:
        A function ``grad(x, *args)`` returning float32 NumPy arrays of the shape of ``x``.
    """
    backend = _backend()
    if backend == "tensorflow":
        import tensorflow as tf

        def gradient(x, *args):
            with tf.GradientTape() as tape:
                tape.watch(x)
                loss = loss_fn(x, *args)
            return tape.gradient(loss, x)

        function = tf.function(gradient, reduce_retracing=True)
        # One trace per model is expected: TensorFlow's "frequent retracing" warning counts the
        # traces of every function made from this code, across models.
        function._omit_frequent_tracing_warning = True
        return lambda x, *args: _to_numpy(
            function(tf.convert_to_tensor(np.asarray(x, np.float32)), *args)).astype(np.float32)
    if backend == "jax" and isinstance(layer, keras.Layer):
        import jax

        variables = list(layer.variables)

        def stateless_loss(x, values, *args):
            with keras.StatelessScope(state_mapping=list(zip(variables, values))):
                return loss_fn(x, *args)

        function = jax.jit(jax.grad(stateless_loss))
        return lambda x, *args: _to_numpy(function(
            ops.convert_to_tensor(np.asarray(x, np.float32)),
            [variable.value for variable in variables], *args)).astype(np.float32)
    return lambda x, *args: input_gradient(loss_fn, x, *args)


def signed_step(loss_fn, x, step):
    """``x + step * sign(grad_x loss_fn(x))`` with a zero gradient counted as +1 (the ODIN
    reference code's ``grad >= 0``); NumPy float32."""
    gradient = input_gradient(loss_fn, x)
    x = np.asarray(ops.convert_to_numpy(x), dtype=np.float32)
    return (x + step * np.where(gradient >= 0, 1.0, -1.0)).astype(np.float32)
