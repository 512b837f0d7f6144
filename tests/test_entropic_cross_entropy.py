"""EntropicCrossEntropy against NumPy, the reference's loss split, and DisMax FPR weighting."""

import warnings

import keras
import numpy as np
import pytest

from backends import BACKEND
from backends import compiled
from keras_vc.augment import fractional_probability_mix
from keras_vc.layers import DistanceLogits
from keras_vc.losses import EntropicCrossEntropy
from keras_vc.losses.entropic_cross_entropy import LOGIT_SCALE_ATTRIBUTE

# The reference split (entropic_scale=10 here, 1 in the layer) is used on purpose below.
pytestmark = pytest.mark.filterwarnings(r"ignore:EntropicCrossEntropy\(entropic_scale:UserWarning")


def log_softmax(logits):
    logits = np.asarray(logits, np.float64)
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


@pytest.fixture(scope="module")
def batch():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(12, 5)).astype("float32") * 2.0
    labels = rng.integers(0, 5, size=12)
    soft = rng.dirichlet(np.ones(5), size=12).astype("float32")
    return logits, labels, soft


@pytest.mark.parametrize("entropic_scale", [1.0, 10.0])
def test_integer_one_hot_and_soft_targets_match_numpy(batch, entropic_scale):
    logits, labels, soft = batch
    loss = EntropicCrossEntropy(entropic_scale=entropic_scale)
    log_probs = log_softmax(entropic_scale * logits.astype(np.float64))
    expected_hard = -log_probs[np.arange(12), labels].mean()
    np.testing.assert_allclose(loss(labels, logits), expected_hard, rtol=1e-5)
    np.testing.assert_allclose(loss(labels[:, None], logits), expected_hard, rtol=1e-5)
    np.testing.assert_allclose(loss(np.eye(5)[labels], logits), expected_hard, rtol=1e-5)
    # Soft rows are weighted by alpha (1 here).
    np.testing.assert_allclose(loss(soft, logits), -(soft * log_probs).sum(1).mean(), rtol=1e-5)


def test_large_scale_stays_finite_where_log_of_softmax_overflows():
    logits = np.array([[0.0, -15.0, -30.0], [-30.0, 0.0, -12.0]], "float32")
    with np.errstate(divide="ignore"):
        probs = np.exp(10.0 * logits) / np.exp(10.0 * logits).sum(1, keepdims=True)
        separate = -np.log(probs.astype("float32")[[0, 1], [2, 2]])
    assert not np.all(np.isfinite(separate)), "the test logits should overflow log(softmax)"
    value = EntropicCrossEntropy(entropic_scale=10.0)(np.array([2, 2]), logits)
    expected = -log_softmax(10.0 * logits)[[0, 1], [2, 2]].mean()
    np.testing.assert_allclose(value, expected, rtol=1e-6)


def test_reference_split_gives_the_same_loss(batch):
    features = np.random.default_rng(1).normal(size=(12, 7)).astype("float32")
    _, labels, _ = batch
    in_layer = DistanceLogits(5, entropic_scale=10.0)
    in_loss = DistanceLogits(5, entropic_scale=1.0)
    in_layer.build((None, 7))
    in_loss.build((None, 7))
    in_loss.set_weights(in_layer.get_weights())
    ours = EntropicCrossEntropy()(labels, in_layer(features))
    reference = EntropicCrossEntropy(entropic_scale=10.0)(labels, in_loss(features))
    # convert_to_numpy: a PyTorch loss that depends on trainable weights carries a grad_fn.
    ours, reference = keras.ops.convert_to_numpy(ours), keras.ops.convert_to_numpy(reference)
    np.testing.assert_allclose(ours, reference, rtol=1e-6)
    assert float(ours) > 0


@pytest.mark.parametrize("alpha", [1.0, 0.5])
def test_fpr_batch_loss_equals_reference_objective(alpha):
    rng = np.random.default_rng(2)
    images = rng.normal(size=(16, 4, 4, 1)).astype("float32")
    labels = np.array([0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 0])
    _, targets = fractional_probability_mix(images, labels, 5, seed=3)
    targets = keras.ops.convert_to_numpy(targets).astype(np.float64)
    assert np.all(targets[8:].max(1) < 1), "every mosaic should mix at least two classes"
    logits = rng.normal(size=(16, 5)).astype("float32")
    value = EntropicCrossEntropy(entropic_scale=10.0, alpha=alpha)(targets, logits)

    log_p = log_softmax(10.0 * logits.astype(np.float64))
    loss_ce = -log_p[np.arange(8), targets[:8].argmax(1)].mean()
    t = targets[8:]
    with np.errstate(divide="ignore", invalid="ignore"):
        t_log_t = np.where(t > 0, t * np.log(t), 0.0)
    loss_fpr = (t_log_t - t * log_p[8:]).sum(1).mean()      # KL(t || P), 'batchmean'
    entropy = -t_log_t.sum(1).mean()
    expected = (loss_ce + alpha * loss_fpr) / 2 + alpha * entropy / 2
    np.testing.assert_allclose(value, expected, rtol=1e-5)


def test_sample_weight_and_reduction(batch):
    logits, labels, _ = batch
    per_example = -log_softmax(logits)[np.arange(12), labels]
    weights = np.linspace(0.0, 2.0, 12)
    np.testing.assert_allclose(
        EntropicCrossEntropy()(labels, logits, sample_weight=weights),
        (per_example * weights).mean(), rtol=1e-5)
    np.testing.assert_allclose(EntropicCrossEntropy(reduction=None)(labels, logits), per_example,
                               rtol=1e-5)


