"""Two-Stage Training (TST) and V-TST: a new head trained on the frozen features of a trained model.

(One job, cutting a trained model and training its new head; a third of the file is the
documentation of the protocol and of where it departs from the reference.)

Jordahn & Olmos, "Decoupling Feature Extraction and Classification Layers for Calibrated Neural
Networks", ICML 2024 (arXiv 2405.01196; reference code
``MJordahn/Decoupled-Layers-for-Calibrated-NNs``).
Stage 1 is any trained classifier. Stage 2 cuts it at a feature layer ``h(x)``, freezes everything
below, discards the rest and trains a new head from scratch:

* ``head="tst"``: :class:`keras_vc.layers.BottleneckHead`, ``D -> 3Z -> ReLU -> Z -> K`` with
  cross-entropy;
* ``head="vtst"``: :class:`keras_vc.layers.VariationalHead`, a Gaussian ``q(z | x)`` with a
  variance bounded in (0, 1), an ``N(0, I)`` prior and loss ``CE + kl_weight * mean over batch
  of the KL averaged over latent dimensions`` (``kl_weight = 1`` in the reference);
  predictions average the class probabilities of ``num_samples`` draws.

The checkpoint of the epoch with the lowest **validation NLL** is kept (and training stops early
after ``patience`` epochs without improvement), as the authors advise (README; Algorithm 1 of the
paper says otherwise and is wrong on this point, per the authors).

**When V-TST helps.** The paper trains stage 2 on large training sets (CIFAR-10/100, SVHN:
tens of thousands of examples), where the KL is small next to the evidence of the data. On small
training sets the KL pulls the latent towards the prior, and averaging the probabilities of
``num_samples`` draws flattens them further: V-TST is then **underconfident**. To tell, fit a
temperature on held-out data (:func:`keras_vc.calibration.find_temperature` or
``fit_temperature``): a fitted ``T < 1`` (the logits must be sharpened) means underconfidence.
On small data lower ``kl_weight`` (0.1 or 0.01) or use ``head="tst"``. Check too that stage 2
trained at all: the reference's Adam at 1e-4, batch 256 and 40 epochs are only a few hundred
steps on a small training set, too few for the head to converge (its validation accuracy stays
far below stage 1's; a larger learning rate or more epochs fix that, the KL weight does not).

The backend does not matter: stage 2 trains with ``model.fit`` (on array data, a
``tf.data.Dataset`` built once on TensorFlow, the arrays themselves on JAX and PyTorch), so
every backend runs it, without TensorFlow on the others.

Choices that differ from the reference code, on purpose:

* **Frozen BatchNorm runs in inference mode** (Keras semantics of ``trainable=False``): it
  normalises with its moving statistics, which stay unchanged. The reference freezes the body with
  ``requires_grad=False`` but keeps the module in train mode, so its BatchNorm layers normalise with
  batch statistics and keep updating their running statistics in stage 2. With Keras semantics
  ``h(x)`` is the same function in stage 2 as at stage-1 inference, and the stage-1 model is left
  exactly as it was. Other training-dependent layers of the body (Dropout) keep their Keras
  behaviour: active in training, like the reference's train-mode body.
* **The body is copied, not shared**: the stage-2 model holds a frozen copy of the stage-1 layers
  below the feature layer (same weights). Sharing the layer objects would require setting
  ``trainable=False`` on stage-1's own layers and variables; the copy leaves stage 1 untouched
  (weights, BatchNorm statistics and trainable flags) at the cost of one copy of the body's
  weights.
* **Features are computed once** when the data are arrays and the frozen body gives the same
  output in training and inference mode (no Dropout or random augmentation in it): the head is then
  trained on cached features, which gives the same model as training through the body, many times
  faster. Cached-feature training therefore sees **no data augmentation** (the reference
  augments the stage-2 inputs; augmentation layers in the body make it random, so such a body
  is trained through instead). Pass ``cache_features=False`` to always train through the body.
* **Model selection** (V-TST): the ``num_samples``-draw validation NLL with early stopping
  (``patience``), where the reference keeps the best of all epochs by the single-draw
  validation CE + KL (its training loss). ``patience=None`` trains every epoch, as the
  reference, and still selects by the ``num_samples``-draw NLL.
* The training data are shuffled every epoch (the reference's DataLoaders use ``shuffle=False``).

Example::

    stage1 = ...  # a trained keras.Model whose layer "features" outputs (batch, D)
    stage2 = keras_vc.two_stage.retrain_head(
        stage1, features="features", head="vtst", latent_dim=128,
        train_data=(x_train, y_train), validation_data=(x_val, y_val), epochs=40)
    probs = keras.ops.softmax(stage2.predict(x_test))   # the output is float32 logits
"""

