"""Two-stage training (keras_vc.two_stage) and its heads (BottleneckHead, VariationalHead)."""

import os

import keras
import numpy as np
import pytest

from backends import tensorflow_only
from keras_vc import two_stage
from keras_vc.layers import BottleneckHead
from keras_vc.layers import VariationalHead
from model_fixtures import subclassed_classifier

NUM_CLASSES = 3
# Not np.asarray: a PyTorch output that depends on trainable weights carries a grad_fn.
_np = keras.ops.convert_to_numpy
DIM = 6


def _blobs(n, seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, NUM_CLASSES, size=n)
    centres = np.eye(NUM_CLASSES, DIM) * 3.0
    x = centres[y] + rng.normal(size=(n, DIM))
    return x.astype("float32"), y.astype("int64")


@pytest.fixture(scope="module")
def data():
    return _blobs(96, 0), _blobs(48, 1)


def _fit_stage1(model, data):
    """A few full-batch training steps: moves the weights and the BatchNorm moving statistics."""
    (x, y), _ = data
    model.compile(keras.optimizers.Adam(1e-2),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, batch_size=len(x), epochs=10, shuffle=False, verbose=0)
    return model


@pytest.fixture(scope="module")
def functional_stage1(data):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((DIM,))
    hidden = keras.layers.Dense(16, activation="relu", name="hidden")(inputs)
    hidden = keras.layers.BatchNormalization(name="bn")(hidden)
    features = keras.layers.Dense(8, activation="relu", name="features")(hidden)
    logits = keras.layers.Dense(NUM_CLASSES, name="logits")(features)
    return _fit_stage1(keras.Model(inputs, logits, name="stage1"), data)


@pytest.fixture(scope="module")
def sequential_stage1(data):
    """A Sequential model with Dropout in its body: stage 2 must train through the body."""
    keras.utils.set_random_seed(1)
    model = keras.Sequential([
        keras.Input((DIM,)),
        keras.layers.Dense(16, activation="relu"),
        keras.layers.BatchNormalization(),
        keras.layers.Dropout(0.2),
        keras.layers.Dense(8, activation="relu"),
        keras.layers.Dense(NUM_CLASSES),
    ], name="sequential_stage1")
    return _fit_stage1(model, data)


def _snapshot(model):
    return ([np.array(v) for v in model.weights], [layer.trainable for layer in model.layers],
            [v.trainable for v in model.weights])


def _assert_unchanged(model, snapshot):
    weights, flags, variable_flags = snapshot
    for before, variable in zip(weights, model.weights):
        np.testing.assert_array_equal(np.array(variable), before, err_msg=variable.path)
    assert [layer.trainable for layer in model.layers] == flags
    assert [v.trainable for v in model.weights] == variable_flags


def _retrain(stage1, data, **kwargs):
    (x, y), (x_val, y_val) = data
    options = dict(latent_dim=4, train_data=(x, y), validation_data=(x_val, y_val), epochs=6,
                   optimizer=keras.optimizers.Adam(1e-2), batch_size=32, patience=None, seed=0)
    options.update(kwargs)
    return two_stage.retrain_head(stage1, **options)


@pytest.fixture(scope="module")
def tst_model(functional_stage1, data):
    snapshot = _snapshot(functional_stage1)
    keras.utils.set_random_seed(2)
    model = _retrain(functional_stage1, data, features="features", head="tst")
    return model, snapshot


def _nll(logits, labels):
    logits = _np(logits).astype(np.float64)
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return float(-log_probs[np.arange(len(labels)), labels].mean())


def test_tst_trains_a_new_head_and_leaves_stage1_unchanged(functional_stage1, tst_model, data):
    model, snapshot = tst_model
    _assert_unchanged(functional_stage1, snapshot)
    body, head = model.layers[-2], model.layers[-1]
    assert isinstance(head, BottleneckHead) and head.latent_dim == 4
    assert not body.trainable and all(not v.trainable for v in body.weights)
    assert not any(body.get_layer(name) is functional_stage1.get_layer(name)
                   for name in ("hidden", "bn", "features")), "stage 1's layers are shared"
    stage1_body = keras.Model(functional_stage1.input,
                              functional_stage1.get_layer("features").output)
    for copied, original in zip(body.weights, stage1_body.weights):
        np.testing.assert_array_equal(np.array(copied), np.array(original))
    (x, y), _ = data
    history = model.history.history
    assert history["loss"][-1] < history["loss"][0]
    assert _nll(model.predict(x, verbose=0), y) < np.log(NUM_CLASSES) - 0.2


