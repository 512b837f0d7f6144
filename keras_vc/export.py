"""Serving export: one call writes a TF Serving SavedModel whose outputs carry the uncertainty.

:func:`export_for_serving` wraps a trained classifier in a Keras 3 ``ExportArchive`` whose
``serving_default`` signature takes one tensor named ``inputs`` (:data:`INPUT_NAME`; batch
dimension dynamic, the other dimensions and the dtype those of the model's ``keras.Input``) and
returns, for a batch of ``B`` rows and ``K`` classes:

- ``probabilities``, float32 ``(B, K)``: ``softmax(logits / T)``, the calibrated probabilities;
- ``predicted_class``, int64 ``(B,)``: their ``argmax``;
- ``confidence``, float32 ``(B,)``: the largest probability;
- ``entropy``, float32 ``(B,)``: the Shannon entropy of the probabilities, in nats;
- ``ood_score``, float32 ``(B,)``: the OOD score, higher = more in-distribution;
- ``is_ood``, bool ``(B,)``: ``ood_score < ood_threshold``, only when a threshold is given;
- ``prediction_set``, bool ``(B, K)``: the conformal prediction set (True = label in the set),
  only with ``conformal=``;
- ``set_size``, int32 ``(B,)``: the number of labels in ``prediction_set``, only with
  ``conformal=``.

The SavedModel holds plain TensorFlow ops: the server (or ``tf.saved_model.load``) needs neither
keras_vc nor Keras. The same signature is also registered as ``serve`` (the Keras endpoint name);
with ``mc_samples`` a second signature ``serve_mc`` returns the same outputs averaged over latent
draws.

**Temperature.** ``T`` is the fitted temperature. A keras_vc head owns a ``temperature``
variable (set by :func:`keras_vc.calibration.fit_temperature`) and already divides its logits
by it, so nothing more is applied. A plain ``Dense`` output has no
such variable: pass ``temperature=`` (a float or the
:class:`~keras_vc.calibration.TemperatureResult` returned by ``find_temperature`` /
``fit_temperature``) and the export divides by it. Passing
``temperature=`` for a head that owns one is an error (it would be applied twice).

**Calibrator.** ``calibrator=`` (a fitted :mod:`keras_vc.calibration` calibrator with
``exportable = True``) makes the served probabilities ``calibrator.predict_proba_ops(logits)``;
``predicted_class``, ``confidence`` and ``entropy`` then come from the calibrated probabilities
(a binning calibrator can change the argmax). It replaces the temperature: passing both
``temperature=`` and ``calibrator=`` is an error. A head that owns a ``temperature`` keeps it
at its current value and the calibrator reads the head's outputs, so fit the calibrator on
``model.predict`` logits of that same model. The OOD score is a property of the model, not of
the calibration: it is computed from the logits before the calibrator, so thresholds from
:func:`fit_ood_threshold` stay valid.

**Conformal sets.** ``conformal=`` (a fitted :class:`keras_vc.conformal.SplitConformal`, fitted
on the served probabilities, i.e. after the calibrator, with K classes) adds
``prediction_set`` and ``set_size``, computed in the graph with ``predict_mask_ops`` from the
served probabilities. A randomised score (APS / RAPS with ``randomized=True``) draws one
Uniform(0, 1) per row and request with ``keras.random.uniform`` and a ``SeedGenerator`` seeded
with the predictor's ``seed`` and owned by the export: its state is saved and advances on
every request, so the served sets are not those of ``predict`` (a fixed NumPy stream), only
equal in distribution. Tie caveat: the graph runs in float32, so a label whose score lies
within ~1e-7 of ``qhat`` (e.g. flat calibrators such as isotonic or histogram binning, whose
probabilities repeat, or a non-randomised APS with ``qhat`` at the full mass 1) can fall on
the other side than in the float64 :meth:`~keras_vc.conformal.SplitConformal.predict`.
Sources: Angelopoulos & Bates (arXiv 2107.07511); Romano et al. (NeurIPS 2020).

**Probabilities models.** A model whose output layer applies a softmax (``Dense(K,
activation="softmax")``, a ``Softmax`` or ``Activation("softmax")`` layer) is detected and its
output treated as probabilities: the export works from ``log(p)``, which are logits up to a
per-row constant, as :func:`keras_vc.calibration.fit_temperature` does. Detection looks at the
output layer only; pass ``output_kind="probabilities"`` for a model that computes its softmax
elsewhere.

**OOD score.** ``ood_score="auto"`` uses :func:`keras_vc.scores.recommended`: the head's own
``ood_score`` for a head that recommends one, the maximum softmax probability otherwise. A
name from :data:`keras_vc.scores.SCORES` (or a function of logits written with ``keras.ops``)
applies that score to the served logits ``logits / T``; ``None`` drops ``ood_score`` (and
``is_ood``).
A keras_vc head's own score reads its logits at temperature 1 (the head protocol: calibration
does not move it); a named score or a function reads the served logits ``logits / T``. A
calibrator (below) never changes the OOD score.
:func:`fit_ood_threshold` turns in-distribution validation scores into a threshold at a chosen
true-positive rate (95% by default) with :func:`keras_vc.metrics.threshold_at_tpr`.

**Post-hoc detectors.** ``ood_score=`` also takes a fitted detector from
:mod:`keras_vc.detectors` (``Mahalanobis``, ``RelativeMahalanobis``, ``KNN``, ``ViM``,
``ReAct``, ``Energy``, ``MaxSoftmax``, ``MaxLogit``, ``GEN``, ``HeadScore``), and the served
``ood_score`` is then the detector's own ``score(x)``, computed in the graph: one forward pass
through the detector's extractor, a functional model ``x -> [activations of its layer, model
output]`` over the model's own layers, gives the served logits and the detector's input
(``prepare_tensor``: pooling, or the log of a softmax output), and ``score_tensor`` maps it to
the score with ``keras.ops``, the fitted statistics (class means and whitening matrices, the
KNN feature bank, ViM's residual space, ReAct's clip value) embedded as constants, so the server
needs no keras_vc. A detector reads the model's output as ``model.predict`` returns it: neither
``temperature=`` nor a calibrator moves its score (a keras_vc head's own temperature is part of
that output). Fit the threshold with ``fit_ood_threshold(model, x_val, ood_score=det)``. Refused
with a ``ValueError``: a detector that is not fitted; one that is not ``exportable`` (ODIN, or
Mahalanobis, with ``epsilon > 0`` perturb the input along a gradient, which the graph does not
do); one built on another model (attach a saved one with ``load(path, model)``); one fitted
without a model (``fit_features``) whose layer this model lacks or whose feature width differs;
a detector together with ``mc_samples``. ``ServingExport.ood_score`` names it, e.g.
``"mahalanobis(layer=dense_1)"`` or ``"energy(logits)"``. Constants live in the SavedModel's
graph, which protocol buffers limit to 2 GB: a KNN bank of 50 000 x 2 048 float32 (410 MB) fits;
subsample a larger one with ``max_samples``. Sources: the detectors' own docstrings.

**The head protocol this module relies on** (:class:`keras_vc.layers.ClassifierHead`, see
CONTRIBUTING.md): :func:`keras_vc.layers.output_head` finds the keras_vc head that produces the
model's output (a model in which layers follow a head is refused); a head returns float32
logits, divides its inference outputs by its own float32 ``temperature``, and names its
``recommended_ood_score`` with ``ood_score(outputs)`` (logits -> score at temperature 1, higher =
more in-distribution). A head **with a latent** (``has_latent = True``) accepts
``call(inputs, training=None, num_samples=None)``: with ``num_samples=M`` at inference it
returns the log of the class probabilities averaged over ``M`` latent draws taken from its
``keras.random.SeedGenerator``, ``log((1/M) sum_m softmax(logits(z_m)))``, shape ``(B, K)``,
float32, temperature included. These are valid logits (their softmax is the MC average), so the
``serve_mc`` signature derives every output from them exactly as ``serving_default`` does,
including ``is_ood`` with the same threshold (compute it with ``fit_ood_threshold(...,
mc_samples=M)`` when ``serve_mc`` is the signature you rely on). The seed generator's state is
saved with the model and advances on every request: each request draws fresh latents.

Sources: the maximum softmax probability baseline and thresholding at a fixed in-distribution
true-positive rate follow Hendrycks & Gimpel (ICLR 2017) and the FPR-at-95%-TPR convention of
the OOD literature; the Monte Carlo average of the class probabilities over latent draws is the
prediction rule of the variational two-stage head (``forward_multisample`` in its reference
code). Temperature scaling: Guo et al. (ICML 2017).

Example:
    >>> import keras, numpy as np, keras_vc
    >>> model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(3)])
    >>> x_val = np.random.default_rng(0).normal(size=(64, 8)).astype("float32")
    >>> threshold = keras_vc.export.fit_ood_threshold(model, x_val, tpr=0.95, temperature=1.5)
    >>> info = keras_vc.export.export_for_serving(          # doctest: +SKIP
    ...     model, "models/digits/1", temperature=1.5, ood_threshold=threshold)
    >>> info.signatures["serving_default"]                  # doctest: +SKIP
    ('probabilities', 'predicted_class', 'confidence', 'entropy', 'ood_score', 'is_ood')

The export runs on the TensorFlow backend (keras_vc's default); ``ExportArchive`` needs
TensorFlow installed on any backend.
"""

