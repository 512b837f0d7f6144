"""Mistakes a newcomer makes, each of which used to train or run without a word.

Each test names the mistake; before the fix each one trained on (loss NaN, a head feeding a
Dense layer, a loss that reads logits as probabilities, NaN inputs reported as NaN outputs) or
silently overwrote a file.
"""

import warnings

import keras
import numpy as np
import pytest

import keras_vc
from keras_vc import calibration

BACKEND = keras.backend.backend()
rng = np.random.default_rng(0)
X = rng.normal(size=(64, 8)).astype("float32")
Y10 = np.arange(64) % 10          # labels 0-9


def _head(name):
    if name == "distance":
        return keras_vc.layers.DistanceLogits(num_classes=5), keras_vc.losses.EntropicCrossEntropy()
    return (keras_vc.layers.VariationalSoftmax(num_classes=5, latent_dim=4),
            keras_vc.losses.VariationalClassificationLoss())


# Labels outside [0, num_classes) under the default compiled fit --------------------------------

@pytest.mark.parametrize("head_name", ["distance", "variational"])
def test_compiled_fit_stops_on_labels_beyond_num_classes(head_name):
    head, loss = _head(head_name)
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(8), head])
    model.compile("adam", loss)  # jit_compile="auto": a tf.function on a CPU, jit on JAX
    with pytest.raises(Exception, match=r"num_classes=5") as info:
        model.fit(X, Y10, epochs=1, batch_size=32, verbose=0)
    assert "[0, 4]" in str(info.value)


@pytest.mark.skipif(BACKEND != "tensorflow", reason="XLA on TensorFlow only")
def test_xla_on_tensorflow_cannot_raise_and_reports_a_nan_loss():
    """The documented remaining case: XLA compiles the assertion away; the loss is NaN."""
    head, loss = _head("distance")
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(8), head])
    model.compile("adam", loss, jit_compile=True)
    history = model.fit(X, Y10, epochs=1, batch_size=32, verbose=0)
    assert np.isnan(history.history["loss"][0])


def test_valid_labels_train_under_the_compiled_fit():
    head, loss = _head("distance")
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(8), head])
    model.compile("adam", loss)
    history = model.fit(X, Y10 % 5, epochs=1, batch_size=32, verbose=0)
    assert np.isfinite(history.history["loss"][0])


# A keras_vc head that is not the output layer ----------------------------------------------------

def test_a_head_followed_by_a_layer_warns_once_when_training():
    model = keras.Sequential([keras.Input((8,)), keras_vc.layers.DistanceLogits(num_classes=10),
                              keras.layers.Dense(10)])
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    with pytest.warns(UserWarning, match=r"not the output layer") as record:
        model.fit(X, Y10, epochs=2, batch_size=32, verbose=0)
    assert sum("not the output layer" in str(w.message) for w in record) == 1
    with pytest.raises(ValueError, match="not the output layer"):
        calibration.fit_temperature(model, (X, Y10))


def test_a_head_as_output_layer_trains_without_that_warning():
    model = keras.Sequential([keras.Input((8,)), keras_vc.layers.DistanceLogits(num_classes=10)])
    model.compile("adam", keras_vc.losses.EntropicCrossEntropy())
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        model.fit(X, Y10, epochs=1, batch_size=32, verbose=0)
    assert not [w for w in record if "not the output layer" in str(w.message)]


# A head compiled with a loss that reads logits as probabilities ----------------------------------

@pytest.mark.parametrize("loss", [
    "sparse_categorical_crossentropy",
    keras.losses.SparseCategoricalCrossentropy(),
    keras.losses.sparse_categorical_crossentropy])
def test_variational_softmax_refuses_a_loss_without_from_logits(loss):
    model = keras.Sequential([keras.Input((8,)),
                              keras_vc.layers.VariationalSoftmax(num_classes=10, latent_dim=4)])
    model.compile("adam", loss)
    with pytest.raises(ValueError, match=r"from_logits=False.*returns logits"):
        model.fit(X, Y10, epochs=1, batch_size=32, verbose=0)


def test_a_loss_from_logits_is_accepted():
    model = keras.Sequential([keras.Input((8,)),
                              keras_vc.layers.VariationalSoftmax(num_classes=10, latent_dim=4)])
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    history = model.fit(X, Y10, epochs=1, batch_size=32, verbose=0)
    assert np.isfinite(history.history["loss"][0])


