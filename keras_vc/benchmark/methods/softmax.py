"""The baseline: a Dense output layer trained with softmax cross-entropy.

The reference every other method is paired with: same backbone and initial weights, same
batches, same optimizer and epochs; its probabilities are the softmax of the Dense logits and its
OOD score is the maximum softmax probability (Hendrycks & Gimpel 2017).
"""

import keras

from keras_vc.benchmark.methods import Method
from keras_vc.benchmark.methods import fit_classifier
from keras_vc.benchmark.methods import register


def train(backbone, split, protocol, seed, context):
    model = keras.Sequential(
        [keras.Input(split.input_shape), backbone,
         keras.layers.Dense(split.num_classes, dtype="float32", name="logits")],
        name="softmax_classifier",
    )
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    return fit_classifier(model, split, protocol, loss, seed=seed)


register(Method(
    name="softmax",
    title="Dense + softmax",
    train=train,
    ood_score="max_probability",
    note="softmax of the Dense logits",
))
