# Source of tutorials/02_dismax_isomax.ipynb, written by tutorials/build_notebooks.py.

# %% [markdown]
# # IsoMax+ and DisMax: distances as logits, for out-of-distribution detection
#
# Show a digit classifier a photograph and it will usually name a digit, often with high
# confidence. The last layer of an ordinary classifier is linear: each logit is a dot product
# `w_k . z` with the feature vector `z`. Far from the training data, dot products keep growing,
# so an unfamiliar input can get *larger* logits than a familiar one, and the softmax
# confidence tells us little about whether the input belongs.
#
# IsoMax+ (Macedo & Ludermir, 2021) and DisMax (Macedo, Zanchettin & Ludermir, 2022) replace
# that layer with **distances to learned class prototypes**. Features and prototypes are
# normalised to unit length, and the logit of class `k` is minus the (scaled) distance from
# the features to prototype `k`. Training pulls each class's features towards its prototype.
# An input whose features land far from *every* prototype gets uniformly low logits, which is
# what an OOD detector wants to see. `keras_vc.layers.DistanceLogits` implements both:
#
# - `mode="isomax_plus"`: `logit_k = -s * ||u - q_k||` (`u`, `q_k` the unit features and
#   prototypes, `s` a learned scale). OOD score: the largest logit, i.e. minus the distance to
#   the nearest prototype.
# - `mode="dismax"`: adds the mean distance to all prototypes to every logit. That does not
#   change the prediction, but it enters the score. OOD score: **MMLES**, the max logit plus
#   the mean logit plus the negative entropy of the probabilities.
#
# Both train with cross-entropy on logits multiplied by an *entropic scale* of 10, which
# `DistanceLogits` applies itself: distances lie in [0, 2], and without the scale the softmax
# could never become confident. DisMax also has **fractional probability regularization**:
# part of every batch becomes mosaics of four training images, whose target gives each
# image's class a quarter. The network learns that an input made of several things deserves
# a spread-out answer.

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
import tensorflow as tf

import keras_vc
from keras_vc import metrics
from keras_vc.data.tutorial import load_tutorial_data
from keras_vc.layers import DistanceLogits
from keras_vc.losses import EntropicCrossEntropy

logging.getLogger("tensorflow").setLevel(logging.ERROR)  # no retracing notices
# The test suite runs every tutorial at tiny settings; in Colab this is False.
FAST = os.environ.get("KERAS_VC_TUTORIAL_FAST") == "1"
EPOCHS = 2 if FAST else 10
BATCH_SIZE = 64
keras.utils.set_random_seed(0)

# %% [markdown]
# ## The data
#
# In Colab: Fashion-MNIST (clothing) as the in-distribution data and MNIST (digits) as the
# out-of-distribution (OOD) inputs, or CIFAR-10 against CIFAR-100 with a GPU. Offline, the
# bundled 8x8 digits against 8x8 patches of photographs. **The next cell says which one you
# got.** The OOD images are never used for training, calibration or choosing thresholds; they
# only appear in the final evaluation.

# %%
data = load_tutorial_data(max_train=500 if FAST else 20000, max_eval=200 if FAST else 5000)
data

# %%
figure, axes = plt.subplots(2, 8, figsize=(10, 2.8))
for ax, image in zip(axes[0], data.x_test[:8]):
    ax.imshow(image.squeeze(), cmap="gray" if image.shape[-1] == 1 else None)
    ax.axis("off")
for ax, image in zip(axes[1], data.x_ood[:8]):
    ax.imshow(image.squeeze(), cmap="gray" if image.shape[-1] == 1 else None)
    ax.axis("off")
axes[0, 0].set_title(f"in-distribution: {data.name}", loc="left", fontsize=10)
axes[1, 0].set_title(f"out-of-distribution: {data.ood_name}", loc="left", fontsize=10)
plt.tight_layout()
plt.show()

