"""VariationalSoftmax and VariationalClassificationLoss against independent NumPy computations."""

import keras
import numpy as np
import pytest

from backends import BACKEND
from backends import compiled
from backends import gradients
from backends import tensorflow_feature
from backends import tensorflow_only
from keras_vc.layers import VariationalSoftmax
from keras_vc.losses import VariationalClassificationLoss

B, F, K, Z = 12, 6, 4, 3
RNG = np.random.default_rng(0)
X = RNG.normal(size=(B, F)).astype("float32")
Y = np.arange(B) % K


def _np(x):
    return keras.ops.convert_to_numpy(x)


def _log_softmax(a):
    a = a - a.max(-1, keepdims=True)
    return a - np.log(np.exp(a).sum(-1, keepdims=True))


def _softplus(a):
    return np.logaddexp(0.0, a)


def _numpy_joint(z, means, log_variances, log_pi):
    """log N(z_b; mu_k, diag exp(lv_k)) + log pi_k by the textbook formula, one pair at a time."""
    out = np.zeros((z.shape[0], means.shape[0]))
    for b in range(z.shape[0]):
        for k in range(means.shape[0]):
            var = np.exp(log_variances[k])
            out[b, k] = (np.sum(-0.5 * np.log(2 * np.pi * var) - (z[b] - means[k]) ** 2 / (2 * var))
                         + log_pi[k])
    return out


def _prior(layer):
    """The prior's means and log-variances from the stored weights (stored = parameter / c)."""
    c = layer.prior_learning_rate_multiplier
    means = c * _np(layer.prior_means).astype(np.float64)
    log_variances = 5.0 * np.tanh(c * _np(layer.prior_raw_log_variances).astype(np.float64) / 5.0)
    return means, log_variances


def _encoder_numpy(layer, x):
    """q(z|x) parameters from the layer's weights, in NumPy."""
    if layer.encoder is None:
        if layer.projection is None:
            return x.astype(np.float64), None
        kernel, bias = (_np(w) for w in layer.projection.weights)
        return x @ kernel + bias, None
    kernel, bias = (_np(w) for w in layer.encoder.projection.weights)
    mean, raw = np.split(x @ kernel + bias, 2, axis=-1)
    return mean, 10.0 * np.tanh(raw / 10.0)


def _randomise(layer):
    """Moves every weight away from its initial value (zeros, ones) so that tests see them."""
    rng = np.random.default_rng(1)
    for weight in layer.trainable_weights:
        weight.assign(_np(weight) + 0.3 * rng.normal(size=weight.shape).astype("float32"))


@pytest.fixture(scope="module")
def gaussian_layer():
    layer = VariationalSoftmax(K, latent_dim=Z, class_prior="learned", seed=3)
    layer(X)
    _randomise(layer)
    return layer


@pytest.fixture(scope="module")
def deterministic_layer():
    layer = VariationalSoftmax(K, latent_dim=Z, posterior="deterministic", seed=4)
    layer(X)
    _randomise(layer)
    return layer


@pytest.mark.parametrize("which", ["gaussian_layer", "deterministic_layer"])
def test_inference_logits_are_gaussian_log_joint_densities(which, request):
    layer = request.getfixturevalue(which)
    mean, _ = _encoder_numpy(layer, X)
    means, log_variances = _prior(layer)
    log_pi = _np(layer.class_log_prior())
    if layer.class_prior == "learned":
        logits = _np(layer.class_logits)
        np.testing.assert_allclose(log_pi, _log_softmax(logits[None])[0], rtol=1e-5, atol=1e-6)
    else:
        np.testing.assert_allclose(log_pi, np.full(K, -np.log(K)), rtol=1e-6)
    expected = _numpy_joint(mean, means, log_variances, log_pi)
    np.testing.assert_allclose(_np(layer(X, training=False)), expected, rtol=1e-4, atol=1e-4)
    # The TFP priors agree.
    priors = tensorflow_feature(layer.prior_distribution)
    if priors is not None:
        tfp_log_prob = _np(priors.log_prob(mean[:, None, :].astype("float32")))
        np.testing.assert_allclose(tfp_log_prob + log_pi, expected, rtol=1e-4, atol=1e-4)


