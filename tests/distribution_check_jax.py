"""One SGD step on one device and under ``keras.distribution.DataParallel`` on two JAX devices.

Run by ``tests/test_distribution.py`` in a subprocess with ``KERAS_BACKEND=jax`` and
``XLA_FLAGS=--xla_force_host_platform_device_count=2`` (both must be set before JAX starts,
which the rest of the suite has already done in its own process). Prints one JSON object on the
last line of stdout:

``{"devices": n, "steps": {case: {"max_difference", "max_update", "max_variable_difference",
   "variable_devices"} or {"error": message}}, "metrics": {"logits", "labels", "ece", "brier", "num_bins"}
   or {"error": message}}``

with the same meaning as in ``tests/distribution_check.py``: the largest ``|w_1 - w_2|`` over the
trainable weights after one step from the same initial weights on the same global batch (one
device vs. the batch sharded over two devices, the variables replicated), the largest
``|w_1 - w_0|`` of the one-device step, and the difference of the non-trainable variables the
step updates (EntanglementModel's inverse temperatures); ``variable_devices`` is the number of
devices that held every weight in the distributed run (2: replicated). A case that raises reports its error
instead, so that one broken head does not hide the others.

Noise: on JAX, ``DataParallel`` compiles one program over the *global* batch (XLA partitions it
across the devices), so ``keras.random`` draws the global batch's noise from the same seed state
in both runs; the latent heads run with their noise on, as on one device.
"""

import json
import os
import sys

os.environ["KERAS_BACKEND"] = "jax"

import jax  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from distribution_cases import (BATCH_SIZE, HEADS, LEARNING_RATE,  # noqa: E402,F401
                                NUM_CLASSES, build, data)


def _step(case, initial, x, y):
    """Trainable weights, updated variables and the number of devices holding the weights."""
    model, loss = build(case)
    model.set_weights(initial)
    model.compile(keras.optimizers.SGD(LEARNING_RATE), loss, jit_compile=True)
    model.train_on_batch(x, y)
    trainable = [np.asarray(w) for w in model.trainable_weights]
    others = [np.asarray(v) for v in getattr(model, "inverse_temperatures", [])]
    devices = min(len(w.value.sharding.device_set) for w in model.trainable_weights)
    return trainable, others, devices


def step(case, initial, distribution, x, y):
    """Trainable weights and updated variables after one SGD step from ``initial``."""
    if distribution is None:
        return _step(case, initial, x, y)
    with distribution.scope():
        return _step(case, initial, x, y)


def max_abs(pairs):
    return float(max((np.max(np.abs(a - b)) for a, b in pairs), default=0.0))


def compare_step(case, distribution, x, y):
    print(case, file=sys.stderr, flush=True)
    try:
        model, _ = build(case)
        initial = model.get_weights()
        start = [np.asarray(w) for w in model.trainable_weights]
        single, single_other, _ = step(case, initial, None, x, y)
        replicated, replicated_other, devices = step(case, initial, distribution, x, y)
    except Exception as error:  # reported per case, see the module docstring
        return {"error": f"{type(error).__name__}: {error}"[:2000]}
    return {"max_difference": max_abs(zip(single, replicated)),
            "max_update": max_abs(zip(single, start)),
            "max_variable_difference": max_abs(zip(single_other, replicated_other)),
            "variable_devices": devices}


def metrics_under_distribution(distribution, x, y):
    """Predictions of a small model and the streaming metrics ``evaluate`` reports, sharded."""
    from keras_vc.metrics import BrierScore, ExpectedCalibrationError

    try:
        with distribution.scope():
            keras.utils.set_random_seed(1)
            model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(NUM_CLASSES)])
            model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                          metrics=[ExpectedCalibrationError(num_bins=10, from_logits=True),
                                   BrierScore(from_logits=True)])
            # 3 batches of 40: DataParallel shards a batch evenly over the devices.
            x, y = x[:120], y[:120]
            results = model.evaluate(x, y, batch_size=40, return_dict=True, verbose=0)
            logits = model.predict(x, batch_size=40, verbose=0)
    except Exception as error:
        return {"error": f"{type(error).__name__}: {error}"[:2000]}
    return {"logits": np.asarray(logits).tolist(), "labels": y.tolist(),
            "ece": float(results["ece"]), "brier": float(results["brier"]), "num_bins": 10}


def main(cases):
    devices = jax.devices("cpu")
    distribution = keras.distribution.DataParallel(devices=devices)
    x, y = data()
    report = {"devices": len(devices),
              "steps": {case: compare_step(case, distribution, x, y) for case in cases},
              "metrics": metrics_under_distribution(distribution, x, y)}
    print(json.dumps(report))


if __name__ == "__main__":
    main(sys.argv[1:] or list(HEADS) + ["entanglement"])
