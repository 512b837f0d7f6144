"""Attacks, corruptions and low-data subsets (keras_vc.robustness)."""

import keras
import numpy as np
import pytest
from scipy import special

from keras_vc.robustness import attacks
from keras_vc.robustness import corruptions
from keras_vc.robustness import subsets
from keras_vc.data import Split

# ------------------------------------------------------------------------------------------
# Attacks, on a linear softmax classifier whose input gradient has a closed form.


@pytest.fixture(scope="module")
def linear():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(3, name="logits")])
    rng = np.random.default_rng(0)
    kernel = rng.normal(size=(6, 3)).astype("float32")
    bias = rng.normal(size=3).astype("float32")
    model.layers[-1].set_weights([kernel, bias])
    x = rng.uniform(0.1, 0.9, size=(40, 6)).astype("float32")
    y = rng.integers(0, 3, size=40)
    return model, kernel.astype(np.float64), bias.astype(np.float64), x, y


def _cross_entropy(kernel, bias, x, y):
    logits = x.astype(np.float64) @ kernel + bias
    return special.logsumexp(logits, axis=1) - logits[np.arange(len(y)), y]


def _input_gradient(kernel, bias, x, y):
    """d CE / d x = W (softmax(xW + b) - onehot(y)), computed in NumPy."""
    probs = special.softmax(x.astype(np.float64) @ kernel + bias, axis=1)
    probs[np.arange(len(y)), y] -= 1.0
    return probs @ kernel.T


def test_fgsm_at_epsilon_zero_is_the_identity(linear):
    model, _, _, x, y = linear
    np.testing.assert_array_equal(attacks.fgsm(model, x, y, 0.0, value_range=(0.0, 1.0)), x)


def test_fgsm_is_one_signed_gradient_step(linear):
    model, kernel, bias, x, y = linear
    expected = np.clip(x + 0.05 * np.sign(_input_gradient(kernel, bias, x, y)), 0.0, 1.0)
    x_adv = attacks.fgsm(model, x, y, 0.05, value_range=(0.0, 1.0), batch_size=7)
    np.testing.assert_allclose(x_adv, expected, atol=1e-6)
    assert np.all(_cross_entropy(kernel, bias, x_adv, y) > _cross_entropy(kernel, bias, x, y))


def test_pgd_stays_in_the_epsilon_ball_and_the_value_range(linear):
    model, kernel, bias, x, y = linear
    for epsilon in (0.02, 0.3):
        x_adv = attacks.pgd(model, x, y, epsilon, steps=5, value_range=(0.0, 1.0), seed=3)
        assert np.abs(x_adv - x).max() <= epsilon + 1e-6
        assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0
    x_adv = attacks.pgd(model, x, y, 0.05, steps=10, value_range=(0.0, 1.0), seed=3)
    assert _cross_entropy(kernel, bias, x_adv, y).mean() > _cross_entropy(kernel, bias, x, y).mean()


def test_pgd_is_deterministic_and_one_step_without_random_start_is_fgsm(linear):
    model, _, _, x, y = linear
    first = attacks.pgd(model, x, y, 0.1, steps=3, seed=1)
    np.testing.assert_array_equal(first, attacks.pgd(model, x, y, 0.1, steps=3, seed=1))
    assert not np.array_equal(first, attacks.pgd(model, x, y, 0.1, steps=3, seed=2))
    one_step = attacks.pgd(model, x, y, 0.1, steps=1, step_size=0.1, random_start=False)
    np.testing.assert_allclose(one_step, attacks.fgsm(model, x, y, 0.1), atol=1e-7)


@pytest.mark.parametrize("kwargs, match", [
    (dict(epsilon=-0.1), "epsilon"),
    (dict(epsilon=0.1, steps=0), "steps"),
    (dict(epsilon=0.1, value_range=(1.0, 0.0)), "value_range"),
    (dict(epsilon=0.1, step_size=-1.0), "step_size"),
    (dict(epsilon=0.1, random_start="yes"), "random_start"),
    (dict(epsilon=0.1, batch_size=0), "batch_size"),
])
def test_pgd_rejects_bad_arguments(linear, kwargs, match):
    model, _, _, x, y = linear
    with pytest.raises(ValueError, match=match):
        attacks.pgd(model, x, y, **kwargs)


