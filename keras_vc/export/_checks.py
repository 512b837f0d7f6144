"""Argument checks of the serving export: the model, its head, the score and the calibration."""

import copy
import inspect
import numbers

import keras
import numpy as np
from keras import ops

from keras_vc import _activations
from keras_vc import _validation
from keras_vc import detectors as detectors_lib
from keras_vc import scores as scores_lib
from keras_vc.export._constants import INPUT_NAME
from keras_vc.export._constants import OUTPUT_KINDS
from keras_vc.layers import head as head_lib

_PROBABILITY_ACTIVATIONS = ("softmax",)
_NOT_CLASS_ACTIVATIONS = ("sigmoid", "hard_sigmoid", "hard_silu", "silu", "tanh", "softsign")


def _activation_name(function):
    if function is None:
        return None
    for name in _PROBABILITY_ACTIVATIONS + _NOT_CLASS_ACTIVATIONS:
        if function is getattr(keras.activations, name, None):
            return name
    return getattr(function, "__name__", None)


def _check_model(model):
    """Returns (input_tensor, output_tensor, output_layer) of a single-input classifier."""
    inputs, outputs = _validation.check_graph_model(
        model, "for a subclassed model, compose its parts, e.g. `keras.Sequential([keras.Input("
        "shape), body, head])`, so that the classifier head is the model's last layer.")
    if len(inputs) != 1:
        raise ValueError(
            f"`model` must have exactly one input tensor (the serving input {INPUT_NAME!r}); "
            f"it has {len(inputs)}."
        )
    if len(outputs) != 1:
        raise ValueError(
            f"`model` must have one output of class logits or probabilities; it has "
            f"{len(outputs)} outputs."
        )
    output = outputs[0]
    shape = tuple(output.shape)
    if len(shape) != 2 or shape[-1] is None or shape[-1] < 2:
        raise ValueError(
            "`model` must output class logits or probabilities of shape (batch, K) with K >= 2; "
            f"its output has shape {shape}."
        )
    if not keras.backend.is_float_dtype(output.dtype):
        raise ValueError(
            "`model` must output floating-point class logits or probabilities; its output has "
            f"dtype {output.dtype}."
        )
    head = head_lib.output_head(model)  # refuses a keras_vc head that is not the output
    return inputs[0], output, head if head is not None else model.layers[-1]


def _detect_output_kind(layer, output_kind):
    _validation.check_choice(output_kind, "output_kind", OUTPUT_KINDS)
    activation = _activation_name(getattr(layer, "activation", None))
    if isinstance(layer, keras.layers.Softmax):
        activation = "softmax"
    if activation in _NOT_CLASS_ACTIVATIONS:
        raise ValueError(
            f"`model` ends in a {activation!r} activation (layer {layer.name!r}): its outputs are "
            "not class logits or probabilities (a sigmoid scores each class independently). "
            "Export a model whose last layer outputs logits (no activation) or a softmax."
        )
    if output_kind != "auto":
        return output_kind
    return "probabilities" if activation in _PROBABILITY_ACTIVATIONS else "logits"


def _head_owns_temperature(layer):
    return isinstance(layer, head_lib.ClassifierHead)


def _check_temperature(temperature, layer):
    """Returns (temperature applied by the export, temperature reported, applied by head)."""
    if _head_owns_temperature(layer):
        if temperature is not None:
            raise ValueError(
                f"`temperature` must be None for this model: its output layer {layer.name!r} "
                "divides by its own `temperature` variable (currently "
                f"{float(ops.convert_to_numpy(layer.temperature)):.6g}). Calibrate it with "
                "keras_vc.calibration.fit_temperature(model, validation_data) instead."
            )
        return 1.0, float(ops.convert_to_numpy(layer.temperature)), True
    if temperature is None:
        return 1.0, 1.0, False
    if hasattr(temperature, "temperature") and not isinstance(temperature, numbers.Real):
        temperature = temperature.temperature
    value = _validation.check_float(temperature, "temperature", minimum=0.0, strict_minimum=True)
    return value, value, False


def _check_ood_score(ood_score, model):
    """Returns (name, score function) or (None, None)."""
    if ood_score is None:
        return None, None
    if isinstance(ood_score, str) and ood_score == "auto":
        return scores_lib.recommended(model)
    if callable(ood_score):
        return getattr(ood_score, "__name__", "custom"), ood_score
    if not isinstance(ood_score, str) or ood_score not in scores_lib.SCORES:
        raise ValueError(
            "`ood_score` must be 'auto', None, a function of logits or one of "
            f"{sorted(scores_lib.SCORES)}; got {ood_score!r}."
        )
    return ood_score, scores_lib.get(ood_score)


def _describe_detector(detector):
    names = {cls: name for name, cls in detectors_lib.DETECTORS.items()}
    name = names.get(type(detector), type(detector).__name__.lower())
    source = detector.score_input
    if source.kind == "logits":
        return f"{name}(logits)"
    pooling = "" if source.pooling is None else f", pooling={source.pooling}"
    return f"{name}(layer={source.layer}{pooling})"


