"""The shared layer contract: what every public layer of keras_vc must do the ordinary Keras way.

``check_layer_contract(case, tmp_path)`` runs, in order, and fails with an ``AssertionError``
that names the check:

1. every constructor argument is in ``get_config()``, and ``from_config(get_config())`` gives a
   layer with the same config and, with the same weights, the same outputs;
2. ``keras.saving`` serialization round trip;
3. symbolic call: the output shape equals ``compute_output_shape``;
4. eager call: float32, finite, the shape of ``compute_output_shape``; inference is deterministic;
5. ``fit`` for a few steps with ``jit_compile=True`` gives a finite loss (PyTorch: eagerly,
   see ``JIT_COMPILE``);
6. ``.keras`` save and ``load_model`` in a fresh model give identical inference outputs;
7. ``mixed_float16`` and ``mixed_bfloat16``: building, calling and fitting raise no dtype
   error, the loss is finite and the output stays float32; with the float32 model's weights the
   outputs agree with the float32 model's within ``MIXED_TOLERANCE`` (relative to the largest
   output); a keras_vc head's own weights (not its ``Dense`` sublayers') are read in float32
   (``autocast=False``), and its temperature divides the outputs at full float32 precision
   (``FITTED_TEMPERATURE`` rounds to 1 in float16 and bfloat16);
8. ``model.export()`` reloaded with ``tf.saved_model.load`` serves the same outputs
   (TensorFlow backend only: the SavedModel is TensorFlow's);
9. a keras_vc head's fitted temperature survives ``.keras`` save/load and export bit for bit.

Every check but 8 runs on every backend (``KERAS_BACKEND``).
"""

import dataclasses
import inspect
import os
from typing import Callable, Optional

import keras
import numpy as np

from backends import JIT_COMPILE
from keras_vc.layers import ClassifierHead

# 1 + 2**-12: float16 and bfloat16 round it to 1.0, so a temperature read in half precision
# shows as a 2.4e-4 relative error.
FITTED_TEMPERATURE = np.float32(1.0 + 2.0 ** -12)
# Largest |mixed - float32| / max(1, max |float32|) accepted with the same weights: the
# policy's Dense layers (backbone and head sublayers) compute in 16 bits.
MIXED_TOLERANCE = {"mixed_float16": 1e-2, "mixed_bfloat16": 5e-2}


def _sparse_ce():
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True)


@dataclasses.dataclass
class LayerCase:
    """How to exercise one public layer.

    Attributes:
        name: test id.
        make_layer: returns a fresh, unbuilt layer.
        input_shape: per-sample shape of the layer's input in the contract model.
        num_classes: classes of the labels used for ``fit``.
        make_loss: returns the loss to compile with (default: sparse CE from logits).
        make_model: optional ``(layer, input_shape) -> keras.Model``; the default is
            ``Sequential([Input(input_shape), Dense(16, relu), layer])``.
        make_data: optional ``(num_samples, rng) -> (x, y)``.
        output_is_probability_like: True if the output is logits or probabilities, whose dtype
            must stay float32 under mixed precision.
        atol: tolerance of output comparisons.
    """

    name: str
    make_layer: Callable
    input_shape: tuple
    num_classes: int = 3
    make_loss: Callable = _sparse_ce
    make_model: Optional[Callable] = None
    make_data: Optional[Callable] = None
    output_is_probability_like: bool = True
    atol: float = 1e-5


def _default_model(layer, input_shape):
    return keras.Sequential(
        [keras.Input(input_shape), keras.layers.Dense(16, activation="relu"), layer]
    )


def _data(case, num_samples=32, seed=0):
    rng = np.random.default_rng(seed)
    if case.make_data is not None:
        return case.make_data(num_samples, rng)
    x = rng.normal(size=(num_samples,) + tuple(case.input_shape)).astype("float32")
    y = rng.integers(0, case.num_classes, size=(num_samples,)).astype("int32")
    return x, y


def _build_model(case, layer=None):
    layer = case.make_layer() if layer is None else layer
    make = case.make_model or _default_model
    return make(layer, tuple(case.input_shape)), layer


