"""Input checks shared by every public function of keras_vc.

Each check raises ``ValueError`` whose message names the offending argument and says what was
expected, so that bad input fails at the call instead of as a NaN several steps later.
"""

import numbers

import numpy as np

PROBABILITY_TOLERANCE = 1e-3


def to_numpy(value, name):
    """Converts arrays, lists and eager tensors to a NumPy array."""
    if value is None:
        raise ValueError(f"`{name}` must be an array, got None.")
    if isinstance(value, np.ndarray):
        # First: under torch.compile a NumPy array is traced, and claims PyTorch's methods.
        return value
    if hasattr(value, "detach") and hasattr(value, "cpu"):
        # A PyTorch tensor: a model's output carries a grad_fn (its numpy() refuses) and may
        # live on a GPU.
        value = value.detach().cpu()
    if hasattr(value, "numpy"):
        value = value.numpy()
    try:
        return np.asarray(value)
    except Exception as error:  # pragma: no cover - depends on exotic inputs
        raise ValueError(f"`{name}` could not be converted to an array: {error}") from error


def check_finite_array(value, name, ndim=None, allow_empty=False):
    """Returns ``value`` as a float64 array after checking its rank, size and finiteness."""
    array = to_numpy(value, name)
    if not np.issubdtype(array.dtype, np.number) and array.dtype != np.bool_:
        raise ValueError(f"`{name}` must be numeric, got dtype {array.dtype}.")
    array = array.astype(np.float64)
    if ndim is not None and array.ndim != ndim:
        raise ValueError(f"`{name}` must be {ndim}-D, got shape {array.shape}.")
    if not allow_empty and array.size == 0:
        raise ValueError(f"`{name}` must not be empty.")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"`{name}` contains NaN or infinite values.")
    return array


def check_probabilities(probs, name="probs", tolerance=PROBABILITY_TOLERANCE):
    """Checks a (n, K) array whose rows are probability distributions (within ``tolerance``)."""
    probs = check_finite_array(probs, name, ndim=2)
    if probs.shape[1] < 2:
        raise ValueError(f"`{name}` must have at least 2 classes (columns), got shape {probs.shape}.")
    if probs.min() < -tolerance or probs.max() > 1 + tolerance:
        raise ValueError(
            f"`{name}` must hold probabilities in [0, 1]; got values in "
            f"[{probs.min():.4g}, {probs.max():.4g}]. Pass logits through a softmax first."
        )
    row_sums = probs.sum(axis=1)
    worst = np.abs(row_sums - 1).max()
    if worst > tolerance:
        raise ValueError(
            f"`{name}` rows must sum to 1 (tolerance {tolerance}); the worst row sums to "
            f"{row_sums[np.argmax(np.abs(row_sums - 1))]:.4g}. Pass logits through a softmax first."
        )
    return np.clip(probs, 0.0, 1.0)


def check_labels(labels, num_classes, num_samples=None, name="labels"):
    """Returns integer labels of shape (n,) from integer labels or one-hot rows.

    Accepts shape (n,), (n, 1) or one-hot (n, num_classes).
    """
    array = to_numpy(labels, name)
    if array.ndim == 2 and array.shape[1] == num_classes and num_classes > 1:
        if not np.all(np.isfinite(array.astype(np.float64))):
            raise ValueError(f"`{name}` contains NaN or infinite values.")
        if not (np.all((array == 0) | (array == 1)) and np.all(array.sum(axis=1) == 1)):
            raise ValueError(
                f"`{name}` of shape {array.shape} must be integer class ids or one-hot rows."
            )
        array = array.argmax(axis=1)
    elif array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim != 1:
        raise ValueError(
            f"`{name}` must have shape (n,), (n, 1) or (n, {num_classes}); got {array.shape}."
        )
    if array.size == 0:
        raise ValueError(f"`{name}` must not be empty.")
    if not np.issubdtype(array.dtype, np.integer):
        as_float = array.astype(np.float64)
        if not np.all(np.isfinite(as_float)) or not np.all(as_float == np.round(as_float)):
            raise ValueError(f"`{name}` must hold integer class ids, got dtype {array.dtype}.")
    array = array.astype(np.int64)
    if array.min() < 0 or array.max() >= num_classes:
        raise ValueError(
            f"`{name}` must lie in [0, {num_classes - 1}] (num_classes={num_classes}); "
            f"got values in [{array.min()}, {array.max()}]."
        )
    if num_samples is not None and array.shape[0] != num_samples:
        raise ValueError(
            f"`{name}` has {array.shape[0]} entries but the predictions have {num_samples} rows."
        )
    return array


def check_int(value, name, minimum=None):
    """Checks an integer argument (bools are rejected) with an optional lower bound."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"`{name}` must be an integer, got {value!r}.")
    if minimum is not None and value < minimum:
        raise ValueError(f"`{name}` must be >= {minimum}, got {value}.")
    return int(value)


def check_float(value, name, minimum=None, maximum=None, strict_minimum=False):
    """Checks a finite real argument with optional bounds (``strict_minimum``: value > minimum)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"`{name}` must be a number, got {value!r}.")
    value = float(value)
    if not np.isfinite(value):
        raise ValueError(f"`{name}` must be finite, got {value}.")
    if minimum is not None:
        if strict_minimum and value <= minimum:
            raise ValueError(f"`{name}` must be > {minimum}, got {value}.")
        if not strict_minimum and value < minimum:
            raise ValueError(f"`{name}` must be >= {minimum}, got {value}.")
    if maximum is not None and value > maximum:
        raise ValueError(f"`{name}` must be <= {maximum}, got {value}.")
    return value


def check_value_range(value_range, name="value_range"):
    """Checks a ``(low, high)`` pair of finite numbers with ``high > low``; returns it as floats."""
    if isinstance(value_range, (str, bytes)) or not hasattr(value_range, "__len__") or len(
            value_range) != 2:
        raise ValueError(f"`{name}` must be (low, high), got {value_range!r}.")
    low = check_float(value_range[0], f"{name}[0]")
    high = check_float(value_range[1], f"{name}[1]")
    if not high > low:
        raise ValueError(f"`{name}` must have high > low, got {value_range!r}.")
    return low, high


def check_choice(value, name, choices):
    """Checks that a string option is one of ``choices``."""
    if value not in choices:
        raise ValueError(f"`{name}` must be one of {sorted(choices)}, got {value!r}.")
    return value


def check_graph_model(model, advice):
    """Returns ``(inputs, outputs)`` of a Functional or Sequential model built on a ``keras.Input``.

    A subclassed model, or a Sequential model never built on an input, has no graph to read;
    ``advice`` completes the error message with what the caller needs instead.
    """
    import keras  # the rest of this module is NumPy only

    if not isinstance(model, keras.Model):
        raise ValueError(f"`model` must be a keras.Model, got {type(model).__name__}.")
    try:
        inputs, outputs = model.inputs, model.outputs
    except (AttributeError, ValueError):
        inputs = outputs = None
    if not inputs or not outputs:
        raise ValueError("`model` must be a Functional or Sequential model built on a "
                         f"`keras.Input`; {advice}")
    return inputs, outputs
