"""``EntropicCrossEntropy``: the IsoMax+ / DisMax training loss, with DisMax's FPR weighting."""

import warnings

import keras
import numpy as np
from keras import ops

from keras_vc import _labels
from keras_vc import _validation

_TARGET_TOLERANCE = 1e-3
# A target row whose largest entry is below this is "soft" (an FPR mosaic row).
_SOFT_THRESHOLD = 1.0 - 1e-6


# The attribute a logits layer may set on its output tensor to say which factor it already
# applied (``keras_vc.layers.DistanceLogits`` and its ``entropic_scale``); read in ``__call__``.
LOGIT_SCALE_ATTRIBUTE = "_keras_vc_logit_scale"


def pairing_message(loss_scale, layer_scale=None):
    applied = ("the logits already carry a factor of "
               f"{layer_scale:g} (the layer's `entropic_scale`)" if layer_scale is not None else
               "keras_vc.layers.DistanceLogits already multiplies its output by its own "
               "`entropic_scale` (default 10)")
    return (
        f"EntropicCrossEntropy(entropic_scale={loss_scale:g}) multiplies the logits by "
        f"{loss_scale:g}, and {applied}: with both, the softmax sees the reference logits "
        "scaled twice (100 for 10 and 10). Apply the factor once: DistanceLogits() with "
        "EntropicCrossEntropy() (the default, entropic_scale=1), or the reference's split "
        "DistanceLogits(entropic_scale=1.0) with EntropicCrossEntropy(entropic_scale=10.0).")


