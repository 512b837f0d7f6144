# Source of tutorials/05_serving.ipynb, written by tutorials/build_notebooks.py.

# %% [markdown]
# # Serving a classifier that says how sure it is
#
# A model in production is asked more than "which class?". The caller also needs "how sure are
# you?" and "is this the kind of input you were trained on?". If the answers live in the
# training notebook, every client has to reimplement them (the softmax, the fitted temperature,
# the out-of-distribution score and its threshold) and they will drift apart.
# `keras_vc.export.export_for_serving` puts them **inside the exported graph**, so TensorFlow
# Serving returns them with every prediction and needs neither keras_vc nor Keras.
#
# This notebook trains a small classifier, calibrates it, picks an out-of-distribution (OOD)
# threshold, exports it, loads the export with plain TensorFlow the way a server does, and
# builds the REST and gRPC requests a client sends.

# %%
# Installs keras_vc in Colab (elsewhere it must already be installed). The tested versions
# (TensorFlow 2.21, Keras 3.15, TensorFlow Probability 0.25) are pinned in the repository's
# constraints.txt. tensorflow-serving-api holds the gRPC request classes used at the end.
import sys

if "google.colab" in sys.modules:
    %pip install -q keras-vc tensorflow-serving-api

# %%
import json
import logging
import os
import tempfile

import keras
import matplotlib.pyplot as plt
import numpy as np
import tensorflow as tf

import keras_vc
from keras_vc.data.tutorial import load_tutorial_data

logging.getLogger("tensorflow").setLevel(logging.ERROR)  # no retracing notices
# The test suite runs every tutorial at tiny settings; in Colab this is False.
FAST = os.environ.get("KERAS_VC_TUTORIAL_FAST") == "1"
EPOCHS = 2 if FAST else 8
keras.utils.set_random_seed(0)

# %% [markdown]
# ## The data
#
# In Colab the tutorials use [TensorFlow Datasets](https://www.tensorflow.org/datasets):
# Fashion-MNIST as the in-distribution data and MNIST digits as the out-of-distribution inputs
# (CIFAR-10 and CIFAR-100 when the runtime has a GPU). Where nothing can be downloaded, or with
# `KERAS_VC_OFFLINE=1`, `load_tutorial_data` switches at once to data that ships with the
# package: scikit-learn's 8x8 handwritten digits, with patches of photographs as OOD inputs.
# **The next cell says which one you got**; every number below depends on it.

# %%
data = load_tutorial_data(max_train=500 if FAST else 20000, max_eval=200 if FAST else 5000)
data

# %% [markdown]
# ## Train an ordinary classifier
#
# The model ends in a `Dense` layer **without** a softmax: it outputs logits. Keeping the softmax
# out of the model lets the export divide the logits by a temperature before the softmax (the
# next step), which is impossible once probabilities have been computed. A keras_vc head
# (`DistanceLogits`, `VariationalSoftmax`) exports the same way and carries its fitted
# temperature and its own OOD score itself; a later section shows one.

# %%
def make_classifier(head):
    return keras.Sequential([
        keras.Input(data.input_shape),
        keras.layers.Conv2D(32, 3, padding="same", activation="relu"),
        keras.layers.MaxPooling2D(),
        keras.layers.Conv2D(64, 3, padding="same", activation="relu"),
        keras.layers.MaxPooling2D(),
        keras.layers.Flatten(),
        keras.layers.Dense(128, activation="relu"),
        head,
    ])


model = make_classifier(keras.layers.Dense(data.num_classes))  # logits
model.compile(optimizer="adam",
              loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
              metrics=["accuracy"])
history = model.fit(data.x_train, data.y_train, validation_data=(data.x_val, data.y_val),
                    epochs=EPOCHS, batch_size=64, verbose=2)

