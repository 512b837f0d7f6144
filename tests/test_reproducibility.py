"""Same seed, same numbers: two processes running one seeded script agree exactly (README)."""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# A tiny VariationalSoftmax on scikit-learn's wine data (bundled, offline): its latent noise,
# initialisers, shuffling and validation split all follow keras.utils.set_random_seed.
SCRIPT = """
import numpy as np, keras, keras_vc
from sklearn.datasets import load_wine

keras.utils.set_random_seed(0)
x, y = load_wine(return_X_y=True)
x = ((x - x.mean(0)) / x.std(0)).astype("float32")
model = keras.Sequential([keras.Input((13,)), keras.layers.Dense(16, activation="relu"),
                          keras_vc.layers.VariationalSoftmax(num_classes=3, latent_dim=4)])
model.compile("adam", keras_vc.losses.VariationalClassificationLoss())
history = model.fit(x, y, epochs=2, batch_size=32, validation_split=0.2, verbose=0)
head = model.layers[-1]
draws = head(model.layers[0](x[:8]), num_samples=4)
numbers = (history.history["loss"] + history.history["val_loss"]
           + [float(np.abs(w).sum()) for w in model.get_weights()]
           + np.ravel(keras.ops.convert_to_numpy(draws)).tolist())
print(repr(numbers))
"""


def _run():
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    proc = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout.strip().splitlines()[-1]


def test_two_seeded_runs_give_identical_numbers():
    first, second = _run(), _run()
    assert first == second
    assert len(eval(first)) > 8  # the losses, weights and Monte-Carlo draws were all compared
