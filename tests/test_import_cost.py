"""``import keras_vc`` imports neither scikit-learn, SciPy nor matplotlib: each is imported in the
function that uses it.

Keras and TensorFlow import all three themselves when they are installed, but optionally: in a
fresh process where importing them fails, ``import keras`` on the TensorFlow backend still works,
and so must ``import keras_vc``. The JAX backend needs SciPy (JAX imports it), so there only
scikit-learn and matplotlib are blocked.
"""

import importlib.util
import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]

SCRIPT = """
import sys
blocked = {blocked!r}
for name in blocked:
    sys.modules[name] = None  # importing it, or any of its submodules, raises ImportError
import keras_vc
print(sorted(name for name, module in sys.modules.items()
             if module is not None and name.split(".")[0] in blocked))
"""


@pytest.mark.parametrize("backend, blocked", [
    ("tensorflow", ("sklearn", "scipy", "matplotlib")),
    ("jax", ("sklearn", "matplotlib")),
])
def test_import_keras_vc_does_not_import_sklearn_scipy_or_matplotlib(backend, blocked):
    if importlib.util.find_spec(backend) is None:
        pytest.skip(f"{backend} is not installed")
    env = dict(os.environ, KERAS_BACKEND=backend)
    result = subprocess.run([sys.executable, "-c", SCRIPT.format(blocked=blocked)], cwd=ROOT,
                            env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    assert result.stdout.strip().splitlines()[-1] == "[]"
