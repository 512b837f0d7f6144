# Source of tutorials/04_two_stage.ipynb, written by tutorials/build_notebooks.py.

# %% [markdown]
# # Two-stage training: a new head on frozen features (TST and V-TST)
#
# A network trained end to end learns its features and its last layer together. Cross-entropy
# keeps rewarding larger logits long after the predictions are right, so the last layer ends
# up more confident than the network is accurate. Jordahn & Olmos ("Decoupling Feature
# Extraction and Classification Layers for Calibrated Neural Networks", ICML 2024) propose a
# cheap fix that needs no change to the first training run:
#
# 1. **Stage 1**: train the classifier as usual.
# 2. **Stage 2**: freeze everything up to a feature layer, throw the rest away, and train a
#    new small head on the frozen features. Keep the epoch with the lowest *validation*
#    negative log-likelihood (NLL).
#
# The checkpoint is chosen by held-out likelihood instead of training loss, so the head stops
# where its probabilities are most honest on unseen data. **TST** uses an MLP head
# (`D -> 3Z -> Z -> K`). **V-TST** makes the head's middle layer a Gaussian latent variable with
# an `N(0, I)` prior and averages the class probabilities over several draws. That adds noise
# during training and a small model average at prediction time, and both pull overconfident
# predictions back. In the reproduction study of the authors' code (WRN-28-10 on CIFAR-10, ECE
# x100) the ECE went from 6.06 (stage 1) to 3.34 (TST) and 1.38 (V-TST, 10 draws) at the same
# accuracy.
#
# Stage 2 only touches the head, so it costs a few minutes even when stage 1 took days:
# `keras_vc.two_stage.retrain_head` computes the frozen features once and trains the head on them.

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
STAGE1_EPOCHS = 2 if FAST else 15
STAGE2_EPOCHS = 3 if FAST else 40
keras.utils.set_random_seed(0)

# %% [markdown]
# ## The data
#
# Fashion-MNIST from TensorFlow Datasets in Colab (CIFAR-10 with a GPU). Where nothing can be
# downloaded, the bundled 8x8 digits replace it. **The next cell says which one you got.** The
# digits are so easy that every model below is nearly perfectly calibrated on them, so the
# differences you see offline are mostly noise.

# %%
data = load_tutorial_data(max_train=500 if FAST else 20000, max_eval=200 if FAST else 5000)
data

# %% [markdown]
# ## Stage 1: an ordinary classifier
#
# Nothing special here, except that the feature layer has a name, so that stage 2 can cut the
# model there. It is trained for a fixed number of epochs without early stopping, as most
# networks are.

# %%
stage1 = keras.Sequential([
    keras.Input(data.input_shape),
    keras.layers.Conv2D(32, 3, padding="same", activation="relu"),
    keras.layers.MaxPooling2D(),
    keras.layers.Conv2D(64, 3, padding="same", activation="relu"),
    keras.layers.MaxPooling2D(),
    keras.layers.Flatten(),
    keras.layers.Dense(128, activation="relu", name="features"),
    keras.layers.Dense(data.num_classes),  # logits
], name="stage1")
stage1.compile(optimizer="adam",
               loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
               metrics=["accuracy"])
stage1.fit(data.x_train, data.y_train, epochs=STAGE1_EPOCHS, batch_size=64, verbose=2);

# %% [markdown]
# ## Stage 2: TST and V-TST
#
# `retrain_head` copies the layers below `"features"`, freezes the copy and puts a new head on
# top. `stage1` itself stays exactly as it was. A frozen `BatchNormalization` layer would run
# in inference mode (Keras semantics; the reference code keeps it in training mode). The
# training data are only used through the frozen features, so they are computed once.
#
# The reference trains the head with Adam at learning rate 1e-4 and batch size 256 for 40
# epochs on CIFAR's 50,000 images. With fewer images we take larger steps (1e-3, batch 128),
# so the head converges in as many epochs. Early stopping on the validation NLL (patience 10)
# keeps those larger steps from overfitting.

# %%
stage2_settings = dict(
    train_data=(data.x_train, data.y_train),
    validation_data=(data.x_val, data.y_val),
    epochs=STAGE2_EPOCHS, batch_size=128, latent_dim=128, seed=0,
)
tst = keras_vc.two_stage.retrain_head(stage1, "features", head="tst",
                                      optimizer=keras.optimizers.Adam(1e-3), **stage2_settings)
vtst = keras_vc.two_stage.retrain_head(stage1, "features", head="vtst", num_samples=10,
                                       optimizer=keras.optimizers.Adam(1e-3), **stage2_settings)
for name, model in (("TST", tst), ("V-TST", vtst)):
    val_nll = model.history.history["val_nll"]
    print(f"{name}: {len(val_nll)} epochs, best validation NLL {min(val_nll):.3f} "
          f"(epoch {int(np.argmin(val_nll)) + 1})")

# %% [markdown]
# ## Did it help?
#
# We compare four sets of test probabilities:
#
# - **stage 1**: the network as trained;
# - **stage 1 + TS**: the same network with *temperature scaling*, the standard post-hoc fix
#   (one number `T` fitted on the validation split, logits divided by it). It is the baseline
#   any calibration method has to beat;
# - **TST** and **V-TST**: the stage-2 models (V-TST averages 10 draws).
#
# Accuracy says how often the top class is right. The **expected calibration error** (ECE)
# says how far the confidence is from that accuracy, averaged over confidence bins: 0 means
# "90% confident" is right 90% of the time. **NLL** and the **Brier score** judge the whole
# probability vector; both reward confident right answers and punish confident wrong ones.
# Lower is better for all three.

