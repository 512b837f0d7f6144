"""Detectors that read only the model's output logits: MSP, max logit, energy, GEN, and the head's
own recommended score. None is fitted (``fit`` returns at once; they score without it).

A model whose output is probabilities (it ends in a softmax) is scored on ``log p``, logits up to a
per-row constant (as ``keras_vc.calibration`` does): MSP and GEN are unchanged by that constant,
max logit becomes ``log max p``, and energy becomes identically 0 (refused). ``score_features``
and ``score_tensor`` take logits.
"""

from keras import ops

from keras_vc import _validation
from keras_vc import scores
from keras_vc.detectors.base import Detector


class _LogitDetector(Detector):
    input_kind = "logits"
    needs_fit = False

    def __init__(self, model=None):
        super().__init__(model)

    def get_config(self):
        return {}


class MaxSoftmax(_LogitDetector):
    """Maximum softmax probability, MSP (Hendrycks & Gimpel, ICLR 2017, arXiv 1610.02136):
    ``s = max_k softmax(z / T)_k`` (T = 1 in the reference code). Needs logits only.

    Computed by ``keras_vc.scores.max_probability`` in float32, where the top probability of a
    confident input saturates at 1.0 (ties); :class:`MaxLogit` or ``GEN`` rank those inputs.

    Args:
        model: the trained classifier, or None (``score_features`` on logits only).
        temperature: T > 0.
    """

    def __init__(self, model=None, temperature=1.0):
        self.temperature = _validation.check_float(temperature, "temperature", minimum=0.0,
                                                   strict_minimum=True)
        super().__init__(model)

    def get_config(self):
        return {"temperature": self.temperature}

    def score_tensor(self, logits):
        return scores.max_probability(logits / self.temperature)


class MaxLogit(_LogitDetector):
    """Maximum logit, MLS (Hendrycks et al., ICML 2022, arXiv 1911.11132): ``s = max_k z_k``.
    Needs raw logits (not invariant to a per-row shift); no hyper-parameters."""

    def score_tensor(self, logits):
        return scores.max_logit(logits)


class Energy(_LogitDetector):
    """Negative free energy, EBO (Liu et al., NeurIPS 2020, arXiv 2010.03759):
    ``s = T logsumexp(z / T)``, T = 1 by default (OpenOOD, pytorch-ood). Needs raw logits: a model
    that outputs probabilities is refused, since ``logsumexp(log p) = 0`` for every input.

    Args:
        model: the trained classifier (output logits), or None.
        temperature: T > 0.
    """

    def __init__(self, model=None, temperature=1.0):
        self.temperature = _validation.check_float(temperature, "temperature", minimum=0.0,
                                                   strict_minimum=True)
        super().__init__(model)

    def _attach(self, model):
        super()._attach(model)
        if self.log_outputs:
            raise ValueError(f"{type(self).__name__} needs logits, but `model` ends in a softmax "
                             "(the energy of log-probabilities is 0 for every input); drop the "
                             "softmax, or use MaxSoftmax / GEN.")

    def get_config(self):
        return {"temperature": self.temperature}

    def score_tensor(self, logits):
        return self.temperature * scores.energy(logits / self.temperature)


class GEN(_LogitDetector):
    """Generalised entropy, GEN (Liu, Lochman, Zach, CVPR 2023; reference code
    XixiLiu95/GEN): ``s = -sum_{j <= M} p_(j)^gamma (1 - p_(j))^gamma`` over the M largest softmax
    probabilities. Defaults gamma = 0.1, M = 100 (reference and OpenOOD); with K <= M every class
    counts. Needs logits only. Computed in log space, ``1 - p`` of the top class as the mass of
    the others (the reference's ``1 - p`` is 0 in float32 for a saturated softmax).

    Args:
        model: the trained classifier, or None.
        gamma: exponent in (0, 1] is the usual range; must be > 0.
        top_m: M >= 1.
    """

    def __init__(self, model=None, gamma=0.1, top_m=100):
        self.gamma = _validation.check_float(gamma, "gamma", minimum=0.0, strict_minimum=True)
        self.top_m = _validation.check_int(top_m, "top_m", minimum=1)
        super().__init__(model)

    def get_config(self):
        return {"gamma": self.gamma, "top_m": self.top_m}

    def score_tensor(self, logits):
        # In log space: p ** gamma of a probability that underflows, and 1 - p of a top class
        # whose softmax rounds to 1 (as the log of the other classes' total mass), stay exact.
        log_probs = ops.log_softmax(ops.cast(logits, self._dtype(logits)), axis=-1)
        num_classes = int(logits.shape[-1])
        top, _ = ops.top_k(log_probs, min(self.top_m, num_classes))
        is_top = ops.one_hot(ops.argmax(log_probs, axis=-1), num_classes, dtype="bool")
        log_rest = ops.logsumexp(ops.where(is_top, float("-inf"), log_probs), axis=-1,
                                 keepdims=True)
        log_complement = ops.concatenate([log_rest, ops.log1p(-ops.exp(top[:, 1:]))], axis=-1)
        return -ops.sum(ops.exp(self.gamma * (top + log_complement)), axis=-1)


class HeadScore(_LogitDetector):
    """The head's own recommended OOD score (``keras_vc.scores.recommended``): MMLES or max logit
    for ``DistanceLogits``, ``log p(z)`` for ``VariationalSoftmax``, MSP for a plain Dense head.
    Needs the model (the score is chosen by its head) and its outputs.

    Args:
        model: the trained classifier.
    """

    def __init__(self, model):
        if model is None:
            raise ValueError("`model` is required: HeadScore asks the model's head for its score.")
        super().__init__(model)

    def _attach(self, model):
        super()._attach(model)
        self.score_name, self._score_fn = scores.recommended(model)

    @classmethod
    def load(cls, path, model=None):
        raise ValueError("HeadScore has no fitted state to load: build HeadScore(model).")

    def score_tensor(self, outputs):
        return self._score_fn(outputs)
