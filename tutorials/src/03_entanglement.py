# Source of tutorials/03_entanglement.ipynb, written by tutorials/build_notebooks.py.

# %% [markdown]
# # Entanglement: the soft nearest neighbor loss and deep k-nearest neighbours
#
# Look at the hidden layers of a trained classifier. Are the classes already separated there,
# each in its own cluster, or are they *entangled*, with points of different classes side by
# side? Frosst, Papernot & Hinton ("Analyzing and Improving Representations with the Soft
# Nearest Neighbor Loss", ICML 2019) measure this with the **soft nearest neighbor loss**
# (SNNL). For every point, it asks how much of its (soft, distance-weighted) neighbourhood
# belongs to its own class:
#
# - SNNL near **0**: every point's near neighbours share its label; the classes are
#   separated.
# - SNNL near **log(K)** for K balanced classes: the labels tell nothing about who is near
#   whom; the classes are fully entangled.
#
# Their surprising finding: *maximising* entanglement in the hidden layers, while the output
# layer is still trained to separate the classes, can help. The hidden layers are pushed to
# represent what the classes have in common instead of only what tells them apart. Inputs
# from elsewhere then stand out: they have fewer neighbours of the predicted class than real
# data does. The **deep k-nearest neighbours** (DkNN) credibility measures exactly that.
#
# keras_vc has the pieces: `keras_vc.losses.soft_nearest_neighbor_loss` (and the Keras loss
# class), `keras_vc.models.EntanglementModel` (cross-entropy minus `alpha` times the SNNL of
# chosen layers), `keras_vc.callbacks.EntanglementMonitor` (SNNL per layer over training) and
# `keras_vc.dknn.DeepKNN`.

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
EPOCHS = 2 if FAST else 10
keras.utils.set_random_seed(0)

# %% [markdown]
# ## What the number means
#
# Two sets of 2-D points with two classes each: once in separate clusters, once mixed. The
# temperature `T` sets how far "near" reaches. `temperature_free_soft_nearest_neighbor_loss`
# takes the `T` that gives the lowest SNNL, the paper's temperature-free version, so that
# layers with very different distance scales can be compared.

# %%
rng = np.random.default_rng(0)
labels = np.repeat([0, 1], 100)
separated = rng.normal(size=(200, 2)) * 0.5 + np.where(labels[:, None] == 0, -1.5, 1.5)
entangled = rng.normal(size=(200, 2))

figure, axes = plt.subplots(1, 2, figsize=(8, 3.6))
for ax, (name, points) in zip(axes, (("separated", separated), ("entangled", entangled))):
    value, temperature = keras_vc.losses.temperature_free_soft_nearest_neighbor_loss(
        points, labels)
    ax.scatter(points[:, 0], points[:, 1], c=labels, cmap="coolwarm", s=12)
    ax.set_title(f"{name}: SNNL = {value:.2f} (log 2 = {np.log(2):.2f})")
    ax.set_aspect("equal")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## The data
#
# Fashion-MNIST with MNIST as out-of-distribution (OOD) inputs in Colab, CIFAR-10 with
# CIFAR-100 on a GPU. Offline, the bundled 8x8 digits with photo patches. **The next cell says
# which one you got.**

# %%
data = load_tutorial_data(max_train=500 if FAST else 20000, max_eval=200 if FAST else 5000)
data

# %% [markdown]
# ## A classifier with named layers
#
# SNNL is computed on the outputs of named layers, so we name them. The regulariser will act
# on the two convolutions and the dense hidden layer. The monitor also watches the logits,
# which cross-entropy always pushes to separate the classes.

# %%
REGULARISED = ["conv_1", "conv_2", "hidden"]
MONITORED = REGULARISED + ["logits"]


def make_classifier(name):
    return keras.Sequential([
        keras.Input(data.input_shape),
        keras.layers.Conv2D(32, 3, padding="same", activation="relu", name="conv_1"),
        keras.layers.MaxPooling2D(name="pool_1"),
        keras.layers.Conv2D(64, 3, padding="same", activation="relu", name="conv_2"),
        keras.layers.MaxPooling2D(name="pool_2"),
        keras.layers.Flatten(),
        keras.layers.Dense(128, activation="relu", name="hidden"),
        keras.layers.Dense(data.num_classes, name="logits"),
    ], name=name)

