"""Streaming statistics for detector fits: per-group means and the pooled within-group scatter in
one float64 pass, a seeded reservoir sample of rows, and the pseudo-inverse square root of a
covariance."""

import numpy as np

EIGENVALUE_FLOOR = 1e-10


class ScatterAccumulator:
    """Per-group counts and means and the pooled within-group scatter, in one pass.

    Shifted sums in float64: every row is centred on a fixed shift of its group (the mean of the
    group's rows in the first batch that holds it), so that ``sum c c^T - n d d^T`` subtracts
    small numbers (post-ReLU features have ``|mean|^2`` far above their variance; raw sums would
    cancel). Memory ``2 G D + D^2`` float64 whatever the number of rows.
    """

    def __init__(self, num_groups, dim):
        self.counts = np.zeros(num_groups, dtype=np.int64)
        self.shifts = np.zeros((num_groups, dim))
        self.offsets = np.zeros((num_groups, dim))
        self.scatter = np.zeros((dim, dim))

    def update(self, rows, groups):
        rows = np.asarray(rows, dtype=np.float64)
        order = np.argsort(groups, kind="stable")
        unique, starts = np.unique(groups[order], return_index=True)
        sums = np.add.reduceat(rows[order], starts, axis=0)
        sizes = np.diff(np.append(starts, rows.shape[0]))
        new = self.counts[unique] == 0
        self.shifts[unique[new]] = sums[new] / sizes[new, None]
        centred = rows - self.shifts[groups]
        self.offsets[unique] += np.add.reduceat(centred[order], starts, axis=0)
        self.counts[unique] += sizes
        self.scatter += centred.T @ centred

    def finish(self):
        """``(counts (G,), means (G, D), within-group scatter (D, D))``; empty groups: mean 0."""
        safe = np.maximum(self.counts, 1)[:, None]
        offset_means = self.offsets / safe
        within = self.scatter - (offset_means * self.counts[:, None]).T @ offset_means
        return self.counts, self.shifts + offset_means, (within + within.T) / 2.0


def total_scatter(counts, means, within):
    """Scatter about the overall mean from the group statistics (no second pass):
    ``S_T = S_W + sum_k n_k (m_k - m)(m_k - m)^T``; returns ``(overall mean, S_T)``."""
    overall = counts @ means / counts.sum()
    between = means - overall
    return overall, within + (between * counts[:, None]).T @ between


def inverse_sqrt(covariance, name):
    """``V diag(lambda^-1/2)`` over the eigenvalues above ``lambda_max * 1e-10``: (D, r).

    ``x -> ||x A||^2`` is then ``x^T pinv(covariance) x`` (a pseudo-inverse, as ``pinvh`` in the
    reference code), symmetric by construction.
    """
    values, vectors = np.linalg.eigh(covariance)
    if values[-1] <= 0:
        raise ValueError(f"The {name} is zero: the training features do not vary.")
    keep = values > values[-1] * EIGENVALUE_FLOOR
    return vectors[:, keep] / np.sqrt(values[keep])


class Reservoir:
    """A uniform sample of at most ``capacity`` rows from a stream (algorithm R), seeded.

    ``capacity=None`` keeps every row.
    """

    def __init__(self, capacity, seed=0):
        self.capacity = capacity
        self.seen = 0
        self._chunks = []
        self._sample = None
        self._rng = np.random.default_rng(seed)

    def add(self, rows):
        rows = np.asarray(rows, dtype=np.float32)
        if self._sample is None:
            room = rows.shape[0] if self.capacity is None else self.capacity - self.seen
            self._chunks.append(rows[:room])
            self.seen += min(room, rows.shape[0])
            rows = rows[room:]
            if not rows.shape[0]:
                return
            self._sample = np.concatenate(self._chunks)
            self._chunks = []
        positions = self.seen + np.arange(rows.shape[0])
        slots = self._rng.integers(0, positions + 1)
        for row, slot in zip(rows[slots < self.capacity], slots[slots < self.capacity]):
            self._sample[slot] = row
        self.seen += rows.shape[0]

    def rows(self):
        """The sample as one float32 array (rows in stream order until the reservoir fills)."""
        if self._sample is not None:
            return self._sample
        return np.concatenate(self._chunks) if self._chunks else np.zeros((0, 0), np.float32)
