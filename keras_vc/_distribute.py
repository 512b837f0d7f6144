"""Replica-aware helpers: batch-level quantities that do not depend on the number of replicas.

Under ``tf.distribute`` (``MirroredStrategy`` and the like) every replica runs the training
step on its own slice of the global batch: replica ``r`` gets rows ``[offset_r, offset_r + b_r)``
and the gradients are summed across replicas. Two things then differ from one device unless they
are written for it:

* a batch-level term (the soft nearest neighbor loss compares every pair of rows) sees only the
  replica's rows: :func:`all_gather` gives it the global batch;
* noise drawn from a ``keras.random.SeedGenerator`` whose state is the same on every replica
  is the same on every replica, so replica r's rows get replica 0's noise:
  :func:`standard_normal_rows` draws the *global* batch's noise on every replica (the same draw
  one device makes) and keeps the replica's own rows.

Outside a strategy, with one replica, and on the JAX / PyTorch backends (whose data parallelism
works on the global batch) every helper is the identity of the single-device computation, at no
cost. ``keras.distribution.DataParallel`` on JAX compiles one program over the global batch, so
batch-level terms and noise are those of one device there without these helpers
(tests/test_distribution.py checks one step of every head on both backends).
"""

import keras
from keras import ops

from keras_vc.ops import gaussian


def replica_context():
    """The TensorFlow replica context of a step running on more than one replica, else None."""
    if keras.backend.backend() != "tensorflow":
        return None
    import tensorflow as tf

    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync <= 1:
        return None
    return context


def num_replicas():
    """Number of replicas the current step runs on (1 outside a multi-replica step)."""
    context = replica_context()
    return 1 if context is None else context.num_replicas_in_sync


def all_gather(value):
    """``value`` of every replica concatenated along axis 0 (replica order), else ``value``.

    The gradient flows back to each replica's own rows: TensorFlow's ``all_gather`` sums the
    upstream gradients of all replicas and hands each replica its slice. A replica's loss built
    on the gathered batch therefore gets the *sum* of all replicas' gradients for its rows; a
    global term that every replica computes identically must be divided by :func:`num_replicas`
    (as Keras divides compiled losses) for the summed update to equal one device's.
    """
    context = replica_context()
    if context is None:
        return value
    return context.all_gather(value, axis=0)


def standard_normal_rows(shape, seed, axis=0, dtype="float32"):
    """Standard normal noise of ``shape`` whose rows along ``axis`` are the global batch's.

    On one device this is ``keras_vc.ops.gaussian.standard_normal(shape, seed)``. On replica
    ``r`` of a multi-replica step, the global batch size and the replica's offset are gathered
    (one small collective), the noise of the global batch is drawn with the same generator state
    every replica holds, and rows ``[offset_r, offset_r + b_r)`` are returned: the noise each
    example gets does not depend on the number of replicas, uneven last batches included.

    Args:
        shape: the local shape (ints or scalar tensors); ``shape[axis]`` is the local batch.
        seed: a ``keras.random.SeedGenerator`` (or what ``standard_normal`` accepts).
        axis: the batch axis of ``shape``.
        dtype: floating dtype of the draws.

    Returns:
        A tensor of ``shape``.
    """
    context = replica_context()
    if context is None:
        return gaussian.standard_normal(shape, seed, dtype=dtype)
    import tensorflow as tf

    static = [d if isinstance(d, int) else None for d in shape]
    shape = list(shape)
    local = tf.cast(shape[axis], tf.int32)
    sizes = context.all_gather(tf.reshape(local, (1,)), axis=0)
    offset = tf.reduce_sum(sizes[:context.replica_id_in_sync_group])
    shape[axis] = tf.reduce_sum(sizes)
    noise = gaussian.standard_normal(tf.stack([tf.cast(d, tf.int32) for d in shape]), seed,
                                     dtype=dtype)
    begin = [0] * len(shape)
    begin[axis] = offset
    size = [-1] * len(shape)
    size[axis] = local
    rows = tf.slice(noise, tf.stack(begin), tf.stack(size))
    rows.set_shape(static)
    return ops.convert_to_tensor(rows)
