"""The inputs of ``keras_vc.evaluate``: a trained model and the user's data, as NumPy arrays.

A data argument is one of:

* ``(x, y)`` arrays (``y`` may be omitted for an OOD set: ``x`` alone);
* a path to an ``.npz`` file with the arrays ``x`` and ``y`` (``y`` optional for an OOD set);
* ``folder:PATH``: class-per-folder images (:func:`keras_vc.data.load_folder`), resized to the
  model's input height and width, grey when the model takes one channel, scaled to [0, 1];
* ``tfds:NAME``: a prepared TensorFlow Datasets dataset (:func:`keras_vc.data.load_tfds`, never
  downloaded): its official ``test`` split for the test and OOD sets (all of it when it has
  none), its training samples for ``val_data`` / ``train_data``.

Arrays are used as given (cast to float32); only the folder and TFDS loaders scale images.
"""

import os

import numpy as np

from keras_vc import _validation
from keras_vc.data import loaders

EVALUATION_ROLES = ("test", "ood")


def load_model(model):
    """Returns ``model`` itself, or the model saved at a ``.keras`` path (loaded uncompiled).

    Raises:
        ValueError: a path that does not exist or cannot be loaded, or neither a path nor a
            ``keras.Model``.
    """
    import keras

    if isinstance(model, keras.Model):
        return model
    if not isinstance(model, (str, os.PathLike)):
        raise ValueError(f"`model` must be a keras.Model or the path of a .keras file, got "
                         f"{type(model).__name__}.")
    path = os.fspath(model)
    if not os.path.isfile(path):
        raise ValueError(f"`model`: no model file at {path!r}.")
    try:
        return keras.saving.load_model(path, compile=False)
    except Exception as error:
        raise ValueError(f"`model`: {path!r} could not be loaded as a Keras model: "
                         f"{str(error).strip().splitlines()[0] if str(error).strip() else error!r}"
                         ) from None


def input_shape(model):
    """The model's input shape without the batch axis (None where unknown), or None."""
    try:
        shape = model.inputs[0].shape
    except (AttributeError, IndexError, TypeError, ValueError):
        return None
    return tuple(shape)[1:]


def _from_loader(spec, role, model_shape, data_dir):
    if spec.startswith("folder:"):
        size, color_mode = (32, 32), "rgb"
        if model_shape is not None and len(model_shape) == 3 and None not in model_shape[:2]:
            size = tuple(int(d) for d in model_shape[:2])
            color_mode = "grayscale" if model_shape[2] == 1 else "rgb"
        dataset = loaders.load_folder(spec[len("folder:"):], image_size=size,
                                      color_mode=color_mode)
        return dataset.x, dataset.y
    loaders.check_spec(spec)
    dataset = loaders.load_tfds(spec[len("tfds:"):], data_dir=data_dir)
    if role in EVALUATION_ROLES and dataset.x_test is not None:
        return dataset.x_test, dataset.y_test
    return dataset.x, dataset.y


def _from_npz(path, name):
    try:
        with np.load(path, allow_pickle=False) as arrays:
            contents = {key: arrays[key] for key in arrays.files}
    except Exception as error:
        raise ValueError(f"`{name}`: {path!r} could not be read as an .npz file: {error}") from None
    if "x" not in contents:
        raise ValueError(f"`{name}`: {path!r} must hold an array named 'x' (and 'y' for labels); "
                         f"it holds {sorted(contents)}.")
    return contents["x"], contents.get("y")


def describe(data):
    """A short description of a data argument for the report."""
    if isinstance(data, (str, os.PathLike)):
        return os.fspath(data)
    return "arrays"


def load_data(data, name, model, *, role="test", labels_required=True, data_dir=None):
    """Resolves one data argument to ``(x float32, y int64 or None)`` and checks it against
    ``model``.

    Args:
        data: ``(x, y)``, ``x`` (OOD sets), an ``.npz`` path, ``folder:PATH`` or ``tfds:NAME``.
        name: the argument's name, for messages (``"test_data"``, ``"ood_data['noise']"``).
        model: the loaded model (its input shape and number of classes are checked).
        role: ``"test"``, ``"ood"``, ``"val"`` or ``"train"`` (which TFDS split is read).
        labels_required: whether labels must be present (everything but OOD sets).
        data_dir: TFDS data directory.

    Returns:
        ``(x, y)``; ``y`` is None when the data has no labels and none are required.

    Raises:
        ValueError: unreadable data, no samples, inputs whose shape is not the model's, missing
            labels, labels out of ``[0, K)`` or of another length than ``x``.
    """
    if isinstance(data, (str, os.PathLike)):
        text = os.fspath(data)
        if text.startswith(("folder:", "tfds:")):
            x, y = _from_loader(text, role, input_shape(model), data_dir)
        elif os.path.isfile(text):
            x, y = _from_npz(text, name)
        else:
            raise ValueError(f"`{name}`: {text!r} is neither an .npz file nor folder:PATH or "
                             f"tfds:NAME.")
    elif isinstance(data, (tuple, list)) and len(data) in (1, 2):
        x, y = data[0], (data[1] if len(data) == 2 else None)
    elif isinstance(data, np.ndarray) or hasattr(data, "shape"):
        x, y = data, None
    else:
        raise ValueError(f"`{name}` must be (x, y) arrays, x, an .npz path, folder:PATH or "
                         f"tfds:NAME; got {type(data).__name__}.")
    x = _validation.to_numpy(x, f"{name} inputs")
    if not np.issubdtype(x.dtype, np.number):
        raise ValueError(f"`{name}` inputs must be numeric, got dtype {x.dtype}.")
    if x.ndim < 2 or x.shape[0] == 0:
        raise ValueError(f"`{name}` must hold at least one sample, got inputs of shape {x.shape}.")
    expected = input_shape(model)
    if expected is not None and (len(expected) != x.ndim - 1 or any(
            e is not None and e != s for e, s in zip(expected, x.shape[1:]))):
        raise ValueError(f"`{name}` inputs have shape {x.shape[1:]} per sample, but the model "
                         f"takes {expected} (None: any size).")
    x = x.astype(np.float32)
    if y is None:
        if labels_required:
            raise ValueError(f"`{name}` needs labels: pass (x, y) or an .npz file with 'y'.")
        return x, None
    y = _validation.check_labels(y, num_classes(model), num_samples=x.shape[0],
                                 name=f"{name} labels")
    return x, y


def num_classes(model):
    """K, the width of the model's output."""
    shape = tuple(model.outputs[0].shape) if getattr(model, "outputs", None) else None
    if shape is None or len(shape) != 2 or shape[-1] is None or shape[-1] < 2:
        raise ValueError(f"`model` must output (batch, K) logits or probabilities with K >= 2, "
                         f"got output shape {shape}.")
    return int(shape[-1])
