"""Named hidden-layer activations of a Keras classifier (shared by the entanglement model, the
entanglement monitor and DkNN).

``activation_model(model, layer_names)`` returns a functional model from the classifier's input
to ``[activation of each named layer..., classifier output]``, sharing the classifier's layers
(and weights). Named layers may be top-level layers of a functional or Sequential model, or
layers of Sequential models nested in a Sequential model (the common
``Sequential([Input, backbone, head])`` shape), which are flattened into one chain.
"""

import keras

from keras_vc import _validation


def unwrap(model):
    """The classifier inside a wrapper model (``EntanglementModel``), else the model itself."""
    inner = getattr(model, "classifier", None)
    return inner if isinstance(inner, keras.Model) else model


def check_layer_names(layer_names, name="layer_names"):
    """A non-empty list of distinct layer names."""
    if isinstance(layer_names, str):
        layer_names = [layer_names]
    try:
        layer_names = list(layer_names)
    except TypeError:
        raise ValueError(f"`{name}` must be a list of layer names, got {layer_names!r}.")
    if not layer_names or not all(isinstance(n, str) and n for n in layer_names):
        raise ValueError(f"`{name}` must be a non-empty list of layer names, got {layer_names!r}.")
    if len(set(layer_names)) != len(layer_names):
        raise ValueError(f"`{name}` contains duplicates: {layer_names!r}.")
    return layer_names


def _flat_sequential_layers(model):
    layers = []
    for layer in model.layers:
        if isinstance(layer, keras.Sequential):
            layers.extend(_flat_sequential_layers(layer))
        else:
            layers.append(layer)
    return layers


def _all_layer_names(model):
    names = []
    for layer in model.layers:
        names.append(layer.name)
        if isinstance(layer, keras.Sequential):
            names.extend(_all_layer_names(layer))
    return names


def activation_model(model, layer_names, name=None):
    """A functional model ``x -> [activations of layer_names..., model output]``.

    Args:
        model: a built functional or Sequential ``keras.Model`` with one input and one output (a
            wrapper such as ``EntanglementModel`` is unwrapped to its classifier).
        layer_names: names of the layers whose outputs to expose, in order.
        name: name of the returned model.

    Returns:
        A ``keras.Model`` sharing ``model``'s layers.

    Raises:
        ValueError: a name that is not a layer of ``model``, or a model whose graph is unknown
            (subclassed and never built on an ``Input``).
    """
    model = unwrap(model)
    layer_names = check_layer_names(layer_names)
    inputs, outputs = _validation.check_graph_model(
        model, "its layers' outputs are read from its graph, and a subclassed model has none.")
    if len(inputs) != 1 or len(outputs) != 1:
        raise ValueError(f"`model` must have one input and one output, got {len(inputs)} inputs "
                         f"and {len(outputs)} outputs.")
    top_level = {layer.name: layer for layer in model.layers}
    if all(n in top_level for n in layer_names):
        try:
            hidden = [top_level[n].output for n in layer_names]
        except (AttributeError, ValueError) as error:
            raise ValueError(f"Could not read the output of a layer in {layer_names}: {error} "
                             "(a layer called more than once has no single output).") from error
        return keras.Model(inputs[0], hidden + [outputs[0]], name=name)
    missing = [n for n in layer_names if n not in _all_layer_names(model)]
    if missing or not isinstance(model, keras.Sequential):
        raise ValueError(
            f"`layer_names` {missing or layer_names} not found among the layers of model "
            f"'{model.name}'; available: {_all_layer_names(model)}. Layers of nested models are "
            "reachable only inside Sequential models; build the classifier functionally "
            "otherwise.")
    # Nested Sequential models: re-chain the (already built) layers from a fresh Input.
    x = keras.Input(shape=tuple(inputs[0].shape[1:]), dtype=inputs[0].dtype)
    h, found = x, {}
    for layer in _flat_sequential_layers(model):
        h = layer(h)
        found[layer.name] = h
    return keras.Model(x, [found[n] for n in layer_names] + [h], name=name)


def predict_activations(extractor, x, batch_size=256):
    """Runs an ``activation_model`` on ``x`` in inference mode; returns the hidden activations
    (each flattened to (n, D)) and the model output, as NumPy arrays."""
    batch_size = _validation.check_int(batch_size, "batch_size", minimum=1)
    outputs = extractor.predict(x, batch_size=batch_size, verbose=0)
    hidden = [a.reshape(a.shape[0], -1) for a in outputs[:-1]]
    return hidden, outputs[-1]
