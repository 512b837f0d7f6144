"""Soft nearest neighbor loss (SNNL): Frosst, Papernot & Hinton, "Analyzing and Improving
Representations with the Soft Nearest Neighbor Loss", ICML 2019, arXiv 1902.01889.

The loss, its temperature-free variant (the temperature optimised per batch) and the Keras
``Loss`` class share their row terms and masks, so they live in one module; about 40% of it is
the documentation of where and why the computation departs from the authors' code.

For a batch of representations ``x_1..x_b`` (flattened) with labels ``y_1..y_b`` and a
temperature ``T``, the paper's eq. 1 is::

    SNNL = -1/b sum_i log( sum_{j != i, y_j = y_i} exp(-d(x_i, x_j) / T)
                           / sum_{k != i}            exp(-d(x_i, x_k) / T) )

with ``d`` the squared Euclidean distance (the authors' ``pairwise_euclid_distance``, no square
root) or the cosine distance ``1 - cos``. Low SNNL: the classes are well separated at that layer;
high SNNL: they are entangled.

How it is computed here (and why):

* **Log-sum-exp form.** With ``A_ij = -d_ij / T`` each row is
  ``logsumexp_{k != i} A_ik - logsumexp_{j != i, y_j = y_i} A_ij``. Flattened conv activations have
  squared distances of 10^3 to 10^5; the authors' form ``exp(-D / T)`` then underflows to 0 for
  every pair, and their ``1e-5`` epsilons turn the loss into the constant ``-log(1e-5) = 11.5``
  with zero gradient. The log-sum-exp form has neither problem at any scale.
* **Self-pairs** are removed by setting the diagonal of ``A`` to a large negative number before
  the log-sum-exp, not by subtracting ``exp(0)`` (the reference subtracts the identity matrix,
  which is exact only while ``d_ii`` is exactly 0 and ``exp`` has not underflowed).
* **Rows without a same-class partner** (a class with one member in the batch) have an empty
  numerator: ``log 0``. They are *left out of the mean*: the loss is the mean over the rows that
  have at least one partner (0, with zero gradient, if no row has one). The authors' code instead
  gives such a row the constant ``-log(1e-5)`` with zero gradient (a batch-composition-dependent
  offset); TensorFlow Similarity sets it to 0 but still divides by ``b``. Leaving it out keeps the
  value independent of how many singletons a batch happens to contain. A batch in which *no* row
  has a partner gets a ``UserWarning`` (Python's default filter shows it once per call site and
  batch size): with ``K`` classes, a batch of at least ``K + 1`` samples always holds a pair. The
  check needs the labels' values: it runs on eager calls and on NumPy labels; inside a traced
  function (``fit``, ``tf.function``, ``jit``) with tensor labels it can only catch a static
  batch size below 2.
* **Cap (for maximisation).** Eq. 1 is unbounded above: a network that *maximises* it can push
  same-class points ever further apart relative to the others, and over long runs it can (its
  activations blow up and accuracy falls to chance). The authors' epsilon bounds it,
  ``-log(1e-5 + ratio) <= -log(1e-5)``. ``cap=c`` reinstates that bound smoothly on each row,
  ``-log(exp(-c) + exp(-row))``, which is the authors' ``-log(1e-5 + ratio)`` exactly for
  ``c = -log(1e-5)`` (:data:`REFERENCE_CAP`) and is computed from the log-sum-exp row, so it does
  not underflow. The default (``cap=None``) is eq. 1 itself, for analysis and minimisation.
* Distances come from :mod:`keras_vc.ops.distances` (matmul form, ``O(b^2 D)`` time and
  ``O(b^2)`` memory, float32 even under mixed precision).

Temperature: either fixed, or optimised as in the authors' ``optimized_temp_SNNL``
(:func:`optimized_temperature_loss`): ``T = T0 / t`` with an inverse temperature ``t`` that takes
one step *minimising* SNNL per evaluation, separately from the network's optimiser; or, for
analysis, the temperature-free ``min_T SNNL`` of the paper
(:func:`temperature_free_soft_nearest_neighbor_loss`).

**Deviation from the reference in the temperature step.** The reference takes a plain gradient
step, ``t <- t - 0.1 * dSNNL/dt``. ``dSNNL/dt`` has the units of ``d / T0``, so the step is not
scale-free: at squared distances of ~1e5 (flattened activations, ``T0 = 100``) one step throws
``t`` from 1 through zero (to the floor), the next to ~46 (SNNL 1.1 -> 239), and without a cap it
cycles; at squared distances of ~1e-2 ``t`` does not move at all. Here the step is a damped,
bounded, safeguarded Newton step on ``log t``. With ``s = log t`` and ``f(s)`` the (capped) SNNL,
the closed-form derivatives ``f'``, ``f''`` depend only on ``d t / T0``, so the step is the same at
every scale of the distances. The direction is the Newton step ``-f' / f''`` where ``f'' > 0``
(else ``MAX_LOG_STEP`` downhill), bounded by ``MAX_LOG_STEP = 0.1`` in ``|log t|`` and multiplied
by ``learning_rate``; a backtracking line search (that step times 1, 1/2, ..., 1/16, or 0,
evaluated in one batched pass) takes the largest of those that does not increase SNNL. On fixed
data, repeated steps therefore never increase SNNL and settle at its minimum over ``t`` (or drift
towards ``t -> 0`` / ``inf`` when the minimum is at ``T -> inf`` / ``0``), at most ~10% per step
at ``learning_rate=1`` (1% at the reference's 0.1). The purpose is the reference's: ``t`` moves to
minimise SNNL at every training step and is not trained by the optimiser.

Example:

```python
features = np.random.normal(size=(64, 8, 8, 16)).astype("float32")  # e.g. conv activations
labels = np.random.randint(0, 10, size=64)
keras_vc.losses.soft_nearest_neighbor_loss(features, labels, temperature=100.0)
keras_vc.losses.soft_nearest_neighbor_loss(features, labels, temperature=0.5, distance="cosine")
```
"""

