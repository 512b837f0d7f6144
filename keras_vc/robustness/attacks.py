"""White-box L-infinity attacks on a Keras classifier whose output is logits.

* :func:`fgsm`: the fast gradient sign method (Goodfellow, Shlens & Szegedy 2015),
  ``x' = clip(x + eps * sign(grad_x CE(f(x), y)))``.
* :func:`pgd`: projected gradient descent (Madry et al. 2018): a random start in the
  ``eps``-ball, then ``steps`` signed-gradient steps of size ``step_size``, each followed by the
  projection onto the ball and onto ``value_range``.

The loss is the softmax cross-entropy of the model's output logits, and the gradient is taken
through the model exactly as trained (``training=False``, no temperature, no smoothing), so a
head whose logits saturate is attacked through its real gradient. The per-sample losses are
summed, so every input gets the gradient of its own loss whatever the batch size. Gradients come
from the backend's own differentiation (:mod:`keras_vc.ops.gradients`): a ``tf.GradientTape`` in
a ``tf.function`` on TensorFlow, a jitted ``jax.grad`` on JAX (both compiled once per model),
``torch.autograd`` on PyTorch; no TensorFlow is needed on the other backends.

Example:
    >>> import keras, numpy as np
    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    >>> x = np.random.default_rng(0).random((8, 4)).astype("float32")
    >>> y = np.zeros(8, dtype="int64")
    >>> x_adv = pgd(model, x, y, epsilon=0.1, steps=5, value_range=(0.0, 1.0))
    >>> bool(np.abs(x_adv - x).max() <= 0.1 + 1e-6)
    True
"""

import weakref

import keras
import numpy as np
from keras import ops

from keras_vc import _validation
from keras_vc.ops import gradients

_GRADIENT_FUNCTIONS = weakref.WeakKeyDictionary()


def _input_gradient_function(model):
    """``grad(x, y)``: gradient of the summed cross-entropy w.r.t. ``x``, compiled once per model.

    A compiled function costs a fraction of a second per model and makes each of the many PGD
    steps several times cheaper than an eager gradient (Keras' per-layer eager overhead
    dominates on small models).
    """
    function = _GRADIENT_FUNCTIONS.get(model)
    if function is not None:
        return function
    model_ref = weakref.ref(model)  # the cache must not keep the model alive

    def summed_cross_entropy(x, y):
        logits = ops.cast(model_ref()(x, training=False), "float32")
        losses = keras.losses.sparse_categorical_crossentropy(y, logits, from_logits=True)
        return ops.sum(losses)

    function = gradients.compiled_input_gradient(
        summed_cross_entropy, model if isinstance(model, keras.Layer) else None)
    _GRADIENT_FUNCTIONS[model] = function
    return function


def _num_classes(model, x):
    """The width K of the model's logits: from its symbolic output, else from one forward pass."""
    try:
        shape = tuple(model.outputs[0].shape)
    except (AttributeError, IndexError, TypeError, ValueError):
        shape = tuple(model(x[:1], training=False).shape)
    if len(shape) != 2 or shape[-1] is None or shape[-1] < 2:
        raise ValueError(f"`model` must output logits of shape (batch, K) with K >= 2, got "
                         f"{shape}.")
    return int(shape[-1])


def _check_inputs(model, x, y, epsilon, value_range, batch_size):
    if not callable(model):
        raise ValueError(f"`model` must be a Keras model or layer, got {type(model).__name__}.")
    x = _validation.check_finite_array(x, "x").astype(np.float32)
    if x.ndim < 2:
        raise ValueError(f"`x` must be a batch (n, ...), got shape {x.shape}.")
    y = _validation.check_labels(y, _num_classes(model, x), num_samples=x.shape[0], name="y")
    epsilon = _validation.check_float(epsilon, "epsilon", minimum=0.0)
    if value_range is not None:
        value_range = _validation.check_value_range(value_range)
    batch_size = _validation.check_int(batch_size, "batch_size", minimum=1)
    return x, y, epsilon, value_range, batch_size


def _gradient_sign(model, x, y, batch_size):
    gradient_fn = _input_gradient_function(model)
    signs = np.empty_like(x)
    for start in range(0, x.shape[0], batch_size):
        stop = start + batch_size
        signs[start:stop] = np.sign(gradient_fn(x[start:stop], y[start:stop]))
    return signs


def _clip(x, value_range):
    if value_range is None:
        return x
    return np.clip(x, value_range[0], value_range[1])


def fgsm(model, x, y, epsilon, value_range=None, batch_size=256):
    """Fast gradient sign method: one L-infinity step of size ``epsilon`` up the loss.

    Args:
        model: a Keras model (or callable layer) mapping inputs to logits.
        x: clean inputs (n, ...).
        y: true labels (n,), (n, 1) or one-hot (n, K), in ``[0, K)`` for the model's K.
        epsilon: L-infinity budget in input units (>= 0); ``epsilon = 0`` returns ``x``.
        value_range: ``(low, high)`` to clip the adversarial inputs to, or None.
        batch_size: inputs per gradient computation.

    Returns:
        float32 adversarial inputs of the shape of ``x``.
    """
    x, y, epsilon, value_range, batch_size = _check_inputs(model, x, y, epsilon, value_range,
                                                          batch_size)
    signs = _gradient_sign(model, x, y, batch_size)
    return _clip(x + np.float32(epsilon) * signs, value_range).astype(np.float32)


def pgd(model, x, y, epsilon, steps=10, step_size=None, random_start=True, value_range=None,
        seed=0, batch_size=256):
    """Projected gradient descent in the L-infinity ball of radius ``epsilon`` around ``x``.

    Args:
        model: a Keras model (or callable layer) mapping inputs to logits.
        x: clean inputs (n, ...).
        y: true labels (n,), (n, 1) or one-hot (n, K), in ``[0, K)`` for the model's K.
        epsilon: L-infinity budget in input units (>= 0).
        steps: number of gradient steps (>= 1).
        step_size: size of each signed step (default ``2.5 * epsilon / steps``, Madry et al.).
        random_start: start from a uniform point of the ball (seeded) instead of ``x``.
        value_range: ``(low, high)`` to clip to after every step, or None.
        seed: non-negative integer for the random start.
        batch_size: inputs per gradient computation.

    Returns:
        float32 adversarial inputs with ``|x_adv - x| <= epsilon`` everywhere (and inside
        ``value_range``).
    """
    x, y, epsilon, value_range, batch_size = _check_inputs(model, x, y, epsilon, value_range,
                                                          batch_size)
    steps = _validation.check_int(steps, "steps", minimum=1)
    if step_size is None:
        step_size = 2.5 * epsilon / steps
    step_size = _validation.check_float(step_size, "step_size", minimum=0.0)
    seed = _validation.check_int(seed, "seed", minimum=0)
    if not isinstance(random_start, bool):
        raise ValueError(f"`random_start` must be True or False, got {random_start!r}.")
    low, high = x - np.float32(epsilon), x + np.float32(epsilon)
    x_adv = x.copy()
    if random_start and epsilon > 0:
        rng = np.random.default_rng(seed)
        x_adv = x + rng.uniform(-epsilon, epsilon, size=x.shape).astype(np.float32)
        x_adv = _clip(np.clip(x_adv, low, high), value_range)
    for _ in range(steps):
        signs = _gradient_sign(model, x_adv, y, batch_size)
        x_adv = x_adv + np.float32(step_size) * signs
        x_adv = _clip(np.clip(x_adv, low, high), value_range)
    return x_adv.astype(np.float32)
