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

from keras_vc.export._constants import BASE_OUTPUTS
from keras_vc.export._constants import CONFORMAL_OUTPUTS
from keras_vc.export._constants import DEFAULT_SIGNATURE
from keras_vc.export._constants import ENDPOINT
from keras_vc.export._constants import INPUT_NAME
from keras_vc.export._constants import MC_SIGNATURE
from keras_vc.export._constants import OUTPUT_KINDS
from keras_vc.export.serving import ServingExport
from keras_vc.export.serving import export_for_serving
from keras_vc.export.serving import fit_ood_threshold
from keras_vc.export.serving import serving_outputs
