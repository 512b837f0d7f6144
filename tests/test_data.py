"""Offline datasets, OOD sets and loaders (keras_vc.data)."""

import os

import numpy as np
import pytest

from keras_vc import data
from keras_vc.data import loaders
from keras_vc.data import ood

# ------------------------------------------------------------------------------------------
# Splits and the bundled datasets


def test_stratified_split_is_seeded_disjoint_and_stratified():
    x = np.arange(200, dtype="float32")[:, None]
    y = np.repeat(np.arange(4), 50)
    split = data.stratified_split("toy", x, y, seed=3)
    assert split.sizes() == {"train": 120, "val": 40, "test": 40}
    ids = np.concatenate([split.x_train, split.x_val, split.x_test]).ravel()
    assert sorted(ids.tolist()) == list(range(200))
    for labels in (split.y_train, split.y_val, split.y_test):
        counts = np.bincount(labels, minlength=4)
        assert counts.max() - counts.min() == 0
    again = data.stratified_split("toy", x, y, seed=3)
    np.testing.assert_array_equal(split.x_test, again.x_test)
    assert not np.array_equal(split.x_test, data.stratified_split("toy", x, y, seed=4).x_test)
    assert split.value_range == (0.0, 199.0) and split.kind == "vector"


@pytest.mark.parametrize("kwargs, match", [
    (dict(seed=-1), "seed"), (dict(seed=0, val_fraction=0.0), "val_fraction"),
    (dict(seed=0, val_fraction=0.5, test_fraction=0.5), "val_fraction \\+ test_fraction"),
])
def test_stratified_split_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        data.stratified_split("toy", np.zeros((20, 2)), np.arange(20) % 2, **kwargs)
    with pytest.raises(ValueError, match="samples"):
        data.stratified_split("toy", np.zeros((20, 2)), np.arange(19) % 2, seed=0)


def test_bundled_datasets():
    digits = data.digits_dataset()
    assert digits.x.shape == (1797, 8, 8, 1) and digits.kind == "image"
    assert digits.value_range == (0.0, 1.0) and digits.x.min() == 0 and digits.x.max() == 1
    split = digits.split(0)
    assert split.sizes() == {"train": 1077, "val": 360, "test": 360}
    mnist1d = data.mnist1d_dataset()
    assert mnist1d.x.shape == (5000, 40, 1) and mnist1d.kind == "signal"
    assert mnist1d.value_range == (float(mnist1d.x.min()), float(mnist1d.x.max()))
    assert sorted(np.unique(mnist1d.y).tolist()) == list(range(10))
    assert data.load_mnist1d(1).value_range == mnist1d.value_range  # not seed dependent


def test_dataset_with_a_fixed_test_set_keeps_it():
    rng = np.random.default_rng(0)
    dataset = data.Dataset("fixed", rng.random((50, 3)).astype("float32"), np.arange(50) % 5, 5,
                           (0.0, 1.0), "", rng.random((7, 3)), np.arange(7) % 5)
    split = dataset.split(1)
    assert split.sizes() == {"train": 40, "val": 10, "test": 7}
    np.testing.assert_allclose(split.x_test, dataset.x_test.astype("float32"))


# ------------------------------------------------------------------------------------------
# OOD sets


def test_photo_patches_are_real_photo_crops_scaled_to_the_range():
    patches = data.photo_patches(50, (8, 8, 1), value_range=(0.0, 1.0), seed=0)
    assert patches.shape == (50, 8, 8, 1) and patches.dtype == np.float32
    flat = patches.reshape(50, -1)
    np.testing.assert_allclose(flat.min(axis=1), 0.0, atol=1e-6)
    np.testing.assert_allclose(flat.max(axis=1), 1.0, atol=1e-6)
    assert len({p.tobytes() for p in patches}) == 50  # no duplicates
    np.testing.assert_array_equal(patches, data.photo_patches(50, (8, 8, 1), seed=0))
    assert not np.array_equal(patches, data.photo_patches(50, (8, 8, 1), seed=1))
    colour = data.photo_patches(5, (16, 16, 3), value_range=(-1.0, 2.0), seed=0)
    assert colour.shape == (5, 16, 16, 3) and colour.min() == -1.0 and colour.max() == 2.0
    # Independent check: a (1, 2, 3) patch at block size 2 is the 2x2-block mean of some
    # (2, 4) crop of one of the two photos, min-max scaled.
    from numpy.lib.stride_tricks import sliding_window_view
    from sklearn.datasets import load_sample_images

    one = data.photo_patches(1, (1, 2, 3), seed=5, downscale=(2,))[0]
    found = False
    for photo in load_sample_images().images:
        windows = sliding_window_view(np.asarray(photo, np.float64) / 255, (2, 4, 3))
        blocks = windows.reshape(windows.shape[:2] + (2, 2, 2, 3)).mean(axis=(2, 4))
        low = blocks.min(axis=(2, 3), keepdims=True)
        spread = blocks.max(axis=(2, 3), keepdims=True) - low
        scaled = (blocks - low) / np.maximum(spread, 1e-12)
        found |= bool(np.any(np.all(np.abs(scaled - one[0]) < 1e-5, axis=(2, 3))))
    assert found