def test_out_of_range_labels_stop_or_poison_the_compiled_loss(batch):
    """Compiled, label values are unknown until run. jax.jit checks them in a host callback
    (the step stops with an error naming num_classes); XLA on TensorFlow drops runtime
    assertions, so there the out-of-range rows make the loss NaN, never a finite wrong value;
    PyTorch runs eagerly and the label check raises at once."""
    logits, _, _ = batch
    loss = EntropicCrossEntropy()

    if BACKEND == "tensorflow":
        import tensorflow as tf

        traced = tf.function(loss, jit_compile=True)
    else:
        traced = compiled(loss)  # jax.jit; eager on PyTorch
    if BACKEND == "torch":
        with pytest.raises(ValueError, match="y_true"):
            traced(np.array([0, 5] * 6), logits)
        return
    _np = keras.ops.convert_to_numpy
    assert np.isfinite(_np(traced(np.array([0, 4] * 6), logits)))
    for bad in (np.array([0, 5] * 6), np.array([-1, 0] * 6)):
        if BACKEND == "jax":
            with pytest.raises(Exception, match="num_classes"):
                _np(traced(bad, logits))
        else:
            assert np.isnan(_np(traced(bad, logits)))


def test_config_round_trip():
    loss = EntropicCrossEntropy(entropic_scale=10.0, alpha=0.25, name="ent")
    config = loss.get_config()
    assert config["entropic_scale"] == 10.0 and config["alpha"] == 0.25
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss))
    assert isinstance(restored, EntropicCrossEntropy) and restored.get_config() == config


@pytest.mark.parametrize("kwargs,match", [
    ({"entropic_scale": 0.0}, "entropic_scale"),
    ({"entropic_scale": -1.0}, "entropic_scale"),
    ({"alpha": -0.5}, "alpha"),
    ({"alpha": "1"}, "alpha"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        EntropicCrossEntropy(**kwargs)


@pytest.mark.parametrize("y_true,match", [
    (np.array([0, 1, 5, 2]), r"\[0, 4\]"),
    (np.array([0, -1, 1, 2]), r"\[0, 4\]"),
    (np.array([0, 1.5, 1, 2]), "integer"),
    (np.full((4, 5), 0.3), "sum to 1"),
    (np.array([[1.2, -0.2, 0, 0, 0]] * 4), ">= 0"),
    (np.ones((4, 3)) / 3, "shape"),
    (np.zeros((4, 5, 1)), "shape"),
])
def test_bad_labels_raise_eagerly(y_true, match):
    logits = np.zeros((4, 5), "float32")
    with pytest.raises(ValueError, match=match):
        EntropicCrossEntropy()(y_true, logits)


def test_a_scale_other_than_one_warns_with_the_pairing_rule():
    with pytest.warns(UserWarning, match=r"DistanceLogits\(entropic_scale=1.0\) with "
                                         r"EntropicCrossEntropy\(entropic_scale=10.0\)"):
        EntropicCrossEntropy(entropic_scale=10.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        EntropicCrossEntropy()


@pytest.mark.tensorflow_only("the scale travels as a tensor attribute; JAX arrays take none")
def test_logits_that_already_carry_a_scale_refuse_a_second_one():
    import tensorflow as tf

    logits = tf.constant(np.random.default_rng(0).normal(size=(4, 5)), tf.float32)
    setattr(logits, LOGIT_SCALE_ATTRIBUTE, 10.0)  # what a DistanceLogits(entropic_scale=10) says
    labels = np.array([0, 1, 2, 3])
    with pytest.raises(ValueError, match="scaled twice"):
        EntropicCrossEntropy(entropic_scale=10.0)(labels, logits)
    assert np.isfinite(float(EntropicCrossEntropy()(labels, logits)))
    setattr(logits, LOGIT_SCALE_ATTRIBUTE, 1.0)  # the reference split
    assert np.isfinite(float(EntropicCrossEntropy(entropic_scale=10.0)(labels, logits)))


@pytest.mark.parametrize("run_eagerly", [True, False])
def test_distance_logits_with_a_second_entropic_scale_is_refused_in_fit(run_eagerly):
    import keras_vc

    model = keras.Sequential([keras.Input((4,)), keras_vc.layers.DistanceLogits(3)])
    with pytest.warns(UserWarning, match="entropic_scale"):
        loss = EntropicCrossEntropy(entropic_scale=10.0)
    model.compile("adam", loss, run_eagerly=run_eagerly)
    x = np.zeros((8, 4), "float32") + 1.0
    with pytest.raises(ValueError, match="scaled twice"):
        model.fit(x, np.zeros(8, "int32"), epochs=1, verbose=0)


@pytest.mark.parametrize("layer_scale, loss_scale", [(10.0, 1.0), (1.0, 10.0)])
def test_the_two_ways_of_applying_the_scale_once_train(layer_scale, loss_scale):
    import keras_vc

    model = keras.Sequential([keras.Input((4,)),
                              keras_vc.layers.DistanceLogits(3, entropic_scale=layer_scale)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the pairing rule, said at construction
        loss = EntropicCrossEntropy(entropic_scale=loss_scale)
    model.compile("adam", loss)
    x = np.random.default_rng(0).normal(size=(8, 4)).astype("float32")
    history = model.fit(x, np.arange(8) % 3, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
