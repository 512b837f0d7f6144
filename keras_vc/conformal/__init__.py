"""Split-conformal prediction sets from a classifier's probabilities.

``SplitConformal`` (LAC, APS, RAPS scores) with ``fit(probs_cal, y_cal)`` / ``predict(probs)``,
``tune_raps`` for RAPS's ``k_reg`` and ``lam``, and the scores themselves in ``scores``.
Set metrics (coverage, set size) live in :mod:`keras_vc.metrics`.
"""

from keras_vc.conformal import scores
from keras_vc.conformal.scores import SCORES
from keras_vc.conformal.split import SplitConformal
from keras_vc.conformal.split import conformal_rank
from keras_vc.conformal.split import min_calibration_size
from keras_vc.conformal.split import tune_raps
