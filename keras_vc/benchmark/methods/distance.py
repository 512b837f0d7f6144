"""IsoMax+ and DisMax: ``DistanceLogits`` trained with ``EntropicCrossEntropy``.

Same backbone, optimizer, epochs, batch size and batch order as the softmax baseline; only the
output layer and the loss change. DisMax runs without fractional probability regularization
(the paper's "DisMax" rows without the dagger): FPR is a per-batch input transform
(:func:`keras_vc.augment.fractional_probability_mix`, images only), which the shared protocol's
array-based ``fit`` does not apply.
"""

import functools

import keras

from keras_vc.benchmark.methods import Method
from keras_vc.benchmark.methods import fit_classifier
from keras_vc.benchmark.methods import register
from keras_vc.layers import DistanceLogits
from keras_vc.losses import EntropicCrossEntropy


def train(backbone, split, protocol, seed, context, mode):
    model = keras.Sequential(
        [keras.Input(split.input_shape), backbone,
         DistanceLogits(split.num_classes, mode=mode, name="logits")],
        name=f"{mode}_classifier",
    )
    return fit_classifier(model, split, protocol, EntropicCrossEntropy(), seed=seed)


def _trainer(mode):
    # A partial of a module-level function pickles, so the method reaches worker processes.
    return functools.partial(train, mode=mode)


_NOTE = ("softmax of the DistanceLogits output (entropic scale 10 inside the layer, T = 1); "
         "OOD score on the reference's raw logits at T = 1")

register(Method(
    name="isomax_plus",
    title="IsoMax+ (DistanceLogits)",
    train=_trainer("isomax_plus"),
    ood_score="max_logit",
    note=_NOTE,
))

register(Method(
    name="dismax",
    title="DisMax (DistanceLogits)",
    train=_trainer("dismax"),
    ood_score="mmles",
    note=_NOTE,
))
