"""Metrics of prediction sets (conformal prediction): coverage and set size.

A set is a row of a (m, K) boolean mask, ``True`` where the label is in the set (the output of
:meth:`keras_vc.conformal.SplitConformal.predict`).
"""

import typing

import numpy as np

from keras_vc import _validation


class ClassConditionalCoverage(typing.NamedTuple):
    """Coverage per true class and the worst class.

    Attributes:
        per_class: (K,) coverage among the points of each class (NaN for absent classes).
        worst: the lowest per-class coverage.
        worst_class: the class with that coverage.
    """

    per_class: np.ndarray
    worst: float
    worst_class: int


def _check_sets(sets, name="sets"):
    array = _validation.to_numpy(sets, name)
    if array.ndim != 2 or array.size == 0:
        raise ValueError(f"`{name}` must be a non-empty (m, K) mask, got shape {array.shape}.")
    if array.dtype != np.bool_:
        if not np.issubdtype(array.dtype, np.number) or not np.all((array == 0) | (array == 1)):
            raise ValueError(f"`{name}` must be a boolean (or 0/1) mask, got dtype {array.dtype}.")
        array = array.astype(bool)
    return array


def _checked(labels, sets):
    sets = _check_sets(sets)
    labels = _validation.check_labels(labels, sets.shape[1], num_samples=sets.shape[0])
    return labels, sets


def coverage(labels, sets):
    """Fraction of points whose label is in its set.

    Args:
        labels: (m,) integer labels.
        sets: (m, K) boolean mask.

    Returns:
        A float in [0, 1].
    """
    labels, sets = _checked(labels, sets)
    return float(np.mean(sets[np.arange(labels.size), labels]))


def mean_set_size(sets):
    """Mean number of labels per set."""
    sets = _check_sets(sets)
    return float(np.mean(sets.sum(axis=1)))


def class_conditional_coverage(labels, sets):
    """Coverage among the points of each true class (Ding et al., NeurIPS 2023).

    Conformal sets guarantee marginal coverage only; a class can be covered far less often.

    Args:
        labels: (m,) integer labels.
        sets: (m, K) boolean mask.

    Returns:
        A :class:`ClassConditionalCoverage` (``per_class``, ``worst``, ``worst_class``); classes
        without test points are NaN and skipped by ``worst``.
    """
    labels, sets = _checked(labels, sets)
    num_classes = sets.shape[1]
    covered = sets[np.arange(labels.size), labels].astype(np.float64)
    counts = np.bincount(labels, minlength=num_classes)
    hits = np.bincount(labels, weights=covered, minlength=num_classes)
    with np.errstate(invalid="ignore", divide="ignore"):
        per_class = np.where(counts > 0, hits / np.maximum(counts, 1), np.nan)
    worst_class = int(np.nanargmin(per_class))
    return ClassConditionalCoverage(per_class, float(per_class[worst_class]), worst_class)
