# Source of tutorials/07_posthoc_detectors.ipynb, written by tutorials/build_notebooks.py.

# %% [markdown]
# # Out-of-distribution detection for a classifier you already have
#
# Your classifier is trained, validated and perhaps already in production. It answers every
# input with a class, including inputs unlike anything it saw in training. Retraining it with an
# uncertainty-aware head (tutorials 02 to 04) is one fix; this notebook shows the other:
# **post-hoc detectors**, fitted on the training data in one pass through the frozen model,
# without touching a weight.
#
# We fit seven of them from `keras_vc.detectors`, compare them on held-out in-distribution and
# out-of-distribution (OOD) inputs, pick one **on validation data**, save and reload it, choose
# its threshold, and export it inside a TensorFlow Serving model, so that every prediction comes
# with an `is_ood` flag computed by the server, which needs neither keras_vc nor Keras.

# %%
# Installs keras_vc in Colab (elsewhere it must already be installed). The tested versions
# (TensorFlow 2.21, Keras 3.15, TensorFlow Probability 0.25) are pinned in the repository's
# constraints.txt.
import sys

if "google.colab" in sys.modules:
    %pip install -q keras-vc

# %%
import logging
import os
import tempfile

import keras
import numpy as np
import tensorflow as tf

import keras_vc
from keras_vc import detectors
from keras_vc import metrics
from keras_vc.data.tutorial import load_tutorial_data

logging.getLogger("tensorflow").setLevel(logging.ERROR)  # no retracing notices
# The test suite runs every tutorial at tiny settings; in Colab this is False.
FAST = os.environ.get("KERAS_VC_TUTORIAL_FAST") == "1"
EPOCHS = 4 if FAST else 8
keras.utils.set_random_seed(0)

# %% [markdown]
# ## The data
#
# In Colab: Fashion-MNIST in-distribution, MNIST digits as the OOD inputs (CIFAR-10 / CIFAR-100
# on a GPU runtime). Where nothing can be downloaded, or with `KERAS_VC_OFFLINE=1`: the 8x8
# handwritten digits that ship with the package, with patches of photographs as OOD inputs.
# **The next cell says which one you got**; every number below depends on it.

# %%
data = load_tutorial_data(max_train=600 if FAST else 20000, max_eval=300 if FAST else 5000)
data

# %% [markdown]
# ## The classifier you were given
#
# To stand in for your model we train a small one here, save it, and from then on use only the
# reloaded file, as you would with a model someone handed you. It is an ordinary classifier:
# a `Dense` layer outputs the logits, and the layer before it, named `penultimate`, gives the
# features the feature-based detectors read.

# %%
model = keras.Sequential([
    keras.Input(data.input_shape),
    keras.layers.Conv2D(32, 3, padding="same", activation="relu"),
    keras.layers.MaxPooling2D(),
    keras.layers.Flatten(),
    keras.layers.Dense(64, activation="relu", name="penultimate"),
    keras.layers.Dense(data.num_classes, name="logits"),
])
model.compile(optimizer="adam",
              loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
              metrics=["accuracy"])
model.fit(data.x_train, data.y_train, epochs=EPOCHS, batch_size=64, verbose=0)
model_path = os.path.join(tempfile.mkdtemp(), "classifier.keras")
model.save(model_path)

# From here on: the given model. Nothing below changes its weights.
model = keras.models.load_model(model_path)
_, test_accuracy = model.evaluate(data.x_test, data.y_test, verbose=0)
print(f"test accuracy of the given model: {test_accuracy:.3f}")

# %% [markdown]
# ## Seven detectors, one interface
#
# Every detector is built on the model, fitted on the **training** inputs (labels where the
# method needs them) and returns a score per input, **higher = more in-distribution**:
#
# | detector | reads | fitted statistics |
# |---|---|---|
# | `MaxSoftmax` (MSP) | logits | none: the largest softmax probability |
# | `Energy` | logits | none: `logsumexp` of the logits |
# | `Mahalanobis` | features (default: the head input, `penultimate`) | class means, covariance |
# | `RelativeMahalanobis` (RMDS) | features | the same, minus a class-agnostic Gaussian |
# | `KNN` | features | the normalised training features (distance to the k-th nearest) |
# | `ViM` | features + the final `Dense` weights | the principal subspace of the features |
# | `ReAct` | features + the final `Dense` weights | a clip value for the activations |
#
# Fitting is one streaming pass in inference mode; nothing is trained. The docstring of each
# class gives the formula and the paper.

# %%
candidates = {
    "msp": detectors.MaxSoftmax(model),
    "energy": detectors.Energy(model),
    "mahalanobis": detectors.Mahalanobis(model),
    "rmds": detectors.RelativeMahalanobis(model),
    "knn": detectors.KNN(model, k=10 if FAST else 50),  # k grows with the training set
    "vim": detectors.ViM(model),
    "react": detectors.ReAct(model),
}
for name, detector in candidates.items():
    detector.fit(data.x_train, data.y_train if detector.needs_labels else None)
print("fitted:", ", ".join(candidates))

# %% [markdown]
# ## Choose on validation data, report on test data
#
# A detector is chosen by comparing AUROC (the probability that a random in-distribution input
# scores above a random OOD one; 0.5 = chance) and FPR@95 (the share of OOD inputs still
# accepted when 95% of in-distribution inputs are accepted; lower is better). Picking the best
# of seven **on the test set** would make its test numbers optimistic: some of its lead over the
# others is luck on those particular inputs, and choosing the maximum keeps that luck. So we
# split the OOD inputs in two halves, compare on the in-distribution validation split against
# the first half, and keep the test split and the second half untouched until the choice is
# made. (In production, the validation OOD inputs would be a few examples of the traffic you
# want flagged.)