import warnings

import keras
import numpy as np
from keras import ops

from keras_vc import _validation
from keras_vc.ops import distances as distances_lib
from keras_vc.ops import search

DISTANCES = ("squared_euclidean", "cosine")
# Logit given to excluded pairs (self-pairs; other classes in the numerator). Real logits are
# -d/T, far above this for any realistic d and T, so after the max-shift of log-sum-exp an
# excluded pair contributes exp(-1e30) = 0; it stays finite in float32, so gradients through
# `where` stay finite too (-inf would give NaN gradients for rows with nothing left).
_MASK_LOGIT = -1e30
# The optimised inverse temperature is kept above this value (T <= 1e4 T0). A step on log t
# cannot cross zero (the reference's gradient step can, which flips the sign of every distance),
# but where SNNL is smallest at T -> inf, t would otherwise decay without end.
MIN_INVERSE_TEMPERATURE = 1e-4
# Bound on one temperature step at learning_rate=1, in |log t|: t changes by at most ~10% per
# training step (1% at the default rate 0.1), so that the network's loss landscape never jumps.
MAX_LOG_STEP = 0.1
# Fractions of the proposed step tried by the line search (0 last: never increase SNNL).
_LINE_SEARCH_FRACTIONS = (1.0, 0.5, 0.25, 0.125, 0.0625, 0.0)
# The bound the authors' STABILITY_EPS = 1e-5 puts on each row: -log(1e-5 + ratio) <= -log(1e-5).
REFERENCE_CAP = float(-np.log(1e-5))


