"""``ClassifierHead``: the protocol every keras_vc output layer follows, in one base class.

A head replaces the final ``Dense`` layer of a classifier. Whatever its method, it promises:

* **Output.** ``(..., num_classes)`` float32 logits, whatever the dtype policy: the head computes
  in the policy's dtype and casts its final logits (``compute_output_spec`` says so).
* **Float32 state.** Weights that the docstrings call float32 (the temperature, prototypes,
  prior parameters, ...) are created with :meth:`add_float32_weight`: stored in float32 *and*
  read in float32 inside ``call`` under ``mixed_float16`` / ``mixed_bfloat16`` (``autocast=False``).
  Sublayers (``Dense`` projections) follow the policy.
* **One temperature rule.** Every head owns the non-trainable float32 scalar ``temperature``
  (1.0 until calibrated, e.g. by :func:`keras_vc.calibration.fit_temperature`). It is a
  *post-hoc* correction: inference outputs (``training=False`` or ``None``: ``predict``,
  ``evaluate``, export, a plain call) are divided by it; training outputs (``training=True``,
  ``fit``) never are, so fitting a temperature never changes what further training optimises.
  It is saved with the model and served by an export, bit for bit.
* **One OOD score.** ``recommended_ood_score`` names the score the method's authors use (the
  maximum softmax probability where the method has nothing better) and ``ood_score(outputs)``
  maps the head's own inference outputs to it (higher = more in-distribution), always on the
  logits at temperature 1 (:meth:`score_logits`): calibrating a temperature does not change
  which inputs a head flags.
* ``has_latent``: True for heads with a latent variable, whose ``call`` takes
  ``num_samples=M`` for a Monte-Carlo estimate (see ``CONTRIBUTING.md``).
* Inputs of the wrong rank or with an unknown feature dimension are refused at ``build`` with
  one message.

:func:`output_head` finds the head that produces a model's output; ``keras_vc.scores``,
``keras_vc.export`` and ``keras_vc.calibration`` rely on it instead of guessing from attributes.
"""

import warnings

import keras
import numpy as np
from keras import ops

from keras_vc import _validation
from keras_vc import scores


