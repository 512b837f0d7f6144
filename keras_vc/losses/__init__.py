"""Keras Loss classes that pair with the layers of keras_vc (one class per module)."""

from keras_vc.losses.entropic_cross_entropy import EntropicCrossEntropy
from keras_vc.losses.variational_classification import VariationalClassificationLoss
