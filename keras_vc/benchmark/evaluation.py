"""Figures of one trained classifier: calibration, OOD detection, attacks and corruptions.

Everything is computed from the model's output logits at temperature 1 (what a user gets by
default) and, for the ``_ts`` figures, from the same logits divided by the temperature fitted on
the validation split (never on test). The math comes from :mod:`keras_vc.metrics`,
:mod:`keras_vc.calibration`, :mod:`keras_vc.scores` and :mod:`keras_vc.robustness`.
"""

import weakref

import keras
import numpy as np

from keras_vc import calibration
from keras_vc import metrics
from keras_vc import scores as scores_lib
from keras_vc.evaluation import figures as evaluation_figures
from keras_vc.robustness import attacks

NUM_BINS = evaluation_figures.NUM_BINS
CALIBRATION_KEYS = ("accuracy", "ece", "mce", "nll", "brier")
SELECTIVE_KEYS = ("classwise_ece", "aurc", "augrc")
TEMPERATURE_OBJECTIVE = calibration.temperature.DEFAULT_OBJECTIVE
PREDICT_BATCH = 2048
# Inputs per gradient computation of the attacks (see adversarial_inputs).
ATTACK_BATCH = 1024

_PREDICT_FUNCTIONS = weakref.WeakKeyDictionary()


def _feature_model(model):
    """``x -> [head-input features, outputs]`` (the detectors' features), or None when the
    model's graph does not expose the input of its head."""
    from keras_vc import detectors as detector_model

    try:
        extractor, _ = detector_model.feature_model(model, None)
    except ValueError:
        return None
    return extractor if len(extractor.outputs[0].shape) == 2 else None


def predict_outputs(model, x):
    """float64 ``(features, logits)`` of ``model(x, training=False)``, in batches of
    :data:`PREDICT_BATCH`; ``features`` (the input of the head, what the post-hoc feature
    detectors read) is None when the model does not expose them as a (n, D) array.

    One ``tf.function`` per model with an unknown batch dimension, traced once whatever the
    number of inputs (``model.predict`` retraces for every new last-batch size, and under XLA
    that costs a compilation each time; eager calls pay Keras' per-layer overhead every time).
    The features come out of the same pass as the logits.
    """
    import tensorflow as tf

    x = np.asarray(x, dtype=np.float32)
    function = _PREDICT_FUNCTIONS.get(model)
    if function is None:
        extractor = _feature_model(model)
        # The cache must not keep the model alive (the extractor shares its layers).
        target_ref = weakref.ref(model if extractor is None else extractor)
        if extractor is None:
            def forward(inputs):
                return None, target_ref()(inputs, training=False)
        else:
            def forward(inputs):
                features, logits = target_ref()(inputs, training=False)
                return features, logits

        spec = tf.TensorSpec((None,) + tuple(x.shape[1:]), tf.float32)
        function = tf.function(forward, input_signature=[spec])
        # One trace per model is expected (TensorFlow counts traces per code location).
        function._omit_frequent_tracing_warning = True
        _PREDICT_FUNCTIONS[model] = (function, extractor)  # the extractor lives with the model
    else:
        function = function[0]
    features, logits = [], []
    for start in range(0, x.shape[0], PREDICT_BATCH):
        batch_features, batch_logits = function(x[start:start + PREDICT_BATCH])
        logits.append(np.asarray(batch_logits, dtype=np.float64))
        if batch_features is not None:
            features.append(np.asarray(batch_features, dtype=np.float64))
    logits = np.concatenate(logits) if logits else np.zeros((0, 0))
    if logits.ndim != 2:
        raise ValueError(f"the model must output logits of shape (n, K), got {logits.shape}")
    return (np.concatenate(features) if features else None), logits


def predict_logits(model, x):
    """float64 logits of ``model(x, training=False)`` (see :func:`predict_outputs`)."""
    return predict_outputs(model, x)[1]


def check_finite(logits, what):
    if not np.all(np.isfinite(logits)):
        raise FloatingPointError(f"{what}: the model produced non-finite logits")
    return logits


def calibration_report(labels, probs):
    """Accuracy, ECE, MCE (15 equal-width bins), NLL and Brier score of probabilities."""
    return evaluation_figures.calibration_figures(labels, probs, CALIBRATION_KEYS)


def fit_temperature(val_logits, y_val):
    """The temperature minimising the validation NLL (bounded search; see keras_vc.calibration)."""
    return calibration.find_temperature(val_logits, y_val, objective=TEMPERATURE_OBJECTIVE,
                                        num_bins=NUM_BINS)


def calibration_figures(test_logits, y_test, fit):
    """Test figures before and (``_ts``) after dividing the logits by ``fit.temperature``:
    :func:`calibration_report` and :func:`selective_figures`."""
    probs, probs_ts = (calibration.softmax(test_logits),
                       calibration.softmax(test_logits, fit.temperature))
    before = dict(calibration_report(y_test, probs), **selective_figures(y_test, probs))
    after = dict(calibration_report(y_test, probs_ts), **selective_figures(y_test, probs_ts))
    figures = dict(before)
    figures.update({f"{key}_ts": value for key, value in after.items() if key != "accuracy"})
    figures["temperature"] = fit.temperature
    figures["temperature_at_bound"] = fit.at_bound
    return figures


# Post-hoc calibrators, each fitted on the validation logits with the library's defaults (no
# ODIR penalty for matrix scaling and Dirichlet calibration; 15 bins for histogram binning).
CALIBRATORS = {
    "temperature": calibration.TemperatureScaling,
    "vector": calibration.VectorScaling,
    "matrix": calibration.MatrixScaling,
    "dirichlet": calibration.DirichletCalibration,
    "histogram": calibration.HistogramBinning,
    "isotonic": calibration.IsotonicCalibration,
}


