"""ODIN: temperature scaling plus input perturbation."""

from keras import ops

from keras_vc import _validation
from keras_vc import scores
from keras_vc.ops import gradients
from keras_vc.detectors.logit import _LogitDetector


class ODIN(_LogitDetector):
    """ODIN (Liang, Li, Srikant, ICLR 2018, arXiv 1706.02690).

    With ``y = argmax_k z_k(x)``: ``x' = x - epsilon * sign(grad_x CE(z(x) / T, y))`` (a zero
    gradient counts as +1, as in the reference code; the step raises the tempered softmax of
    ``y``), then ``s = max_k softmax(z(x') / T)_k``. Defaults T = 1000, epsilon = 0.0014 (the
    reference code and OpenOOD, DenseNet / CIFAR-10; the reference README lists 0 to 0.0048 per
    model and OOD set; pytorch-ood uses 0.05 and a different loss). ``epsilon`` is in the units of
    the model's input: the reference divides the step by its per-channel normalisation std
    because it differentiates w.r.t. normalised inputs; a model with the normalisation inside
    takes the plain step (x 255 for 0-255 inputs).

    Needs: logits and input gradients (one backward pass per batch, through
    ``keras.ops`` and the backend's gradient). Not fitted. The perturbation needs the inputs, so
    ODIN with ``epsilon > 0`` is not exportable (``exportable`` is False): ``score_tensor`` and
    ``score_features`` take logits and apply the temperature only.

    Args:
        model: the trained classifier (logits or probabilities out; probabilities are logged).
        temperature: T > 0.
        epsilon: perturbation size >= 0.
    """

    def __init__(self, model=None, temperature=1000.0, epsilon=0.0014):
        self.temperature = _validation.check_float(temperature, "temperature", minimum=0.0,
                                                   strict_minimum=True)
        self.epsilon = _validation.check_float(epsilon, "epsilon", minimum=0.0)
        super().__init__(model)

    def get_config(self):
        return {"temperature": self.temperature, "epsilon": self.epsilon}

    @property
    def exportable(self):
        return self.epsilon == 0.0

    def score_tensor(self, logits):
        """``max_k softmax(z / T)_k`` of logits (no input perturbation)."""
        return scores.max_probability(logits / self.temperature)

    def _score_inputs(self, x_batch):
        if self.epsilon == 0.0:
            return super()._score_inputs(x_batch)

        def tempered_cross_entropy(x):
            logits = ops.cast(self.prepare_tensor(self._forward(x)), "float32") / self.temperature
            predicted = ops.stop_gradient(ops.argmax(logits, axis=-1))
            picked = ops.take_along_axis(logits, ops.expand_dims(predicted, -1), axis=-1)[:, 0]
            return ops.sum(ops.logsumexp(logits, axis=-1) - picked)

        perturbed = gradients.signed_step(tempered_cross_entropy, x_batch, -self.epsilon)
        return super()._score_inputs(perturbed)
