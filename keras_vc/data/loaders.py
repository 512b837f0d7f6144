"""Loaders for data the user has: TensorFlow Datasets and class-per-folder images.

``load_dataset(spec)`` resolves the ``--dataset`` argument of ``keras-vc compare``:

* ``digits``, ``mnist1d``: the bundled offline datasets (:mod:`keras_vc.data.offline`).
* ``tfds:NAME`` (e.g. ``tfds:mnist``, ``tfds:cifar10``, ``tfds:mnist:3.0.1``): a TensorFlow
  Datasets image classification dataset that is **already prepared** in ``data_dir`` (TFDS's
  default ``~/tensorflow_datasets`` when not given). Nothing is downloaded unless
  ``download=True``: without it an unprepared dataset fails at once with a clear message (TFDS
  itself would retry a download for minutes on a machine without network).
* ``folder:PATH``: images in one sub-folder per class (``PATH/cat/*.png``, ``PATH/dog/*.jpg``),
  read with ``keras.utils.image_dataset_from_directory`` and resized to ``image_size``.

Images are scaled to [0, 1]. Every failure is a :class:`DatasetError` (a ``ValueError``) whose
message says what to do.
"""

import os

import numpy as np

from keras_vc import _backend
from keras_vc import _validation
from keras_vc.data.offline import OFFLINE_DATASETS
from keras_vc.data.offline import Dataset


class DatasetError(ValueError):
    """A dataset that cannot be loaded; the message says why and what to do."""


def _tfds():
    try:
        import tensorflow_datasets as tfds
    except ImportError as error:  # pragma: no cover - tfds is a dependency
        raise DatasetError(f"tensorflow-datasets is not installed ({error}).") from error
    return tfds


def load_tfds(name, data_dir=None, download=False):
    """Loads a prepared TensorFlow Datasets image classification dataset into memory.

    The dataset's ``train`` split (or, without one, every split pooled) is split per seed into
    train / validation; its ``test`` split, when there is one, is kept as the test set.

    Args:
        name: TFDS name, optionally with a version (``"mnist"``, ``"cifar10:3.0.2"``).
        data_dir: TFDS data directory (default: TFDS's own, ``~/tensorflow_datasets``).
        download: when True, download and prepare a dataset that is not prepared yet.

    Returns:
        A :class:`~keras_vc.data.Dataset` named ``tfds:NAME`` with images in [0, 1].

    Raises:
        DatasetError: unknown name, dataset not prepared (and ``download`` is False), no
            supervised (image, label) keys, or images of varying size.
            Also on a Keras backend other than TensorFlow (TFDS reads through TensorFlow,
            which would then share the process and the device with that backend).

    Example (needs the prepared data):
        >>> dataset = load_tfds("mnist")  # doctest: +SKIP
    """
    _backend.require_tensorflow(
        "Loading TensorFlow Datasets (tfds:)",
        "Pass NumPy arrays (keras_vc.data.Dataset(name, x, y, num_classes, value_range)) or "
        "load an image folder with `folder:PATH` (keras_vc.data.load_folder).",
        error=DatasetError)
    if not isinstance(name, str) or not name:
        raise DatasetError(f"`name` must be a TFDS dataset name, got {name!r}.")
    if not isinstance(download, bool):
        raise DatasetError(f"`download` must be True or False, got {download!r}.")
    tfds = _tfds()
    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except tfds.core.registered.DatasetNotFoundError:
        raise DatasetError(
            f"TFDS has no dataset named {name!r} (see `tfds.list_builders()`)."
        ) from None
    except Exception as error:
        raise DatasetError(f"TFDS could not open {name!r}: {error}") from None
    if not builder.is_prepared():
        if not download:
            raise DatasetError(
                f"TFDS dataset {name!r} is not prepared in {builder.data_dir}. Prepare it first "
                f"(`tfds build {name}` or `tfds.builder({name!r}).download_and_prepare()` on a "
                f"machine with network), point --data-dir at it, or pass --download."
            )
        try:
            builder.download_and_prepare()
        except Exception as error:
            raise DatasetError(f"Downloading TFDS dataset {name!r} failed: {error}") from None
    info = builder.info
    if not info.supervised_keys:
        raise DatasetError(f"TFDS dataset {name!r} has no supervised (input, label) keys.")
    label_key = info.supervised_keys[1]
    label_feature = info.features[label_key]
    num_classes = getattr(label_feature, "num_classes", None)
    if not num_classes:
        raise DatasetError(f"TFDS dataset {name!r}: the label {label_key!r} is not a ClassLabel.")
    splits = list(info.splits.keys())
    if not splits:
        raise DatasetError(f"TFDS dataset {name!r} has no splits in {builder.data_dir}.")

    def arrays(split_names):
        xs, ys = [], []
        for split_name in split_names:
            try:
                data = builder.as_dataset(split=split_name, as_supervised=True, batch_size=-1)
                x, y = tfds.as_numpy(data)
            except Exception as error:
                raise DatasetError(
                    f"TFDS dataset {name!r} split {split_name!r} could not be read into memory "
                    f"(images of varying size need a resize: export them to a folder and use "
                    f"folder:PATH): {error}"
                ) from None
            xs.append(np.asarray(x))
            ys.append(np.asarray(y))
        return np.concatenate(xs), np.concatenate(ys).astype(np.int64)

    if "test" in splits and len(splits) > 1:
        x, y = arrays([s for s in splits if s != "test"] if "train" not in splits else ["train"])
        x_test, y_test = arrays(["test"])
    else:
        x, y = arrays(splits)
        x_test = y_test = None
    x, value_range = _as_float(x, name)
    if x_test is not None:
        x_test, _ = _as_float(x_test, name)
    description = (f"TFDS {info.full_name}: {len(y)} samples for train/validation"
                   + (f", {len(y_test)} official test samples" if y_test is not None else "")
                   + f", inputs {x.shape[1:]}, {num_classes} classes")
    return Dataset(f"tfds:{name}", x, y, int(num_classes), value_range, description,
                   x_test, y_test)


