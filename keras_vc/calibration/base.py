"""The post-hoc calibrator interface, and the record of which label arrays fitted what.

Every calibrator maps **logits** (n, K) to calibrated probabilities:

* ``fit(logits, labels)`` on a held-out calibration split (never the training or test split);
* ``predict_proba(logits)``: NumPy probabilities (float64);
* ``transform(logits)``: calibrated logits, for calibrators that are a map into logit space
  (``outputs_logits = True``: the scaling family); the binning family has none;
* ``predict_proba_ops(logits)`` / ``transform_ops(logits)``: the same map on a backend tensor,
  written with ``keras.ops`` only, for serving exports. ``exportable`` and ``export_note`` say
  whether and how the map can be exported;
* ``save(path)`` / ``Cls.load(path)``: the fitted state without the data.

Split hygiene: fits record a fingerprint (a hash) of their label array, so that a conformal
predictor calibrated on the very split a calibrator or a RAPS tuning run was fitted on can warn
(:func:`warn_if_already_fitted_on`). Equal label arrays of at least ``MIN_FINGERPRINT_SIZE``
entries are taken as the same split; shorter ones are not recorded (chance collisions).
"""

import collections
import hashlib
import warnings

import numpy as np

from keras_vc import _persistence
from keras_vc import _validation
from keras_vc.calibration import temperature
from keras_vc.metrics import _binning

MIN_FINGERPRINT_SIZE = 20
_MAX_RECORDS = 64
_FITTED_ON = collections.OrderedDict()


def _fingerprint(labels):
    data = np.ascontiguousarray(labels, dtype=np.int64)
    return hashlib.blake2b(data.tobytes(), digest_size=16).hexdigest()


def record_fit(labels, fitted):
    """Remembers that ``fitted`` (a name) was fitted on ``labels`` (integer array)."""
    if labels.size < MIN_FINGERPRINT_SIZE:
        return
    key = _fingerprint(labels)
    _FITTED_ON[key] = fitted
    _FITTED_ON.move_to_end(key)
    while len(_FITTED_ON) > _MAX_RECORDS:
        _FITTED_ON.popitem(last=False)


def warn_if_already_fitted_on(labels, user):
    """Warns when ``labels`` equal those a calibrator or tuning run was fitted on.

    Returns:
        The name of the earlier fit, or None.
    """
    if labels.size < MIN_FINGERPRINT_SIZE:
        return None
    fitted = _FITTED_ON.get(_fingerprint(labels))
    if fitted is not None:
        warnings.warn(
            f"{user} is being fitted on the same labels ({labels.size} samples) that {fitted} "
            "was fitted on. The coverage guarantee needs a calibration split disjoint from "
            "the data used to train, calibrate or tune; split the held-out data.",
            UserWarning, stacklevel=3)
    return fitted


def check_fitted(obj, attribute):
    """Raises ``ValueError`` when ``obj.<attribute>`` is still None (``fit`` not called)."""
    if getattr(obj, attribute) is None:
        raise ValueError(f"This {type(obj).__name__} is not fitted: call `fit` first.")


def check_num_classes(array, expected, name):
    """Raises ``ValueError`` when ``array`` has not ``expected`` columns."""
    if array.shape[-1] != expected:
        raise ValueError(f"`{name}` has {array.shape[-1]} classes (columns) but the "
                         f"calibration data had {expected}.")


class Calibrator(_persistence.Persistable):
    """Base class: validation, fingerprinting and the NumPy / keras.ops entry points.

    Subclasses implement ``_fit(logits, labels)``, ``_predict_proba(logits, xp)`` (``xp`` is
    the NumPy or the keras.ops namespace), and, when ``outputs_logits``, ``_transform``.

    Attributes:
        exportable: whether ``predict_proba_ops`` works on backend tensors.
        outputs_logits: whether the calibrator is a map into logit space (``transform``).
        export_note: how the map is exported, or why it cannot be.
    """

    exportable = True
    outputs_logits = True
    export_note = ""

    def __init__(self):
        self.num_classes = None

    def fit(self, logits, labels):
        """Fits the calibrator on held-out logits (n, K) and integer labels (n,).

        Returns:
            self.

        Raises:
            ValueError: on non-finite logits, fewer than 2 classes, or labels out of range.
        """
        logits = _validation.check_finite_array(logits, "logits", ndim=2)
        if logits.shape[1] < 2:
            raise ValueError(f"`logits` must have at least 2 classes, got shape {logits.shape}.")
        labels = _validation.check_labels(labels, logits.shape[1], num_samples=logits.shape[0])
        self._fit(logits, labels)
        self.num_classes = int(logits.shape[1])
        record_fit(labels, type(self).__name__)
        return self

    def _checked_logits(self, logits):
        check_fitted(self, "num_classes")
        logits = _validation.check_finite_array(logits, "logits", ndim=2)
        check_num_classes(logits, self.num_classes, "logits")
        return logits

    def predict_proba(self, logits):
        """Calibrated probabilities (n, K), float64 NumPy."""
        return self._predict_proba(self._checked_logits(logits), _NUMPY)

    def transform(self, logits):
        """Calibrated logits (n, K): ``softmax(transform(z)) == predict_proba(z)``.

        Raises:
            ValueError: for calibrators that are not a map into logit space.
        """
        if not self.outputs_logits:
            raise ValueError(f"{type(self).__name__} outputs probabilities, not logits: use "
                             "`predict_proba`.")
        return self._transform(self._checked_logits(logits), _NUMPY)

    def predict_proba_ops(self, logits):
        """``predict_proba`` on a (batch, K) backend tensor with keras.ops only (for export)."""
        check_fitted(self, "num_classes")
        check_num_classes(logits, self.num_classes, "logits")
        from keras import ops

        return self._predict_proba(ops.convert_to_tensor(logits), ops)

    def transform_ops(self, logits):
        """``transform`` on a (batch, K) backend tensor with keras.ops only (for export)."""
        if not self.outputs_logits:
            raise ValueError(f"{type(self).__name__} outputs probabilities, not logits: use "
                             "`predict_proba_ops`.")
        check_fitted(self, "num_classes")
        check_num_classes(logits, self.num_classes, "logits")
        from keras import ops

        return self._transform(ops.convert_to_tensor(logits), ops)

    def _predict_proba(self, logits, xp):
        calibrated = self._transform(logits, xp)
        if xp is _NUMPY:
            return temperature.softmax(calibrated)
        return xp.softmax(calibrated, axis=-1)

    def _get_state(self):
        if self.num_classes is None:
            return {}
        state = self._fitted_arrays()
        state["num_classes"] = np.asarray(self.num_classes)
        return state

    def _set_state(self, arrays):
        self.num_classes = int(arrays["num_classes"])
        self._load_arrays(arrays)


# The NumPy stand-in for keras.ops shared with the ECE binning: ``xp is _NUMPY`` selects the
# float64 NumPy path.
_NUMPY = _binning._NumpyOps()


def log_softmax(z, xp):
    """``z - logsumexp(z)`` along the last axis in either namespace."""
    shifted = z - xp.max(z, axis=-1, keepdims=True)
    return shifted - xp.log(xp.sum(xp.exp(shifted), axis=-1, keepdims=True))
