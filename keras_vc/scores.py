"""Out-of-distribution scores computed from logits: the one home of every score function.

Every score is **higher for more in-distribution** inputs. Each function takes logits of shape
(n, K) (NumPy arrays or backend tensors; written with ``keras.ops`` so that the same code runs
inside exported serving graphs) and returns one score per row: a NumPy array for NumPy input,
a backend tensor otherwise.

Sources: MSP (Hendrycks & Gimpel 2017); entropy score ES, max logit MDS, MMLS and MMLES
(Macedo et al., DisMax, arXiv 2205.05874, ``dismax.py`` ``scores``); energy (Liu et al. 2020,
negative free energy ``T * logsumexp(logits / T)`` at ``T = 1``).
"""

import functools

import numpy as np
from keras import ops


def _numpy_in_numpy_out(function):
    @functools.wraps(function)
    def wrapper(logits):
        is_numpy = isinstance(logits, (np.ndarray, list, tuple))
        if is_numpy:
            logits = np.asarray(logits, dtype=np.float32)
            if logits.ndim != 2 or logits.shape[1] < 2:
                raise ValueError(f"`logits` must have shape (n, K) with K >= 2, got {logits.shape}.")
            if not np.all(np.isfinite(logits)):
                raise ValueError("`logits` contains NaN or infinite values.")
        result = function(ops.cast(logits, "float32"))
        return ops.convert_to_numpy(result) if is_numpy else result

    return wrapper


@_numpy_in_numpy_out
def max_probability(logits):
    """Maximum softmax probability (MSP, Hendrycks & Gimpel 2017)."""
    return ops.max(ops.softmax(logits, axis=-1), axis=-1)


@_numpy_in_numpy_out
def negative_entropy(logits):
    """``sum_k p_k log p_k`` of the softmax (DisMax "ES"); 0 for a one-hot prediction."""
    log_probs = ops.log_softmax(logits, axis=-1)
    return ops.sum(ops.exp(log_probs) * log_probs, axis=-1)


@_numpy_in_numpy_out
def max_logit(logits):
    """Largest logit (IsoMax+ "MDS": minus the smallest scaled distance to a prototype)."""
    return ops.max(logits, axis=-1)


@_numpy_in_numpy_out
def max_mean_logit(logits):
    """Largest logit plus the mean logit (DisMax "MMLS")."""
    return ops.max(logits, axis=-1) + ops.mean(logits, axis=-1)


@_numpy_in_numpy_out
def mmles(logits):
    """Max-mean logit entropy score, DisMax's default: max + mean logit + negative entropy."""
    return max_mean_logit(logits) + negative_entropy(logits)


@_numpy_in_numpy_out
def energy(logits):
    """Negative free energy ``logsumexp(logits)`` (Liu et al. 2020); for a generative head whose
    logits are log p(z | k) + log pi_k this is the log marginal density log p(z)."""
    return ops.logsumexp(logits, axis=-1)


SCORES = {
    "max_probability": max_probability,
    "msp": max_probability,
    "negative_entropy": negative_entropy,
    "max_logit": max_logit,
    "max_mean_logit": max_mean_logit,
    "mmles": mmles,
    "energy": energy,
}


def get(name):
    """Looks a score function up by name (``msp`` is an alias of ``max_probability``)."""
    if callable(name):
        return name
    if name not in SCORES:
        raise ValueError(f"Unknown OOD score {name!r}; expected one of {sorted(SCORES)}.")
    return SCORES[name]


def recommended(model_or_layer):
    """The recommended OOD score of a classifier: ``(name, fn(outputs) -> scores)``.

    A model whose output layer is a keras_vc head (:class:`keras_vc.layers.ClassifierHead`)
    gets the head's own score (``head.recommended_ood_score``, ``head.ood_score``: MMLES for
    DisMax, log p(z) for VariationalSoftmax, ...); any other classifier (a plain ``Dense``
    output) gets the maximum softmax probability.

    Raises:
        ValueError: if the model holds a keras_vc head that is not its output layer.
    """
    from keras_vc.layers import head as head_lib  # the heads import this module

    head = head_lib.output_head(model_or_layer)
    if head is not None:
        return head.recommended_ood_score, head.ood_score
    return "max_probability", max_probability
