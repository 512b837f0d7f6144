"""Class-conditional Gaussian detectors on features: Mahalanobis (MDS) and Relative Mahalanobis
(RMDS)."""

import numpy as np
from keras import ops

from keras_vc import _validation
from keras_vc.ops import gradients
from keras_vc.detectors import _model
from keras_vc.detectors import _streaming
from keras_vc.detectors.base import Detector


class Mahalanobis(Detector):
    """Mahalanobis distance to the closest class mean (Lee et al., NeurIPS 2018, arXiv 1807.03888).

    Fit: class means ``mu_k`` and one shared covariance ``Sigma = S_W / N`` (the within-class
    scatter divided by N, as the OpenOOD ``mds`` and the authors' code do), ``P = pinv(Sigma)``
    (eigenvalues below ``lambda_max * 1e-10`` dropped). Score
    ``s(h) = max_k -(h - mu_k)^T P (h - mu_k)``, higher = more in-distribution.

    Needs: features of ``layer`` (default the input of the head), true training labels, and, for
    ``epsilon > 0``, input gradients. The fit is one pass over the data in float64 shifted sums
    (see ``_streaming.ScatterAccumulator``); the training features are never held together.

    Memory at N = 50 000, K = 1 000, D = 2 048 (float64): fit ``2 K D + D^2`` = 66 MB of
    accumulators (N-independent) plus one batch and ``eigh`` work space (a few D^2: ~100 MB);
    stored state and score: the whitening matrix (D x r, <= 34 MB) and the whitened means
    (K x r, <= 16 MB), plus (batch x K) distances per scored batch.

    Optional input preprocessing (``epsilon > 0``, the paper's and the authors' code):
    ``x' = x - epsilon * sign(grad_x min_k (h(x) - mu_k)^T P (h(x) - mu_k))`` (a zero gradient
    counts as +1), then ``s(h(x'))``. ``epsilon`` is in the units of the model's input; the
    reference divides the step by its normalisation std per channel because its gradient is
    taken w.r.t. normalised inputs. Preprocessing needs the inputs: ``score_features`` and
    ``score_tensor`` score without it, and ``exportable`` is False when ``epsilon > 0``.

    Args:
        model: the trained classifier, or None (``fit_features`` / ``score_features`` only).
        layer: name of the layer read; None = the input of the head.
        pooling: None, ``"avg"`` or ``"flatten"`` for activations of rank > 2.
        num_classes: K; default: the model's output width, or ``max(labels) + 1`` without a
            model.
        epsilon: input-preprocessing step (0 = none, the OpenOOD default; the authors' code
            searches {0, 0.0005, 0.001, 0.0014, 0.002, 0.005, 0.01}).

    Raises:
        ValueError: bad arguments; a layer the model lacks or of the wrong rank; at fit, fewer
            than ``num_classes + 1`` samples, a class without samples, labels out of range, NaN
            features; at score, features of another width, or no fit yet.
    """

    needs_labels = True

    def __init__(self, model=None, layer=None, pooling=None, num_classes=None, epsilon=0.0):
        if num_classes is not None:
            num_classes = _validation.check_int(num_classes, "num_classes", minimum=2)
        self.num_classes = num_classes
        self.epsilon = _validation.check_float(epsilon, "epsilon", minimum=0.0)
        super().__init__(model, layer, pooling)

    def _attach(self, model):
        super()._attach(model)
        width = _model.num_outputs(model)
        if self.num_classes is not None and self.num_classes != width:
            raise ValueError(f"`num_classes` ({self.num_classes}) differs from the model's output "
                             f"width ({width}).")
        self.num_classes = width

    def get_config(self):
        return {"layer": self.layer, "pooling": self.pooling, "num_classes": self.num_classes,
                "epsilon": self.epsilon}

    @property
    def exportable(self):
        return self.epsilon == 0.0

    def _begin(self, num_features):
        super()._begin(num_features)
        self._accumulator = _streaming.ScatterAccumulator(self.num_classes, num_features)

    def _update(self, features, labels):
        self._accumulator.update(features, labels)

    def _class_statistics(self):
        counts, means, within = self._accumulator.finish()
        self._accumulator = None
        total, minimum = int(counts.sum()), self.num_classes + 1
        if total < minimum:
            raise ValueError(
                f"{type(self).__name__} needs at least num_classes + 1 = {minimum} training "
                f"samples (the shared covariance of N samples around K class means has rank "
                f"<= N - K); got {total}.")
        empty = np.flatnonzero(counts == 0)
        if empty.size:
            raise ValueError(f"Classes {empty.tolist()} have no training sample; every class "
                             f"needs one (num_classes={self.num_classes}).")
        return counts, means, within

    def _finish(self):
        counts, means, within = self._class_statistics()
        self._set_class_gaussians(counts, means, within / counts.sum())

    def _set_class_gaussians(self, counts, means, covariance):
        # Distances are translation invariant: centring on the training mean keeps the
        # one-matmul form below from cancelling when features sit far from the origin.
        self.centre = counts @ means / counts.sum()
        self.whitener = _streaming.inverse_sqrt(covariance, "shared class covariance")
        self.whitened_means = (means - self.centre) @ self.whitener

    def _fitted_state(self):
        return {"centre": self.centre, "whitener": self.whitener,
                "whitened_means": self.whitened_means}

    def _set_fitted_state(self, arrays):
        self.centre = arrays["centre"]
        self.whitener = arrays["whitener"]
        self.whitened_means = arrays["whitened_means"]

    def _class_distances(self, features):
        """(batch, K) squared Mahalanobis distances as one matmul:
        ``||hA||^2 - 2 (hA)(mu A)^T + ||mu A||^2``."""
        dtype = self._dtype(features)
        centred = ops.cast(features, dtype) - ops.convert_to_tensor(self.centre, dtype)
        whitened = ops.matmul(centred, ops.convert_to_tensor(self.whitener, dtype))
        means = ops.convert_to_tensor(self.whitened_means, dtype)
        distances = (ops.sum(ops.square(whitened), axis=1, keepdims=True)
                     - 2.0 * ops.matmul(whitened, ops.transpose(means))
                     + ops.sum(ops.square(means), axis=1)[None, :])
        return ops.maximum(distances, 0.0)

    def score_tensor(self, features):
        """``max_k -(h - mu_k)^T P (h - mu_k)`` of (batch, D) features, keras.ops only."""
        self._require_fitted("score_tensor")
        return -ops.min(self._class_distances(features), axis=1)

    def _score_inputs(self, x_batch):
        if self.epsilon == 0.0:
            return super()._score_inputs(x_batch)

        def closest_distance(x):
            features = self.prepare_tensor(self._forward(x))
            return ops.sum(ops.min(self._class_distances(ops.cast(features, "float32")), axis=1))

        perturbed = gradients.signed_step(closest_distance, x_batch, -self.epsilon)
        return super()._score_inputs(perturbed)


