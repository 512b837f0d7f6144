"""keras_vc: Keras 3 classifier heads whose confidence means something.

Submodules: ``layers``, ``losses``, ``metrics``, ``scores``, ``calibration``, ``data``,
``export``.

keras_vc never chooses the Keras backend: Keras takes it from ``KERAS_BACKEND`` or
``~/.keras/keras.json`` (TensorFlow when neither says otherwise). The core (layers, losses,
metrics, scores, calibration, models, detectors, conformal) runs on every backend; SavedModel
export, the TFDS loaders and ``keras-vc compare`` need TensorFlow.
"""

__version__ = "0.1.0"

from keras_vc import augment
from keras_vc import calibration
from keras_vc import callbacks
from keras_vc import conformal
from keras_vc import data
from keras_vc import detectors
from keras_vc import dknn
from keras_vc import export
from keras_vc import layers
from keras_vc import losses
from keras_vc import metrics
from keras_vc import models
from keras_vc import robustness
from keras_vc import scores
from keras_vc import two_stage
from keras_vc.evaluation import evaluate