def _as_numpy(outputs):
    if isinstance(outputs, dict):
        return {k: keras.ops.convert_to_numpy(v) for k, v in outputs.items()}
    if isinstance(outputs, (list, tuple)):
        return [keras.ops.convert_to_numpy(v) for v in outputs]
    return keras.ops.convert_to_numpy(outputs)


def _assert_close(actual, expected, atol, what):
    actual, expected = _as_numpy(actual), _as_numpy(expected)
    if isinstance(expected, dict):
        for key in expected:
            _assert_close(actual[key], expected[key], atol, f"{what}[{key}]")
        return
    if isinstance(expected, list):
        for i, (a, e) in enumerate(zip(actual, expected)):
            _assert_close(a, e, atol, f"{what}[{i}]")
        return
    assert np.shape(actual) == np.shape(expected), (
        f"{what}: shape {np.shape(actual)} != {np.shape(expected)}")
    np.testing.assert_allclose(actual, expected, atol=atol, rtol=1e-5, err_msg=what)


def check_config(case):
    layer = case.make_layer()
    config = layer.get_config()
    parameters = inspect.signature(type(layer).__init__).parameters
    # An argument may be left out of the config only while it holds its default value.
    missing = [
        name for name, p in parameters.items()
        if name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        and name not in config
        and not (p.default is not p.empty and getattr(layer, name, p.default) == p.default)
    ]
    assert not missing, f"config round trip: get_config() of {type(layer).__name__} lacks {missing}"
    clone = type(layer).from_config(config)
    assert clone.get_config() == config, "config round trip: from_config(get_config()) differs"
    # Same weights, same outputs: catches an argument that is stored but not honoured.
    x, _ = _data(case, 8)
    model, original = _build_model(case, layer)
    clone_model, clone = _build_model(case, clone)
    model(x)
    clone_model(x)
    clone_model.set_weights(model.get_weights())
    _assert_close(clone_model(x, training=False), model(x, training=False), case.atol,
                  "config round trip: outputs of the re-created layer")
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert restored.get_config() == config, "serialization round trip: config differs"


def check_calls(case):
    layer = case.make_layer()
    x, _ = _data(case, 8)
    model, layer = _build_model(case, layer)
    eager = model(x, training=False)
    assert not isinstance(eager, (dict, list, tuple)), "eager call: expected a single tensor"
    inner_input_shape = tuple(layer.input.shape) if hasattr(layer, "input") else None
    expected = tuple(layer.compute_output_shape(inner_input_shape))
    assert tuple(eager.shape[1:]) == tuple(expected[1:]), (
        f"eager call: output shape {tuple(eager.shape)} != compute_output_shape {expected}")
    symbolic = layer(keras.Input(inner_input_shape[1:]))
    assert tuple(symbolic.shape[1:]) == tuple(expected[1:]), (
        f"symbolic call: shape {tuple(symbolic.shape)} != compute_output_shape {expected}")
    if case.output_is_probability_like:
        assert keras.backend.standardize_dtype(eager.dtype) == "float32", (
            f"eager call: output dtype {eager.dtype}, expected float32")
    assert np.all(np.isfinite(keras.ops.convert_to_numpy(eager))), "eager call: non-finite output"
    _assert_close(model(x, training=False), eager, 0.0, "inference is not deterministic")


def _fit(model, case, x, y, steps=3):
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=case.make_loss(),
                  jit_compile=JIT_COMPILE)
    history = model.fit(x, y, batch_size=8, epochs=1, steps_per_epoch=steps, verbose=0)
    loss = history.history["loss"][-1]
    assert np.isfinite(loss), f"fit(jit_compile={JIT_COMPILE}): loss is {loss}"
    return model


def _heads(model):
    return [layer for layer in model._flatten_layers() if isinstance(layer, ClassifierHead)]


