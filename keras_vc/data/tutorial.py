"""The data of the tutorial notebooks: TFDS where it can be had quickly, the bundled data otherwise.

:func:`load_tutorial_data` returns an in-distribution train / validation / test split and an
out-of-distribution (OOD) test set, plus a one-line ``source`` that the notebooks display, so a
reader always sees which data the numbers come from.

* **Online** (Colab): a TensorFlow Datasets pair, Fashion-MNIST in-distribution with MNIST as
  OOD by default, or CIFAR-10 with CIFAR-100 as OOD when a GPU is present. A dataset already
  prepared in the TFDS data directory is read without network.
* **Offline** (CI, a machine without network, or ``KERAS_VC_OFFLINE=1``): scikit-learn's
  handwritten digits (8x8) in-distribution and 8x8 grey patches cut from photographs as far-OOD
  (:func:`keras_vc.data.ood.photo_patches`); nothing is downloaded.

The switch is decided fast. TFDS itself retries an unreachable download for minutes, so before a
dataset that is not prepared is downloaded, every host of its download URLs (from the TFDS
builder's registered checksums) must accept a TCP connection within ``timeout`` seconds;
otherwise, or when the download fails, the bundled data is used and ``fallback_reason`` says why.
"""

import dataclasses
import os
import socket
import urllib.parse
from typing import Optional

import keras
import numpy as np

from keras_vc import _backend
from keras_vc import _validation
from keras_vc.data.offline import Split

OFFLINE_ENV = "KERAS_VC_OFFLINE"
"""Environment variable; ``1`` (or ``true``, ``yes``) forces the bundled offline data."""

OFFLINE_DATASET = "digits"
OFFLINE_OOD = "photo_patches"

DEFAULT_OOD = {
    "fashion_mnist": "mnist",
    "mnist": "fashion_mnist",
    "kmnist": "mnist",
    "cifar10": "cifar100",
    "digits": "photo_patches",
}
"""The OOD set used for an in-distribution dataset when ``ood`` is not given."""

_TRUE = ("1", "true", "yes", "on")


@dataclasses.dataclass(repr=False)
class TutorialData(Split):
    """In-distribution splits (a :class:`~keras_vc.data.Split`), an OOD set, and where they came
    from.

    Attributes:
        name: the in-distribution dataset (``"fashion_mnist"``, ``"cifar10"``, ``"digits"``).
        x_train, y_train, x_val, y_val, x_test, y_test: float32 images ``(n, H, W, C)`` in
            [0, 1] and int64 labels in ``[0, num_classes)`` (as in every ``Split``).
        num_classes: K.
        value_range: ``(0.0, 1.0)``.
        ood_name: the OOD set (``"mnist"``, ``"cifar100"``, ``"photo_patches"``).
        source: one human-readable line naming both, for display in a notebook.
        offline: True when the bundled offline data is used.
        fallback_reason: why the offline data replaced the requested TFDS data, or None.
        x_ood: float32 OOD images of the same shape and range.
        class_names: the K class names.
    """

    ood_name: str = ""
    source: str = ""
    offline: bool = False
    fallback_reason: Optional[str] = None
    x_ood: Optional[np.ndarray] = None
    class_names: tuple = ()

    def sizes(self):
        """Number of samples in each part."""
        return dict(super().sizes(), ood=len(self.x_ood))

    def __repr__(self):
        sizes = ", ".join(f"{key} {value}" for key, value in self.sizes().items())
        return f"Data: {self.source}\n({sizes}; inputs {self.input_shape})"

    def _repr_markdown_(self):
        sizes = ", ".join(f"{key} {value}" for key, value in self.sizes().items())
        return f"**Data:** {self.source}  \n_{sizes}; inputs {self.input_shape}_"


def offline_requested():
    """True when the environment variable ``KERAS_VC_OFFLINE`` asks for the offline data."""
    return os.environ.get(OFFLINE_ENV, "").strip().lower() in _TRUE


