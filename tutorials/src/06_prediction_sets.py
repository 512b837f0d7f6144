# Source of tutorials/06_prediction_sets.ipynb, written by tutorials/build_notebooks.py.

# %% [markdown]
# # Prediction sets and abstention on a trained model
#
# You have a trained classifier and its logits. This notebook adds three things on top, none of
# which retrains the model, all fitted on held-out data:
#
# 1. **calibrated probabilities**, with four post-hoc calibrators from `keras_vc.calibration`;
# 2. **prediction sets** with a coverage guarantee: instead of one label, a set of labels that
#    contains the true one for at least 90% of inputs (split conformal prediction,
#    `keras_vc.conformal`);
# 3. **abstention**: answer only when the model is confident enough, refer the rest to a person
#    (selective classification, `keras_vc.metrics.risk_coverage_curve`).
#
# At the end the fitted calibrator and conformal predictor are saved and loaded back, as a
# serving process would.

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
import matplotlib.pyplot as plt
import numpy as np

from keras_vc import calibration
from keras_vc import conformal
from keras_vc import metrics
from keras_vc.data.tutorial import load_tutorial_data

logging.getLogger("tensorflow").setLevel(logging.ERROR)  # no retracing notices
# The test suite runs every tutorial at tiny settings; in Colab this is False.
FAST = os.environ.get("KERAS_VC_TUTORIAL_FAST") == "1"
EPOCHS = 5 if FAST else 8
ALPHA = 0.1        # prediction sets should miss the true label at most 10% of the time
TARGET_RISK = 0.02  # abstention: at most 2% errors among the answers given
keras.utils.set_random_seed(0)

# %% [markdown]
# ## The data and the trained model
#
# `load_tutorial_data` gives train / validation / test splits: Fashion-MNIST in Colab (CIFAR-10
# on a GPU runtime), or, where nothing can be downloaded or with `KERAS_VC_OFFLINE=1`, the 8x8
# handwritten digits that ship with the package. **The next cell says which one you got**;
# every number below depends on it.
#
# The model stands in for yours: a small convolutional network whose last `Dense` layer outputs
# logits. Everything after this cell uses only its logits on the validation and test inputs.

# %%
data = load_tutorial_data(max_train=500 if FAST else 20000, max_eval=400 if FAST else 5000)
data

# %%
model = keras.Sequential([
    keras.Input(data.input_shape),
    keras.layers.Conv2D(32, 3, padding="same", activation="relu"),
    keras.layers.MaxPooling2D(),
    keras.layers.Conv2D(64, 3, padding="same", activation="relu"),
    keras.layers.MaxPooling2D(),
    keras.layers.Flatten(),
    keras.layers.Dense(128, activation="relu"),
    keras.layers.Dense(data.num_classes),
])
model.compile(optimizer="adam",
              loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
              metrics=["accuracy"])
model.fit(data.x_train, data.y_train, epochs=EPOCHS, batch_size=64, verbose=2)

logits_val = model.predict(data.x_val, batch_size=512, verbose=0)
logits_test = model.predict(data.x_test, batch_size=512, verbose=0)
y_test = data.y_test

# %% [markdown]
# ## One held-out split, three jobs
#
# Each post-hoc step must be fitted on data that no earlier step saw, or its guarantees and its
# measured quality are optimistic. The validation split is cut at random into three disjoint
# parts:
#
# - **calibrator** (40%): fits the calibrators;
# - **conformal** (40%): sets the threshold of the conformal predictor, and the abstention
#   threshold;
# - **tuning** (20%): chooses the RAPS parameters.
#
# The test split is used only to report. (keras_vc remembers which labels a calibrator or
# `tune_raps` was fitted on, and `SplitConformal.fit` warns if it gets the same ones.)

# %%
order = np.random.default_rng(0).permutation(len(data.y_val))
n_part = int(0.4 * len(order))
parts = {"calibrator": order[:n_part], "conformal": order[n_part:2 * n_part],
         "tuning": order[2 * n_part:]}
(z_fit, y_fit), (z_conf, y_conf), (z_tune, y_tune) = (
    (logits_val[index], data.y_val[index]) for index in parts.values())
print(", ".join(f"{name} {index.size}" for name, index in parts.items()),
      f"| test {y_test.size}")

