"""SNNL entanglement: softmax head + soft nearest neighbor loss maximised on the backbone's hidden
layers (Frosst, Papernot & Hinton, ICML 2019), with DkNN credibility as an extra OOD score."""

import keras

from keras_vc import dknn as dknn_lib
from keras_vc.benchmark.methods import Method
from keras_vc.benchmark.methods import fit_classifier
from keras_vc.benchmark.methods import register
from keras_vc.models import EntanglementModel

ALPHA = 1.0
TEMPERATURE = 100.0
DKNN_K = 75


def hidden_layer_names(backbone):
    """The (built) backbone's layers that have weights (Dense / Conv), in order."""
    return [layer.name for layer in backbone.layers if layer.weights]


def build_model(backbone, split):
    """The softmax baseline's classifier (same backbone, same head) wrapped for SNNL."""
    classifier = keras.Sequential(
        [keras.Input(split.input_shape), backbone,
         keras.layers.Dense(split.num_classes, dtype="float32", name="logits")],
        name="snnl_classifier",
    )
    return EntanglementModel(classifier, hidden_layer_names(backbone), alpha=ALPHA,
                             direction="maximize", temperature=TEMPERATURE,
                             optimize_temperature=True, name="snnl_entanglement")


def train(backbone, split, protocol, seed, context):
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    return fit_classifier(build_model(backbone, split), split, protocol, loss, seed=seed)


def extra_scores(model, split):
    """DkNN over the SNNL layers and the logits, fitted on the training split and calibrated on
    the validation split; returns ``score_fn(x) -> {"dknn_credibility": credibility}``."""
    k = min(DKNN_K, len(split.y_train))
    dknn = dknn_lib.DeepKNN(model, list(model.layer_names) + ["logits"], k=k,
                            num_classes=split.num_classes)
    dknn.fit(split.x_train, split.y_train)
    dknn.calibrate(split.x_val, split.y_val)

    def score_fn(x):
        return {"dknn_credibility": dknn.predict(x)["credibility"]}

    return score_fn


register(Method(
    name="snnl",
    title=f"Dense + softmax, SNNL maximised (alpha {ALPHA:g})",
    train=train,
    ood_score="max_probability",
    note="softmax of the Dense logits (SNNL only shapes the hidden layers); DkNN credibility "
         "over the hidden layers and the logits as an extra OOD score",
    extra_scores=extra_scores,
))
