"""``DistanceLogits``: the IsoMax+ and DisMax output layers (distance-based logits)."""

import math

import keras
import numpy as np
from keras import ops

from keras_vc import _validation
from keras_vc import scores
from keras_vc.ops import distances

MODES = ("dismax", "isomax_plus")
_RECOMMENDED_SCORES = {"dismax": "mmles", "isomax_plus": "max_logit"}


@keras.saving.register_keras_serializable(package="keras_vc")
class DistanceLogits(keras.layers.Layer):
    """Logits from distances to learned class prototypes (IsoMax+ / DisMax).

    Replaces the final ``Dense`` layer of a classifier. With ``u = norm(z)`` the unit feature
    vector, ``q_j = norm(p_j)`` the unit prototype of class ``j`` and ``s = |distance_scale|``
    (learned, initialised to 1):

    * ``mode="isomax_plus"`` (Macedo & Ludermir 2021, arXiv 2105.14399):
      ``reference_logits_j = -s * ||u - q_j||``.
    * ``mode="dismax"`` (Macedo, Zanchettin & Ludermir 2022, arXiv 2205.05874): with
      ``D_j = s * ||u - q_j|| / sqrt(2)``, ``reference_logits_j = -(D_j + mean_k D_k)``. The mean
      term is the same for every class of a sample: it changes neither the argmax nor the softmax,
      only the logit values that the DisMax OOD score (MMLES) reads.

    The layer outputs ``entropic_scale * reference_logits / temperature`` in float32.

    **Deviation from the reference.** The authors' code multiplies the logits by the entropic
    scale (10) inside the training loss only, so the softmax of their layer's output at ``T = 1``
    is far from the distribution the loss fits (expected calibration errors of 0.4-0.8 in our
    pilot). Here the scale lives in the layer, so that ``softmax(model.predict(x))`` is the
    distribution the training loss fits, and ``temperature`` is a post-hoc correction in the same
    units as a softmax baseline's temperature. Cross-entropy on this output
    (:class:`keras_vc.losses.EntropicCrossEntropy`, default ``entropic_scale=1``) equals the
    reference training loss exactly. ``DistanceLogits(entropic_scale=1.0)`` outputs the
    reference's raw logits; pair it with ``EntropicCrossEntropy(entropic_scale=10.0)`` to get the
    reference's split.

    ``temperature`` is a non-trainable scalar variable, 1.0 until calibrated (e.g. by
    :func:`keras_vc.calibration.fit_temperature`), saved with the model and applied to every
    output, including the outputs of an exported model.

    Distances are computed from the matrix product of unit vectors,
    ``sqrt(max(2 - 2 u.q, 0) + 1e-12)`` (:mod:`keras_vc.ops.distances`), in float32 even under
    mixed precision: no (batch, classes, features) tensor is built, so the head scales to tens of
    thousands of classes. The epsilon keeps the gradient finite at zero distance. Features of norm
    exactly 0 (below ``1e-12``) map to the zero vector, at distance ``sqrt(2)`` from every
    prototype, and pass no gradient back: the direction of a zero vector is undefined, and the
    reference's ``1e12`` gradient there overflows float16.

    Args:
        num_classes: number of classes K (>= 2).
        mode: ``"dismax"`` (default) or ``"isomax_plus"``.
        entropic_scale: the constant that multiplies the reference logits (10 in both papers);
            > 0.
        prototype_initializer: initializer of the (K, D) prototypes; default
            ``RandomNormal(0, 1)`` as in the reference (only their directions matter).
        **kwargs: standard layer arguments (``name``, ``dtype``, ...).

    Input shape:
        ``(..., D)`` features (the penultimate layer's output).

    Output shape:
        ``(..., num_classes)`` float32 logits.

    Example:

    ```python
    model = keras.Sequential([
        keras.Input((64,)),
        keras.layers.Dense(128, activation="relu"),
        keras_vc.layers.DistanceLogits(num_classes=10, mode="dismax"),
    ])
    model.compile(optimizer="adam", loss=keras_vc.losses.EntropicCrossEntropy(),
                  metrics=["accuracy"])
    model.fit(x_train, y_train, epochs=10)
    keras_vc.calibration.fit_temperature(model, (x_val, y_val))  # sets the layer's temperature
    ood = model.layers[-1].ood_score(model.predict(x_test))  # MMLES: higher = more in-distribution
    ```
    """

    def __init__(self, num_classes, mode="dismax", entropic_scale=10.0,
                 prototype_initializer=None, **kwargs):
        super().__init__(**kwargs)
        self.num_classes = _validation.check_int(num_classes, "num_classes", minimum=2)
        self.mode = _validation.check_choice(mode, "mode", MODES)
        self.entropic_scale = _validation.check_float(entropic_scale, "entropic_scale",
                                                      minimum=0.0, strict_minimum=True)
        if prototype_initializer is None:
            prototype_initializer = keras.initializers.RandomNormal(mean=0.0, stddev=1.0)
        self.prototype_initializer = keras.initializers.get(prototype_initializer)

    def build(self, input_shape):
        input_shape = tuple(input_shape)
        if len(input_shape) < 2 or input_shape[-1] is None:
            raise ValueError(
                "`DistanceLogits` expects inputs of shape (..., features) with a known number of "
                f"features, got input shape {input_shape}."
            )
        self.prototypes = self.add_weight(
            name="prototypes", shape=(self.num_classes, input_shape[-1]),
            initializer=self.prototype_initializer, trainable=True,
        )
        self.distance_scale = self.add_weight(
            name="distance_scale", shape=(), initializer=keras.initializers.Constant(1.0),
            trainable=True,
        )
        # float32 whatever the policy: the fitted value must not be rounded to float16.
        self.temperature = self.add_weight(
            name="temperature", shape=(), initializer=keras.initializers.Constant(1.0),
            trainable=False, dtype="float32",
        )

    def call(self, inputs):
        features = ops.cast(inputs, "float32")
        distance = distances.prototype_distances(features, ops.cast(self.prototypes, "float32"))
        scale = ops.abs(ops.cast(self.distance_scale, "float32"))
        if self.mode == "isomax_plus":
            logits = -scale * distance
        else:
            isometric = scale * distance / math.sqrt(2.0)
            logits = -(isometric + ops.mean(isometric, axis=-1, keepdims=True))
        logits = logits * (self.entropic_scale / ops.cast(self.temperature, "float32"))
        return ops.cast(logits, "float32")

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)[:-1] + (self.num_classes,)

    def compute_output_spec(self, inputs):
        return keras.KerasTensor(self.compute_output_shape(inputs.shape), dtype="float32")

    @property
    def recommended_ood_score(self):
        """Name of the OOD score the method's authors use: ``"mmles"`` (DisMax) or
        ``"max_logit"`` (IsoMax+, their "minimum distance score")."""
        return _RECOMMENDED_SCORES[self.mode]

    def ood_score(self, outputs):
        """The recommended OOD score of this layer's outputs (higher = more in-distribution).

        The outputs are first mapped back to the reference's raw logits at temperature 1,
        ``outputs * temperature / entropic_scale``, because that is what the authors' detection
        code scores (``detect.py`` reloads the weights with the temperature still at 1): MMLES
        depends on the scale of the logits (its entropy and mean-logit parts do), the max logit
        only up to a positive factor. Then :func:`keras_vc.scores.mmles` (DisMax) or
        :func:`keras_vc.scores.max_logit` (IsoMax+) is applied.

        Args:
            outputs: (n, num_classes) outputs of this layer (e.g. ``model.predict(x)``), NumPy
                array or tensor.

        Returns:
            (n,) scores: NumPy for NumPy input, a tensor otherwise.
        """
        score = scores.get(self.recommended_ood_score)
        if isinstance(outputs, (np.ndarray, list, tuple)):
            outputs = np.asarray(outputs, dtype=np.float32)
            factor = float(ops.convert_to_numpy(self.temperature)) / self.entropic_scale
            return score(outputs * np.float32(factor))
        factor = ops.cast(self.temperature, "float32") / self.entropic_scale
        return score(ops.cast(outputs, "float32") * factor)

    def get_config(self):
        config = super().get_config()
        config.update({
            "num_classes": self.num_classes,
            "mode": self.mode,
            "entropic_scale": self.entropic_scale,
            "prototype_initializer": keras.initializers.serialize(self.prototype_initializer),
        })
        return config
