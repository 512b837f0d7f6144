"""Keras Loss classes that pair with the layers of keras_vc (one class per module)."""
