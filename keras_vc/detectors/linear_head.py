"""Detectors that re-apply the final Dense layer to the head's input features: ViM and ReAct."""

import numpy as np
from keras import ops

from keras_vc import _validation
from keras_vc import scores
from keras_vc.detectors import _model
from keras_vc.detectors import _streaming
from keras_vc.detectors.base import Detector


class _LinearHeadDetector(Detector):
    """Features = the input of the final Dense layer, whose ``kernel`` (D, K) and ``bias`` (K,)
    are read from the model or given as ``head_weights`` (saved with the fitted state)."""

    def __init__(self, model=None, head_weights=None, max_samples=10000, seed=0):
        self.kernel = self.bias = None
        if head_weights is not None:
            try:
                kernel, bias = head_weights
            except (TypeError, ValueError):
                raise ValueError("`head_weights` must be a pair (kernel (D, K), bias (K,)).")
            self.kernel = _validation.check_finite_array(kernel, "head_weights kernel", ndim=2)
            self.bias = _validation.check_finite_array(bias, "head_weights bias", ndim=1)
            if self.bias.shape[0] != self.kernel.shape[1]:
                raise ValueError(f"`head_weights`: bias {self.bias.shape} does not match kernel "
                                 f"{self.kernel.shape}.")
        self.max_samples = _validation.check_int(max_samples, "max_samples", minimum=1)
        self.seed = _validation.check_int(seed, "seed", minimum=0)
        super().__init__(model)

    def _attach(self, model):
        kernel, bias = _model.dense_head_weights(model, type(self).__name__)
        super()._attach(model)
        if not self._fitted:
            self.kernel, self.bias = kernel, bias

    def get_config(self):
        return {"max_samples": self.max_samples, "seed": self.seed}

    def _begin(self, num_features):
        if self.kernel is None:
            raise ValueError(f"{type(self).__name__} needs the final Dense layer's weights: pass "
                             "`model` or `head_weights=(kernel, bias)`.")
        if num_features != self.kernel.shape[0]:
            raise ValueError(f"`features` must have {self.kernel.shape[0]} columns (the Dense "
                             f"kernel's input width), got {num_features}.")
        super()._begin(num_features)
        self._reservoir = _streaming.Reservoir(self.max_samples, self.seed)

    def _logits(self, features, dtype):
        return (ops.matmul(features, ops.convert_to_tensor(self.kernel, dtype))
                + ops.convert_to_tensor(self.bias, dtype))

    def _fitted_state(self):
        return {"kernel": self.kernel, "bias": self.bias}

    def _set_fitted_state(self, arrays):
        self.kernel, self.bias = arrays["kernel"], arrays["bias"]