def load_tutorial_data(dataset="auto", ood=None, *, offline=None, seed=0, max_train=None,
                       max_eval=None, validation_fraction=0.1, data_dir=None, timeout=3.0):
    """Loads the data of the tutorials, falling back to the bundled offline data at once.

    Args:
        dataset: ``"auto"`` (CIFAR-10 when TensorFlow sees a GPU, Fashion-MNIST otherwise), a
            TFDS image classification dataset (``"fashion_mnist"``, ``"mnist"``, ``"kmnist"``,
            ``"cifar10"``, ...) or ``"digits"`` (the bundled offline data).
        ood: the OOD set: a TFDS dataset whose images have the same shape as ``dataset``'s, or
            None for the default pair (:data:`DEFAULT_OOD`). Only its test split is used, without
            labels.
        offline: True forces the offline data, False never forces it, None (default) reads the
            environment variable ``KERAS_VC_OFFLINE``.
        seed: non-negative integer; fixes the validation split and the subsampling.
        max_train: optional cap on the number of training samples (a seeded random subset).
        max_eval: optional cap on the validation, test and OOD samples, each.
        validation_fraction: fraction of a TFDS ``train`` split held out for validation
            (calibration, thresholds), in (0, 1). The offline digits use their own stratified
            60 / 20 / 20 split.
        data_dir: TFDS data directory (default: TFDS's own, ``~/tensorflow_datasets``).
        timeout: seconds to wait for each download host before falling back (> 0).

    Returns:
        A :class:`TutorialData`.

    Raises:
        ValueError: a bad argument, an unknown TFDS name, ``ood`` equal to ``dataset``, a dataset
            without a default OOD pair and no ``ood``, or OOD images whose shape differs from the
            in-distribution images; a TFDS dataset named on a Keras backend other than
            TensorFlow (``"auto"`` then falls back to the offline data).

    Example:
        >>> data = load_tutorial_data(offline=True)
        >>> data.name, data.ood_name, data.input_shape, data.x_ood.shape == data.x_test.shape
        ('digits', 'photo_patches', (8, 8, 1), True)
    """
    if not isinstance(dataset, str) or not dataset:
        raise ValueError(f"`dataset` must be a dataset name such as 'auto', 'fashion_mnist' or "
                         f"'digits', got {dataset!r}.")
    if ood is not None and (not isinstance(ood, str) or not ood):
        raise ValueError(f"`ood` must be None or a dataset name, got {ood!r}.")
    if ood == dataset:
        raise ValueError(f"`ood` must differ from `dataset`, got {ood!r} for both.")
    if offline is not None and not isinstance(offline, bool):
        raise ValueError(f"`offline` must be None, True or False, got {offline!r}.")
    seed = _validation.check_int(seed, "seed", minimum=0)
    if max_train is not None:
        max_train = _validation.check_int(max_train, "max_train", minimum=1)
    if max_eval is not None:
        max_eval = _validation.check_int(max_eval, "max_eval", minimum=1)
    validation_fraction = _validation.check_float(validation_fraction, "validation_fraction",
                                                  minimum=0.0, maximum=1.0, strict_minimum=True)
    if validation_fraction >= 1.0:
        raise ValueError(f"`validation_fraction` must be < 1, got {validation_fraction}.")
    timeout = _validation.check_float(timeout, "timeout", minimum=0.0, strict_minimum=True)
    if data_dir is not None and not isinstance(data_dir, (str, os.PathLike)):
        raise ValueError(f"`data_dir` must be None or a path, got {data_dir!r}.")
    limits = dict(seed=seed, max_train=max_train, max_eval=max_eval)

    if offline is None:
        offline = offline_requested()
    if dataset == OFFLINE_DATASET:
        if ood not in (None, OFFLINE_OOD):
            raise ValueError(f"`ood` for the offline digits must be None or {OFFLINE_OOD!r}, "
                             f"got {ood!r}.")
        return _offline_data(None, **limits)
    if offline:
        reason = (f"{OFFLINE_ENV}=1 is set" if offline_requested()
                  else "offline=True was passed")
        return _offline_data(reason, **limits)

    backend = keras.backend.backend()
    if backend != "tensorflow":
        # TFDS reads through TensorFlow, which would share the process and the device with
        # this backend: "auto" falls back to the offline data, a named dataset is refused.
        if dataset == "auto":
            return _offline_data(f"Keras runs on the {backend!r} backend and TFDS reads "
                                 "through TensorFlow", **limits)
        _backend.require_tensorflow(
            f"Loading the TFDS dataset {dataset!r}",
            f"Use dataset={OFFLINE_DATASET!r} or offline=True (the bundled offline data), or "
            "pass your own NumPy arrays to the tutorial's model.")
    tfds = _import_tfds()
    if tfds is None:
        return _offline_data("tensorflow-datasets cannot be imported", **limits)
    if dataset == "auto":
        dataset = "cifar10" if _gpu_available() else "fashion_mnist"
    if ood is None:
        if dataset not in DEFAULT_OOD:
            raise ValueError(
                f"`dataset` {dataset!r} has no default OOD set; pass `ood=` (a TFDS image "
                f"dataset with images of the same shape). Defaults exist for {sorted(DEFAULT_OOD)}."
            )
        ood = DEFAULT_OOD[dataset]
    builders = {name: _builder(tfds, name, data_dir) for name in (dataset, ood)}
    shapes = {name: _image_shape(builder) for name, builder in builders.items()}
    if shapes[dataset] != shapes[ood]:
        raise ValueError(
            f"`ood` {ood!r} has images of shape {shapes[ood]} but `dataset` {dataset!r} has "
            f"{shapes[dataset]}; choose an OOD set with the same image shape."
        )
    missing = {name: builder for name, builder in builders.items() if not builder.is_prepared()}
    # Every host is checked before anything is downloaded: no half-downloaded pair.
    for name, builder in missing.items():
        unreachable = _unreachable_host(builder, timeout)
        if unreachable is not None:
            return _offline_data(f"TFDS {name!r} is not prepared and {unreachable}", **limits)
    for name, builder in missing.items():
        try:
            builder.download_and_prepare()
        except Exception as error:  # noqa: BLE001 - any download failure means: use offline data
            first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
            return _offline_data(f"downloading TFDS {name!r} failed ({first_line[:200]})",
                                 **limits)
    return _tfds_data(tfds, builders[dataset], builders[ood], dataset, ood,
                      validation_fraction, **limits)


