"""keras_vc.ops.gaussian and keras_vc.layers.GaussianEncoder against independent NumPy formulas."""

import keras
import numpy as np
import pytest

from backends import gradients
from backends import tensorflow_feature
from backends import tensorflow_only
from keras_vc.layers import GaussianEncoder
from keras_vc.ops import gaussian

RNG = np.random.default_rng(0)
B, K, D = 7, 4, 5


def _numpy_log_normal(x, mean, log_variance):
    """log N(x; mean, diag exp(lv)) by the textbook formula, one Gaussian at a time."""
    variance = np.exp(log_variance)
    return np.sum(-0.5 * np.log(2 * np.pi * variance) - (x - mean) ** 2 / (2 * variance), axis=-1)


@pytest.fixture(scope="module")
def params():
    return dict(
        z=RNG.normal(size=(B, D)) * 2.0,
        mean=RNG.normal(size=(B, D)),
        log_variance=RNG.uniform(-2, 1, size=(B, D)),
        means=RNG.normal(size=(K, D)) * 1.5,
        log_variances=RNG.uniform(-1.5, 1.5, size=(K, D)),
    )


def _np(x):
    return keras.ops.convert_to_numpy(x)


def test_log_density_matches_numpy(params):
    expected = _numpy_log_normal(params["z"], params["mean"], params["log_variance"])
    actual = _np(gaussian.log_density(params["z"], params["mean"], params["log_variance"]))
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-5)


def test_pairwise_log_density_matches_loop_and_tfp_broadcast(params):
    z, means, log_variances = params["z"], params["means"], params["log_variances"]
    expected = np.array([[_numpy_log_normal(z[b], means[k], log_variances[k]) for k in range(K)]
                         for b in range(B)])
    actual = _np(gaussian.pairwise_log_density(z, means, log_variances))
    assert actual.shape == (B, K)
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-4)
    # TFP's broadcast log_prob (builds the (B, K, D) tensor the matmul form avoids).
    priors = tensorflow_feature(gaussian.multivariate_normal_diag, means.astype("float32"),
                                log_variances.astype("float32"))
    if priors is not None:
        tfp_values = _np(priors.log_prob(z[:, None, :].astype("float32")))
        np.testing.assert_allclose(actual, tfp_values, rtol=1e-5, atol=1e-4)


def test_pairwise_log_density_float16_inputs_compute_in_float32(params):
    out = gaussian.pairwise_log_density(params["z"].astype("float16"), params["means"],
                                        params["log_variances"])
    assert keras.backend.standardize_dtype(out.dtype) == "float32"


def test_entropy_matches_numpy_and_tfp(params):
    lv = params["log_variance"]
    expected = 0.5 * np.sum(np.log(2 * np.pi * np.e * np.exp(lv)), axis=-1)
    np.testing.assert_allclose(_np(gaussian.entropy(lv)), expected, rtol=1e-5)
    q = tensorflow_feature(gaussian.multivariate_normal_diag, params["mean"], lv)
    if q is not None:
        np.testing.assert_allclose(_np(q.entropy()), expected, rtol=1e-5)


def test_kl_to_standard_normal_per_dimension(params):
    m, lv = params["mean"], params["log_variance"]
    s2 = np.exp(lv)
    expected = 0.5 * (s2 + m ** 2 - 1.0 - np.log(s2))  # KL(N(m, s2) || N(0, 1)) per coordinate
    actual = _np(gaussian.kl_to_standard_normal(m, lv))
    assert actual.shape == (B, D)
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-6)
    assert np.all(actual >= 0)
    np.testing.assert_allclose(_np(gaussian.kl_to_standard_normal(np.zeros(3), np.zeros(3))), 0.0)