def _as_float(x, name):
    """uint8 images -> float32 in [0, 1]; float data kept with its own range."""
    if x.dtype == np.uint8:
        return x.astype(np.float32) / 255.0, (0.0, 1.0)
    if not np.issubdtype(x.dtype, np.number):
        raise DatasetError(f"Dataset {name!r} has non-numeric inputs ({x.dtype}).")
    x = x.astype(np.float32)
    if x.ndim == 3:  # (n, height, width) grey images
        x = x[..., None]
    return x, (float(x.min()), float(x.max()))


def load_folder(path, image_size=(32, 32), color_mode="rgb"):
    """Loads class-per-folder images: ``path/<class name>/<image files>``.

    Class ids follow the sorted sub-folder names. Images are resized to ``image_size`` (bilinear)
    and scaled to [0, 1].

    Args:
        path: the root folder.
        image_size: ``(height, width)`` of the loaded images.
        color_mode: ``"rgb"`` or ``"grayscale"``.

    Returns:
        A :class:`~keras_vc.data.Dataset` named ``folder:<folder name>``.

    Raises:
        DatasetError: missing or unreadable folder, fewer than two class folders, no images, or
            an image that cannot be decoded.

    Example:
        >>> dataset = load_folder("flowers/", image_size=(64, 64))  # doctest: +SKIP
    """
    if not isinstance(path, (str, os.PathLike)) or not str(path):
        raise DatasetError(f"`path` must be a folder, got {path!r}.")
    _validation.check_choice(color_mode, "color_mode", ("rgb", "grayscale"))
    if len(tuple(image_size)) != 2:
        raise DatasetError(f"`image_size` must be (height, width), got {image_size!r}.")
    image_size = tuple(_validation.check_int(v, "image_size", minimum=1) for v in image_size)
    path = os.fspath(path)
    if not os.path.isdir(path):
        raise DatasetError(f"folder {path!r} does not exist or is not a directory.")
    if not os.access(path, os.R_OK | os.X_OK):
        raise DatasetError(f"folder {path!r} is not readable.")
    try:
        class_dirs = sorted(d for d in os.listdir(path) if os.path.isdir(os.path.join(path, d)))
    except OSError as error:
        raise DatasetError(f"folder {path!r} cannot be listed: {error}") from None
    if len(class_dirs) < 2:
        raise DatasetError(
            f"folder {path!r} must hold one sub-folder of images per class (at least 2), "
            f"found {len(class_dirs)}."
        )
    import keras

    try:
        data = keras.utils.image_dataset_from_directory(
            path, labels="inferred", label_mode="int", color_mode=color_mode, batch_size=None,
            image_size=image_size, shuffle=False, verbose=False,
        )
        images, labels = [], []
        for image, label in data.as_numpy_iterator():
            images.append(image)
            labels.append(label)
    except Exception as error:
        text = str(error).strip()
        first_line = text.splitlines()[0] if text else type(error).__name__
        raise DatasetError(f"folder {path!r} could not be read: {first_line}") from None
    if not images:
        raise DatasetError(f"folder {path!r} holds no readable images.")
    x = np.stack(images).astype(np.float32) / 255.0
    y = np.asarray(labels, dtype=np.int64)
    counts = np.bincount(y, minlength=len(class_dirs))
    if np.any(counts < 5):
        empty = [class_dirs[i] for i in np.flatnonzero(counts < 5)]
        raise DatasetError(
            f"folder {path!r}: every class needs at least 5 images for a stratified "
            f"train / validation / test split; too few in {empty}."
        )
    name = os.path.basename(os.path.normpath(path)) or path
    description = (f"images from {path} ({len(y)} images, {len(class_dirs)} classes, resized to "
                   f"{image_size[0]}x{image_size[1]} {color_mode})")
    return Dataset(f"folder:{name}", x, y, len(class_dirs), (0.0, 1.0), description)


