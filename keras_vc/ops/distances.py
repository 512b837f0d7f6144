"""Pairwise distances: the one home of every distance computation in keras_vc.

All functions use matrix products (never a (n, m, d) difference tensor), work on NumPy arrays
and backend tensors alike, and compute in float32 or wider: the epsilons below underflow in
float16.
"""

from keras import ops

NORM_EPSILON = 1e-12
SQRT_EPSILON = 1e-12


def _float(x):
    x = ops.convert_to_tensor(x)
    if ops.dtype(x) not in ("float32", "float64"):
        x = ops.cast(x, "float32")
    return x


def squared_norms(x):
    """Row-wise squared L2 norms, shape (n,)."""
    x = _float(x)
    return ops.sum(ops.square(x), axis=-1)


def l2_normalize(x, epsilon=NORM_EPSILON):
    """``x / max(||x||, epsilon)`` row-wise (PyTorch ``F.normalize``), with a finite gradient at 0."""
    x = _float(x)
    return x * ops.rsqrt(ops.maximum(squared_norms(x)[..., None], epsilon ** 2))


def pairwise_squared_euclidean(a, b):
    """``||a_i - b_j||^2`` for rows of a (n, d) and b (m, d): (n, m), clamped at 0."""
    a, b = _float(a), _float(b)
    b = ops.cast(b, a.dtype)
    cross = ops.matmul(a, ops.transpose(b))
    return ops.maximum(squared_norms(a)[:, None] + squared_norms(b)[None, :] - 2.0 * cross, 0.0)


def pairwise_cosine_distance(a, b):
    """``1 - cos(a_i, b_j)``: (n, m), in [0, 2]."""
    cosine = ops.matmul(l2_normalize(a), ops.transpose(ops.cast(l2_normalize(b), _float(a).dtype)))
    return ops.clip(1.0 - cosine, 0.0, 2.0)


def unit_vector_distance(a_unit, b_unit, epsilon=SQRT_EPSILON):
    """Euclidean distance between unit rows: ``sqrt(max(2 - 2 a.b, 0) + epsilon)``, (n, m).

    The epsilon keeps the gradient finite at zero distance; inputs must already be unit vectors
    (see :func:`l2_normalize`).
    """
    a_unit, b_unit = _float(a_unit), _float(b_unit)
    cosine = ops.matmul(a_unit, ops.transpose(ops.cast(b_unit, a_unit.dtype)))
    return ops.sqrt(ops.maximum(2.0 - 2.0 * cosine, 0.0) + epsilon)
