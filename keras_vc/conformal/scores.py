"""Conformity scores of split-conformal classification, written once for NumPy and keras.ops.

A score ``s(x, y)`` is higher for labels that conform less; the prediction set is
``{y : s(x, y) <= qhat}``. With ``p`` the (calibrated) probabilities of one input, ``o(y)`` the
1-based rank of ``y`` when ``p`` is sorted in decreasing order (ties broken by the lower class
index), ``rho(y)`` the mass of the labels ranked before ``y`` and ``U ~ Uniform(0, 1)`` one draw
per input:

* ``"lac"`` (Sadinle, Lei & Wasserman, JASA 2019): ``1 - p_y``.
* ``"aps"`` (Romano, Sesia & Candes, NeurIPS 2020): ``rho(y) + p_y``, randomised
  ``rho(y) + U p_y``.
* ``"raps"`` (Angelopoulos, Bates, Malik & Jordan, ICLR 2021): the APS score plus
  ``lam * max(0, o(y) - k_reg)``.

Deviation from the RAPS reference code: its randomised score multiplies the penalty of the
label's own rank by ``U`` as well; we use the paper's formula above. Along the sorted labels the
APS / RAPS scores are non-decreasing, so their sets are prefixes of the sorted labels.
"""

import numpy as np
from keras import ops

from keras_vc.metrics import _binning

SCORES = ("lac", "aps", "raps")


class _NumpyOps(_binning._NumpyOps):
    """The NumPy namespace of :mod:`keras_vc.metrics._binning`, with a stable argsort."""

    @staticmethod
    def argsort(x, axis=-1):
        return np.argsort(x, axis=axis, kind="stable")


_NUMPY_OPS = _NumpyOps()


def label_scores(probs, score, uniform=None, k_reg=0, lam=0.0):
    """Scores of every label: an array or tensor of the shape of ``probs``, (n, K).

    Args:
        probs: (n, K) probabilities, a NumPy array (computed in NumPy) or a backend tensor
            (computed with ``keras.ops``, e.g. inside an exported serving function).
        score: one of ``SCORES``.
        uniform: None for the non-randomised APS / RAPS score, else (n,) draws in [0, 1].
            Ignored by ``"lac"``.
        k_reg: RAPS rank from which the penalty starts (1-based ranks above it are penalised).
        lam: RAPS penalty per rank, ``lambda`` in the paper.

    Returns:
        ``s(x, y)`` for every row ``x`` and label ``y``, in the label order of ``probs``.
    """
    xp = _NUMPY_OPS if isinstance(probs, np.ndarray) else ops
    if score == "lac":
        return 1.0 - probs
    order = xp.argsort(-probs, axis=-1)
    sorted_probs = xp.take_along_axis(probs, order, axis=-1)
    cumulative = xp.cumsum(sorted_probs, axis=-1)
    if uniform is None:
        sorted_scores = cumulative
    else:
        uniform = xp.convert_to_tensor(uniform, dtype=sorted_probs.dtype)
        sorted_scores = cumulative - sorted_probs + xp.expand_dims(uniform, -1) * sorted_probs
    if score == "raps":
        ranks = np.arange(1, probs.shape[-1] + 1)
        penalty = lam * np.maximum(ranks - k_reg, 0).astype(np.float64)
        sorted_scores = sorted_scores + xp.convert_to_tensor(penalty, dtype=sorted_scores.dtype)
    inverse = xp.argsort(order, axis=-1)
    return xp.take_along_axis(sorted_scores, inverse, axis=-1)


def true_label_ranks(probs, labels):
    """1-based rank ``o(x, y)`` of each label when its row is sorted in decreasing order."""
    order = np.argsort(-probs, axis=-1, kind="stable")
    return np.argmax(order == labels[:, None], axis=1) + 1
