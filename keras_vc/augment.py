"""Batch transforms for the input pipeline.

``fractional_probability_mix`` is DisMax's fractional probability regularization (FPR) as a
batch transform: it runs on whole batches and returns images with soft targets for
:class:`keras_vc.losses.EntropicCrossEntropy`. It is written with ``keras.ops`` and needs no
TensorFlow on the JAX or PyTorch backend: call it eagerly on each batch (for example in a
``keras.utils.PyDataset`` or a generator). On the TensorFlow backend it also runs inside
``tf.data.Dataset.map`` after ``.batch`` (``tf.data`` runs TensorFlow graphs, so only the
TensorFlow backend's ops can be traced there).

FPR mixing is per batch by nature: it pairs examples of the batch it is given, whatever the
device layout. Under distribution (``tf.distribute`` or ``keras.distribution``), a transform
applied to the global batch before it is split across replicas mixes within the global batch,
as on one device; applied to each replica's batch (``distribute_datasets_from_function``, or a
per-process input pipeline) it mixes within that replica's rows, so the mosaics differ from a
one-device run's and each replica needs a batch of at least 8 even rows. (Not covered by the
distribution tests, which check the training step, not the input pipeline.)
"""

import numbers
import sys

import keras
from keras import ops

from keras_vc import _validation

MIN_FPR_BATCH_SIZE = 8
_SEED_MESSAGE = "`seed` must be None, an integer >= 0 or a shape-(2,) integer tensor"


def _tf_graph_tensor(value):
    """True for a symbolic TensorFlow tensor (inside ``tf.data.Dataset.map`` or a tf.function)."""
    tf = sys.modules.get("tensorflow")
    return tf is not None and tf.is_tensor(value) and not tf.executing_eagerly()


def _check_seed(seed, backend):
    if seed is None:
        return None
    if isinstance(seed, numbers.Integral) and not isinstance(seed, bool):
        if seed < 0:
            raise ValueError(f"{_SEED_MESSAGE}, got {seed}.")
        return int(seed)
    if backend != "tensorflow":
        raise ValueError(f"`seed` must be None or an integer >= 0 on the {backend!r} backend "
                         f"(a shape-(2,) seed is a TensorFlow stateless seed), got {seed!r}.")
    import tensorflow as tf

    try:
        seed = tf.convert_to_tensor(seed)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{_SEED_MESSAGE}, got {seed!r}.") from error
    if not seed.dtype.is_integer or seed.shape.rank != 1 or seed.shape[0] != 2:
        raise ValueError(f"{_SEED_MESSAGE}, got dtype {seed.dtype.name} and shape {seed.shape}.")
    return tf.cast(seed, "int64")


def _permutation_keys(batch_size, seed, backend):
    """Uniform keys whose argsort is the batch permutation.

    On TensorFlow the keys come from ``tf.random`` directly, so that the transform traces inside
    ``tf.data`` (a ``keras.random`` call without a seed reads a Keras variable); an integer seed
    ``s`` is the stateless seed ``(s, 0)`` there, as in ``keras.random`` with ``seed=s``.
    """
    if backend == "tensorflow":
        import tensorflow as tf

        if seed is None:
            return tf.random.uniform([batch_size])
        if isinstance(seed, int):
            seed = [seed, 0]
        return tf.random.stateless_uniform([batch_size], seed=seed)
    return keras.random.uniform((batch_size,), seed=seed)


def _check_labels_in_graph(labels, num_classes):
    """Label range asserts that run with the batch (TensorFlow graphs: tf.data)."""
    import tensorflow as tf

    with tf.control_dependencies([
        tf.debugging.assert_greater_equal(labels, 0, message="`labels` must be >= 0"),
        tf.debugging.assert_less(labels, num_classes,
                                 message=f"`labels` must be < num_classes={num_classes}"),
    ]):
        return tf.identity(labels)


