"""Low-data subsets: train on a stratified fraction of the training split.

The subset keeps the class proportions (up to rounding) and at least ``min_per_class`` samples of
every class, and is nested: for one seed the 10% subset is contained in the 25% subset, so a
curve over fractions adds data instead of redrawing it.
"""

import dataclasses

import numpy as np

from keras_vc import _validation


def stratified_subset_indices(labels, fraction, seed=0, min_per_class=1):
    """Indices of a seeded, stratified, nested subset of ``labels``.

    Each class ``k`` with ``n_k`` samples contributes ``max(min_per_class, round(fraction * n_k))``
    samples (capped at ``n_k``), taken from the front of a per-class permutation drawn from
    ``seed``: the subsets of one seed are nested across fractions.

    Args:
        labels: integer labels (n,).
        fraction: fraction of each class to keep, in (0, 1].
        seed: non-negative integer.
        min_per_class: minimum samples per class (>= 1).

    Returns:
        Sorted int64 indices into ``labels``.

    Example:
        >>> labels = np.repeat(np.arange(3), 10)
        >>> stratified_subset_indices(labels, 0.2, seed=0).size
        6
    """
    labels = _validation.to_numpy(labels, "labels")
    if labels.ndim != 1 or labels.size == 0:
        raise ValueError(f"`labels` must be a non-empty 1-D array, got shape {labels.shape}.")
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"`labels` must hold integer class ids, got dtype {labels.dtype}.")
    fraction = _validation.check_float(fraction, "fraction", 0.0, 1.0, strict_minimum=True)
    seed = _validation.check_int(seed, "seed", minimum=0)
    min_per_class = _validation.check_int(min_per_class, "min_per_class", minimum=1)
    rng = np.random.default_rng(seed)
    chosen = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        members = members[rng.permutation(members.size)]
        keep = min(members.size, max(min_per_class, int(round(fraction * members.size))))
        chosen.append(members[:keep])
    return np.sort(np.concatenate(chosen)).astype(np.int64)


def subsample_training(split, fraction, seed=0, min_per_class=1):
    """A copy of ``split`` whose training data is a stratified ``fraction`` of the original.

    Validation and test data are unchanged, so models trained on different fractions are
    evaluated (and temperature-scaled) on the same samples.

    Args:
        split: a :class:`keras_vc.data.Split`.
        fraction: fraction of the training split to keep, in (0, 1].
        seed: non-negative integer (the subset of one seed is nested across fractions).
        min_per_class: minimum training samples per class.

    Returns:
        A new :class:`keras_vc.data.Split` named ``"<name>[<percent>%]"``.

    Example:
        >>> from keras_vc.data import load_digits
        >>> subsample_training(load_digits(0), 0.1).sizes()["train"]
        109
    """
    from keras_vc.data.offline import Split

    if not isinstance(split, Split):
        raise ValueError(f"`split` must be a keras_vc.data.Split, got {type(split).__name__}.")
    index = stratified_subset_indices(split.y_train, fraction, seed, min_per_class)
    return dataclasses.replace(
        split, name=f"{split.name}[{100 * fraction:g}%]", x_train=split.x_train[index],
        y_train=split.y_train[index],
    )
