"""VariationalClassificationLoss: the training objective of ``VariationalSoftmax``."""

import keras
from keras import ops

from keras_vc import _labels


@keras.saving.register_keras_serializable(package="keras_vc")
class VariationalClassificationLoss(keras.losses.Loss):
    """Negative VC ELBO plus the latent-consistency term, for :class:`VariationalSoftmax`.

    The per-example objective of Variational Classification is::

        CE(logits_i, y_i) + kl[i, y_i] + consistency[i, y_i] + discriminator[i, y_i]

    (see :class:`keras_vc.layers.VariationalSoftmax`). In training mode the layer returns the
    *training logits* ``logits - (kl + consistency + discriminator)`` and adds the
    label-independent rest of the objective with ``add_loss``, so that the cross-entropy of its
    output plus the model's losses is exactly this objective. This loss is that cross-entropy,
    from logits, with the label checks below; ``fit`` and ``evaluate`` add the model's losses.
    ``keras.losses.SparseCategoricalCrossentropy(from_logits=True)`` trains the same objective.

    In inference mode (``evaluate``, validation) the layer returns its predictive logits and
    adds nothing, so the loss is the validation NLL.

    Labels are integer class ids of shape (batch,) or (batch, 1), or one-hot rows (batch, K);
    other shapes (one-hot rows of the wrong width included) raise ``ValueError`` when the loss is
    traced. Labels outside [0, K) raise ``ValueError`` when their values are known (eager calls)
    and stop a compiled ``fit`` at its first step with the same message (``tf.function``, JAX's
    ``jit``); under XLA on TensorFlow (``jit_compile=True``) nothing can raise at run time and
    their loss is NaN instead of a silent zero.

    Args:
        reduction, name, dtype: as for any ``keras.losses.Loss``.

    Example:
        >>> model.compile(optimizer="adam", loss=VariationalClassificationLoss(),
        ...               metrics=["accuracy"])
    """

    def __init__(self, reduction="sum_over_batch_size", name="variational_classification",
                 dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)

    def call(self, y_true, y_pred):
        logits = ops.cast(y_pred, "float32")
        num_classes = int(logits.shape[-1])
        labels, valid = _labels.sparse_label_tensor(y_true, num_classes, name="y_true",
                                                    return_valid=True)
        _labels.assert_valid_labels(y_true, valid, num_classes, name="y_true")
        log_probs = ops.log_softmax(logits, axis=-1)
        losses = -ops.sum(ops.one_hot(labels, num_classes, dtype="float32") * log_probs, axis=-1)
        return ops.where(valid, losses, ops.full_like(losses, float("nan")))

