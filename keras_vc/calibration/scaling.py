"""Parametric calibrators: temperature, vector, matrix and Dirichlet scaling.

Each is a map into logit space, ``softmax(f(z))``, fitted by minimising the mean negative
log-likelihood on a held-out split, and exported with ``keras.ops`` (``transform_ops``):

* :class:`TemperatureScaling`: ``z / T`` (Guo et al., ICML 2017), searched by
  :func:`keras_vc.calibration.find_temperature`. The only one that keeps the argmax.
* :class:`VectorScaling`: ``w * z + b`` (Guo et al.), 2K parameters.
* :class:`MatrixScaling`: ``A z + c`` (Guo et al.), K^2 + K parameters; with ``reg_lambda`` /
  ``reg_mu`` > 0 it is MS-ODIR (Kull et al., NeurIPS 2019).
* :class:`DirichletCalibration`: ``W ln p + b`` with ``p = softmax(z)`` clipped at ``eps``
  (Kull et al., arXiv 1910.12656), with the ODIR penalty
  ``reg_lambda / (K (K - 1)) sum_{i != j} W_ij^2 + reg_mu / K sum_j b_j^2``.

The vector / matrix / Dirichlet fits use SciPy's L-BFGS-B with the analytic gradient, from the
identity map (``w = 1``, ``A = W = I``, ``b = 0``). Deviations from the references: Guo et al.'s
matrix scaling in Kull et al.'s Keras code starts from a Glorot initialisation and uses Adam;
the Dirichlet reference uses Newton steps for K <= 36. Both minimise the same objective. Without
regularisation, K^2 + K parameters overfit when n is not well above K^2: tune ``reg_lambda``
and ``reg_mu`` (Kull et al. use 5-fold cross-validation over
``reg_lambda in {0.25, 0.5, 1} * 10^i``, ``reg_mu in {10^i}``).
"""

import numpy as np

from keras_vc import _validation
from keras_vc.calibration import base
from keras_vc.calibration import temperature

_MAX_ITERATIONS = 2000


class TemperatureScaling(base.Calibrator):
    """``softmax(z / T)`` with ``T`` from :func:`~keras_vc.calibration.find_temperature`.

    Args:
        objective: ``"nll"`` (Guo et al., default) or ``"ece"``.
        bounds: search interval for ``T``.
        num_bins: bins of the ECE objective.

    Attributes:
        temperature: the fitted ``T``.
        result: the :class:`~keras_vc.calibration.TemperatureResult` (not saved).
    """

    export_note = "Exported as logits / T with keras.ops."

    def __init__(self, objective="nll", bounds=temperature.DEFAULT_BOUNDS, num_bins=15):
        super().__init__()
        self.objective = _validation.check_choice(objective, "objective", temperature.OBJECTIVES)
        self.bounds = tuple(float(b) for b in bounds)
        self.num_bins = _validation.check_int(num_bins, "num_bins", minimum=1)
        self.temperature = None
        self.result = None

    def _fit(self, logits, labels):
        self.result = temperature.find_temperature(logits, labels, objective=self.objective,
                                                   bounds=self.bounds, num_bins=self.num_bins)
        self.temperature = self.result.temperature

    def _transform(self, logits, xp):
        return logits / xp.cast(self.temperature, logits.dtype)

    def get_config(self):
        return {"objective": self.objective, "bounds": list(self.bounds),
                "num_bins": self.num_bins}

    def _fitted_arrays(self):
        return {"temperature": np.asarray(self.temperature)}

    def _load_arrays(self, arrays):
        self.temperature = float(arrays["temperature"])


