"""``DistanceLogits``: the IsoMax+ and DisMax output layers (distance-based logits)."""

import math

import keras
from keras import ops

from keras_vc import _validation
from keras_vc.layers.head import ClassifierHead
from keras_vc.losses.entropic_cross_entropy import LOGIT_SCALE_ATTRIBUTE
from keras_vc.losses.entropic_cross_entropy import EntropicCrossEntropy
from keras_vc.losses.entropic_cross_entropy import pairing_message
from keras_vc.ops import distances

MODES = ("dismax", "isomax_plus")
_RECOMMENDED_SCORES = {"dismax": "mmles", "isomax_plus": "max_logit"}


@keras.saving.register_keras_serializable(package="keras_vc")
class DistanceLogits(ClassifierHead):
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

    The layer outputs ``entropic_scale * reference_logits`` in float32, divided by
    ``temperature`` at inference (the head protocol of :class:`keras_vc.layers.ClassifierHead`:
    training outputs are never divided by the temperature).

    **Deviation from the reference.** The authors' code multiplies the logits by the entropic
    scale (10) inside the training loss only, so the softmax of their layer's output at ``T = 1``
    is far from the distribution the loss fits: unit-vector distances lie in [0, 2], so one
    example's reference logits lie within ``2 s`` of each other and its top probability is at
    most ``exp(2 s) / (exp(2 s) + K - 1)``, strongly underconfident unless the learned scale ``s``
    grows large. Here the scale lives in the layer, so that ``softmax(model.predict(x))`` is the
    distribution the training loss fits, and ``temperature`` is a post-hoc correction in the same
    units as a softmax baseline's temperature. Cross-entropy on this output
    (:class:`keras_vc.losses.EntropicCrossEntropy`, default ``entropic_scale=1``) equals the
    reference training loss exactly. ``DistanceLogits(entropic_scale=1.0)`` outputs the
    reference's raw logits; pair it with ``EntropicCrossEntropy(entropic_scale=10.0)`` to get the
    reference's split.

    ``temperature`` is a non-trainable float32 scalar variable, 1.0 until calibrated (e.g. by
    :func:`keras_vc.calibration.fit_temperature`), saved with the model and applied to every
    inference output, including the outputs of an exported model. Prototypes, distance scale and
    temperature are float32 weights read in float32 under mixed precision.

    Distances come from :func:`keras_vc.ops.distances.prototype_distances`, in float32 even
    under mixed precision: all K from one matrix product (no (batch, classes, features) tensor is
    built, so the head scales to tens of thousands of classes), and the nearest prototype's
    distance, which decides the loss and the scores, recomputed by a direct difference (exact to
    about 1e-7 absolute at any distance, where the matrix-product form alone was 23% off at
    distance 1e-3: ``python docs/figures/distance_precision.py``). Features of norm below ``1e-12`` map to the zero vector, at distance 1 from every
    prototype as in the reference, and pass no gradient back (the direction of a zero vector is
    undefined, and the reference's ``1e12`` gradient there overflows float16).

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
        super().__init__(num_classes, **kwargs)
        self.mode = _validation.check_choice(mode, "mode", MODES)
        self.entropic_scale = _validation.check_float(entropic_scale, "entropic_scale",
                                                      minimum=0.0, strict_minimum=True)
        if prototype_initializer is None:
            prototype_initializer = keras.initializers.RandomNormal(mean=0.0, stddev=1.0)
        self.prototype_initializer = keras.initializers.get(prototype_initializer)

    def build(self, input_shape):
        input_shape = self.check_input_shape(input_shape)
        self.prototypes = self.add_float32_weight(
            "prototypes", (self.num_classes, input_shape[-1]), self.prototype_initializer)
        self.distance_scale = self.add_float32_weight(
            "distance_scale", (), keras.initializers.Constant(1.0))
        self.build_temperature()

    def call(self, inputs, training=None):
        features = ops.cast(inputs, "float32")
        distance = distances.prototype_distances(features, self.prototypes)
        scale = ops.abs(self.distance_scale)
        if self.mode == "isomax_plus":
            logits = -scale * distance
        else:
            isometric = scale * distance / math.sqrt(2.0)
            logits = -(isometric + ops.mean(isometric, axis=-1, keepdims=True))
        logits = self.finalize_logits(logits * self.entropic_scale, training)
        # Tells EntropicCrossEntropy, when it is called on these logits directly, that they
        # already carry the entropic scale (a second scale would square it). Tensors that refuse
        # attributes (JAX arrays) skip this; in training, ``check_compiled_loss`` refuses the
        # pairing on every backend.
        try:
            setattr(logits, LOGIT_SCALE_ATTRIBUTE, self.entropic_scale)
        except AttributeError:
            pass
        return logits

    def check_compiled_loss(self, loss):
        """Refuses ``EntropicCrossEntropy(entropic_scale != 1)`` when this layer's own
        ``entropic_scale`` is not 1 either: the softmax would see the scale applied twice.

        Called when the training step is traced, on every backend (see
        :class:`keras_vc.layers.ClassifierHead`).

        Raises:
            ValueError: both scales differ from 1.
        """
        if (isinstance(loss, EntropicCrossEntropy) and loss.entropic_scale != 1.0
                and self.entropic_scale != 1.0):
            raise ValueError(pairing_message(loss.entropic_scale, self.entropic_scale))

    @property
    def recommended_ood_score(self):
        """Name of the OOD score the method's authors use: ``"mmles"`` (DisMax) or
        ``"max_logit"`` (IsoMax+, their "minimum distance score")."""
        return _RECOMMENDED_SCORES[self.mode]

    def score_logits(self, outputs):
        """The reference's raw logits at temperature 1, ``outputs * temperature / entropic_scale``.

        That is what the authors' detection code scores (``detect.py`` reloads the weights with
        the temperature still at 1): MMLES depends on the scale of the logits (its entropy and
        mean-logit parts do), the max logit only up to a positive factor.
        """
        return outputs * (self._temperature_value(outputs) / self.entropic_scale)

    def get_config(self):
        config = super().get_config()
        config.update({
            "mode": self.mode,
            "entropic_scale": self.entropic_scale,
            "prototype_initializer": keras.initializers.serialize(self.prototype_initializer),
        })
        return config
