"""Diagonal Gaussians: the one home of every Gaussian formula in keras_vc.

A diagonal Gaussian is always given by ``(mean, log_variance)``, both of shape ``(..., D)``.

Two kinds of code live here:

- **Closed forms written with** ``keras.ops`` (log-density, entropy, KL divergences,
  reparameterised sampling). Layers use these in their training graphs: they run on every Keras
  backend, under XLA, in float32 whatever the mixed-precision policy, and the *pairwise* forms
  (every row of a batch against every one of ``K`` class-conditional Gaussians) expand the
  quadratic into matrix products, so they never build a ``(B, K, D)`` tensor.
- **TensorFlow Probability distributions** (:func:`multivariate_normal_diag`), TensorFlow
  backend only: the object users get when they ask a layer for its posterior ``q(z | x)`` or its
  class-conditional priors ``p(z | y)`` (``log_prob``, ``sample``, ``entropy``,
  ``tfd.kl_divergence`` ...). Nothing else calls TFP. The tests check every closed form here
  against an independent NumPy formula, and against TFP on TensorFlow.

Sampling (:func:`standard_normal`, :func:`sample`) draws stateless noise (XLA-safe) from a
``keras.random.SeedGenerator`` owned by the calling layer.
"""

import math

import keras
from keras import ops

from keras_vc.ops._dtypes import float_tensor

LOG_2PI = math.log(2.0 * math.pi)


def _pair(mean, log_variance):
    mean = float_tensor(mean)
    return mean, ops.cast(float_tensor(log_variance), mean.dtype)


# --------------------------------------------------------------------------------------------
# TensorFlow Probability
# --------------------------------------------------------------------------------------------


def tfp_distributions():
    """``tensorflow_probability.distributions``, on the TensorFlow backend only.

    TFP is used for the ``*_distribution`` convenience methods alone (the objects users ask a
    layer for); no training or inference graph calls it. On JAX, TFP 0.25's JAX substrate does
    not import with the JAX releases Keras 3.15 runs on (>= 0.7), and PyTorch has no TFP.

    Raises:
        NotImplementedError: on a backend other than TensorFlow, naming the backend and the
            closed forms of this module that replace the distribution object there.
    """
    backend = keras.backend.backend()
    if backend != "tensorflow":
        raise NotImplementedError(
            f"TensorFlow Probability distributions need the TensorFlow backend; Keras runs on "
            f"{backend!r}. Use the closed forms of keras_vc.ops.gaussian instead (log_density, "
            "pairwise_log_density, entropy, kl_divergence, sample), which run on every backend, "
            "or set KERAS_BACKEND=tensorflow.")
    import tensorflow_probability as tfp

    return tfp.distributions


def multivariate_normal_diag(mean, log_variance, name="MultivariateNormalDiag"):
    """The TFP ``MultivariateNormalDiag`` with the given mean and ``exp(log_variance)`` variances.

    Args:
        mean: tensor (..., D).
        log_variance: tensor broadcastable to ``mean``.
        name: name of the distribution.

    Returns:
        A ``tfd.MultivariateNormalDiag`` with batch shape ``mean.shape[:-1]`` and event shape
        ``(D,)``; its ``scale_diag`` is ``exp(log_variance / 2)``.

    Raises:
        NotImplementedError: on a backend other than TensorFlow (:func:`tfp_distributions`).

    Example:
        >>> q = multivariate_normal_diag(np.zeros((4, 2)), np.zeros((4, 2)))
        >>> q.log_prob(np.zeros((4, 2)))   # -log(2 pi) for each row
    """
    tfd = tfp_distributions()
    mean, log_variance = _pair(mean, log_variance)
    return tfd.MultivariateNormalDiag(loc=mean, scale_diag=ops.exp(0.5 * log_variance), name=name)


# --------------------------------------------------------------------------------------------
# Sampling
# --------------------------------------------------------------------------------------------


