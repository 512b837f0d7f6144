"""Post-hoc calibration of a classifier's probabilities.

``temperature``: one temperature ``T`` for ``softmax(logits / T)`` (``find_temperature`` on
arrays, ``fit_temperature`` on a model and validation data).
"""

from keras_vc.calibration.temperature import DEFAULT_BOUNDS
from keras_vc.calibration.temperature import OBJECTIVES
from keras_vc.calibration.temperature import TemperatureResult
from keras_vc.calibration.temperature import apply_temperature
from keras_vc.calibration.temperature import find_temperature
from keras_vc.calibration.temperature import find_temperature_layer
from keras_vc.calibration.temperature import fit_temperature
from keras_vc.calibration.temperature import softmax
