"""The methods ``keras-vc compare`` trains, each under one fixed protocol.

A method turns a freshly built backbone (identical initial weights for every method of a seed)
into a trained classifier whose output is logits. Methods register themselves in ``METHODS``;
the softmax baseline is the reference every other method is paired with.
"""

import dataclasses
from typing import Callable

import keras


@dataclasses.dataclass(frozen=True)
class Protocol:
    """Training settings shared by every method of a run (stated in the report)."""

    epochs: int = 30
    batch_size: int = 64
    learning_rate: float = 1e-3
    optimizer: str = "adam"

    def make_optimizer(self):
        return keras.optimizers.get({"class_name": self.optimizer,
                                     "config": {"learning_rate": self.learning_rate}})


@dataclasses.dataclass(frozen=True)
class Method:
    """A method of the comparison.

    Attributes:
        name: the command-line name.
        title: a human-readable name for tables.
        train: ``train(backbone, split, protocol, seed) -> keras.Model`` returning a trained
            model whose output is logits (the distribution a user gets by default).
        ood_score: name of the recommended OOD score in :mod:`keras_vc.scores`.
        note: what the method's output is, stated in the report.
    """

    name: str
    title: str
    train: Callable
    ood_score: str
    note: str = ""


METHODS = {}


def register(method):
    METHODS[method.name] = method
    return method


def fit_classifier(model, split, protocol, loss, seed, metrics=("accuracy",)):
    """Compiles and fits ``model`` on the split's training data under the protocol (XLA on)."""
    model.compile(optimizer=protocol.make_optimizer(), loss=loss, metrics=list(metrics),
                  jit_compile=True)
    model.fit(split.x_train, split.y_train, batch_size=protocol.batch_size,
              epochs=protocol.epochs, shuffle=True, verbose=0)
    return model


def _train_softmax(backbone, split, protocol, seed):
    model = keras.Sequential(
        [keras.Input(split.input_shape), backbone,
         keras.layers.Dense(split.num_classes, dtype="float32", name="logits")],
        name="softmax_classifier",
    )
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    return fit_classifier(model, split, protocol, loss, seed)


register(Method(
    name="softmax",
    title="Dense + softmax",
    train=_train_softmax,
    ood_score="max_probability",
    note="softmax of the Dense logits",
))
