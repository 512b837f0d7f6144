"""One worker of a 2-process ``tf.distribute.MultiWorkerMirroredStrategy`` cluster on localhost.

Run by ``tests/test_multiworker.py``: it starts two of these processes, each with its own
``TF_CONFIG`` (the same two ``127.0.0.1`` ports, task index 0 or 1), and an output folder:

    TF_CONFIG=... python tests/multiworker_check.py OUTPUT_DIR

Every worker takes one SGD step of a ``DistanceLogits`` (DisMax) model on *its half* of a
128-example global batch of the bundled digits (``distribute_datasets_from_function``: worker
``i`` reads rows ``[64 i, 64 i + 64)``) and writes its trainable weights after the step to
``OUTPUT_DIR/worker_<i>.npz``. Worker 0 then takes the same step on one device on the whole
batch, outside the strategy, and writes ``OUTPUT_DIR/single.npz`` (and ``initial.npz``, the
weights before the step). Both runs start from the same weights, drawn with NumPy.
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ["KERAS_BACKEND"] = "tensorflow"

import json  # noqa: E402

import tensorflow as tf  # noqa: E402

# The strategy must exist before any other TensorFlow op runs in the process.
STRATEGY = tf.distribute.MultiWorkerMirroredStrategy()

import keras  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from keras_vc.data import offline  # noqa: E402
from keras_vc.layers import DistanceLogits  # noqa: E402

GLOBAL_BATCH = 128
LEARNING_RATE = 0.1
NUM_CLASSES = 10


def data():
    dataset = offline.digits_dataset()
    x = np.asarray(dataset.x, "float32").reshape(len(dataset.x), -1)[:GLOBAL_BATCH]
    return x, np.asarray(dataset.y, "int32")[:GLOBAL_BATCH]


def build():
    inputs = keras.Input((64,))
    hidden = keras.layers.Dense(32, activation="relu", name="hidden_0")(inputs)
    model = keras.Model(inputs, DistanceLogits(NUM_CLASSES, mode="dismax", name="head")(hidden))
    rng = np.random.default_rng(0)
    for weight in model.trainable_weights:
        weight.assign(rng.normal(0.0, 0.3, tuple(weight.shape)).astype("float32"))
    model.compile(keras.optimizers.SGD(LEARNING_RATE),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  jit_compile=False)
    return model


def main(output_dir):
    task = json.loads(os.environ["TF_CONFIG"])["task"]["index"]
    x, y = data()

    rows = slice(task * GLOBAL_BATCH // 2, (task + 1) * GLOBAL_BATCH // 2)
    with STRATEGY.scope():
        model = build()
        model.optimizer.build(model.trainable_variables)
    initial = [np.asarray(w) for w in model.trainable_weights]

    # Keras 3.15's fit / train_on_batch cannot run under this strategy: they reduce the step's
    # scalar logs along axis 0 (tensorflow/tensorflow#72388). The step itself is Keras's own
    # train_step, run on every replica by the strategy, which sums the gradients.
    @tf.function
    def distributed_step(x_local, y_local):
        STRATEGY.run(model.train_step, args=((x_local, y_local),))

    distributed_step(x[rows], y[rows])
    np.savez(os.path.join(output_dir, f"worker_{task}.npz"), *[np.asarray(w) for w in model.trainable_weights])
    if task == 0:
        single = build()
        single.train_on_batch(x, y)
        np.savez(os.path.join(output_dir, "single.npz"), *[np.asarray(w) for w in single.trainable_weights])
        np.savez(os.path.join(output_dir, "initial.npz"), *initial)


if __name__ == "__main__":
    main(sys.argv[1])
