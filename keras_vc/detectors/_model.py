"""What a detector reads from a Keras classifier: a named layer's activations (or the input of the
head), the output logits, the final Dense layer's weights, and batches of (x, y) data."""

import collections

import keras
import numpy as np
from keras import ops

from keras_vc import _activations
from keras_vc import _validation

POOLINGS = (None, "avg", "flatten")

ScoreInput = collections.namedtuple("ScoreInput", ["kind", "layer", "pooling", "log_outputs"])
ScoreInput.__doc__ = """What ``score_tensor`` takes.

``kind``: ``"logits"`` (the model output) or ``"features"`` (activations of ``layer``; ``None`` =
the input of the head). ``pooling``: how activations of rank > 2 become (batch, D). ``log_outputs``:
the model outputs probabilities, so ``prepare_tensor`` takes their log first."""


def head_layer(model):
    """The layer that produces the classifier's output (flattened through nested Sequentials)."""
    model = _activations.unwrap(model)
    if isinstance(model, keras.Sequential):
        return _activations._flat_sequential_layers(model)[-1]
    _, outputs = _validation.check_graph_model(model, "its head is read from its graph.")
    return outputs[0]._keras_history[0]


def outputs_probabilities(model):
    """True when the model ends in a softmax (a ``Softmax`` layer or ``activation="softmax"``)."""
    head = head_layer(model)
    activation = getattr(head, "activation", None)
    return (isinstance(head, keras.layers.Softmax)
            or getattr(activation, "__name__", None) == "softmax")


def num_outputs(model):
    """Width of the classifier's output (the number of classes)."""
    _, outputs = _validation.check_graph_model(
        _activations.unwrap(model), "its output width is read from its graph.")
    shape = tuple(outputs[0].shape)
    if len(shape) != 2 or shape[-1] is None or shape[-1] < 2:
        raise ValueError(f"`model` must output (batch, K) logits with K >= 2, got {shape}.")
    return int(shape[-1])


def dense_head_weights(model, detector):
    """``(kernel (D, K), bias (K,))`` of the final Dense layer, as float64 NumPy arrays."""
    head = head_layer(model)
    activation = getattr(getattr(head, "activation", None), "__name__", None)
    if not isinstance(head, keras.layers.Dense) or activation not in ("linear", "softmax"):
        raise ValueError(
            f"{detector} needs the weights W, b of a final Dense layer (linear or softmax); the "
            f"model's last layer '{head.name}' is a {type(head).__name__}"
            f"{'' if activation is None else ' with activation ' + activation}. Use Mahalanobis, "
            "RelativeMahalanobis or KNN on the same features, or HeadScore, instead.")
    kernel = ops.convert_to_numpy(head.kernel).astype(np.float64)
    bias = (ops.convert_to_numpy(head.bias).astype(np.float64) if head.use_bias
            else np.zeros(kernel.shape[1]))
    return kernel, bias


def feature_model(model, layer):
    """A model ``x -> [activations, outputs]``; ``layer=None``: the input of the head.

    Returns:
        ``(extractor, layer_name)``, the name of the layer whose output is read.
    """
    model = _activations.unwrap(model)
    inputs, outputs = _validation.check_graph_model(
        model, "its layers' outputs are read from its graph, and a subclassed model has none.")
    if layer is not None:
        if not isinstance(layer, str) or not layer:
            raise ValueError(f"`layer` must be a layer name or None, got {layer!r}.")
        return _activations.activation_model(model, [layer], name="detector_features"), layer
    if isinstance(model, keras.Sequential):
        flat = _activations._flat_sequential_layers(model)
        head = model.layers[-1]
        head_size = len(_activations._flat_sequential_layers(head)) if isinstance(
            head, keras.Sequential) else 1
        if len(flat) <= head_size:
            raise ValueError("`model` has no layer before its head; pass `layer`.")
        name = flat[-head_size - 1].name
        return _activations.activation_model(model, [name], name="detector_features"), name
    head = outputs[0]._keras_history[0]
    try:
        features = head.input
    except (AttributeError, ValueError) as error:
        raise ValueError(f"Could not read the input of the head '{head.name}': {error}; pass "
                         "`layer`.") from error
    if isinstance(features, (list, tuple)):
        raise ValueError(f"The head '{head.name}' has several inputs; pass `layer`.")
    name = features._keras_history[0].name
    return keras.Model(inputs[0], [features, outputs[0]], name="detector_features"), name


def check_feature_rank(extractor, layer_name, pooling):
    """Raises unless the layer's activations are (batch, D), or ``pooling`` makes them so."""
    shape = tuple(extractor.outputs[0].shape)
    if len(shape) < 2:
        raise ValueError(f"Layer '{layer_name}' outputs shape {shape}; expected rank 2 "
                         "(batch, features).")
    if len(shape) > 2 and pooling is None:
        raise ValueError(
            f"Layer '{layer_name}' outputs rank-{len(shape)} activations {shape}; expected rank 2 "
            "(batch, features). Pass pooling='avg' (mean over the axes between batch and "
            "channels, channels-last) or pooling='flatten'.")
    if len(shape) == 2 and pooling == "avg":
        raise ValueError(f"pooling='avg' needs activations of rank > 2; layer '{layer_name}' "
                         f"outputs {shape}.")


def pool(tensor, pooling):
    """Activations of any rank to (batch, D) with ``keras.ops``."""
    if pooling == "avg":
        return ops.mean(tensor, axis=tuple(range(1, len(tensor.shape) - 1)))
    if pooling == "flatten":
        return ops.reshape(tensor, (ops.shape(tensor)[0], -1))
    return tensor


def batches(x, y, batch_size, need_labels):
    """Yields ``(x_batch, y_batch or None)`` from arrays or from an iterable of (x, y) batches
    (``tf.data.Dataset``, ``keras.utils.PyDataset``, a generator)."""
    batch_size = _validation.check_int(batch_size, "batch_size", minimum=1)
    if isinstance(x, keras.utils.PyDataset):
        iterable = (x[i] for i in range(len(x)))
    elif isinstance(x, np.ndarray) or hasattr(x, "shape"):
        array = _validation.to_numpy(x, "x")
        if array.ndim < 1 or array.shape[0] == 0:
            raise ValueError(f"`x` must be a non-empty batch of inputs, got shape {array.shape}.")
        if need_labels and y is None:
            raise ValueError("`y` (labels) is required by this detector.")
        if y is not None and len(y) != array.shape[0]:
            raise ValueError(f"`y` has {len(y)} entries but `x` has {array.shape[0]} rows.")
        for start in range(0, array.shape[0], batch_size):
            yield (array[start:start + batch_size],
                   None if y is None else _validation.to_numpy(y, "y")[start:start + batch_size])
        return
    elif hasattr(x, "__iter__"):
        if y is not None:
            raise ValueError("Pass `y` only with array `x`; a dataset yields (x, y) itself.")
        iterable = x
    else:
        raise ValueError(f"`x` must be an array, a tf.data.Dataset or a PyDataset, got "
                         f"{type(x).__name__}.")
    count = 0
    for element in iterable:
        if isinstance(element, (tuple, list)):
            x_batch, y_batch = element[0], element[1] if len(element) > 1 else None
        else:
            x_batch, y_batch = element, None
        if need_labels and y_batch is None:
            raise ValueError("This detector needs labels: the dataset must yield (x, y) batches.")
        count += 1
        yield x_batch, (None if y_batch is None else _validation.to_numpy(y_batch, "y"))
    if count == 0:
        raise ValueError("`x` yielded no batches.")
