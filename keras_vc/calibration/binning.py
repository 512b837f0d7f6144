"""Non-parametric calibrators: one-vs-rest histogram binning and isotonic regression.

Both calibrate each class's probability ``p_k = softmax(z)_k`` separately against ``1[y = k]``
(one-vs-rest, Zadrozny & Elkan, ICML 2001 / KDD 2002), then divide each row by its sum; a row
whose calibrated values are all 0 becomes uniform ``1/K`` (scikit-learn's rule). They output
probabilities only (no logits: ``transform`` raises) and can change the argmax.

Export: both are exported with ``keras.ops`` (``predict_proba_ops``). Histogram binning is a
bin index (the shared equal-width binning of :mod:`keras_vc.metrics._binning`) and a gather.
Isotonic regression is piecewise linear between its fitted knots; it is exported as one
``searchsorted`` + linear interpolation per class, so the serving graph grows with K (fine for
tens to hundreds of classes).
"""

import numpy as np

from keras_vc import _validation
from keras_vc.calibration import base
from keras_vc.calibration import temperature
from keras_vc.metrics import _binning


def _probabilities(logits, xp):
    if xp is base._NUMPY:
        return temperature.softmax(logits)
    return xp.softmax(logits, axis=-1)


def _renormalise(values, xp):
    """Rows divided by their sum; all-zero rows become uniform."""
    sums = xp.sum(values, axis=-1, keepdims=True)
    num_classes = values.shape[-1]
    uniform = xp.ones_like(values) / num_classes
    safe = xp.where(sums > 0, sums, xp.ones_like(sums))
    return xp.where(sums > 0, values / safe, uniform)


class HistogramBinning(base.Calibrator):
    """One-vs-rest histogram binning (Zadrozny & Elkan, ICML 2001).

    Per class ``k``, ``p_k`` falls in one of ``num_bins`` equal-width bins ``(lo, hi]`` (the
    ECE's bins); the calibrated value is the frequency of ``y = k`` among the calibration points
    of that bin. An empty bin returns its midpoint (netcal's rule; Kull et al.'s code returns 0).

    Args:
        num_bins: bins per class (default 15). Each bin needs enough points (about 50) for a
            stable frequency: with few calibration points use fewer bins.

    Attributes:
        bin_values: (K, num_bins) calibrated value of each class's bins.
    """

    outputs_logits = False
    export_note = ("Exported with keras.ops: the shared equal-width bin index of each "
                   "probability and a gather of the fitted bin values.")

    def __init__(self, num_bins=15):
        super().__init__()
        self.num_bins = _validation.check_int(num_bins, "num_bins", minimum=1)
        self.bin_values = None

    def _fit(self, logits, labels):
        probs = temperature.softmax(logits)
        index = _binning.equal_width_bin_index(probs, self.num_bins)
        edges = np.linspace(0.0, 1.0, self.num_bins + 1)
        midpoints = (edges[:-1] + edges[1:]) / 2
        values = np.empty((probs.shape[1], self.num_bins))
        for k in range(probs.shape[1]):
            counts, _, hits = _binning.bin_sums(index[:, k], probs[:, k],
                                                (labels == k).astype(np.float64), self.num_bins)
            values[k] = np.where(counts > 0, hits / np.maximum(counts, 1), midpoints)
        self.bin_values = values

    def _predict_proba(self, logits, xp):
        probs = _probabilities(logits, xp)
        index = _binning.equal_width_bin_index(probs, self.num_bins)
        num_classes = self.bin_values.shape[0]
        class_offsets = xp.convert_to_tensor(np.arange(num_classes) * self.num_bins,
                                             dtype="int32")
        flat_index = xp.cast(index, "int32") + class_offsets
        table = xp.convert_to_tensor(self.bin_values.ravel(), dtype=probs.dtype)
        return _renormalise(xp.take(table, flat_index), xp)

    def get_config(self):
        return {"num_bins": self.num_bins}

    def _fitted_arrays(self):
        return {"bin_values": self.bin_values}

    def _load_arrays(self, arrays):
        self.bin_values = np.asarray(arrays["bin_values"], dtype=np.float64)


class IsotonicCalibration(base.Calibrator):
    """One-vs-rest isotonic regression, then renormalised (Zadrozny & Elkan, KDD 2002).

    Per class, scikit-learn's ``IsotonicRegression(y_min=0, y_max=1, increasing=True,
    out_of_bounds="clip")`` on ``(p_k, 1[y = k])``, as netcal and scikit-learn's
    ``CalibratedClassifierCV(method="isotonic")`` do. scikit-learn advises against isotonic
    calibration with much fewer than 1000 calibration points (it overfits).

    Attributes:
        knots: list of K pairs ``(x, y)`` of the fitted piecewise-linear map of each class.
    """

    outputs_logits = False
    export_note = ("Exported with keras.ops: per class, clip to the knot range, searchsorted and "
                   "linear interpolation between knots (K small graphs).")

    def __init__(self):
        super().__init__()
        self.knots = None

    def _fit(self, logits, labels):
        from sklearn.isotonic import IsotonicRegression

        probs = temperature.softmax(logits)
        knots = []
        for k in range(probs.shape[1]):
            regression = IsotonicRegression(y_min=0.0, y_max=1.0, increasing=True,
                                            out_of_bounds="clip")
            regression.fit(probs[:, k], (labels == k).astype(np.float64))
            knots.append((np.asarray(regression.X_thresholds_, dtype=np.float64),
                          np.asarray(regression.y_thresholds_, dtype=np.float64)))
        self.knots = knots

    @staticmethod
    def _interpolate(x, knots_x, knots_y, xp):
        if xp is base._NUMPY:
            return np.interp(x, knots_x, knots_y)  # constant beyond the ends = clipping
        if knots_x.size == 1:
            return xp.ones_like(x) * knots_y[0]
        x = xp.clip(x, knots_x[0], knots_x[-1])
        grid_x = xp.convert_to_tensor(knots_x, dtype=x.dtype)
        grid_y = xp.convert_to_tensor(knots_y, dtype=x.dtype)
        upper = xp.clip(xp.searchsorted(grid_x, x, side="right"), 1, knots_x.size - 1)
        x0, x1 = xp.take(grid_x, upper - 1), xp.take(grid_x, upper)
        y0, y1 = xp.take(grid_y, upper - 1), xp.take(grid_y, upper)
        return y0 + (x - x0) / (x1 - x0) * (y1 - y0)

    def _predict_proba(self, logits, xp):
        probs = _probabilities(logits, xp)
        columns = [self._interpolate(probs[:, k], knots_x, knots_y, xp)
                   for k, (knots_x, knots_y) in enumerate(self.knots)]
        return _renormalise(xp.stack(columns, axis=-1), xp)

    def get_config(self):
        return {}

    def _fitted_arrays(self):
        sizes = np.array([x.size for x, _ in self.knots])
        return {"knots_x": np.concatenate([x for x, _ in self.knots]),
                "knots_y": np.concatenate([y for _, y in self.knots]),
                "knot_counts": sizes}

    def _load_arrays(self, arrays):
        ends = np.cumsum(arrays["knot_counts"])
        starts = ends - arrays["knot_counts"]
        self.knots = [(np.asarray(arrays["knots_x"][a:b], dtype=np.float64),
                       np.asarray(arrays["knots_y"][a:b], dtype=np.float64))
                      for a, b in zip(starts, ends)]
