"""Test session set-up: the Keras backend comes from the environment.

``KERAS_BACKEND`` chooses the backend of the whole pytest process (Keras fixes it at import);
TensorFlow when it is not set. ``make test`` runs the suite on TensorFlow, then the
backend-neutral part on JAX in a second process.

Markers (registered in pyproject.toml):

- ``tensorflow_only(reason)``: the test needs TensorFlow itself (SavedModel export, TFDS,
  ``tf.data``, ``tf.distribute``, a ``tf.function`` graph); on another backend it is skipped with
  the reason. A module says it for all its tests with ``pytestmark``.
- ``slow``: backend-neutral but slow; ``make test`` runs it on TensorFlow only
  (``-m "not slow"`` in the other backends' runs).

``tests/backends.py`` holds the helpers for backend-specific expectations.
"""

import os

import pytest

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("MPLBACKEND", "Agg")


def pytest_collection_modifyitems(config, items):
    import keras

    backend = keras.backend.backend()
    if backend == "tensorflow":
        return
    for item in items:
        marker = item.get_closest_marker("tensorflow_only")
        if marker is None:
            continue
        why = marker.args[0] if marker.args else marker.kwargs.get("reason", "")
        reason = f"needs the TensorFlow backend (this run: {backend})"
        item.add_marker(pytest.mark.skip(reason=f"{reason}: {why}" if why else reason))
