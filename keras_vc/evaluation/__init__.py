"""Evaluating a trained classifier without retraining it (``keras_vc.evaluate``).

* :mod:`~keras_vc.evaluation.inputs`: the model (a ``.keras`` path) and the data arguments
  (arrays, ``.npz``, ``folder:PATH``, ``tfds:NAME``) as checked NumPy arrays.
* :mod:`~keras_vc.evaluation.figures`: calibration, temperature, OOD and conformal figures.
* :mod:`~keras_vc.evaluation.report`: the terminal / Markdown tables, JSON and PNG files.
* :mod:`~keras_vc.evaluation.api`: :func:`evaluate`, which ties them together.
"""

from keras_vc.evaluation.api import evaluate
from keras_vc.evaluation.inputs import load_data
from keras_vc.evaluation.inputs import load_model
from keras_vc.evaluation.report import format_markdown