import copy
import dataclasses
import inspect
import numbers
import os
import shutil
from typing import Optional

import keras
import numpy as np
from keras import ops

from keras_vc import _activations
from keras_vc import _backend
from keras_vc import _validation
from keras_vc import detectors as detectors_lib
from keras_vc import scores as scores_lib
from keras_vc.layers import head as head_lib
from keras_vc.metrics import ood as ood_metrics

INPUT_NAME = "inputs"
"""Name of the single input tensor of every exported signature."""

DEFAULT_SIGNATURE = "serving_default"
ENDPOINT = "serve"
MC_SIGNATURE = "serve_mc"
OUTPUT_KINDS = ("auto", "logits", "probabilities")
BASE_OUTPUTS = ("probabilities", "predicted_class", "confidence", "entropy")
CONFORMAL_OUTPUTS = ("prediction_set", "set_size")

# Smallest probability turned into a logit: float32 keeps 1e-30 as a normal number, and
# log(1e-30) = -69 stays far below any logit that matters after a softmax.
_PROBABILITY_FLOOR = 1e-30
_PROBABILITY_ACTIVATIONS = ("softmax",)
_NOT_CLASS_ACTIVATIONS = ("sigmoid", "hard_sigmoid", "hard_silu", "silu", "tanh", "softsign")


