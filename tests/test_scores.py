"""OOD scores (keras_vc.scores) against NumPy formulas written here."""

import keras
import numpy as np
import pytest

from keras_vc import scores


def numpy_softmax(logits):
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def numpy_logsumexp(logits):
    top = logits.max(axis=1)
    return top + np.log(np.exp(logits - top[:, None]).sum(axis=1))


NUMPY_SCORES = {
    "max_probability": lambda l: numpy_softmax(l).max(1),
    "negative_entropy": lambda l: (numpy_softmax(l) * np.log(numpy_softmax(l))).sum(1),
    "max_logit": lambda l: l.max(1),
    "max_mean_logit": lambda l: l.max(1) + l.mean(1),
    "mmles": lambda l: l.max(1) + l.mean(1) + (numpy_softmax(l) * np.log(numpy_softmax(l))).sum(1),
    "energy": numpy_logsumexp,
}


@pytest.fixture(scope="module")
def logits():
    rng = np.random.default_rng(0)
    return np.concatenate([rng.normal(size=(20, 7)) * 3.0, np.full((1, 7), 2.0),
                           np.array([[60.0, -20.0, 0, 0, 0, 0, 0]])]).astype(np.float64)


@pytest.mark.parametrize("name", sorted(NUMPY_SCORES))
def test_scores_match_numpy(name, logits):
    expected = NUMPY_SCORES[name](logits)
    from_numpy = scores.get(name)(logits.astype("float32"))
    assert isinstance(from_numpy, np.ndarray) and from_numpy.shape == (logits.shape[0],)
    np.testing.assert_allclose(from_numpy, expected, rtol=1e-5, atol=1e-5)
    from_tensor = scores.get(name)(keras.ops.convert_to_tensor(logits.astype("float32")))
    assert not isinstance(from_tensor, np.ndarray)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(from_tensor), expected, rtol=1e-5,
                               atol=1e-5)


def test_higher_means_more_confident():
    confident = np.array([[10.0, 0.0, 0.0]])
    uncertain = np.array([[0.0, 0.0, 0.0]])
    for name in NUMPY_SCORES:
        assert scores.get(name)(confident)[0] > scores.get(name)(uncertain)[0], name


def test_registry():
    assert scores.get("msp") is scores.max_probability
    assert scores.get(scores.energy) is scores.energy
    with pytest.raises(ValueError, match="Unknown OOD score"):
        scores.get("maximum_softmax")


def test_recommended_for_a_plain_classifier():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    name, function = scores.recommended(model)
    assert name == "max_probability" and function is scores.max_probability


@pytest.mark.parametrize("bad,match", [
    (np.zeros(5), "shape"),
    (np.zeros((5, 1)), "K >= 2"),
    (np.array([[0.0, np.nan]]), "NaN"),
    (np.array([[0.0, np.inf]]), "NaN or infinite"),
])
def test_bad_logits(bad, match):
    for name in NUMPY_SCORES:
        with pytest.raises(ValueError, match=match):
            scores.get(name)(bad)
