"""The methods ``keras-vc compare`` trains, each under one fixed protocol.

A method turns a freshly built backbone (identical initial weights for every method of a seed)
into a trained classifier whose output is logits. Each method lives in its own module of this
package and registers itself with :func:`register`; the softmax baseline is the reference every
other method is paired with (same split, same backbone initialisation, same batch order).
"""

import dataclasses
from typing import Callable, Optional

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
        train: ``train(backbone, split, protocol, seed, context) -> keras.Model`` returning a
            trained model whose output is logits (what a user gets by default). ``context`` is a
            dict of the models already trained for this dataset and seed, keyed by method name
            (two-stage methods start from ``context["softmax"]``).
        ood_score: name of the recommended OOD score; the score itself comes from
            ``keras_vc.scores.recommended(model)`` (the output layer's ``ood_score``) or, for a
            plain output, from ``keras_vc.scores.get(ood_score)``.
        note: which probabilities are scored, stated in the report.
        extra_scores: optional ``extra_scores(model, split) -> score_fn`` where
            ``score_fn(x) -> {score_name: scores}`` adds method-specific OOD scores (DkNN).
        requires: names of methods that must be trained first in the same seed.
    """

    name: str
    title: str
    train: Callable
    ood_score: str
    note: str = ""
    extra_scores: Optional[Callable] = None
    requires: tuple = ()


METHODS = {}


def register(method):
    METHODS[method.name] = method
    return method


def fit_classifier(model, split, protocol, loss, metrics=("accuracy",)):
    """Compiles and fits ``model`` on the split's training data under the protocol (XLA on)."""
    model.compile(optimizer=protocol.make_optimizer(), loss=loss, metrics=list(metrics),
                  jit_compile=True)
    model.fit(split.x_train, split.y_train, batch_size=protocol.batch_size,
              epochs=protocol.epochs, shuffle=True, verbose=0)
    return model


from keras_vc.benchmark.methods import softmax  # noqa: E402,F401
from keras_vc.benchmark.methods import two_stage  # noqa: E402,F401
from keras_vc.benchmark.methods import distance  # noqa: E402,F401
from keras_vc.benchmark.methods import variational  # noqa: E402,F401
from keras_vc.benchmark.methods import entanglement  # noqa: E402,F401