@dataclasses.dataclass(frozen=True)
class ServingExport:
    """What :func:`export_for_serving` wrote.

    Attributes:
        path: the SavedModel directory.
        input_name: the name of the input tensor of every signature (``"inputs"``).
        input_shape: the input shape, batch dimension ``None``.
        input_dtype: the input dtype.
        signatures: signature name -> tuple of output names.
        output_kind: ``"logits"`` or ``"probabilities"``: how the model's output was read.
        temperature: the temperature the served probabilities use (the head's own value when
            the head owns a ``temperature`` variable).
        temperature_applied_by_head: True when the head divides by its own ``temperature``.
        ood_score: name of the served OOD score, or None; a post-hoc detector is described by
            its registry name and input, e.g. ``"mahalanobis(layer=dense_1)"`` or
            ``"energy(logits)"``.
        ood_threshold: the ``is_ood`` threshold, or None.
        mc_samples: latent draws averaged by ``serve_mc``, or None.
        calibrator: class name of the calibrator the served probabilities come from, or None.
        conformal: ``"<score>(alpha=<alpha>[, randomized])"`` of the conformal predictor behind
            ``prediction_set`` / ``set_size``, or None.
    """

    path: str
    input_name: str
    input_shape: tuple
    input_dtype: str
    signatures: dict
    output_kind: str
    temperature: float
    temperature_applied_by_head: bool
    ood_score: Optional[str]
    ood_threshold: Optional[float]
    mc_samples: Optional[int]
    calibrator: Optional[str] = None
    conformal: Optional[str] = None


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