# %%
def probabilities(model, x, temperature=1.0):
    logits = model.predict(x, batch_size=512, verbose=0)
    return keras_vc.calibration.apply_temperature(logits, temperature)


temperature = keras_vc.calibration.fit_temperature(stage1, (data.x_val, data.y_val))
test_probs = {
    "stage 1": probabilities(stage1, data.x_test),
    "stage 1 + TS": probabilities(stage1, data.x_test, temperature.temperature),
    "TST": probabilities(tst, data.x_test),
    "V-TST": probabilities(vtst, data.x_test),
}
print(f"{'':14}{'accuracy':>9}{'ECE':>8}{'NLL':>8}{'Brier':>8}")
for name, probs in test_probs.items():
    print(f"{name:14}{metrics.accuracy(data.y_test, probs):9.3f}"
          f"{metrics.expected_calibration_error(data.y_test, probs):8.3f}"
          f"{metrics.negative_log_likelihood(data.y_test, probs):8.3f}"
          f"{metrics.brier_score(data.y_test, probs):8.3f}")

# %% [markdown]
# A **reliability diagram** shows where the miscalibration sits. Each bar is one confidence
# bin; its height is the accuracy of the predictions in it. The hatched part is the gap to
# the diagonal: bars below the diagonal are overconfident, bars above underconfident. The grey
# bars (right axis) show how many predictions fall in each bin; most sit near confidence 1,
# so a gap there weighs most in the ECE.

# %%
figure, axes = plt.subplots(1, len(test_probs), figsize=(4 * len(test_probs), 4),
                            sharey=True)
for ax, (name, probs) in zip(axes, test_probs.items()):
    metrics.reliability_diagram(data.y_test, probs, num_bins=10, ax=ax, title=name)
plt.tight_layout()
plt.show()

# %% [markdown]
# ## How many draws does V-TST need?
#
# V-TST predicts with the average of the class probabilities over `M` latent draws. The
# trained model uses 10 fixed draws (stored with the model, so its predictions are
# reproducible and identical after export). Calling the head with `num_samples=M` makes a fresh
# estimate with `M` new draws. The NLL falls as the average settles, usually within a handful
# of draws. The ECE can move either way: averaging makes predictions less confident, which
# helps an overconfident head and hurts one that is already cautious.

# %%
body, head = vtst.layers[-2], vtst.layers[-1]
test_features = body.predict(data.x_test, batch_size=512, verbose=0)
draws = [1, 2, 5, 10, 20] if FAST else [1, 2, 5, 10, 20, 50, 100]
nll, ece = [], []
for m in draws:
    probs = keras_vc.calibration.softmax(
        keras.ops.convert_to_numpy(head(test_features, num_samples=m)))
    nll.append(metrics.negative_log_likelihood(data.y_test, probs))
    ece.append(metrics.expected_calibration_error(data.y_test, probs))

figure, (left, right) = plt.subplots(1, 2, figsize=(9, 3.2))
left.plot(draws, nll, marker="o")
left.set(xscale="log", xlabel="latent draws M", ylabel="test NLL")
right.plot(draws, ece, marker="o", color="tab:orange")
right.set(xscale="log", xlabel="latent draws M", ylabel="test ECE")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## Stage 2 and temperature scaling combine
#
# The stage-2 heads carry a `temperature` variable (1 until calibrated), so
# `fit_temperature` can calibrate them too, and the fitted value is saved and exported with
# the model. If the new head is still a little over- or under-confident (V-TST can err on the
# cautious side on small data), this removes what is left.

# %%
for name, model in (("TST", tst), ("V-TST", vtst)):
    fitted = keras_vc.calibration.fit_temperature(model, (data.x_val, data.y_val))
    probs = probabilities(model, data.x_test)  # the head now divides by its temperature
    print(f"{name} + TS: T = {fitted.temperature:.2f}, test ECE "
          f"{metrics.expected_calibration_error(data.y_test, probs):.3f}, NLL "
          f"{metrics.negative_log_likelihood(data.y_test, probs):.3f}")

# %% [markdown]
# ## And on inputs from elsewhere?
#
# Better calibration on the test split does not mean the model knows when an input comes
# from a different dataset. Here is the maximum softmax probability as an out-of-distribution
# score for each model: AUROC 1 means the in-distribution test inputs always score higher than
# the OOD inputs, 0.5 is chance. The paper reports mixed OOD results for TST and V-TST. For
# detection, the distance-based heads of the
# [DisMax and IsoMax+ tutorial](colab:02_dismax_isomax.ipynb) are built for the job.

# %%
for name, model in (("stage 1", stage1), ("TST", tst), ("V-TST", vtst)):
    scores_in = keras_vc.scores.max_probability(model.predict(data.x_test, verbose=0))
    scores_out = keras_vc.scores.max_probability(model.predict(data.x_ood, verbose=0))
    print(f"{name:8} AUROC {metrics.auroc(scores_in, scores_out):.3f} "
          f"({data.name} test vs {data.ood_name})")

# %% [markdown]
# ## What to remember
#
# - Two-stage training reuses a trained network: only a small head is trained again, on
#   features computed once.
# - Choosing the head's epoch by validation NLL is what makes its probabilities honest; V-TST
#   adds a latent variable whose averaged draws soften overconfident predictions.
# - Compare with temperature scaling, the cheap baseline, and combine them: the stage-2 heads
#   own a temperature.
# - The stage-2 model is an ordinary Keras model (`inputs -> frozen features -> head`): save it
#   with `model.save("model.keras")` or serve it with `keras_vc.export.export_for_serving`
#   (see the [serving tutorial](colab:05_serving.ipynb)).
