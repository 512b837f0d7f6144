"""Model wrappers that change how a classifier is trained (the classifier's output is kept)."""

from keras_vc.models.entanglement_model import EntanglementModel  # noqa: F401
