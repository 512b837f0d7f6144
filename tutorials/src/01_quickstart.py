# Source of tutorials/01_quickstart.ipynb, written by tutorials/build_notebooks.py.

# %% [markdown]
# # Quickstart: accuracy is not enough
#
# A classifier that is right 90% of the time is useful. It is far more useful if it also tells
# you *which* 90%: if its "95% sure" answers are right 95% of the time and its "60% sure"
# answers 60% of the time, you can act on the confident ones and send the rest to a person.
# That property is **calibration**, and accuracy does not measure it. Neural networks trained
# with cross-entropy are often accurate and badly calibrated, usually *over*confident: the
# training loss keeps rewarding larger logits long after the answers are right (Guo et al.,
# "On Calibration of Modern Neural Networks", 2017).
#
# keras_vc gives you two things:
#
# - **metrics** that measure calibration (`keras_vc.metrics`: expected calibration error,
#   negative log-likelihood, Brier score, reliability diagrams), as NumPy functions and as
#   streaming Keras metrics for `model.compile`;
# - **output layers** that replace the final `Dense` layer of a classifier and make its
#   confidence more meaningful.
#
# This notebook trains an ordinary softmax classifier next to one whose last layer is
# `keras_vc.layers.VariationalSoftmax` (Variational Classification, Dhuliawala, Sachan & Allen,
# TMLR 2024), and compares how well their confidence can be trusted.

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

import keras
import matplotlib.pyplot as plt
import numpy as np

import keras_vc
from keras_vc import metrics
from keras_vc.data.tutorial import load_tutorial_data

logging.getLogger("tensorflow").setLevel(logging.ERROR)  # no retracing notices
# The test suite runs every tutorial at tiny settings; in Colab this is False.
FAST = os.environ.get("KERAS_VC_TUTORIAL_FAST") == "1"
EPOCHS = 2 if FAST else 15
keras.utils.set_random_seed(0)

# %% [markdown]
# ## The data
#
# `load_tutorial_data` gives a train / validation / test split and a set of
# out-of-distribution (OOD) images, inputs of a kind the model never saw in training. In Colab
# that is Fashion-MNIST with MNIST as OOD (CIFAR-10 with CIFAR-100 on a GPU runtime). Where
# nothing can be downloaded, or with `KERAS_VC_OFFLINE=1`, it switches to data that ships with
# the package: scikit-learn's 8x8 handwritten digits, with patches of photographs as OOD.
# **The next cell says which one you got.** Every number below depends on it. The small
# digits are easy enough that both models end up well calibrated on them; the differences show
# on the harder datasets.

# %%
data = load_tutorial_data(max_train=500 if FAST else 20000, max_eval=200 if FAST else 5000)
data

# %% [markdown]
# ## Two classifiers that differ only in their last layer
#
# Both use the same small convolutional backbone. The first ends in `Dense(K)`, whose outputs
# (logits) go through a softmax. The second ends in `VariationalSoftmax`. It treats the input
# of the softmax as a *latent variable* `z` with a Gaussian distribution `q(z | x)`. Each class
# `k` owns a Gaussian prior `p(z | y = k)`, and the logits are the log-densities of `z` under
# these class Gaussians (Bayes' rule gives the class probabilities). Training adds two terms to
# the cross-entropy: a KL divergence that keeps each input's latent near its class Gaussian,
# and a consistency term that keeps each class's latents distributed as that Gaussian. Latents
# cannot drift arbitrarily far to make the logits huge, which is what overconfidence needs.
# `VariationalClassificationLoss` computes the whole objective; the rest of the code is
# ordinary Keras.
#
# `keras_vc.metrics.ExpectedCalibrationError` tracks the calibration of each model during
# training.