# %% [markdown]
# ## Calibrate, then choose the OOD threshold, on validation data
#
# **Temperature.** A network trained with cross-entropy is usually over- or under-confident:
# among the inputs it answers with 90% confidence, far more or far fewer than 90% are right.
# Dividing the logits by one number `T` before the softmax fixes most of that without changing
# a single prediction (the largest logit stays the largest). `fit_temperature` finds the `T`
# that minimises the expected calibration error on the validation split.
#
# **Threshold.** The served `ood_score` (here the maximum softmax probability, the classic
# baseline) is higher for familiar inputs. To turn it into a yes/no flag we pick the threshold
# that keeps 95% of in-distribution validation inputs: by construction about 5% of normal traffic
# is flagged, and we then measure how much of the unfamiliar traffic is caught.
#
# Both are fitted on the **validation** split. Fitting them on the test split would make the
# test numbers below optimistic.

# %%
temperature = keras_vc.calibration.fit_temperature(model, (data.x_val, data.y_val))
print(f"temperature T = {temperature.temperature:.3f}; validation ECE "
      f"{temperature.value_at_one:.3f} at T = 1 -> {temperature.value:.3f}")
if temperature.at_bound:
    print("The fit hit a search bound (e.g. no validation errors): treat T with caution.")

threshold = keras_vc.export.fit_ood_threshold(model, data.x_val, tpr=0.95,
                                              temperature=temperature)
print(f"OOD threshold: inputs whose ood_score is below {threshold:.4f} are flagged")

# %% [markdown]
# ## Export
#
# TensorFlow Serving loads `<model base path>/<version>/`, so the export goes into a numbered
# folder; a retrained model goes into `2/` and the server switches to it.

# %%
export_dir = os.path.join(tempfile.mkdtemp(), "models", data.name, "1")
info = keras_vc.export.export_for_serving(model, export_dir, temperature=temperature,
                                          ood_threshold=threshold)
print("written to", info.path)
print("input:", info.input_name, info.input_shape, info.input_dtype)
for name, outputs in info.signatures.items():
    print(f"signature {name!r}: {', '.join(outputs)}")

# %% [markdown]
# ## Load it the way a server does
#
# `tf.saved_model.load` needs only TensorFlow: the softmax, the temperature, the score and the
# threshold are TensorFlow ops in the SavedModel. We send four in-distribution test inputs and
# four OOD inputs through the `serving_default` signature.
#
# | output | meaning |
# |---|---|
# | `probabilities` | `softmax(logits / T)`: the calibrated class probabilities |
# | `predicted_class` | their argmax |
# | `confidence` | the largest probability; once calibrated, the share of such answers right |
# | `entropy` | spread of the probabilities in nats: 0 = certain, log K = no idea |
# | `ood_score` | higher = more like the training data |
# | `is_ood` | `ood_score < threshold`: a flag to act on (ask a human, refuse, log) |

# %%
served = tf.saved_model.load(export_dir)
serve = served.signatures["serving_default"]
batch = np.concatenate([data.x_test[:4], data.x_ood[:4]]).astype("float32")
kinds = ["test"] * 4 + ["OOD"] * 4
outputs = {name: value.numpy() for name, value in serve(inputs=tf.constant(batch)).items()}

print(f"{'input':6} {'label':>5} {'class':>5} {'confidence':>10} {'entropy':>8} "
      f"{'ood_score':>9} {'is_ood':>6}")
for i, kind in enumerate(kinds):
    label = data.y_test[i] if kind == "test" else "-"
    print(f"{kind:6} {label!s:>5} {outputs['predicted_class'][i]:5d} "
          f"{outputs['confidence'][i]:10.3f} {outputs['entropy'][i]:8.3f} "
          f"{outputs['ood_score'][i]:9.3f} {outputs['is_ood'][i]!s:>6}")

# %%
figure, axes = plt.subplots(1, len(batch), figsize=(1.6 * len(batch), 2.2))
for ax, image, kind, cls, flag in zip(axes, batch, kinds, outputs["predicted_class"],
                                      outputs["is_ood"]):
    ax.imshow(image.squeeze(), cmap="gray" if image.shape[-1] == 1 else None)
    ax.set_title(f"{kind}\nclass {cls}" + ("\nflagged" if flag else ""), fontsize=9,
                 color="crimson" if flag else "black")
    ax.axis("off")
plt.tight_layout()
plt.show()

# %% [markdown]
# The exported graph computes exactly what `keras_vc.export.serving_outputs` computes in
# Python. That function is handy in tests of the code that consumes the outputs:

# %%
in_process = keras_vc.export.serving_outputs(model, batch, temperature=temperature,
                                             ood_threshold=threshold)
