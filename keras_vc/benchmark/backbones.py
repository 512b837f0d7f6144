"""Small backbones (the part every method of a comparison shares) for the benchmark datasets.

Each factory returns an unbuilt ``keras.Sequential`` mapping inputs to a feature vector; the
compare command builds it right after seeding, so that every method of a seed starts from the
same backbone weights.
"""

import keras


def mlp(hidden=(128, 128), name="mlp"):
    """Flatten -> Dense(ReLU) x len(hidden) (the pilot's digits backbone: 2 x 128)."""
    layers = [keras.layers.Flatten()]
    layers += [keras.layers.Dense(units, activation="relu", name=f"hidden_{i}")
               for i, units in enumerate(hidden)]
    return keras.Sequential(layers, name=name)


def cnn1d(filters=32, name="cnn1d"):
    """The MNIST-1D CNN of the pilot: 3 strided Conv1D (kernels 5/3/3) + Dense(128)."""
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


def cnn2d(filters=(32, 64, 128), name="cnn2d"):
    """A small image CNN: (Conv3x3-ReLU, Conv3x3-ReLU, MaxPool) per width, global average
    pooling and Dense(128). For ``tfds:`` and ``folder:`` images of 16 pixels or more."""
    layers = []
    for i, width in enumerate(filters):
        layers += [
            keras.layers.Conv2D(width, 3, padding="same", activation="relu", name=f"conv_{i}a"),
            keras.layers.Conv2D(width, 3, padding="same", activation="relu", name=f"conv_{i}b"),
            keras.layers.MaxPooling2D(2, name=f"pool_{i}"),
        ]
    layers += [keras.layers.GlobalAveragePooling2D(),
               keras.layers.Dense(128, activation="relu", name="hidden_0")]
    return keras.Sequential(layers, name=name)


BACKBONES = {"mlp": mlp, "cnn1d": cnn1d, "cnn2d": cnn2d}

# The pilot's choices: the MLP on 8x8 digits, the CNN on MNIST-1D.
DATASET_BACKBONES = {"digits": "mlp", "mnist1d": "cnn1d"}


def name_for(dataset_name, input_shape=None):
    """The backbone name used for a dataset: the pilot's for the bundled data, otherwise by
    input shape (signals: ``cnn1d``; images of at least 16x16: ``cnn2d``; else ``mlp``)."""
    if dataset_name in DATASET_BACKBONES:
        return DATASET_BACKBONES[dataset_name]
    if input_shape is not None and len(input_shape) == 2:
        return "cnn1d"
    if input_shape is not None and len(input_shape) == 3 and min(input_shape[:2]) >= 16:
        return "cnn2d"
    return "mlp"


def for_dataset(name, input_shape=None):
    """The backbone factory used for a dataset (see :func:`name_for`)."""
    return BACKBONES[name_for(name, input_shape)]
