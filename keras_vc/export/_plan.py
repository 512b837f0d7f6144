"""The serving computation: validated settings and the graph behind every signature."""

import keras
from keras import ops

from keras_vc import _validation
from keras_vc import detectors as detectors_lib
from keras_vc import scores as scores_lib
from keras_vc.export._checks import _check_calibrator
from keras_vc.export._checks import _check_conformal
from keras_vc.export._checks import _check_detector
from keras_vc.export._checks import _check_mc_samples
from keras_vc.export._checks import _check_model
from keras_vc.export._checks import _check_num_classes
from keras_vc.export._checks import _check_ood_score
from keras_vc.export._checks import _check_temperature
from keras_vc.export._checks import _detect_output_kind
from keras_vc.export._constants import BASE_OUTPUTS
from keras_vc.export._constants import CONFORMAL_OUTPUTS

# Smallest probability turned into a logit: float32 keeps 1e-30 as a normal number, and
# log(1e-30) = -69 stays far below any logit that matters after a softmax.
_PROBABILITY_FLOOR = 1e-30


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