@keras.saving.register_keras_serializable(package="keras_vc")
class EntropicCrossEntropy(keras.losses.Loss):
    """Cross-entropy of ``softmax(entropic_scale * logits)``, the IsoMax+ / DisMax loss.

    Per example, ``-sum_k t_k log softmax(entropic_scale * logits)_k``, computed by the backend's
    fused softmax cross-entropy from logits (a log-softmax). The reference code takes ``log`` of
    a separately computed softmax, which gives ``-inf`` once
    ``entropic_scale * |distance_scale| * (distance gap)`` exceeds about 88 in float32; the
    log-softmax is the same function without the overflow.

    **Scale.** :class:`keras_vc.layers.DistanceLogits` already multiplies its output by its own
    ``entropic_scale`` (10), so the default here is 1: ``DistanceLogits()`` with
    ``EntropicCrossEntropy()`` is the reference training loss. The reference's split,
    ``DistanceLogits(entropic_scale=1.0)`` with ``EntropicCrossEntropy(entropic_scale=10.0)``,
    gives the same loss. Do not use 10 on both sides: a loss built with ``entropic_scale != 1``
    warns once (``UserWarning``) with this pairing rule. Training a ``DistanceLogits`` whose
    ``entropic_scale`` is not 1 with such a loss raises ``ValueError`` when the training step is
    traced, on every backend (the layer checks the loss it is compiled with); a direct call on
    TensorFlow raises too when its ``y_pred`` says it already carries a factor other than 1 (a
    logits layer that sets the ``_keras_vc_logit_scale`` attribute on its output tensor).

    **Targets.** Decided from the shape of ``y_true`` against the logits ``(..., K)``:
    integer class ids ``(...)`` or ``(..., 1)``, or probability rows ``(..., K)`` (one-hot, label
    smoothing, or the soft targets of :func:`keras_vc.augment.fractional_probability_mix`).

    **Fractional probability regularization (DisMax FPR).** A batch from
    ``fractional_probability_mix`` has one-hot targets in its first half and soft mosaic targets
    ``t`` (entries 0.25, 0.5, ...) in its second half. Rows whose largest target is below 1 are
    weighted by ``alpha``, so with half of the batch made of mosaics the batch mean equals the
    reference objective ``(L_CE + alpha * L_FPR) / 2``, with ``L_FPR`` the mean
    ``KL(t || softmax)`` over the mosaics, plus the constant ``alpha * mean H(t) / 2`` (because
    ``CE(t, P) = KL(t || P) + H(t)``): the gradients are the reference's. A mosaic whose four
    quadrants share one class has a one-hot target and gets weight 1 rather than ``alpha`` (exact
    for the default ``alpha=1``). Label-smoothed targets also count as soft: use ``alpha=1`` with
    them.

    **Bad labels.** When the loss runs eagerly (a direct call, ``run_eagerly=True``), class ids
    outside ``[0, K)``, non-integer ids, and target rows that are negative or do not sum to 1
    raise ``ValueError``. Inside a compiled ``fit`` the values are not known when the graph is
    built: an out-of-range class id stops the first training step with the same message (a
    TensorFlow ``InvalidArgumentError`` under ``tf.function``, an error raised from a
    ``jax.debug.callback`` under JAX). XLA on TensorFlow (``jit_compile=True``) has no runtime
    assertion: there the example's loss is NaN, so ``fit`` logs ``loss: nan`` instead of
    silently training on a clamped label. Shapes are always checked.

    Args:
        entropic_scale: the factor applied to the logits before the softmax; > 0 (default 1,
            see above).
        alpha: weight of the soft-target (FPR mosaic) rows, >= 0 (reference: 1.0; 0.5 and 0.25
            variants exist).
        reduction: Keras loss reduction (default ``"sum_over_batch_size"``, the batch mean).
        name: name of the loss.
        dtype: dtype of the loss computation (default float32).

    Example:

    ```python
    model.compile(optimizer="adam", loss=keras_vc.losses.EntropicCrossEntropy())
    ```

    Source: Macedo & Ludermir, IsoMax+ (arXiv 2105.14399) and Macedo, Zanchettin & Ludermir,
    DisMax (arXiv 2205.05874), ``losses/dismax.py`` ``DisMaxLossSecondPart``.
    """

    def __init__(self, entropic_scale=1.0, alpha=1.0, reduction="sum_over_batch_size",
                 name="entropic_cross_entropy", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.entropic_scale = _validation.check_float(entropic_scale, "entropic_scale",
                                                      minimum=0.0, strict_minimum=True)
        self.alpha = _validation.check_float(alpha, "alpha", minimum=0.0)
        if self.entropic_scale != 1.0:
            # The loss sees only tensors, so it cannot tell which layer made its logits; say the
            # rule where the choice is made (Python shows a warning once per call site).
            warnings.warn(pairing_message(self.entropic_scale), UserWarning, stacklevel=2)

    def __call__(self, y_true, y_pred, sample_weight=None):
        layer_scale = getattr(y_pred, LOGIT_SCALE_ATTRIBUTE, None)
        if layer_scale is not None and float(layer_scale) != 1.0 and self.entropic_scale != 1.0:
            raise ValueError(pairing_message(self.entropic_scale, float(layer_scale)))
        return super().__call__(y_true, y_pred, sample_weight=sample_weight)

    def call(self, y_true, y_pred):
        num_classes = y_pred.shape[-1]
        if num_classes is None or num_classes < 2:
            raise ValueError(
                f"`y_pred` must be logits of shape (..., K) with a known K >= 2, got shape "
                f"{tuple(y_pred.shape)}."
            )
        logits = ops.cast(y_pred, "float32") * self.entropic_scale
        true_rank, pred_rank = len(y_true.shape), len(y_pred.shape)
        if true_rank == pred_rank and y_true.shape[-1] == 1:
            y_true = ops.squeeze(y_true, axis=-1)
            true_rank -= 1
        if true_rank == pred_rank - 1:
            return self._sparse(y_true, logits, num_classes)
        if true_rank == pred_rank and y_true.shape[-1] in (num_classes, None):
            return self._dense(y_true, logits, num_classes)
        raise ValueError(
            f"`y_true` must hold class ids of shape {tuple(y_pred.shape[:-1])} (or with a "
            f"trailing 1) or target rows of shape {tuple(y_pred.shape)}; got shape "
            f"{tuple(y_true.shape)}."
        )

    def _sparse(self, labels, logits, num_classes):
        # Class ids of any leading shape: checked and made safe as one flat vector.
        flat = ops.reshape(labels, (-1,))
        ids, valid = _labels.sparse_label_tensor(flat, num_classes, name="y_true",
                                                 return_valid=True)
        _labels.assert_valid_labels(flat, valid, num_classes, name="y_true")
        shape = ops.shape(labels)
        ids, valid = ops.reshape(ids, shape), ops.reshape(valid, shape)
        nll = ops.sparse_categorical_crossentropy(ids, logits, from_logits=True)
        return ops.where(valid, nll, ops.cast(np.nan, "float32"))

    def _dense(self, targets, logits, num_classes):
        targets = ops.cast(targets, "float32")
        values = _labels.concrete_values(targets)
        if values is not None:
            self._check_targets(values, num_classes)
        cross_entropy = ops.categorical_crossentropy(targets, logits, from_logits=True)
        soft = ops.max(targets, axis=-1) < _SOFT_THRESHOLD
        return cross_entropy * ops.where(soft, self.alpha, 1.0)

    @staticmethod
    def _check_targets(values, num_classes):
        if values.shape[-1] != num_classes:
            raise ValueError(
                f"`y_true` target rows must have {num_classes} entries, got shape {values.shape}."
            )
        if not np.all(np.isfinite(values)):
            raise ValueError("`y_true` contains NaN or infinite values.")
        if values.size and values.min() < -_TARGET_TOLERANCE:
            raise ValueError(
                f"`y_true` target rows must be probabilities (>= 0); got a minimum of "
                f"{values.min():.4g}."
            )
        sums = values.sum(axis=-1)
        if sums.size and np.abs(sums - 1).max() > _TARGET_TOLERANCE:
            raise ValueError(
                "`y_true` target rows must sum to 1 (class ids need shape "
                f"(...,) or (..., 1)); a row sums to {sums.flat[np.argmax(np.abs(sums - 1))]:.4g}."
            )

    def get_config(self):
        config = super().get_config()
        config.update({"entropic_scale": self.entropic_scale, "alpha": self.alpha})
        return config