def test_frozen_batchnorm_runs_in_inference_mode(functional_stage1, data):
    (x, _), _ = data
    body = two_stage.frozen_feature_extractor(functional_stage1, "bn")
    view = keras.Model(functional_stage1.input, functional_stage1.get_layer("bn").output)
    moving = _np(view(x, training=False))
    batch_statistics = _np(view(x, training=True))
    np.testing.assert_allclose(_np(body(x, training=True)), moving, atol=1e-6)
    assert not np.allclose(batch_statistics, moving, atol=1e-3), "the check cannot tell modes apart"


def test_vtst_through_the_body_keeps_every_statistic(sequential_stage1, data):
    snapshot = _snapshot(sequential_stage1)
    keras.utils.set_random_seed(3)
    model = _retrain(sequential_stage1, data, features=-2, head="vtst", num_samples=5)
    _assert_unchanged(sequential_stage1, snapshot)
    body, head = model.layers[-2], model.layers[-1]
    assert isinstance(head, VariationalHead) and head.num_samples == 5
    # Dropout makes the body stochastic in training: the head was trained through the body,
    # whose BatchNorm statistics and weights must still be stage 1's.
    for copied, original in zip(body.weights, sequential_stage1.weights):
        np.testing.assert_array_equal(np.array(copied), np.array(original))
    history = model.history.history
    assert len(history["val_nll"]) == 6 and history["loss"][-1] < history["loss"][0]
    (x, y), _ = data
    outputs = model.predict(x, verbose=0)
    np.testing.assert_allclose(np.exp(outputs).sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(model.predict(x, verbose=0), outputs)


def test_checkpoint_with_lowest_validation_nll_is_restored(functional_stage1, data):
    (x, y), (x_val, _) = data
    # Labels unrelated to the inputs: the validation NLL gets worse as the head fits the train set.
    y_val = np.random.default_rng(5).integers(0, NUM_CLASSES, size=len(x_val))
    keras.utils.set_random_seed(4)
    model = two_stage.retrain_head(
        functional_stage1, "features", head="tst", latent_dim=4, train_data=(x, y),
        validation_data=(x_val, y_val), epochs=30, optimizer=keras.optimizers.Adam(3e-2),
        batch_size=32, patience=2)
    val_nll = model.history.history["val_nll"]
    best = int(np.argmin(val_nll))
    assert len(val_nll) == best + 3 < 30, "training did not stop after `patience` epochs"
    np.testing.assert_allclose(_nll(model.predict(x_val, verbose=0), y_val), val_nll[best],
                               rtol=1e-4)


def test_stage_two_model_saves_and_loads(tst_model, data, tmp_path):
    model, _ = tst_model
    (x, _), _ = data
    expected = model.predict(x, verbose=0)
    path = os.path.join(str(tmp_path), "stage2.keras")
    model.save(path)
    restored = keras.saving.load_model(path)
    np.testing.assert_allclose(restored.predict(x, verbose=0), expected, atol=1e-6)


@tensorflow_only("SavedModel export and tf.saved_model.load")
def test_stage_two_model_exports_a_saved_model(tst_model, data, tmp_path):
    import tensorflow as tf

    model, _ = tst_model
    (x, _), _ = data
    expected = model.predict(x, verbose=0)
    model.export(os.path.join(str(tmp_path), "export"), verbose=False)
    reloaded = tf.saved_model.load(os.path.join(str(tmp_path), "export"))
    np.testing.assert_allclose(reloaded.serve(tf.constant(x)), expected, atol=1e-5)


def _dense_numpy(layer, x, relu=False):
    out = x @ np.array(layer.kernel, np.float64) + np.array(layer.bias, np.float64)
    return np.maximum(out, 0.0) if relu else out


def _encoder_numpy(head, x):
    """Mean and log-variance of q(z | x) computed in NumPy from the head's weights."""
    encoder = head.encoder
    mean = _dense_numpy(encoder.mean_network[1], _dense_numpy(encoder.mean_network[0], x, True))
    raw = _dense_numpy(encoder.log_variance_network[1],
                       _dense_numpy(encoder.log_variance_network[0], x, True))
    log_variance = -np.logaddexp(0.0, -raw)  # log sigmoid
    return mean, log_variance


def _kl_numpy(mean, log_variance):
    per_dimension = -0.5 * (1.0 + log_variance - mean ** 2 - np.exp(log_variance))
    return per_dimension.mean(axis=1).mean()


def _softmax(logits):
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return np.exp(shifted) / np.exp(shifted).sum(axis=-1, keepdims=True)


def _head_model(head, dim=5):
    model = keras.Sequential([keras.Input((dim,)), head])
    model.compile(keras.optimizers.SGD(0.0),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def test_vtst_loss_is_cross_entropy_plus_kl_averaged_over_dimensions():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 5)).astype("float32")
    y = rng.integers(0, 4, size=16)
    head = VariationalHead(num_classes=4, latent_dim=3, seed=1)
    model = _head_model(head)
    # KL term with the encoder as initialised (log-variances spread around log sigmoid(0)).
    mean, log_variance = _encoder_numpy(head, x.astype(np.float64))
    logits = model(x, training=True)
    assert len(model.losses) == 1
    np.testing.assert_allclose(float(model.losses[0]), _kl_numpy(mean, log_variance), rtol=1e-5)
    loss = model.compute_loss(x, y, logits, training=True)
    np.testing.assert_allclose(float(_np(loss)), _nll(logits, y) + _kl_numpy(mean, log_variance),
                               rtol=1e-5)
    # Whole loss from the weights alone: with a variance of e^-40 the training draw is the mean.
    bias = head.encoder.log_variance_network[1].bias
    bias.assign(np.full(bias.shape, -40.0, "float32"))
    mean, log_variance = _encoder_numpy(head, x.astype(np.float64))
    expected = (_nll(_dense_numpy(head.decoder, mean), y) + _kl_numpy(mean, log_variance))
    logs = model.train_on_batch(x, y, return_dict=True)  # SGD(0): the loss of these weights
    np.testing.assert_allclose(logs["loss"], expected, rtol=1e-4)
    assert model(x, training=False).shape == (16, 4) and not model.losses