# %% [markdown]
# ## 1. Calibrated probabilities
#
# Every calibrator maps logits to probabilities and is fitted by `fit(logits, labels)`:
#
# - `TemperatureScaling`: `softmax(z / T)`, one parameter; keeps the predicted class.
# - `VectorScaling`: `softmax(w * z + b)`, a scale and a bias per class (2K parameters).
# - `DirichletCalibration`: `softmax(W log p + b)`, a full K x K matrix (Kull et al., NeurIPS
#   2019); the ODIR penalty (`reg_lambda`, `reg_mu`) keeps its K^2 + K parameters from
#   overfitting a small split.
# - `IsotonicCalibration`: a monotone map of each class's probability (piecewise linear), then
#   renormalised (Zadrozny & Elkan, 2002); non-parametric, needs more data.
#
# All but temperature scaling can change the predicted class, so accuracy is reported too.
# **ECE** bins the top-class confidence; **classwise ECE** (`classwise_calibration_error`)
# bins every class's probability and averages over classes, so it also sees the probabilities
# of the classes that were not predicted, which prediction sets use.

# %%
calibrators = {
    "temperature": calibration.TemperatureScaling(),
    "vector": calibration.VectorScaling(),
    "Dirichlet (ODIR)": calibration.DirichletCalibration(reg_lambda=1e-2, reg_mu=1e-2),
    "isotonic": calibration.IsotonicCalibration(),
}
for calibrator in calibrators.values():
    calibrator.fit(z_fit, y_fit)

test_probs = {"uncalibrated": calibration.softmax(logits_test)}
test_probs.update({name: c.predict_proba(logits_test) for name, c in calibrators.items()})
print(f"temperature T = {calibrators['temperature'].temperature:.2f}\n")
print(f"{'test split':18}{'accuracy':>9}{'ECE':>8}{'cwECE':>8}{'NLL':>8}")
for name, probs in test_probs.items():
    print(f"{name:18}{metrics.accuracy(y_test, probs):9.3f}"
          f"{metrics.expected_calibration_error(y_test, probs):8.3f}"
          f"{metrics.classwise_calibration_error(y_test, probs):8.3f}"
          f"{metrics.negative_log_likelihood(y_test, probs):8.3f}")

# %% [markdown]
# Which calibrator wins depends on the data and on how much of it there is: the more parameters,
# the more held-out data a calibrator needs. Isotonic regression can give a class a probability
# of exactly 0, which NLL punishes hard when that class is the true one. Temperature scaling is
# the safe default and the one used below.

# %% [markdown]
# ## 2. Prediction sets with a coverage guarantee
#
# A conformal predictor turns probabilities into a **set** of labels. On the conformal split it
# computes a score `s(x, y)` for each point's true label (how unusual that label looks to the
# model), and takes the threshold `qhat` = the `ceil((n + 1)(1 - alpha))`-th smallest score. A
# new input's set is every label whose score is at most `qhat`. Three scores:
#
# - **LAC** `s = 1 - p_y`: the smallest sets on average; a set can be empty (so can the
#   randomised APS and RAPS sets), which says the input looks unlike any class.
# - **APS** (Romano et al., NeurIPS 2020): the probability mass of the labels ranked above `y`,
#   plus a random part of `p_y`; sets adapt to how hard the input is.
# - **RAPS** (Angelopoulos et al., ICLR 2021): APS plus a penalty `lam` per label beyond rank
#   `k_reg`, which trims the long tails of APS sets. `tune_raps` picks both on the tuning split.
#
# The conformal predictor takes probabilities from any model or calibrator. Calibration does not
# change the guarantee, only how small the sets are.

# %%
cal_probs, tune_probs, probs_test = (calibrators["temperature"].predict_proba(z)
                                     for z in (z_conf, z_tune, logits_test))
k_reg, lam = conformal.tune_raps(tune_probs, y_tune, alpha=ALPHA, seed=0)
print(f"RAPS parameters from the tuning split: k_reg = {k_reg}, lam = {lam}\n")

predictors = {
    "lac": conformal.SplitConformal(score="lac", alpha=ALPHA, seed=0),
    "aps": conformal.SplitConformal(score="aps", alpha=ALPHA, seed=0),
    "raps": conformal.SplitConformal(score="raps", alpha=ALPHA, seed=0, k_reg=k_reg, lam=lam),
}
sets = {}
print(f"{'':6}{'qhat':>7}{'coverage':>10}{'mean size':>11}{'worst class':>13}")
for name, predictor in predictors.items():
    predictor.fit(cal_probs, y_conf)
    sets[name] = predictor.predict(probs_test)
    per_class = metrics.class_conditional_coverage(y_test, sets[name])
    print(f"{name:6}{predictor.qhat:7.3f}{metrics.coverage(y_test, sets[name]):10.3f}"
          f"{metrics.mean_set_size(sets[name]):11.2f}"
          f"{per_class.worst:8.3f} ({data.class_names[per_class.worst_class]})")