import sys

import keras
import numpy as np

from keras_vc import _labels
from keras_vc import _validation
from keras_vc.layers.bottleneck_head import BottleneckHead
from keras_vc.layers.variational_head import VariationalHead

HEADS = ("tst", "vtst")
DEFAULT_LEARNING_RATE = 1e-4
DEFAULT_KL_WEIGHT = 1.0  # the reference's loss: CE + the KL averaged over latent dimensions
NLL_METRIC = "nll"


def _check_model(model):
    if not isinstance(model, keras.Model):
        raise ValueError(f"`model` must be a keras.Model, got {type(model).__name__}.")
    if not model.built:
        raise ValueError(
            f"`model` ({model.name!r}) is not built: give it an `keras.Input`, call it on data "
            "or call `model.build(input_shape)` before retraining its head.")
    graph = getattr(model, "_functional", None) if isinstance(model, keras.Sequential) else model
    if isinstance(model, keras.Sequential) and graph is None:
        raise ValueError(
            f"`model` ({model.name!r}) has no known input shape: start the Sequential model with "
            "a `keras.Input` or call `model.build(input_shape)`.")
    if not hasattr(graph, "_nodes_by_depth"):
        raise ValueError(
            f"`model` ({model.name!r}, a {type(model).__name__}) must be a Sequential or "
            "functional model: a subclassed model has no layer graph to cut.")
    return graph


def _feature_layer(model, features):
    layers = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
    names = [layer.name for layer in layers]
    if isinstance(features, str):
        if features not in names:
            raise ValueError(
                f"`features`: model {model.name!r} has no layer named {features!r}; its layers "
                f"are {names}.")
        return layers[names.index(features)]
    if isinstance(features, bool) or not isinstance(features, (int, np.integer)):
        raise ValueError(
            f"`features` must be a layer name (str) or index (int), got {features!r}.")
    if not -len(layers) <= features < len(layers):
        raise ValueError(
            f"`features` index {features} is out of range for model {model.name!r}, which has "
            f"{len(layers)} layers (not counting inputs): {names}.")
    return layers[int(features)]


def _feature_tensor(graph, layer):
    nodes = [node for depth_nodes in graph._nodes_by_depth.values() for node in depth_nodes
             if node.operation is layer]
    if len(nodes) != 1:
        raise ValueError(
            f"`features`: layer {layer.name!r} is called {len(nodes)} times in the model; pick a "
            "layer that is called once.")
    outputs = nodes[0].outputs
    if len(outputs) != 1:
        raise ValueError(
            f"`features`: layer {layer.name!r} has {len(outputs)} outputs; pick a layer with one.")
    tensor = outputs[0]
    if len(tensor.shape) != 2 or tensor.shape[-1] is None:
        raise ValueError(
            f"`features`: layer {layer.name!r} outputs shape {tuple(tensor.shape)}; the heads need "
            "(batch, D) feature vectors. Cut at a Flatten or global pooling layer.")
    return tensor


