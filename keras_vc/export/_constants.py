"""The names of the exported signatures, their inputs and their outputs."""

INPUT_NAME = "inputs"
"""Name of the single input tensor of every exported signature."""

DEFAULT_SIGNATURE = "serving_default"
ENDPOINT = "serve"
MC_SIGNATURE = "serve_mc"
OUTPUT_KINDS = ("auto", "logits", "probabilities")
BASE_OUTPUTS = ("probabilities", "predicted_class", "confidence", "entropy")
CONFORMAL_OUTPUTS = ("prediction_set", "set_size")
