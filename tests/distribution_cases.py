"""The models of the distribution checks, shared by ``distribution_check.py`` (tf.distribute) and
``distribution_check_jax.py`` (keras.distribution): one head per case on a small Dense body, the
same 128 digits, the same seeds. Import it after the backend and its devices are set up."""

import keras
import numpy as np

from keras_vc.data import offline
from keras_vc.layers import BottleneckHead, DistanceLogits, VariationalHead, VariationalSoftmax
from keras_vc.losses import VariationalClassificationLoss
from keras_vc.models import EntanglementModel

BATCH_SIZE = 128
LEARNING_RATE = 0.1
NUM_CLASSES = 10

HEADS = {
    "dense": lambda: keras.layers.Dense(NUM_CLASSES, name="head"),
    "dismax": lambda: DistanceLogits(NUM_CLASSES, mode="dismax", name="head"),
    "isomax_plus": lambda: DistanceLogits(NUM_CLASSES, mode="isomax_plus", name="head"),
    "variational_gaussian": lambda: VariationalSoftmax(NUM_CLASSES, latent_dim=8, seed=3,
                                                       name="head"),
    "variational_deterministic": lambda: VariationalSoftmax(
        NUM_CLASSES, latent_dim=8, posterior="deterministic", seed=3, name="head"),
    "bottleneck": lambda: BottleneckHead(NUM_CLASSES, latent_dim=16, name="head"),
    "variational_head": lambda: VariationalHead(NUM_CLASSES, latent_dim=16, num_samples=1,
                                                seed=3, name="head"),
}


def data():
    dataset = offline.digits_dataset()
    x = np.asarray(dataset.x, "float32").reshape(len(dataset.x), -1)[:BATCH_SIZE]
    return x, np.asarray(dataset.y, "int32")[:BATCH_SIZE]


def build(case):
    """A fresh model of ``case`` and its loss (initial weights are overwritten by the caller)."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((64,))
    hidden = keras.layers.Dense(32, activation="relu", name="hidden_0")(inputs)
    if case == "entanglement":
        classifier = keras.Model(inputs, keras.layers.Dense(NUM_CLASSES, name="logits")(hidden))
        return EntanglementModel(classifier, ["hidden_0"], alpha=1.0, direction="maximize",
                                 temperature=10.0), keras.losses.SparseCategoricalCrossentropy(
                                     from_logits=True)
    model = keras.Model(inputs, HEADS[case]()(hidden))
    loss = (VariationalClassificationLoss() if case.startswith("variational_")
            and case != "variational_head"
            else keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model, loss
