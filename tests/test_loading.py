"""`import keras_vc` is all a fresh process needs to load a saved model (README, Quickstart).

Keras finds custom classes by their registered name (``keras_vc>DistanceLogits``); keras_vc
registers each public class when it is imported. Without that import ``load_model`` fails.
"""

import inspect
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

import keras_vc

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SERIALIZABLE = (keras.layers.Layer, keras.losses.Loss, keras.metrics.Metric)


def _public_classes():
    found = []
    for module in (keras_vc.layers, keras_vc.losses, keras_vc.metrics, keras_vc.models,
                   keras_vc.callbacks):
        for name, value in vars(module).items():
            if name.startswith("_") or not inspect.isclass(value):
                continue
            if issubclass(value, SERIALIZABLE) and value.__module__.startswith("keras_vc"):
                found.append(value)
    return found


def test_every_public_layer_loss_metric_and_model_is_registered():
    classes = _public_classes()
    names = {cls.__name__ for cls in classes}
    assert {"DistanceLogits", "VariationalSoftmax", "EntropicCrossEntropy",
            "ExpectedCalibrationError", "EntanglementModel"} <= names
    for cls in classes:
        registered = keras.saving.get_registered_name(cls)
        assert registered == f"keras_vc>{cls.__name__}", cls
        assert keras.saving.get_registered_object(registered) is cls


def _run(code, cwd):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    folder = tmp_path_factory.mktemp("saved")
    model = keras.Sequential([
        keras.Input((6,)), keras.layers.Dense(8, activation="relu"),
        keras_vc.layers.DistanceLogits(num_classes=3)])
    model.compile("adam", keras_vc.losses.EntropicCrossEntropy(),
                  metrics=[keras_vc.metrics.ExpectedCalibrationError()])
    x = np.random.default_rng(0).normal(size=(4, 6)).astype("float32")
    model.save(folder / "m.keras")
    np.save(folder / "x.npy", x)
    np.save(folder / "expected.npy", model.predict(x, verbose=0))
    return folder


def test_a_fresh_process_loads_after_import_keras_vc(saved):
    proc = _run(
        "import numpy as np, keras, keras_vc\n"
        "model = keras.saving.load_model('m.keras')\n"
        "np.testing.assert_array_equal(model.predict(np.load('x.npy'), verbose=0),\n"
        "                              np.load('expected.npy'))\n"
        "assert type(model.layers[-1]).__name__ == 'DistanceLogits'\n"
        "assert type(model.loss).__name__ == 'EntropicCrossEntropy'\n", saved)
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_without_import_keras_vc_the_error_names_the_class(saved):
    """What the README's one-line fix is for: Keras' message names keras_vc's class."""
    proc = _run("import keras\nkeras.saving.load_model('m.keras')\n", saved)
    assert proc.returncode != 0
    assert "DistanceLogits" in proc.stderr