n_cal = predictors["lac"].num_calibration
print(f"\ntarget coverage 1 - alpha = {1 - ALPHA:.3f}; with n = {n_cal} calibration points "
      f"the expected coverage lies in [{1 - ALPHA:.3f}, {1 - ALPHA + 1 / (n_cal + 1):.3f}]")

# %% [markdown]
# The left panel counts the set sizes. Size 1 is a confident answer; larger sets say which
# classes the model cannot tell apart for that input. The right panel shows the coverage of
# each true class.

# %%
figure, (left, right) = plt.subplots(1, 2, figsize=(11, 3.6))
sizes = np.arange(data.num_classes + 1)
width = 0.8 / len(sets)
for i, (name, mask) in enumerate(sets.items()):
    counts = np.bincount(mask.sum(axis=1), minlength=data.num_classes + 1)
    left.bar(sizes + (i - 1) * width, counts, width, label=name)
    right.bar(np.arange(data.num_classes) + (i - 1) * width,
              metrics.class_conditional_coverage(y_test, mask).per_class, width, label=name)
left.set(title="set sizes", xlabel="set size", ylabel="test inputs", xticks=sizes)
right.axhline(1 - ALPHA, color="black", linestyle="--", linewidth=1)
right.set(title="coverage per true class (dashed: 1 - alpha)", xlabel="true class",
          ylabel="coverage in the class", ylim=(0, 1.05), xticks=np.arange(data.num_classes))
right.set_xticklabels(data.class_names, rotation=45, ha="right")
left.legend()
plt.tight_layout()
plt.show()

# %% [markdown]
# ### What the guarantee says, and what it does not
#
# If the conformal and test points are **exchangeable** (for instance, drawn independently from
# the same distribution), then `P(y in C(x)) >= 1 - alpha`. The probability is over both the
# calibration points and the test point: it is **marginal**, an average over inputs and over
# the draw of the calibration split.
#
# - It is not a guarantee **per class**: a hard class can be covered far less than 90% while the
#   easy ones make up for it (the right panel; `class_conditional_coverage` reports the worst
#   class). Nor per input, nor per group of inputs.
# - It does not survive a **change of distribution**: new kinds of inputs, a new mix of classes.
# - One calibration split gives one coverage, which scatters around the target; the guarantee is
#   about the average over splits. The next cell re-draws the conformal and test points many
#   times and measures the coverage of LAC each time.

# %%
pool_probs = np.concatenate([cal_probs, probs_test])
pool_labels = np.concatenate([y_conf, y_test])
rng = np.random.default_rng(1)
draws = []
for _ in range(200):
    shuffled = rng.permutation(pool_labels.size)
    cal, test = shuffled[:n_cal], shuffled[n_cal:]
    predictor = conformal.SplitConformal(score="lac", alpha=ALPHA).fit(pool_probs[cal],
                                                                       pool_labels[cal])
    draws.append(metrics.coverage(pool_labels[test], predictor.predict(pool_probs[test])))
draws = np.array(draws)
print(f"LAC coverage over {draws.size} random splits: mean {draws.mean():.3f}, "
      f"5th-95th percentile [{np.percentile(draws, 5):.3f}, {np.percentile(draws, 95):.3f}], "
      f"below 1 - alpha in {np.mean(draws < 1 - ALPHA):.0%} of the splits")

# %% [markdown]
# ## 3. Abstention: answer only when confident
#
# A prediction set says "one of these". Abstention says "I don't know": the model answers only
# when its confidence (the largest probability) is above a threshold. The **risk-coverage
# curve** shows the trade-off: accepting the most confident fraction `c` of inputs (the
# *coverage*, a different use of the word), the *selective risk* is the error rate among them.
# Two summaries, lower is better: **AURC**, the area under that curve (Geifman et al., ICLR
# 2019), and **AUGRC**, the area under `c * risk`, the share of all inputs that are accepted
# *and* wrong (Traub et al., NeurIPS 2024). Both reward a confidence that ranks the errors
# last. Temperature scaling keeps every predicted class and changes the ranking little; the
# calibrators that change predictions change the errors too.