def test_attacks_reject_bad_inputs(linear):
    model, _, _, x, y = linear
    with pytest.raises(ValueError, match="`y`"):
        attacks.fgsm(model, x, y[:-1], 0.1)
    with pytest.raises(ValueError, match="`y` must hold integer class ids"):
        attacks.fgsm(model, x, y + 0.5, 0.1)
    with pytest.raises(ValueError, match="`x`"):
        attacks.fgsm(model, np.full_like(x, np.nan), y, 0.1)
    with pytest.raises(ValueError, match="`model`"):
        attacks.fgsm("model", x, y, 0.1)


@pytest.mark.parametrize("attack", [attacks.fgsm, attacks.pgd])
def test_attacks_reject_labels_outside_the_model_classes(linear, attack):
    model, _, _, x, y = linear
    bad = y.copy()
    bad[0] = 3  # the model has 3 classes; the gradient of a label >= K is meaningless
    with pytest.raises(ValueError, match=r"`y` must lie in \[0, 2\]"):
        attack(model, x, bad, 0.1)
    layer = keras.layers.Dense(3)  # no symbolic output: K comes from one forward pass
    with pytest.raises(ValueError, match=r"`y` must lie in \[0, 2\]"):
        attack(layer, x, bad, 0.1)


def test_attacks_follow_the_weights_after_they_change():
    # The gradient function is compiled once per model (tf.function, jax.jit): it must read the
    # weights of the moment, not those it was compiled with.
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(3)])
    rng = np.random.default_rng(7)
    x = rng.uniform(0.1, 0.9, size=(10, 6)).astype("float32")
    y = rng.integers(0, 3, size=10)
    for _ in range(2):
        kernel = rng.normal(size=(6, 3)).astype("float32")
        bias = rng.normal(size=3).astype("float32")
        model.layers[-1].set_weights([kernel, bias])
        expected = x + 0.05 * np.sign(_input_gradient(kernel.astype(np.float64),
                                                      bias.astype(np.float64), x, y))
        np.testing.assert_allclose(attacks.fgsm(model, x, y, 0.05), expected, atol=1e-6)


@pytest.mark.parametrize("value_range, match", [
    ((1.0,), r"`value_range` must be \(low, high\)"),
    ("ab", r"`value_range` must be \(low, high\)"),
    ((0.0, float("nan")), r"`value_range\[1\]` must be finite"),
    ((1.0, 1.0), "`value_range` must have high > low"),
])
def test_attacks_and_corruptions_check_the_value_range(linear, value_range, match):
    model, _, _, x, y = linear
    with pytest.raises(ValueError, match=match):
        attacks.fgsm(model, x, y, 0.1, value_range=value_range)
    with pytest.raises(ValueError, match=match):
        corruptions.corrupt(IMAGES, "blur", 1, value_range=value_range)


def test_attacks_accept_one_hot_labels(linear):
    model, _, _, x, y = linear
    np.testing.assert_array_equal(attacks.fgsm(model, x, np.eye(3)[y], 0.05),
                                  attacks.fgsm(model, x, y, 0.05))


# ------------------------------------------------------------------------------------------
# Corruptions

RNG = np.random.default_rng(0)
IMAGES = RNG.uniform(0.0, 1.0, size=(64, 10, 10, 1)).astype("float32")
SIGNALS = RNG.normal(size=(64, 40, 1)).astype("float32")
SIGNAL_RANGE = (-3.0, 3.0)
SIGNALS = np.clip(SIGNALS, *SIGNAL_RANGE)
VECTORS = RNG.uniform(0.0, 1.0, size=(64, 12)).astype("float32")
BATCHES = {"image": (IMAGES, (0.0, 1.0)), "signal": (SIGNALS, SIGNAL_RANGE),
           "vector": (VECTORS, (0.0, 1.0))}


def test_available_corruptions_by_kind():
    assert corruptions.available_corruptions("image") == tuple(corruptions.CORRUPTIONS)
    assert set(corruptions.available_corruptions(SIGNALS)) == {
        "gaussian_noise", "blur", "scale", "offset", "shift", "dropout"}
    assert "blur" not in corruptions.available_corruptions(VECTORS)