for name, value in in_process.items():
    np.testing.assert_allclose(outputs[name], value, rtol=1e-5, atol=1e-6)
print("the SavedModel and serving_outputs agree on", ", ".join(in_process))

# %% [markdown]
# ## How good is the flag?
#
# On the whole test split and the whole OOD set: the histogram shows the two score
# distributions and the threshold. The share of test inputs flagged should be close to the 5%
# we chose on validation data; the share of OOD inputs caught is what the score is worth. The
# maximum softmax probability is a weak OOD score: a classifier can be confidently wrong on
# inputs unlike anything it has seen. A better score is one layer away; see the next section.

# %%
def serve_all(signature, x, batch_size=512):
    """Every output of an exported signature for all of ``x``, in batches."""
    parts = [signature(inputs=tf.constant(x[i:i + batch_size].astype("float32")))
             for i in range(0, len(x), batch_size)]
    return {name: np.concatenate([part[name].numpy() for part in parts]) for name in parts[0]}


test_out, ood_out = serve_all(serve, data.x_test), serve_all(serve, data.x_ood)
report = keras_vc.metrics.ood_metrics(test_out["ood_score"], ood_out["ood_score"])
print(f"test inputs flagged: {test_out['is_ood'].mean():.1%}   "
      f"OOD inputs flagged: {ood_out['is_ood'].mean():.1%}   "
      f"AUROC {report['auroc']:.3f}   FPR at 95% TPR {report['fpr_at_95_tpr']:.3f}")

bins = np.linspace(min(test_out["ood_score"].min(), ood_out["ood_score"].min()), 1, 40)
plt.figure(figsize=(6, 3))
plt.hist(test_out["ood_score"], bins=bins, alpha=0.6, label=f"{data.name} test")
plt.hist(ood_out["ood_score"], bins=bins, alpha=0.6, label=f"{data.ood_name} (OOD)")
plt.axvline(threshold, color="black", linestyle="--", label="threshold")
plt.xlabel("ood_score (maximum softmax probability)")
plt.ylabel("inputs")
plt.legend()
plt.tight_layout()
plt.show()

# %% [markdown]
# ## Version 2: the same export with a keras_vc head
#
# Replace the last layer by `DistanceLogits` (DisMax, see the
# [DisMax and IsoMax+ tutorial](colab:02_dismax_isomax.ipynb)) and train it with its loss. Two
# things change at export:
#
# - `fit_temperature` writes the temperature into the layer, so `export_for_serving` gets no
#   `temperature=`: the head applies its own.
# - `ood_score="auto"` (the default) serves the head's recommended score, MMLES for DisMax,
#   instead of the maximum softmax probability. It is computed from distances to the class
#   prototypes and usually separates unfamiliar inputs far better.
#
# The client code does not change: same input, same output names. The export goes into version
# folder `2`, which TensorFlow Serving picks up next to (and in place of) version `1`.

# %%
dismax = make_classifier(keras_vc.layers.DistanceLogits(data.num_classes, mode="dismax"))
dismax.compile(optimizer="adam", loss=keras_vc.losses.EntropicCrossEntropy())
dismax.fit(data.x_train, data.y_train, epochs=EPOCHS, batch_size=64, verbose=2)

keras_vc.calibration.fit_temperature(dismax, (data.x_val, data.y_val))  # into the layer
dismax_threshold = keras_vc.export.fit_ood_threshold(dismax, data.x_val, tpr=0.95)
dismax_info = keras_vc.export.export_for_serving(
    dismax, os.path.join(os.path.dirname(export_dir), "2"), ood_threshold=dismax_threshold)
print(f"served score: {dismax_info.ood_score}; temperature {dismax_info.temperature:.3f} "
      f"applied by the head: {dismax_info.temperature_applied_by_head}")

dismax_serve = tf.saved_model.load(dismax_info.path).signatures["serving_default"]
for name, signature in (("version 1, softmax", serve), ("version 2, DisMax", dismax_serve)):
    test_flags, ood_flags = (serve_all(signature, x) for x in (data.x_test, data.x_ood))
    report = keras_vc.metrics.ood_metrics(test_flags["ood_score"], ood_flags["ood_score"])
    print(f"{name:19} test inputs flagged {test_flags['is_ood'].mean():6.1%}   "
          f"OOD inputs flagged {ood_flags['is_ood'].mean():6.1%}   AUROC {report['auroc']:.3f}")

