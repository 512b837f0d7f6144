"""Pairwise distances: the one home of every distance computation in keras_vc.

All functions use matrix products (never a (n, m, d) difference tensor), work on NumPy arrays
and backend tensors alike, and compute in float32 or wider: the epsilons below underflow in
float16.

Precision, in float32 against float64 (the tests check the bounds; the figures below are
printed by ``python docs/figures/distance_precision.py``, on the tests' data):

* The matrix-product form ``||a||^2 + ||b||^2 - 2 a.b`` loses the digits that the three terms
  share. :func:`pairwise_squared_euclidean` therefore first subtracts the mean of all rows (a
  common shift cancels exactly in every difference): at a common offset of 1000 the relative
  error was 1e-1 without it and 1e-7, the float32 rounding of the distances, with it.
* For unit vectors, ``sqrt(2 - 2 u.q)`` is exact only to ``~1e-7 / distance``: near a prototype
  its relative error was 0.23 at distance 1e-3 (gradients 0.08-0.12), 5.9 at 1e-4 (gradients
  43-99).
  :func:`prototype_distances` keeps the matrix product for every class but recomputes the
  nearest prototype's distance (the one that decides the loss and the scores) by a direct
  difference, which is exact to ``~1e-7`` absolute.

Zero and tiny vectors: :func:`l2_normalize` maps every row whose norm is below
``NORM_EPSILON = 1e-12`` (0 included) to the zero vector, and passes no gradient back through it:
the direction of such a vector is undefined (float32 keeps only a few digits of it below
``~1e-19``), and the ``1 / norm`` gradient of normalisation is ``>= 1e12`` there. Rows above the
epsilon become unit vectors at every scale that float32 represents (the norm is computed after
dividing each row by its largest magnitude, so it neither underflows nor overflows).
"""

from keras import ops

from keras_vc.ops._dtypes import float_tensor

NORM_EPSILON = 1e-12
SQRT_EPSILON = 1e-12


def _check_rows(x, name, rank=None):
    shape = tuple(x.shape)
    if len(shape) < 1 or (rank is not None and len(shape) != rank):
        expected = f"rank {rank}" if rank is not None else "at least one axis"
        raise ValueError(f"`{name}` must have {expected} (rows of vectors), got shape {shape}.")


def _check_same_width(a, b, name_a, name_b):
    width_a, width_b = a.shape[-1], b.shape[-1]
    if width_a is not None and width_b is not None and width_a != width_b:
        raise ValueError(
            f"`{name_a}` and `{name_b}` must have the same number of features (last axis), "
            f"got {width_a} and {width_b}.")


def squared_norms(x):
    """Row-wise squared L2 norms, shape (n,)."""
    x = float_tensor(x)
    return ops.sum(ops.square(x), axis=-1)


def _safe_norm(x):
    """``||x||`` over the last axis with a zero (not NaN) gradient at 0."""
    squared = ops.sum(ops.square(x), axis=-1)
    positive = squared > 0
    return ops.where(positive, ops.sqrt(ops.where(positive, squared, 1.0)), 0.0)


def l2_normalize(x, epsilon=NORM_EPSILON):
    """Unit rows ``x / ||x||``; rows of norm below ``epsilon`` (0 included) become 0.

    Differs from PyTorch's ``F.normalize`` (``x / max(||x||, epsilon)``) only for rows of norm in
    ``(0, epsilon)``, which that maps to non-unit vectors of norm ``||x|| / epsilon``: here every
    output row is either a unit vector or exactly 0, with a zero gradient for the latter (see the
    module docstring). The norm is computed on the row divided by its largest magnitude, so rows of
    any finite float32 norm above ``epsilon`` give unit vectors.

    Args:
        x: (..., d) rows, NumPy array or tensor; computed in float32 (float64 stays float64).
        epsilon: norms below this map to the zero vector; >= 0.

    Returns:
        (..., d) tensor of unit or zero rows.

    Raises:
        ValueError: ``x`` is a scalar or ``epsilon`` is negative.
    """
    x = float_tensor(x)
    _check_rows(x, "x")
    if not epsilon >= 0:
        raise ValueError(f"`epsilon` must be a number >= 0, got {epsilon!r}.")
    # The result does not depend on the row's scale, so treating the scale as a constant gives
    # the exact gradient.
    peak = ops.stop_gradient(ops.max(ops.abs(x), axis=-1, keepdims=True))
    scaled = x / ops.where(peak > 0, peak, 1.0)
    scaled_squared = ops.sum(ops.square(scaled), axis=-1, keepdims=True)  # >= 1 unless 0
    tiny = peak * ops.sqrt(scaled_squared) < epsilon  # peak == 0 included
    unit = scaled * ops.rsqrt(ops.where(tiny, 1.0, scaled_squared))
    return ops.where(tiny, ops.zeros_like(unit), unit)