class _LinearScaling(base.Calibrator):
    """``softmax(W x + b)`` on features ``x`` of the logits, fitted by penalised NLL."""

    diagonal = False
    export_note = "Exported as an affine map of the logits with keras.ops."

    def __init__(self, reg_lambda=0.0, reg_mu=0.0):
        super().__init__()
        self.reg_lambda = _validation.check_float(reg_lambda, "reg_lambda", minimum=0.0)
        self.reg_mu = _validation.check_float(reg_mu, "reg_mu", minimum=0.0)
        self.weights = None
        self.bias = None
        self.converged = None

    def _features(self, logits, xp):
        return logits

    def _transform(self, logits, xp):
        features = self._features(logits, xp)
        weights = xp.convert_to_tensor(self.weights, dtype=features.dtype)
        bias = xp.convert_to_tensor(self.bias, dtype=features.dtype)
        if self.diagonal:
            return features * weights + bias
        return xp.matmul(features, xp.transpose(weights)) + bias

    def _fit(self, logits, labels):
        from scipy import optimize

        features = self._features(logits, base._NUMPY)
        n, k = features.shape
        one_hot = np.eye(k)[labels]
        weight_shape = (k,) if self.diagonal else (k, k)
        weight_size = int(np.prod(weight_shape))
        off_diagonal = 1.0 - np.eye(k)
        lambda_scale = 0.0 if self.diagonal else self.reg_lambda / (k * (k - 1))
        mu_scale = self.reg_mu / k

        def objective(theta):
            weights = theta[:weight_size].reshape(weight_shape)
            bias = theta[weight_size:]
            z = features * weights + bias if self.diagonal else features @ weights.T + bias
            log_q = base.log_softmax(z, base._NUMPY)
            residual = (np.exp(log_q) - one_hot) / n
            value = -np.sum(one_hot * log_q) / n + mu_scale * np.sum(bias ** 2)
            grad_bias = residual.sum(axis=0) + 2 * mu_scale * bias
            if self.diagonal:
                grad_weights = np.sum(residual * features, axis=0)
            else:
                grad_weights = residual.T @ features
                value += lambda_scale * np.sum((weights * off_diagonal) ** 2)
                grad_weights = grad_weights + 2 * lambda_scale * weights * off_diagonal
            return value, np.concatenate([grad_weights.ravel(), grad_bias])

        start = np.ones(k) if self.diagonal else np.eye(k)
        theta0 = np.concatenate([start.ravel(), np.zeros(k)])
        solution = optimize.minimize(objective, theta0, jac=True, method="L-BFGS-B",
                                     options={"maxiter": _MAX_ITERATIONS, "gtol": 1e-9,
                                              "ftol": 1e-14})
        self.weights = solution.x[:weight_size].reshape(weight_shape)
        self.bias = solution.x[weight_size:]
        self.converged = bool(solution.success)

    def get_config(self):
        return {"reg_lambda": self.reg_lambda, "reg_mu": self.reg_mu}

    def _fitted_arrays(self):
        return {"weights": self.weights, "bias": self.bias}

    def _load_arrays(self, arrays):
        self.weights = np.asarray(arrays["weights"], dtype=np.float64)
        self.bias = np.asarray(arrays["bias"], dtype=np.float64)


class VectorScaling(_LinearScaling):
    """``softmax(w * z + b)``: one scale and one bias per class (Guo et al., ICML 2017).

    Args:
        reg_mu: optional L2 penalty ``reg_mu / K * sum b^2`` on the biases (default 0).
    """

    diagonal = True

    def __init__(self, reg_mu=0.0):
        super().__init__(reg_lambda=0.0, reg_mu=reg_mu)

    def get_config(self):
        return {"reg_mu": self.reg_mu}


class MatrixScaling(_LinearScaling):
    """``softmax(A z + c)`` (Guo et al., ICML 2017); MS-ODIR with ``reg_lambda, reg_mu > 0``.

    Args:
        reg_lambda: ODIR penalty on the off-diagonal entries of ``A`` (default 0).
        reg_mu: ODIR penalty on ``c`` (default 0).
    """


class DirichletCalibration(_LinearScaling):
    """Dirichlet calibration ``softmax(W ln p + b)`` with the ODIR penalty (Kull et al. 2019).

    Args:
        reg_lambda: ODIR penalty on the off-diagonal entries of ``W`` (default 0, the reference
            package's default: tune it, see the module docstring).
        reg_mu: ODIR penalty on ``b`` (default 0).
        eps: probabilities are clipped to ``[eps, 1]`` before the log (the reference uses
            machine epsilon, 2.2e-16).
    """

    def __init__(self, reg_lambda=0.0, reg_mu=0.0, eps=float(np.finfo(np.float64).eps)):
        super().__init__(reg_lambda=reg_lambda, reg_mu=reg_mu)
        self.eps = _validation.check_float(eps, "eps", minimum=0.0, maximum=0.5,
                                           strict_minimum=True)

    def _features(self, logits, xp):
        log_probs = base.log_softmax(logits, xp)
        return xp.maximum(log_probs, xp.cast(np.log(self.eps), log_probs.dtype))

    def get_config(self):
        return {"reg_lambda": self.reg_lambda, "reg_mu": self.reg_mu, "eps": self.eps}