# %% [markdown]
# ## Four classifiers, one backbone
#
# The four models share the same convolutional backbone and training budget. Only the last
# layer, the loss and the batches change: a `Dense` softmax layer with cross-entropy;
# `DistanceLogits` in both modes with `EntropicCrossEntropy`; and DisMax once more, trained on
# batches with fractional probability regularization (below).

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
softmax_model.compile(optimizer="adam",
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
isomax_model = make_classifier(DistanceLogits(data.num_classes, mode="isomax_plus"), "isomax")
isomax_model.compile(optimizer="adam", loss=EntropicCrossEntropy())
dismax_model = make_classifier(DistanceLogits(data.num_classes, mode="dismax"), "dismax")
dismax_model.compile(optimizer="adam", loss=EntropicCrossEntropy())
dismax_fpr_model = make_classifier(DistanceLogits(data.num_classes, mode="dismax"), "dismax_fpr")
dismax_fpr_model.compile(optimizer="adam", loss=EntropicCrossEntropy())

# %% [markdown]
# ## Fractional probability regularization (DisMax)
#
# `keras_vc.augment.fractional_probability_mix` works on whole batches inside a `tf.data`
# pipeline. It shuffles the batch, keeps the first half as it is, and turns each image of the
# second half into a mosaic of four quadrants taken from four different images. The target is
# a quarter of each image's class. `EntropicCrossEntropy` trains on these soft targets directly.
# (In the DisMax paper "FPR" means this regularization, not a false positive rate.) Below, the
# mosaics of one batch with their targets above them:

# %%
def fractional_probability_batches(x, y, seed=0):
    batches = (tf.data.Dataset.from_tensor_slices((x, y))
               .shuffle(len(x), seed=seed)
               .batch(BATCH_SIZE, drop_remainder=True)  # mixing needs a fixed batch size
               .enumerate())
    return batches.map(lambda step, batch: keras_vc.augment.fractional_probability_mix(
        batch[0], batch[1], num_classes=data.num_classes,
        seed=tf.stack([step, tf.constant(seed, tf.int64)])))


images, targets = next(iter(fractional_probability_batches(data.x_train, data.y_train)))
figure, axes = plt.subplots(1, 6, figsize=(10, 2.3))
for ax, image, target in zip(axes, images[BATCH_SIZE // 2:], targets[BATCH_SIZE // 2:]):
    ax.imshow(image.numpy().squeeze(), cmap="gray" if image.shape[-1] == 1 else None)
    shares = [f"{data.class_names[k]}: {p:.2f}" for k, p in enumerate(target.numpy()) if p > 0]
    ax.set_title("\n".join(shares), fontsize=8)
    ax.axis("off")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## Train
#
# The first three models see the plain batches, the last one the mixed ones.

# %%
softmax_model.fit(data.x_train, data.y_train, epochs=EPOCHS, batch_size=BATCH_SIZE, verbose=2)
isomax_model.fit(data.x_train, data.y_train, epochs=EPOCHS, batch_size=BATCH_SIZE, verbose=2)
dismax_model.fit(data.x_train, data.y_train, epochs=EPOCHS, batch_size=BATCH_SIZE, verbose=2)
dismax_fpr_model.fit(fractional_probability_batches(data.x_train, data.y_train), epochs=EPOCHS,
                     shuffle=False, verbose=2);  # the pipeline shuffles the batches itself

# %% [markdown]
# ## Calibrate on validation data
#
# `DistanceLogits` owns a `temperature` variable (1 until calibrated) and divides its logits by
# it. `fit_temperature` searches the temperature that minimises the expected calibration error
# (ECE) on the validation split and writes it into the layer. It is saved with the model and
# exported with it. For the plain `Dense` model the function returns the temperature, and we
# divide by it ourselves. Temperature scaling changes how confident each prediction is, never
# which class is predicted. Expect the FPR model to be *under*confident before calibration
# (its training asks for spread-out answers on mixed inputs) and its fitted `T` to be below 1.

# %%
models = {"softmax": softmax_model, "IsoMax+": isomax_model, "DisMax": dismax_model,
          "DisMax + FPR": dismax_fpr_model}
temperatures = {}
print(f"{'':13}{'accuracy':>9}{'ECE before':>12}{'ECE after':>11}{'NLL after':>11}{'T':>7}")
for name, model in models.items():
    before = keras_vc.calibration.softmax(model.predict(data.x_test, verbose=0))
    fitted = keras_vc.calibration.fit_temperature(model, (data.x_val, data.y_val))
    # A DistanceLogits head now divides by the fitted T itself; the Dense model needs it here.
    temperatures[name] = 1.0 if name != "softmax" else fitted.temperature
    after = keras_vc.calibration.softmax(model.predict(data.x_test, verbose=0),
                                         temperatures[name])
    print(f"{name:13}{metrics.accuracy(data.y_test, after):9.3f}"
          f"{metrics.expected_calibration_error(data.y_test, before):12.3f}"
          f"{metrics.expected_calibration_error(data.y_test, after):11.3f}"
          f"{metrics.negative_log_likelihood(data.y_test, after):11.3f}"
          f"{fitted.temperature:7.2f}")

# %% [markdown]
# ## Detect out-of-distribution inputs
#
# Each head comes with the score its authors recommend; `keras_vc.scores.recommended(model)`
# returns it. The softmax model gets the maximum softmax probability (MSP), IsoMax+ its max
# logit, DisMax MMLES. The score functions take the model's output logits. Higher means
# "more like the training data".
#
# Two numbers summarise how well a score separates the test inputs from the OOD inputs:
#
# - **AUROC**: the probability that a random test input scores higher than a random OOD input
#   (1 = perfect, 0.5 = chance);
# - **FPR at 95% TPR**: with the threshold set so that 95% of the test inputs pass, the
#   fraction of OOD inputs that also pass (0 = perfect). This is the number that matters when
#   the threshold is used to flag inputs in production.

# %%
ood_scores = {}
for name, model in models.items():
    score_name, score = keras_vc.scores.recommended(model)
    logits_in = model.predict(data.x_test, verbose=0) / temperatures[name]
    logits_out = model.predict(data.x_ood, verbose=0) / temperatures[name]
    ood_scores[name] = (score_name, score(logits_in), score(logits_out))
    report = metrics.ood_metrics(ood_scores[name][1], ood_scores[name][2])
    print(f"{name:13} {score_name:16} AUROC {report['auroc']:.3f}   "
          f"FPR at 95% TPR {report['fpr_at_95_tpr']:.3f}")

# %% [markdown]
# The histograms show why. The dashed line is the threshold that keeps 95% of the test inputs.
# Everything of the OOD histogram to its right would be accepted as normal. With the softmax
# model the OOD inputs often pile up at high confidence together with the real data. The
# distance-based scores push them to the left, away from every prototype.
#
# Which distance-based variant separates best depends on the data and on the training budget.
# The papers report their numbers for ResNets trained for hundreds of epochs on CIFAR; on the
# small offline digits, IsoMax+ separated the photo patches best in our runs, and FPR did not
# help there. Measure on your own data before you choose.

# %%
figure, axes = plt.subplots(2, 2, figsize=(9, 6))
for ax, (name, (score_name, scores_in, scores_out)) in zip(axes.flat, ood_scores.items()):
    bins = np.linspace(min(scores_in.min(), scores_out.min()),
                       max(scores_in.max(), scores_out.max()), 40)
    ax.hist(scores_in, bins=bins, alpha=0.6, label=f"{data.name} test")
    ax.hist(scores_out, bins=bins, alpha=0.6, label=f"{data.ood_name} (OOD)")
    ax.axvline(metrics.threshold_at_tpr(scores_in, 0.95), color="black", linestyle="--")
    ax.set(title=f"{name}: {score_name}", xlabel="score (higher = in-distribution)",
           ylabel="inputs")
axes[0, 0].legend(fontsize=8)
plt.tight_layout()
plt.show()

# %% [markdown]
# (In production the threshold is fitted on validation data, as the
# [serving tutorial](colab:05_serving.ipynb) does, and never on the test inputs; here it only
# marks the 95% point of the plotted distribution.)
#
# ## What to remember
#
# - `DistanceLogits` is a drop-in replacement for the final `Dense` layer; train it with
#   `EntropicCrossEntropy`. Predictions, accuracy and training cost stay close to a softmax
#   classifier's.
# - Distances to prototypes give out-of-distribution scores that a linear layer cannot: an
#   input far from every class is visible as such. Use `layer.ood_score(outputs)` or
#   `keras_vc.scores.recommended(model)`; both read the logits the way the authors' detection
#   code does.
# - Calibrate with `fit_temperature` on validation data; the temperature lives in the layer and
#   travels with the saved or exported model. `export_for_serving` serves the head's own score
#   ([serving tutorial](colab:05_serving.ipynb)).