@pytest.mark.parametrize("kind", list(BATCHES))
def test_severity_zero_is_the_identity_and_outputs_stay_in_range(kind):
    x, value_range = BATCHES[kind]
    for name in corruptions.available_corruptions(kind):
        np.testing.assert_array_equal(corruptions.corrupt(x, name, 0, value_range), x)
        previous = 0.0
        for severity in (1, 3, 5):
            y = corruptions.corrupt(x, name, severity, value_range, seed=1)
            assert y.shape == x.shape and y.dtype == np.float32
            assert y.min() >= value_range[0] and y.max() <= value_range[1]
            np.testing.assert_array_equal(y, corruptions.corrupt(x, name, severity,
                                                                 value_range, seed=1))
            change = np.abs(y - x).mean()
            assert change > 0, (name, severity)
            if name not in ("shift", "rotation"):  # geometric ones need not grow monotonically
                assert change > previous, (name, severity)
            previous = change


def test_value_corruptions_match_their_formulas():
    x, (low, high) = SIGNALS, SIGNAL_RANGE
    scaled = corruptions.corrupt(x, "scale", 2, (low, high))
    np.testing.assert_allclose(scaled, 0.65 * x, atol=1e-6)  # background 0 for signals
    offset = corruptions.corrupt(x, "offset", 4, (low, high), seed=0, value_std=2.0)
    inside = (x + 1.0 < high) & (x - 1.0 > low)
    np.testing.assert_allclose(np.abs(offset - x)[inside], 0.5 * 2.0, atol=1e-5)
    per_input = np.sign((offset - x).reshape(len(x), -1).sum(axis=1))
    assert {-1.0, 1.0} <= set(per_input.tolist())
    zeros = np.zeros((200, 40, 1))
    noisy = corruptions.corrupt(zeros, "gaussian_noise", 5, (-30.0, 30.0), seed=0, value_std=4.0)
    assert abs(noisy.std() - 1.5 * 4.0) < 0.1
    by_default = corruptions.corrupt(x, "gaussian_noise", 4, (-30.0, 30.0), seed=0)
    assert abs((by_default - x).std() - x.std()) < 0.02  # the batch's own std by default
    images = IMAGES
    dropped = corruptions.corrupt(images, "dropout", 5, (0.0, 1.0), seed=0)
    fraction = np.mean((dropped == 0) & (images != 0))
    assert abs(fraction - 0.45) < 0.02
    contrast = corruptions.corrupt(images, "contrast", 3, (0.0, 1.0))
    mean = images.mean(axis=(1, 2, 3), keepdims=True)
    np.testing.assert_allclose(contrast, mean + 0.45 * (images - mean), atol=1e-6)
    with pytest.raises(ValueError, match="value_std"):
        corruptions.corrupt(x, "offset", 1, (low, high), value_std=-1.0)


def test_shift_translates_with_interpolation_and_background_fill():
    x = np.arange(1, 41, dtype="float32").reshape(1, 40, 1)
    y = corruptions.corrupt(x, "shift", 2, (0.0, 40.0), seed=0)[0, :, 0]  # 0.1 * 40 = 4
    right = np.r_[np.zeros(4), np.arange(1, 37)]
    left = np.r_[np.arange(5, 41), np.zeros(4)]
    assert np.allclose(y, right, atol=1e-5) or np.allclose(y, left, atol=1e-5)
    half = corruptions.corrupt(x, "shift", 1, (0.0, 40.0), seed=0)[0, 5:-5, 0]  # 2 positions
    assert np.allclose(np.abs(half - x[0, 5:-5, 0]), 2.0, atol=1e-5)
    image = np.zeros((1, 10, 10, 1), dtype="float32")
    image[0, 4:6, 4:6, 0] = 1.0
    moved = corruptions.corrupt(image, "shift", 5, (0.0, 1.0), seed=0)[0, :, :, 0]
    rows, cols = np.indices(moved.shape)
    step = 0.25 * 10 / np.sqrt(2)  # along each axis
    assert abs(abs((rows * moved).sum() / moved.sum() - 4.5) - step) < 1e-4
    assert abs(abs((cols * moved).sum() / moved.sum() - 4.5) - step) < 1e-4


def test_blur_keeps_the_mass_of_an_interior_impulse():
    x = np.zeros((1, 40, 1), dtype="float32")
    x[0, 20, 0] = 1.0
    y = corruptions.corrupt(x, "blur", 5, (0.0, 1.0))[0, :, 0]
    expected = np.exp(-0.5 * (np.arange(40) - 20) ** 2 / 1.3 ** 2)
    np.testing.assert_allclose(y, expected / expected.sum(), atol=1e-3)