@pytest.mark.parametrize("kl_weight", [0.0, 0.1, 2.5])
def test_vtst_kl_weight_scales_the_kl_term(kl_weight):
    rng = np.random.default_rng(6)
    x = rng.normal(size=(16, 5)).astype("float32")
    y = rng.integers(0, 4, size=16)
    head = VariationalHead(num_classes=4, latent_dim=3, seed=1, kl_weight=kl_weight)
    model = _head_model(head)
    mean, log_variance = _encoder_numpy(head, x.astype(np.float64))
    logits = model(x, training=True)
    np.testing.assert_allclose(float(model.losses[0]), kl_weight * _kl_numpy(mean, log_variance),
                               rtol=1e-5, atol=1e-7)
    loss = model.compute_loss(x, y, logits, training=True)
    np.testing.assert_allclose(
        float(_np(loss)), _nll(logits, y) + kl_weight * _kl_numpy(mean, log_variance), rtol=1e-5)
    restored = VariationalHead.from_config(head.get_config())
    assert restored.kl_weight == kl_weight


def test_retrain_head_passes_the_kl_weight_to_the_vtst_head(functional_stage1, data):
    model = _retrain(functional_stage1, data, features="features", head="vtst", epochs=1,
                     kl_weight=0.1)
    assert model.layers[-1].kl_weight == 0.1
    stage2 = two_stage.build_stage_two(functional_stage1, "features", head="vtst", latent_dim=2,
                                       kl_weight=0.5)
    assert stage2.layers[-1].kl_weight == 0.5


