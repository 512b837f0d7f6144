"""The measuring stick: calibration and out-of-distribution metrics.

NumPy functions work on arrays without any model; the classes are streaming Keras metrics for
``model.compile(metrics=[...])``.
"""

from keras_vc.metrics.calibration import accuracy
from keras_vc.metrics.calibration import binned_statistics
from keras_vc.metrics.calibration import brier_score
from keras_vc.metrics.calibration import expected_calibration_error
from keras_vc.metrics.calibration import negative_log_likelihood
from keras_vc.metrics.classwise import classwise_calibration_error
from keras_vc.metrics.ood import aupr_in
from keras_vc.metrics.ood import aupr_out
from keras_vc.metrics.ood import auroc
from keras_vc.metrics.ood import detection_error
from keras_vc.metrics.ood import fpr_at_tpr
from keras_vc.metrics.ood import ood_metrics
from keras_vc.metrics.ood import threshold_at_tpr
from keras_vc.metrics.plots import reliability_diagram
from keras_vc.metrics.selective import augrc
from keras_vc.metrics.selective import aurc
from keras_vc.metrics.selective import risk_coverage_curve
from keras_vc.metrics.sets import ClassConditionalCoverage
from keras_vc.metrics.sets import class_conditional_coverage
from keras_vc.metrics.sets import coverage
from keras_vc.metrics.sets import mean_set_size
from keras_vc.metrics.streaming import BrierScore
from keras_vc.metrics.streaming import ExpectedCalibrationError