def test_rotation_turns_an_off_centre_spot_by_the_severity_angle():
    x = np.zeros((1, 21, 21, 1), dtype="float32")
    x[0, 10, 16, 0] = 1.0  # 6 pixels right of the centre (10, 10)
    y = corruptions.corrupt(x, "rotation", 5, (0.0, 1.0), seed=0)[0, :, :, 0]  # +-30 degrees
    rows, cols = np.indices(y.shape)
    centre_row, centre_col = (rows * y).sum() / y.sum(), (cols * y).sum() / y.sum()
    assert abs(centre_col - (10 + 6 * np.cos(np.pi / 6))) < 0.3
    assert abs(abs(centre_row - 10) - 6 * np.sin(np.pi / 6)) < 0.3


def test_corrupt_all_draws_each_pair_independently():
    x, value_range = BATCHES["signal"]
    everything = corruptions.corrupt_all(x, value_range, seed=4, severities=(1, 5))
    assert set(everything) == {(name, s) for name in corruptions.available_corruptions(x)
                               for s in (1, 5)}
    dropout_only = corruptions.corrupt_all(x, value_range, seed=4, corruptions=("dropout",),
                                           severities=(5,))
    np.testing.assert_array_equal(dropout_only[("dropout", 5)], everything[("dropout", 5)])


@pytest.mark.parametrize("args, match", [
    ((IMAGES, "fog", 1), "corruption"),
    ((SIGNALS, "rotation", 1), "applies to"),
    ((IMAGES, "blur", 6), "severity"),
    ((IMAGES, "blur", -1), "severity"),
    ((IMAGES, "blur", 1.5), "severity"),
    ((np.zeros(5), "blur", 1), "shape"),
])
def test_corrupt_rejects_bad_arguments(args, match):
    with pytest.raises(ValueError, match=match):
        corruptions.corrupt(*args)
    with pytest.raises(ValueError, match="value_range"):
        corruptions.corrupt(IMAGES, "blur", 1, value_range=(1.0, 1.0))


# ------------------------------------------------------------------------------------------
# Low-data subsets


def test_stratified_subsets_are_proportional_nested_and_seeded():
    labels = np.repeat(np.arange(4), [10, 20, 40, 3])
    small = subsets.stratified_subset_indices(labels, 0.1, seed=0)
    large = subsets.stratified_subset_indices(labels, 0.25, seed=0)
    assert np.bincount(labels[small]).tolist() == [1, 2, 4, 1]  # at least one per class
    assert np.bincount(labels[large]).tolist() == [2, 5, 10, 1]  # round(2.5) = 2, round(0.75) = 1
    assert set(small) <= set(large)
    np.testing.assert_array_equal(small, subsets.stratified_subset_indices(labels, 0.1, seed=0))
    assert not np.array_equal(large, subsets.stratified_subset_indices(labels, 0.25, seed=1))
    everything = subsets.stratified_subset_indices(labels, 1.0)
    np.testing.assert_array_equal(everything, np.arange(labels.size))
    assert np.bincount(labels[subsets.stratified_subset_indices(labels, 0.1, min_per_class=3)]
                       ).tolist() == [3, 3, 4, 3]


def test_subsample_training_keeps_validation_and_test():
    rng = np.random.default_rng(0)
    split = Split("toy", rng.random((100, 3)), np.arange(100) % 5, rng.random((20, 3)),
                  np.arange(20) % 5, rng.random((30, 3)), np.arange(30) % 5, 5)
    small = subsets.subsample_training(split, 0.2, seed=0)
    assert small.sizes() == {"train": 20, "val": 20, "test": 30}
    assert np.bincount(small.y_train).tolist() == [4] * 5
    assert small.x_val is split.x_val and small.value_range == split.value_range
    assert small.name == "toy[20%]"


@pytest.mark.parametrize("kwargs, match", [
    (dict(fraction=0.0), "fraction"), (dict(fraction=1.5), "fraction"),
    (dict(fraction=0.5, seed=-1), "seed"), (dict(fraction=0.5, min_per_class=0), "min_per_class"),
])
def test_subsets_reject_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        subsets.stratified_subset_indices(np.arange(10) % 2, **kwargs)
    with pytest.raises(ValueError, match="labels"):
        subsets.stratified_subset_indices(np.array([0.5, 1.0]), 0.5)
    with pytest.raises(ValueError, match="split"):
        subsets.subsample_training("split", 0.5)