@keras.saving.register_keras_serializable(package="keras_vc")
class ClassifierHead(keras.layers.Layer):
    """Base class of keras_vc's output layers (see the module docstring for the protocol).

    Subclasses call ``super().__init__(num_classes, **kwargs)``, create their state in
    ``build`` (calling :meth:`build_temperature` there), and return
    ``self.finalize_logits(logits, training)`` from ``call``.

    Args:
        num_classes: number of classes K (>= 2).
        **kwargs: standard layer arguments (``name``, ``dtype``, ...).

    Class attributes:
        has_latent: whether the head has a latent variable (``num_samples`` in ``call``).
        input_rank: the exact input rank the head accepts, or None for ``(..., features)``.
    """

    has_latent = False
    input_rank = None

    def __init__(self, num_classes, **kwargs):
        super().__init__(**kwargs)
        self.num_classes = _validation.check_int(num_classes, "num_classes", minimum=2)

    # State ----------------------------------------------------------------------------------

    def check_input_shape(self, input_shape):
        """Returns ``input_shape`` as a tuple after checking its rank and feature dimension."""
        input_shape = tuple(input_shape)
        rank_ok = (len(input_shape) >= 2 if self.input_rank is None
                   else len(input_shape) == self.input_rank)
        if not rank_ok or input_shape[-1] is None:
            expected = ("(..., features)" if self.input_rank is None
                        else "(batch, features)" if self.input_rank == 2
                        else f"rank {self.input_rank}")
            raise ValueError(
                f"`{type(self).__name__}` expects inputs of shape {expected} with a known number "
                f"of features, got input shape {input_shape}. Flatten or pool the features "
                "first (e.g. keras.layers.GlobalAveragePooling2D()).")
        return input_shape

    def add_float32_weight(self, name, shape, initializer, trainable=True):
        """A weight stored in float32 and read in float32 under any mixed-precision policy."""
        return self.add_weight(name=name, shape=shape, initializer=initializer,
                               trainable=trainable, dtype="float32", autocast=False)

    def build_temperature(self):
        """Creates the non-trainable float32 scalar ``temperature`` (1.0)."""
        self.temperature = self.add_float32_weight("temperature", (), "ones", trainable=False)

    # Outputs --------------------------------------------------------------------------------

    def finalize_logits(self, logits, training=None):
        """float32 logits, divided by the temperature except in training mode."""
        logits = ops.cast(logits, "float32")
        if training:
            self._warn_if_not_output()
            self._check_training_loss()
            return logits
        return ops.divide(logits, self.temperature)

    def _warn_if_not_output(self):
        """One ``UserWarning`` when the head is trained while another layer consumes its output.

        Runs when the training step is traced (or on an eager training call): the earliest point
        at which keras_vc can know the head is being trained. A head inside a model whose output
        is another layer's trains through that layer (a ``Dense`` after ``DistanceLogits``
        learns from distances scaled by 10 and sits near chance), and its temperature and OOD
        score no longer describe the model's outputs.
        """
        consumers = [node.operation.name for node in self._outbound_nodes]
        if not consumers or getattr(self, "_warned_not_output", False):
            return
        self._warned_not_output = True
        warnings.warn(
            f"The keras_vc head {self.name!r} ({type(self).__name__}) is being trained but is "
            f"not the output layer: its output feeds {', '.join(map(repr, consumers))}. A "
            "head's logits are meant to be the model's output (with its loss, e.g. "
            "keras_vc.losses.EntropicCrossEntropy for DistanceLogits); layers after it change "
            "what is trained, and fit_temperature, scores.recommended and export refuse such a "
            "model. Make the head the last layer.", UserWarning, stacklevel=2)

    def _check_training_loss(self):
        """Refuses a compiled loss that reads this head's logits as probabilities.

        A layer cannot see the loss it is trained with, so when the training step is traced
        this looks up the calling frames for the Keras model being trained (its train step calls
        the model, which calls this head) and, if this head is that model's output layer, checks
        its compiled ``loss``: the string ``"sparse_categorical_crossentropy"`` /
        ``"categorical_crossentropy"`` or a Keras cross-entropy with ``from_logits=False`` treats
        logits as probabilities (VariationalSoftmax then sits at ``log K`` and chance accuracy).
        Anything unexpected leaves training alone: this is a guard, not a requirement.

        Raises:
            ValueError: such a loss on a model whose output layer is this head.
        """
        if getattr(self, "_loss_checked", False):
            return
        self._loss_checked = True
        model = _model_being_trained()
        if model is None:
            return
        try:
            if output_head(model) is not self:
                return
        except ValueError:
            return
        loss = getattr(model, "loss", None)
        self.check_compiled_loss(loss)
        if _reads_probabilities(loss):
            raise ValueError(
                f"Model {model.name!r} is compiled with loss {_describe_loss(loss)}, which reads "
                f"its inputs as probabilities (from_logits=False), but its output layer "
                f"{self.name!r} ({type(self).__name__}) returns logits. Compile with the "
                "head's loss (keras_vc.losses.EntropicCrossEntropy() for DistanceLogits, "
                "keras_vc.losses.VariationalClassificationLoss() for VariationalSoftmax) or "
                "keras.losses.SparseCategoricalCrossentropy(from_logits=True).")

    def check_compiled_loss(self, loss):
        """Hook for a head's own loss pairing rule, called with the compiled ``loss`` of the
        model being trained when this head is its output layer (see ``_check_training_loss``).

        Raises ``ValueError`` for a loss that cannot train this head correctly; the default
        accepts every loss.
        """
        del loss

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)[:-1] + (self.num_classes,)

    def compute_output_spec(self, inputs, *args, **kwargs):
        return keras.KerasTensor(self.compute_output_shape(inputs.shape), dtype="float32")

    # OOD score ------------------------------------------------------------------------------

    @property
    def recommended_ood_score(self):
        """Name of the head's recommended OOD score (a key of ``keras_vc.scores.SCORES``)."""
        return "max_probability"

    def score_logits(self, outputs):
        """The logits the OOD score reads: inference outputs brought back to temperature 1."""
        return outputs * self._temperature_value(outputs)

    def _temperature_value(self, outputs):
        if isinstance(outputs, np.ndarray):
            return np.float32(ops.convert_to_numpy(self.temperature))
        return self.temperature

    def ood_score(self, outputs):
        """The recommended OOD score of this head's inference outputs.

        Args:
            outputs: (n, num_classes) outputs of this layer in inference mode (e.g.
                ``model.predict(x)``), NumPy array or tensor.

        Returns:
            (n,) scores, higher = more in-distribution: NumPy for NumPy input, a tensor
            otherwise.
        """
        if isinstance(outputs, (np.ndarray, list, tuple)):
            outputs = np.asarray(outputs, dtype=np.float32)
        else:
            outputs = ops.cast(outputs, "float32")
        return scores.get(self.recommended_ood_score)(self.score_logits(outputs))

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes}


