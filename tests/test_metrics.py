"""The measuring stick against hand computations, scikit-learn, and itself (streaming = batch)."""

import keras
import numpy as np
import pytest
from sklearn import metrics as sk_metrics

from backends import by_backend
from keras_vc import metrics


def _probs(confidences_first_class):
    c = np.asarray(confidences_first_class, dtype=np.float64)
    return np.stack([c, 1 - c], axis=1)


# ----------------------------------------------------------------------------- ECE by hand


def test_ece_hand_computed_with_empty_bins_and_confidence_one():
    # Confidences 1.0 (last bin), 0.95 (last bin), 0.65 (bin (0.6, 0.7]), 0.55 ((0.5, 0.6]).
    probs = _probs([1.0, 0.95, 0.65, 0.55])
    labels = np.array([0, 1, 0, 1])  # correct, wrong, correct, wrong
    # Bins of width 0.1; bin (0.9, 1.0]: acc 0.5, conf 0.975 -> gap 0.475, weight 0.5.
    # Bin (0.6, 0.7]: acc 1, conf 0.65 -> 0.35, weight 0.25. Bin (0.5, 0.6]: acc 0, conf 0.55.
    expected = 0.5 * 0.475 + 0.25 * 0.35 + 0.25 * 0.55
    assert metrics.expected_calibration_error(labels, probs, num_bins=10) == pytest.approx(expected)
    assert metrics.expected_calibration_error(labels, probs, num_bins=10, norm="max") == (
        pytest.approx(0.55))
    l2 = np.sqrt(0.5 * 0.475 ** 2 + 0.25 * 0.35 ** 2 + 0.25 * 0.55 ** 2)
    assert metrics.expected_calibration_error(labels, probs, num_bins=10, norm="l2") == (
        pytest.approx(l2))


def test_ece_bin_edges_are_closed_on_the_right():
    # 0.6 lies exactly on an edge with 5 bins: it belongs to (0.4, 0.6], not (0.6, 0.8].
    counts, *_ = metrics.binned_statistics([0], _probs([0.6]), num_bins=5)
    assert counts.tolist() == [0, 0, 1, 0, 0]
    counts, *_ = metrics.binned_statistics([0, 0], np.array([[1.0, 0.0], [0.5, 0.5]]), num_bins=2)
    assert counts.tolist() == [1, 1]  # 0.5 in the first bin [0, 0.5], 1.0 in the last


def test_ece_of_perfectly_calibrated_bins_is_zero():
    # 10 samples at confidence 0.8 with 8 correct.
    probs = _probs([0.8] * 10)
    labels = np.array([0] * 8 + [1] * 2)
    assert metrics.expected_calibration_error(labels, probs) == pytest.approx(0.0, abs=1e-12)


def test_single_bin_ece_is_the_accuracy_confidence_gap():
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(4), size=200)
    labels = rng.integers(0, 4, size=200)
    gap = abs(np.mean(probs.argmax(1) == labels) - probs.max(1).mean())
    assert metrics.expected_calibration_error(labels, probs, num_bins=1) == pytest.approx(gap)


def test_equal_mass_binning_uses_groups_of_equal_size():
    probs = _probs([0.55, 0.6, 0.7, 0.9, 0.95, 0.99])
    labels = np.array([0, 1, 0, 0, 1, 0])
    counts, confidence, accuracy, *_ = metrics.binned_statistics(
        labels, probs, num_bins=3, binning="equal_mass")
    assert counts.tolist() == [2, 2, 2]
    expected = (abs(0.5 - 0.575) + abs(1.0 - 0.8) + abs(0.5 - 0.97)) / 3
    assert metrics.expected_calibration_error(labels, probs, num_bins=3, binning="equal_mass") == (
        pytest.approx(expected))


def test_brier_and_nll_by_hand():
    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]])
    labels = np.array([0, 1])
    brier = ((0.3 ** 2 + 0.2 ** 2 + 0.1 ** 2) + (0.1 ** 2 + 0.9 ** 2 + 0.8 ** 2)) / 2
    assert metrics.brier_score(labels, probs) == pytest.approx(brier)
    assert metrics.negative_log_likelihood(labels, probs) == pytest.approx(
        -(np.log(0.7) + np.log(0.1)) / 2)
    assert metrics.accuracy(labels, probs) == 0.5


def test_one_hot_labels_are_accepted():
    probs = np.array([[0.7, 0.3], [0.2, 0.8]])
    assert metrics.brier_score(np.eye(2)[[0, 0]], probs) == metrics.brier_score([0, 0], probs)


# ----------------------------------------------------------------------------- OOD metrics


@pytest.mark.parametrize("seed", [0, 1])
def test_ood_metrics_agree_with_sklearn_including_ties(seed):
    rng = np.random.default_rng(seed)
    scores_in = np.round(rng.normal(1.0, 1.0, size=300), 1)  # rounding creates ties
    scores_out = np.round(rng.normal(0.0, 1.0, size=200), 1)
    result = metrics.ood_metrics(scores_in, scores_out)
    y = np.r_[np.ones(300), np.zeros(200)]
    s = np.r_[scores_in, scores_out]
    assert result["auroc"] == pytest.approx(sk_metrics.roc_auc_score(y, s))
    assert result["aupr_in"] == pytest.approx(sk_metrics.average_precision_score(y, s))
    assert result["aupr_out"] == pytest.approx(sk_metrics.average_precision_score(1 - y, -s))


