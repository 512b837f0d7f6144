"""Split-conformal prediction sets for classifiers, from predicted probabilities.

Procedure (Vovk et al. 2005; Angelopoulos & Bates, "A Gentle Introduction to Conformal
Prediction", arXiv 2107.07511): on ``n`` calibration points with scores ``s_i = s(x_i, y_i)``,
``qhat`` is the ``k``-th smallest score, ``k = ceil((n + 1)(1 - alpha))``, and ``qhat = +inf``
when ``k > n`` (fewer than ``ceil(1/alpha - 1)`` points: every set is the full label set). The
set of a new input is ``{y : s(x, y) <= qhat}``. If calibration and test points are
exchangeable, ``P(y in C(x)) >= 1 - alpha``, and ``<= 1 - alpha + 1/(n + 1)`` when the scores
have no ties (randomised APS / RAPS, or continuous probabilities).

The exact order statistic is used: ``np.quantile(s, k / n, method="higher")``, a common idiom,
returns the ``(k+1)``-th order statistic whenever ``k < n`` (one step too conservative).
"""

import math
import warnings

import numpy as np

from keras_vc import _persistence
from keras_vc import _validation
from keras_vc.calibration import base
from keras_vc.conformal import scores as scores_lib

# The RAPS reference implementation's defaults (Angelopoulos et al. 2021, their ImageNet example).
DEFAULT_K_REG = 5
DEFAULT_LAM = 0.01
LAM_GRID = (0.001, 0.01, 0.1, 0.2, 0.5)
_CALIBRATION_STREAM, _PREDICTION_STREAM = 0, 1


def _check_alpha(alpha):
    alpha = _validation.check_float(alpha, "alpha")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"`alpha` must lie in (0, 1) (the miscoverage rate), got {alpha}.")
    return alpha


def conformal_rank(n, alpha):
    """``k = ceil((n + 1)(1 - alpha))``, robust to the rounding of ``(n + 1)(1 - alpha)``."""
    return int(math.ceil(round((n + 1) * (1.0 - alpha), 9)))


def min_calibration_size(alpha):
    """The fewest calibration points with a finite ``qhat``: ``ceil(1/alpha - 1)``."""
    return int(math.ceil(round(1.0 / alpha - 1.0, 9)))