def frozen_feature_extractor(model, features):
    """A frozen copy of ``model`` from its inputs up to the output of the ``features`` layer.

    The copy has the same weights (BatchNorm moving statistics included) and ``trainable=False``,
    so its BatchNorm layers run in inference mode. ``model`` itself is not modified.

    Args:
        model: a built Sequential or functional ``keras.Model``.
        features: name or index (in ``model.layers``, input layers not counted) of the layer
            whose output, of shape ``(batch, D)``, is the feature vector.

    Returns:
        A ``keras.Model`` mapping ``model``'s inputs to the features, with fresh inputs of
        unspecified batch size.
    """
    return _extract(model, _check_model(model), features)


def _extract(model, graph, features):
    layer = _feature_layer(model, features)
    tensor = _feature_tensor(graph, layer)
    inputs = list(graph.inputs)
    if any(tensor is t for t in inputs):
        raise ValueError(f"`features`: layer {layer.name!r} is an input, not a feature layer.")
    view = keras.Model(inputs[0] if len(inputs) == 1 else inputs, tensor)
    fresh = [keras.Input(batch_shape=(None,) + tuple(t.shape[1:]), dtype=t.dtype,
                         name=t._keras_history.operation.name) for t in inputs]
    try:
        copy = keras.models.clone_model(view, input_tensors=fresh[0] if len(fresh) == 1 else fresh)
        copy.set_weights(view.get_weights())
    except Exception as error:
        raise ValueError(
            f"`model`: the layers below {layer.name!r} could not be copied ({error}). Every layer "
            "of the feature extractor must be serializable (get_config / from_config).") from error
    body = keras.Model(copy.inputs[0] if len(fresh) == 1 else copy.inputs, copy.outputs[0],
                       name=f"{model.name}_features")
    body.trainable = False
    return body


def _num_classes(model, num_classes):
    if num_classes is not None:
        return _validation.check_int(num_classes, "num_classes", minimum=2)
    graph = model._functional if isinstance(model, keras.Sequential) else model
    outputs = graph.outputs
    last = outputs[0].shape[-1] if len(outputs) == 1 and len(outputs[0].shape) == 2 else None
    if last is None or last < 2:
        raise ValueError(
            f"`num_classes` could not be read from the output of `model` ({model.name!r}); pass "
            "it explicitly.")
    return int(last)


def _check_head_arguments(model, head, latent_dim, num_classes, hidden_units, num_samples, seed,
                          kl_weight):
    """The one validation of what :func:`build_stage_two` and :func:`retrain_head` share
    (``model`` already checked)."""
    _validation.check_choice(head, "head", HEADS)
    arguments = dict(
        head=head,
        latent_dim=_validation.check_int(latent_dim, "latent_dim", minimum=1),
        num_samples=_validation.check_int(num_samples, "num_samples", minimum=1),
        hidden_units=(None if hidden_units is None
                      else _validation.check_int(hidden_units, "hidden_units", minimum=1)),
        seed=None if seed is None else _validation.check_int(seed, "seed", minimum=0),
        kl_weight=_validation.check_float(kl_weight, "kl_weight", minimum=0.0),
    )
    if head == "tst" and arguments["kl_weight"] != DEFAULT_KL_WEIGHT:
        raise ValueError(f"`kl_weight` applies to head='vtst' only (TST has no KL term), got "
                         f"{kl_weight} with head='tst'.")
    arguments["num_classes"] = _num_classes(model, num_classes)
    return arguments


def _assemble(model, graph, features, head, latent_dim, num_classes, hidden_units, num_samples,
              seed, kl_weight):
    """The stage-2 model from validated arguments."""
    body = _extract(model, graph, features)
    if head == "tst":
        new_head = BottleneckHead(num_classes, latent_dim, hidden_units=hidden_units,
                                  name="tst_head")
    else:
        new_head = VariationalHead(num_classes, latent_dim, num_samples=num_samples,
                                   hidden_units=hidden_units, seed=seed, kl_weight=kl_weight,
                                   name="vtst_head")
    inputs = body.inputs[0] if len(body.inputs) == 1 else body.inputs
    return keras.Model(inputs, new_head(body(inputs)), name=f"{model.name}_{head}")