def test_fpr_at_95_tpr_and_detection_error_by_hand():
    scores_in = np.arange(1, 21, dtype=float)  # 20 ID scores 1..20
    scores_out = np.array([0.5, 1.5, 2.5, 10.0])
    # Keeping 95% of ID (19 of 20) puts the threshold at 2: OOD at or above 2 are 2.5 and 10.
    assert metrics.fpr_at_tpr(scores_in, scores_out) == pytest.approx(0.5)
    assert metrics.threshold_at_tpr(scores_in) == 2.0
    # Best threshold 3 (TPR 18/20, FPR 1/4) or 11 ... the minimum of 0.5(1-TPR)+0.5 FPR:
    thresholds = np.unique(np.r_[scores_in, scores_out])
    errors = [0.5 * (1 - np.mean(scores_in >= t)) + 0.5 * np.mean(scores_out >= t)
              for t in thresholds]
    assert metrics.detection_error(scores_in, scores_out) == pytest.approx(min(errors + [0.5]))


def test_ood_metrics_of_separated_and_identical_scores():
    perfect = metrics.ood_metrics([2.0, 3.0], [0.0, 1.0])
    assert perfect == pytest.approx({"auroc": 1.0, "aupr_in": 1.0, "aupr_out": 1.0,
                                     "fpr_at_95_tpr": 0.0, "detection_error": 0.0})
    same = metrics.ood_metrics([1.0, 1.0], [1.0, 1.0])
    assert same["auroc"] == 0.5 and same["fpr_at_95_tpr"] == 1.0


def test_flipping_roles_and_sign_keeps_auroc():
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=50), rng.normal(0.5, size=40)
    assert metrics.auroc(a, b) == pytest.approx(metrics.auroc(-b, -a))


# ----------------------------------------------------------------------------- streaming


@pytest.mark.slow
@pytest.mark.parametrize("norm", ["l1", "max"])
def test_streaming_ece_equals_numpy_over_uneven_batches(norm):
    rng = np.random.default_rng(1)
    logits = rng.normal(scale=3.0, size=(103, 5)).astype("float32")
    probs = np.asarray(keras.ops.softmax(logits))
    labels = rng.integers(0, 5, size=103)
    metric = metrics.ExpectedCalibrationError(norm=norm, from_logits=True)
    brier = metrics.BrierScore()
    for start, stop in [(0, 7), (7, 50), (50, 51), (51, 103)]:
        metric.update_state(labels[start:stop], logits[start:stop])
        brier.update_state(np.eye(5)[labels[start:stop]], probs[start:stop])
    expected = metrics.expected_calibration_error(labels, probs.astype(np.float64), norm=norm)
    assert float(metric.result()) == pytest.approx(expected, abs=1e-6)
    assert float(brier.result()) == pytest.approx(metrics.brier_score(labels, probs), abs=1e-6)
    metric.reset_state()
    assert float(metric.result()) == 0.0


def test_streaming_metrics_detect_logits_and_probabilities_automatically():
    rng = np.random.default_rng(2)
    logits = rng.normal(size=(40, 3)).astype("float32")
    probs = np.asarray(keras.ops.softmax(logits))
    labels = rng.integers(0, 3, size=40)
    from_logits, from_probs = metrics.ExpectedCalibrationError(), metrics.ExpectedCalibrationError()
    from_logits.update_state(labels, logits)
    from_probs.update_state(labels, probs)
    assert float(from_logits.result()) == pytest.approx(float(from_probs.result()), abs=1e-6)


def test_streaming_metrics_in_compile_and_fit_with_xla():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 4)).astype("float32")
    y = rng.integers(0, 3, size=64)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=[metrics.ExpectedCalibrationError(from_logits=True),
                           metrics.BrierScore(from_logits=True)], jit_compile=True)
    model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    result = model.evaluate(x, y, batch_size=24, return_dict=True, verbose=0)
    probs = np.asarray(keras.ops.softmax(model.predict(x, verbose=0))).astype(np.float64)
    assert result["ece"] == pytest.approx(metrics.expected_calibration_error(y, probs), abs=1e-5)
    assert result["brier"] == pytest.approx(metrics.brier_score(y, probs), abs=1e-5)
    clone = metrics.ExpectedCalibrationError.from_config(
        metrics.ExpectedCalibrationError(num_bins=7, norm="l2").get_config())
    assert (clone.num_bins, clone.norm) == (7, "l2")


# ----------------------------------------------------------------------------- plots


def test_reliability_diagram_returns_a_figure(tmp_path):
    import matplotlib.pyplot as plt

    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(3), size=100)
    labels = rng.integers(0, 3, size=100)
    figure = metrics.reliability_diagram(labels, probs, num_bins=10, title="test")
    assert len(figure.axes) == 2
    figure.savefig(tmp_path / "diagram.png")
    assert (tmp_path / "diagram.png").stat().st_size > 0
    fig, ax = plt.subplots()
    assert metrics.reliability_diagram(labels, probs, ax=ax) is fig
    plt.close(fig)