def test_vtst_training_draws_follow_the_posterior():
    latent_dim, num_classes = 2, 3
    head = VariationalHead(num_classes, latent_dim, seed=3)
    model = _head_model(head)
    # An identity decoder: the first two training logits are the draw z itself.
    head.decoder.kernel.assign(np.eye(latent_dim, num_classes, dtype="float32"))
    head.decoder.bias.assign(np.zeros(num_classes, "float32"))
    x = np.tile(np.random.default_rng(1).normal(size=(1, 5)).astype("float32"), (4000, 1))
    draws = _np(model(x, training=True))[:, :latent_dim]
    mean, log_variance = _encoder_numpy(head, x[:1].astype(np.float64))
    std = np.exp(0.5 * log_variance[0])
    np.testing.assert_allclose(draws.mean(axis=0), mean[0], atol=4 * std.max() / np.sqrt(4000))
    np.testing.assert_allclose(draws.std(axis=0), std, rtol=0.06)


def test_vtst_inference_averages_probabilities_over_fixed_draws():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(8, 5)).astype("float32")
    head = VariationalHead(num_classes=4, latent_dim=3, num_samples=6, seed=0)
    model = _head_model(head)
    outputs = _np(model(x, training=False))
    mean, log_variance = _encoder_numpy(head, x.astype(np.float64))
    noise = np.array(head.inference_noise, np.float64)
    z = mean[None] + np.exp(0.5 * log_variance)[None] * noise[:, None, :]
    probs = _softmax(_dense_numpy(head.decoder, z)).mean(axis=0)
    np.testing.assert_allclose(outputs, np.log(probs), atol=1e-5)
    # Each example's prediction does not depend on the rest of the batch.
    np.testing.assert_allclose(_np(model(x[:3], training=False)), outputs[:3], atol=1e-6)
    # A fresh Monte-Carlo estimate on request: stochastic, still log-probabilities.
    features = keras.ops.convert_to_tensor(x)
    first, second = _np(head(features, num_samples=50)), _np(head(features, num_samples=50))
    np.testing.assert_allclose(np.exp(first).sum(axis=1), 1.0, atol=1e-5)
    assert not np.allclose(first, second)
    # One sample: the posterior mean.
    single = VariationalHead(num_classes=4, latent_dim=3, num_samples=1, seed=0)
    single_model = _head_model(single)
    mean, _ = _encoder_numpy(single, x.astype(np.float64))
    np.testing.assert_allclose(_np(single_model(x, training=False)),
                               _dense_numpy(single.decoder, mean), atol=1e-5)


def test_temperature_divides_the_outputs():
    x = np.random.default_rng(3).normal(size=(4, 5)).astype("float32")
    for head in (BottleneckHead(3, 2), VariationalHead(3, 2, seed=0)):
        model = _head_model(head)
        before = _np(model(x, training=False))
        head.temperature.assign(2.0)
        np.testing.assert_allclose(_np(model(x, training=False)), before / 2.0, rtol=1e-6)


def test_bottleneck_head_matches_numpy():
    x = np.random.default_rng(4).normal(size=(4, 5))
    head = BottleneckHead(num_classes=3, latent_dim=2)
    model = _head_model(head)
    assert head.hidden.units == 6
    expected = _dense_numpy(head.classifier, _dense_numpy(
        head.latent, _dense_numpy(head.hidden, x, relu=True)))
    np.testing.assert_allclose(_np(model(x.astype("float32"))), expected, atol=1e-5)


def _conv_model():
    inputs = keras.Input((4, 4, 1))
    conv = keras.layers.Conv2D(2, 1, name="conv")(inputs)
    return keras.Model(inputs, keras.layers.Dense(NUM_CLASSES)(keras.layers.Flatten()(conv)))


def _unbuilt():
    return keras.Sequential([keras.layers.Dense(4), keras.layers.Dense(NUM_CLASSES)])


def _subclassed():
    return subclassed_classifier(DIM, NUM_CLASSES)


