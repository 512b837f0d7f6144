"""fractional_probability_mix (DisMax FPR) against a hand-built mosaic and target."""

import keras
import numpy as np
import pytest

from backends import tensorflow_only
from keras_vc.augment import fractional_probability_mix

TENSORFLOW = keras.backend.backend() == "tensorflow"


def _np(tensor):
    return np.asarray(keras.ops.convert_to_numpy(tensor))


def indexed_images(batch_size, height, width, channels=2):
    """Image b has pixel values b * 10000 + position: every pixel tells where it came from."""
    position = np.arange(height * width * channels).reshape(height, width, channels)
    return (np.arange(batch_size)[:, None, None, None] * 10000 + position).astype("float32")


def hand_built(images, labels, permutation, num_classes):
    """The reference's mosaic and target, pixel by pixel, for a given batch permutation."""
    images, labels = images[permutation], labels[permutation]
    batch_size, height, width, _ = images.shape
    half = batch_size // 2
    expected = images.copy()
    targets = np.zeros((batch_size, num_classes))
    for i in range(half):
        targets[i, labels[i]] = 1.0
    for i in range(half):
        sources = {"top_left": half + i, "bottom_left": half + (i - 1) % half,
                   "top_right": half + (i - 2) % half, "bottom_right": half + (i - 3) % half}
        for row in range(height):
            for col in range(width):
                quadrant = ("top" if row < height // 2 else "bottom") + (
                    "_left" if col < width // 2 else "_right")
                expected[half + i, row, col] = images[sources[quadrant], row, col]
        for source in sources.values():
            targets[half + i, labels[source]] += 0.25
    return expected, targets


def recover_permutation(mixed):
    """Which input image sits at each position (the top-left pixel is never moved)."""
    return (mixed[:, 0, 0, 0] // 10000).astype(int)


@pytest.mark.parametrize("shape", [(8, 4, 4), (12, 5, 7), (16, 2, 3)])
def test_matches_hand_built_mosaic_and_target(shape):
    batch_size, height, width = shape
    images = indexed_images(batch_size, height, width)
    labels = np.arange(batch_size) % 5
    mixed, targets = fractional_probability_mix(images, labels, num_classes=6, seed=1)
    mixed, targets = _np(mixed), _np(targets)
    permutation = recover_permutation(mixed)
    assert sorted(permutation) == list(range(batch_size)), "the batch must be permuted, not mixed"
    expected_images, expected_targets = hand_built(images, labels, permutation, 6)
    np.testing.assert_array_equal(mixed, expected_images)
    np.testing.assert_allclose(targets, expected_targets, atol=1e-7)
    assert targets.dtype == np.float32
    np.testing.assert_allclose(targets.sum(1), 1.0, atol=1e-6)


def test_repeated_classes_accumulate_and_labels_of_shape_b_1():
    images = indexed_images(8, 4, 4)
    labels = np.array([[3]] * 8)
    _, targets = fractional_probability_mix(images, labels, num_classes=4, seed=0)
    np.testing.assert_allclose(_np(targets), np.eye(4)[[3] * 8])


def test_seed_makes_it_deterministic():
    images, labels = indexed_images(16, 4, 4), np.arange(16) % 3
    first = _np(fractional_probability_mix(images, labels, 3, seed=7)[0])
    again = _np(fractional_probability_mix(images, labels, 3, seed=7)[0])
    other = _np(fractional_probability_mix(images, labels, 3, seed=8)[0])
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)
    unseeded = [recover_permutation(_np(fractional_probability_mix(images, labels, 3)[0]))
                for _ in range(3)]
    assert len({tuple(p) for p in unseeded}) > 1


@tensorflow_only("compares with tf.random.stateless_uniform")
def test_integer_seed_is_the_tensorflow_stateless_seed_s_0():
    import tensorflow as tf

    images, labels = indexed_images(16, 4, 4), np.arange(16) % 3
    first = _np(fractional_probability_mix(images, labels, 3, seed=7)[0])
    pair = _np(fractional_probability_mix(images, labels, 3, seed=tf.constant([7, 0]))[0])
    np.testing.assert_array_equal(first, pair)
    expected = np.argsort(tf.random.stateless_uniform([16], seed=[7, 0]).numpy())
    np.testing.assert_array_equal(recover_permutation(first), expected)


def test_keeps_the_image_dtype():
    images = (indexed_images(8, 2, 2, 1) % 256).astype("uint8")
    mixed, _ = fractional_probability_mix(images, np.zeros(8, "int64"), 2, seed=0)
    assert keras.backend.standardize_dtype(mixed.dtype) == "uint8"


@tensorflow_only("inside a tf.data pipeline")
def test_inside_tf_data_map_after_batch():
    import tensorflow as tf

    images = indexed_images(32, 4, 4)
    labels = (np.arange(32) % 4).astype("int32")

    def dataset():
        return (tf.data.Dataset.from_tensor_slices((images, labels))
                .batch(8, drop_remainder=True)
                .enumerate()
                .map(lambda step, batch: fractional_probability_mix(
                    batch[0], batch[1], 4, seed=tf.stack([step, 0]))))

    first = [(m.numpy(), t.numpy()) for m, t in dataset()]
    second = [(m.numpy(), t.numpy()) for m, t in dataset()]
    assert len(first) == 4
    for batch_index, ((mixed, targets), (again, _)) in enumerate(zip(first, second)):
        np.testing.assert_array_equal(mixed, again)
        permutation = recover_permutation(mixed)
        assert sorted(permutation) == list(range(8 * batch_index, 8 * batch_index + 8))
        expected_images, expected_targets = hand_built(images, labels, permutation, 4)
        np.testing.assert_array_equal(mixed, expected_images)
        np.testing.assert_allclose(targets, expected_targets, atol=1e-7)
    orders = {tuple(recover_permutation(m) % 8) for m, _ in first}
    assert len(orders) > 1, "each batch should get its own permutation"


@tensorflow_only("inside a tf.data pipeline")
def test_out_of_range_labels_fail_inside_tf_data():
    import tensorflow as tf

    dataset = (tf.data.Dataset.from_tensor_slices((indexed_images(8, 4, 4), np.arange(8)))
               .batch(8, drop_remainder=True)
               .map(lambda x, y: fractional_probability_mix(x, y, 5, seed=0)))
    with pytest.raises(tf.errors.InvalidArgumentError, match="labels"):
        list(dataset)


@tensorflow_only("inside a tf.data pipeline")
def test_unknown_batch_size_in_tf_data():
    import tensorflow as tf

    dataset = tf.data.Dataset.from_tensor_slices((indexed_images(8, 4, 4), np.zeros(8, "int32")))
    with pytest.raises(ValueError, match="drop_remainder"):
        dataset.batch(8).map(lambda x, y: fractional_probability_mix(x, y, 5))


@pytest.mark.skipif(TENSORFLOW, reason="the refusal of tf.data on the other backends")
def test_inside_tf_data_on_another_backend_raises_a_clear_error():
    tf = pytest.importorskip("tensorflow")
    dataset = tf.data.Dataset.from_tensor_slices((indexed_images(8, 4, 4), np.zeros(8, "int32")))
    backend = keras.backend.backend()
    with pytest.raises(ValueError, match=f"only on the TensorFlow backend.*{backend}"):
        dataset.batch(8, drop_remainder=True).map(lambda x, y: fractional_probability_mix(x, y, 5))


@pytest.mark.parametrize("batch_size,height,width,match", [
    (6, 4, 4, "even and >= 8"),
    (9, 4, 4, "even and >= 8"),
    (8, 1, 4, "height and width"),
    (8, 4, 1, "height and width"),
])
def test_bad_batch_or_image_size(batch_size, height, width, match):
    with pytest.raises(ValueError, match=match):
        fractional_probability_mix(np.zeros((batch_size, height, width, 1)),
                                   np.zeros(batch_size, "int32"), 3)


def test_inputs_that_are_not_images():
    with pytest.raises(ValueError, match=r"\(B, H, W, C\)"):
        fractional_probability_mix(np.zeros((8, 40, 1)), np.zeros(8, "int32"), 3)
    with pytest.raises(ValueError, match=r"\(B, H, W, C\)"):
        fractional_probability_mix(np.zeros((8, 16)), np.zeros(8, "int32"), 3)


@pytest.mark.parametrize("labels,num_classes,match", [
    (np.array([0, 1, 2, 3, 4, 5, 0, 1]), 5, r"\[0, 4\]"),
    (np.array([0, 1, 2, 3, -1, 0, 0, 1]), 5, r"\[0, 4\]"),
    (np.zeros(8, "float32"), 5, "integer"),
    (np.zeros(7, "int32"), 5, "labels"),
    (np.zeros((8, 5), "int32"), 5, "labels"),
    (np.zeros(8, "int32"), 1, "num_classes"),
])
def test_bad_labels(labels, num_classes, match):
    with pytest.raises(ValueError, match=match):
        fractional_probability_mix(np.zeros((8, 4, 4, 1)), labels, num_classes)


@pytest.mark.parametrize("seed", [-1, 1.5, "0", np.array([1, 2, 3]), np.array([1.0, 2.0])])
def test_bad_seed(seed):
    with pytest.raises(ValueError, match="seed"):
        fractional_probability_mix(np.zeros((8, 4, 4, 1)), np.zeros(8, "int32"), 3, seed=seed)
