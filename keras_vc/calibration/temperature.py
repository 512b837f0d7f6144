"""Post-hoc temperature scaling: one temperature ``T`` such that ``softmax(logits / T)`` is calibrated.

``find_temperature`` works on arrays; ``fit_temperature`` runs a model on validation data and,
when the model's output layer carries a ``temperature`` variable (``DistanceLogits``), writes
the result into it; for any other classifier (a plain ``Dense`` output) it returns the
temperature for :func:`apply_temperature`.

The search is deterministic and robust: a grid of 241 points over ``log T`` in ``bounds``
followed by a golden-section refinement between the neighbours of the best grid point. The DisMax
reference minimises the ECE with L-BFGS and finite differences, which can stop early on the
piecewise-constant ECE: this is a deliberate deviation. A fit whose best point lies on a bound
(typically a validation set without errors, where the NLL keeps falling as ``T -> 0``) is flagged
with ``at_bound=True`` instead of being reported silently.
"""

import dataclasses
import warnings

import numpy as np

from keras_vc import _labels
from keras_vc import _validation
from keras_vc.metrics import calibration as calibration_metrics
from keras_vc.ops import search

OBJECTIVES = ("nll", "ece")
# The one default objective: fit_temperature, find_temperature, `keras-vc compare` and
# `keras-vc evaluate` all fit the temperature by NLL (Guo et al. 2017) unless told otherwise.
DEFAULT_OBJECTIVE = "nll"
DEFAULT_BOUNDS = (0.05, 20.0)
_GRID_POINTS = 241
_REFINE_STEPS = 40


@dataclasses.dataclass(frozen=True)
class TemperatureResult:
    """Outcome of a temperature search.

    Attributes:
        temperature: the fitted temperature.
        objective: ``"nll"`` or ``"ece"``.
        value: the objective at the fitted temperature.
        value_at_one: the objective at ``T = 1`` (before scaling).
        at_bound: True when the optimum lies on a search bound: the fit is not trustworthy.
        written_to: the name of the layer whose ``temperature`` variable ``fit_temperature``
            set, or None (nothing written: apply the result yourself).
    """

    temperature: float
    objective: str
    value: float
    value_at_one: float
    at_bound: bool
    written_to: str = None


def softmax(logits, temperature=1.0):
    """NumPy softmax of ``logits / temperature`` along the last axis (float64)."""
    scaled = np.asarray(logits, dtype=np.float64) / temperature
    scaled = scaled - scaled.max(axis=-1, keepdims=True)
    exp = np.exp(scaled)
    return exp / exp.sum(axis=-1, keepdims=True)


def apply_temperature(logits, temperature):
    """Returns ``softmax(logits / temperature)`` as NumPy probabilities."""
    temperature = _validation.check_float(temperature, "temperature", minimum=0.0,
                                          strict_minimum=True)
    logits = _validation.check_finite_array(logits, "logits", ndim=2)
    return softmax(logits, temperature)


def _objective_function(logits, labels, objective, num_bins):
    if objective == "nll":
        shifted = logits - logits.max(axis=1, keepdims=True)
        true_logit = shifted[np.arange(labels.size), labels]

        def nll(log_t):
            scaled = shifted / np.exp(log_t)
            log_norm = np.log(np.exp(scaled).sum(axis=1))
            return float(np.mean(log_norm - true_logit / np.exp(log_t)))

        return nll

    def ece(log_t):
        return calibration_metrics.expected_calibration_error(
            labels, softmax(logits, np.exp(log_t)), num_bins=num_bins
        )

    return ece


def find_temperature(logits, labels, objective=DEFAULT_OBJECTIVE, bounds=DEFAULT_BOUNDS,
                     num_bins=15):
    """Finds the temperature minimising ``objective`` on (logits, labels).

    Args:
        logits: array (n, K) of logits at temperature 1.
        labels: integer class ids (n,).
        objective: ``"nll"`` (Guo et al. 2017) or ``"ece"`` (15-bin ECE, the DisMax procedure).
        bounds: (low, high) search interval for T, 0 < low < 1 < high.
        num_bins: bins of the ECE objective.

    Returns:
        A :class:`TemperatureResult`.
    """
    _validation.check_choice(objective, "objective", OBJECTIVES)
    logits = _validation.check_finite_array(logits, "logits", ndim=2)
    if logits.shape[1] < 2:
        raise ValueError(f"`logits` must have at least 2 classes, got shape {logits.shape}.")
    labels = _validation.check_labels(labels, logits.shape[1], num_samples=logits.shape[0])
    if len(bounds) != 2 or not 0 < bounds[0] < 1 < bounds[1] or not np.all(np.isfinite(bounds)):
        raise ValueError(f"`bounds` must be (low, high) with 0 < low < 1 < high, got {bounds}.")
    function = _objective_function(logits, labels, objective, num_bins)
    grid = np.linspace(np.log(bounds[0]), np.log(bounds[1]), _GRID_POINTS)
    found = search.grid_then_refine(lambda xs: np.array([function(x) for x in xs]), grid,
                                    refine="golden", refine_points=_REFINE_STEPS)
    return TemperatureResult(
        temperature=float(np.exp(found.x)),
        objective=objective,
        value=found.value,
        value_at_one=float(function(0.0)),
        at_bound=found.on_edge,
    )


def find_temperature_layer(model):
    """The keras_vc head producing ``model``'s output (it owns a ``temperature``), else None.

    Raises:
        ValueError: if the model holds a keras_vc head that is not its output layer: a
            temperature written into it would not calibrate the model's outputs.
    """
    from keras_vc.layers import head as head_lib  # layers import keras_vc.scores, not this

    return head_lib.output_head(model)