@pytest.mark.parametrize("kwargs, match", [
    (dict(num_patches=0), "num_patches"), (dict(image_shape=(8, 8)), "image_shape"),
    (dict(image_shape=(8, 8, 2)), "image_shape"), (dict(value_range=(1.0, 0.0)), "value_range"),
    (dict(image_shape=(500, 500, 1)), "does not fit"), (dict(downscale=()), "downscale"),
])
def test_photo_patches_reject_bad_arguments(kwargs, match):
    arguments = dict(num_patches=3)
    arguments.update(kwargs)
    with pytest.raises(ValueError, match=match):
        data.photo_patches(**arguments)


def test_shuffle_positions_keeps_values_and_moves_channels_together():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(20, 40, 2)).astype("float32")
    x[..., 1] = 10 * x[..., 0]
    shuffled = data.shuffle_positions(x, seed=0)
    assert shuffled.shape == x.shape
    np.testing.assert_array_equal(np.sort(shuffled[..., 0], axis=1), np.sort(x[..., 0], axis=1))
    np.testing.assert_allclose(shuffled[..., 1], 10 * shuffled[..., 0], rtol=1e-6)
    assert np.mean(shuffled != x) > 0.9
    orders = {tuple(np.argsort(np.argsort(s[:, 0]))) for s in shuffled}
    assert len(orders) == 20  # a different permutation per input
    images = rng.random((3, 4, 4, 1)).astype("float32")
    assert sorted(data.shuffle_positions(images)[0].ravel()) == sorted(images[0].ravel())
    with pytest.raises(ValueError, match="batch"):
        data.shuffle_positions(np.zeros(5))
    with pytest.raises(ValueError, match="seed"):
        data.shuffle_positions(x, seed=-2)


def test_open_set_split_holds_out_the_last_classes():
    split = data.load_digits(0)
    open_set = data.open_set_split(split)
    known = open_set.split
    assert open_set.num_known == 6 and known.num_classes == 6
    for labels in (known.y_train, known.y_val, known.y_test):
        assert set(labels.tolist()) == set(range(6))
    assert set(open_set.y_unknown.tolist()) == {6, 7, 8, 9}
    assert len(open_set.y_unknown) + len(known.y_test) == len(split.y_test)
    assert known.value_range == split.value_range
    assert data.open_set_split(split, num_known=3).split.num_classes == 3
    with pytest.raises(ValueError, match="num_known"):
        data.open_set_split(split, num_known=10)
    with pytest.raises(ValueError, match="num_known"):
        data.open_set_split(split, num_known=1)
    with pytest.raises(ValueError, match="split"):
        data.open_set_split("digits")
    tiny = data.stratified_split("two", np.zeros((20, 2)), np.arange(20) % 2, seed=0)
    with pytest.raises(ValueError, match="at least 3 classes"):
        data.open_set_split(tiny)
    assert ood.default_num_known(10) == 6 and ood.default_num_known(3) == 2


# ------------------------------------------------------------------------------------------
# Loaders


def test_load_dataset_resolves_specs_and_rejects_unknown_ones():
    assert data.load_dataset("digits").name == "digits"
    for bad in ("nope", "tfds:", "folder:", ""):
        with pytest.raises(data.DatasetError, match="dataset"):
            data.load_dataset(bad)
        with pytest.raises(data.DatasetError):
            loaders.check_spec(bad)
    assert loaders.check_spec("tfds:mnist") == "tfds:mnist"


def _write_image(path, array):
    from PIL import Image

    Image.fromarray(array).save(path)


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for label in ("cat", "dog", "emu"):
        os.makedirs(root / label)
        for i in range(5):
            _write_image(root / label / f"{i}.png", rng.integers(0, 256, (6, 9, 3), np.uint8))
    return root


def test_load_folder_reads_class_folders(image_folder):
    dataset = data.load_folder(str(image_folder), image_size=(4, 4))
    assert dataset.name == f"folder:{image_folder.name}"
    assert dataset.x.shape == (15, 4, 4, 3) and dataset.num_classes == 3
    assert np.bincount(dataset.y).tolist() == [5, 5, 5]  # cat, dog, emu in sorted order
    assert 0.0 <= dataset.x.min() and dataset.x.max() <= 1.0
    grey = data.load_dataset(f"folder:{image_folder}")
    assert grey.x.shape == (15, 32, 32, 3)
    assert data.load_folder(image_folder, (4, 4), "grayscale").x.shape == (15, 4, 4, 1)