def build_stage_two(model, features, head="tst", latent_dim=128, num_classes=None,
                    hidden_units=None, num_samples=10, seed=None,
                    kl_weight=DEFAULT_KL_WEIGHT):
    """The stage-2 model, untrained: ``model``'s inputs -> frozen features -> a new head.

    Args:
        model: the trained stage-1 model (built Sequential or functional); it is not modified.
        features: name or index of the layer whose ``(batch, D)`` output is the feature vector.
        head: ``"tst"`` (:class:`~keras_vc.layers.BottleneckHead`) or ``"vtst"``
            (:class:`~keras_vc.layers.VariationalHead`).
        latent_dim: width ``Z`` of the head's latent layer (>= 1).
        num_classes: number of classes; ``None`` reads it from ``model``'s output.
        hidden_units: hidden width of the head; ``None`` means ``3 * latent_dim``.
        num_samples: V-TST draws averaged at inference (>= 1; 1 uses the posterior mean).
        seed: V-TST sampling seed (``None``: random).
        kl_weight: V-TST weight of the KL term (>= 0; 1 as in the reference); must stay 1 for
            ``head="tst"``.

    Returns:
        An uncompiled ``keras.Model`` whose layers are the inputs, the frozen feature extractor
        (``model.layers[-2]``) and the head (``model.layers[-1]``); its output is float32 logits.

    Raises:
        ValueError: for a model that cannot be cut (not built, subclassed, no such layer) or a
            bad argument.
    """
    graph = _check_model(model)
    arguments = _check_head_arguments(model, head, latent_dim, num_classes, hidden_units,
                                      num_samples, seed, kl_weight)
    return _assemble(model, graph, features, **arguments)


def _is_dataset(data):
    # A tf.data.Dataset can only exist once TensorFlow is imported: no import here, so that
    # the other backends never load TensorFlow.
    tf = sys.modules.get("tensorflow")
    return tf is not None and isinstance(data, tf.data.Dataset)


def _check_data(data, name, num_classes):
    """Returns ``("arrays", (x, y))`` or ``("dataset", dataset, one_hot)``."""
    if data is None:
        raise ValueError(
            f"`{name}` is required: stage 2 keeps the checkpoint with the lowest validation NLL."
            if name == "validation_data" else f"`{name}` is required.")
    if _is_dataset(data):
        spec = data.element_spec
        if not isinstance(spec, tuple) or len(spec) not in (2, 3):
            raise ValueError(
                f"`{name}` must be a batched tf.data.Dataset of (x, y) or (x, y, sample_weight) "
                f"tuples; its elements are {spec}.")
        label_shape = spec[1].shape
        if label_shape.rank is None:
            raise ValueError(
                f"`{name}`: labels of unknown rank must be batched class ids (batch,) or "
                f"one-hot rows (batch, {num_classes}).")
        layout = _labels.label_layout(label_shape.as_list(), num_classes, f"{name} labels")
        return "dataset", data, layout == _labels.ONE_HOT
    if not isinstance(data, (tuple, list)) or len(data) != 2:
        raise ValueError(
            f"`{name}` must be a tuple (x, y) of arrays or a batched tf.data.Dataset, got "
            f"{type(data).__name__}.")
    x, y = data
    if isinstance(x, (list, tuple, dict)):
        raise ValueError(f"`{name}`: pass multi-input data as a tf.data.Dataset.")
    x = _validation.to_numpy(x, f"{name}[0]")
    y = _validation.check_labels(y, num_classes, num_samples=len(x), name=f"{name}[1]")
    return "arrays", (x, y), False


def _is_deterministic(body, x):
    sample = x[: min(len(x), 64)]
    training = keras.ops.convert_to_numpy(body(sample, training=True))
    inference = keras.ops.convert_to_numpy(body(sample, training=False))
    return np.array_equal(training, inference)


