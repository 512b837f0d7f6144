"""The TST classification head: an MLP bottleneck trained on top of a frozen feature extractor."""

import keras

from keras_vc import _validation
from keras_vc.layers.head import ClassifierHead


@keras.saving.register_keras_serializable(package="keras_vc")
class BottleneckHead(ClassifierHead):
    """MLP bottleneck head of Two-Stage Training (TST): ``D -> 3Z -> ReLU -> Z -> K`` logits.

    The deterministic head of Jordahn & Olmos, "Decoupling Feature Extraction and
    Classification Layers for Calibrated Neural Networks" (ICML 2024, arXiv 2405.01196; reference
    code ``ClassYEncoders.py`` ``WRN2810Head`` and ``LabelDecoders.py``)::

        z      = W2 relu(W1 h + b1) + b2      (no activation on z)
        logits = (W3 z + b3) / temperature

    It is trained from scratch with cross-entropy on the features ``h`` of a frozen network (see
    :func:`keras_vc.two_stage.retrain_head`), but it is an ordinary layer and can also be trained
    end to end (the paper's "ETE-TST" ablation).

    Beyond the reference: a non-trainable scalar ``temperature`` (1.0 until calibrated, see
    :func:`keras_vc.calibration.fit_temperature`) divides the inference logits (never the
    training ones: the head protocol of :class:`keras_vc.layers.ClassifierHead`), and the logits
    are float32 under mixed precision.

    Args:
        num_classes: number of classes ``K`` (>= 2).
        latent_dim: width ``Z`` of the bottleneck (>= 1); the reference uses 128 for CIFAR-10.
        hidden_units: width of the hidden ReLU layer; ``None`` means ``3 * latent_dim`` as in
            the reference.
        **kwargs: standard layer arguments (``name``, ``dtype``, ...).

    Input shape:
        ``(batch, D)`` features.

    Output shape:
        ``(batch, num_classes)`` float32 logits.

    Example::

        head = keras_vc.layers.BottleneckHead(num_classes=10, latent_dim=128)
        outputs = head(features)   # (batch, 10) float32 logits
    """

    def __init__(self, num_classes, latent_dim, hidden_units=None, **kwargs):
        super().__init__(num_classes, **kwargs)
        self.latent_dim = _validation.check_int(latent_dim, "latent_dim", minimum=1)
        if hidden_units is not None:
            hidden_units = _validation.check_int(hidden_units, "hidden_units", minimum=1)
        self.hidden_units = hidden_units

    def build(self, input_shape):
        input_shape = self.check_input_shape(input_shape)
        hidden_units = self.hidden_units or 3 * self.latent_dim
        self.hidden = keras.layers.Dense(hidden_units, activation="relu", name="hidden",
                                         dtype=self.dtype_policy)
        self.latent = keras.layers.Dense(self.latent_dim, name="latent", dtype=self.dtype_policy)
        self.classifier = keras.layers.Dense(self.num_classes, name="classifier",
                                             dtype=self.dtype_policy)
        self.hidden.build(input_shape)
        self.latent.build(input_shape[:-1] + (hidden_units,))
        self.classifier.build(input_shape[:-1] + (self.latent_dim,))
        self.build_temperature()

    def call(self, inputs, training=None):
        logits = self.classifier(self.latent(self.hidden(inputs)))
        return self.finalize_logits(logits, training)

    def get_config(self):
        return {**super().get_config(), "latent_dim": self.latent_dim,
                "hidden_units": self.hidden_units}