# %% [markdown]
# ## Train with and without the regulariser
#
# The baseline is trained with cross-entropy alone. The entangled model wraps the same
# architecture in `EntanglementModel`, which trains on
# `cross-entropy - alpha * sum of SNNL(hidden layer)`. Each layer gets its own temperature,
# tuned during training to the value that makes its SNNL smallest, as in the authors' code.
# Otherwise the network could raise the loss simply by spreading its points further apart.
# The paper uses `alpha = 10`. On small models we found `alpha = 1` keeps the accuracy (see
# the `EntanglementModel` docstring). Training is ordinary `compile` / `fit`, and the wrapper
# still outputs the classifier's logits.
#
# An `EntanglementMonitor` on each run records the temperature-free SNNL of every monitored
# layer on a fixed held-out batch, before training and after every epoch.

# %%
monitor_x, monitor_y = data.x_val[:300], data.y_val[:300]
runs = {}
for name, alpha in (("baseline", None), ("entangled", 1.0)):
    classifier = make_classifier(name)
    model = (classifier if alpha is None
             else keras_vc.models.EntanglementModel(classifier, REGULARISED, alpha=alpha))
    model.compile(optimizer="adam",
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    monitor = keras_vc.callbacks.EntanglementMonitor(MONITORED, monitor_x, monitor_y)
    model.fit(data.x_train, data.y_train, epochs=EPOCHS, batch_size=64, callbacks=[monitor],
              verbose=2)
    runs[name] = (classifier, model, monitor)

# %% [markdown]
# ## Entanglement per layer over training
#
# One curve per layer, epoch 0 being the untrained network. The monitor reports the
# temperature-free SNNL, measured at the temperature that makes each layer look *most*
# separated. That temperature is usually small, so the measure asks about each point's very
# nearest neighbours. In the baseline, training separates the classes in the later layers and
# their curves fall. The logits end lowest in both models, because cross-entropy demands
# separated classes there.

# %%
figure, axes = plt.subplots(1, 2, figsize=(11, 3.8), sharey=True)
for ax, (name, (_, _, monitor)) in zip(axes, runs.items()):
    monitor.plot(ax=ax, title=name)
plt.tight_layout()
plt.show()

# %% [markdown]
# ## Entangled at which scale?
#
# The regulariser maximises SNNL at the temperatures it trained with, one per layer
# (`EntanglementModel.temperatures()`), and those are much larger: they look at wider
# neighbourhoods. Here is each hidden layer of both models on the same held-out batch, measured
# at those temperatures and at the most favourable one. An entangled hidden layer mixes the
# classes in the wide neighbourhood while its nearest neighbours can still share a class. That
# mix is the class-independent structure the paper wants the hidden layers to keep. The dashed
# line is log(K), full entanglement.

# %%
trained_temperatures = runs["entangled"][1].temperatures()
figure, axes = plt.subplots(1, 2, figsize=(11, 3.4), sharey=True)
width = 0.38
for offset, (name, (classifier, _, _)) in zip((-width / 2, width / 2), runs.items()):
    activation_model = keras.Model(
        classifier.inputs, [classifier.get_layer(layer).output for layer in REGULARISED])
    activations = activation_model.predict(monitor_x, verbose=0)
    wide = [float(keras_vc.losses.soft_nearest_neighbor_loss(
        a, monitor_y, trained_temperatures[layer])) for a, layer in zip(activations, REGULARISED)]
    local = [keras_vc.losses.temperature_free_soft_nearest_neighbor_loss(a, monitor_y)[0]
             for a in activations]
    positions = np.arange(len(REGULARISED)) + offset
    axes[0].bar(positions, wide, width, label=name)
    axes[1].bar(positions, local, width, label=name)
for ax, title in zip(axes, ("at the regulariser's temperatures (wide)",
                            "at the most favourable temperature (local)")):
    ax.axhline(np.log(data.num_classes), color="gray", linestyle="--")
    ax.set(xticks=np.arange(len(REGULARISED)), xticklabels=REGULARISED, title=title)
axes[0].set_ylabel("soft nearest neighbor loss")
axes[1].legend()
plt.tight_layout()
plt.show()

# %% [markdown]
# ## Accuracy and calibration
#
# The regulariser is not a calibration method. Check what it does to accuracy and to the
# expected calibration error (ECE), and recalibrate with a temperature fitted on the validation
# split if needed.

# %%
print(f"{'':10}{'accuracy':>9}{'ECE':>8}{'ECE with T':>12}")
temperatures = {}
for name, (classifier, model, _) in runs.items():
    logits = model.predict(data.x_test, verbose=0)
    temperatures[name] = keras_vc.calibration.fit_temperature(
        model, (data.x_val, data.y_val)).temperature
    probs = keras_vc.calibration.softmax(logits)
    scaled = keras_vc.calibration.softmax(logits, temperatures[name])
    print(f"{name:10}{metrics.accuracy(data.y_test, probs):9.3f}"
          f"{metrics.expected_calibration_error(data.y_test, probs):8.3f}"
          f"{metrics.expected_calibration_error(data.y_test, scaled):12.3f}")

# %% [markdown]
# ## Deep k-nearest neighbours: credibility
#
# DkNN (Papernot & McDaniel, 2018) classifies by looking up neighbours in the hidden layers:
#
# 1. `fit`: store the activations of the training points in each chosen layer;
# 2. for an input, find its `k` nearest training points in every layer, and for each candidate
#    label count the neighbours that disagree with it (the *nonconformity*);
# 3. `calibrate`: on held-out data, record the nonconformity of the true labels;
# 4. `predict`: a label's p-value is the share of calibration points that were at least as
#    nonconforming. The **credibility** is the largest p-value: how typical the input's
#    neighbourhoods are for its best label.
#
# Real test inputs have neighbourhoods like the calibration points and get high credibility.
# An input from elsewhere lands among neighbours of mixed labels in some layer and gets low
# credibility, so credibility works as an OOD score. We index a subset of the training data
# in the pooled convolution, the hidden layer and the logits.

# %%
DKNN_LAYERS = ["pool_2", "hidden", "logits"]
index_size = 500 if FAST else 10000
credibility = {}
for name, (classifier, model, _) in runs.items():
    dknn = keras_vc.dknn.DeepKNN(classifier, DKNN_LAYERS, k=50)
    dknn.fit(data.x_train[:index_size], data.y_train[:index_size])
    dknn.calibrate(data.x_val, data.y_val)
    result_in, result_out = dknn.predict(data.x_test), dknn.predict(data.x_ood)
    credibility[name] = (result_in["credibility"], result_out["credibility"])
    msp_in = keras_vc.scores.max_probability(model.predict(data.x_test, verbose=0))
    msp_out = keras_vc.scores.max_probability(model.predict(data.x_ood, verbose=0))
    print(f"{name:10} DkNN accuracy {np.mean(result_in['prediction'] == data.y_test):.3f}   "
          f"OOD AUROC: credibility {metrics.auroc(*credibility[name]):.3f}, "
          f"max softmax probability {metrics.auroc(msp_in, msp_out):.3f}")

# %%
figure, axes = plt.subplots(1, 2, figsize=(10, 3.2), sharey=True)
bins = np.linspace(0, 1, 21)
for ax, (name, (scores_in, scores_out)) in zip(axes, credibility.items()):
    ax.hist(scores_in, bins=bins, alpha=0.6, label=f"{data.name} test")
    ax.hist(scores_out, bins=bins, alpha=0.6, label=f"{data.ood_name} (OOD)")
    ax.set(title=f"{name}: DkNN credibility", xlabel="credibility (higher = in-distribution)")
axes[0].set_ylabel("inputs")
axes[0].legend(fontsize=8)
plt.tight_layout()
plt.show()

# %% [markdown]
# ## What to remember
#
# - SNNL measures how entangled the classes are in a representation: about 0 when every
#   point's neighbours share its label, about log(K) when labels and neighbourhoods are
#   unrelated. `EntanglementMonitor` tracks it per layer during training.
# - `EntanglementModel` *maximises* it in hidden layers (the paper's regulariser) or, with
#   `direction="minimize"`, minimises it for metric learning. It is a wrapper: `compile`,
#   `fit`, `predict`, saving and export work as for the classifier inside.
# - DkNN credibility turns neighbourhoods into an OOD score with a conformal calibration on
#   held-out data; compare it with the plain softmax confidence on your data, as above.
# - Check accuracy and calibration whenever you add a regulariser; temperature scaling
#   (`keras_vc.calibration.fit_temperature`) repairs the confidence after the fact.
