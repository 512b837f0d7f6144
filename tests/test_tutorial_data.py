"""keras_vc.data.tutorial: the tutorials' data, offline fallback and TFDS path, without network.

Nothing here downloads: the TFDS path runs on ``tfds.testing.mock_data`` with the connectivity
check patched, and every fallback path is checked to return before TFDS could try a download.
"""

import socket

import numpy as np
import pytest

from keras_vc.data import tutorial

OFFLINE_SHAPE = (8, 8, 1)


@pytest.fixture
def no_network(monkeypatch):
    """Every connection attempt fails at once, and records the host it was made to."""
    attempts = []

    def refuse(address, timeout=None, *args, **kwargs):
        attempts.append((address, timeout))
        raise OSError("network is unreachable")

    monkeypatch.setattr(socket, "create_connection", refuse)
    return attempts


@pytest.fixture
def network(monkeypatch):
    """Every connection attempt succeeds (nothing is actually opened)."""
    attempts = []

    class _Connection:
        def close(self):
            pass

    def accept(address, timeout=None, *args, **kwargs):
        attempts.append((address, timeout))
        return _Connection()

    monkeypatch.setattr(socket, "create_connection", accept)
    return attempts


@pytest.fixture
def no_download(monkeypatch):
    """Fails the test if anything asks TFDS to download."""
    import tensorflow_datasets as tfds

    def forbidden(self, *args, **kwargs):
        raise AssertionError(f"download_and_prepare({self.name}) was called")

    monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare", forbidden)


def _check_arrays(data, shape, num_classes):
    parts = {"train": (data.x_train, data.y_train), "val": (data.x_val, data.y_val),
             "test": (data.x_test, data.y_test)}
    for name, (x, y) in parts.items():
        assert x.dtype == np.float32 and y.dtype == np.int64, name
        assert x.shape[1:] == shape and x.shape[0] == y.shape[0] > 0, name
        assert 0.0 <= x.min() and x.max() <= 1.0, name
        assert 0 <= y.min() and y.max() < num_classes, name
    assert data.x_ood.dtype == np.float32 and data.x_ood.shape[1:] == shape
    assert 0.0 <= data.x_ood.min() and data.x_ood.max() <= 1.0
    assert data.input_shape == shape
    assert len(data.class_names) == data.num_classes == num_classes


def test_environment_variable_forces_the_offline_data_without_touching_tfds(monkeypatch):
    monkeypatch.setenv(tutorial.OFFLINE_ENV, "1")
    monkeypatch.setattr(tutorial, "_import_tfds",
                        lambda: pytest.fail("TFDS was imported in offline mode"))
    data = tutorial.load_tutorial_data()
    assert (data.name, data.ood_name, data.offline) == ("digits", "photo_patches", True)
    assert tutorial.OFFLINE_ENV in data.fallback_reason
    assert data.source.startswith("OFFLINE FALLBACK") and tutorial.OFFLINE_ENV in data.source
    _check_arrays(data, OFFLINE_SHAPE, 10)
    # The digits keep their 60 / 20 / 20 split; the OOD set is as large as the test set.
    assert data.sizes() == {"train": 1077, "val": 360, "test": 360, "ood": 360}
    # The photo patches are not digits: no patch equals a digit image.
    assert not np.any(np.all(np.isclose(data.x_ood[:, None], data.x_test[None, :50]),
                             axis=(2, 3, 4)))


@pytest.mark.parametrize("value, forced", [("1", True), ("true", True), ("YES", True),
                                           ("0", False), ("", False), ("no", False)])
def test_offline_requested_reads_the_environment(monkeypatch, value, forced):
    monkeypatch.setenv(tutorial.OFFLINE_ENV, value)
    assert tutorial.offline_requested() is forced