def standard_normal(shape, seed, dtype="float32"):
    """Standard normal noise of ``shape``; stateless (XLA-safe) for a ``SeedGenerator`` seed.

    On the TensorFlow backend with a ``keras.random.SeedGenerator`` this draws the generator's
    next seed and calls ``tf.random.stateless_normal`` with the Philox algorithm.
    ``keras.random.normal`` leaves the algorithm to TensorFlow (``"auto_select"``), which under
    XLA on CPU runs about ten times slower for a 64 x 128 draw with TensorFlow 2.21
    (``python docs/figures/stateless_normal_speed.py`` prints both timings): in a small model's
    training step that dominates. Any other seed, or
    another backend, goes through ``keras.random.normal``.

    Args:
        shape: output shape (ints or scalar tensors).
        seed: a ``keras.random.SeedGenerator`` or anything ``keras.random.normal`` accepts.
        dtype: floating dtype of the draws.

    Returns:
        A tensor of independent N(0, 1) draws.
    """
    if keras.backend.backend() == "tensorflow" and isinstance(seed, keras.random.SeedGenerator):
        import tensorflow as tf

        state = seed.next()
        # The generator's state is int64; stateless ops under XLA need int32 seeds (as Keras).
        state = tf.cast(tf.math.floormod(state, tf.int32.max - 1), tf.int32)
        return tf.random.stateless_normal(shape, seed=state, dtype=dtype, alg="philox")
    return keras.random.normal(shape, dtype=dtype, seed=seed)


def reparameterize(mean, log_variance, noise):
    """``mean + exp(log_variance / 2) * noise``: a draw from the Gaussian for ``noise ~ N(0, I)``.

    Gradients flow to ``mean`` and ``log_variance`` (the reparameterisation trick). Use it when
    the noise is shared with another computation; :func:`sample` draws the noise itself.
    """
    mean, log_variance = _pair(mean, log_variance)
    return mean + ops.exp(0.5 * log_variance) * ops.cast(noise, mean.dtype)


def sample(mean, log_variance, seed, num_samples=None):
    """Reparameterised draws ``z = mean + exp(log_variance / 2) * eps``, ``eps ~ N(0, I)``.

    Gradients flow to ``mean`` and ``log_variance``. With a ``keras.random.SeedGenerator`` as
    ``seed`` the draws are stateless (XLA-safe) and advance the generator's state; an integer seed
    gives the same draws on every call. The same seed gives different draws with and without XLA
    on TensorFlow (tensorflow/tensorflow#121243): compare statistics, not values.

    Args:
        mean: tensor (..., D).
        log_variance: tensor of the same shape.
        seed: a ``keras.random.SeedGenerator`` (what layers pass) or anything
            ``keras.random.normal`` accepts.
        num_samples: None for one draw of shape ``mean.shape``, or an int >= 1 for draws of
            shape ``(num_samples,) + mean.shape``.

    Returns:
        The draws, in the dtype of ``mean`` promoted to at least float32.
    """
    mean, log_variance = _pair(mean, log_variance)
    shape = ops.shape(mean)
    if num_samples is not None:
        shape = (num_samples,) + tuple(shape)
    return reparameterize(mean, log_variance, standard_normal(shape, seed, dtype=mean.dtype))


# --------------------------------------------------------------------------------------------
# Densities
# --------------------------------------------------------------------------------------------


def log_density(x, mean, log_variance):
    """``log N(x; mean, diag(exp(log_variance)))`` summed over the last axis (broadcasting).

    Args:
        x, mean, log_variance: tensors broadcastable to a common shape (..., D).

    Returns:
        Tensor (...,) of log-densities, including the ``-D/2 log(2 pi)`` constant.
    """
    x = float_tensor(x)
    mean = ops.cast(float_tensor(mean), x.dtype)
    log_variance = ops.cast(float_tensor(log_variance), x.dtype)
    squared = ops.square(x - mean) * ops.exp(-log_variance)
    return -0.5 * ops.sum(LOG_2PI + log_variance + squared, axis=-1)


def _pairwise_mahalanobis(z, means, inverse_variances):
    """``sum_d (z_bd - mu_kd)^2 / sigma_kd^2`` as matrix products: (B, D), (K, D) -> (B, K).

    ``z^2 @ (1/s^2)^T - 2 z @ (mu/s^2)^T + sum_d mu^2/s^2``; rounding can make it slightly
    negative, so it is clamped at 0.
    """
    quadratic = ops.matmul(ops.square(z), ops.transpose(inverse_variances))
    cross = ops.matmul(z, ops.transpose(means * inverse_variances))
    offset = ops.sum(ops.square(means) * inverse_variances, axis=-1)
    return ops.maximum(quadratic - 2.0 * cross + offset[None, :], 0.0)


