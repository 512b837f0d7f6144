"""EntanglementModel (SNNL regularisation through compute_loss) and EntanglementMonitor.

The model is a wrapper, not a layer, so the shared layer contract is replayed here: config round
trip, fit with jit_compile=True (eagerly on PyTorch: backends.JIT_COMPILE), .keras save/load, export
without a labels input, mixed precision.
"""

import os

import keras
import numpy as np
import pytest
from matplotlib.figure import Figure

from backends import JIT_COMPILE
from backends import by_backend
from keras_vc.callbacks import EntanglementMonitor
from keras_vc.data import offline
from keras_vc.losses import REFERENCE_CAP
from keras_vc.losses import optimized_temperature_loss
from keras_vc.losses import soft_nearest_neighbor_loss
from keras_vc.models import EntanglementModel
from model_fixtures import subclassed_classifier

LAYERS = ["hidden_0", "hidden_1"]


def make_classifier(input_shape=(8, 8, 1), num_classes=10, width=32):
    inputs = keras.Input(input_shape)
    h = keras.layers.Flatten()(inputs)
    h = keras.layers.Dense(width, activation="relu", name="hidden_0")(h)
    h = keras.layers.Dense(width, activation="relu", name="hidden_1")(h)
    logits = keras.layers.Dense(num_classes, dtype="float32", name="logits")(h)
    return keras.Model(inputs, logits, name="mlp")


def compile_model(model, jit_compile=JIT_COMPILE, run_eagerly=False):
    model.compile(keras.optimizers.Adam(3e-3),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"], jit_compile=jit_compile, run_eagerly=run_eagerly)
    return model


@pytest.fixture(scope="module")
def digits():
    return offline.load_digits(0)


@pytest.fixture(scope="module")
def trained(digits):
    """A digits model regularised on two hidden layers, trained with standard fit + monitor."""
    keras.utils.set_random_seed(0)
    model = compile_model(EntanglementModel(make_classifier(), LAYERS, alpha=1.0))
    calls = {"model": 0, "network": 0}
    for owner, key in ((model, "model"), (model.network, "network")):
        original = owner.call

        def counting(*args, _original=original, _key=key, **kwargs):
            calls[_key] += 1
            return _original(*args, **kwargs)

        owner.call = counting
    monitor = EntanglementMonitor(LAYERS, digits.x_val[:120], digits.y_val[:120])
    history = model.fit(digits.x_train, digits.y_train, batch_size=64, epochs=4, verbose=0,
                        callbacks=[monitor])
    del model.call, model.network.call
    return model, history, monitor, calls


@pytest.mark.slow
def test_trains_with_standard_fit_and_xla(trained, digits):
    model, history, _, calls = trained
    assert model.jit_compile == JIT_COMPILE
    assert np.all(np.isfinite(history.history["loss"]))
    accuracy = np.mean(model.predict(digits.x_test, verbose=0).argmax(1) == digits.y_test)
    assert accuracy > 0.85
    # compute_loss reused the activations of the forward pass: one network pass per model call.
    # On JAX, Keras's symbolic build also calls compute_loss once with inference-shaped outputs
    # (Trainer._symbolic_build), which recomputes the activations: one call, not one per step.
    extra = by_backend(tensorflow=0, jax=1)
    assert calls["model"] > 0
    if extra is not None:
        assert calls["network"] == calls["model"] + extra


def test_inverse_temperatures_move_outside_the_optimizer(trained):
    model = trained[0]
    trainable = {id(v) for v in model.trainable_variables}
    assert not any(id(v) in trainable for v in model.inverse_temperatures)
    assert all(not v.trainable for v in model.inverse_temperatures)
    values = [float(v.numpy()) for v in model.inverse_temperatures]
    assert all(v != 1.0 for v in values)
    assert model.temperatures() == pytest.approx({n: 100.0 / v for n, v in zip(LAYERS, values)})


def test_monitor_records_snnl_per_layer_per_epoch(trained):
    _, history, monitor, _ = trained
    for name in LAYERS:
        values = history.history[f"snnl/{name}"]
        assert len(values) == 4 and np.all(np.isfinite(values))
        assert monitor.history[name][1:] == pytest.approx(values)
    assert monitor.epochs == [0, 1, 2, 3, 4]
    figure = monitor.plot()
    assert isinstance(figure, Figure)
    assert len(figure.axes[0].lines) == len(LAYERS)
    # The value is min over T: no fixed temperature on the grid does better.
    extractor = keras.Model(trained[0].network.inputs, trained[0].network.outputs[0])
    features = extractor.predict(monitor.x, verbose=0)
    for temperature in (0.1, 1.0, 10.0, 100.0):
        fixed = float(soft_nearest_neighbor_loss(features, monitor.y, temperature))
        assert monitor.history["hidden_0"][-1] <= fixed + 1e-5


def test_save_load_and_export_serve_logits_without_labels(trained, digits, tmp_path):
    model = trained[0]
    x = digits.x_test[:16]
    expected = model.predict(x, verbose=0)
    path = os.path.join(str(tmp_path), "snnl.keras")
    model.save(path)
    restored = keras.saving.load_model(path)
    assert isinstance(restored, EntanglementModel)
    assert restored.get_config()["layer_names"] == LAYERS
    np.testing.assert_allclose(restored.predict(x, verbose=0), expected, atol=1e-6)
    assert restored.temperatures() == pytest.approx(model.temperatures())
    if keras.backend.backend() != "tensorflow":
        return  # the SavedModel part is TensorFlow's
    import tensorflow as tf

    export_dir = os.path.join(str(tmp_path), "served")
    keras.saving.load_model(path).export(export_dir, verbose=False)  # never called on data
    served = tf.saved_model.load(export_dir)
    signature = served.signatures["serving_default"]
    assert len(signature.structured_input_signature[1]) == 1  # x only, no labels
    np.testing.assert_allclose(served.serve(tf.constant(x)).numpy(), expected, atol=1e-5)


def test_config_round_trip():
    model = EntanglementModel(make_classifier(), LAYERS, alpha=0.5, direction="minimize",
                              temperature=[3.0, 4.0], optimize_temperature=False,
                              temperature_learning_rate=0.2, distance="cosine",
                              entanglement_cap=7.0)
    config = model.get_config()
    clone = EntanglementModel.from_config(config)
    assert clone.get_config() == config
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(model))
    assert restored.get_config() == config


