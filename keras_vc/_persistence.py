"""Saving and loading fitted post-hoc objects (detectors, conformal predictors, calibrators).

A fitted object is its constructor configuration (JSON) plus its fitted state (NumPy arrays).
Both go into one ``.npz`` file, so that a fitted object travels without its training data and
without pickle: ``np.load(path, allow_pickle=False)`` reads it back.

Classes use it through :class:`Persistable`: they implement ``get_config()`` (constructor
arguments, JSON types only), ``_get_state()`` (name -> array, empty before ``fit``) and
``_set_state(arrays)``, and get ``save(path)`` and ``load(path)``.
"""

import json
import os

import numpy as np

_CONFIG_KEY = "__keras_vc_config__"
_CLASS_KEY = "__keras_vc_class__"
_VERSION_KEY = "__keras_vc_format__"
FORMAT_VERSION = 1


class Persistable:
    """Mixin: ``save(path)`` / ``load(path)`` for objects with a config and array state."""

    def get_config(self):
        raise NotImplementedError

    def _get_state(self):
        raise NotImplementedError

    def _set_state(self, arrays):
        raise NotImplementedError

    def save(self, path):
        """Writes the configuration and the fitted state to ``path`` (a ``.npz`` file).

        Args:
            path: file path; ``.npz`` is appended when missing (as ``np.savez`` does).

        Returns:
            The path written.
        """
        state = self._get_state()
        if not state:
            raise ValueError(f"This {type(self).__name__} is not fitted: call `fit` before `save`.")
        for key in state:
            if key.startswith("__"):
                raise ValueError(f"State names may not start with '__', got {key!r}.")
        path = os.fspath(path)
        if not path.endswith(".npz"):
            path += ".npz"
        payload = {key: np.asarray(value) for key, value in state.items()}
        payload[_CONFIG_KEY] = np.asarray(json.dumps(self.get_config()))
        payload[_CLASS_KEY] = np.asarray(type(self).__name__)
        payload[_VERSION_KEY] = np.asarray(FORMAT_VERSION)
        np.savez(path, **payload)
        return path

    @classmethod
    def load(cls, path):
        """Restores an object saved by :meth:`save` (no training data needed).

        Raises:
            ValueError: if the file was not written by ``save`` of this class.
        """
        with np.load(os.fspath(path), allow_pickle=False) as data:
            if _CONFIG_KEY not in data.files or _CLASS_KEY not in data.files:
                raise ValueError(f"`path` {path!r} is not a file written by keras_vc's `save`.")
            saved_class = str(data[_CLASS_KEY])
            if saved_class != cls.__name__:
                raise ValueError(f"`path` {path!r} holds a {saved_class}, not a {cls.__name__}; "
                                 f"load it with {saved_class}.load.")
            config = json.loads(str(data[_CONFIG_KEY]))
            arrays = {key: data[key] for key in data.files if not key.startswith("__")}
        obj = cls.from_config(config)
        obj._set_state(arrays)
        return obj

    @classmethod
    def from_config(cls, config):
        return cls(**config)
