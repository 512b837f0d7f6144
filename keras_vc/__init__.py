"""keras_vc: Keras 3 classifier heads whose confidence means something.

Submodules: ``layers``, ``losses``, ``metrics``, ``scores``, ``calibration``, ``data``,
``export``.
"""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

__version__ = "0.1.0"

from keras_vc import augment  # noqa: E402
from keras_vc import calibration  # noqa: E402
from keras_vc import callbacks  # noqa: E402
from keras_vc import conformal  # noqa: E402
from keras_vc import data  # noqa: E402
from keras_vc import detectors  # noqa: E402
from keras_vc import dknn  # noqa: E402
from keras_vc import export  # noqa: E402
from keras_vc import layers  # noqa: E402
from keras_vc import losses  # noqa: E402
from keras_vc import metrics  # noqa: E402
from keras_vc import models  # noqa: E402
from keras_vc import robustness  # noqa: E402
from keras_vc import scores  # noqa: E402
from keras_vc import two_stage  # noqa: E402
