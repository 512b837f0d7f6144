"""Keras Loss classes that pair with the layers of keras_vc (one class per module)."""

from keras_vc.losses.entropic_cross_entropy import EntropicCrossEntropy
from keras_vc.losses.variational_classification import VariationalClassificationLoss
from keras_vc.losses.soft_nearest_neighbor import REFERENCE_CAP  # noqa: F401
from keras_vc.losses.soft_nearest_neighbor import SoftNearestNeighborLoss  # noqa: F401
from keras_vc.losses.soft_nearest_neighbor import optimized_temperature_loss  # noqa: F401
from keras_vc.losses.soft_nearest_neighbor import soft_nearest_neighbor_loss  # noqa: F401
from keras_vc.losses.soft_nearest_neighbor import temperature_free_soft_nearest_neighbor_loss  # noqa: F401,E501
