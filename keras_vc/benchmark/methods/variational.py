"""Variational Classification: the softmax layer replaced by ``VariationalSoftmax``."""

import keras

from keras_vc.benchmark.methods import Method
from keras_vc.benchmark.methods import fit_classifier
from keras_vc.benchmark.methods import register
from keras_vc.layers import VariationalSoftmax
from keras_vc.losses import VariationalClassificationLoss


def train(backbone, split, protocol, seed, context):
    """Same backbone, optimizer, epochs and batches as the softmax baseline; the layer's defaults:
    a 32-d Gaussian latent, learned class Gaussians, beta 0.01, consistency term on (0.01)."""
    model = keras.Sequential(
        [keras.Input(split.input_shape), backbone,
         VariationalSoftmax(split.num_classes, seed=seed, name="logits")],
        name="variational_classifier",
    )
    return fit_classifier(model, split, protocol, VariationalClassificationLoss(), seed=seed)


register(Method(
    name="vc",
    title="Variational Classification",
    train=train,
    ood_score="energy",
    note="softmax of the log joint densities log p(z | k) + log pi_k at the posterior mean "
         "(OOD: their logsumexp, the log density log p(z))",
))