class SplitConformal(_persistence.Persistable):
    """Split-conformal prediction sets with the LAC, APS or RAPS score.

    Args:
        score: ``"lac"``, ``"aps"`` or ``"raps"`` (see :mod:`keras_vc.conformal.scores`).
        alpha: target miscoverage in (0, 1); sets contain the label with probability
            ``>= 1 - alpha``.
        seed: non-negative integer seeding the uniform draws of the randomised scores. The
            calibration draws and the prediction draws are two fixed streams of this seed, so
            ``predict`` is a pure function of the fitted state and its input.
        randomized: use the randomised APS / RAPS score (the papers' default; exact coverage
            without ties). The same score is used for calibration and prediction, so the
            guarantee holds for the sets returned. Deviation from the RAPS reference code,
            which always calibrates randomised and with ``randomized=False`` predicts sets that
            also keep the label crossing ``qhat``. Ignored by ``"lac"`` (deterministic).
        k_reg: RAPS: 1-based rank from which labels are penalised (default 5).
        lam: RAPS: penalty per rank beyond ``k_reg`` (``lambda``, default 0.01). Defaults of the
            RAPS reference code; pick both on a separate tuning split with :func:`tune_raps`.

    Attributes:
        qhat: the fitted threshold (float, ``inf`` when the calibration set is too small).
        num_classes: K seen by ``fit``.
        num_calibration: n seen by ``fit``.

    Example:
        >>> cp = SplitConformal(score="aps", alpha=0.1, seed=0).fit(probs_cal, y_cal)
        >>> sets = cp.predict(probs_test)          # (m, K) bool
    """

    def __init__(self, score="aps", alpha=0.1, seed=0, randomized=True, k_reg=DEFAULT_K_REG,
                 lam=DEFAULT_LAM):
        self.score = _validation.check_choice(score, "score", scores_lib.SCORES)
        self.alpha = _check_alpha(alpha)
        self.seed = _validation.check_int(seed, "seed", minimum=0)
        if not isinstance(randomized, bool):
            raise ValueError(f"`randomized` must be True or False, got {randomized!r}.")
        self.randomized = randomized
        self.k_reg = _validation.check_int(k_reg, "k_reg", minimum=0)
        self.lam = _validation.check_float(lam, "lam", minimum=0.0)
        self.qhat = None
        self.num_classes = None
        self.num_calibration = None

    @property
    def uses_uniform(self):
        """Whether sets depend on a uniform draw per input (randomised APS / RAPS)."""
        return self.randomized and self.score != "lac"

    def _uniform(self, size, stream):
        if not self.uses_uniform:
            return None
        return np.random.default_rng([self.seed, stream]).random(size)

    def _scores(self, probs, uniform):
        return scores_lib.label_scores(probs, self.score, uniform=uniform, k_reg=self.k_reg,
                                       lam=self.lam)

    def fit(self, probs, labels):
        """Sets ``qhat`` from calibration probabilities (n, K) and labels (n,).

        The calibration split must be disjoint from the data that trained, calibrated or tuned
        the model (a warning is raised when the labels equal those a keras_vc calibrator or
        :func:`tune_raps` was fitted on).

        Returns:
            self.

        Raises:
            ValueError: on rows that are not probability distributions (or contain NaN),
                labels out of range, or a length mismatch.

        Warns:
            UserWarning: if ``n < ceil(1/alpha - 1)`` (then ``qhat = inf``).
        """
        probs = _validation.check_probabilities(probs, "probs")
        labels = _validation.check_labels(labels, probs.shape[1], num_samples=probs.shape[0])
        base.warn_if_already_fitted_on(labels, type(self).__name__)
        n = probs.shape[0]
        uniform = self._uniform(n, _CALIBRATION_STREAM)
        calibration_scores = self._scores(probs, uniform)[np.arange(n), labels]
        k = conformal_rank(n, self.alpha)
        if k > n:
            warnings.warn(
                f"alpha={self.alpha} needs at least {min_calibration_size(self.alpha)} "
                f"calibration samples for a finite threshold, got {n}: qhat is infinite and "
                "every prediction set is the full label set.", UserWarning, stacklevel=2)
            self.qhat = float("inf")
        else:
            self.qhat = float(np.partition(calibration_scores, k - 1)[k - 1])
        self.num_classes = int(probs.shape[1])
        self.num_calibration = int(n)
        return self

    def _check_uniform(self, uniform, size):
        uniform = _validation.check_finite_array(uniform, "uniform", ndim=1)
        if uniform.shape[0] != size or uniform.min() < 0 or uniform.max() > 1:
            raise ValueError(f"`uniform` must hold {size} values in [0, 1], got shape "
                             f"{uniform.shape} and range [{uniform.min()}, {uniform.max()}].")
        return uniform

    def predict(self, probs, uniform=None):
        """Prediction sets: a (m, K) boolean mask, ``True`` where the label is in the set.

        Args:
            probs: (m, K) probabilities of the test inputs.
            uniform: optional (m,) draws in [0, 1] for the randomised scores; by default the
                prediction stream of ``seed`` (reproducible). Ignored when not randomised.

        Raises:
            ValueError: before ``fit``, on invalid probabilities, or on a different K.
        """
        base.check_fitted(self, "qhat")
        probs = _validation.check_probabilities(probs, "probs")
        base.check_num_classes(probs, self.num_classes, "probs")
        if self.uses_uniform:
            if uniform is None:
                uniform = self._uniform(probs.shape[0], _PREDICTION_STREAM)
            uniform = self._check_uniform(uniform, probs.shape[0])
        return self._scores(probs, uniform if self.uses_uniform else None) <= self.qhat

    def predict_mask_ops(self, probs, uniform=None):
        """:meth:`predict` on a (batch, K) probabilities tensor with ``keras.ops`` only.

        For serving exports. The computation runs in the tensor's dtype (float32 sums can put a
        label that lies within ~1e-7 of ``qhat`` on the other side than the float64
        :meth:`predict`).

        Args:
            probs: (batch, K) probabilities tensor.
            uniform: (batch,) tensor of Uniform(0, 1) draws, required when ``uses_uniform``
                (e.g. ``keras.random.uniform((batch,), seed=...)`` in the serving function);
                dropping the draw would shrink the sets and break the coverage guarantee.

        Returns:
            A boolean (batch, K) tensor.
        """
        base.check_fitted(self, "qhat")
        base.check_num_classes(probs, self.num_classes, "probs")
        if self.uses_uniform and uniform is None:
            raise ValueError("`uniform` is required: this predictor uses randomised scores; "
                             "pass (batch,) Uniform(0, 1) draws.")
        from keras import ops

        probs = ops.convert_to_tensor(probs)
        scores = self._scores(probs, uniform if self.uses_uniform else None)
        return ops.less_equal(scores, ops.cast(self.qhat, scores.dtype))

    def get_config(self):
        return {"score": self.score, "alpha": self.alpha, "seed": self.seed,
                "randomized": self.randomized, "k_reg": self.k_reg, "lam": self.lam}

    def _get_state(self):
        if self.qhat is None:
            return {}
        return {"qhat": np.asarray(self.qhat), "num_classes": np.asarray(self.num_classes),
                "num_calibration": np.asarray(self.num_calibration)}

    def _set_state(self, arrays):
        self.qhat = float(arrays["qhat"])
        self.num_classes = int(arrays["num_classes"])
        self.num_calibration = int(arrays["num_calibration"])


