"""Keras losses that pair with the keras_vc output layers."""

from keras_vc.losses.entropic_cross_entropy import EntropicCrossEntropy  # noqa: F401