# %%
def make_classifier(head, name):
    return keras.Sequential([
        keras.Input(data.input_shape),
        keras.layers.Conv2D(32, 3, padding="same", activation="relu"),
        keras.layers.MaxPooling2D(),
        keras.layers.Conv2D(64, 3, padding="same", activation="relu"),
        keras.layers.MaxPooling2D(),
        keras.layers.Flatten(),
        keras.layers.Dense(128, activation="relu"),
        head,
    ], name=name)


softmax_model = make_classifier(keras.layers.Dense(data.num_classes), "softmax")
softmax_model.compile(
    optimizer="adam",
    loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    metrics=["accuracy", metrics.ExpectedCalibrationError(from_logits=True)])

vc_model = make_classifier(
    keras_vc.layers.VariationalSoftmax(data.num_classes, latent_dim=32, seed=0), "variational")
vc_model.compile(
    optimizer="adam",
    loss=keras_vc.losses.VariationalClassificationLoss(),
    metrics=["accuracy", metrics.ExpectedCalibrationError(from_logits=True)])

histories = {}
for model in (softmax_model, vc_model):
    histories[model.name] = model.fit(
        data.x_train, data.y_train, validation_data=(data.x_val, data.y_val),
        epochs=EPOCHS, batch_size=64, verbose=2).history

# %% [markdown]
# ## Accuracy and calibration during training
#
# The validation accuracy levels off after a few epochs. The validation ECE need not: a model
# that keeps training after its answers are right tends to grow more confident without
# becoming more accurate. Watch for an ECE curve that rises while accuracy is flat.

# %%
figure, (left, right) = plt.subplots(1, 2, figsize=(10, 3.4))
for name, history in histories.items():
    epochs = np.arange(1, len(history["val_accuracy"]) + 1)
    left.plot(epochs, history["val_accuracy"], marker="o", label=name)
    right.plot(epochs, history["val_ece"], marker="o", label=name)
left.set(xlabel="epoch", ylabel="validation accuracy")
right.set(xlabel="epoch", ylabel="validation ECE (lower is better)")
left.legend()
plt.tight_layout()
plt.show()

# %% [markdown]
# ## The numbers on the test split
#
# - **Accuracy**: how often the most probable class is right.
# - **ECE** (expected calibration error): sort the predictions into 15 bins by confidence; in
#   each bin, compare the mean confidence with the accuracy; average the gaps, weighted by the
#   share of predictions in the bin. 0 means the confidence can be taken at its word.
# - **NLL** (negative log-likelihood, the test cross-entropy) and **Brier score** (squared
#   error of the probability vector): both judge the whole probability vector and punish
#   confident mistakes hard.
#
# Lower is better for all but accuracy.

# %%
def test_probabilities(model, temperature=1.0):
    logits = model.predict(data.x_test, batch_size=512, verbose=0)
    return keras_vc.calibration.apply_temperature(logits, temperature)


def summary(name, probs):
    print(f"{name:28}{metrics.accuracy(data.y_test, probs):9.3f}"
          f"{metrics.expected_calibration_error(data.y_test, probs):8.3f}"
          f"{metrics.negative_log_likelihood(data.y_test, probs):8.3f}"
          f"{metrics.brier_score(data.y_test, probs):8.3f}")


probs = {name: test_probabilities(model)
         for name, model in (("softmax", softmax_model), ("VariationalSoftmax", vc_model))}
print(f"{'':28}{'accuracy':>9}{'ECE':>8}{'NLL':>8}{'Brier':>8}")
for name, p in probs.items():
    summary(name, p)

# %% [markdown]
# ## Reliability diagrams
#
# A reliability diagram shows the same comparison bin by bin. Each blue bar is one confidence
# bin, as tall as the accuracy of the predictions in it. The hatched part is the gap to the
# diagonal (the bin's mean confidence). A bar below the diagonal is overconfident, a bar above
# underconfident. The grey bars (right axis) count the predictions per bin. Most predictions
# are confident, so the bins near 1 carry most of the weight.

# %%
figure, axes = plt.subplots(1, 2, figsize=(10, 4.2), sharey=True)
for ax, (name, p) in zip(axes, probs.items()):
    metrics.reliability_diagram(data.y_test, p, ax=ax, title=name)