@pytest.mark.parametrize("direction,sign", [("maximize", -1.0), ("minimize", 1.0)])
def test_compute_loss_is_cross_entropy_plus_or_minus_alpha_snnl(digits, direction, sign):
    keras.utils.set_random_seed(1)
    model = compile_model(EntanglementModel(make_classifier(), LAYERS, alpha=0.7,
                                            direction=direction, temperature=[20.0, 40.0],
                                            optimize_temperature=False), jit_compile=False)
    x, y = digits.x_train[:48], digits.y_train[:48]
    logits = model(x)
    loss = float(model.compute_loss(x, y, logits, training=False))
    h0, h1, out = model.network.predict(x, verbose=0)
    log_probs = out - np.log(np.exp(out).sum(1, keepdims=True))
    cross_entropy = -np.mean(log_probs[np.arange(48), y])
    cap = REFERENCE_CAP if direction == "maximize" else None  # capped only when maximising
    snnl = (float(soft_nearest_neighbor_loss(h0, y, 20.0, cap=cap))
            + float(soft_nearest_neighbor_loss(h1, y, 40.0, cap=cap)))
    assert loss == pytest.approx(cross_entropy + sign * 0.7 * snnl, rel=1e-4)


@pytest.mark.slow
def test_temperature_step_matches_the_reference_update(digits):
    keras.utils.set_random_seed(2)
    model = compile_model(EntanglementModel(make_classifier(), LAYERS, alpha=1.0,
                                            temperature=10.0, temperature_learning_rate=0.3),
                          jit_compile=False, run_eagerly=True)
    x, y = digits.x_train[:64], digits.y_train[:64]
    hidden = model.network.predict(x, verbose=0)[:-1]
    expected = [float(optimized_temperature_loss(h, y, 10.0, 1.0, 0.3, cap=REFERENCE_CAP)[1])
                for h in hidden]
    model.train_on_batch(x, y)
    np.testing.assert_allclose([v.numpy() for v in model.inverse_temperatures], expected,
                               rtol=1e-5)
    before = [float(v.numpy()) for v in model.inverse_temperatures]
    model.evaluate(x, y, verbose=0)
    assert [float(v.numpy()) for v in model.inverse_temperatures] == before
    fixed = compile_model(EntanglementModel(make_classifier(), LAYERS,
                                            optimize_temperature=False),
                          jit_compile=False, run_eagerly=True)
    fixed.train_on_batch(x, y)
    assert [float(v.numpy()) for v in fixed.inverse_temperatures] == [1.0, 1.0]