def _import_tfds():
    try:
        import tensorflow_datasets as tfds
    except ImportError:
        return None
    return tfds


def _gpu_available():
    import tensorflow as tf

    return bool(tf.config.list_physical_devices("GPU"))


def _builder(tfds, name, data_dir):
    try:
        return tfds.builder(name, data_dir=None if data_dir is None else os.fspath(data_dir))
    except tfds.core.registered.DatasetNotFoundError:
        raise ValueError(f"TFDS has no dataset named {name!r} (see `tfds.list_builders()`).") \
            from None


def _image_shape(builder):
    supervised = builder.info.supervised_keys
    if not supervised or len(supervised) != 2:
        raise ValueError(f"TFDS dataset {builder.name!r} has no (image, label) supervised keys.")
    image_feature = builder.info.features[supervised[0]]
    shape = tuple(getattr(image_feature, "shape", ()) or ())
    if len(shape) != 3 or None in shape:
        raise ValueError(f"TFDS dataset {builder.name!r} does not hold images of one fixed size "
                         f"(feature shape {shape}).")
    return shape


def _hosts(builder):
    """``(host, port)`` of every download URL TFDS registered for the builder."""
    url_infos = type(builder).url_infos or {}
    hosts = []
    for url in url_infos:
        parsed = urllib.parse.urlparse(url)
        if parsed.hostname:
            port = parsed.port or (443 if parsed.scheme == "https" else 80)
            if (parsed.hostname, port) not in hosts:
                hosts.append((parsed.hostname, port))
    return hosts


def _unreachable_host(builder, timeout):
    """None when every download host answers within ``timeout`` s, else a reason."""
    hosts = _hosts(builder)
    if not hosts:
        return "TFDS registers no download URL for it"
    for host, port in hosts:
        try:
            connection = socket.create_connection((host, port), timeout=timeout)
        except OSError as error:
            return f"its download host {host}:{port} is unreachable ({error or 'timed out'})"
        connection.close()
    return None


