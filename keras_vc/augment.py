"""Batch transforms for the input pipeline.

``fractional_probability_mix`` is DisMax's fractional probability regularization (FPR) as a
batch transform: it runs on whole batches (eagerly, or inside ``tf.data.Dataset.map`` after
``.batch``) and returns images with soft targets for
:class:`keras_vc.losses.EntropicCrossEntropy`. It is written with TensorFlow ops because
``tf.data`` runs TensorFlow graphs whatever the Keras backend.

FPR mixing is per batch by nature (it pairs examples of the batch it is given). Under a
``tf.distribute`` strategy, mapped before the dataset is distributed it mixes within each global
batch; applied to each replica's batch (``distribute_datasets_from_function``) it mixes within
that replica's rows, so the mosaics then differ from a one-device run's. (Not covered by the
distribution test, which checks the training step, not the input pipeline.)
"""

import numbers

from keras_vc import _validation

MIN_FPR_BATCH_SIZE = 8


def _check_seed(seed):
    if seed is None:
        return None
    if isinstance(seed, numbers.Integral) and not isinstance(seed, bool):
        if seed < 0:
            raise ValueError(f"`seed` must be None, an integer >= 0 or a shape-(2,) integer "
                             f"tensor, got {seed}.")
        return [int(seed), 0]
    import tensorflow as tf

    try:
        seed = tf.convert_to_tensor(seed)
    except (TypeError, ValueError) as error:
        raise ValueError(f"`seed` must be None, an integer >= 0 or a shape-(2,) integer "
                         f"tensor, got {seed!r}.") from error
    if not seed.dtype.is_integer or seed.shape.rank != 1 or seed.shape[0] != 2:
        raise ValueError(f"`seed` must be None, an integer >= 0 or a shape-(2,) integer tensor, "
                         f"got dtype {seed.dtype.name} and shape {seed.shape}.")
    return tf.cast(seed, "int64")


def fractional_probability_mix(images, labels, num_classes, seed=None):
    """DisMax fractional probability regularization (FPR): half of a batch becomes mosaics.

    Mixing is within the batch given (per replica when applied to each replica's batch under
    ``tf.distribute``; see the module docstring).

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

    Example (a different permutation for every batch, reproducible):

    ```python
    train_ds = (tf.data.Dataset.from_tensor_slices((x_train, y_train))
                .shuffle(10_000, seed=0)
                .batch(64, drop_remainder=True)
                .enumerate()
                .map(lambda step, batch: keras_vc.augment.fractional_probability_mix(
                    batch[0], batch[1], num_classes=10, seed=tf.stack([step, 0]))))
    model.fit(train_ds, epochs=...)  # loss: keras_vc.losses.EntropicCrossEntropy(alpha=1.0)
    ```

    Args:
        images: (B, H, W, C) images (channels last), any dtype; B even and >= 8 (the
            half-batch must mix four distinct images), H and W >= 2. B must be known when the
            function is traced: batch with ``drop_remainder=True`` in ``tf.data``.
        labels: integer class ids of shape (B,) or (B, 1), in ``[0, num_classes)``.
        num_classes: number of classes K (>= 2).
        seed: None (a fresh permutation on every call), an integer >= 0 (the same permutation
            on every call: deterministic), or a shape-(2,) integer tensor (a TensorFlow
            stateless seed, e.g. ``(step, 0)`` from ``Dataset.enumerate()`` for a reproducible
            permutation per batch).

    Returns:
        ``(mixed_images, soft_targets)``: the images, same shape and dtype, and float32 targets
        of shape (B, num_classes) whose rows sum to 1.

    Raises:
        ValueError: for a bad shape, batch size, ``num_classes`` or seed, and for labels out of
            range when they are known (eager call). Inside ``tf.data`` the label range is checked
            when the batch runs (``tf.errors.InvalidArgumentError`` naming ``labels``).

    Source: Macedo, Zanchettin & Ludermir, DisMax (arXiv 2205.05874), ``losses/dismax.py``.
    """
    import tensorflow as tf

    num_classes = _validation.check_int(num_classes, "num_classes", minimum=2)
    seed = _check_seed(seed)
    images = tf.convert_to_tensor(images)
    labels = tf.convert_to_tensor(labels)
    shape = images.shape
    if shape.rank != 4:
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
    if labels.shape.rank == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.shape.rank != 1 or labels.shape[0] not in (batch_size, None):
        raise ValueError(
            f"`labels` must hold integer class ids of shape ({batch_size},) or ({batch_size}, 1)"
            f", got shape {labels.shape}."
        )
    if not labels.dtype.is_integer:
        raise ValueError(f"`labels` must hold integer class ids, got dtype {labels.dtype.name}.")
    labels = tf.cast(labels, "int32")
    if tf.executing_eagerly():
        _validation.check_labels(labels.numpy(), num_classes, name="labels")
    else:
        with tf.control_dependencies([
            tf.debugging.assert_greater_equal(labels, 0, message="`labels` must be >= 0"),
            tf.debugging.assert_less(labels, num_classes,
                                     message=f"`labels` must be < num_classes={num_classes}"),
        ]):
            labels = tf.identity(labels)

    if seed is None:
        keys = tf.random.uniform([batch_size])
    else:
        keys = tf.random.stateless_uniform([batch_size], seed=seed)
    permutation = tf.argsort(keys)
    images = tf.gather(images, permutation)
    labels = tf.gather(labels, permutation)

    half = batch_size // 2
    mosaics = images[half:]
    top, bottom = mosaics[:, : height // 2], mosaics[:, height // 2:]
    top_left, top_right = top[:, :, : width // 2], top[:, :, width // 2:]
    bottom_left, bottom_right = bottom[:, :, : width // 2], bottom[:, :, width // 2:]
    mosaics = tf.concat([
        tf.concat([top_left, tf.roll(top_right, 2, axis=0)], axis=2),
        tf.concat([tf.roll(bottom_left, 1, axis=0), tf.roll(bottom_right, 3, axis=0)], axis=2),
    ], axis=1)
    mixed = tf.concat([images[:half], mosaics], axis=0)

    mosaic_labels = labels[half:]
    soft = tf.add_n([tf.one_hot(tf.roll(mosaic_labels, shift, axis=0), num_classes)
                     for shift in range(4)]) * 0.25
    targets = tf.concat([tf.one_hot(labels[:half], num_classes), soft], axis=0)
    return mixed, tf.cast(targets, "float32")