def test_offline_argument_overrides_the_environment(monkeypatch):
    monkeypatch.delenv(tutorial.OFFLINE_ENV, raising=False)
    monkeypatch.setattr(tutorial, "_import_tfds",
                        lambda: pytest.fail("TFDS was imported with offline=True"))
    data = tutorial.load_tutorial_data("fashion_mnist", offline=True)
    assert data.offline and data.fallback_reason == "offline=True was passed"


def test_asking_for_digits_is_not_a_fallback(monkeypatch):
    monkeypatch.setenv(tutorial.OFFLINE_ENV, "0")
    data = tutorial.load_tutorial_data("digits")
    assert data.offline and data.fallback_reason is None
    assert not data.source.startswith("OFFLINE FALLBACK")
    assert "digits" in data.source and "photograph" in data.source


def test_offline_data_is_seeded_and_capped(monkeypatch):
    monkeypatch.setenv(tutorial.OFFLINE_ENV, "1")
    first = tutorial.load_tutorial_data(seed=3, max_train=100, max_eval=40)
    again = tutorial.load_tutorial_data(seed=3, max_train=100, max_eval=40)
    other = tutorial.load_tutorial_data(seed=4, max_train=100, max_eval=40)
    assert first.sizes() == {"train": 100, "val": 40, "test": 40, "ood": 40}
    for name in ("x_train", "y_train", "x_val", "x_test", "x_ood"):
        np.testing.assert_array_equal(getattr(first, name), getattr(again, name))
    assert not np.array_equal(first.x_train, other.x_train)
    assert not np.array_equal(first.x_ood, other.x_ood)


def test_display_names_the_source(monkeypatch):
    monkeypatch.setenv(tutorial.OFFLINE_ENV, "1")
    data = tutorial.load_tutorial_data(max_eval=10)
    assert data.source in repr(data) and "test 10" in repr(data)
    assert data.source in data._repr_markdown_()
    assert len(repr(data)) < 600  # no arrays printed


def test_unreachable_download_host_falls_back_fast(monkeypatch, tmp_path, no_network,
                                                   no_download):
    monkeypatch.delenv(tutorial.OFFLINE_ENV, raising=False)
    data = tutorial.load_tutorial_data("mnist", data_dir=tmp_path, timeout=0.5)
    assert data.offline and data.name == "digits"
    assert "'mnist' is not prepared" in data.fallback_reason
    assert "storage.googleapis.com:443" in data.fallback_reason
    assert data.fallback_reason in data.source
    assert no_network and all(timeout == 0.5 for _, timeout in no_network)


def test_failed_download_falls_back(monkeypatch, tmp_path, network):
    import tensorflow_datasets as tfds

    def broken(self, *args, **kwargs):
        raise ConnectionError("HTTP 503 from the mirror")

    monkeypatch.delenv(tutorial.OFFLINE_ENV, raising=False)
    monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare", broken)
    data = tutorial.load_tutorial_data("fashion_mnist", data_dir=tmp_path)
    assert data.offline
    assert data.fallback_reason == ("downloading TFDS 'fashion_mnist' failed "
                                    "(HTTP 503 from the mirror)")
    # Both download hosts were checked before the download was tried.
    hosts = {address[0] for address, _ in network}
    assert hosts == {"fashion-mnist.s3-website.eu-central-1.amazonaws.com",
                     "storage.googleapis.com"}


def test_tfds_path_reads_train_validation_test_and_ood(monkeypatch, tmp_path, network):
    import tensorflow_datasets as tfds

    monkeypatch.delenv(tutorial.OFFLINE_ENV, raising=False)
    with tfds.testing.mock_data(num_examples=50):
        data = tutorial.load_tutorial_data("fashion_mnist", data_dir=tmp_path, seed=1,
                                           validation_fraction=0.2, max_eval=30)
    assert not data.offline and data.fallback_reason is None
    assert (data.name, data.ood_name) == ("fashion_mnist", "mnist")
    assert "fashion_mnist" in data.source and "mnist" in data.source
    assert "TensorFlow Datasets" in data.source
    _check_arrays(data, (28, 28, 1), 10)
    assert data.class_names[0] == "T-shirt/top"
    # 50 mock training examples: 10 for validation, 40 for training; test and OOD capped at 30.
    assert data.sizes() == {"train": 40, "val": 10, "test": 30, "ood": 30}