def pairwise_squared_euclidean(a, b):
    """``||a_i - b_j||^2`` for rows of a (n, d) and b (m, d): (n, m), clamped at 0.

    The mean of all ``n + m`` rows is subtracted first (it cancels exactly in every
    difference), so that a large common offset does not eat the float32 digits of the matrix
    product form.

    Raises:
        ValueError: ``a`` or ``b`` is not 2-D, or their numbers of features differ.
    """
    a, b = float_tensor(a), float_tensor(b)
    b = ops.cast(b, a.dtype)
    _check_rows(a, "a", rank=2)
    _check_rows(b, "b", rank=2)
    _check_same_width(a, b, "a", "b")
    # Row counts as tensors: a symbolic batch dimension (None) has no Python value.
    count = ops.sum(ops.ones_like(a[:, 0])) + ops.sum(ops.ones_like(b[:, 0]))
    # Any common shift is exact; as a constant it also leaves the gradients exact.
    centre = ops.stop_gradient((ops.sum(a, axis=0) + ops.sum(b, axis=0)) / ops.maximum(count, 1.0))
    a, b = a - centre, b - centre
    cross = ops.matmul(a, ops.transpose(b))
    return ops.maximum(squared_norms(a)[:, None] + squared_norms(b)[None, :] - 2.0 * cross, 0.0)


def pairwise_cosine_distance(a, b):
    """``1 - cos(a_i, b_j)``: (n, m), in [0, 2]; a zero row is at distance 1 from everything."""
    a_unit = l2_normalize(a)
    cosine = ops.matmul(a_unit, ops.transpose(ops.cast(l2_normalize(b), a_unit.dtype)))
    return ops.clip(1.0 - cosine, 0.0, 2.0)


def unit_vector_distance(a_unit, b_unit, epsilon=SQRT_EPSILON):
    """Euclidean distance between unit rows: ``sqrt(max(2 - 2 a.b, 0) + epsilon)``, (n, m).

    The epsilon keeps the gradient finite at zero distance; inputs must already be unit vectors
    (see :func:`l2_normalize`). Accurate to ``~1e-7 / distance`` only: for distances to learned
    prototypes use :func:`prototype_distances`.
    """
    a_unit, b_unit = float_tensor(a_unit), float_tensor(b_unit)
    cosine = ops.matmul(a_unit, ops.transpose(ops.cast(b_unit, a_unit.dtype)))
    return ops.sqrt(ops.maximum(2.0 - 2.0 * cosine, 0.0) + epsilon)


def prototype_distances(features, prototypes):
    """``||norm(z_i) - norm(p_j)||`` for features z (..., D) and raw prototypes p (K, D).

    The distances of IsoMax+ / DisMax (Macedo & Ludermir 2021, arXiv 2105.14399; Macedo et al.
    2022, arXiv 2205.05874), with ``norm`` = :func:`l2_normalize` (a feature of norm below
    ``NORM_EPSILON`` is the zero vector, at distance exactly 1 from every unit prototype, as in the
    reference, and passes no gradient back; a zero prototype likewise).

    All K distances come from one matrix product, ``sqrt(max(|u|^2 + |q|^2 - 2 u.q, 0) + 1e-12)``
    (O(B K D), no (B, K, D) tensor); the nearest prototype's distance, which decides the loss and
    the scores and which that form gets wrong near a prototype (see the module docstring), is then
    recomputed by a direct difference with the gathered nearest prototype (O(B D)) and written into
    its column. Its gradient at exactly zero distance is 0.

    Args:
        features: (..., D) features, NumPy array or tensor (float32, or float64).
        prototypes: (K, D) raw (unnormalised) prototypes.

    Returns:
        (..., K) distances in [0, 2], in the dtype of ``features`` (float32 for other dtypes).
        Float64 has float64 precision on TensorFlow only: Keras' PyTorch ``matmul`` and
        ``maximum`` compute 64-bit operands in 32 bits, and JAX without ``jax_enable_x64``
        converts them to float32.

    Raises:
        ValueError: ``features`` is a scalar, ``prototypes`` is not 2-D, or their numbers of
            features differ.
    """
    features = float_tensor(features)
    prototypes = ops.cast(float_tensor(prototypes), features.dtype)
    _check_rows(features, "features")
    _check_rows(prototypes, "prototypes", rank=2)
    _check_same_width(features, prototypes, "features", "prototypes")
    unit_features = l2_normalize(features)
    unit_prototypes = l2_normalize(prototypes)
    squared = ops.maximum(
        squared_norms(unit_features)[..., None] + squared_norms(unit_prototypes)
        - 2.0 * ops.matmul(unit_features, ops.transpose(unit_prototypes)), 0.0)
    distance = ops.sqrt(squared + SQRT_EPSILON)
    nearest = ops.cast(ops.argmin(squared, axis=-1), "int32")
    exact = _safe_norm(unit_features - ops.take(unit_prototypes, nearest, axis=0))
    is_nearest = ops.equal(ops.arange(ops.shape(prototypes)[0], dtype="int32"),
                           nearest[..., None])
    return ops.where(is_nearest, exact[..., None], distance)