def tune_raps(probs, labels, alpha=0.1, lam_grid=LAM_GRID, seed=0, randomized=True):
    """Picks RAPS's ``k_reg`` and ``lam`` on a tuning split, as Angelopoulos et al. (2021) do.

    ``k_reg = 1 + q``, ``q`` the ``(1 - alpha)`` quantile ("higher") of the 0-based rank of
    the true label; ``lam`` minimises the mean set size of a RAPS predictor calibrated and
    evaluated on the tuning split (the paper's "size" criterion and grid). Use a tuning split
    disjoint from the calibration split that sets ``qhat`` (the reference holds out 30% of the
    calibration data); fitting :class:`SplitConformal` on the same labels warns.

    Args:
        probs: (n, K) tuning probabilities.
        labels: (n,) tuning labels.
        alpha: target miscoverage in (0, 1).
        lam_grid: candidate penalties (non-negative).
        seed: seed of the randomised scores.
        randomized: as in :class:`SplitConformal`.

    Returns:
        ``(k_reg, lam)``.
    """
    alpha = _check_alpha(alpha)
    probs = _validation.check_probabilities(probs, "probs")
    labels = _validation.check_labels(labels, probs.shape[1], num_samples=probs.shape[0])
    lam_grid = _validation.check_finite_array(lam_grid, "lam_grid", ndim=1)
    if lam_grid.min() < 0:
        raise ValueError(f"`lam_grid` must hold non-negative penalties, got {lam_grid}.")
    zero_based_ranks = scores_lib.true_label_ranks(probs, labels) - 1
    k_reg = 1 + int(np.quantile(zero_based_ranks, 1.0 - alpha, method="higher"))
    best_lam, best_size = None, np.inf
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        for lam in lam_grid:
            predictor = SplitConformal("raps", alpha=alpha, seed=seed, randomized=randomized,
                                       k_reg=k_reg, lam=float(lam)).fit(probs, labels)
            size = predictor.predict(probs).sum(axis=1).mean()
            if size < best_size:
                best_lam, best_size = float(lam), size
    base.record_fit(labels, "tune_raps")
    return k_reg, best_lam