def test_a_probability_loss_after_a_softmax_that_follows_the_head_is_left_alone():
    inner = keras.Sequential([keras.Input((8,)), keras_vc.layers.DistanceLogits(num_classes=10)])
    outer = keras.Sequential([keras.Input((8,)), inner, keras.layers.Softmax()])
    outer.compile("adam", "sparse_categorical_crossentropy")
    history = outer.fit(X, Y10, epochs=1, batch_size=32, verbose=0)
    assert np.isfinite(history.history["loss"][0])


# Non-finite inputs --------------------------------------------------------------------------------

def _dense_model():
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(10)])
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def test_fit_temperature_names_non_finite_inputs_as_inputs():
    x = X.copy()
    x[3, 2] = np.nan
    x[5, 0] = np.inf
    with pytest.raises(ValueError, match=r"`data` inputs contain NaN or infinite values \(2 of"):
        calibration.fit_temperature(_dense_model(), (x, Y10), verbose=0)
    import tensorflow as tf
    dataset = tf.data.Dataset.from_tensor_slices((x, Y10)).batch(16)
    with pytest.raises(ValueError, match=r"`data` inputs contain NaN"):
        calibration.fit_temperature(_dense_model(), dataset, verbose=0)


# fit_temperature says what it did --------------------------------------------------------------

@pytest.mark.filterwarnings("ignore:fit_temperature:UserWarning")  # untrained
def test_fit_temperature_says_where_it_wrote_the_temperature(capsys):
    model = keras.Sequential([keras.Input((8,)), keras_vc.layers.DistanceLogits(num_classes=10)])
    result = calibration.fit_temperature(model, (X, Y10))
    out = capsys.readouterr().out
    assert f"T = {result.temperature:.4g}" in out
    assert f"written into {model.layers[-1].name}.temperature" in out
    assert result.written_to == model.layers[-1].name
    np.testing.assert_allclose(float(model.layers[-1].temperature.numpy()), result.temperature)


@pytest.mark.filterwarnings("ignore:fit_temperature:UserWarning")  # untrained
def test_fit_temperature_says_how_to_apply_it_without_a_temperature_variable(capsys):
    result = calibration.fit_temperature(_dense_model(), (X, Y10))
    out = capsys.readouterr().out
    assert "nothing was written" in out and "apply_temperature" in out
    assert result.written_to is None
    calibration.fit_temperature(_dense_model(), (X, Y10), verbose=0)
    assert capsys.readouterr().out == ""
    with pytest.raises(ValueError, match="`verbose`"):
        calibration.fit_temperature(_dense_model(), (X, Y10), verbose=2)


def test_fit_temperature_warns_at_a_search_bound():
    # Logits that always put 0.9 on the right class: confident and right, so the NLL keeps
    # falling as T -> 0 and the optimum is the lower bound.
    model = keras.Sequential([keras.Input((10,)), keras.layers.Dense(
        10, use_bias=False, kernel_initializer="identity")])
    x = np.eye(10, dtype="float32")[Y10]
    with pytest.warns(UserWarning, match="lies on the search bound.*without errors"):
        result = calibration.fit_temperature(model, (x, Y10), verbose=0)
    assert result.at_bound and result.temperature < 1


def test_fit_temperature_default_objective_is_the_one_compare_uses():
    import inspect
    from keras_vc.benchmark import conformal_eval, evaluation

    default = inspect.signature(calibration.fit_temperature).parameters["objective"].default
    assert default == calibration.temperature.DEFAULT_OBJECTIVE == "nll"
    assert evaluation.TEMPERATURE_OBJECTIVE == conformal_eval.TEMPERATURE_OBJECTIVE == default
    find = inspect.signature(calibration.find_temperature)
    assert find.parameters["objective"].default == default


# export does not overwrite a version folder ----------------------------------------------

@pytest.mark.skipif(BACKEND != "tensorflow", reason="SavedModel export needs TensorFlow")
def test_export_refuses_an_existing_version_folder_unless_overwrite(tmp_path):
    from keras_vc import export

    model = _dense_model()
    path = tmp_path / "models" / "m" / "1"
    export.export_for_serving(model, path)
    marker = path / "stale.txt"
    marker.write_text("from an older export")
    with pytest.raises(ValueError, match=r"already exists.*overwrite=True"):
        export.export_for_serving(model, path)
    assert marker.exists()
    export.export_for_serving(model, path, overwrite=True)
    assert not marker.exists() and (path / "saved_model.pb").exists()
    with pytest.raises(ValueError, match="`overwrite` must be True or False"):
        export.export_for_serving(model, tmp_path / "other", overwrite="yes")
    with pytest.raises(ValueError, match="is an existing file"):
        export.export_for_serving(model, marker.parent / "saved_model.pb", overwrite=True)