def _is_python_number(value):
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def check_temperature(temperature, name="temperature"):
    """Validates a Python temperature (> 0); tensors and variables are passed through."""
    if isinstance(temperature, bool) or temperature is None or isinstance(temperature, str):
        raise ValueError(f"`{name}` must be a number > 0, got {temperature!r}.")
    if _is_python_number(temperature):
        return _validation.check_float(float(temperature), name, minimum=0.0, strict_minimum=True)
    if isinstance(temperature, np.ndarray):
        if temperature.ndim != 0:
            raise ValueError(f"`{name}` must be a scalar, got shape {temperature.shape}.")
        return check_temperature(float(temperature), name)
    return temperature


def check_distance(distance):
    """Validates the distance name."""
    return _validation.check_choice(distance, "distance", DISTANCES)


def flatten_features(features, name="features"):
    """(b, ...) -> (b, prod(...)) tensor; rank-1 input is an error."""
    features = ops.convert_to_tensor(features)
    if len(features.shape) < 2:
        raise ValueError(
            f"`{name}` must have shape (batch, ...) with at least one feature axis, "
            f"got shape {tuple(features.shape)}.")
    inner = features.shape[1:]
    if all(d is not None for d in inner):
        size = int(np.prod(inner))
        if size == 0:
            raise ValueError(f"`{name}` has no features: shape {tuple(features.shape)}.")
        return ops.reshape(features, (-1, size))
    return ops.reshape(features, (ops.shape(features)[0], -1))


def sparse_labels(labels, batch_size=None, name="labels"):
    """Integer class ids of shape (b,) from (b,), (b, 1) or one-hot (b, K) labels.

    Raises ``ValueError`` for any other rank, or when the (static) number of rows differs from
    ``batch_size``.
    """
    if labels is None:
        raise ValueError(f"`{name}` must be an array of class ids, got None.")
    if isinstance(labels, (list, tuple, np.ndarray)):
        array = np.asarray(labels)
        if not (np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_):
            raise ValueError(f"`{name}` must be numeric class ids, got dtype {array.dtype}.")
        if not np.all(np.isfinite(array)):
            raise ValueError(f"`{name}` contains NaN or infinite values.")
    labels = ops.convert_to_tensor(labels)
    shape = tuple(labels.shape)
    if len(shape) == 2 and shape[1] == 1:
        labels = ops.reshape(labels, (-1,))
    elif len(shape) == 2 and shape[1] is not None and shape[1] > 1:
        labels = ops.argmax(labels, axis=-1)  # one-hot rows
    elif len(shape) != 1:
        raise ValueError(
            f"`{name}` must have shape (batch,), (batch, 1) or one-hot (batch, num_classes); "
            f"got shape {shape}.")
    rows = shape[0]
    if batch_size is not None and rows is not None and rows != batch_size:
        raise ValueError(
            f"`{name}` has {rows} rows but the features have {batch_size}: one label per row "
            "of the batch is expected.")
    return ops.cast(labels, "int32")


def pairwise_distances(features, distance="squared_euclidean"):
    """(b, b) distances between the flattened rows of ``features`` (float32, or float64)."""
    features = flatten_features(features)
    if distance == "squared_euclidean":
        return distances_lib.pairwise_squared_euclidean(features, features)
    return distances_lib.pairwise_cosine_distance(features, features)


def _masks(labels):
    index = ops.arange(ops.shape(labels)[0])
    not_self = ops.not_equal(index[:, None], index[None, :])
    same_class = ops.logical_and(ops.equal(labels[:, None], labels[None, :]), not_self)
    return not_self, same_class


def _masked_logits(logits, mask):
    return ops.where(mask, logits, ops.cast(_MASK_LOGIT, logits.dtype))