plt.tight_layout()
plt.show()

# %% [markdown]
# ## The standard post-hoc fix: temperature scaling
#
# Dividing the logits by one number `T` (fitted on the validation split) rescales every
# prediction's confidence without changing which class wins. It is cheap and often removes
# most of the miscalibration on data like the training data, so any method should be compared
# with it. `fit_temperature` returns `T` for a plain `Dense` output. A keras_vc head owns a
# `temperature` variable, and `fit_temperature` writes the fitted value into it, so the
# calibrated model can be saved and exported as it is.
#
# Temperature scaling does not tell the model anything about inputs unlike its training data.
# That is where the heads differ most, as the next cell shows.

# %%
softmax_t = keras_vc.calibration.fit_temperature(softmax_model, (data.x_val, data.y_val))
vc_t = keras_vc.calibration.fit_temperature(vc_model, (data.x_val, data.y_val))
print(f"softmax T = {softmax_t.temperature:.2f}, VariationalSoftmax T = {vc_t.temperature:.2f}")
print(f"{'':28}{'accuracy':>9}{'ECE':>8}{'NLL':>8}{'Brier':>8}")
summary("softmax + temperature", test_probabilities(softmax_model, softmax_t.temperature))
summary("VariationalSoftmax + temp.", test_probabilities(vc_model))  # the layer holds its T

# %% [markdown]
# ## A first look at unfamiliar inputs
#
# How confident are the models on the OOD images, which belong to none of the classes? An
# ideal model would hesitate. The softmax model's confidence is its only signal. The
# variational head has a second one, the density of the latent under the class Gaussians,
# `log p(z)`: an input whose latent lands far from every class Gaussian has a low density
# however peaked its softmax is. `keras_vc.scores.recommended(model)` picks each head's
# recommended score. AUROC is the probability that a test image scores higher than an OOD
# image (1 = perfect separation, 0.5 = chance). Whether the density beats the softmax confidence
# depends on the data, so measure it. The
# [DisMax and IsoMax+ tutorial](colab:02_dismax_isomax.ipynb) goes deeper into OOD detection.

# %%
print(f"{'':19}{'mean confidence':>16}{'mean confidence':>16}   {'OOD score':16}{'AUROC':>6}")
print(f"{'':19}{'(test)':>16}{'(OOD)':>16}")
for name, model, temperature in (("softmax", softmax_model, softmax_t.temperature),
                                 ("VariationalSoftmax", vc_model, 1.0)):  # the layer holds its T
    logits_in = model.predict(data.x_test, verbose=0) / temperature
    logits_out = model.predict(data.x_ood, verbose=0) / temperature
    score_name, score = keras_vc.scores.recommended(model)
    print(f"{name:19}"
          f"{keras_vc.calibration.softmax(logits_in).max(axis=1).mean():16.2f}"
          f"{keras_vc.calibration.softmax(logits_out).max(axis=1).mean():16.2f}   "
          f"{score_name:16}{metrics.auroc(score(logits_in), score(logits_out)):6.3f}")

# %% [markdown]
# ## What to remember
#
# - Measure calibration, not only accuracy: `metrics.expected_calibration_error`,
#   `negative_log_likelihood`, `brier_score` and `reliability_diagram` work on any
#   probabilities; `metrics.ExpectedCalibrationError` plugs into `model.compile`.
# - A keras_vc head replaces the final `Dense` layer and keeps the rest of your Keras code.
#   Its output is logits; `softmax(model.predict(x))` gives the probabilities.
# - Compare with temperature scaling, fitted on validation data, never on the test split.
#
# Next: [DisMax and IsoMax+](colab:02_dismax_isomax.ipynb) for OOD detection,
# [entanglement](colab:03_entanglement.ipynb), [two-stage training](colab:04_two_stage.ipynb) and
# [serving](colab:05_serving.ipynb).