def pairwise_log_density(z, means, log_variances):
    """``log N(z_b; mu_k, diag(exp(log_variances_k)))`` for every row b and Gaussian k.

    Computed with matrix products (no ``(B, K, D)`` tensor), in float32 or wider.

    Args:
        z: tensor (B, D).
        means: tensor (K, D) of the K Gaussians' means.
        log_variances: tensor (K, D) of their log-variances.

    Returns:
        Tensor (B, K), including the ``-D/2 log(2 pi)`` constant.
    """
    z = float_tensor(z)
    means = ops.cast(float_tensor(means), z.dtype)
    log_variances = ops.cast(float_tensor(log_variances), z.dtype)
    dim = ops.cast(ops.shape(z)[-1], z.dtype)
    mahalanobis = _pairwise_mahalanobis(z, means, ops.exp(-log_variances))
    normaliser = dim * LOG_2PI + ops.sum(log_variances, axis=-1)
    return -0.5 * (mahalanobis + normaliser[None, :])


def pairwise_expected_log_density(mean, log_variance, means, log_variances):
    """``E_{z ~ q_b}[log p_k(z)]`` for every row b and Gaussian k, in closed form: (B, K).

    With ``q_b = N(mean_b, diag exp(log_variance_b))`` and
    ``p_k = N(means_k, diag exp(log_variances_k))``:
    ``E_q[log p_k] = log p_k(mean_b) - 1/2 sum_d s_bd^2 / sigma_kd^2``.

    Args:
        mean, log_variance: tensors (B, D) of the rows' Gaussians.
        means, log_variances: tensors (K, D).

    Returns:
        Tensor (B, K).
    """
    mean, log_variance = _pair(mean, log_variance)
    means = ops.cast(float_tensor(means), mean.dtype)
    log_variances = ops.cast(float_tensor(log_variances), mean.dtype)
    trace = ops.matmul(ops.exp(log_variance), ops.transpose(ops.exp(-log_variances)))
    return pairwise_log_density(mean, means, log_variances) - 0.5 * trace


# --------------------------------------------------------------------------------------------
# Entropy and KL divergences
# --------------------------------------------------------------------------------------------


def entropy(log_variance):
    """Differential entropy ``1/2 sum_d (1 + log(2 pi) + log_variance_d)`` of a diagonal Gaussian.

    Args:
        log_variance: tensor (..., D).

    Returns:
        Tensor (...,) in nats.
    """
    log_variance = float_tensor(log_variance)
    return 0.5 * ops.sum(1.0 + LOG_2PI + log_variance, axis=-1)


def kl_to_standard_normal(mean, log_variance):
    """``KL(N(mean, diag exp(log_variance)) || N(0, I))`` **per dimension**, not summed.

    ``KL_d = -1/2 (1 + log s_d^2 - mean_d^2 - s_d^2)``. Sum over the last axis for the KL of the
    whole vector; V-TST averages it over the latent dimensions instead.

    Args:
        mean, log_variance: tensors (..., D).

    Returns:
        Tensor (..., D), each entry >= 0.
    """
    mean, log_variance = _pair(mean, log_variance)
    return -0.5 * (1.0 + log_variance - ops.square(mean) - ops.exp(log_variance))


def kl_divergence(mean_q, log_variance_q, mean_p, log_variance_p):
    """``KL(q || p)`` between diagonal Gaussians, summed over the last axis (broadcasting).

    ``1/2 sum_d [log s_p^2 - log s_q^2 - 1 + (s_q^2 + (m_q - m_p)^2) / s_p^2]``.

    Args:
        mean_q, log_variance_q: tensors (..., D) of q.
        mean_p, log_variance_p: tensors broadcastable to them, of p.

    Returns:
        Tensor (...,), >= 0.
    """
    mean_q, log_variance_q = _pair(mean_q, log_variance_q)
    mean_p = ops.cast(float_tensor(mean_p), mean_q.dtype)
    log_variance_p = ops.cast(float_tensor(log_variance_p), mean_q.dtype)
    ratio = ops.exp(log_variance_q - log_variance_p)
    squared = ops.square(mean_q - mean_p) * ops.exp(-log_variance_p)
    return 0.5 * ops.sum(ratio + squared - 1.0 - log_variance_q + log_variance_p, axis=-1)


def pairwise_kl_divergence(mean, log_variance, means, log_variances):
    """``KL(q_b || p_k)`` for every row b and Gaussian k, with matrix products: (B, K).

    ``KL(q_b || p_k) = -H(q_b) - E_{q_b}[log p_k]`` (:func:`entropy`,
    :func:`pairwise_expected_log_density`).

    Args:
        mean, log_variance: tensors (B, D) of the rows' Gaussians q_b.
        means, log_variances: tensors (K, D) of the Gaussians p_k.

    Returns:
        Tensor (B, K), clamped at 0 against rounding.
    """
    cross_entropy = -pairwise_expected_log_density(mean, log_variance, means, log_variances)
    return ops.maximum(cross_entropy - entropy(log_variance)[:, None], 0.0)