def row_terms_from_distances(distances, labels, scale):
    """Per-row SNNL terms from a (b, b) distance matrix.

    Args:
        distances: (b, b) distances.
        labels: (b,) integer labels.
        scale: the inverse temperature ``1 / T``: a scalar, or shape (m, 1, 1) to evaluate m
            temperatures at once.

    Returns:
        ``(terms, valid)``: the row terms, shape (b,) (or (m, b)), 0 where ``valid`` is False, and
        the (b,) boolean mask of the rows that have a same-class partner.
    """
    logits = -distances * ops.cast(scale, distances.dtype)
    not_self, same_class = _masks(labels)
    log_all = ops.logsumexp(_masked_logits(logits, not_self), axis=-1)
    log_same = ops.logsumexp(_masked_logits(logits, same_class), axis=-1)
    valid = ops.any(same_class, axis=-1)
    terms = ops.where(valid, log_all - log_same, ops.zeros_like(log_all))
    return terms, valid


def check_cap(cap, name="cap"):
    """Validates a row cap: None (no cap) or a number > 0."""
    if cap is None:
        return None
    if not _is_python_number(cap):
        raise ValueError(f"`{name}` must be None or a number > 0, got {cap!r}.")
    return _validation.check_float(float(cap), name, minimum=0.0, strict_minimum=True)


def cap_row_terms(terms, cap):
    """Caps row terms smoothly at ``cap``: ``-log(exp(-cap) + exp(-terms))`` (None: unchanged).

    The result is below both ``cap`` and ``terms``, equals ``terms`` where ``terms << cap``, and
    is the reference's ``-log(1e-5 + ratio)`` for ``cap = REFERENCE_CAP``.
    """
    if cap is None:
        return terms
    return -ops.logaddexp(ops.full_like(terms, -cap), -terms)


def _mean_over_valid(terms, valid):
    count = ops.sum(ops.cast(valid, terms.dtype))
    return ops.sum(terms, axis=-1) / ops.maximum(count, 1.0)


def _concrete_labels(raw, labels):
    """The labels as a NumPy array when their values are known (eager call or NumPy input),
    else None (inside a traced function)."""
    if isinstance(raw, (list, tuple, np.ndarray)):
        array = np.asarray(raw)
        return array.argmax(axis=-1) if array.ndim == 2 and array.shape[1] > 1 else array.ravel()
    if keras.backend.is_keras_tensor(labels):
        return None
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf
        if not tf.executing_eagerly():
            return None
    elif backend == "jax":
        import jax
        if isinstance(labels, jax.core.Tracer):
            return None
    elif backend == "torch":
        import torch
        if torch.compiler.is_compiling():
            return None
    return ops.convert_to_numpy(labels)


def _warn_without_pairs(raw, labels, stacklevel):
    """Warns when no row of the batch has a same-class partner (SNNL is then 0, no gradient)."""
    values = _concrete_labels(raw, labels)
    if values is None:
        rows = labels.shape[0]
        if rows is None or rows >= 2:
            return
        detail = f"a batch of {rows} row(s) has no pair"
    else:
        rows = int(values.size)
        if rows == 0 or np.unique(values).size < rows:
            return
        detail = f"all {rows} rows of this batch (100%) have distinct labels"
    warnings.warn(
        f"Soft nearest neighbor loss: {detail}, so no row has a same-class partner and the loss "
        "is 0 with zero gradient. With K classes, a batch of at least K + 1 samples guarantees a "
        "pair; use larger batches (or class-balanced ones).", UserWarning, stacklevel=stacklevel)


def _prepare(features, labels, distance):
    check_distance(distance)
    flat = flatten_features(features)
    raw = labels
    labels = sparse_labels(labels, flat.shape[0])
    # _warn -> _prepare -> public function -> its caller.
    _warn_without_pairs(raw, labels, stacklevel=4)
    return pairwise_distances(flat, distance), labels


