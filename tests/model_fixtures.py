"""Small models shared by the tests of functions that refuse them."""

import keras
import numpy as np


class _Subclassed(keras.Model):
    def __init__(self, num_classes):
        super().__init__()
        self.hidden_0 = keras.layers.Dense(4, name="hidden_0")
        self.logits = keras.layers.Dense(num_classes, name="logits")

    def call(self, inputs):
        return self.logits(self.hidden_0(inputs))


def subclassed_classifier(input_dim, num_classes):
    """A built subclassed classifier (layers ``hidden_0`` and ``logits``): it has no graph."""
    model = _Subclassed(num_classes)
    model(np.zeros((2, input_dim), "float32"))
    return model