def _subsample(rng, arrays, limit):
    n = len(arrays[0])
    if limit is None or limit >= n:
        return arrays
    keep = np.sort(rng.permutation(n)[:limit])
    return tuple(array[keep] for array in arrays)


def _to_float_images(x):
    x = np.asarray(x)
    if x.dtype == np.uint8:
        return x.astype(np.float32) / np.float32(255.0)
    return x.astype(np.float32)


def _tfds_data(tfds, builder, ood_builder, name, ood_name, validation_fraction, seed,
               max_train, max_eval):
    def read(some_builder, split):
        try:
            data = some_builder.as_dataset(split=split, as_supervised=True)
        except Exception as error:  # noqa: BLE001 - the message names dataset and split
            raise ValueError(f"TFDS dataset {some_builder.name!r} has no readable {split!r} "
                             f"split ({error}); the tutorials need 'train' and 'test' splits."
                             ) from None
        # Batches rather than batch_size=-1, which sizes one batch from the split metadata.
        xs, ys = [], []
        for x, y in tfds.as_numpy(data.batch(4096)):
            xs.append(_to_float_images(x))
            ys.append(np.asarray(y, dtype=np.int64))
        if not xs:
            raise ValueError(f"TFDS dataset {some_builder.name!r}: the {split!r} split is empty.")
        return np.concatenate(xs), np.concatenate(ys)

    rng = np.random.default_rng(seed)
    x, y = read(builder, "train")
    order = rng.permutation(len(y))
    num_val = max(1, int(round(validation_fraction * len(y))))
    val, train = order[:num_val], np.sort(order[num_val:])
    x_train, y_train = x[train], y[train]
    x_val, y_val = x[np.sort(val)], y[np.sort(val)]
    x_test, y_test = read(builder, "test")
    x_ood, _ = read(ood_builder, "test")
    x_train, y_train = _subsample(rng, (x_train, y_train), max_train)
    x_val, y_val = _subsample(rng, (x_val, y_val), max_eval)
    x_test, y_test = _subsample(rng, (x_test, y_test), max_eval)
    (x_ood,) = _subsample(rng, (x_ood,), max_eval)
    label = builder.info.features[builder.info.supervised_keys[1]]
    num_classes = int(label.num_classes)
    class_names = tuple(getattr(label, "names", None) or (str(k) for k in range(num_classes)))
    source = (f"TensorFlow Datasets: {builder.info.full_name} in-distribution "
              f"({num_classes} classes, images {x_train.shape[1:]}), "
              f"{ood_builder.info.full_name} test images as out-of-distribution")
    return TutorialData(name, x_train, y_train, x_val, y_val, x_test, y_test, num_classes,
                        (0.0, 1.0), ood_name=ood_name, source=source, offline=False,
                        fallback_reason=None, x_ood=x_ood, class_names=class_names)


def _offline_data(reason, seed, max_train, max_eval):
    from keras_vc.data.offline import load_digits
    from keras_vc.data.ood import photo_patches

    split = load_digits(seed)
    rng = np.random.default_rng(seed)
    x_train, y_train = _subsample(rng, (split.x_train, split.y_train), max_train)
    x_val, y_val = _subsample(rng, (split.x_val, split.y_val), max_eval)
    x_test, y_test = _subsample(rng, (split.x_test, split.y_test), max_eval)
    x_ood = photo_patches(len(y_test), image_shape=split.input_shape, seed=seed)
    source = ("bundled offline data: scikit-learn's handwritten digits (8x8 grey images, "
              "10 classes) in-distribution, 8x8 grey patches of scikit-learn's sample "
              "photographs as out-of-distribution")
    if reason is not None:
        source = f"OFFLINE FALLBACK ({reason}): {source}"
    return TutorialData(OFFLINE_DATASET, x_train, y_train, x_val, y_val, x_test, y_test,
                        int(split.num_classes), (0.0, 1.0), ood_name=OFFLINE_OOD, source=source,
                        offline=True, fallback_reason=reason, x_ood=x_ood,
                        class_names=tuple(str(k) for k in range(int(split.num_classes))))