def test_load_folder_fails_clearly(tmp_path, image_folder):
    with pytest.raises(data.DatasetError, match="does not exist"):
        data.load_folder(str(tmp_path / "missing"))
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(data.DatasetError, match="not a directory"):
        data.load_folder(str(tmp_path / "file.txt"))
    one_class = tmp_path / "one"
    os.makedirs(one_class / "only")
    with pytest.raises(data.DatasetError, match="at least 2"):
        data.load_folder(str(one_class))
    empty = tmp_path / "empty"
    os.makedirs(empty / "a")
    os.makedirs(empty / "b")
    with pytest.raises(data.DatasetError, match="could not be read|no readable"):
        data.load_folder(str(empty))
    broken = tmp_path / "broken"
    for label in ("a", "b"):
        os.makedirs(broken / label)
        for i in range(5):
            (broken / label / f"{i}.png").write_bytes(b"not an image")
    with pytest.raises(data.DatasetError, match="could not be read"):
        data.load_folder(str(broken))
    few = tmp_path / "few"
    for label, count in (("a", 5), ("b", 2)):
        os.makedirs(few / label)
        for i in range(count):
            _write_image(few / label / f"{i}.png", np.zeros((3, 3, 3), np.uint8))
    with pytest.raises(data.DatasetError, match="at least 5 images"):
        data.load_folder(str(few))
    with pytest.raises(ValueError, match="color_mode"):
        data.load_folder(str(image_folder), color_mode="cmyk")


@pytest.fixture(scope="module")
def tiny_tfds(tmp_path_factory):
    import tensorflow_datasets as tfds

    class KerasVcTinyImages(tfds.core.GeneratorBasedBuilder):
        """A 3-class dataset of random 6x6 images, prepared locally (no network)."""

        VERSION = tfds.core.Version("1.0.0")

        def _info(self):
            return tfds.core.DatasetInfo(
                builder=self,
                features=tfds.features.FeaturesDict({
                    "image": tfds.features.Image(shape=(6, 6, 1)),
                    "label": tfds.features.ClassLabel(num_classes=3)}),
                supervised_keys=("image", "label"))

        def _split_generators(self, dl_manager):
            return {"train": self._generate_examples(0, 30),
                    "test": self._generate_examples(1, 12)}

        def _generate_examples(self, seed, n):
            rng = np.random.default_rng(seed)
            for i in range(n):
                yield i, {"image": rng.integers(0, 256, (6, 6, 1), dtype=np.uint8),
                          "label": i % 3}

    data_dir = str(tmp_path_factory.mktemp("tfds"))
    return KerasVcTinyImages, data_dir


def test_load_tfds_refuses_unprepared_data_then_loads_it_once_prepared(tiny_tfds):
    builder_class, data_dir = tiny_tfds
    name = builder_class.name
    with pytest.raises(data.DatasetError, match="not prepared.*--download"):
        data.load_tfds(name, data_dir=data_dir)
    builder_class(data_dir=data_dir).download_and_prepare()
    dataset = data.load_dataset(f"tfds:{name}", data_dir=data_dir)
    assert dataset.name == f"tfds:{name}" and dataset.num_classes == 3
    assert dataset.x.shape == (30, 6, 6, 1) and dataset.x_test.shape == (12, 6, 6, 1)
    assert dataset.value_range == (0.0, 1.0) and dataset.x.max() <= 1.0
    assert dataset.split(0).sizes() == {"train": 24, "val": 6, "test": 12}


def test_load_tfds_rejects_unknown_names():
    with pytest.raises(data.DatasetError, match="no dataset named"):
        data.load_tfds("keras_vc_no_such_dataset")
    with pytest.raises(data.DatasetError, match="name"):
        data.load_tfds("")
    with pytest.raises(data.DatasetError, match="download"):
        data.load_tfds("mnist", download="yes")


@pytest.fixture
def jax_backend(monkeypatch):
    """Keras reports the JAX backend: what a user on JAX sees from the TensorFlow-only loaders."""
    import keras

    monkeypatch.setattr(keras.backend, "backend", lambda: "jax")


def test_tfds_loaders_refuse_other_backends_and_name_the_alternative(jax_backend, monkeypatch):
    from keras_vc.data import tutorial

    for load in (lambda: data.load_tfds("mnist"), lambda: data.load_dataset("tfds:mnist")):
        with pytest.raises(data.DatasetError,
                           match="needs the TensorFlow backend.*'jax' backend.*folder:PATH"):
            load()
    monkeypatch.delenv(tutorial.OFFLINE_ENV, raising=False)
    with pytest.raises(ValueError, match="'fashion_mnist' needs the TensorFlow backend.*'jax' "
                                         "backend.*offline=True"):
        tutorial.load_tutorial_data("fashion_mnist", offline=False)
    fallback = tutorial.load_tutorial_data("auto", offline=False, max_train=50, max_eval=20)
    assert fallback.name == tutorial.OFFLINE_DATASET and "'jax' backend" in fallback.source