@pytest.mark.parametrize("make_model, overrides, message", [
    (None, dict(features="missing"), "no layer named 'missing'"),
    (None, dict(features=7), "out of range"),
    (None, dict(features=1.5), "layer name \\(str\\) or index"),
    (_conv_model, dict(features="conv"), "\\(batch, D\\) feature vectors"),
    (_unbuilt, dict(features=0), "not built"),
    (_subclassed, dict(features=0), "Sequential or functional"),
    (lambda: "model", dict(), "must be a keras.Model"),
    (None, dict(latent_dim=0), "`latent_dim` must be >= 1"),
    (None, dict(head="mlp"), "`head` must be one of \\['tst', 'vtst'\\]"),
    (None, dict(validation_data=None), "`validation_data` is required"),
    (None, dict(train_data=[1, 2, 3]), "`train_data` must be a tuple"),
    (None, dict(epochs=0), "`epochs` must be >= 1"),
    (None, dict(num_samples=0, head="vtst"), "`num_samples` must be >= 1"),
    (None, dict(steps_per_execution=0), "`steps_per_execution` must be >= 1"),
    (None, dict(head="vtst", kl_weight=-0.5), "`kl_weight` must be >= 0"),
    (None, dict(head="vtst", kl_weight="0.1"), "`kl_weight` must be a number"),
    (None, dict(head="tst", kl_weight=0.5), "`kl_weight` applies to head='vtst' only"),
], ids=lambda value: value if isinstance(value, str) else None)
def test_bad_input_raises_value_error(functional_stage1, data, make_model, overrides, message):
    (x, y), (x_val, y_val) = data
    model = functional_stage1 if make_model is None else make_model()
    options = dict(features="features", train_data=(x, y), validation_data=(x_val, y_val),
                   epochs=1)
    options.update(overrides)
    with pytest.raises(ValueError, match=message):
        two_stage.retrain_head(model, **options)


@pytest.mark.parametrize("make, message", [
    (lambda: VariationalHead(1, 4), "`num_classes` must be >= 2"),
    (lambda: VariationalHead(3, 0), "`latent_dim` must be >= 1"),
    (lambda: VariationalHead(3, 4, num_samples=0), "`num_samples` must be >= 1"),
    (lambda: VariationalHead(3, 4, hidden_units=0), "`hidden_units` must be >= 1"),
    (lambda: VariationalHead(3, 4, seed=-1), "`seed` must be >= 0"),
    (lambda: VariationalHead(3, 4, kl_weight=-1.0), "`kl_weight` must be >= 0"),
    (lambda: two_stage.build_stage_two(_conv_model(), "conv", head="tst", kl_weight=0.5),
     "`kl_weight` applies to head='vtst' only"),
    (lambda: BottleneckHead(3, 0), "`latent_dim` must be >= 1"),
    (lambda: BottleneckHead(3, 2, hidden_units=2.5), "`hidden_units` must be an integer"),
])
def test_bad_head_arguments_raise_value_error(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_bad_num_samples_in_call_raises_value_error():
    head = VariationalHead(3, 2)
    with pytest.raises(ValueError, match="`num_samples` must be >= 1"):
        head(np.zeros((2, 5), "float32"), num_samples=0)


@pytest.mark.parametrize("label_shape, message", [
    ((2, 1), "must have shape \\(batch,\\), \\(batch, 1\\) or one-hot"),  # used to slip through
    ((NUM_CLASSES + 2,), "neither class ids .* nor one-hot rows"),
])
@tensorflow_only("labels delivered by a tf.data.Dataset")
def test_dataset_labels_of_a_wrong_shape_raise(functional_stage1, data, label_shape, message):
    import tensorflow as tf

    (x, _), (x_val, y_val) = data
    labels = np.zeros((len(x),) + label_shape, "float32")
    train = tf.data.Dataset.from_tensor_slices((x, labels)).batch(16)
    with pytest.raises(ValueError, match=f"`train_data labels`.* {message}"):
        two_stage.retrain_head(functional_stage1, features="features", train_data=train,
                               validation_data=(x_val, y_val), epochs=1)
