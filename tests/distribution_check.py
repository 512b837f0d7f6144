"""One SGD step on one device and on two replicas of ``tf.distribute.MirroredStrategy``.

Run by ``tests/test_distribution.py`` in a subprocess: the two logical CPU devices must be
configured before TensorFlow initialises its devices, which the rest of the test suite has
already done in its own process. Prints one JSON object on its last line of stdout:

``{"steps": {case: {"max_difference", "max_update", "max_variable_difference"}},
   "metrics": {"probabilities", "labels", "ece", "brier", "num_bins"}}``

where ``max_difference`` is the largest ``|w_1 - w_2|`` over the trainable weights after the step
(one device vs. two replicas, same initial weights, same global batch), ``max_update`` the
largest ``|w_1 - w_0|`` of the one-device step, and ``max_variable_difference`` the same as
``max_difference`` over the non-trainable variables the step updates (EntanglementModel's
inverse temperatures). ``metrics`` holds the predictions of a model and the streaming metrics
``evaluate`` reports for them under the strategy.
"""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ["KERAS_BACKEND"] = "tensorflow"  # tf.distribute

import tensorflow as tf  # noqa: E402

_CPU = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(
    _CPU, [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()])

import keras  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras_vc  # noqa: E402,F401
from keras_vc.metrics import BrierScore, ExpectedCalibrationError  # noqa: E402

from distribution_cases import (BATCH_SIZE, HEADS, LEARNING_RATE,  # noqa: E402,F401
                                NUM_CLASSES, build, data)

# One strategy object per process: collective instance keys are per strategy, and a second
# MirroredStrategy's collectives can collide with the first one's on the same devices.
MIRRORED = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
ONE_DEVICE = tf.distribute.OneDeviceStrategy("/cpu:0")


def step(case, initial, strategy, x, y):
    """Trainable weights and updated variables after one SGD step from ``initial``."""
    with strategy.scope():
        model, loss = build(case)
        model.set_weights(initial)
        model.compile(keras.optimizers.SGD(LEARNING_RATE), loss, jit_compile=False)
    model.fit(x, y, batch_size=BATCH_SIZE, epochs=1, shuffle=False, verbose=0)
    trainable = [np.asarray(w) for w in model.trainable_weights]
    others = [np.asarray(v) for v in getattr(model, "inverse_temperatures", [])]
    return trainable, others


def max_abs(pairs):
    return float(max((np.max(np.abs(a - b)) for a, b in pairs), default=0.0))


def compare_step(case, x, y):
    print(case, file=sys.stderr, flush=True)
    model, _ = build(case)
    initial = model.get_weights()
    start = [np.asarray(w) for w in model.trainable_weights]
    single, single_other = step(case, initial, ONE_DEVICE, x, y)
    replicated, replicated_other = step(case, initial, MIRRORED, x, y)
    return {"max_difference": max_abs(zip(single, replicated)),
            "max_update": max_abs(zip(single, start)),
            "max_variable_difference": max_abs(zip(single_other, replicated_other))}


def metrics_under_strategy(x, y):
    """Predictions of a small model and the streaming metrics of ``evaluate`` on two replicas."""
    with MIRRORED.scope():
        keras.utils.set_random_seed(1)
        model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(NUM_CLASSES)])
        model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                      metrics=[ExpectedCalibrationError(num_bins=10, from_logits=True),
                               BrierScore(from_logits=True)], jit_compile=False)
    # 3 x 40 + 8 rows: the last batch is uneven across the replicas.
    results = model.evaluate(x, y, batch_size=40, return_dict=True, verbose=0)
    logits = model.predict(x, batch_size=40, verbose=0)
    return {"logits": logits.tolist(), "labels": y.tolist(), "ece": float(results["ece"]),
            "brier": float(results["brier"]), "num_bins": 10}


def main(cases):
    x, y = data()
    report = {"steps": {case: compare_step(case, x, y) for case in cases},
              "metrics": metrics_under_strategy(x, y)}
    print(json.dumps(report))


if __name__ == "__main__":
    main(sys.argv[1:] or list(HEADS) + ["entanglement"])
