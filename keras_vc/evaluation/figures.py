"""The figures of ``keras_vc.evaluate``, computed from one forward pass per data set.

Calibration: accuracy, NLL, Brier, 15-bin ECE, classwise ECE and AURC of ``softmax(logits)``
and, when there is validation data, of ``softmax(logits / T)`` with ``T`` fitted on it by NLL
(Guo et al., ICML 2017). OOD: AUROC, FPR@95TPR and AUPR of the post-hoc detectors
(:mod:`keras_vc.detectors`) against the test set. Conformal: coverage and mean set size of
split-conformal sets (LAC, APS, RAPS; Angelopoulos et al., ICLR 2021) calibrated on the
validation data. Nothing is ever fitted on the test set.
"""

import numpy as np
from keras import ops

from keras_vc import _labels
from keras_vc import calibration
from keras_vc import conformal
from keras_vc import detectors as detectors_lib
from keras_vc import metrics
from keras_vc import scores as scores_lib
from keras_vc import detectors as detector_model

NUM_BINS = 15
DEFAULT_DETECTORS = ("head", "msp", "max_logit", "energy", "gen", "mahalanobis", "rmds", "knn",
                     "vim", "react")
CONFORMAL_SCORES = ("aps", "raps", "lac")
OOD_KEYS = ("auroc", "fpr_at_95_tpr", "aupr_in", "aupr_out")


class Forward:
    """Runs the model once per data set, returning its raw outputs and head-input features.

    Features are read where the feature detectors read them (the input of the head); a model
    without a readable graph gives outputs only, and the feature detectors are skipped.
    """

    def __init__(self, model, batch_size, verbose):
        self.model, self.batch_size, self.verbose = model, batch_size, verbose
        try:
            self.extractor, self.layer = detector_model.feature_model(model, None)
        except ValueError as error:
            self.extractor, self.layer, self.reason = None, None, str(error)

    def __call__(self, x):
        if self.extractor is None:
            return None, np.asarray(self.model.predict(x, batch_size=self.batch_size,
                                                       verbose=self.verbose))
        features, outputs = self.extractor.predict(x, batch_size=self.batch_size,
                                                   verbose=self.verbose)
        return np.asarray(features), np.asarray(outputs)


def logits_of(outputs):
    """Model outputs -> logits (the log of a softmax output: logits up to a per-row constant)."""
    return _labels.as_logits(np.asarray(outputs, dtype=np.float64))


def _ece(labels, probs):
    return metrics.expected_calibration_error(labels, probs, num_bins=NUM_BINS)


def _mce(labels, probs):
    return metrics.expected_calibration_error(labels, probs, num_bins=NUM_BINS, norm="max")


def _classwise_ece(labels, probs):
    return metrics.classwise_calibration_error(labels, probs, num_bins=NUM_BINS)


# The one home of the calibration and selective figures of probabilities (``evaluate`` and
# ``keras-vc compare`` both read them here): accuracy, 15-bin top-label ECE and MCE, NLL, Brier,
# classwise ECE (Kull et al. 2019), AURC (Geifman et al. 2019) and AUGRC (Traub et al. 2024), the
# last two with the largest probability as the confidence.
CALIBRATION_METRICS = {
    "accuracy": metrics.accuracy,
    "ece": _ece,
    "mce": _mce,
    "nll": metrics.negative_log_likelihood,
    "brier": metrics.brier_score,
    "classwise_ece": _classwise_ece,
    "aurc": metrics.aurc,
    "augrc": metrics.augrc,
}
EVALUATE_CALIBRATION_KEYS = ("accuracy", "nll", "brier", "ece", "classwise_ece", "aurc")


