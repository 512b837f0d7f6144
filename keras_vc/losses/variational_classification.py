"""VariationalClassificationLoss: the training objective of ``VariationalSoftmax``."""

import keras
import numpy as np
from keras import ops

from keras_vc import _validation
from keras_vc.layers import variational_softmax


def _concrete(value):
    """``value`` as a NumPy array when it holds concrete values (eager), else None (traced)."""
    if isinstance(value, (np.ndarray, list, tuple, int, np.integer)):
        return np.asarray(value)
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        if tf.is_symbolic_tensor(value) or not tf.executing_eagerly():
            return None
    try:
        return keras.ops.convert_to_numpy(value)
    except Exception:  # a tracer of another backend: values are not known yet
        return None


def _in_symbolic_scope():
    """Whether Keras is inferring output specs (``backend.compute_output_spec``)."""
    try:
        from keras.src.backend.common.symbolic_scope import in_symbolic_scope
    except ImportError:  # a Keras without it: no symbolic-scope builds to recognise
        return False
    return in_symbolic_scope()


@keras.saving.register_keras_serializable(package="keras_vc")
class VariationalClassificationLoss(keras.losses.Loss):
    """Negative VC ELBO plus the latent-consistency term, for :class:`VariationalSoftmax`.

    For the logits ``y_pred`` of a :class:`keras_vc.layers.VariationalSoftmax` called in training
    mode, the per-example loss is::

        CE(logits_i, y_i) + kl[i, y_i] + consistency[i, y_i] + discriminator[i, y_i]

    where the (batch, K) tensors ``kl`` (``beta * KL(q(z | x) || p(z | k))``), ``consistency``
    (``consistency_weight * T(z, k)``) and ``discriminator`` (the density-ratio discriminator's
    logistic loss) are attached to the logits tensor by the layer, which computes them for every
    class because it cannot see labels; this loss picks the label's column. The weights
    (``beta``, ``consistency_weight``) therefore live in the layer, once. Stop-gradients inside
    the layer make the discriminator's loss train only the discriminator and the other terms
    train only the classifier, so one optimizer serves both (see ``VariationalSoftmax``).

    In inference mode (``evaluate``, validation) the layer attaches no terms and the loss is the
    cross-entropy of the deterministic prediction, i.e. the validation NLL.

    Labels are integer class ids of shape (batch,) or (batch, 1), or one-hot rows (batch, K).
    Labels outside [0, K) raise ``ValueError`` when their values are known (eager calls); inside
    a compiled ``fit`` they cannot raise, and their loss is NaN instead of a silent zero.

    Args:
        reduction, name, dtype: as for any ``keras.losses.Loss``.

    Example:
        >>> model.compile(optimizer="adam", loss=VariationalClassificationLoss(),
        ...               metrics=["accuracy"])

    Raises (when called):
        ValueError: if ``y_pred`` is not the output of a ``VariationalSoftmax`` call (use
            ``SparseCategoricalCrossentropy(from_logits=True)`` for other logits), or for labels
            of the wrong shape or out of range.
    """

    def __init__(self, reduction="sum_over_batch_size", name="variational_classification",
                 dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self._terms = None

    def __call__(self, y_true, y_pred, sample_weight=None):
        terms = variational_softmax.training_terms(y_pred)
        if terms is None and _in_symbolic_scope():
            # Keras infers the loss's output spec on placeholders for the model's output (the
            # JAX trainer does, before the first step): no layer call, so no terms; the shape
            # is that of the inference-mode loss.
            terms = dict(dict.fromkeys(variational_softmax.TERM_NAMES),
                         num_classes=int(y_pred.shape[-1]))
        if terms is None:
            raise ValueError(
                "`VariationalClassificationLoss` needs `y_pred` to be the output of a "
                "`VariationalSoftmax` layer (the model's last layer), which carries the "
                "training terms; got a tensor without them. Was a layer added after "
                "VariationalSoftmax, or were the logits converted? For plain logits use "
                "keras.losses.SparseCategoricalCrossentropy(from_logits=True).")
        self._terms = terms
        try:
            return super().__call__(y_true, y_pred, sample_weight=sample_weight)
        finally:
            self._terms = None

    def call(self, y_true, y_pred):
        terms = self._terms
        num_classes = terms["num_classes"]
        labels = self._sparse_labels(y_true, num_classes)
        logits = ops.cast(y_pred, "float32")
        one_hot = ops.one_hot(labels, num_classes, dtype="float32")
        per_class = -ops.log_softmax(logits, axis=-1)
        for name in variational_softmax.TERM_NAMES:
            if terms.get(name) is not None:
                per_class = per_class + ops.cast(terms[name], "float32")
        losses = ops.sum(one_hot * per_class, axis=-1)
        valid = ops.logical_and(labels >= 0, labels < num_classes)
        return ops.where(valid, losses, ops.full_like(losses, float("nan")))

    @staticmethod
    def _sparse_labels(y_true, num_classes):
        shape = tuple(y_true.shape)
        one_hot = len(shape) == 2 and shape[-1] == num_classes
        concrete = _concrete(y_true)
        if concrete is not None:
            _validation.check_labels(concrete, num_classes, name="y_true")
        if one_hot:
            return ops.cast(ops.argmax(y_true, axis=-1), "int32")
        if len(shape) == 2 and shape[-1] == 1:
            return ops.cast(ops.reshape(y_true, (-1,)), "int32")
        if len(shape) != 1:
            raise ValueError(
                f"`y_true` must have shape (batch,), (batch, 1) or (batch, {num_classes}); "
                f"got {shape}.")
        return ops.cast(y_true, "int32")
