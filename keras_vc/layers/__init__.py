"""Public output layers of keras_vc."""

from keras_vc.layers.distance_logits import DistanceLogits  # noqa: F401