def test_kl_divergence_matches_numpy_tfp_and_monte_carlo(params):
    mq, lq = params["mean"], params["log_variance"]
    mp, lp = params["means"][0], params["log_variances"][0]
    vq, vp = np.exp(lq), np.exp(lp)
    expected = np.sum(0.5 * np.log(vp / vq) + (vq + (mq - mp) ** 2) / (2 * vp) - 0.5, axis=-1)
    actual = _np(gaussian.kl_divergence(mq, lq, mp, lp))
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-5)
    tfd = tensorflow_feature(gaussian.tfp_distributions)
    if tfd is not None:
        tfp_kl = tfd.kl_divergence(gaussian.multivariate_normal_diag(mq, lq),
                                   gaussian.multivariate_normal_diag(mp, lp))
        np.testing.assert_allclose(_np(tfp_kl), expected, rtol=1e-4, atol=1e-4)
    # Monte Carlo E_q[log q - log p] for the first row.
    draws = mq[0] + np.sqrt(vq[0]) * np.random.default_rng(1).normal(size=(200000, D))
    mc = np.mean(_numpy_log_normal(draws, mq[0], lq[0]) - _numpy_log_normal(draws, mp, lp))
    assert abs(mc - expected[0]) < 0.02 * max(1.0, expected[0])


