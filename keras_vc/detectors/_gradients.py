"""Gradients of a scalar with respect to a model's input, on every Keras backend (Keras 3 has no
backend-agnostic input gradient): used by ODIN's and Mahalanobis's input preprocessing."""

import keras
import numpy as np
from keras import ops


def input_gradient(loss_fn, x):
    """``d loss_fn(x) / d x`` as a NumPy array.

    Args:
        loss_fn: maps a float32 input tensor to a scalar tensor, with keras.ops / Keras layers.
        x: a batch of inputs.
    """
    x = np.asarray(ops.convert_to_numpy(x), dtype=np.float32)
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        tensor = tf.convert_to_tensor(x)
        with tf.GradientTape() as tape:
            tape.watch(tensor)
            loss = loss_fn(tensor)
        gradient = tape.gradient(loss, tensor)
    elif backend == "jax":
        import jax

        gradient = jax.grad(loss_fn)(ops.convert_to_tensor(x))
    elif backend == "torch":
        tensor = ops.convert_to_tensor(x).detach().clone().requires_grad_(True)
        loss_fn(tensor).backward()
        gradient = tensor.grad
    else:
        raise ValueError(f"Input gradients are not implemented for the {backend!r} backend; use "
                         "epsilon=0.")
    if gradient is None:
        raise ValueError("The score does not depend on the input (no gradient); use epsilon=0.")
    return np.asarray(ops.convert_to_numpy(gradient))


def signed_step(loss_fn, x, step):
    """``x + step * sign(grad_x loss_fn(x))`` with a zero gradient counted as +1 (the reference
    code's ``grad >= 0``); NumPy float32."""
    gradient = input_gradient(loss_fn, x)
    x = np.asarray(ops.convert_to_numpy(x), dtype=np.float32)
    return (x + step * np.where(gradient >= 0, 1.0, -1.0)).astype(np.float32)