# %% [markdown]
# ## The REST request
#
# With the server running (see the end), a client POSTs JSON to
# `http://HOST:8501/v1/models/MODEL:predict`. In the *row* format each example is one entry of
# `instances`, a nested list of the input's shape. Here is the body for two test inputs, and the
# response the server sends back, built from the outputs of the loaded SavedModel: one object per
# example, keyed by output name.

# %%
request_body = {"signature_name": "serving_default", "instances": batch[:2].tolist()}
body = json.dumps(request_body)
print(f"request: {len(body)} bytes, {len(request_body['instances'])} instances of shape "
      f"{np.shape(request_body['instances'][0])}")

reply = serve(inputs=tf.constant(np.asarray(request_body["instances"], dtype="float32")))


def json_value(value):
    """One output of one example as the server writes it (floats shortened for reading)."""
    if value.dtype.kind == "f":
        return np.round(value.astype("float64"), 4).tolist()
    return value.tolist()


response = {"predictions": [
    {name: json_value(value.numpy()[i]) for name, value in reply.items()}
    for i in range(len(request_body["instances"]))
]}
print('{"predictions": [\n  '
      + ",\n  ".join(json.dumps(example) for example in response["predictions"]) + "\n]}")

# %% [markdown]
# The *column* format, `{"inputs": {"inputs": [...]}}`, gets
# `{"outputs": {"probabilities": [[...], ...], "predicted_class": [...], ...}}` instead.
#
# ## The gRPC request
#
# gRPC sends the input as a `TensorProto` in a `PredictRequest` (package
# `tensorflow-serving-api`; the client needs no keras_vc). The input must be named `inputs`,
# the name the export gives it. We build the request, serialise it as it would travel, and do
# what the server does with it: decode the tensor and run the signature.

# %%
from tensorflow_serving.apis import predict_pb2

request = predict_pb2.PredictRequest()
request.model_spec.name = data.name
request.model_spec.signature_name = "serving_default"
request.inputs["inputs"].CopyFrom(tf.make_tensor_proto(batch, dtype=tf.float32))
wire = request.SerializeToString()
print(f"PredictRequest: {len(wire)} bytes, input tensors {list(request.inputs)}")

received = predict_pb2.PredictRequest.FromString(wire)
x = tf.make_ndarray(received.inputs[info.input_name])
grpc_outputs = serve(inputs=tf.constant(x))
print("is_ood:", grpc_outputs["is_ood"].numpy())

# %% [markdown]
# Against a real server the client sends it with a stub:
#
# ```python
# import grpc
# from tensorflow_serving.apis import prediction_service_pb2_grpc
#
# channel = grpc.insecure_channel("localhost:8500")
# stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
# response = stub.Predict(request, timeout=10.0)
# outputs = {name: tf.make_ndarray(t) for name, t in response.outputs.items()}
# ```
#
# ## Run TensorFlow Serving
#
# On a machine with Docker (not in Colab), copy the `models/<name>` folder and start the server;
# port 8500 is gRPC, 8501 REST:
#
# ```bash
# docker run --rm -p 8500:8500 -p 8501:8501 \
#   --mount type=bind,source="$PWD/models/fashion_mnist",target=/models/fashion_mnist \
#   -e MODEL_NAME=fashion_mnist -t tensorflow/serving
# curl -s -X POST http://localhost:8501/v1/models/fashion_mnist:predict -d @request.json
# ```
#
# ## What to remember
#
# - Export logits models; the temperature, the score and the threshold go into the graph.
# - Fit the temperature and the threshold on validation data, never on the test split.
# - `is_ood` flags about `1 - tpr` of normal traffic by design; how much unusual traffic it
#   catches depends on the score, which is where the keras_vc heads help.
# - A `VariationalSoftmax` head can also export a `serve_mc` signature
#   (`export_for_serving(..., mc_samples=10)`) that averages the probabilities over latent draws.
#
# More: [docs/serving.md](github:docs/serving.md).