def test_pairwise_kl_and_expected_log_density(params):
    mq, lq = params["mean"], params["log_variance"]
    mp, lp = params["means"], params["log_variances"]
    vq, vp = np.exp(lq), np.exp(lp)
    kl = np.zeros((B, K))
    cross = np.zeros((B, K))
    for b in range(B):
        for k in range(K):
            kl[b, k] = np.sum(0.5 * np.log(vp[k] / vq[b])
                              + (vq[b] + (mq[b] - mp[k]) ** 2) / (2 * vp[k]) - 0.5)
            cross[b, k] = np.sum(-0.5 * np.log(2 * np.pi * vp[k])
                                 - (vq[b] + (mq[b] - mp[k]) ** 2) / (2 * vp[k]))
    np.testing.assert_allclose(_np(gaussian.pairwise_kl_divergence(mq, lq, mp, lp)), kl,
                               rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(_np(gaussian.pairwise_expected_log_density(mq, lq, mp, lp)), cross,
                               rtol=1e-5, atol=1e-4)


def test_sample_statistics_gradients_and_shapes():
    mean = np.array([[1.0, -2.0, 0.5]], dtype="float32")
    log_variance = np.log(np.array([[0.25, 4.0, 1.0]], dtype="float32"))
    generator = keras.random.SeedGenerator(3)
    draws = _np(gaussian.sample(np.repeat(mean, 20000, 0), np.repeat(log_variance, 20000, 0),
                                generator))
    np.testing.assert_allclose(draws.mean(0), mean[0], atol=0.05)
    np.testing.assert_allclose(draws.std(0), [0.5, 2.0, 1.0], rtol=0.03)
    assert _np(gaussian.sample(mean, log_variance, generator, num_samples=4)).shape == (4, 1, 3)
    # The generator advances: two calls differ.
    a, b = (_np(gaussian.sample(mean, log_variance, generator)) for _ in range(2))
    assert not np.allclose(a, b)
    # Reparameterised: d z / d mean = 1, d z / d log_variance = eps * s / 2.
    # Reparameterised: d z / d mean = 1, d z / d log_variance = eps * s / 2, checked entry by
    # entry through the gradient of sum(z * w). An integer seed draws the same eps every call.
    weights = np.array([[1.0, 2.0, -3.0]], dtype="float32")
    z = _np(gaussian.sample(mean, log_variance, 7))
    eps = (z - mean) / np.exp(0.5 * log_variance)
    value, (grad_m, grad_lv) = gradients(
        lambda m, lv: keras.ops.sum(gaussian.sample(m, lv, 7) * keras.ops.convert_to_tensor(weights)), mean, log_variance)
    np.testing.assert_allclose(value, np.sum(z * weights), rtol=1e-5)
    np.testing.assert_allclose(grad_m, weights)
    np.testing.assert_allclose(grad_lv, weights * 0.5 * eps * np.exp(0.5 * log_variance),
                               rtol=1e-4, atol=1e-6)


@tensorflow_only("a tf.function(jit_compile=True); on JAX the contract's jit-compiled fit "
                 "covers the layers' draws")
def test_sample_under_xla_advances_the_seed():
    import tensorflow as tf

    generator = keras.random.SeedGenerator(5)
    mean, log_variance = np.zeros((2, 3), "float32"), np.zeros((2, 3), "float32")

    @tf.function(jit_compile=True)
    def draw():
        return gaussian.sample(mean, log_variance, generator)

    first, second = _np(draw()), _np(draw())
    assert np.all(np.isfinite(first)) and not np.allclose(first, second)


@pytest.mark.parametrize("hidden_units, variance", [(None, "learned"), (9, "bounded")])
def test_gaussian_encoder(hidden_units, variance):
    encoder = GaussianEncoder(3, hidden_units=hidden_units, variance=variance, seed=2)
    features = RNG.normal(size=(6, 4)).astype("float32") * 5
    mean, log_variance = encoder(features)
    assert tuple(mean.shape) == (6, 3) and tuple(log_variance.shape) == (6, 3)
    lv = _np(log_variance)
    if variance == "bounded":
        assert np.all(lv < 0)  # variance in (0, 1)
        raw = features
        for layer in encoder.log_variance_network:
            raw = _np(layer(raw))
        np.testing.assert_allclose(lv, -np.logaddexp(0.0, -raw), rtol=1e-5, atol=1e-6)
        hidden = np.maximum(features @ _np(encoder.mean_network[0].kernel)
                            + _np(encoder.mean_network[0].bias), 0.0)
        expected_mean = hidden @ _np(encoder.mean_network[1].kernel) + _np(
            encoder.mean_network[1].bias)
        assert len(encoder.trainable_weights) == 8  # two MLPs, 2 Dense layers each
    else:
        outputs = features @ _np(encoder.projection.kernel) + _np(encoder.projection.bias)
        expected_mean = outputs[:, :3]
        np.testing.assert_allclose(lv, 10.0 * np.tanh(outputs[:, 3:] / 10.0), rtol=1e-5,
                                   atol=1e-5)
        assert len(encoder.trainable_weights) == 2  # one (4, 2 * 3) projection
    np.testing.assert_allclose(_np(mean), expected_mean, rtol=1e-5, atol=1e-5)
    z = encoder.sample(mean, log_variance, num_samples=2)
    assert tuple(z.shape) == (2, 6, 3)
    q = tensorflow_feature(encoder.distribution, mean, log_variance)
    if q is not None:
        np.testing.assert_allclose(_np(q.stddev()), np.exp(0.5 * lv), rtol=1e-5)
    clone = GaussianEncoder.from_config(encoder.get_config())
    assert clone.get_config() == encoder.get_config()
    symbolic = encoder(keras.Input((4,)))
    assert tuple(symbolic[0].shape) == (None, 3)


def test_gaussian_encoder_mixed_precision_outputs_float32():
    encoder = GaussianEncoder(3, dtype="mixed_float16")
    mean, log_variance = encoder(np.ones((2, 4), "float32"))
    assert keras.backend.standardize_dtype(mean.dtype) == "float32"
    assert keras.backend.standardize_dtype(log_variance.dtype) == "float32"


@pytest.mark.parametrize("kwargs, match", [
    (dict(latent_dim=0), "latent_dim"),
    (dict(latent_dim=2.5), "latent_dim"),
    (dict(latent_dim=2, hidden_units=0), "hidden_units"),
    (dict(latent_dim=2, variance="softplus"), "variance"),
    (dict(latent_dim=2, seed="x"), "seed"),
])
def test_gaussian_encoder_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        GaussianEncoder(**kwargs)


def test_gaussian_encoder_bad_num_samples():
    encoder = GaussianEncoder(2)
    mean, log_variance = encoder(np.ones((1, 3), "float32"))
    with pytest.raises(ValueError, match="num_samples"):
        encoder.sample(mean, log_variance, num_samples=0)