# %%
rng = np.random.default_rng(0)
order = rng.permutation(len(data.x_ood))
x_ood_val, x_ood_test = data.x_ood[order[: len(order) // 2]], data.x_ood[order[len(order) // 2:]]


def compare(x_in, x_out):
    rows = {}
    for name, detector in candidates.items():
        report = metrics.ood_metrics(detector.score(x_in), detector.score(x_out))
        rows[name] = (report["auroc"], report["fpr_at_95_tpr"])
    return rows


validation = compare(data.x_val, x_ood_val)
print(f"{'validation':<12} {'AUROC':>7} {'FPR@95':>7}")
for name, (auroc, fpr) in sorted(validation.items(), key=lambda item: -item[1][0]):
    print(f"{name:<12} {auroc:7.3f} {fpr:7.3f}")
# Highest AUROC; among equal AUROCs, the lowest FPR@95.
best_name = max(validation, key=lambda name: (validation[name][0], -validation[name][1]))
best = candidates[best_name]
print(f"\nchosen on validation: {best_name}")

# %% [markdown]
# Only now do we look at the test data. The full table is shown for context; the number that
# reports the choice is the chosen detector's row.

# %%
test = compare(data.x_test, x_ood_test)
print(f"{'test':<12} {'AUROC':>7} {'FPR@95':>7}")
for name, (auroc, fpr) in sorted(test.items(), key=lambda item: -item[1][0]):
    marker = "  <- chosen" if name == best_name else ""
    print(f"{name:<12} {auroc:7.3f} {fpr:7.3f}{marker}")

# %% [markdown]
# ## Save it, load it back
#
# A fitted detector saves its configuration and statistics to one `.npz` file; no training data
# is needed to load it, only the model (pass it to `load` to score inputs again).

# %%
detector_path = best.save(os.path.join(tempfile.mkdtemp(), f"{best_name}.npz"))
restored = type(best).load(detector_path, model)
difference = np.abs(restored.score(data.x_test) - best.score(data.x_test)).max()
print(f"saved to {os.path.basename(detector_path)}; "
      f"largest score difference after loading: {difference:.2g}")

# %% [markdown]
# ## A threshold, then the export
#
# `fit_ood_threshold` scores the in-distribution **validation** inputs exactly as the export
# will and returns the threshold that keeps 95% of them: about 5% of normal traffic is flagged,
# by construction. `export_for_serving(..., ood_score=detector)` then computes the detector's
# score **inside the SavedModel**: a feature detector reads its layer in the same forward pass
# that gives the logits, and its fitted statistics are stored in the graph as constants.

# %%
threshold = keras_vc.export.fit_ood_threshold(model, data.x_val, ood_score=restored, tpr=0.95)
export_dir = os.path.join(tempfile.mkdtemp(), "models", data.name, "1")
info = keras_vc.export.export_for_serving(model, export_dir, ood_score=restored,
                                          ood_threshold=threshold)
print(f"served ood_score: {info.ood_score}; is_ood when it is below {threshold:.4f}")
print("outputs:", ", ".join(info.signatures["serving_default"]))

# %% [markdown]
# ## Load it the way a server does
#
# `tf.saved_model.load` needs only TensorFlow. We send four in-distribution test inputs and four
# OOD test inputs, then the whole test split and the OOD test half, to see how often each is
# flagged, and check that the served score is the detector's own.

# %%
served = tf.saved_model.load(export_dir).signatures["serving_default"]
batch = np.concatenate([data.x_test[:4], x_ood_test[:4]])
outputs = served(inputs=tf.constant(batch))
for i, kind in enumerate(["in-distribution"] * 4 + ["OOD"] * 4):
    print(f"{kind:<16} class {int(outputs['predicted_class'][i])}  "
          f"confidence {float(outputs['confidence'][i]):.3f}  "
          f"ood_score {float(outputs['ood_score'][i]):9.4f}  "
          f"is_ood {bool(outputs['is_ood'][i])}")

flags_in = served(inputs=tf.constant(data.x_test))
flags_out = served(inputs=tf.constant(x_ood_test))
print(f"\nflagged: {flags_in['is_ood'].numpy().mean():.1%} of in-distribution test inputs "
      f"(target 5%), {flags_out['is_ood'].numpy().mean():.1%} of OOD test inputs")
reference = restored.score(data.x_test)
gap = np.abs(flags_in["ood_score"].numpy() - reference).max() / np.abs(reference).max()
print(f"largest gap between the served score and detector.score, relative to the largest "
      f"score: {gap:.1g} (float32 rounding)")

# %% [markdown]
# ## What to take away
#
# - Post-hoc detectors need only a trained model and its training data: no retraining.
# - Compare them, and pick one, on validation data; report the chosen one on test data.
# - `fit_ood_threshold(model, x_val, ood_score=detector)` and
#   `export_for_serving(model, path, ood_score=detector, ood_threshold=threshold)` put the
#   detector in the served graph. ODIN, and Mahalanobis with `epsilon > 0`, perturb each input
#   along a gradient and cannot be exported; every other detector here can.
# - Serving details (REST and gRPC requests, calibrated probabilities): tutorial 05.