def soft_nearest_neighbor_loss(features, labels, temperature=100.0, distance="squared_euclidean",
                               cap=None):
    """The soft nearest neighbor loss of one batch (paper eq. 1), in log-sum-exp form.

    Args:
        features: (b, ...) representations of one layer; flattened to (b, D).
        labels: (b,), (b, 1) integer class ids or (b, K) one-hot rows.
        temperature: ``T > 0`` (a number, or a scalar tensor / variable). The default 100 is the
            authors' ``SNNLCrossEntropy`` default, suited to squared distances of flattened
            activations; for ``distance="cosine"`` (distances in [0, 2]) use ``T`` around 0.1-1.
        distance: ``"squared_euclidean"`` (the paper's and the reference's) or ``"cosine"``
            (``1 - cos``).
        cap: None (eq. 1) or a number > 0: each row term is capped smoothly at it
            (:func:`cap_row_terms`); use :data:`REFERENCE_CAP` when maximising SNNL.

    Returns:
        A scalar tensor (float32; float64 for float64 input): the mean of the row terms over the
        rows that have at least one same-class partner in the batch (0 if none has one).

    Raises:
        ValueError: ``temperature <= 0``, an unknown ``distance``, features of rank < 2, or
            labels whose shape is not (b,), (b, 1) or (b, K).
    """
    temperature = check_temperature(temperature)
    cap = check_cap(cap)
    distances, labels = _prepare(features, labels, distance)
    terms, valid = row_terms_from_distances(
        distances, labels, 1.0 / ops.cast(temperature, distances.dtype))
    return _mean_over_valid(cap_row_terms(terms, cap), valid)


def _log_temperature_derivatives(distances, labels, scale, cap=None):
    """``(f', f'')``: the first two derivatives of SNNL in ``s = log t``, at ``scale = t / T0``.

    With ``a_ij = d_ij t / T0`` and expectations under the softmax weights of the two log-sum-exps
    of a row, ``row' = E_same[a] - E_all[a]`` and ``row'' = row' + Var_all[a] - Var_same[a]``; a
    capped row ``c(row)`` has ``c' = g row'`` and ``c'' = g row'' - g (1 - g) row'^2`` with
    ``g = sigmoid(cap - row)``. Only ``a`` enters: the derivatives do not depend on the scale of
    the distances. A closed form, so the step needs no second autodiff pass and runs the same on
    every backend.
    """
    scaled = ops.stop_gradient(distances) * ops.cast(scale, distances.dtype)
    not_self, same_class = _masks(labels)
    masked_all = _masked_logits(-scaled, not_self)
    masked_same = _masked_logits(-scaled, same_class)
    log_all = ops.logsumexp(masked_all, axis=1, keepdims=True)
    log_same = ops.logsumexp(masked_same, axis=1, keepdims=True)
    weights_all = ops.exp(masked_all - log_all)  # the softmax weights of the two log-sum-exps
    weights_same = ops.exp(masked_same - log_same)
    mean_all = ops.sum(weights_all * scaled, axis=1, keepdims=True)
    mean_same = ops.sum(weights_same * scaled, axis=1, keepdims=True)
    variance_all = ops.sum(weights_all * ops.square(scaled - mean_all), axis=1)
    variance_same = ops.sum(weights_same * ops.square(scaled - mean_same), axis=1)
    first = (mean_same - mean_all)[:, 0]
    second = first + variance_all - variance_same
    if cap is not None:
        gate = ops.sigmoid(cap - (log_all - log_same)[:, 0])
        second = gate * second - gate * (1.0 - gate) * ops.square(first)
        first = gate * first
    valid = ops.cast(ops.any(same_class, axis=1), distances.dtype)
    count = ops.maximum(ops.sum(valid), 1.0)
    return ops.sum(first * valid) / count, ops.sum(second * valid) / count


