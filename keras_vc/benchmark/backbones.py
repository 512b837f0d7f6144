"""Small backbones for the offline datasets (the part every method shares)."""

import keras


def mlp(hidden=(128, 128), name="mlp"):
    """Flatten -> Dense(ReLU) x len(hidden)."""
    layers = [keras.layers.Flatten()]
    layers += [keras.layers.Dense(units, activation="relu", name=f"hidden_{i}")
               for i, units in enumerate(hidden)]
    return keras.Sequential(layers, name=name)


def cnn1d(filters=32, name="cnn1d"):
    """The MNIST-1D CNN of the pilot: 3 strided Conv1D + Dense(128)."""
    return keras.Sequential(
        [
            keras.layers.Conv1D(filters, 5, strides=2, activation="relu", name="conv_0"),
            keras.layers.Conv1D(filters, 3, strides=2, activation="relu", name="conv_1"),
            keras.layers.Conv1D(filters, 3, strides=2, activation="relu", name="conv_2"),
            keras.layers.Flatten(),
            keras.layers.Dense(128, activation="relu", name="hidden_0"),
        ],
        name=name,
    )


BACKBONES = {"digits": mlp, "mnist1d": cnn1d}


def for_dataset(name):
    """The backbone factory used for a dataset (an MLP for anything without its own)."""
    return BACKBONES.get(name, mlp)
