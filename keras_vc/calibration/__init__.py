"""Post-hoc calibration of a classifier's probabilities.

``temperature``: one temperature ``T`` for ``softmax(logits / T)`` (``find_temperature`` on
arrays, ``fit_temperature`` on a model and validation data). The calibrator classes share one
interface (``base.Calibrator``: ``fit(logits, labels)``, ``predict_proba(logits)``, ``transform``
to calibrated logits where it exists, keras.ops versions for export, ``save`` / ``load``):
``scaling`` (TemperatureScaling, VectorScaling, MatrixScaling, DirichletCalibration) and
``binning`` (HistogramBinning, IsotonicCalibration).
"""

from keras_vc.calibration.base import Calibrator
from keras_vc.calibration.binning import HistogramBinning
from keras_vc.calibration.binning import IsotonicCalibration
from keras_vc.calibration.scaling import DirichletCalibration
from keras_vc.calibration.scaling import MatrixScaling
from keras_vc.calibration.scaling import TemperatureScaling
from keras_vc.calibration.scaling import VectorScaling
from keras_vc.calibration.temperature import DEFAULT_BOUNDS
from keras_vc.calibration.temperature import OBJECTIVES
from keras_vc.calibration.temperature import TemperatureResult
from keras_vc.calibration.temperature import apply_temperature
from keras_vc.calibration.temperature import find_temperature
from keras_vc.calibration.temperature import find_temperature_layer
from keras_vc.calibration.temperature import fit_temperature
from keras_vc.calibration.temperature import softmax