def test_prepared_datasets_need_no_network(monkeypatch, tmp_path, no_network, no_download):
    import tensorflow_datasets as tfds

    monkeypatch.delenv(tutorial.OFFLINE_ENV, raising=False)
    monkeypatch.setattr(tfds.core.DatasetBuilder, "is_prepared", lambda self: True)
    with tfds.testing.mock_data(num_examples=20):
        data = tutorial.load_tutorial_data("mnist", data_dir=tmp_path)
    assert not data.offline and data.ood_name == "fashion_mnist"
    assert not no_network  # no connection was even attempted


def test_auto_picks_cifar10_with_a_gpu_and_fashion_mnist_without(monkeypatch, tmp_path,
                                                                 network):
    import tensorflow_datasets as tfds

    monkeypatch.delenv(tutorial.OFFLINE_ENV, raising=False)
    with tfds.testing.mock_data(num_examples=20):
        monkeypatch.setattr(tutorial, "_gpu_available", lambda: False)
        cpu = tutorial.load_tutorial_data(data_dir=tmp_path)
        monkeypatch.setattr(tutorial, "_gpu_available", lambda: True)
        gpu = tutorial.load_tutorial_data(data_dir=tmp_path)
    assert (cpu.name, cpu.ood_name, cpu.input_shape) == ("fashion_mnist", "mnist", (28, 28, 1))
    assert (gpu.name, gpu.ood_name, gpu.input_shape) == ("cifar10", "cifar100", (32, 32, 3))


def test_hosts_come_from_the_registered_download_urls():
    import tensorflow_datasets as tfds

    assert tutorial._hosts(tfds.builder("cifar10")) == [("www.cs.toronto.edu", 443)]
    assert tutorial._hosts(tfds.builder("kmnist")) == [("codh.rois.ac.jp", 80)]


@pytest.mark.parametrize("kwargs, message", [
    (dict(dataset=""), "`dataset`"),
    (dict(dataset=3), "`dataset`"),
    (dict(ood=5), "`ood`"),
    (dict(offline="yes"), "`offline`"),
    (dict(seed=-1), "`seed`"),
    (dict(max_train=0), "`max_train`"),
    (dict(max_eval=1.5), "`max_eval`"),
    (dict(validation_fraction=0.0), "`validation_fraction`"),
    (dict(validation_fraction=1.0), "`validation_fraction`"),
    (dict(timeout=0), "`timeout`"),
    (dict(data_dir=7), "`data_dir`"),
    (dict(dataset="digits", ood="mnist"), "`ood`"),
    (dict(dataset="mnist", ood="mnist"), "`ood` must differ"),
])
def test_bad_arguments_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        tutorial.load_tutorial_data(**{"offline": True, **kwargs})


def test_unknown_tfds_name_raises(monkeypatch, no_network):
    monkeypatch.delenv(tutorial.OFFLINE_ENV, raising=False)
    with pytest.raises(ValueError, match="TFDS has no dataset named 'no_such_dataset'"):
        tutorial.load_tutorial_data("no_such_dataset", ood="mnist")


def test_dataset_without_a_default_ood_needs_one(monkeypatch, no_network):
    monkeypatch.delenv(tutorial.OFFLINE_ENV, raising=False)
    with pytest.raises(ValueError, match="no default OOD set; pass `ood=`"):
        tutorial.load_tutorial_data("emnist")


def test_ood_images_must_have_the_same_shape(monkeypatch, no_network):
    monkeypatch.delenv(tutorial.OFFLINE_ENV, raising=False)
    with pytest.raises(ValueError, match=r"`ood` 'cifar10' has images of shape \(32, 32, 3\)"):
        tutorial.load_tutorial_data("mnist", ood="cifar10")