def _compile(model, optimizer, one_hot, jit_compile, steps_per_execution=1):
    if one_hot:
        loss = keras.losses.CategoricalCrossentropy(from_logits=True)
        nll = keras.metrics.CategoricalCrossentropy(from_logits=True, name=NLL_METRIC)
        accuracy = keras.metrics.CategoricalAccuracy(name="accuracy")
    else:
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        nll = keras.metrics.SparseCategoricalCrossentropy(from_logits=True, name=NLL_METRIC)
        accuracy = keras.metrics.SparseCategoricalAccuracy(name="accuracy")
    model.compile(optimizer=optimizer, loss=loss, metrics=[nll, accuracy], jit_compile=jit_compile,
                  steps_per_execution=steps_per_execution)


def _array_dataset(x, y, batch_size, shuffle):
    """On TensorFlow, array data become a ``tf.data.Dataset`` built once (reshuffled every epoch
    with a seed from ``keras.utils.set_random_seed``): Keras rebuilds the input pipeline of NumPy
    arrays at every epoch, which costs more than an epoch of a small head (stage 2 took 1.5 times
    as long). The other backends take the arrays themselves, with no TensorFlow."""
    import tensorflow as tf

    data = tf.data.Dataset.from_tensor_slices((x, y))
    if shuffle:
        data = data.shuffle(len(x), reshuffle_each_iteration=True)
    return data.batch(batch_size)


def _training_inputs(x, y, batch_size):
    """The training data arguments of ``fit`` for arrays, shuffled every epoch."""
    if keras.backend.backend() == "tensorflow":
        return dict(x=_array_dataset(x, y, batch_size, shuffle=True), shuffle=False)
    return dict(x=x, y=y, batch_size=batch_size, shuffle=True)


def _validation_inputs(x, y, batch_size):
    """The ``validation_data`` of ``fit`` for arrays."""
    if keras.backend.backend() == "tensorflow":
        return _array_dataset(x, y, batch_size, shuffle=False)
    return x, y


