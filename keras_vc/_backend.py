"""The one refusal of a TensorFlow-only feature on another Keras backend."""

import keras


def require_tensorflow(feature, alternative, error=ValueError):
    """Raises ``error`` (a ValueError) unless Keras runs on the TensorFlow backend.

    Args:
        feature: what needs TensorFlow and why, e.g. ``"export_for_serving (a TensorFlow
            SavedModel)"``.
        alternative: what to do instead on the current backend.
        error: the ValueError subclass to raise (a module's own error type).
    """
    backend = keras.backend.backend()
    if backend != "tensorflow":
        raise error(f"{feature} needs the TensorFlow backend, but Keras runs on the "
                         f"{backend!r} backend (KERAS_BACKEND). {alternative}")