def _updated_inverse_temperature(distances, labels, base, inverse_temperature, learning_rate,
                                 cap=None):
    """One damped, safeguarded Newton step on ``log t`` with a backtracking line search (see the
    module docstring); returns the new ``t >= MIN_INVERSE_TEMPERATURE``."""
    distances = ops.stop_gradient(distances)
    dtype = distances.dtype
    floor = float(np.log(MIN_INVERSE_TEMPERATURE))
    log_t = ops.log(ops.maximum(inverse_temperature, MIN_INVERSE_TEMPERATURE))
    first, second = _log_temperature_derivatives(distances, labels, ops.exp(log_t) / base, cap)
    convex = second > 0
    newton = ops.clip(-first / ops.where(convex, second, 1.0), -MAX_LOG_STEP, MAX_LOG_STEP)
    downhill = -ops.sign(first) * MAX_LOG_STEP
    step = learning_rate * ops.where(convex, newton, downhill)
    fractions = ops.convert_to_tensor(np.array(_LINE_SEARCH_FRACTIONS), dtype=dtype)
    candidates = ops.maximum(log_t + step * fractions, floor)
    scales = ops.reshape(ops.exp(candidates) / base, (-1, 1, 1))
    terms, valid = row_terms_from_distances(distances, labels, scales)
    values = _mean_over_valid(cap_row_terms(terms, cap), valid)
    # The first (largest) step that does not increase SNNL; the last candidate is no step.
    accepted = ops.cast(values <= values[-1], "int32")
    return ops.exp(ops.take(candidates, ops.argmax(accepted)))


def optimized_temperature_loss(features, labels, temperature, inverse_temperature,
                               learning_rate=0.1, distance="squared_euclidean", cap=None):
    """SNNL with an optimised temperature, as in the authors' ``optimized_temp_SNNL``.

    The effective temperature is ``temperature / t``. One step *minimising* SNNL with respect to
    the inverse temperature ``t`` is taken and SNNL is returned at the updated ``t``. No gradient
    flows into ``t`` from the returned loss (it is a constant for the caller's optimiser), so
    maximising SNNL in a composite objective can never push the temperature the wrong way.

    Deviations from the reference (whose step is ``t <- t - learning_rate * dSNNL/dt``, not
    scale-free; see the module docstring): the step is ``learning_rate`` times a safeguarded
    Newton step on ``log t`` bounded by ``MAX_LOG_STEP``, shortened by a line search until SNNL
    does not increase; ``t`` is kept ``>= MIN_INVERSE_TEMPERATURE``.

    Args:
        features: (b, ...) representations.
        labels: (b,), (b, 1) or one-hot labels.
        temperature: the base temperature ``T0 > 0`` (reference default 100).
        inverse_temperature: current ``t`` (scalar tensor or variable value).
        learning_rate: multiplies the bounded Newton step (>= 0; 1: the full step, at most
            ``MAX_LOG_STEP`` in ``|log t|``; the reference's 0.1: a tenth of it); 0 keeps ``t``.
        distance: ``"squared_euclidean"`` or ``"cosine"``.
        cap: None or a number > 0: the row cap (see :func:`soft_nearest_neighbor_loss`), applied
            to the returned loss and to the temperature step alike (as the reference's epsilon).

    Returns:
        ``(loss, updated_inverse_temperature)``; the caller stores the second value (the reference
        assigns it to a non-trainable variable).

    Raises:
        ValueError: as :func:`soft_nearest_neighbor_loss`, or a negative ``learning_rate``.
    """
    temperature = check_temperature(temperature)
    learning_rate = _validation.check_float(learning_rate, "learning_rate", minimum=0.0)
    cap = check_cap(cap)
    distances, labels = _prepare(features, labels, distance)
    base = ops.cast(temperature, distances.dtype)
    t = ops.stop_gradient(ops.cast(inverse_temperature, distances.dtype))
    updated = ops.stop_gradient(
        _updated_inverse_temperature(distances, labels, base, t, learning_rate, cap))
    terms, valid = row_terms_from_distances(distances, labels, updated / base)
    return _mean_over_valid(cap_row_terms(terms, cap), valid), updated


