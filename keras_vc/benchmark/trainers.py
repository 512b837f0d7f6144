"""How ``keras-vc compare`` trains a head: the shared protocol and one trainer per kind of head.

A trainer turns a freshly built backbone (identical initial weights for every method of a seed)
into a trained classifier whose output is logits:
``train(backbone, split, protocol, seed, context) -> keras.Model``. Models in ``context`` belong
to the methods already trained for the same dataset, seed and config, keyed by name (two-stage
methods start from ``context["softmax"]``); later methods may read them, so copy weights rather
than training them in place. Which trainer each head uses is stated in
:mod:`keras_vc.benchmark.registry`.

Writing a trainer: build the model around ``backbone`` (already built, do not rebuild or
re-initialise it), compile it with ``**protocol.compile_options()`` and fit it on
``training_dataset(split.x_train, split.y_train, protocol.batch_size, seed)`` for
``protocol.epochs`` epochs, or simply call :func:`fit_classifier`.
"""

import dataclasses

import keras

from keras_vc import dknn as dknn_lib
from keras_vc import two_stage


@dataclasses.dataclass(frozen=True)
class Protocol:
    """Training settings shared by every method of a run (stated in the report).

    Attributes:
        epochs: training epochs (no early stopping for any method).
        batch_size: mini-batch size.
        learning_rate: the optimizer's learning rate.
        optimizer: a Keras optimizer name.
        jit_compile: compile the training step with XLA. Off by default in the benchmark: on
            one CPU thread XLA compilation costs about 6-8 s per model and saves nothing per
            step on these small models (measured on the MNIST-1D CNN).
        steps_per_execution: training steps run per call of the compiled function. These
            models are so small that per-step dispatch dominates: 16 steps per call make an
            MNIST-1D CNN epoch about 40% faster, with exactly the same updates.
    """

    epochs: int = 30
    batch_size: int = 64
    learning_rate: float = 1e-3
    optimizer: str = "adam"
    jit_compile: bool = False
    steps_per_execution: int = 16

    def compile_options(self):
        """Keyword arguments of ``model.compile`` that every method should pass (speed only)."""
        return {"jit_compile": self.jit_compile, "steps_per_execution": self.steps_per_execution}

    def make_optimizer(self):
        return keras.optimizers.get({"class_name": self.optimizer,
                                     "config": {"learning_rate": self.learning_rate}})


def training_dataset(x, y, batch_size, seed=None):
    """A shuffled, batched ``tf.data.Dataset`` of ``(x, y)``, reshuffled every epoch.

    Fitting from a dataset built once costs far less than fitting from NumPy arrays, for which
    Keras rebuilds its input pipeline every epoch (about 40 ms per epoch on these small models,
    more than a whole epoch of digits). With a ``seed`` the batch order of every epoch is fixed
    by it, so the methods of one seed see the same batches.

    Args:
        x: inputs (n, ...), or a tuple/dict of input arrays.
        y: targets (n, ...).
        batch_size: batch size.
        seed: shuffle seed (None: TensorFlow's global seed).

    Returns:
        A ``tf.data.Dataset`` yielding ``(x_batch, y_batch)``.
    """
    import tensorflow as tf

    data = tf.data.Dataset.from_tensor_slices((x, y))
    n = int(data.cardinality())
    return data.shuffle(n, seed=seed, reshuffle_each_iteration=True).batch(batch_size)


def fit_classifier(model, split, protocol, loss, metrics=("accuracy",), seed=None):
    """Compiles and fits ``model`` on the split's training data under the protocol.

    Args:
        model: an unbuilt or built Keras model whose output is logits.
        split: a :class:`keras_vc.data.Split`.
        protocol: the :class:`Protocol` of the run.
        loss: a Keras loss.
        metrics: metrics to compile (reported as the final training figures).
        seed: seed of the batch order (pass the run's seed so that every method of a seed
            sees the same batches).

    Returns:
        The fitted model.
    """
    model.compile(optimizer=protocol.make_optimizer(), loss=loss, metrics=list(metrics),
                  **protocol.compile_options())
    model.fit(training_dataset(split.x_train, split.y_train, protocol.batch_size, seed),
              epochs=protocol.epochs, shuffle=False, verbose=0)  # shuffled by the dataset
    return model


def classifier(backbone, split, layer, seed, model_name):
    """``Input -> backbone -> layer(num_classes, seed, "logits")`` as a ``keras.Sequential``."""
    return keras.Sequential(
        [keras.Input(split.input_shape), backbone, layer(split.num_classes, seed, "logits")],
        name=model_name)


def train_head(backbone, split, protocol, seed, context, layer, loss, model_name):
    """The common trainer: the backbone with the head's output layer, fitted with its loss.

    Same backbone, optimizer, epochs, batch size and batch order as the softmax baseline; only
    the output layer and the loss change. (Bind ``layer``, ``loss`` and ``model_name`` with
    ``functools.partial``: a partial of a module-level function pickles, so the trainer reaches
    the worker processes.)
    """
    model = classifier(backbone, split, layer, seed, model_name)
    return fit_classifier(model, split, protocol, loss(), seed=seed)


# SNNL entanglement (Frosst, Papernot & Hinton, ICML 2019): the softmax baseline's classifier with
# the soft nearest neighbour loss maximised on the backbone's hidden layers.
SNNL_ALPHA = 1.0
SNNL_TEMPERATURE = 100.0
DKNN_K = 75


def hidden_layer_names(backbone):
    """The (built) backbone's layers that have weights (Dense / Conv), in order."""
    return [layer.name for layer in backbone.layers if layer.weights]


def snnl_model(backbone, split, layer, seed=None):
    """The classifier ``backbone -> layer`` wrapped in an ``EntanglementModel`` that maximises
    the SNNL of the backbone's hidden layers (``alpha`` :data:`SNNL_ALPHA`)."""
    from keras_vc.models import EntanglementModel

    return EntanglementModel(
        classifier(backbone, split, layer, seed, "snnl_classifier"),
        hidden_layer_names(backbone), alpha=SNNL_ALPHA, direction="maximize",
        temperature=SNNL_TEMPERATURE, optimize_temperature=True, name="snnl_entanglement")


def train_snnl(backbone, split, protocol, seed, context, layer, loss):
    """The softmax classifier (``layer``, ``loss``) trained with SNNL (:func:`snnl_model`)."""
    return fit_classifier(snnl_model(backbone, split, layer, seed), split, protocol, loss(),
                          seed=seed)


def dknn_scores(model, split):
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


# TST and V-TST (Jordahn & Olmos, ICML 2024): a new head on the frozen softmax baseline.
LATENT_DIM = 128
NUM_SAMPLES = 10


def train_two_stage(backbone, split, protocol, seed, context, head):
    """Stage 2 on the softmax baseline of the same seed, cut at its backbone's output (the
    freshly built ``backbone`` argument is not used)."""
    if "softmax" not in context:
        raise ValueError(f"`{head}` needs the `softmax` method trained first in the same run "
                         "(its stage 1); add softmax to --methods.")
    stage1 = context["softmax"]
    return two_stage.retrain_head(
        stage1, features=stage1.layers[-2].name, head=head, latent_dim=LATENT_DIM,
        train_data=(split.x_train, split.y_train),
        validation_data=(split.x_val, split.y_val), epochs=protocol.epochs,
        optimizer=protocol.make_optimizer(), batch_size=protocol.batch_size,
        num_samples=NUM_SAMPLES, seed=seed, **protocol.compile_options())
