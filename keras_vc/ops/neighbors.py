"""Exact k-nearest-neighbour search in bounded memory: the one home of neighbour search in
keras_vc (used by :mod:`keras_vc.dknn` and the KNN detector of :mod:`keras_vc.detectors`).

The stored points are split into chunks; for a block of queries, each chunk gives a
(queries, chunk) block of squared Euclidean distances (:mod:`keras_vc.ops.distances`, a matmul,
never a (queries, n, D) tensor), its per-row top-k is taken and merged with the running best by a
top-k over the concatenation. Memory is ``O(query_batch_size * chunk_size + query_batch_size * k)``
besides the points themselves, whatever their number.
"""

import numpy as np
from keras import ops

from keras_vc import _validation
from keras_vc.ops import distances as distances_lib


def chunked_nearest(queries, chunks, k):
    """The ``k`` nearest points of every query over a list of point chunks, with ``keras.ops`` only.

    Works on backend tensors inside a traced graph (the chunk loop is a Python loop, unrolled).

    Args:
        queries: (m, D) tensor.
        chunks: list of (n_j, D) tensors (or arrays), the points in order; together at least
            ``k`` rows.
        k: number of neighbours.

    Returns:
        ``(squared_distances, indices)``: (m, k) float tensor of squared Euclidean distances,
        nearest first, and (m, k) int32 indices into the concatenated points.
    """
    best_negative, best_index, offset = None, None, 0
    for chunk in chunks:
        negative = -distances_lib.pairwise_squared_euclidean(queries, chunk)
        size = int(chunk.shape[0])
        values, index = ops.top_k(negative, min(k, size))
        index = ops.cast(index, "int32") + offset
        if best_negative is not None:
            values = ops.concatenate([best_negative, values], axis=1)
            index = ops.concatenate([best_index, index], axis=1)
            if int(values.shape[1]) > k:
                values, order = ops.top_k(values, k)
                index = ops.take_along_axis(index, ops.cast(order, "int32"), axis=1)
        best_negative, best_index, offset = values, index, offset + size
    return -best_negative, best_index


def nearest_neighbors(queries, points, k, query_batch_size=256, chunk_size=8192):
    """Squared distances and indices of the ``k`` nearest ``points`` of every query, exact.

    Args:
        queries: (m, D) array.
        points: (n, D) array, ``n >= k``.
        k: number of neighbours.
        query_batch_size: queries per distance block.
        chunk_size: points per distance block; memory is ``O(query_batch_size * chunk_size)``.

    Returns:
        ``(squared_distances, indices)``: (m, k) float32 and (m, k) int64 NumPy arrays, nearest
        first. Ties are broken by the order of the top-k selection.

    Raises:
        ValueError: bad sizes, mismatched widths, or ``k`` larger than the number of points.
    """
    k = _validation.check_int(k, "k", minimum=1)
    query_batch_size = _validation.check_int(query_batch_size, "query_batch_size", minimum=1)
    chunk_size = _validation.check_int(chunk_size, "chunk_size", minimum=1)
    queries = np.asarray(queries, dtype=np.float32)
    points = np.asarray(points, dtype=np.float32)
    if queries.ndim != 2 or points.ndim != 2 or queries.shape[1] != points.shape[1]:
        raise ValueError(f"`queries` (m, D) and `points` (n, D) must agree in D; got "
                         f"{queries.shape} and {points.shape}.")
    if k > points.shape[0]:
        raise ValueError(f"`k` ({k}) must not exceed the number of points ({points.shape[0]}).")
    distances = np.empty((queries.shape[0], k), dtype=np.float32)
    indices = np.empty((queries.shape[0], k), dtype=np.int64)
    chunks = [ops.convert_to_tensor(points[offset:offset + chunk_size])
              for offset in range(0, points.shape[0], chunk_size)]
    for start in range(0, queries.shape[0], query_batch_size):
        block = ops.convert_to_tensor(queries[start:start + query_batch_size])
        block_distances, block_indices = chunked_nearest(block, chunks, k)
        stop = start + int(block.shape[0])
        distances[start:stop] = ops.convert_to_numpy(block_distances)
        indices[start:stop] = ops.convert_to_numpy(block_indices)
    return distances, indices


def k_nearest_neighbors(queries, points, k, query_batch_size=256, chunk_size=8192):
    """Indices of the ``k`` nearest ``points`` (squared Euclidean) of every query, exact.

    Args:
        queries: (m, D) array.
        points: (n, D) array, ``n >= k``.
        k: number of neighbours.
        query_batch_size: queries per distance block.
        chunk_size: points per distance block; memory is ``O(query_batch_size * chunk_size)``.

    Returns:
        (m, k) int64 indices into ``points``, nearest first.
    """
    return nearest_neighbors(queries, points, k, query_batch_size, chunk_size)[1]
