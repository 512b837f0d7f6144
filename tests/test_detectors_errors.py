"""Every bad-input path of keras_vc.detectors raises one clear ValueError."""

import keras
import numpy as np
import pytest

from keras_vc import detectors
from tests.model_fixtures import subclassed_classifier

K, D = 3, 5


@pytest.fixture(scope="module")
def model():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((4,))
    hidden = keras.layers.Dense(D, activation="relu", name="hidden")(inputs)
    return keras.Model(inputs, keras.layers.Dense(K, name="logits")(hidden))


@pytest.fixture(scope="module")
def features():
    rng = np.random.default_rng(0)
    return rng.normal(size=(30, D)), np.arange(30) % K


def test_score_before_fit(model, features):
    with pytest.raises(ValueError, match="not fitted: call `fit"):
        detectors.Mahalanobis(model).score(np.zeros((2, 4), "float32"))
    with pytest.raises(ValueError, match="not fitted"):
        detectors.KNN().score_features(features[0])
    with pytest.raises(ValueError, match="not fitted"):
        detectors.ViM(model).save("unused")


def test_unknown_layer(model):
    with pytest.raises(ValueError, match="not found among the layers"):
        detectors.Mahalanobis(model, layer="no_such_layer")


def test_layer_of_the_wrong_rank_says_what_was_expected():
    inputs = keras.Input((5, 5, 2))
    conv = keras.layers.Conv2D(3, 3, name="conv")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(K)(keras.layers.Flatten()(conv)))
    with pytest.raises(ValueError, match=r"rank-4 .* expected rank 2 .*pooling='avg'"):
        detectors.KNN(model, layer="conv")
    with pytest.raises(ValueError, match="pooling='avg' needs activations of rank > 2"):
        detectors.KNN(model, pooling="avg")
    with pytest.raises(ValueError, match="`pooling` must be one of"):
        detectors.KNN(model, layer="conv", pooling="max")


def test_subclassed_model_is_refused():
    with pytest.raises(ValueError, match="Functional or Sequential"):
        detectors.Mahalanobis(subclassed_classifier(4, K))


def test_too_few_samples_for_the_covariance(features):
    h, _ = features
    with pytest.raises(ValueError, match=r"at least num_classes \+ 1 = 4 training samples"):
        detectors.Mahalanobis().fit_features(h[:3], np.arange(3))
    with pytest.raises(ValueError, match="at least 2 training samples"):
        detectors.ViM(head_weights=(np.ones((D, K)), np.zeros(K)),
                      principal_dim=2).fit_features(h[:1])
    with pytest.raises(ValueError, match="k=50 needs at least 50 training samples; got 30"):
        detectors.KNN().fit_features(h)


def test_class_without_samples(features):
    h, y = features
    with pytest.raises(ValueError, match=r"Classes \[2\] have no training sample"):
        detectors.RelativeMahalanobis(num_classes=3).fit_features(h, y % 2)


def test_nan_features(model, features):
    h, y = features
    bad = h.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        detectors.Mahalanobis().fit_features(bad, y)
    fitted = detectors.Mahalanobis().fit_features(h, y)
    with pytest.raises(ValueError, match="NaN"):
        fitted.score_features(bad)
    x = np.ones((4, 4), "float32")
    x[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        detectors.KNN(model, k=2).fit(x)


def test_labels_out_of_range_or_missing(model, features):
    h, y = features
    with pytest.raises(ValueError, match=r"must lie in \[0, 2\]"):
        detectors.Mahalanobis(num_classes=3).fit_features(h, y + 1)
    with pytest.raises(ValueError, match=r"must lie in \[0, 2\]"):
        detectors.Mahalanobis(model).fit(np.zeros((6, 4), "float32"), np.arange(6))
    with pytest.raises(ValueError, match="labels"):
        detectors.Mahalanobis(model).fit(np.zeros((6, 4), "float32"))


def test_features_of_the_wrong_width(model, features, tmp_path):
    h, y = features
    fitted = detectors.Mahalanobis().fit_features(h, y)
    with pytest.raises(ValueError, match="must have 5 columns"):
        fitted.score_features(h[:, :4])
    with pytest.raises(ValueError, match="must have 3 columns"):
        detectors.MaxLogit(model).score_features(np.zeros((2, 4)))
    with pytest.raises(ValueError, match="kernel's input width"):
        detectors.ReAct(model).fit_features(h[:, :4])
    with pytest.raises(ValueError, match="fitted on width 4"):
        detectors.KNN.load(detectors.KNN(k=2).fit_features(h[:, :4]).save(tmp_path / "knn"),
                           model)


def test_head_without_dense_weights():
    from keras_vc.layers import DistanceLogits

    inputs = keras.Input((4,))
    model = keras.Model(inputs, DistanceLogits(K)(keras.layers.Dense(D)(inputs)))
    with pytest.raises(ValueError, match="needs the weights W, b of a final Dense.*Mahalanobis"):
        detectors.ViM(model)
    with pytest.raises(ValueError, match="needs the final Dense layer's weights"):
        detectors.ReAct().fit_features(np.ones((4, D)))


def test_energy_refuses_probability_outputs():
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(K, activation="softmax")(inputs))
    with pytest.raises(ValueError, match="ends in a softmax"):
        detectors.Energy(model)


def test_bad_hyper_parameters(model):
    with pytest.raises(ValueError, match="principal_dim"):
        detectors.ViM(head_weights=(np.ones((D, K)), np.zeros(K)), principal_dim=D).fit_features(
            np.random.default_rng(0).normal(size=(10, D)))
    with pytest.raises(ValueError, match="`temperature` must be > 0"):
        detectors.ODIN(temperature=0.0)
    with pytest.raises(ValueError, match="`k` must be >= 1"):
        detectors.KNN(k=0)
    with pytest.raises(ValueError, match="`percentile` must be <= 100"):
        detectors.ReAct(percentile=120.0)
    with pytest.raises(ValueError, match="`epsilon` must be >= 0"):
        detectors.Mahalanobis(epsilon=-1.0)
    with pytest.raises(ValueError, match="`head_weights` must be a pair"):
        detectors.ViM(head_weights=np.ones(3))


def test_needs_a_model_and_registry_names(model):
    with pytest.raises(ValueError, match="`fit` needs the model"):
        detectors.Mahalanobis().fit(np.zeros((4, 4)), np.zeros(4, int))
    with pytest.raises(ValueError, match="`model` is required"):
        detectors.HeadScore(None)
    with pytest.raises(ValueError, match="Unknown detector 'nope'"):
        detectors.get("nope")
    with pytest.raises(ValueError, match="Pass `y` only with array `x`"):
        detectors.Mahalanobis(model).fit([(np.zeros((2, 4)), np.zeros(2))], np.zeros(2))
    with pytest.raises(ValueError, match="yielded no batches"):
        detectors.Mahalanobis(model).fit(iter([]))