def fractional_probability_mix(images, labels, num_classes, seed=None):
    """DisMax fractional probability regularization (FPR): half of a batch becomes mosaics.

    Mixing is within the batch given: per replica when applied to each replica's batch under
    distribution (see the module docstring).

    As in the reference (``DisMaxLossSecondPart.preprocess``): the batch (B images) is first
    shuffled by one random permutation; the first half (B/2 images) is kept with one-hot targets;
    in the second half, with the batch index ``i`` taken modulo B/2, each image ``i`` becomes a
    mosaic of four quadrants (rows split at ``H // 2``, columns at ``W // 2``):

    ====================  =============  =========================
    quadrant              source image   rows, columns
    ====================  =============  =========================
    top-left              ``i``          ``[:H//2, :W//2]``
    bottom-left           ``i - 1``      ``[H//2:, :W//2]``
    top-right             ``i - 2``      ``[:H//2, W//2:]``
    bottom-right          ``i - 3``      ``[H//2:, W//2:]``
    ====================  =============  =========================

    with target ``0.25 * (onehot(y_i) + onehot(y_{i-1}) + onehot(y_{i-2}) + onehot(y_{i-3}))``
    (a class present in several quadrants accumulates 0.5, 0.75 or 1). Mosaics wrap around within
    the second half, so an image appears in four mosaics. The reference trains on
    ``(L_CE + alpha * L_FPR) / 2`` with ``L_CE`` the cross-entropy of the first half and
    ``L_FPR = KL(t || P)`` of the mosaics; cross-entropy on the whole batch with soft targets has
    the same gradients when the mosaic rows are weighted by ``alpha``, which
    :class:`keras_vc.losses.EntropicCrossEntropy` does (its ``alpha``). Apply FPR to training
    batches only.

    Example (TensorFlow backend, inside ``tf.data``; a different permutation for every batch,
    reproducible):

    ```python
    train_ds = (tf.data.Dataset.from_tensor_slices((x_train, y_train))
                .shuffle(10_000, seed=0)
                .batch(64, drop_remainder=True)
                .enumerate()
                .map(lambda step, batch: keras_vc.augment.fractional_probability_mix(
                    batch[0], batch[1], num_classes=10, seed=tf.stack([step, 0]))))
    model.fit(train_ds, epochs=...)  # loss: keras_vc.losses.EntropicCrossEntropy(alpha=1.0)
    ```

    On JAX or PyTorch, apply it eagerly to each batch with an integer seed per batch, e.g.
    ``fractional_probability_mix(x_batch, y_batch, 10, seed=epoch * steps + step)`` in a
    ``keras.utils.PyDataset``'s ``__getitem__``.

    Args:
        images: (B, H, W, C) images (channels last), any dtype; B even and >= 8 (the
            half-batch must mix four distinct images), H and W >= 2. B must be known when the
            function is traced: batch with ``drop_remainder=True`` in ``tf.data``. NumPy
            arrays or tensors of the current backend.
        labels: integer class ids of shape (B,) or (B, 1), in ``[0, num_classes)``.
        num_classes: number of classes K (>= 2).
        seed: None (a fresh permutation on every call), an integer >= 0 (the same permutation
            on every call: deterministic; the permutation for a given seed differs between
            backends, whose random generators differ), or, on the TensorFlow backend only, a
            shape-(2,) integer tensor (a TensorFlow stateless seed, e.g. ``(step, 0)`` from
            ``Dataset.enumerate()`` for a reproducible permutation per batch).

    Returns:
        ``(mixed_images, soft_targets)``: tensors of the current backend (TensorFlow tensors
        inside ``tf.data``): the images, same shape and dtype, and float32 targets of shape
        (B, num_classes) whose rows sum to 1.

    Raises:
        ValueError: for a bad shape, batch size, ``num_classes`` or seed, and for labels out of
            range when they are known (eager call). Inside ``tf.data`` the label range is checked
            when the batch runs (``tf.errors.InvalidArgumentError`` naming ``labels``). On JAX or
            PyTorch, a call inside ``tf.data`` (a TensorFlow graph) raises ValueError: those
            backends cannot trace TensorFlow graphs.

    Source: Macedo, Zanchettin & Ludermir, DisMax (arXiv 2205.05874), ``losses/dismax.py``.
    """
    backend = keras.backend.backend()
    graph = _tf_graph_tensor(images) or _tf_graph_tensor(labels)
    if graph and backend != "tensorflow":
        raise ValueError(
            f"fractional_probability_mix runs inside tf.data (a TensorFlow graph) only on the "
            f"TensorFlow backend; on the {backend!r} backend apply it eagerly to each batch "
            "(for example in a keras.utils.PyDataset).")
    num_classes = _validation.check_int(num_classes, "num_classes", minimum=2)
    seed = _check_seed(seed, backend)
    images = ops.convert_to_tensor(images)
    labels = ops.convert_to_tensor(labels)
    try:
        shape = tuple(images.shape)
    except ValueError:  # a TensorFlow tensor of unknown rank
        shape = None
    if shape is None or len(shape) != 4:
        raise ValueError(
            "`images` must be a batch of images of shape (B, H, W, C) with H and W >= 2 "
            f"(fractional probability mixing cuts each image into four quadrants); got shape "
            f"{shape}."
        )
    batch_size, height, width = shape[0], shape[1], shape[2]
    if batch_size is None:
        raise ValueError(
            "The batch size of `images` must be known: batch with `drop_remainder=True` "
            f"before mapping fractional_probability_mix; got shape {shape}."
        )
    if batch_size < MIN_FPR_BATCH_SIZE or batch_size % 2:
        raise ValueError(
            f"The batch size of `images` must be even and >= {MIN_FPR_BATCH_SIZE} (each mosaic "
            f"mixes four images of the second half-batch); got {batch_size}."
        )
    if height is None or width is None or height < 2 or width < 2:
        raise ValueError(
            f"`images` must have height and width >= 2, got shape {shape}."
        )
    label_shape = tuple(labels.shape)
    if len(label_shape) == 2 and label_shape[1] == 1:
        labels = labels[:, 0]
        label_shape = label_shape[:1]
    if len(label_shape) != 1 or label_shape[0] not in (batch_size, None):
        raise ValueError(
            f"`labels` must hold integer class ids of shape ({batch_size},) or ({batch_size}, 1)"
            f", got shape {label_shape}."
        )
    label_dtype = keras.backend.standardize_dtype(labels.dtype)
    if not label_dtype.startswith(("int", "uint")):
        raise ValueError(f"`labels` must hold integer class ids, got dtype {label_dtype}.")
    labels = ops.cast(labels, "int32")
    if graph:
        labels = _check_labels_in_graph(labels, num_classes)
    else:
        _validation.check_labels(ops.convert_to_numpy(labels), num_classes, name="labels")

    permutation = ops.argsort(_permutation_keys(batch_size, seed, backend))
    images = ops.take(images, permutation, axis=0)
    labels = ops.take(labels, permutation, axis=0)

    half = batch_size // 2
    mosaics = images[half:]
    top, bottom = mosaics[:, : height // 2], mosaics[:, height // 2:]
    top_left, top_right = top[:, :, : width // 2], top[:, :, width // 2:]
    bottom_left, bottom_right = bottom[:, :, : width // 2], bottom[:, :, width // 2:]
    mosaics = ops.concatenate([
        ops.concatenate([top_left, ops.roll(top_right, 2, axis=0)], axis=2),
        ops.concatenate([ops.roll(bottom_left, 1, axis=0), ops.roll(bottom_right, 3, axis=0)],
                        axis=2),
    ], axis=1)
    mixed = ops.concatenate([images[:half], mosaics], axis=0)

    mosaic_labels = labels[half:]
    soft = sum(ops.one_hot(ops.roll(mosaic_labels, shift, axis=0), num_classes, dtype="float32")
               for shift in range(4)) * 0.25
    targets = ops.concatenate(
        [ops.one_hot(labels[:half], num_classes, dtype="float32"), soft], axis=0)
    return mixed, targets