def selective_figures(labels, probs):
    """Classwise ECE (Kull et al. 2019), AURC (Geifman et al. 2019) and AUGRC (Traub et al.
    2024) of probabilities, the confidence being the largest probability."""
    return evaluation_figures.calibration_figures(labels, probs, SELECTIVE_KEYS)


def calibrator_figures(val_logits, y_val, test_logits, y_test, names=tuple(CALIBRATORS)):
    """Test accuracy, ECE and classwise ECE after each calibrator of ``names`` (keys of
    :data:`CALIBRATORS`).

    Every calibrator is fitted on the validation logits (at temperature 1) and applied to the
    test logits; binning calibrators may change the argmax, hence the accuracy.

    Returns:
        ``{calibrator: {"accuracy", "ece", "classwise_ece"}}``.
    """
    figures = {}
    for name in names:
        probs = CALIBRATORS[name]().fit(val_logits, y_val).predict_proba(test_logits)
        figures[name] = evaluation_figures.calibration_figures(
            y_test, probs, ("accuracy", "ece", "classwise_ece"))
    return figures


def accuracy_and_ece(labels, logits, temperature):
    """Accuracy, ECE at temperature 1 and ECE after temperature scaling (the shift figures)."""
    figures = evaluation_figures.calibration_figures(
        labels, calibration.softmax(logits), ("accuracy", "ece"))
    figures["ece_ts"] = evaluation_figures.CALIBRATION_METRICS["ece"](
        labels, calibration.softmax(logits, temperature))
    return figures


def score_functions(model, method):
    """The logit-based OOD scores of a model: ``({name: fn(logits)}, recommended score name)``.

    ``recommended`` is the method's score: the output layer's ``ood_score`` when it has one
    (``keras_vc.scores.recommended``), otherwise ``keras_vc.scores.get(method.ood_score)``;
    ``msp`` is the maximum softmax probability. Both see the logits at temperature 1.
    """
    layer_name, layer_fn = scores_lib.recommended(model)
    if layer_fn is scores_lib.max_probability and method.ood_score not in ("max_probability",
                                                                           "msp"):
        recommended_name, recommended_fn = method.ood_score, scores_lib.get(method.ood_score)
    else:
        recommended_name, recommended_fn = layer_name, layer_fn

    def as_numpy(fn):
        return lambda logits: np.asarray(
            keras.ops.convert_to_numpy(fn(np.asarray(logits, np.float32))), dtype=np.float64)

    return ({"recommended": as_numpy(recommended_fn),
             "msp": as_numpy(scores_lib.max_probability)}, recommended_name)


def compute_scores(score_fns, extra, logits, x):
    """Every OOD score of a set of inputs: ``{score name: (n,) scores}``.

    Args:
        score_fns: ``{name: fn(logits)}`` from :func:`score_functions`.
        extra: a method's ``extra_scores(model, split)`` result (``fn(x) -> {name: scores}``,
            e.g. deep k-NN credibility) or None; its scores are named ``extra:<name>``.
        logits: the model's logits of ``x``.
        x: the inputs.
    """
    result = {name: fn(logits) for name, fn in score_fns.items()}
    if extra is not None:
        for name, values in extra(x).items():
            result[f"extra:{name}"] = np.asarray(values, dtype=np.float64).reshape(-1)
    for name, values in result.items():
        if values.shape != (len(x),) or not np.all(np.isfinite(values)):
            raise FloatingPointError(f"OOD score {name!r} is not a finite score per input")
    return result


def ood_figures(scores_in, scores_out_by_set):
    """``{set: {score: keras_vc.metrics.ood_metrics(in, out)}}`` for every set and score."""
    return {set_name: {name: metrics.ood_metrics(scores_in[name], scores_out[name])
                       for name in scores_in}
            for set_name, scores_out in scores_out_by_set.items()}


def adversarial_inputs(model, x, y, epsilons, value_range, pgd_steps, seed):
    """FGSM and PGD inputs at each relative epsilon: ``{(attack, eps_rel): x_adv}``.

    The gradients are taken on all of ``x`` at once (up to :data:`ATTACK_BATCH` inputs): the
    attacks' compiled gradient function is traced once per input shape, and the robustness
    subset in batches of the attacks' default 256 would have two shapes (a full batch and the
    rest), hence two traces per model. Every input's gradient is that of its own loss whatever
    the batch.
    """
    width = value_range[1] - value_range[0]
    batch_size = max(1, min(len(x), ATTACK_BATCH))
    result = {}
    for eps_rel in epsilons:
        epsilon = eps_rel * width
        result[("fgsm", eps_rel)] = attacks.fgsm(model, x, y, epsilon, value_range=value_range,
                                                 batch_size=batch_size)
        result[("pgd", eps_rel)] = attacks.pgd(model, x, y, epsilon, steps=pgd_steps,
                                               value_range=value_range, seed=seed,
                                               batch_size=batch_size)
    return result


def shifted_figures(model, y, inputs_by_key, temperature):
    """Accuracy / ECE / ECE after TS of the model on several input sets, in one pass.

    Args:
        model: the classifier.
        y: labels shared by every input set.
        inputs_by_key: ``{key: x}``, every x with ``len(y)`` rows.
        temperature: the validation temperature.

    Returns:
        ``{key: {"accuracy", "ece", "ece_ts"}}``
    """
    keys = list(inputs_by_key)
    if not keys:
        return {}
    stacked = np.concatenate([inputs_by_key[k] for k in keys])
    logits = check_finite(predict_logits(model, stacked), "shifted inputs")
    n = len(y)
    return {key: accuracy_and_ece(y, logits[i * n:(i + 1) * n], temperature)
            for i, key in enumerate(keys)}