_PROBABILITY_LOSS_NAMES = ("sparse_categorical_crossentropy", "categorical_crossentropy")


def _model_being_trained(max_depth=40):
    """The compiled ``keras.Model`` whose method is on the call stack (nearest first), or None."""
    import inspect

    frame = inspect.currentframe()
    try:
        for _ in range(max_depth):
            frame = frame.f_back if frame is not None else None
            if frame is None:
                return None
            candidate = frame.f_locals.get("self")
            if isinstance(candidate, keras.Model) and getattr(candidate, "loss", None) is not None:
                return candidate
        return None
    finally:
        del frame


def _reads_probabilities(loss):
    if isinstance(loss, str):
        return loss in _PROBABILITY_LOSS_NAMES
    if isinstance(loss, (keras.losses.SparseCategoricalCrossentropy,
                         keras.losses.CategoricalCrossentropy)):
        return not getattr(loss, "_fn_kwargs", {}).get("from_logits", False)
    return loss in (keras.losses.sparse_categorical_crossentropy,
                    keras.losses.categorical_crossentropy)


def _describe_loss(loss):
    if isinstance(loss, str):
        return repr(loss)
    return f"{type(loss).__name__}(from_logits=False)" if isinstance(
        loss, keras.losses.Loss) else getattr(loss, "__name__", repr(loss))


def _walk(layer):
    for child in getattr(layer, "layers", None) or ():
        yield child
        yield from _walk(child)


def output_head(model_or_layer):
    """The :class:`ClassifierHead` that produces a model's output, or None if there is none.

    Args:
        model_or_layer: a ``keras.Model`` (nested models are searched through their last
            layer) or a layer.

    Returns:
        The head, or None for a model without any keras_vc head (a plain ``Dense`` output).

    Raises:
        ValueError: if the model contains a keras_vc head that is not its output layer (layers
            after the head change its outputs, so its temperature and OOD score would not
            describe the model's outputs).
    """
    if isinstance(model_or_layer, ClassifierHead):
        return model_or_layer
    last = model_or_layer
    while getattr(last, "layers", None):
        last = last.layers[-1]
    if isinstance(last, ClassifierHead):
        return last
    inner = [layer for layer in _walk(model_or_layer) if isinstance(layer, ClassifierHead)]
    if inner:
        raise ValueError(
            f"The keras_vc head {inner[-1].name!r} ({type(inner[-1]).__name__}) is not the "
            f"output layer of model {getattr(model_or_layer, 'name', '')!r} (its last layer is "
            f"{last.name!r}): layers after a head change its logits, so its temperature, OOD "
            "score and loss no longer describe the model's output. Make the head the last layer.")
    return None