def check_fit_save_load_export(case, tmp_path):
    x, y = _data(case, 32)
    model, _ = _build_model(case)
    _fit(model, case, x, y)
    assert model.jit_compile == JIT_COMPILE, (
        f"fit(jit_compile={JIT_COMPILE}): Keras changed it to {model.jit_compile}")
    for head in _heads(model):  # a fitted temperature travels bit for bit
        head.temperature.assign(FITTED_TEMPERATURE)
    expected = model.predict(x, verbose=0)
    path = os.path.join(str(tmp_path), f"{case.name}.keras")
    model.save(path)
    restored = keras.saving.load_model(path)
    _assert_close(restored.predict(x, verbose=0), expected, case.atol,
                  ".keras save/load: inference outputs")
    for head in _heads(restored):
        value = keras.ops.convert_to_numpy(head.temperature)
        assert value.dtype == np.float32 and value == FITTED_TEMPERATURE, (
            f".keras save/load: temperature {value!r} != {FITTED_TEMPERATURE!r}")
    if keras.backend.backend() != "tensorflow":
        return  # SavedModel export and tf.saved_model.load: checked in the TensorFlow run
    export_dir = os.path.join(str(tmp_path), f"{case.name}_export")
    model.export(export_dir, verbose=False)
    import tensorflow as tf

    reloaded = tf.saved_model.load(export_dir)  # keep a reference: serve() needs its variables
    served = reloaded.serve(tf.constant(x))
    _assert_close(served, expected, max(case.atol, 1e-5), "export: served outputs")
    if _heads(model):
        temperatures = [v.numpy() for v in reloaded.variables if "temperature" in v.name]
        assert temperatures and all(
            t.dtype == np.float32 and t == FITTED_TEMPERATURE for t in temperatures), (
            f"export: temperature variables {temperatures} != {FITTED_TEMPERATURE!r}")


def _check_float32_reads(model, policy):
    for head in _heads(model):
        for variable in head.weights:
            if variable.path.rsplit("/", 1)[0] != head.path:
                continue  # a sublayer's weight follows the policy
            autocast = variable._autocast  # Keras 3.15 has no public reader of the flag
            assert variable.dtype == "float32" and not autocast, (
                f"{policy}: {head.name}'s weight {variable.name} is {variable.dtype} with "
                f"autocast={autocast}; a head's own weights are float32 and read in float32 "
                "(add_float32_weight)")


def check_mixed_precision(case):
    x, y = _data(case, 16)
    previous = keras.config.dtype_policy()
    reference_model, _ = _build_model(case)
    expected = keras.ops.convert_to_numpy(reference_model(x, training=False))
    weights = reference_model.get_weights()
    for policy in ("mixed_float16", "mixed_bfloat16"):
        keras.config.set_dtype_policy(policy)
        try:
            model, _ = _build_model(case)
            model(x, training=False)
            model.set_weights(weights)
            out = model(x, training=False)
            if case.output_is_probability_like:
                assert keras.backend.standardize_dtype(out.dtype) == "float32", (
                    f"{policy}: output dtype {out.dtype}, expected float32")
            out = keras.ops.convert_to_numpy(out)
            assert np.all(np.isfinite(out)), f"{policy}: non-finite output"
            error = np.max(np.abs(out - expected)) / max(1.0, np.max(np.abs(expected)))
            assert error <= MIXED_TOLERANCE[policy], (
                f"{policy}: outputs differ from the float32 model's by {error:.3g} "
                f"(relative to the largest output) > {MIXED_TOLERANCE[policy]}")
            _check_float32_reads(model, policy)
            for head in _heads(model):
                head.temperature.assign(FITTED_TEMPERATURE)
                scaled = keras.ops.convert_to_numpy(model(x, training=False))
                head.temperature.assign(1.0)
                np.testing.assert_allclose(
                    scaled.astype(np.float64) * float(FITTED_TEMPERATURE), out, rtol=2e-6,
                    atol=1e-6, err_msg=f"{policy}: the temperature is not applied in float32")
            _fit(model, case, x, y, steps=2)
        finally:
            keras.config.set_dtype_policy(previous)


def check_layer_contract(case, tmp_path):
    """Runs every check of the contract on ``case``."""
    keras.utils.set_random_seed(0)
    check_config(case)
    check_calls(case)
    check_fit_save_load_export(case, tmp_path)
    check_mixed_precision(case)