# XLA for float16 (the GPU policy); bfloat16 in graph mode only, to keep the file fast (XLA's
# CPU compile of bfloat16 programs is slow and the dtype handling under test is the same).
@pytest.mark.parametrize("policy,jit_compile", [("mixed_float16", True),
                                                ("mixed_bfloat16", False)])
def test_mixed_precision(policy, jit_compile, digits):
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        model = compile_model(EntanglementModel(make_classifier(), LAYERS, alpha=1.0),
                              jit_compile=jit_compile and JIT_COMPILE)
        x, y = digits.x_train[:64], digits.y_train[:64]
        assert keras.backend.standardize_dtype(model(x).dtype) == "float32"
        history = model.fit(x, y, batch_size=32, epochs=1, verbose=0)
        assert np.isfinite(history.history["loss"][-1])
        assert all(np.isfinite(v.numpy()) and v.dtype == "float32"
                   for v in model.inverse_temperatures)
    finally:
        keras.config.set_dtype_policy(previous)


def test_layers_of_a_nested_sequential_backbone(digits):
    backbone = keras.Sequential([keras.layers.Flatten(),
                                 keras.layers.Dense(16, activation="relu", name="inner")])
    classifier = keras.Sequential([keras.Input((8, 8, 1)), backbone,
                                   keras.layers.Dense(10, name="logits")])
    model = EntanglementModel(classifier, ["inner"], alpha=1.0)
    x = digits.x_train[:8]
    np.testing.assert_allclose(keras.ops.convert_to_numpy(model(x)),
                               keras.ops.convert_to_numpy(classifier(x)), atol=1e-6)


@pytest.mark.parametrize("kwargs,match", [
    (dict(layer_names=["hidden_0", "missing"]), "missing"),
    (dict(layer_names=[]), "layer_names"),
    (dict(temperature=0.0), "temperature"),
    (dict(temperature=-5.0), "temperature"),
    (dict(temperature=[1.0]), "temperature"),
    (dict(distance="l1"), "distance"),
    (dict(direction="up"), "direction"),
    (dict(alpha=-1.0), "alpha"),
    (dict(entanglement_cap=0.0), "cap"),
    (dict(entanglement_cap="high"), "cap"),
])
def test_bad_arguments(kwargs, match):
    arguments = dict(layer_names=LAYERS)
    arguments.update(kwargs)
    with pytest.raises(ValueError, match=match):
        EntanglementModel(make_classifier(), **arguments)


def test_labels_of_the_wrong_shape(digits):
    model = compile_model(EntanglementModel(make_classifier(), LAYERS), jit_compile=False)
    x = digits.x_train[:32]
    logits = model(x)
    with pytest.raises(ValueError, match="neither class ids .* nor one-hot rows"):
        model.compute_loss(x, np.eye(3)[digits.y_train[:32] % 3], logits)
    with pytest.raises(ValueError, match="shape"):
        model.compute_loss(x, digits.y_train[:32].reshape(32, 1, 1), logits)
    with pytest.raises(ValueError, match="rows"):
        model.compute_loss(x, digits.y_train[:16], logits)


def test_monitor_bad_input(digits):
    x, y = digits.x_val[:20], digits.y_val[:20]
    with pytest.raises(ValueError, match="temperature"):
        EntanglementMonitor(LAYERS, x, y, temperature=0.0)
    with pytest.raises(ValueError, match="temperature"):
        EntanglementMonitor(LAYERS, x, y, temperature="best")
    with pytest.raises(ValueError, match="distance"):
        EntanglementMonitor(LAYERS, x, y, distance="l1")
    with pytest.raises(ValueError, match="`y` has 10 entries"):
        EntanglementMonitor(LAYERS, x, y[:10])
    model = compile_model(make_classifier(), jit_compile=False)
    monitor = EntanglementMonitor(["hidden_0", "nope"], x, y)
    with pytest.raises(ValueError, match="nope"):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[monitor])


def test_models_without_a_single_input_output_graph_are_refused():
    subclassed = subclassed_classifier(5, 3)
    with pytest.raises(ValueError, match="Functional or Sequential.*subclassed"):
        EntanglementModel(subclassed, ["hidden_0"])
    x = keras.Input((5,))
    hidden = keras.layers.Dense(4, name="hidden_0")(x)
    two_outputs = keras.Model(x, [keras.layers.Dense(3)(hidden), keras.layers.Dense(2)(hidden)])
    with pytest.raises(ValueError, match="one input and one output"):
        EntanglementModel(two_outputs, ["hidden_0"])