class RelativeMahalanobis(Mahalanobis):
    """Relative Mahalanobis distance, RMDS (Ren et al., arXiv 2106.09022).

    Adds a class-agnostic background Gaussian ``(mu_0, Sigma_0)`` fitted on all training
    features: ``s(h) = MD_0(h) - min_k MD_k(h)``, with ``MD_k`` the Mahalanobis distance under the
    shared class covariance and ``MD_0 = (h - mu_0)^T pinv(Sigma_0) (h - mu_0)``; both
    covariances divided by N (the OpenOOD ``rmds``). ``N Sigma_0 = S_W + sum_k n_k (mu_k -
    mu_0)(mu_k - mu_0)^T`` comes from the class statistics, so the fit is the same single pass as
    :class:`Mahalanobis`. Memory: that of Mahalanobis plus a second whitening matrix (<= 34 MB
    at D = 2 048). No input preprocessing (OpenOOD uses none).

    Args:
        model, layer, pooling, num_classes: as :class:`Mahalanobis`.
    """

    def __init__(self, model=None, layer=None, pooling=None, num_classes=None):
        super().__init__(model, layer, pooling, num_classes, epsilon=0.0)

    def get_config(self):
        config = super().get_config()
        del config["epsilon"]
        return config

    def _finish(self):
        counts, means, within = self._class_statistics()
        total = counts.sum()
        self._set_class_gaussians(counts, means, within / total)
        self.background_mean, scatter = _streaming.total_scatter(counts, means, within)
        self.background_whitener = _streaming.inverse_sqrt(scatter / total, "background covariance")

    def _fitted_state(self):
        state = super()._fitted_state()
        state.update(background_mean=self.background_mean,
                     background_whitener=self.background_whitener)
        return state

    def _set_fitted_state(self, arrays):
        super()._set_fitted_state(arrays)
        self.background_mean = arrays["background_mean"]
        self.background_whitener = arrays["background_whitener"]

    def score_tensor(self, features):
        """``MD_0(h) - min_k MD_k(h)`` of (batch, D) features, keras.ops only."""
        self._require_fitted("score_tensor")
        dtype = self._dtype(features)
        centred = ops.cast(features, dtype) - ops.convert_to_tensor(self.background_mean, dtype)
        background = ops.sum(ops.square(ops.matmul(
            centred, ops.convert_to_tensor(self.background_whitener, dtype))), axis=1)
        return background - ops.min(self._class_distances(features), axis=1)