# %%
figure, ax = plt.subplots(figsize=(6, 4))
print(f"{'test split':18}{'AURC':>8}{'AUGRC':>8}")
for name, probs in test_probs.items():
    coverages, risks = metrics.risk_coverage_curve(y_test, probs)
    ax.plot(coverages, risks, label=name)
    print(f"{name:18}{metrics.aurc(y_test, probs):8.4f}{metrics.augrc(y_test, probs):8.4f}")
ax.axhline(TARGET_RISK, color="black", linestyle="--", linewidth=1, label="target risk")
ax.set(xlabel="coverage (fraction of inputs answered)", ylabel="selective risk (error rate)")
ax.legend()
plt.tight_layout()
plt.show()

# %% [markdown]
# ### A threshold for a target risk
#
# Choose the threshold on held-out data (the conformal split, with the temperature-scaled
# probabilities): the lowest confidence at which the error rate among the accepted inputs is
# still at most the target, which answers as many inputs as possible. Then apply it to the test
# split.

# %%
def threshold_for_risk(labels, probs, target_risk):
    """The lowest confidence threshold whose selective risk on (labels, probs) is <= target."""
    coverages, risks = metrics.risk_coverage_curve(labels, probs)
    feasible = np.flatnonzero(risks <= target_risk)
    if feasible.size == 0:
        return np.inf  # no threshold reaches the target: abstain on everything
    accepted = int(round(coverages[feasible[-1]] * labels.size))
    return np.sort(probs.max(axis=1))[::-1][accepted - 1]


def answered(labels, probs, threshold):
    accept = probs.max(axis=1) >= threshold
    errors = probs.argmax(axis=1) != labels
    risk = errors[accept].mean() if accept.any() else 0.0
    return f"answers {accept.mean():6.1%} of inputs, error rate among them {risk:6.2%}"


threshold = threshold_for_risk(y_conf, cal_probs, TARGET_RISK)
print(f"target risk {TARGET_RISK:.0%}: confidence threshold {threshold:.4f}")
print(f"conformal split: {answered(y_conf, cal_probs, threshold)}")
print(f"test split:      {answered(y_test, probs_test, threshold)}")

# %% [markdown]
# On the test split the error rate differs from the target: the threshold was chosen on one
# finite sample, and nothing bounds its risk on new data. Choose the target with room to spare, or use a
# risk-control procedure that does bound it, such as Geifman & El-Yaniv's selection with
# guaranteed risk (NeurIPS 2017) or Learn then Test (Angelopoulos et al., 2021).
#
# ## 4. Save and load
#
# A serving process needs the fitted state, not the data: `save(path)` writes the configuration
# and the fitted arrays into one `.npz` file, and `load(path)` restores them. The conformal
# predictor works on probabilities, so save the calibrator that produces them too. The
# randomised scores (APS, RAPS) draw one uniform number per input from a fixed stream of `seed`;
# `predict(probs, uniform=...)` takes your own draws.

# %%
with tempfile.TemporaryDirectory() as folder:
    calibrator_path = calibrators["temperature"].save(os.path.join(folder, "temperature"))
    predictor_path = predictors["raps"].save(os.path.join(folder, "raps"))
    print("saved:", os.path.basename(calibrator_path), os.path.basename(predictor_path))
    restored_calibrator = calibration.TemperatureScaling.load(calibrator_path)
    restored = conformal.SplitConformal.load(predictor_path)

print(restored.get_config(), f"qhat = {restored.qhat:.4f}")
restored_sets = restored.predict(restored_calibrator.predict_proba(logits_test))
print("same sets after loading:", np.array_equal(restored_sets, sets["raps"]))

# %% [markdown]
# ## What to remember
#
# - Fit every post-hoc step on its own held-out split, and report on the test split only.
# - Calibrate (`keras_vc.calibration`), then compare with ECE and classwise ECE; temperature
#   scaling is the baseline to beat.
# - `SplitConformal(score, alpha).fit(probs_cal, y_cal).predict(probs)` gives sets that contain
#   the label with probability at least `1 - alpha`, on average over inputs, if the data are
#   exchangeable; check `class_conditional_coverage` before promising more.
# - For abstention, read the risk-coverage curve (`aurc`, `augrc`) and pick the threshold on
#   held-out data; its test risk is an estimate, not a bound.
#
# More: [quickstart](colab:01_quickstart.ipynb) on calibration metrics,
# [serving](colab:05_serving.ipynb) on exporting a calibrated model.