class _UniformDraws(keras.layers.Layer):
    """Owns the seed generator of the per-request uniforms of a randomised conformal score.

    A layer so that the export archive saves the generator's state with the model: it advances
    on every request, as a latent head's does.
    """

    def __init__(self, seed, **kwargs):
        super().__init__(**kwargs)
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.built = True

    def draw(self, batch_size):
        """(batch_size,) Uniform(0, 1) draws, advancing the generator."""
        return keras.random.uniform((batch_size,), seed=self.seed_generator)


class _ServingPlan:
    """Validated export settings and the serving computation, written with keras.ops."""

    def __init__(self, model, ood_score, ood_threshold, temperature, output_kind, mc_samples,
                 calibrator=None, conformal=None):
        self.input, output, self.head = _check_model(model)
        num_classes = int(output.shape[-1])
        self.calibrator = _check_calibrator(calibrator, temperature)
        _check_num_classes(self.calibrator, num_classes)
        self.conformal = _check_conformal(conformal, num_classes)
        self.uniform = None
        if self.conformal is not None and self.conformal.uses_uniform:
            self.uniform = _UniformDraws(self.conformal.seed, name="conformal_uniform")
        self.model = model
        self.output_kind = _detect_output_kind(self.head, output_kind)
        self.temperature, self.reported_temperature, self.head_temperature = _check_temperature(
            temperature, self.head)
        self.detector = None
        if isinstance(ood_score, detectors_lib.Detector):
            self.detector, self.score_name = _check_detector(ood_score, model)
            self.score_fn = self._detector_score
        else:
            self.score_name, self.score_fn = _check_ood_score(ood_score, model)
        if ood_threshold is not None:
            if self.score_fn is None:
                raise ValueError(
                    "`ood_threshold` needs an OOD score to compare with, but `ood_score=None`. "
                    "Pass ood_score='auto' (or a score name), or drop the threshold."
                )
            ood_threshold = _validation.check_float(ood_threshold, "ood_threshold")
        self.threshold = ood_threshold
        self.mc_samples = _check_mc_samples(mc_samples, self.head)
        if self.mc_samples is not None and self.detector is not None:
            raise ValueError(
                "`mc_samples` cannot be combined with a detector as `ood_score`: a detector "
                "scores the deterministic forward pass. Export without `mc_samples`, or use a "
                "score name with it.")
        self.features = None
        if self.mc_samples is not None:
            if self.head.output is not output:
                raise ValueError(
                    f"`mc_samples` needs the latent head {self.head.name!r} to produce the model's "
                    "output; the model's output comes from another layer."
                )
            # The model up to the head's input; the head is then called with num_samples.
            self.features = keras.Model(self.input, self.head.input)
        self.input_shape = (None,) + tuple(self.input.shape[1:])
        self.input_dtype = keras.backend.standardize_dtype(self.input.dtype)

    @property
    def conformal_description(self):
        if self.conformal is None:
            return None
        randomized = ", randomized" if self.conformal.uses_uniform else ""
        return f"{self.conformal.score}(alpha={self.conformal.alpha:g}{randomized})"

    @property
    def output_names(self):
        names = BASE_OUTPUTS
        if self.score_fn is not None:
            names += ("ood_score",)
        if self.threshold is not None:
            names += ("is_ood",)
        if self.conformal is not None:
            names += CONFORMAL_OUTPUTS
        return names

    def forward(self, inputs):
        """One pass: ``(model output, detector input or None)``.

        A feature detector reads its layer through its own extractor, a functional model
        ``x -> [activations, model output]`` over the model's layers: the graph its ``score``
        runs."""
        if self.detector is None:
            return self.model(inputs, training=False), None
        if self.detector.input_kind == "logits":
            outputs = self.model(inputs, training=False)
            return outputs, outputs
        features, outputs = self.detector.feature_extractor(inputs, training=False)
        return outputs, features

    def _detector_score(self, raw):
        return self.detector.score_tensor(self.detector.prepare_tensor(raw))

    def logits(self, outputs):
        """The served logits ``logits / T`` (from log-probabilities for a softmax output)."""
        outputs = ops.cast(outputs, "float32")
        if self.output_kind == "probabilities":
            outputs = ops.log(ops.maximum(outputs, _PROBABILITY_FLOOR))
        return self._scale(outputs)

    def mc_logits(self, inputs):
        """Log of the class probabilities averaged over ``mc_samples`` latent draws, over T."""
        features = self.features(inputs, training=False)
        outputs = self.head(features, training=False, num_samples=self.mc_samples)
        return self._scale(ops.cast(outputs, "float32"))

    def _scale(self, logits):
        if self.temperature != 1.0:
            logits = logits / self.temperature
        return logits

    def outputs(self, logits, detector_input=None):
        """Every served output from the served logits (and the detector's input)."""
        if self.calibrator is None:
            probabilities = ops.softmax(logits, axis=-1)
            entropy = -scores_lib.negative_entropy(logits)
        else:
            probabilities = ops.cast(self.calibrator.predict_proba_ops(logits), "float32")
            # log p are logits of p (the softmax of log p is p); zeros are floored.
            entropy = -scores_lib.negative_entropy(
                ops.log(ops.maximum(probabilities, _PROBABILITY_FLOOR)))
        result = {
            "probabilities": probabilities,
            "predicted_class": ops.cast(ops.argmax(
                logits if self.calibrator is None else probabilities, axis=-1), "int64"),
            "confidence": ops.max(probabilities, axis=-1),
            "entropy": entropy,
        }
        if self.score_fn is not None:
            score = ops.cast(self.score_fn(logits if self.detector is None else detector_input),
                             "float32")
            result["ood_score"] = score
            if self.threshold is not None:
                result["is_ood"] = ops.less(score, ops.cast(self.threshold, "float32"))
        if self.conformal is not None:
            uniform = None
            if self.uniform is not None:
                uniform = self.uniform.draw(ops.shape(probabilities)[0])
            mask = self.conformal.predict_mask_ops(probabilities, uniform)
            result["prediction_set"] = mask
            result["set_size"] = ops.sum(ops.cast(mask, "int32"), axis=-1)
        return result

    def serve(self, inputs):
        outputs, detector_input = self.forward(inputs)
        return self.outputs(self.logits(outputs), detector_input)

    def serve_mc(self, inputs):
        return self.outputs(self.mc_logits(inputs))