def retrain_head(model, features, head="tst", latent_dim=128, train_data=None,
                 validation_data=None, epochs=40, optimizer=None, batch_size=256, num_samples=10,
                 patience=10, hidden_units=None, num_classes=None, seed=None, cache_features=True,
                 jit_compile="auto", steps_per_execution=1, verbose=0,
                 kl_weight=DEFAULT_KL_WEIGHT):
    """Stage 2 of TST / V-TST: trains a new head on the frozen features of a trained model.

    Builds :func:`build_stage_two`, trains the head with cross-entropy (plus, for V-TST,
    ``kl_weight`` times the KL averaged over latent dimensions) and keeps the weights of the
    epoch with the lowest validation NLL (``val_nll``; for V-TST the NLL of the
    ``num_samples``-draw predictive, never the loss with its KL term; the reference keeps the
    best epoch by single-draw CE + KL). Training stops after ``patience`` epochs without
    improvement. V-TST is made for large training sets and tends to be underconfident on small
    ones (a fitted temperature ``T < 1``): see the module docstring.

    Args:
        model: the trained stage-1 model (built Sequential or functional). It is not modified:
            the stage-2 model holds a frozen copy of its layers below ``features``.
        features: name or index (in ``model.layers``, input layers not counted) of the layer
            whose ``(batch, D)`` output is the feature vector ``h(x)``.
        head: ``"tst"`` (MLP head, cross-entropy) or ``"vtst"`` (variational head).
        latent_dim: width ``Z`` of the latent layer (>= 1); the reference uses 128 on CIFAR-10.
        train_data: ``(x, y)`` arrays (labels as class ids or one-hot rows) or a batched
            ``tf.data.Dataset`` of ``(x, y)``; arrays are shuffled every epoch. Cached-feature
            training (see ``cache_features``) sees no data augmentation.
        validation_data: the same forms; required (checkpoint selection on its NLL).
        epochs: maximum number of epochs (>= 1); the reference trains 40.
        optimizer: a Keras optimizer or its name; ``None`` means Adam with learning rate 1e-4,
            as the reference.
        batch_size: batch size for array data (ignored for datasets); the reference uses 256.
        num_samples: V-TST draws averaged at inference (>= 1; 1 uses the posterior mean).
        patience: epochs without a lower validation NLL before stopping; ``None`` trains all
            ``epochs`` and still restores the best epoch.
        hidden_units: hidden width of the head; ``None`` means ``3 * latent_dim``.
        num_classes: number of classes; ``None`` reads it from ``model``'s output.
        seed: V-TST sampling seed (``None``: random).
        cache_features: compute the frozen features once when the data are arrays and the body
            is deterministic in training mode (same result, faster).
        jit_compile: passed to ``compile``.
        steps_per_execution: passed to ``compile`` (the number of batches run per call of the
            compiled step; on small heads per-step dispatch dominates, and 16 makes stage 2 about
            twice as fast with the same updates).
        verbose: passed to ``fit``.
        kl_weight: V-TST weight of the KL term (>= 0); 1, the default, is the reference's loss.
            Smaller values make V-TST less underconfident on small training sets. Must stay 1
            for ``head="tst"``.

    Returns:
        The trained, compiled stage-2 ``keras.Model`` (inputs -> frozen features -> head; float32
        logits). Its ``history`` attribute holds the ``keras.callbacks.History`` of stage 2.

    Raises:
        ValueError: for a model that cannot be cut, a bad argument, or data of the wrong form.
    """
    graph = _check_model(model)
    arguments = _check_head_arguments(model, head, latent_dim, num_classes, hidden_units,
                                      num_samples, seed, kl_weight)
    epochs = _validation.check_int(epochs, "epochs", minimum=1)
    batch_size = _validation.check_int(batch_size, "batch_size", minimum=1)
    if patience is not None:
        patience = _validation.check_int(patience, "patience", minimum=1)
    steps_per_execution = _validation.check_int(steps_per_execution, "steps_per_execution",
                                                minimum=1)
    num_classes = arguments["num_classes"]
    train = _check_data(train_data, "train_data", num_classes)
    validation = _check_data(validation_data, "validation_data", num_classes)
    one_hot = train[-1]
    if validation[-1] != one_hot:
        raise ValueError("`train_data` and `validation_data` must both use class ids or both "
                         "one-hot labels.")
    stage2 = _assemble(model, graph, features, **arguments)
    optimizer = (keras.optimizers.Adam(DEFAULT_LEARNING_RATE) if optimizer is None
                 else keras.optimizers.get(optimizer))
    body, new_head = stage2.layers[-2], stage2.layers[-1]
    early_stopping = keras.callbacks.EarlyStopping(
        monitor=f"val_{NLL_METRIC}", mode="min", patience=epochs if patience is None else patience,
        restore_best_weights=True)
    arrays = train[0] == "arrays" and validation[0] == "arrays"
    if arrays and cache_features and _is_deterministic(body, train[1][0]):
        (x, y), (x_val, y_val) = train[1], validation[1]
        x = body.predict(x, batch_size=max(batch_size, 256), verbose=0)
        x_val = body.predict(x_val, batch_size=max(batch_size, 256), verbose=0)
        feature_input = keras.Input(x.shape[1:], dtype=x.dtype, name="features")
        trained = keras.Model(feature_input, new_head(feature_input), name=f"{stage2.name}_head")
    else:
        trained = stage2
        x = y = x_val = y_val = None
        if train[0] == "arrays":
            x, y = train[1]
        if validation[0] == "arrays":
            x_val, y_val = validation[1]
    _compile(trained, optimizer, one_hot, jit_compile, steps_per_execution)
    history = trained.fit(**(_training_inputs(x, y, batch_size) if x is not None
                             else dict(x=train[1])),
                          validation_data=(_validation_inputs(x_val, y_val, batch_size)
                                           if x_val is not None else validation[1]),
                          epochs=epochs, callbacks=[early_stopping], verbose=verbose)
    if trained is not stage2:
        _compile(stage2, optimizer, one_hot, jit_compile, steps_per_execution)
    stage2.history = history
    return stage2
