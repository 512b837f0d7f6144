"""The shared label normaliser and the one probabilities-or-logits rule (keras_vc._labels)."""

import numpy as np
import pytest
import tensorflow as tf

from keras_vc import _labels


@pytest.mark.parametrize("y_true", [
    np.array([2, 0, 1]), np.array([[2], [0], [1]]), np.eye(4)[[2, 0, 1]],
    np.array([2.0, 0.0, 1.0], "float32"),
])
def test_sparse_label_tensor_accepts_every_layout(y_true):
    ids = _labels.sparse_label_tensor(tf.constant(y_true), 4)
    np.testing.assert_array_equal(ids.numpy(), [2, 0, 1])
    assert ids.dtype == tf.int32


@pytest.mark.parametrize("y_true, match", [
    (np.eye(10)[:4, :5], r"`y_true` of shape \(4, 5\) are neither class ids"),  # wrong width
    (np.zeros((4, 2, 1)), r"`y_true` must have shape \(batch,\)"),
    (np.array([0, 4, 1]), r"`y_true` must lie in \[0, 3\]"),
    (np.array([0, 1.5, 1]), "`y_true` must hold integer class ids"),
    (np.array([[1, 1, 0, 0]] * 2), "one-hot rows"),
])
def test_sparse_label_tensor_rejects_bad_labels_eagerly(y_true, match):
    with pytest.raises(ValueError, match=match):
        _labels.sparse_label_tensor(tf.constant(y_true), 4)


def test_one_hot_of_the_wrong_width_is_refused_at_trace_time():
    @tf.function
    def traced(y_true):
        return _labels.sparse_label_tensor(y_true, 10, name="labels")

    with pytest.raises(ValueError, match=r"`labels` of shape \(None, 5\) are neither"):
        traced.get_concrete_function(tf.TensorSpec((None, 5), tf.float32))
    with pytest.raises(ValueError, match="unknown second axis"):
        traced.get_concrete_function(tf.TensorSpec((None, None), tf.float32))


def test_validity_mask_under_xla_marks_every_bad_row():
    @tf.function(jit_compile=True)
    def traced(y_true):
        return _labels.sparse_label_tensor(y_true, 3, return_valid=True)

    ids, valid = traced(tf.constant([0, 3, -1, 2], tf.int64))
    np.testing.assert_array_equal(valid.numpy(), [True, False, False, True])
    assert ids.numpy().min() >= 0 and ids.numpy().max() <= 2
    _, valid = traced(tf.constant([0.0, 1.5, np.nan, 2.0]))
    np.testing.assert_array_equal(valid.numpy(), [True, False, False, True])
    _, valid = traced(tf.constant([[0, 1, 0], [1, 1, 0], [0.5, 0.5, 0]], tf.float32))
    np.testing.assert_array_equal(valid.numpy(), [True, False, False])


def test_the_one_probability_rule():
    logits = np.array([[2.0, -1.0, 0.5], [0.0, 1.0, 3.0]])
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    assert _labels.is_probability_rows(probs) is True
    assert _labels.is_probability_rows(probs * (1 + 9e-4)) is True  # within the 1e-3 tolerance
    assert _labels.is_probability_rows(probs * 1.01) is False
    assert _labels.is_probability_rows(logits) is False
    assert _labels.is_probability_rows(np.where(probs > 0.5, np.nan, probs)) is False
    # The same decisions on tensors (usable inside a compiled step).
    for array, expected in ((probs, True), (probs * 1.01, False), (logits, False)):
        assert bool(_labels.is_probability_rows(tf.constant(array, tf.float32))) is expected


def test_as_probabilities_and_as_logits_agree_with_numpy():
    logits = np.array([[2.0, -1.0, 0.5], [0.0, 1.0, 3.0]])
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    for outputs in (logits, probs):
        np.testing.assert_allclose(_labels.as_probabilities(tf.constant(outputs)).numpy(),
                                   probs, rtol=1e-6)
    np.testing.assert_array_equal(_labels.as_logits(logits), logits)
    np.testing.assert_allclose(_labels.as_logits(probs), np.log(probs))
    np.testing.assert_allclose(_labels.as_logits(tf.constant(probs)).numpy(), np.log(probs))
    np.testing.assert_allclose(_labels.as_logits(probs, from_logits=True), probs)
    with pytest.raises(ValueError, match="`from_logits` must be True, False or None"):
        _labels.as_probabilities(tf.constant(probs), from_logits="auto")


def test_label_layout_and_concrete_values():
    assert _labels.label_layout((None,), 3) == _labels.SPARSE
    assert _labels.label_layout((None, 1), 3) == _labels.COLUMN
    assert _labels.label_layout((None, 3), 3) == _labels.ONE_HOT
    np.testing.assert_array_equal(_labels.concrete_values(tf.constant([1, 2])), [1, 2])

    @tf.function
    def traced(x):
        assert _labels.concrete_values(x) is None
        return x

    traced(tf.constant([1, 2]))