class ViM(_LinearHeadDetector):
    """Virtual-logit matching, ViM (Wang et al., CVPR 2022, arXiv 2203.10807).

    Origin ``u = -pinv(W) b`` (W = kernel^T); ``M`` = second moment of ``h - u`` over the training
    features; ``R`` = eigenvectors of M's ``D - d`` smallest eigenvalues; ``alpha = mean_i max_k
    z_ik / mean_i ||R^T (h_i - u)||``; score ``s = logsumexp(z) - alpha ||R^T (h - u)||`` (the
    reference code's form; the paper's virtual-logit softmax is a monotone transform of its
    negation). Default d (reference ``benchmark.py``): 1000 for D >= 2048, 512 for D >= 768,
    else D / 2; d < D is required.

    Needs: the input features of a final Dense layer and its W, b (logits are recomputed from
    them); no labels. A head without a Dense layer (``DistanceLogits``, ``VariationalSoftmax``)
    is refused: use Mahalanobis, RelativeMahalanobis or KNN on the same features.

    Fit: one pass; M from float64 shifted sums (N-independent memory, ``D^2``); the mean max
    logit over all samples; ``||R^T (h - u)||`` needs R, so its mean is taken over a seeded
    reservoir sample of ``max_samples`` training features (exact when N <= max_samples; the
    reference uses a fixed random subset on ImageNet). Memory at N = 50 000, K = 1 000,
    D = 2 048: fit 34 MB (M) + 82 MB (10 000 x D float32 sample) + ``eigh`` work space; stored
    state R (D x (D - d) float64, 17 MB), W, b; score (batch x K) + (batch x (D - d)).

    Args:
        model: the trained classifier (final Dense layer), or None with ``head_weights``.
        principal_dim: d; None = the reference rule above.
        head_weights: ``(kernel (D, K), bias (K,))`` when there is no model.
        max_samples: size of the sample that sets alpha.
        seed: seed of that sample.
    """

    def __init__(self, model=None, principal_dim=None, head_weights=None, max_samples=10000,
                 seed=0):
        if principal_dim is not None:
            principal_dim = _validation.check_int(principal_dim, "principal_dim", minimum=1)
        self.principal_dim = principal_dim
        super().__init__(model, head_weights, max_samples, seed)

    def get_config(self):
        return {"principal_dim": self.principal_dim, **super().get_config()}

    def _begin(self, num_features):
        super()._begin(num_features)
        dim = self.principal_dim
        if dim is None:
            dim = (1000 if num_features >= 2048 else 512 if num_features >= 768
                   else num_features // 2)
        if not 1 <= dim < num_features:
            raise ValueError(f"`principal_dim` ({dim}) must be in [1, {num_features - 1}] (below "
                             f"the feature width {num_features}).")
        self._dim = dim
        self._accumulator = _streaming.ScatterAccumulator(1, num_features)
        self._max_logit_sum = 0.0

    def _update(self, features, labels):
        self._accumulator.update(features, np.zeros(features.shape[0], dtype=np.int64))
        self._reservoir.add(features)
        self._max_logit_sum += float((features @ self.kernel + self.bias).max(axis=1).sum())

    def _finish(self):
        counts, means, scatter = self._accumulator.finish()
        total = int(counts[0])
        if total < 2:
            raise ValueError(f"ViM needs at least 2 training samples; got {total}.")
        origin = -np.linalg.pinv(self.kernel.T) @ self.bias
        shift = means[0] - origin
        _, vectors = np.linalg.eigh(scatter / total + np.outer(shift, shift))
        residual_space = vectors[:, :self.num_features - self._dim]
        sample = self._reservoir.rows()
        norm = sum(np.linalg.norm((sample[i:i + 1024] - origin) @ residual_space, axis=1).sum()
                   for i in range(0, sample.shape[0], 1024)) / sample.shape[0]
        if norm == 0:
            raise ValueError("The training features have no residual outside the principal "
                             "space; lower `principal_dim`.")
        alpha = self._max_logit_sum / total / norm
        self._accumulator = self._reservoir = None
        self._set_fitted_state({"kernel": self.kernel, "bias": self.bias, "origin": origin,
                                "residual_space": residual_space, "alpha": np.asarray(alpha)})

    def _fitted_state(self):
        return {**super()._fitted_state(), "origin": self.origin,
                "residual_space": self.residual_space, "alpha": np.asarray(self.alpha)}

    def _set_fitted_state(self, arrays):
        super()._set_fitted_state(arrays)
        self.origin, self.residual_space = arrays["origin"], arrays["residual_space"]
        self.alpha = float(arrays["alpha"])

    def score_tensor(self, features):
        """``logsumexp(z) - alpha ||R^T (h - u)||`` of (batch, D) head-input features."""
        self._require_fitted("score_tensor")
        dtype = self._dtype(features)
        features = ops.cast(features, dtype)
        residual = ops.matmul(features - ops.convert_to_tensor(self.origin, dtype),
                              ops.convert_to_tensor(self.residual_space, dtype))
        energy = ops.cast(scores.energy(self._logits(features, dtype)), dtype)
        return energy - self.alpha * ops.sqrt(ops.sum(ops.square(residual), axis=1))


class ReAct(_LinearHeadDetector):
    """Rectified activations, ReAct (Sun, Guo, Li, NeurIPS 2021, arXiv 2111.12797).

    ``c`` = the ``percentile``-th percentile of all activation values of the fit data (NumPy's
    linear interpolation, as the reference); score ``s = logsumexp(min(h, c) W + b)`` (energy of
    the clipped features through the final Dense layer). Default percentile 90 (paper and
    OpenOOD); OpenOOD fits c on the in-distribution **validation** split: pass that to ``fit``.

    Needs: the input features of a final Dense layer and its W, b; no labels (a head without a
    Dense layer is refused: use Mahalanobis, RelativeMahalanobis or KNN).

    Fit: a seeded reservoir sample of ``max_samples`` feature rows (the percentile is exact when
    N <= max_samples). Memory at D = 2 048: 82 MB (10 000 x D float32) plus a copy while
    ``np.percentile`` partitions it; stored state c, W, b; score (batch x D) + (batch x K).

    Args:
        model: the trained classifier (final Dense layer), or None with ``head_weights``.
        percentile: in (0, 100].
        head_weights, max_samples, seed: as :class:`ViM`.
    """

    def __init__(self, model=None, percentile=90.0, head_weights=None, max_samples=10000, seed=0):
        self.percentile = _validation.check_float(percentile, "percentile", minimum=0.0,
                                                  maximum=100.0, strict_minimum=True)
        super().__init__(model, head_weights, max_samples, seed)

    def get_config(self):
        return {"percentile": self.percentile, **super().get_config()}

    def _update(self, features, labels):
        self._reservoir.add(features)

    def _finish(self):
        sample, self._reservoir = self._reservoir.rows(), None
        self.threshold = float(np.percentile(sample, self.percentile))

    def _fitted_state(self):
        return {**super()._fitted_state(), "threshold": np.asarray(self.threshold)}

    def _set_fitted_state(self, arrays):
        super()._set_fitted_state(arrays)
        self.threshold = float(arrays["threshold"])

    def score_tensor(self, features):
        """``logsumexp(min(h, c) W + b)`` of (batch, D) head-input features."""
        self._require_fitted("score_tensor")
        dtype = self._dtype(features)
        clipped = ops.minimum(ops.cast(features, dtype), self.threshold)
        return ops.cast(scores.energy(self._logits(clipped, dtype)), dtype)
