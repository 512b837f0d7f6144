"""Post-hoc out-of-distribution detectors for any trained Keras classifier.

Every detector has the same interface (higher score = more in-distribution)::

    det = keras_vc.detectors.Mahalanobis(model)          # layer=None: the input of the head
    det.fit(x_train, y_train)                            # one streaming pass, inference mode
    scores = det.score(x_test)                           # NumPy (n,)
    det.fit_features(features, labels); det.score_features(features)
    det.save("mahalanobis.npz"); keras_vc.detectors.Mahalanobis.load("mahalanobis.npz", model)

``score_tensor`` maps a features (or logits) tensor to scores with keras.ops only, the fitted
statistics as constants; ``score_input`` says which tensor it takes (``prepare_tensor`` maps the
raw layer output or model output to it) and ``exportable`` whether that reproduces ``score``
(ODIN and Mahalanobis with ``epsilon > 0`` perturb the inputs and are not exportable).

Logit-based: ``MaxSoftmax`` ("msp"), ``MaxLogit`` ("max_logit"), ``Energy`` ("energy"), ``GEN``
("gen"), ``ODIN`` ("odin"), ``HeadScore`` ("head", the head's recommended score). Feature-based:
``Mahalanobis`` ("mahalanobis"), ``RelativeMahalanobis`` ("rmds"), ``KNN`` ("knn"); on the final
Dense layer: ``ViM`` ("vim"), ``ReAct`` ("react").
"""

from keras_vc.detectors._model import ScoreInput
from keras_vc.detectors._model import dense_head_weights
from keras_vc.detectors._model import feature_model
from keras_vc.detectors.base import Detector
from keras_vc.detectors.gaussian import Mahalanobis
from keras_vc.detectors.gaussian import RelativeMahalanobis
from keras_vc.detectors.knn import KNN
from keras_vc.detectors.linear_head import ReAct
from keras_vc.detectors.linear_head import ViM
from keras_vc.detectors.logit import GEN
from keras_vc.detectors.logit import Energy
from keras_vc.detectors.logit import HeadScore
from keras_vc.detectors.logit import MaxLogit
from keras_vc.detectors.logit import MaxSoftmax
from keras_vc.detectors.odin import ODIN

DETECTORS = {
    "msp": MaxSoftmax,
    "max_logit": MaxLogit,
    "energy": Energy,
    "gen": GEN,
    "odin": ODIN,
    "head": HeadScore,
    "mahalanobis": Mahalanobis,
    "rmds": RelativeMahalanobis,
    "knn": KNN,
    "vim": ViM,
    "react": ReAct,
}


def get(name, model=None, **kwargs):
    """Builds the detector registered under ``name`` (see ``DETECTORS``) on ``model``.

    Raises:
        ValueError: an unknown name.
    """
    if not isinstance(name, str) or name not in DETECTORS:
        raise ValueError(f"Unknown detector {name!r}; expected one of {sorted(DETECTORS)}.")
    return DETECTORS[name](model, **kwargs)


__all__ = ["DETECTORS", "Detector", "ScoreInput", "get"] + sorted(
    cls.__name__ for cls in DETECTORS.values())