def calibration_figures(labels, probs, keys=EVALUATE_CALIBRATION_KEYS):
    """Calibration figures of (n, K) probabilities, in the order of ``keys``.

    Args:
        labels: (n,) integer labels.
        probs: (n, K) probabilities.
        keys: names from :data:`CALIBRATION_METRICS` (default: those of ``evaluate``'s report:
            accuracy, NLL, Brier, ECE, classwise ECE and AURC).

    Returns:
        ``{key: float}``.

    Raises:
        ValueError: an unknown key.
    """
    unknown = [key for key in keys if key not in CALIBRATION_METRICS]
    if unknown:
        raise ValueError(f"`keys`: unknown figure(s) {unknown}; expected names from "
                         f"{list(CALIBRATION_METRICS)}.")
    return {key: CALIBRATION_METRICS[key](labels, probs) for key in keys}


def temperature_figures(val_logits, val_labels, test_logits, test_labels):
    """The NLL temperature fitted on validation logits and the test figures it gives."""
    result = calibration.find_temperature(
        val_logits, val_labels, objective=calibration.temperature.DEFAULT_OBJECTIVE,
        num_bins=NUM_BINS)
    probs = calibration.apply_temperature(test_logits, result.temperature)
    return result, probs, calibration_figures(test_labels, probs)


def conformal_figures(val_probs, val_labels, test_probs, test_labels, alpha, score_names):
    """Coverage and mean set size on the test set of sets calibrated on the validation set."""
    figures = {}
    for name in score_names:
        predictor = conformal.SplitConformal(score=name, alpha=alpha, seed=0)
        predictor.fit(val_probs, val_labels)
        sets = predictor.predict(test_probs)
        figures[name] = {"coverage": metrics.coverage(test_labels, sets),
                         "mean_set_size": metrics.mean_set_size(sets),
                         "qhat": predictor.qhat}
    return figures


def build_detectors(model, names, forward):
    """``({name: detector}, {name: reason skipped})`` for the detectors that fit this model."""
    built, skipped = {}, {}
    for name in names:
        try:
            detector = detectors_lib.get(name, model)
        except ValueError as error:
            skipped[name] = str(error)
            continue
        if detector.input_kind == "features" and forward.extractor is None:
            skipped[name] = f"no features: {forward.reason}"
            continue
        if detector.input_kind == "features" and detector.score_input.layer != forward.layer:
            skipped[name] = (f"reads layer {detector.score_input.layer!r}, not the head input "
                             f"{forward.layer!r}")
            continue
        built[name] = detector
    return built, skipped


def _detector_inputs(detector, features, outputs):
    raw = outputs if detector.input_kind == "logits" else features
    return ops.convert_to_numpy(detector.prepare_tensor(ops.convert_to_tensor(raw)))


def fit_detectors(built, skipped, fit_set):
    """Fits the detectors that need it on ``fit_set`` = ``(x, y, features, outputs)`` or None;
    a detector whose fit fails (too few samples for KNN's k) moves to ``skipped``."""
    for name, detector in list(built.items()):
        if not detector.needs_fit:
            continue
        if fit_set is None:
            skipped[name] = "needs fitting: pass train_data or val_data"
        else:
            x, y, features, outputs = fit_set
            try:
                if detector.exportable:
                    detector.fit_features(_detector_inputs(detector, features, outputs), y)
                else:
                    detector.fit(x, y)
                continue
            except ValueError as error:
                skipped[name] = f"fit failed: {error}"
        del built[name]


def detector_scores(detector, x, features, outputs):
    """Scores (n,), higher = more in-distribution; through the inputs where the detector
    perturbs them (ODIN, Mahalanobis with epsilon > 0)."""
    if detector.exportable:
        return detector.score_features(_detector_inputs(detector, features, outputs))
    return detector.score(x)


def ood_figures(built, test_pass, ood_pass):
    """``{detector: {auroc, fpr_at_95_tpr, aupr_in, aupr_out}}`` of one OOD set, where each
    pass is ``(x, features, outputs)``."""
    figures = {}
    for name, detector in built.items():
        scores_in = detector_scores(detector, *test_pass)
        scores_out = detector_scores(detector, *ood_pass)
        values = metrics.ood_metrics(scores_in, scores_out)
        figures[name] = {key: values[key] for key in OOD_KEYS}
    return figures


def head_score_name(model):
    """The name of the head's own OOD score (``keras_vc.scores.recommended``)."""
    return scores_lib.recommended(model)[0]