def load_dataset(spec, data_dir=None, download=False, image_size=None):
    """Resolves a ``--dataset`` argument to a :class:`~keras_vc.data.Dataset`.

    Args:
        spec: ``digits``, ``mnist1d``, ``tfds:NAME`` or ``folder:PATH``.
        data_dir: TFDS data directory (``tfds:`` only).
        download: allow TFDS to download an unprepared dataset (``tfds:`` only).
        image_size: ``(height, width)`` the images are resized to (``folder:`` only; default
            that of :func:`load_folder`).

    Returns:
        A :class:`~keras_vc.data.Dataset`.

    Raises:
        DatasetError: an unknown spec or a dataset that cannot be loaded.

    Example:
        >>> load_dataset("digits").num_classes
        10
    """
    check_spec(spec)
    if spec in OFFLINE_DATASETS:
        return OFFLINE_DATASETS[spec]()
    if spec.startswith("tfds:"):
        return load_tfds(spec[len("tfds:"):], data_dir=data_dir, download=download)
    if image_size is None:
        return load_folder(spec[len("folder:"):])
    return load_folder(spec[len("folder:"):], image_size=image_size)


def check_spec(spec):
    """Checks the form of a dataset spec without loading anything (for the command line)."""
    if not isinstance(spec, str) or not spec:
        raise DatasetError(f"`spec` must be a dataset name, got {spec!r}.")
    if spec in OFFLINE_DATASETS:
        return spec
    if spec.startswith("tfds:") and len(spec) > len("tfds:"):
        return spec
    if spec.startswith("folder:") and len(spec) > len("folder:"):
        return spec
    raise DatasetError(
        f"unknown dataset {spec!r}; expected one of {sorted(OFFLINE_DATASETS)}, tfds:NAME or "
        f"folder:PATH."
    )