def export_for_serving(model, path, *, ood_score="auto", ood_threshold=None, mc_samples=None,
                       temperature=None, output_kind="auto", calibrator=None, conformal=None,
                       overwrite=False):
    """Writes a TensorFlow Serving SavedModel whose signature returns the uncertainty outputs.

    Args:
        model: a trained single-input Functional or Sequential classifier whose last layer
            outputs class logits (a keras_vc head or a plain ``Dense``) or softmax
            probabilities, shape ``(batch, K)``.
        path: the SavedModel directory. TensorFlow Serving loads ``<model_base_path>/<version>``,
            so write to a numbered folder, e.g. ``"models/digits/1"``.
        ood_score: ``"auto"`` (the head's recommended score, MSP for other outputs), a score name
            from :data:`keras_vc.scores.SCORES`, a function of logits written with ``keras.ops``,
            a fitted, exportable :mod:`keras_vc.detectors` detector (the served score is its
            ``score``; see "Post-hoc detectors" in the module docstring), or None for no
            ``ood_score`` output.
        ood_threshold: optional float; adds the boolean output ``is_ood = ood_score <
            ood_threshold``. Compute it with :func:`fit_ood_threshold` on in-distribution
            validation data, with the same ``ood_score``.
        mc_samples: optional int >= 1, only for a head with a latent (``has_latent = True``):
            adds the signature ``serve_mc`` that averages the class probabilities over that many
            latent draws.
        temperature: optional float > 0 or a ``TemperatureResult`` (from
            :func:`keras_vc.calibration.find_temperature` / ``fit_temperature``), for an output
            layer without a ``temperature`` variable. Must be None for a head that owns one.
        output_kind: ``"auto"`` (detect a softmax output layer), ``"logits"`` or
            ``"probabilities"``.
        calibrator: optional fitted, exportable calibrator: the served probabilities become
            ``calibrator.predict_proba_ops(logits)`` (see the module docstring).
        conformal: optional fitted ``SplitConformal`` on K classes: adds ``prediction_set``
            (bool ``(B, K)``) and ``set_size`` (int32 ``(B,)``) from the served probabilities.
        overwrite: False (default) refuses a ``path`` that already exists, so that a served
            version is never replaced by accident; True deletes the existing folder first.

    Returns:
        A :class:`ServingExport` describing the signatures written.

    Raises:
        ValueError: the model's output is not class logits or probabilities, a threshold without
            a score, an unknown score name, ``mc_samples < 1`` or ``mc_samples`` for a head
            without a latent, a temperature for a head that applies its own, a temperature
            with a calibrator, a calibrator that is unfitted, not exportable or on another K,
            a conformal predictor that is unfitted or fitted on another K; a detector as
            ``ood_score`` that is not fitted, not exportable, built on another model, fitted
            without a model on a layer this model lacks or on another feature width, or
            combined with ``mc_samples``; a ``path`` that exists without ``overwrite=True`` (or
            that is a file); Keras on a backend other than TensorFlow (first).

    Example:
        >>> info = export_for_serving(model, "models/digits/1",     # doctest: +SKIP
        ...                           ood_threshold=fit_ood_threshold(model, x_val))
        >>> import tensorflow as tf                                 # doctest: +SKIP
        >>> served = tf.saved_model.load(info.path).signatures["serving_default"]
        >>> served(inputs=tf.constant(x_test))["probabilities"]    # doctest: +SKIP
    """
    _backend.require_tensorflow(
        "export_for_serving (a TensorFlow SavedModel with the uncertainty signatures)",
        "Save the model as a `.keras` file (`model.save(...)`) and export it from a process "
        "with KERAS_BACKEND=tensorflow, or use `model.export(...)` for a plain serving "
        "signature of the logits.")
    plan = _ServingPlan(model, ood_score, ood_threshold, temperature, output_kind, mc_samples,
                        calibrator, conformal)
    if not isinstance(path, (str, os.PathLike)):
        raise ValueError(f"`path` must be a string or os.PathLike, got {type(path).__name__}.")
    path = os.fspath(path)
    if overwrite not in (True, False):
        raise ValueError(f"`overwrite` must be True or False, got {overwrite!r}.")
    if os.path.exists(path):
        if not os.path.isdir(path):
            raise ValueError(f"`path` {path!r} is an existing file, not a SavedModel folder.")
        if not overwrite:
            raise ValueError(
                f"`path` {path!r} already exists: export_for_serving does not replace a version "
                "folder silently. Write the next version (e.g. models/NAME/2) or pass "
                "overwrite=True.")
        shutil.rmtree(path)
    signature = [keras.InputSpec(shape=plan.input_shape, dtype=plan.input_dtype,
                                 name=INPUT_NAME)]

    # Named parameters become the signature's input names, so spell them out.
    def serve(inputs):
        return plan.serve(inputs)

    def serve_mc(inputs):
        return plan.serve_mc(inputs)

    archive = keras.export.ExportArchive()
    archive.track(model)
    if plan.uniform is not None:
        archive.track(plan.uniform)
    archive.add_endpoint(ENDPOINT, serve, input_signature=signature)
    signatures = {DEFAULT_SIGNATURE: plan.output_names, ENDPOINT: plan.output_names}
    if plan.mc_samples is not None:
        archive.add_endpoint(MC_SIGNATURE, serve_mc, input_signature=signature)
        signatures[MC_SIGNATURE] = plan.output_names
    archive.write_out(path, verbose=False)
    return ServingExport(
        path=path,
        input_name=INPUT_NAME,
        input_shape=plan.input_shape,
        input_dtype=plan.input_dtype,
        signatures=signatures,
        output_kind=plan.output_kind,
        temperature=plan.reported_temperature,
        temperature_applied_by_head=plan.head_temperature,
        ood_score=plan.score_name,
        ood_threshold=plan.threshold,
        mc_samples=plan.mc_samples,
        calibrator=None if plan.calibrator is None else type(plan.calibrator).__name__,
        conformal=plan.conformal_description,
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


def serving_outputs(model, x, *, ood_score="auto", ood_threshold=None, mc_samples=None,
                    temperature=None, output_kind="auto", calibrator=None, conformal=None,
                    batch_size=256):
    """Computes in-process what the exported signature returns for ``x``.

    Same arguments as :func:`export_for_serving`; with ``mc_samples`` the outputs are those of the
    ``serve_mc`` signature (stochastic: each call draws fresh latents).

    Args:
        model: the classifier (see :func:`export_for_serving`).
        x: inputs, an array of shape ``(n,) + model input shape``.
        ood_score, ood_threshold, mc_samples, temperature, output_kind, calibrator, conformal:
            as in :func:`export_for_serving` (randomised conformal sets draw fresh uniforms
            from a generator seeded with the predictor's ``seed`` on every call).
        batch_size: rows per forward pass.

    Returns:
        dict output name -> NumPy array with ``n`` rows (the names of :class:`ServingExport`'s
        signatures).

    Example:
        >>> out = serving_outputs(model, x_test, temperature=1.4)   # doctest: +SKIP
        >>> out["probabilities"].shape, out["ood_score"].shape      # doctest: +SKIP
        ((500, 10), (500,))
    """
    plan = _ServingPlan(model, ood_score, ood_threshold, temperature, output_kind, mc_samples,
                        calibrator, conformal)
    batch_size = _validation.check_int(batch_size, "batch_size", minimum=1)
    x = _check_inputs(x, plan, "x")
    compute = plan.serve if plan.mc_samples is None else plan.serve_mc
    pieces = {name: [] for name in plan.output_names}
    for start in range(0, x.shape[0], batch_size):
        batch = compute(ops.convert_to_tensor(x[start:start + batch_size]))
        for name in plan.output_names:
            pieces[name].append(ops.convert_to_numpy(batch[name]))
    return {name: np.concatenate(values) for name, values in pieces.items()}


def fit_ood_threshold(model, x_in, *, tpr=0.95, ood_score="auto", mc_samples=None,
                      temperature=None, output_kind="auto", batch_size=256):
    """The ``ood_threshold`` that keeps ``tpr`` of in-distribution inputs (``is_ood`` False).

    Scores ``x_in`` (held-out in-distribution data, never the test split) exactly as the exported
    signature will and returns :func:`keras_vc.metrics.threshold_at_tpr` of those scores: the
    highest ``t`` with at least ``tpr`` of the scores ``>= t``.

    Args:
        model: the classifier (see :func:`export_for_serving`).
        x_in: in-distribution validation inputs.
        tpr: fraction of in-distribution inputs to accept, in (0, 1]; 0.95 by default.
        ood_score, mc_samples, temperature, output_kind: the values you will pass to
            :func:`export_for_serving` (``mc_samples`` scores as the ``serve_mc`` signature does;
            ``ood_score`` may be a fitted detector, as there).
        batch_size: rows per forward pass.

    Returns:
        The threshold, a float.

    Example:
        >>> t = fit_ood_threshold(model, x_val, tpr=0.95)                    # doctest: +SKIP
        >>> export_for_serving(model, "models/digits/1", ood_threshold=t)     # doctest: +SKIP
    """
    tpr = _validation.check_float(tpr, "tpr", minimum=0.0, maximum=1.0, strict_minimum=True)
    if ood_score is None:
        raise ValueError("`ood_score` must name a score to threshold, got None.")
    outputs = serving_outputs(model, x_in, ood_score=ood_score, mc_samples=mc_samples,
                              temperature=temperature, output_kind=output_kind,
                              batch_size=batch_size)
    return ood_metrics.threshold_at_tpr(outputs["ood_score"], tpr)