def temperature_free_soft_nearest_neighbor_loss(features, labels, distance="squared_euclidean",
                                                num_temperatures=41):
    """The paper's temperature-free SNNL ``min_T SNNL(T)`` of one batch, for analysis (NumPy).

    The distances are computed once; ``T`` is searched on a log grid spanning
    ``[1e-3, 1e2] x`` the median off-diagonal distance, then on a finer grid between the
    neighbours of the best point (each grid in one batched evaluation). The minimum can sit at the
    lower end of the range (when every nearest neighbour is of the same class, SNNL -> 0 as
    T -> 0); the returned temperature then shows it.

    Args:
        features: (n, ...) representations (NumPy or tensor).
        labels: (n,), (n, 1) or one-hot labels.
        distance: ``"squared_euclidean"`` or ``"cosine"``.
        num_temperatures: size of each of the two grids (>= 3).

    Returns:
        ``(value, temperature)`` as Python floats.
    """
    num_temperatures = _validation.check_int(num_temperatures, "num_temperatures", minimum=3)
    distances, labels = _prepare(features, labels, distance)
    matrix = ops.convert_to_numpy(distances)
    off_diagonal = matrix[~np.eye(matrix.shape[0], dtype=bool)]
    positive = off_diagonal[off_diagonal > 0]
    reference = float(np.median(positive)) if positive.size else 1.0

    def losses_at(log_temperatures):
        scales = np.exp(-log_temperatures).reshape(-1, 1, 1)
        terms, valid = row_terms_from_distances(distances, labels, scales)
        return ops.convert_to_numpy(_mean_over_valid(terms, valid)).astype(np.float64)

    grid = np.log(reference) + np.log(10.0) * np.linspace(-3.0, 2.0, num_temperatures)
    found = search.grid_then_refine(losses_at, grid, refine="grid",
                                    refine_points=num_temperatures)
    return found.value, float(np.exp(found.x))


@keras.saving.register_keras_serializable(package="keras_vc")
class SoftNearestNeighborLoss(keras.losses.Loss):
    """Keras ``Loss`` of :func:`soft_nearest_neighbor_loss` on an embedding output.

    ``y_true`` are the labels, ``y_pred`` the representations of the batch (any rank >= 2,
    flattened). The row terms are rescaled by ``b / (rows with a same-class partner)`` so that the
    default mean reduction returns exactly :func:`soft_nearest_neighbor_loss`; sample weights then
    weight rows. Minimising this loss is the metric-learning use (compact, separated classes); to
    *maximise* hidden-layer entanglement as in the paper, use
    :class:`keras_vc.models.EntanglementModel`, which also optimises the temperature.

    Args:
        temperature: fixed ``T > 0``.
        distance: ``"squared_euclidean"`` or ``"cosine"``.
        reduction, name, dtype: as for every Keras loss.

    Example:

    ```python
    inputs = keras.Input((64,))
    embedding = keras.layers.Dense(32, name="embedding")(inputs)
    logits = keras.layers.Dense(10, name="logits")(embedding)
    model = keras.Model(inputs, {"logits": logits, "embedding": embedding})
    model.compile("adam", loss={
        "logits": keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        "embedding": keras_vc.losses.SoftNearestNeighborLoss(temperature=10.0)})
    model.fit(x, {"logits": y, "embedding": y})
    ```
    """

    def __init__(self, temperature=100.0, distance="squared_euclidean",
                 reduction="sum_over_batch_size", name="soft_nearest_neighbor_loss", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.temperature = check_temperature(temperature)
        self.distance = check_distance(distance)

    def call(self, y_true, y_pred):
        distances, labels = _prepare(y_pred, y_true, self.distance)
        terms, valid = row_terms_from_distances(distances, labels, 1.0 / self.temperature)
        rows = ops.cast(ops.shape(terms)[0], terms.dtype)
        count = ops.maximum(ops.sum(ops.cast(valid, terms.dtype)), 1.0)
        return terms * (rows / count)

    def get_config(self):
        config = super().get_config()
        config.update({"temperature": self.temperature, "distance": self.distance})
        return config