def test_temperature_divides_inference_outputs_only():
    # Without a discriminator a deterministic layer's training logits are deterministic:
    # logits - beta * (-(logits - log pi)) = (1 + beta) logits - beta log pi.
    layer = VariationalSoftmax(K, latent_dim=Z, posterior="deterministic",
                               consistency_weight=0.0, beta=0.3, seed=4)
    layer(X)
    _randomise(layer)
    plain = _np(layer(X))
    log_pi = -np.log(K)
    layer.temperature.assign(2.5)
    try:
        np.testing.assert_allclose(_np(layer(X)), plain / 2.5, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(_np(layer(X, training=True)), 1.3 * plain - 0.3 * log_pi,
                                   rtol=1e-5, atol=1e-5)
        scores = layer.ood_score(_np(layer(X)))
        log_marginal = np.log(np.exp(plain.astype(np.float64)).sum(-1))
        np.testing.assert_allclose(scores, log_marginal, rtol=1e-5, atol=1e-4)
    finally:
        layer.temperature.assign(1.0)
    assert layer.recommended_ood_score == "energy"


def test_gaussian_kl_term_is_an_unbiased_estimate_of_the_closed_form(gaussian_layer):
    layer = gaussian_layer
    mean, log_variance = _encoder_numpy(layer, X)
    means, log_variances = _prior(layer)
    vq, vp = np.exp(log_variance), np.exp(log_variances)
    entropy = 0.5 * np.sum(np.log(2 * np.pi * np.e * vq), -1)
    posterior = tensorflow_feature(layer.posterior_distribution, X)
    if posterior is not None:
        np.testing.assert_allclose(_np(posterior.entropy()), entropy, rtol=1e-5)
    # kl = beta * (-log p(z | k) - H(q)), where log p(z | k) = logits - log pi_k.
    repeats = 2000
    out, terms = layer.training_terms(np.tile(X, (repeats, 1)))
    kl = _np(terms["kl"]).reshape(repeats, B, K)
    log_pi = _np(layer.class_log_prior())
    log_density = _np(out).reshape(repeats, B, K) - log_pi
    np.testing.assert_allclose(kl, layer.beta * (-log_density - entropy[None, :, None]),
                               rtol=1e-4, atol=1e-5)
    closed_form = np.array([[np.sum(0.5 * np.log(vp[k] / vq[b])
                                    + (vq[b] + (mean[b] - means[k]) ** 2) / (2 * vp[k]) - 0.5)
                             for k in range(K)] for b in range(B)])
    estimate = kl.mean(0) / layer.beta
    standard_error = kl.std(0) / layer.beta / np.sqrt(repeats)
    assert np.all(np.abs(estimate - closed_form) < 4 * standard_error + 1e-3)


def test_training_draws_follow_the_posterior():
    layer = VariationalSoftmax(2, latent_dim=2, consistency_weight=0.0, seed=0)
    x = np.repeat(X[:1], 4000, axis=0)
    layer(x)
    mean, log_variance = _encoder_numpy(layer, x[:1])
    means, log_variances = _prior(layer)
    # With a uniform class prior: logits_1 - logits_0 is affine in z and z^2 per coordinate,
    # so its sample mean and variance over draws identify E[z] and Var[z] only jointly; instead
    # read z back: with equal variances (initial prior) the difference is linear in z.
    diff = _np(layer.training_terms(x)[0])
    diff = diff[:, 1] - diff[:, 0]
    direction = (means[1] - means[0]) / np.exp(log_variances[0])
    offset = -0.5 * np.sum((means[1] ** 2 - means[0] ** 2) / np.exp(log_variances[0]))
    predicted_mean = mean[0] @ direction + offset
    predicted_std = np.sqrt(np.sum(direction ** 2 * np.exp(log_variance[0])))
    assert abs(diff.mean() - predicted_mean) < 4 * predicted_std / np.sqrt(4000) + 1e-3
    assert abs(diff.std() / predicted_std - 1) < 0.06


def test_deterministic_terms_and_discriminator_scores(deterministic_layer):
    layer = deterministic_layer
    _, terms = layer.training_terms(X)
    z, _ = _encoder_numpy(layer, X)
    means, log_variances = _prior(layer)
    log_density = _numpy_joint(z, means, log_variances, np.zeros(K))
    np.testing.assert_allclose(_np(terms["kl"]), -layer.beta * log_density, rtol=1e-4, atol=1e-5)
    kernel, bias = _np(layer.discriminator_kernel), _np(layer.discriminator_bias)
    real = z @ kernel + bias
    np.testing.assert_allclose(_np(terms["consistency"]), layer.consistency_weight * real,
                               rtol=1e-4, atol=1e-6)
    # discriminator = softplus(-T(z, k)) + softplus(T(z~, k)), z~ ~ N(mu_k, sigma_k^2): recover
    # T(z~, k) and compare its distribution with N(mu_k . w_k + b_k, sum_d sigma_kd^2 w_kd^2).
    x = np.repeat(X, 400, axis=0)
    disc = _np(layer.training_terms(x)[1]["discriminator"])
    real = np.repeat(real, 400, axis=0)
    fake = np.log(np.expm1(disc - _softplus(-real)))
    expected_mean = np.sum(means.T * kernel, axis=0) + bias
    expected_std = np.sqrt(np.sum(np.exp(log_variances).T * kernel ** 2, axis=0))
    np.testing.assert_allclose(fake.mean(0), expected_mean, atol=4 * expected_std.max() / 69)
    np.testing.assert_allclose(fake.std(0), expected_std, rtol=0.05)


def _objective(layer, labels, y_pred):
    """What fit minimises: the compiled loss plus the layer's losses of the same call."""
    return float(_np(VariationalClassificationLoss()(labels, y_pred))) + sum(
        float(_np(v)) for v in layer.losses)


def test_training_objective_of_a_deterministic_latent_is_ce_plus_beta_nll():
    layer = VariationalSoftmax(K, latent_dim=Z, posterior="deterministic", beta=0.2,
                               consistency_weight=0.0, seed=1)
    layer(X)
    _randomise(layer)
    z, _ = _encoder_numpy(layer, X)
    log_pi = np.full(K, -np.log(K))
    logits = _numpy_joint(z, *_prior(layer), log_pi)
    rows = np.arange(B), Y
    expected = np.mean(-_log_softmax(logits)[rows] - 0.2 * (logits - log_pi)[rows])
    # One-hot and (B, 1) labels give the same value; a plain sparse cross-entropy trains the
    # same objective (the layer's output and losses carry it).
    for labels in (Y, np.eye(K)[Y], Y[:, None]):
        out = layer(X, training=True)
        np.testing.assert_allclose(_objective(layer, labels, out), expected, rtol=1e-5)
    out = layer(X, training=True)
    plain = keras.losses.SparseCategoricalCrossentropy(from_logits=True)(Y, out)
    np.testing.assert_allclose(float(_np(plain)) + float(_np(layer.losses[0])), expected,
                               rtol=1e-5)
    # beta = 0: the objective is the cross-entropy of the log joint densities.
    layer.beta = 0.0
    out = layer(X, training=True)
    np.testing.assert_allclose(_objective(layer, Y, out),
                               np.mean(-_log_softmax(logits)[rows]), rtol=1e-5)


def test_training_objective_adds_the_label_columns_of_every_term(gaussian_layer):
    layer = gaussian_layer
    state = _np(layer.seed_generator.state)
    logits, terms = layer.training_terms(X)        # the same draws as the call below
    layer.seed_generator.state.assign(state)
    out = layer(X, training=True)
    per_class = -_log_softmax(_np(logits).astype(np.float64))
    for name in ("kl", "consistency", "discriminator"):
        per_class = per_class + _np(terms[name])
    expected = np.mean(per_class[np.arange(B), Y])
    np.testing.assert_allclose(_objective(layer, Y, out), expected, rtol=1e-5)
    # In inference mode the loss is the cross-entropy of the deterministic prediction and the
    # layer adds nothing.
    out = layer(X, training=False)
    assert not layer.losses
    expected = -np.mean(_log_softmax(_np(out).astype(np.float64))[np.arange(B), Y])
    np.testing.assert_allclose(float(_np(VariationalClassificationLoss()(Y, out))), expected,
                               rtol=1e-5)


def _gradients(layer, name):
    one_hot = np.eye(K, dtype="float32")[Y]

    def value():
        out, terms = layer.training_terms(X)
        if name == "cross_entropy":
            return -keras.ops.sum(keras.ops.multiply(keras.ops.log_softmax(out), one_hot))
        return keras.ops.sum(keras.ops.multiply(terms[name], one_hot))

    variables = layer.trainable_variables
    _, grads = gradients(value, variables=variables)
    norms = {}
    for variable, grad in zip(variables, grads):
        norm = float(np.abs(grad).sum())
        group = ("discriminator" if "discriminator" in variable.path
                 else "prior" if "prior" in variable.path or "class_logits" in variable.path
                 else "encoder")
        norms[group] = norms.get(group, 0.0) + norm
    return norms


def test_stop_gradients_separate_the_discriminator(gaussian_layer):
    discriminator = _gradients(gaussian_layer, "discriminator")
    assert discriminator["discriminator"] > 0
    assert discriminator["encoder"] == 0.0 and discriminator["prior"] == 0.0
    consistency = _gradients(gaussian_layer, "consistency")
    assert consistency["encoder"] > 0
    assert consistency["discriminator"] == 0.0 and consistency["prior"] == 0.0
    for name in ("kl", "cross_entropy"):
        norms = _gradients(gaussian_layer, name)
        assert norms["encoder"] > 0 and norms["prior"] > 0
        assert norms["discriminator"] == 0.0


@pytest.mark.slow
def test_density_ratio_discriminator_estimates_a_known_kl():
    """q(z|y) = N(0, 1), p(z|y) = N(1, 1): the optimal T is 1/2 - z and KL = 1/2."""
    keras.utils.set_random_seed(0)
    layer = VariationalSoftmax(2, latent_dim=None, posterior="deterministic", prior="fixed",
                               beta=0.0, consistency_weight=1.0, seed=0,
                               prior_mean_initializer=keras.initializers.Constant(1.0))
    model = keras.Sequential([keras.Input((1,)), layer])
    x = np.random.default_rng(0).normal(size=(76800, 1)).astype("float32")
    y = np.zeros(76800, dtype="int32")
    model.compile(optimizer=keras.optimizers.Adam(
        keras.optimizers.schedules.CosineDecay(0.1, 150)),
        loss=VariationalClassificationLoss(), jit_compile=False)  # XLA: the contract's job
    model.fit(x, y, batch_size=512, epochs=1, verbose=0)  # 150 steps
    assert [v.path.split("/")[-1] for v in layer.trainable_variables] == [
        "discriminator_kernel", "discriminator_bias"]
    fresh = np.random.default_rng(1).normal(size=(20000, 1)).astype("float32")
    estimate = layer.consistency_kl(fresh, np.zeros(20000, dtype="int32"))
    assert abs(estimate - 0.5) < 0.05, estimate
    np.testing.assert_allclose(_np(layer.discriminator_kernel)[0, 0], -1.0, atol=0.15)


def test_monte_carlo_prediction_averages_probabilities(gaussian_layer):
    layer = gaussian_layer
    state = _np(layer.seed_generator.state)
    mc = _np(layer(X, num_samples=5))
    layer.seed_generator.state.assign(state)
    mean, log_variance = layer.encode(X)
    from keras_vc.ops import gaussian

    draws = _np(gaussian.sample(mean, log_variance, layer.seed_generator, num_samples=5))
    means, log_variances = _prior(layer)
    log_pi = _np(layer.class_log_prior())
    joint = np.stack([_numpy_joint(d, means, log_variances, log_pi) for d in draws])
    probs = np.exp(_log_softmax(joint)).mean(0)
    np.testing.assert_allclose(np.exp(_log_softmax(mc)), probs, rtol=1e-4, atol=1e-6)
    marginal = np.log(np.exp(joint).sum(-1).mean(0))
    np.testing.assert_allclose(layer.ood_score(mc), marginal, rtol=1e-4, atol=1e-4)
    # Fresh draws: another call differs; the default (num_samples=1) path is the mean.
    assert not np.allclose(_np(layer(X, num_samples=5)), mc)
    np.testing.assert_allclose(_np(layer(X)), _np(layer(X)))
    assert layer.inference_noise is None


def test_fixed_inference_draws_are_stored_and_deterministic():
    layer = VariationalSoftmax(K, latent_dim=Z, num_samples=6, seed=5)
    layer(X)
    _randomise(layer)
    layer.temperature.assign(1.5)
    noise = _np(layer.inference_noise)
    assert noise.shape == (6, Z) and not layer.inference_noise.trainable
    out = _np(layer(X))
    mean, log_variance = _encoder_numpy(layer, X)
    draws = mean[None] + np.exp(0.5 * log_variance)[None] * noise[:, None]
    means, log_variances = _prior(layer)
    joint = np.stack([_numpy_joint(d, means, log_variances, _np(layer.class_log_prior()))
                      for d in draws])
    probs = np.exp(_log_softmax(joint)).mean(0)
    np.testing.assert_allclose(np.exp(_log_softmax(out * 1.5)), probs, rtol=1e-4, atol=1e-6)
    marginal = np.log(np.exp(joint).sum(-1).mean(0))
    np.testing.assert_allclose(layer.ood_score(out), marginal, rtol=1e-4, atol=1e-4)
    # The same draws for every call and every batch composition.
    np.testing.assert_allclose(_np(layer(X)), out, rtol=1e-6)
    np.testing.assert_allclose(_np(layer(X[:3])), out[:3], rtol=1e-5, atol=1e-6)
    # Deterministic posterior: nothing to sample, no stored draws.
    deterministic = VariationalSoftmax(K, latent_dim=Z, posterior="deterministic", num_samples=6)
    deterministic(X)
    assert deterministic.inference_noise is None


def test_deterministic_posterior_ignores_num_samples(deterministic_layer):
    np.testing.assert_allclose(_np(deterministic_layer(X, num_samples=4)),
                               _np(deterministic_layer(X)), rtol=1e-6)
    with pytest.raises(ValueError, match="posterior='gaussian'"):
        deterministic_layer.posterior_distribution(X)


@pytest.mark.parametrize("kwargs, match", [
    (dict(num_classes=1), "num_classes"),
    (dict(num_classes=K, latent_dim=0), "latent_dim"),
    (dict(num_classes=K, num_samples=0), "num_samples"),
    (dict(num_classes=K, beta=-0.1), "beta"),
    (dict(num_classes=K, consistency_weight=-1.0), "consistency_weight"),
    (dict(num_classes=K, posterior="vmf"), "posterior"),
    (dict(num_classes=K, prior="mixture"), "prior"),
    (dict(num_classes=K, class_prior="empirical"), "class_prior"),
    (dict(num_classes=K, seed=1.5), "seed"),
    (dict(num_classes=K, prior_learning_rate_multiplier=0.0), "prior_learning_rate_multiplier"),
    (dict(num_classes=K, prior_learning_rate_multiplier=-0.1), "prior_learning_rate_multiplier"),
    (dict(num_classes=K, prior_learning_rate_multiplier="0.1"), "prior_learning_rate_multiplier"),
])
def test_bad_constructor_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        VariationalSoftmax(**kwargs)


def test_bad_call_arguments(gaussian_layer):
    with pytest.raises(ValueError, match="num_samples"):
        gaussian_layer(X, num_samples=0)
    with pytest.raises(ValueError, match="batch, features"):
        VariationalSoftmax(K)(np.zeros((2, 3, 4), "float32"))
    with pytest.raises(ValueError, match="labels"):
        gaussian_layer.consistency_kl(X, np.full(B, K))
    with pytest.raises(ValueError, match="consistency_weight=0"):
        layer = VariationalSoftmax(K, consistency_weight=0.0)
        layer(X)
        layer.consistency_kl(X, Y)


def test_loss_rejects_bad_labels(gaussian_layer):
    loss = VariationalClassificationLoss()
    out = gaussian_layer(X, training=True)
    with pytest.raises(ValueError, match=r"y_true.*\[0, 3\]"):
        loss(np.full(B, K), out)
    with pytest.raises(ValueError, match="y_true"):
        loss(-np.ones(B, dtype="int32"), out)
    with pytest.raises(ValueError, match="y_true"):
        loss(np.eye(K + 1)[Y], out)  # one-hot rows of the wrong width

    traced = compiled(loss)
    # Traced, values are unknown until run: an out-of-range label stops the step there
    # (tf.function: an in-graph assertion; jax.jit: a host callback; PyTorch runs eagerly, where
    # the check above raises)...
    if BACKEND != "torch":
        with pytest.raises(Exception, match=rf"num_classes={K}"):
            _np(traced(np.full(B, K), out))
        assert np.isfinite(_np(traced(Y, out)))
    if BACKEND == "tensorflow":
        import tensorflow as tf

        # ...but XLA on TensorFlow drops runtime assertions: there the loss is NaN.
        xla = tf.function(loss, jit_compile=True)
        assert np.isnan(_np(xla(tf.constant(np.full(B, K)), out)))


def test_config_round_trip_keeps_every_argument():
    layer = VariationalSoftmax(5, latent_dim=7, posterior="deterministic", prior="fixed",
                               class_prior="learned", beta=0.2, consistency_weight=0.0,
                               num_samples=3, prior_learning_rate_multiplier=0.25, seed=9)
    config = layer.get_config()
    assert config["prior_learning_rate_multiplier"] == 0.25
    assert VariationalSoftmax.from_config(config).get_config() == config
    loss = VariationalClassificationLoss(reduction="sum")
    assert VariationalClassificationLoss.from_config(loss.get_config()).reduction == "sum"


# --------------------------------------------------------------------------------------------
# Prior learning-rate multiplier
# --------------------------------------------------------------------------------------------

PRIOR_MEANS = RNG.normal(size=(K, F)).astype("float32")
PRIOR_LOG_VARIANCES = 0.5 * RNG.normal(size=(K, F)).astype("float32")


def _one_step_prior(multiplier, optimizer):
    """The prior (means, raw log-variances) before and after one training step on (X, Y)."""
    layer = VariationalSoftmax(K, latent_dim=None, posterior="deterministic",
                               consistency_weight=0.0, beta=0.3,
                               prior_learning_rate_multiplier=multiplier, seed=0)
    model = keras.Sequential([keras.Input((F,)), layer])
    layer.prior_means.assign(PRIOR_MEANS / multiplier)
    layer.prior_raw_log_variances.assign(PRIOR_LOG_VARIANCES / multiplier)
    model.compile(optimizer=optimizer, loss=VariationalClassificationLoss(), jit_compile=False)
    before = (multiplier * _np(layer.prior_means), multiplier * _np(layer.prior_raw_log_variances))
    model.train_on_batch(X, Y)
    after = (multiplier * _np(layer.prior_means), multiplier * _np(layer.prior_raw_log_variances))
    return before, after


def _numpy_prior_gradients():
    """Gradients of mean_i [logsumexp(L_i) - (1 + beta) L_{i, y_i}] (the objective of a
    deterministic latent z = x without discriminator, up to a constant) with respect to the
    means and the raw log-variances r, log-variance = 5 tanh(r / 5)."""
    beta = 0.3
    z = X.astype(np.float64)
    means, raw = PRIOR_MEANS.astype(np.float64), PRIOR_LOG_VARIANCES.astype(np.float64)
    log_variances = 5.0 * np.tanh(raw / 5.0)
    logits = _numpy_joint(z, means, log_variances, np.full(K, -np.log(K)))
    weights = (np.exp(_log_softmax(logits)) - (1.0 + beta) * np.eye(K)[Y]) / B   # dJ / dL
    diff = z[:, None, :] - means[None, :, :]                                         # (B, K, F)
    variances = np.exp(log_variances)[None]
    grad_means = np.einsum("bk,bkf->kf", weights, diff / variances)
    grad_log_variances = np.einsum("bk,bkf->kf", weights, -0.5 + 0.5 * diff ** 2 / variances)
    grad_raw = grad_log_variances * (1.0 - np.tanh(raw / 5.0) ** 2)
    return grad_means, grad_raw


def _adam_first_step(gradient, learning_rate, beta_1=0.9, beta_2=0.999, epsilon=1e-7):
    m, v = (1 - beta_1) * gradient, (1 - beta_2) * gradient ** 2
    alpha = learning_rate * np.sqrt(1 - beta_2) / (1 - beta_1)
    return alpha * m / (np.sqrt(v) + epsilon)


@pytest.mark.parametrize("kind", ["adam", "sgd"])
def test_prior_step_is_the_multiplier_times_the_optimizers_step(kind):
    learning_rate, multiplier = 0.05, 0.1
    make = {"adam": lambda: keras.optimizers.Adam(learning_rate),
            "sgd": lambda: keras.optimizers.SGD(learning_rate)}[kind]
    gradients = _numpy_prior_gradients()
    steps = {}
    for c in (1.0, multiplier):
        before, after = _one_step_prior(c, make())
        np.testing.assert_allclose(before[0], PRIOR_MEANS, rtol=1e-6, atol=1e-6)
        steps[c] = [a - b for a, b in zip(after, before)]
        for step, gradient in zip(steps[c], gradients):
            optimizer_step = (_adam_first_step(gradient, learning_rate) if kind == "adam"
                              else learning_rate * gradient)
            np.testing.assert_allclose(step, -c * optimizer_step, rtol=2e-3, atol=3e-6)
    for scaled, plain in zip(steps[multiplier], steps[1.0]):
        np.testing.assert_allclose(scaled, multiplier * plain, rtol=2e-3, atol=3e-6)
    # Under Adam the step does not depend on the gradient's scale: scaling the gradient by c
    # would not have given c times the step, and this shows the optimizer step is not ~ c^2.
    if kind == "adam":
        assert np.abs(steps[multiplier][0]).max() > 0.5 * multiplier * learning_rate


def test_default_multiplier_uses_the_stored_prior_itself(gaussian_layer):
    assert gaussian_layer.prior_learning_rate_multiplier == 1.0
    np.testing.assert_array_equal(_np(gaussian_layer.prior_mean_values()),
                                  _np(gaussian_layer.prior_means))
    np.testing.assert_array_equal(
        _np(gaussian_layer.prior_log_variances()),
        _np(5.0 * keras.ops.tanh(gaussian_layer.prior_raw_log_variances / 5.0)))


def test_multiplier_keeps_the_initial_prior_and_the_outputs():
    initializer = keras.initializers.RandomNormal(seed=11)
    plain = VariationalSoftmax(K, latent_dim=Z, prior_mean_initializer=initializer, seed=5)
    scaled = VariationalSoftmax(K, latent_dim=Z, prior_mean_initializer=initializer, seed=5,
                                prior_learning_rate_multiplier=0.1)
    plain(X)
    scaled(X)
    np.testing.assert_allclose(_np(scaled.prior_means), 10.0 * _np(plain.prior_means), rtol=1e-6)
    np.testing.assert_allclose(_np(scaled.prior_mean_values()), _np(plain.prior_means),
                               rtol=1e-6, atol=1e-7)
    for target, source in zip(scaled.encoder.weights, plain.encoder.weights):
        target.assign(source)
    np.testing.assert_allclose(_np(scaled(X)), _np(plain(X)), rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_multiplier_survives_keras_save_and_load(tmp_path):
    layer = VariationalSoftmax(K, latent_dim=Z, prior_learning_rate_multiplier=0.1, seed=2)
    model = keras.Sequential([keras.Input((F,)), layer])
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss=VariationalClassificationLoss(),
                  jit_compile=False)
    model.train_on_batch(X, Y)
    path = str(tmp_path / "vc.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    restored = loaded.layers[-1]
    assert restored.prior_learning_rate_multiplier == 0.1
    np.testing.assert_array_equal(_np(restored.prior_means), _np(layer.prior_means))
    np.testing.assert_allclose(_np(restored.prior_mean_values()), _np(layer.prior_mean_values()),
                               rtol=1e-6)
    np.testing.assert_allclose(loaded.predict(X, verbose=0), model.predict(X, verbose=0),
                               rtol=1e-6, atol=1e-6)
