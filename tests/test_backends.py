"""Backend plumbing: keras_vc leaves the choice of backend to the user, and a TensorFlow-only
feature fails with one clear error on the other backends."""

import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from backends import BACKEND
from backends import by_backend
from backends import tensorflow_feature
from keras_vc.layers import GaussianEncoder
from keras_vc.layers import VariationalSoftmax
from keras_vc.ops import gaussian

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_REPORT_BACKEND = """
import json, os, sys
before = os.environ.get("KERAS_BACKEND")
import keras_vc
import keras
print(json.dumps({"before": before, "after": os.environ.get("KERAS_BACKEND"),
                  "keras": keras.backend.backend()}))
"""


def _installed_backend_other_than_tensorflow():
    """JAX, else PyTorch: whichever of the two is installed (the torch extra alone has no JAX)."""
    for backend, module in (("jax", "jax"), ("torch", "torch")):
        if importlib.util.find_spec(module) is not None:
            return backend
    pytest.skip("neither JAX nor PyTorch is installed: keras.json cannot name another backend")


def test_import_keeps_the_backend_of_keras_json(tmp_path):
    # A user whose ~/.keras/keras.json names a backend other than Keras' default (TensorFlow)
    # and who imports keras_vc before keras.
    backend = _installed_backend_other_than_tensorflow()
    (tmp_path / "keras.json").write_text(json.dumps({"backend": backend}))
    env = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
    env["KERAS_HOME"] = str(tmp_path)
    completed = subprocess.run([sys.executable, "-c", _REPORT_BACKEND], cwd=ROOT, env=env,
                               capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-3000:]
    report = json.loads(completed.stdout.strip().splitlines()[-1])
    assert report == {"before": None, "after": None, "keras": backend}


def test_by_backend_picks_the_running_backend():
    assert by_backend(default="other", **{BACKEND: "this"}) == "this"
    assert by_backend(default="other") == "other"
    with pytest.raises(ValueError, match="unknown backend"):
        by_backend(tensorflw=1)


def test_tfp_distributions_refuse_other_backends_clearly():
    # TensorFlow: the TFP objects; elsewhere NotImplementedError naming the backend and the
    # closed forms that replace them (checked inside tensorflow_feature).
    mean, log_variance = np.zeros((2, 3), "float32"), np.zeros((2, 3), "float32")
    tfd = tensorflow_feature(gaussian.tfp_distributions)
    q = tensorflow_feature(gaussian.multivariate_normal_diag, mean, log_variance)
    encoder = GaussianEncoder(3, seed=0)
    encoder(np.zeros((2, 4), "float32"))
    encoded = tensorflow_feature(encoder.distribution, mean, log_variance)
    layer = VariationalSoftmax(3, latent_dim=3, seed=0)
    layer(np.zeros((2, 4), "float32"))
    prior = tensorflow_feature(layer.prior_distribution)
    posterior = tensorflow_feature(layer.posterior_distribution, np.zeros((2, 4), "float32"))
    if BACKEND == "tensorflow":
        assert tfd.MultivariateNormalDiag is type(q)
        np.testing.assert_allclose(np.asarray(q.log_prob(mean)), -1.5 * np.log(2 * np.pi),
                                   rtol=1e-6)
        assert encoded.event_shape == (3,)
        assert prior.batch_shape == (3,) and posterior.batch_shape == (2,)
    else:
        with pytest.raises(NotImplementedError, match="log_density, pairwise_log_density"):
            gaussian.tfp_distributions()
        assert tfd is q is encoded is prior is posterior is None