# ----------------------------------------------------------------------------- bad input

GOOD_PROBS = np.array([[0.7, 0.3], [0.4, 0.6]])


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: metrics.expected_calibration_error([0, 1], [[0.7, 0.2], [0.4, 0.6]]), "sum to 1"),
        (lambda: metrics.expected_calibration_error([0, 1], [[1.5, -0.5], [0.4, 0.6]]),
         r"\[0, 1\]"),
        (lambda: metrics.expected_calibration_error([0, 2], GOOD_PROBS), "labels"),
        (lambda: metrics.expected_calibration_error([0, -1], GOOD_PROBS), "labels"),
        (lambda: metrics.expected_calibration_error([0, 1, 1], GOOD_PROBS), "labels"),
        (lambda: metrics.expected_calibration_error([0, 1], [[np.nan, 0.3], [0.4, 0.6]]), "NaN"),
        (lambda: metrics.expected_calibration_error([0, 1], GOOD_PROBS, num_bins=0), "num_bins"),
        (lambda: metrics.expected_calibration_error([0, 1], GOOD_PROBS, norm="l3"), "norm"),
        (lambda: metrics.expected_calibration_error([0, 1], GOOD_PROBS, binning="x"), "binning"),
        (lambda: metrics.expected_calibration_error([0.5, 1], GOOD_PROBS), "integer"),
        (lambda: metrics.brier_score([0, 1], [0.7, 0.3]), "probs"),
        (lambda: metrics.negative_log_likelihood([0], [[1.0]]), "at least 2"),
        (lambda: metrics.ood_metrics([], [0.1]), "scores_in"),
        (lambda: metrics.ood_metrics([0.2], []), "scores_out"),
        (lambda: metrics.ood_metrics([0.2, np.inf], [0.1]), "scores_in"),
        (lambda: metrics.fpr_at_tpr([0.2], [0.1], tpr=0.0), "tpr"),
        (lambda: metrics.ExpectedCalibrationError(num_bins=0), "num_bins"),
        (lambda: metrics.ExpectedCalibrationError(from_logits="yes"), "from_logits"),
    ],
)
def test_bad_input_raises_a_clear_value_error(call, match):
    with pytest.raises(ValueError, match=match):
        call()


@pytest.mark.parametrize("metric_class", [metrics.ExpectedCalibrationError, metrics.BrierScore])
@pytest.mark.parametrize("y_true, y_pred, match", [
    (np.array([0, 1, 3]), np.eye(3, dtype="float32"), r"`y_true` must lie in \[0, 2\]"),
    (np.array([0, 1, -1]), np.eye(3, dtype="float32"), r"`y_true` must lie in \[0, 2\]"),
    (np.array([0, 1, 2]), np.array([[0.5, 0.5, 0.0], [np.nan, 0, 1], [0, 0, 1]], "float32"),
     "`y_pred` contains NaN"),
    (np.eye(10)[:4, :5], np.full((4, 10), 0.1, "float32"), "neither class ids .* nor one-hot"),
    (np.zeros((4, 2, 1)), np.full((4, 10), 0.1, "float32"), r"`y_true` must have shape"),
])
def test_streaming_metrics_reject_bad_input_eagerly(metric_class, y_true, y_pred, match):
    metric = metric_class()
    with pytest.raises(ValueError, match=match):
        metric.update_state(y_true, y_pred)


@pytest.mark.parametrize("bad", ["label", "nan"])
def test_streaming_metrics_in_a_compiled_fit_refuse_bad_rows(bad):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 4)).astype("float32")
    y = rng.integers(0, 3, size=32)
    if bad == "label":
        y[5] = 3  # a label >= K used to count as a wrong prediction
    else:
        x[3] = np.nan
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    model.compile("sgd", lambda y_true, y_pred: keras.ops.mean(keras.ops.square(y_pred)),
                  metrics=[metrics.ExpectedCalibrationError(), metrics.BrierScore()],
                  jit_compile=True)
    counted = "1 label" if bad == "label" else "0 label"
    # TensorFlow (XLA) and JAX (jit) trace the step: the bad row is left out, counted, and the
    # count raises when Keras reads the result. PyTorch's torch.compile falls back to Python at
    # update_state's check of the concrete values, which raises at the first bad batch.
    expected = by_backend(
        torch=r"`y_true` must lie in \[0, 2\]" if bad == "label" else "`y_pred` contains NaN",
        default=f"ExpectedCalibrationError .* received {counted}")
    with pytest.raises(ValueError, match=expected):
        model.evaluate(x, y, batch_size=16, verbose=0)


def test_streaming_metric_reset_clears_the_bad_row_count():
    metric = metrics.BrierScore()
    metric.invalid_labels.assign(2.0)
    with pytest.raises(ValueError, match="2 label"):
        metric.result()
    metric.reset_state()
    metric.update_state(np.array([0, 1]), np.eye(2, dtype="float32"))
    assert float(metric.result()) == 0.0