def _check_detector(detector, model):
    """Returns (detector attached to ``model``, description), refusing what cannot be served.

    A detector built on ``model`` is used as it is; one fitted without a model is attached to a
    shallow copy (as ``load(path, model)`` would), which checks its layer and feature width.
    """
    kind = type(detector).__name__
    if not detector.exportable:
        epsilon = getattr(detector, "epsilon", None)
        why = (f"with epsilon={epsilon:g} its `score` perturbs each input along an input gradient "
               "before scoring, which `score_tensor` (the graph) does not reproduce; build it "
               "with epsilon=0 to export it" if epsilon
               else "its `score_tensor` does not reproduce its `score`")
        raise ValueError(f"`ood_score` {kind} cannot be exported: {why}.")
    if not detector.fitted:
        raise ValueError(f"`ood_score` {kind} is not fitted: call `fit(x, y)` (or "
                         "`fit_features`) on in-distribution training data before exporting it.")
    if detector.model is not None:
        if _activations.unwrap(detector.model) is not _activations.unwrap(model):
            raise ValueError(
                f"`ood_score` {kind} was built on another model ({detector.model.name!r}) than "
                f"the one exported ({model.name!r}); its statistics describe that model's "
                f"features. Build and fit it on this model, or attach it with "
                f"`{kind}.load(path, model)`.")
        return detector, _describe_detector(detector)
    attached = copy.copy(detector)  # the user's detector stays without a model
    try:
        attached.attach(model)
    except ValueError as error:
        raise ValueError(f"`ood_score` {kind} (built without a model) does not fit this model: "
                         f"{error}") from error
    return attached, _describe_detector(attached)


def _check_mc_samples(mc_samples, layer):
    if mc_samples is None:
        return None
    mc_samples = _validation.check_int(mc_samples, "mc_samples", minimum=1)
    if not (isinstance(layer, head_lib.ClassifierHead) and layer.has_latent):
        raise ValueError(
            f"`mc_samples` needs a head with a latent (a layer declaring `has_latent = True`, "
            f"such as VariationalSoftmax); the output layer {layer.name!r} "
            f"({type(layer).__name__}) has none. Leave `mc_samples=None`."
        )
    parameters = inspect.signature(layer.call).parameters
    if "num_samples" not in parameters:
        raise ValueError(
            f"`mc_samples` needs the latent head's call to accept `num_samples`; "
            f"{type(layer).__name__}.call{inspect.signature(layer.call)} does not."
        )
    return mc_samples


def _check_calibrator(calibrator, temperature):
    """Returns the calibrator (or None), refusing what cannot be exported."""
    if calibrator is None:
        return None
    if not all(hasattr(calibrator, name) for name in ("predict_proba_ops", "exportable",
                                                      "num_classes")):
        raise ValueError(
            "`calibrator` must be a fitted keras_vc.calibration calibrator (with "
            f"`predict_proba_ops`), got {type(calibrator).__name__}."
        )
    if temperature is not None:
        raise ValueError(
            "`temperature` must be None when a `calibrator` is given: the calibrator replaces "
            "the temperature (use keras_vc.calibration.TemperatureScaling as the calibrator "
            "for temperature scaling)."
        )
    if not calibrator.exportable:
        raise ValueError(
            f"`calibrator` {type(calibrator).__name__} cannot be exported: "
            f"{calibrator.export_note}"
        )
    if calibrator.num_classes is None:
        raise ValueError(f"`calibrator` {type(calibrator).__name__} is not fitted: call `fit` "
                         "first.")
    return calibrator


def _check_conformal(conformal, num_classes):
    """Returns the conformal predictor (or None) after checking it is fitted on K classes."""
    if conformal is None:
        return None
    if not all(hasattr(conformal, name) for name in ("predict_mask_ops", "qhat", "num_classes",
                                                     "uses_uniform")):
        raise ValueError(
            "`conformal` must be a fitted keras_vc.conformal.SplitConformal (with "
            f"`predict_mask_ops`), got {type(conformal).__name__}."
        )
    if conformal.qhat is None:
        raise ValueError(f"`conformal` {type(conformal).__name__} is not fitted: call "
                         "`fit(probs_cal, y_cal)` first.")
    if conformal.num_classes != num_classes:
        raise ValueError(
            f"`conformal` was fitted on {conformal.num_classes} classes but the model outputs "
            f"{num_classes}."
        )
    return conformal


def _check_num_classes(calibrator, num_classes):
    if calibrator is not None and calibrator.num_classes != num_classes:
        raise ValueError(
            f"`calibrator` was fitted on {calibrator.num_classes} classes but the model outputs "
            f"{num_classes}."
        )


def _check_inputs(x, plan, name):
    array = _validation.to_numpy(x, name)
    if array.ndim != len(plan.input_shape):
        raise ValueError(
            f"`{name}` must have shape {plan.input_shape} (the model's input), got {array.shape}."
        )
    if array.shape[0] == 0:
        raise ValueError(f"`{name}` must not be empty.")
    if not np.issubdtype(array.dtype, np.number) and array.dtype != np.bool_:
        raise ValueError(f"`{name}` must be numeric, got dtype {array.dtype}.")
    return array.astype(plan.input_dtype)
