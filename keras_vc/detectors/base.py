"""The detector interface: fit on in-distribution data, score new inputs (higher = more
in-distribution), from a model or from features the user already has, and save / load."""

import numpy as np
from keras import ops

from keras_vc import _persistence
from keras_vc import _validation
from keras_vc.detectors import _model

SCORE_BATCH = 4096


class Detector(_persistence.Persistable):
    """Base of every post-hoc detector.

    Subclasses set ``input_kind`` (``"logits"`` or ``"features"``), ``needs_fit`` and
    ``needs_labels``, and implement ``score_tensor`` (keras.ops only, fitted statistics as
    constants); fitted ones also implement ``_begin(num_features)``, ``_update(features, labels)``
    (one batch, float64), ``_finish()``, ``_fitted_state()`` and ``_set_fitted_state(arrays)``.

    Args:
        model: the trained classifier (functional or Sequential), or None to use
            ``fit_features`` / ``score_features`` only.
        layer: (feature detectors) name of the layer whose activations are used; None: the
            input of the head (the model's last layer).
        pooling: (feature detectors) None (the activations must be (batch, D)), ``"avg"`` (mean
            over the axes between batch and channels, channels-last) or ``"flatten"``.
    """

    input_kind = "features"
    score_batch = SCORE_BATCH
    needs_fit = True
    needs_labels = False

    def __init__(self, model=None, layer=None, pooling=None):
        if layer is not None and (not isinstance(layer, str) or not layer):
            raise ValueError(f"`layer` must be a layer name or None, got {layer!r}.")
        self.layer = layer
        if pooling not in _model.POOLINGS:
            raise ValueError(f"`pooling` must be one of {_model.POOLINGS}, got {pooling!r}.")
        self.pooling = pooling
        self.model = None
        self.log_outputs = False
        self.num_features = None
        self._extractor = None
        self._layer_name = None
        self._fitted = not self.needs_fit
        if model is not None:
            self._attach(model)

    # -- the model -------------------------------------------------------------------------------
    @property
    def fitted(self):
        """Whether the detector can score (fitted, or a detector that needs no fit)."""
        return self._fitted

    @property
    def feature_extractor(self):
        """The model mapping inputs to ``(features, outputs)`` (feature detectors) or the
        attached model itself (logit detectors); None without a model."""
        return self._extractor

    def attach(self, model):
        """Attaches ``model`` (as ``load(path, model)`` does), checking layer and width.

        Raises:
            ValueError: a missing layer, a wrong rank, or features of another width than the
                fitted ones.
        """
        self._attach(model)
        return self

    def _attach(self, model):
        if self.input_kind == "features":
            extractor, name = _model.feature_model(model, self.layer)
            _model.check_feature_rank(extractor, name, self.pooling)
            width = self._static_width(extractor.outputs[0].shape)
        else:
            extractor, width, name = model, _model.num_outputs(model), None
        if self.num_features is not None and width is not None and width != self.num_features:
            raise ValueError(f"`model` gives {self.input_kind} of width {width}, but this "
                             f"{type(self).__name__} was fitted on width {self.num_features}.")
        self.model, self._extractor = model, extractor
        self._layer_name = name if self.input_kind == "features" else None
        self.log_outputs = _model.outputs_probabilities(model)
        if self.num_features is None:
            self.num_features = width

    def _static_width(self, shape):
        shape = tuple(shape)[1:]
        if self.pooling == "avg":
            shape = shape[-1:]
        if any(d is None for d in shape):
            return None
        return int(np.prod(shape))

    @property
    def score_input(self):
        """A :class:`ScoreInput`: what :meth:`score_tensor` takes and how to get it from the model
        (``layer``: the resolved layer name once a model is attached)."""
        layer = (self._layer_name or self.layer) if self.input_kind == "features" else None
        return _model.ScoreInput(self.input_kind, layer, self.pooling, self.log_outputs)

    @property
    def exportable(self):
        """Whether :meth:`score_tensor` alone reproduces :meth:`score` (no input gradient)."""
        return True

    def prepare_tensor(self, raw):
        """Maps the raw model output (logit detectors) or layer activations (feature detectors)
        to the input of :meth:`score_tensor`, with keras.ops: the log of a probability output
        (logits up to a per-row constant, as in ``keras_vc.calibration``), or ``pooling``."""
        if self.input_kind == "logits":
            return ops.log(ops.maximum(raw, 1e-30)) if self.log_outputs else raw
        return _model.pool(raw, self.pooling)

    def _forward(self, x_batch):
        outputs = self._extractor(x_batch, training=False)
        return outputs[0] if self.input_kind == "features" else outputs

    def _require_model(self, method):
        if self._extractor is None:
            raise ValueError(f"`{method}` needs the model: build the {type(self).__name__} with "
                             f"it, or pass it to `load(path, model)`; without a model use "
                             f"`fit_features` / `score_features`.")

    def _require_fitted(self, method):
        if not self._fitted:
            raise ValueError(f"This {type(self).__name__} is not fitted: call `fit(x, y)` or "
                             f"`fit_features(features, labels)` before `{method}`.")

    # -- fitting ---------------------------------------------------------------------------------
    def fit(self, x, y=None, batch_size=256):
        """Fits on in-distribution training data in one streaming pass (inference mode).

        Args:
            x: inputs (arrays), or a ``tf.data.Dataset`` / ``keras.utils.PyDataset`` / iterable
                of ``(x, y)`` batches (then ``y`` must be None). Use un-augmented inputs.
            y: labels (n,), (n, 1) or one-hot, for detectors that need them.
            batch_size: batch size of the forward passes over arrays.

        Returns:
            self.
        """
        self._require_model("fit")
        if not self.needs_fit:
            return self
        started = False
        for x_batch, y_batch in _model.batches(x, y, batch_size, self.needs_labels):
            features = _validation.check_finite_array(
                ops.convert_to_numpy(self.prepare_tensor(self._forward(x_batch))),
                f"features of layer {self.score_input.layer or '(head input)'}", ndim=2)
            if not started:
                self._fitted = False
                self._begin(features.shape[1])
                started = True
            self._update(features, self._labels(y_batch, features.shape[0], "y"))
        self._finish()
        self._fitted = True
        return self

    def fit_features(self, features, labels=None, batch_size=SCORE_BATCH):
        """Fits on features (or logits, for logit detectors) the user already has.

        Args:
            features: (n, D) array.
            labels: (n,) labels, for detectors that need them.
            batch_size: rows per streaming update.

        Returns:
            self.
        """
        features = _validation.check_finite_array(features, "features", ndim=2)
        if not self.needs_fit:
            return self
        labels = self._labels(labels, features.shape[0], "labels")
        self._fitted = False
        self._begin(features.shape[1])
        for start in range(0, features.shape[0], batch_size):
            self._update(features[start:start + batch_size],
                         None if labels is None else labels[start:start + batch_size])
        self._finish()
        self._fitted = True
        return self

    def _labels(self, labels, count, name):
        if not self.needs_labels:
            return None
        if labels is None:
            raise ValueError(f"`{name}` (labels) is required by {type(self).__name__}.")
        if getattr(self, "num_classes", None) is None:
            array = _validation.to_numpy(labels, name)
            if array.ndim == 1 and np.issubdtype(array.dtype, np.integer) and array.size:
                self.num_classes = max(int(array.max()) + 1, 2)
            else:
                raise ValueError(f"Pass `num_classes`: it cannot be read from `{name}`.")
        return _validation.check_labels(labels, self.num_classes, count, name)

    def _begin(self, num_features):
        self.num_features = num_features

    def _update(self, features, labels):
        raise NotImplementedError

    def _finish(self):
        raise NotImplementedError

    # -- scoring ---------------------------------------------------------------------------------
    def score_tensor(self, inputs):
        """Scores a (batch, D) tensor of features or logits (see :attr:`score_input`) with
        keras.ops only; float64 input is scored in float64, anything else in float32."""
        raise NotImplementedError

    def score(self, x, batch_size=256):
        """Scores inputs: NumPy (n,), higher = more in-distribution.

        Args:
            x: inputs (arrays), or an iterable of batches (``(x, y)`` tuples allowed).
            batch_size: batch size of the forward passes over arrays.
        """
        self._require_model("score")
        self._require_fitted("score")
        scores = [self._score_inputs(x_batch)
                  for x_batch, _ in _model.batches(x, None, batch_size, False)]
        return np.concatenate(scores)

    def _score_inputs(self, x_batch):
        features = self.prepare_tensor(self._forward(x_batch))
        return self.score_features(ops.convert_to_numpy(features))

    def score_features(self, features):
        """Scores features (or logits, for logit detectors): (n, D) array -> NumPy (n,)."""
        self._require_fitted("score_features")
        features = _validation.check_finite_array(features, "features", ndim=2)
        self._check_width(features.shape[1])
        return np.concatenate([
            ops.convert_to_numpy(self.score_tensor(features[start:start + self.score_batch]))
            for start in range(0, features.shape[0], self.score_batch)]).astype(np.float64)

    def _check_width(self, width):
        if self.num_features is not None and width != self.num_features:
            raise ValueError(f"`features` must have {self.num_features} columns (the width seen "
                             f"at fit), got {width}.")

    @staticmethod
    def _dtype(inputs):
        return "float64" if ops.dtype(inputs) == "float64" else "float32"

    # -- persistence -----------------------------------------------------------------------------
    def _get_state(self):
        if not self._fitted:
            return {}
        state = {"num_features": np.asarray(-1 if self.num_features is None else self.num_features)}
        state.update(self._fitted_state())
        return state

    def _set_state(self, arrays):
        width = int(arrays["num_features"])
        self.num_features = None if width < 0 else width
        self._set_fitted_state(arrays)
        self._fitted = True

    def _fitted_state(self):
        return {}

    def _set_fitted_state(self, arrays):
        pass

    @classmethod
    def load(cls, path, model=None):
        """Restores a detector saved by ``save``; pass ``model`` to ``score`` inputs again
        (``score_features`` works without it)."""
        detector = super().load(path)
        if model is not None:
            detector._attach(model)
        return detector