def _check_finite_inputs(x):
    """Refuses NaN / infinite inputs by name, before they become non-finite model outputs."""
    array = x if isinstance(x, np.ndarray) else _labels.concrete_values(x)
    if array is None or not np.issubdtype(np.asarray(array).dtype, np.floating):
        return
    finite = np.isfinite(array)
    if not finite.all():
        raise ValueError(
            f"`data` inputs contain NaN or infinite values ({int((~finite).sum())} of "
            f"{finite.size} entries): the model's outputs on them would be non-finite and no "
            "temperature can be fitted. Clean or impute the inputs first.")


def _collect_logits(model, data, batch_size):
    """Runs ``model`` on (x, y) data and returns (logits, labels) as NumPy arrays."""
    if isinstance(data, (tuple, list)) and len(data) == 2:
        x, y = data
        if not isinstance(x, (dict, list, tuple)):
            _check_finite_inputs(x)
        outputs = model.predict(x, batch_size=batch_size, verbose=0)
        labels = _validation.to_numpy(y, "data labels")
    else:
        xs, ys = [], []
        for batch in data:
            if not isinstance(batch, (tuple, list)) or len(batch) < 2:
                raise ValueError("`data` must yield (x, y) batches.")
            if not isinstance(batch[0], (dict, list, tuple)):
                _check_finite_inputs(batch[0])
            xs.append(_validation.to_numpy(model(batch[0], training=False), "model outputs"))
            ys.append(_validation.to_numpy(batch[1], "data labels"))
        if not xs:
            raise ValueError("`data` yielded no batches.")
        outputs, labels = np.concatenate(xs), np.concatenate(ys)
    outputs = _validation.check_finite_array(outputs, "model outputs", ndim=2)
    # A softmax output (the package's one rule): log-probabilities are logits up to a per-row
    # constant.
    outputs = _labels.as_logits(outputs)
    labels = _validation.check_labels(labels, outputs.shape[1], num_samples=outputs.shape[0],
                                      name="data labels")
    return outputs, labels


def fit_temperature(model, data, objective=DEFAULT_OBJECTIVE, bounds=DEFAULT_BOUNDS,
                    num_bins=15, batch_size=256, verbose=1):
    """Fits one temperature on held-out data (never the test split).

    Args:
        model: a classifier whose output is logits or probabilities.
        data: ``(x, y)`` arrays or an iterable of ``(x, y)`` batches (e.g. a ``tf.data.Dataset``).
        objective: ``"nll"`` (default, Guo et al. 2017; the objective ``keras-vc compare`` and
            ``evaluate`` use, :data:`DEFAULT_OBJECTIVE`) or ``"ece"`` (the DisMax "fast
            calibration").
        bounds: search interval for T.
        num_bins: bins of the ECE objective.
        batch_size: batch size for ``model.predict`` on arrays.
        verbose: 1 (default) prints one line saying which temperature was found and where it
            was written (or, for a model without a temperature variable, how to apply it); 0
            prints nothing.

    Returns:
        A :class:`TemperatureResult`. If the model's output layer is a keras_vc head (it owns a
        ``temperature`` variable) the result is also written into it (the search itself runs
        at temperature 1) and ``written_to`` names the layer; for any other classifier nothing
        is written (``written_to`` is None): apply the result with :func:`apply_temperature`
        or ``export_for_serving(..., temperature=result)``. A result on a search bound
        (``at_bound``) also gives one ``UserWarning``.

    Raises:
        ValueError: for bad data (NaN or infinite inputs included), or a model holding a keras_vc
            head that is not its output layer (the temperature could not be applied where it
            belongs).
    """
    if verbose not in (0, 1, True, False):
        raise ValueError(f"`verbose` must be 0 or 1, got {verbose!r}.")
    layer = find_temperature_layer(model)
    previous = None
    if layer is not None:
        previous = float(np.asarray(layer.temperature.numpy()))
        layer.temperature.assign(1.0)
    try:
        logits, labels = _collect_logits(model, data, batch_size)
        result = find_temperature(logits, labels, objective=objective, bounds=bounds,
                                  num_bins=num_bins)
    except Exception:
        if layer is not None:
            layer.temperature.assign(previous)
        raise
    if layer is not None:
        layer.temperature.assign(result.temperature)
        result = dataclasses.replace(result, written_to=layer.name)
    if result.at_bound:
        why = ("typically validation data without errors, where the NLL keeps falling as "
               "T -> 0" if result.temperature < 1 else
               "typically outputs that say nothing about the labels: an untrained or "
               "chance-level model")
        warnings.warn(
            f"fit_temperature: the best temperature, {result.temperature:.4g}, lies on the search "
            f"bound {tuple(bounds)}: the fit is not trustworthy ({why}). Check the model's "
            "validation accuracy, use more validation data or wider `bounds`.",
            UserWarning, stacklevel=2)
    if verbose:
        found = (f"fit_temperature: T = {result.temperature:.4g} ({result.objective} "
                 f"{result.value_at_one:.4g} at T = 1 -> {result.value:.4g})")
        if layer is not None:
            print(f"{found}; written into {layer.name}.temperature: predict, evaluate and "
                  "export apply it.")
        else:
            print(f"{found}; the model has no temperature variable, nothing was written: use "
                  "keras_vc.calibration.apply_temperature(model.predict(x), result.temperature) "
                  "or export_for_serving(model, path, temperature=result).")
    return result
