"""Losses that pair with keras_vc's layers and models."""

from keras_vc.losses.soft_nearest_neighbor import SoftNearestNeighborLoss  # noqa: F401
from keras_vc.losses.soft_nearest_neighbor import optimized_temperature_loss  # noqa: F401
from keras_vc.losses.soft_nearest_neighbor import soft_nearest_neighbor_loss  # noqa: F401
from keras_vc.losses.soft_nearest_neighbor import temperature_free_soft_nearest_neighbor_loss  # noqa: F401,E501
