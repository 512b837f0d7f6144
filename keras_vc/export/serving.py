"""The public export: ``export_for_serving``, ``serving_outputs`` and ``fit_ood_threshold``."""

import dataclasses
import os
import shutil
from typing import Optional

import keras
import numpy as np
from keras import ops

from keras_vc import _backend
from keras_vc import _validation
from keras_vc.export._checks import _check_inputs
from keras_vc.export._constants import DEFAULT_SIGNATURE
from keras_vc.export._constants import ENDPOINT
from keras_vc.export._constants import INPUT_NAME
from keras_vc.export._constants import MC_SIGNATURE
from keras_vc.export._plan import _ServingPlan
from keras_vc.metrics import ood as ood_metrics


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
            ``score``; see "Post-hoc detectors" in the package docstring), or None for no
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
            ``calibrator.predict_proba_ops(logits)`` (see the package docstring).
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
