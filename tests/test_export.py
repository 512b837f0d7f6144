"""Serving export: the SavedModel, reloaded with TensorFlow alone, serves what keras_vc computes.

Four models are exported once per module: a plain Dense-logits output with a temperature
argument, a Dense + softmax output (probabilities), and two stand-in heads that follow the head
protocol of CONTRIBUTING.md (a distance head with its own ``temperature`` variable and
recommended score, and a latent head with ``has_latent = True`` and ``num_samples``). Every served
output is compared with an independent NumPy computation from ``model.predict``. One fresh
Python process, in which keras_vc (and Keras) cannot be imported, loads all four exports; one
``saved_model_cli show --all`` runs beside it.
"""

import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
from keras import ops

from keras_vc import calibration
from keras_vc import conformal
from keras_vc import detectors
from keras_vc import export
from keras_vc.layers import head as head_lib
from model_fixtures import subclassed_classifier

pytestmark = pytest.mark.tensorflow_only("SavedModel export and tf.saved_model.load")

NUM_CLASSES = 4
INPUT_DIM = 6
MC_SAMPLES = 16
ATOL = 1e-5


class StandInDistanceHead(head_lib.ClassifierHead):
    """Head protocol stand-in: logits = -squared distance to prototypes / temperature."""

    @property
    def recommended_ood_score(self):
        return "max_logit"

    def build(self, input_shape):
        input_shape = self.check_input_shape(input_shape)
        self.prototypes = self.add_float32_weight(
            "prototypes", (self.num_classes, input_shape[-1]), "random_normal")
        self.build_temperature()

    def call(self, inputs, training=None):
        distances = ops.sum(ops.square(inputs[:, None, :] - self.prototypes[None]), axis=-1)
        return self.finalize_logits(-distances, training)


class StandInLatentHead(head_lib.ClassifierHead):
    """Head protocol stand-in with a Gaussian latent: ``has_latent`` and ``num_samples``."""

    has_latent = True

    def __init__(self, num_classes, latent_dim=3, seed=7, **kwargs):
        super().__init__(num_classes, **kwargs)
        self.latent_dim = latent_dim
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    @property
    def recommended_ood_score(self):
        return "negative_entropy"

    def build(self, input_shape):
        input_shape = self.check_input_shape(input_shape)
        self.mean = keras.layers.Dense(self.latent_dim)
        self.log_variance = keras.layers.Dense(self.latent_dim, bias_initializer="ones")
        self.decoder = keras.layers.Dense(self.num_classes, kernel_initializer="random_normal")
        self.mean.build(input_shape)
        self.log_variance.build(input_shape)
        self.decoder.build(input_shape[:-1] + (self.latent_dim,))
        self.build_temperature()

    def call(self, inputs, training=None, num_samples=None):
        mean = self.mean(inputs)
        if num_samples is None:
            return self.finalize_logits(self.decoder(mean), training)
        std = ops.exp(0.5 * self.log_variance(inputs))
        noise = keras.random.normal((num_samples,) + tuple(ops.shape(mean)),
                                    seed=self.seed_generator)
        logits = self.decoder(mean[None] + std[None] * noise) / self.temperature
        log_probs = ops.log_softmax(logits, axis=-1)
        return ops.logsumexp(log_probs, axis=0) - np.log(num_samples)


class LatentHeadWithoutNumSamples(StandInLatentHead):
    def call(self, inputs, training=None):
        return self.decoder(self.mean(inputs))


def _classifier(head, hidden=8):
    inputs = keras.Input((INPUT_DIM,))
    features = keras.layers.Dense(hidden, activation="relu")(inputs)
    return keras.Model(inputs, head(features))


def _np_softmax(logits):
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def _np_reference(logits, score, threshold=None, head_temperature=1.0):
    """Every serving output from served logits, in float64 NumPy.

    A head's OOD score reads its logits at temperature 1 (``head_temperature`` undone)."""
    logits = np.asarray(logits, dtype=np.float64)
    score_logits = logits * head_temperature
    probs = _np_softmax(logits)
    log_probs = np.log(probs)
    reference = {
        "probabilities": probs,
        "predicted_class": probs.argmax(axis=1),
        "confidence": probs.max(axis=1),
        "entropy": -(probs * log_probs).sum(axis=1),
        "ood_score": {
            "msp": lambda z: _np_softmax(z).max(axis=1),
            "max_logit": lambda z: z.max(axis=1),
            "negative_entropy": lambda z: (_np_softmax(z) * np.log(_np_softmax(z))).sum(axis=1),
            "energy": lambda z: np.log(np.exp(z).sum(axis=1)),
        }[score](score_logits),
    }
    if threshold is not None:
        reference["is_ood"] = reference["ood_score"] < threshold
    return reference


def _np_calibrated_reference(probs, logits, score, sets, head_temperature=1.0):
    """Serving outputs of a calibrated export: from the calibrated probabilities, the OOD score
    from the (uncalibrated) served logits, and the expected prediction sets."""
    reference = _np_reference(logits, score, head_temperature=head_temperature)
    probs = np.asarray(probs, dtype=np.float64)
    safe = np.where(probs > 0, probs, 1.0)
    reference.update(probabilities=probs, predicted_class=probs.argmax(axis=1),
                     confidence=probs.max(axis=1), entropy=-(probs * np.log(safe)).sum(axis=1),
                     prediction_set=sets, set_size=sets.sum(axis=1))
    return reference


def _assert_served(actual, case, where):
    """_assert_outputs, except that a randomised set is checked against its bounds: with
    ``U ~ Uniform[0, 1]`` the set lies between the sets at ``U = 1`` (smallest) and ``U = 0``."""
    actual = dict(actual)
    expected = dict(case["reference"])
    if "near_qhat" in case:
        sets = np.asarray(actual.pop("prediction_set"))
        reference = expected.pop("prediction_set")
        far = ~case["near_qhat"]
        np.testing.assert_array_equal(sets[far], reference[far], err_msg=where)
        np.testing.assert_array_equal(actual.pop("set_size"), sets.sum(axis=1), err_msg=where)
        expected.pop("set_size")
    if "set_bounds" in case:
        smallest, largest = case["set_bounds"]
        sets = np.asarray(actual.pop("prediction_set"))
        assert sets.dtype == np.bool_ and sets.shape == smallest.shape, where
        assert not (sets & ~largest).any() and not (smallest & ~sets).any(), where
        np.testing.assert_array_equal(actual.pop("set_size"), sets.sum(axis=1), err_msg=where)
        assert (smallest != largest).any()  # the bounds leave room for the draw to matter
    _assert_outputs(actual, expected, where)


def _assert_outputs(actual, expected, where):
    assert sorted(actual) == sorted(expected), f"{where}: outputs {sorted(actual)}"
    for name, value in expected.items():
        value = np.asarray(value)
        got = np.asarray(actual[name])
        assert got.shape == value.shape, f"{where}/{name}: shape {got.shape} != {value.shape}"
        if value.dtype.kind == "f":
            np.testing.assert_allclose(got, value, rtol=1e-5, atol=ATOL,
                                       err_msg=f"{where}/{name}")
        else:
            np.testing.assert_array_equal(got, value, err_msg=f"{where}/{name}")


def _np_mahalanobis(train, labels, test, num_classes):
    """max_k -(h - mu_k)^T pinv(Sigma) (h - mu_k), Sigma the shared covariance over N."""
    means = np.stack([train[labels == k].mean(axis=0) for k in range(num_classes)])
    centred = train - means[labels]
    precision = np.linalg.pinv(centred.T @ centred / len(train), rcond=1e-10, hermitian=True)
    diff = test[:, None, :] - means[None]
    return -np.einsum("nkd,de,nke->nk", diff, precision, diff).min(axis=1)


def _np_knn(train, test, k):
    """Minus the distance to the k-th nearest L2-normalised training feature."""
    train = train / np.linalg.norm(train, axis=1, keepdims=True)
    test = test / np.linalg.norm(test, axis=1, keepdims=True)
    distances = np.linalg.norm(test[:, None, :] - train[None], axis=-1)
    return -np.sort(distances, axis=1)[:, k - 1]


def _hidden(model, x):
    """Activations of the layer before the head (float64)."""
    return keras.Model(model.inputs[0], model.layers[-2].output).predict(
        x, verbose=0).astype(np.float64)


def _threshold_by_hand(values, tpr):
    ordered = np.sort(np.asarray(values, dtype=np.float64))[::-1]
    return ordered[int(np.ceil(tpr * ordered.size - 1e-9)) - 1]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """Exports the four models; returns name -> dict(info, x, reference[, mc_reference])."""
    keras.utils.set_random_seed(0)
    root = tmp_path_factory.mktemp("serving")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, INPUT_DIM)).astype("float32")
    x_val = rng.normal(size=(60, INPUT_DIM)).astype("float32")
    cases = {}

    # (a) Dense logits + a temperature argument + MSP threshold.
    dense = _classifier(keras.layers.Dense(NUM_CLASSES))
    threshold = export.fit_ood_threshold(dense, x_val, temperature=1.7)
    logits_val = dense.predict(x_val, verbose=0) / 1.7
    np.testing.assert_allclose(
        threshold, _threshold_by_hand(_np_softmax(logits_val).max(axis=1), 0.95), rtol=1e-6)
    info = export.export_for_serving(dense, root / "dense" / "1", temperature=1.7,
                                     ood_threshold=threshold)
    cases["dense"] = dict(info=info, reference=_np_reference(
        dense.predict(x, verbose=0) / 1.7, "msp", threshold))

    # (b) Dense + softmax: probabilities detected, a TemperatureResult, a named score.
    softmax = _classifier(keras.layers.Dense(NUM_CLASSES, activation="softmax"))
    probs_val = softmax.predict(x_val, verbose=0)
    fitted = calibration.find_temperature(np.log(probs_val), rng.integers(0, NUM_CLASSES, 60))
    info = export.export_for_serving(softmax, root / "softmax" / "1", ood_score="energy",
                                     temperature=fitted)
    cases["softmax"] = dict(info=info, reference=_np_reference(
        np.log(softmax.predict(x, verbose=0)) / fitted.temperature, "energy"))

    # (c) Distance head owning its temperature and recommending its own score.
    distance = _classifier(StandInDistanceHead(NUM_CLASSES))
    distance.layers[-1].temperature.assign(1.3)
    threshold = export.fit_ood_threshold(distance, x_val, tpr=0.9)
    info = export.export_for_serving(distance, root / "distance" / "1", ood_threshold=threshold)
    cases["distance"] = dict(info=info, reference=_np_reference(
        distance.predict(x, verbose=0), "max_logit", threshold, head_temperature=1.3))

    # (d) Latent head: default signature plus the Monte Carlo signature.
    latent = _classifier(StandInLatentHead(NUM_CLASSES))
    head = latent.layers[-1]
    head.temperature.assign(0.8)
    threshold = export.fit_ood_threshold(latent, x_val, mc_samples=MC_SAMPLES)
    features = keras.Model(latent.inputs[0], head.input)
    state = head.seed_generator.state.numpy()
    mc_log_probs = ops.convert_to_numpy(
        head(features(x), num_samples=MC_SAMPLES))  # the draws the SavedModel will make first
    head.seed_generator.state.assign(state)
    info = export.export_for_serving(latent, root / "latent" / "1", ood_threshold=threshold,
                                     mc_samples=MC_SAMPLES)
    cases["latent"] = dict(
        info=info,
        reference=_np_reference(latent.predict(x, verbose=0), "negative_entropy", threshold,
                                head_temperature=0.8),
        mc_reference=_np_reference(mc_log_probs, "negative_entropy", threshold,
                                   head_temperature=0.8),
        model=latent, seed_state=state)
    for name, case in cases.items():
        case["x"] = x
        case["model"] = case.get("model", {"dense": dense, "softmax": softmax,
                                           "distance": distance}.get(name))

    # Calibrators and conformal sets; calibration and conformal splits are disjoint.
    cal_rng = np.random.default_rng(2)
    x_fit, x_conf = (cal_rng.normal(size=(n, INPUT_DIM)).astype("float32") for n in (80, 60))
    y_fit, y_conf = (cal_rng.integers(0, NUM_CLASSES, n) for n in (80, 60))

    # (e) A head owning its temperature (kept at 1.3) + vector scaling of its outputs +
    # non-randomised APS.
    vector = calibration.VectorScaling().fit(distance.predict(x_fit, verbose=0), y_fit)
    # Labels that follow the model keep qhat inside (0, 1): a qhat at the full mass 1.0 would be
    # the float32 tie of the docstring.
    conf_probs = vector.predict_proba(distance.predict(x_conf, verbose=0))
    aps = conformal.SplitConformal("aps", alpha=0.2, randomized=False).fit(
        conf_probs, conf_probs.argmax(axis=1))
    info = export.export_for_serving(distance, root / "vector" / "1", calibrator=vector,
                                     conformal=aps)
    logits = distance.predict(x, verbose=0)
    probs = vector.predict_proba(logits)
    cases["vector"] = dict(info=info, model=distance, calibrator=vector, conformal=aps,
                           reference=_np_calibrated_reference(probs, logits, "max_logit",
                                                              aps.predict(probs),
                                                              head_temperature=1.3))

    # (f) Dense logits + isotonic regression + LAC. Isotonic regression is flat between knots:
    # many rows share a probability, and a LAC score can sit exactly on qhat, where the float32
    # graph and the float64 NumPy may disagree (the documented tie caveat). The test checks the
    # sets of the served probabilities away from qhat and the size rule everywhere.
    isotonic = calibration.IsotonicCalibration().fit(dense.predict(x_fit, verbose=0), y_fit)
    lac = conformal.SplitConformal("lac", alpha=0.2).fit(
        isotonic.predict_proba(dense.predict(x_conf, verbose=0)), y_conf)
    info = export.export_for_serving(dense, root / "isotonic" / "1", calibrator=isotonic,
                                     conformal=lac)
    logits = dense.predict(x, verbose=0)
    probs = isotonic.predict_proba(logits)
    near_qhat = np.abs(1.0 - probs - lac.qhat) < 1e-6
    cases["isotonic"] = dict(info=info, model=dense, calibrator=isotonic, conformal=lac,
                             near_qhat=near_qhat,
                             reference=_np_calibrated_reference(probs, logits, "msp",
                                                                lac.predict(probs)))

    # (g) Softmax output + temperature + randomised APS: uniforms drawn in the graph.
    logits = np.log(softmax.predict(x_conf, verbose=0)) / fitted.temperature
    randomised = conformal.SplitConformal("aps", alpha=0.2, seed=3).fit(_np_softmax(logits),
                                                                       y_conf)
    info = export.export_for_serving(softmax, root / "randomised" / "1", ood_score="energy",
                                     temperature=fitted, conformal=randomised)
    probs = cases["softmax"]["reference"]["probabilities"]
    cases["randomised"] = dict(
        info=info, model=softmax, conformal=randomised, reference=cases["softmax"]["reference"],
        set_bounds=(randomised.predict(probs, uniform=np.ones(len(x))),
                    randomised.predict(probs, uniform=np.zeros(len(x)))))

    # (h) Dense logits + temperature + Mahalanobis on the head's input (layer=None), built on
    # the model: the served score is the detector's, the temperature moves only the
    # probabilities.
    mahalanobis = detectors.Mahalanobis(dense).fit(x_fit, y_fit)
    threshold = export.fit_ood_threshold(dense, x_val, ood_score=mahalanobis, temperature=1.7)
    np.testing.assert_allclose(
        threshold, _threshold_by_hand(mahalanobis.score(x_val), 0.95), rtol=1e-6)
    info = export.export_for_serving(dense, root / "mahalanobis" / "1", ood_score=mahalanobis,
                                     ood_threshold=threshold, temperature=1.7)
    scores = mahalanobis.score(x)
    np.testing.assert_allclose(scores, _np_mahalanobis(_hidden(dense, x_fit), y_fit,
                                                       _hidden(dense, x), NUM_CLASSES),
                               rtol=1e-4, atol=1e-4)
    reference = _np_reference(dense.predict(x, verbose=0) / 1.7, "msp")
    reference.update(ood_score=scores, is_ood=scores < threshold)
    cases["mahalanobis"] = dict(info=info, model=dense, detector=mahalanobis,
                                reference=reference)

    # (i) Softmax output + KNN fitted on features without a model (fit_features), on a named
    # layer: the export attaches it to the model (as load(path, model) would).
    layer = softmax.layers[-2].name
    knn = detectors.KNN(layer=layer, k=5).fit_features(_hidden(softmax, x_fit))
    threshold = export.fit_ood_threshold(softmax, x_val, ood_score=knn)
    np.testing.assert_allclose(
        threshold, _threshold_by_hand(knn.score_features(_hidden(softmax, x_val)), 0.95),
        rtol=1e-6)
    info = export.export_for_serving(softmax, root / "knn" / "1", ood_score=knn,
                                     ood_threshold=threshold)
    assert knn.model is None  # the user's detector is left as it was
    scores = knn.score_features(_hidden(softmax, x))
    np.testing.assert_allclose(scores, _np_knn(_hidden(softmax, x_fit), _hidden(softmax, x), 5),
                               rtol=1e-4, atol=1e-5)
    reference = _np_reference(np.log(softmax.predict(x, verbose=0)), "msp")
    reference.update(ood_score=scores, is_ood=scores < threshold)
    assert 0 < reference["is_ood"].sum() < len(x)  # the threshold splits the test inputs
    cases["knn"] = dict(info=info, model=softmax, detector=knn, reference=reference)
    for case in cases.values():
        case["x"] = x
    return cases


FRESH_PROCESS_SCRIPT = textwrap.dedent("""
    import json, sys
    sys.modules["keras_vc"] = None   # the server side must not need keras_vc ...
    sys.modules["keras"] = None      # ... nor Keras
    try:
        import keras_vc
    except ImportError:
        pass
    else:
        raise SystemExit("keras_vc could be imported")
    import numpy as np
    import tensorflow as tf

    manifest = json.load(open(sys.argv[1]))
    report = {}
    for name, entry in manifest.items():
        loaded = tf.saved_model.load(entry["path"])
        x = tf.constant(np.load(entry["x"]))
        report[name] = {}
        for signature_name in entry["signatures"]:
            signature = loaded.signatures[signature_name]
            specs = signature.structured_input_signature[1]
            calls = 2 if signature_name == "serve_mc" else 1
            outputs = [signature(inputs=x) for _ in range(calls)]
            for call, result in enumerate(outputs):
                np.savez(f"{entry['out']}_{signature_name}_{call}.npz",
                         **{key: value.numpy() for key, value in result.items()})
            report[name][signature_name] = {
                "inputs": {key: [spec.shape.as_list(), spec.dtype.name]
                           for key, spec in specs.items()},
                "outputs": {key: [spec.shape.as_list(), spec.dtype.name]
                            for key, spec in signature.structured_outputs.items()},
            }
    report["modules"] = sorted(m for m in sys.modules
                               if m.split(".")[0] in ("keras", "keras_vc")
                               and sys.modules[m] is not None)
    json.dump(report, open(sys.argv[2], "w"))
""")


def _saved_model_cli():
    binary = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    if os.path.exists(binary):
        return [binary]
    return [sys.executable, "-m", "tensorflow.python.tools.saved_model_cli"]


@pytest.fixture(scope="module")
def fresh_process(exported, tmp_path_factory):
    """Runs the loader in a fresh process and saved_model_cli beside it; returns their results."""
    work = tmp_path_factory.mktemp("fresh")
    manifest = {}
    for name, case in exported.items():
        np.save(work / f"{name}_x.npy", case["x"])
        manifest[name] = {"path": str(case["info"].path), "x": str(work / f"{name}_x.npy"),
                          "out": str(work / name), "signatures": sorted(case["info"].signatures)}
    (work / "manifest.json").write_text(json.dumps(manifest))
    (work / "load.py").write_text(FRESH_PROCESS_SCRIPT)
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    cli = subprocess.Popen(_saved_model_cli() + ["show", "--all", "--dir",
                                                 str(exported["latent"]["info"].path)],
                           cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True)
    # -I: isolated mode, no PYTHONPATH, no user site, not the repository on sys.path.
    loader = subprocess.run([sys.executable, "-I", str(work / "load.py"),
                             str(work / "manifest.json"), str(work / "report.json")],
                            cwd=work, env=env, capture_output=True, text=True, timeout=300)
    cli_out, cli_err = cli.communicate(timeout=300)
    assert loader.returncode == 0, loader.stderr[-3000:]
    assert cli.returncode == 0, cli_err[-3000:]
    report = json.loads((work / "report.json").read_text())

    def served(name, signature, call=0):
        with np.load(work / f"{name}_{signature}_{call}.npz") as data:
            return dict(data)

    return dict(report=report, served=served, cli=cli_out)


@pytest.mark.parametrize("name", ["dense", "softmax", "distance", "latent", "vector",
                                  "isotonic", "randomised", "mahalanobis", "knn"])
def test_fresh_process_serves_the_in_process_outputs(exported, fresh_process, name):
    case = exported[name]
    assert fresh_process["report"]["modules"] == []
    for signature in ("serving_default", "serve"):
        _assert_served(fresh_process["served"](name, signature), case, f"{name}:{signature}")


def test_fresh_process_signature_inputs_and_outputs(exported, fresh_process):
    dtypes = {"probabilities": "float32", "predicted_class": "int64", "confidence": "float32",
              "entropy": "float32", "ood_score": "float32", "is_ood": "bool",
              "prediction_set": "bool", "set_size": "int32"}
    for name, case in exported.items():
        signatures = fresh_process["report"][name]
        assert sorted(signatures) == sorted(case["info"].signatures)
        for signature_name, signature in signatures.items():
            assert signature["inputs"] == {"inputs": [[None, INPUT_DIM], "float32"]}
            expected = case["info"].signatures[signature_name]
            assert sorted(signature["outputs"]) == sorted(expected)
            for output, (shape, dtype) in signature["outputs"].items():
                assert dtype == dtypes[output], (name, output)
                assert shape == ([None, NUM_CLASSES] if output in ("probabilities", "prediction_set")
                                 else [None])


def test_monte_carlo_signature_averages_fresh_latent_draws(exported, fresh_process):
    case = exported["latent"]
    first = fresh_process["served"]("latent", "serve_mc", 0)
    second = fresh_process["served"]("latent", "serve_mc", 1)
    # The first request uses the seed state saved at export: the draws made in-process.
    _assert_outputs(first, case["mc_reference"], "latent:serve_mc")
    # Every request draws new latents ...
    assert np.abs(first["probabilities"] - second["probabilities"]).max() > 1e-4
    # ... and the average differs from the deterministic (latent mean) signature.
    default = fresh_process["served"]("latent", "serving_default")
    assert np.abs(first["probabilities"] - default["probabilities"]).max() > 1e-3


def test_serving_outputs_matches_numpy_in_process(exported):
    for name, case in exported.items():
        info = case["info"]
        temperature = (None if info.temperature_applied_by_head or info.calibrator
                       else info.temperature)
        score = case.get("detector",
                         "auto" if info.temperature_applied_by_head else info.ood_score)
        outputs = export.serving_outputs(case["model"], case["x"], ood_score=score,
                                         ood_threshold=info.ood_threshold,
                                         temperature=temperature, batch_size=7,
                                         calibrator=case.get("calibrator"),
                                         conformal=case.get("conformal"))
        _assert_served(outputs, case, f"{name}: serving_outputs")
    latent = exported["latent"]
    latent["model"].layers[-1].seed_generator.state.assign(latent["seed_state"])
    outputs = export.serving_outputs(latent["model"], latent["x"], mc_samples=MC_SAMPLES,
                                     ood_threshold=latent["info"].ood_threshold)
    _assert_outputs(outputs, latent["mc_reference"], "latent: serving_outputs(mc_samples)")


def test_export_description(exported):
    dense, softmax = exported["dense"]["info"], exported["softmax"]["info"]
    distance, latent = exported["distance"]["info"], exported["latent"]["info"]
    assert (dense.output_kind, softmax.output_kind) == ("logits", "probabilities")
    assert (dense.temperature, dense.temperature_applied_by_head) == (1.7, False)
    assert (distance.temperature, distance.temperature_applied_by_head) == (
        pytest.approx(1.3), True)
    assert (dense.ood_score, softmax.ood_score, distance.ood_score, latent.ood_score) == (
        "max_probability", "energy", "max_logit", "negative_entropy")
    assert softmax.signatures["serving_default"] == (
        "probabilities", "predicted_class", "confidence", "entropy", "ood_score")
    assert sorted(latent.signatures) == ["serve", "serve_mc", "serving_default"]
    assert latent.signatures["serve_mc"][-1] == "is_ood" and latent.mc_samples == MC_SAMPLES
    assert dense.input_name == "inputs" and dense.input_shape == (None, INPUT_DIM)
    assert (dense.calibrator, dense.conformal) == (None, None)
    vector, isotonic = exported["vector"]["info"], exported["isotonic"]["info"]
    randomised = exported["randomised"]["info"]
    assert (vector.calibrator, vector.conformal) == ("VectorScaling", "aps(alpha=0.2)")
    assert (isotonic.calibrator, isotonic.conformal) == ("IsotonicCalibration", "lac(alpha=0.2)")
    assert (randomised.calibrator, randomised.conformal) == (None, "aps(alpha=0.2, randomized)")
    # The head keeps its own temperature under a calibrator.
    assert (vector.temperature, vector.temperature_applied_by_head) == (pytest.approx(1.3), True)
    for info in (vector, isotonic, randomised):
        assert info.signatures["serving_default"][-2:] == ("prediction_set", "set_size")
        assert info.signatures["serve"] == info.signatures["serving_default"]
    mahalanobis, knn = exported["mahalanobis"], exported["knn"]
    assert mahalanobis["info"].ood_score == (
        f"mahalanobis(layer={mahalanobis['model'].layers[-2].name})")
    assert knn["info"].ood_score == f"knn(layer={knn['model'].layers[-2].name})"
    for info in (mahalanobis["info"], knn["info"]):
        assert info.signatures["serving_default"][-2:] == ("ood_score", "is_ood")


def test_threshold_keeps_the_requested_true_positive_rate(exported):
    case = exported["distance"]
    rng = np.random.default_rng(1)
    x_val = rng.normal(size=(200, INPUT_DIM)).astype("float32")
    for tpr in (0.95, 0.8):
        threshold = export.fit_ood_threshold(case["model"], x_val, tpr=tpr)
        served = export.serving_outputs(case["model"], x_val, ood_threshold=threshold)
        assert threshold == pytest.approx(_threshold_by_hand(served["ood_score"], tpr))
        kept = 1.0 - served["is_ood"].mean()
        assert tpr <= kept < tpr + 0.01


def test_saved_model_cli_lists_the_named_outputs(fresh_process):
    text = fresh_process["cli"]
    for signature in ("serve", "serve_mc", "serving_default"):
        assert f"signature_def['{signature}']:" in text
    block = text.split("signature_def['serving_default']:")[1].split("signature_def[")[0]
    assert "inputs['inputs'] tensor_info:" in block
    assert "shape: (-1, 6)" in block
    assert "Method name is: tensorflow/serving/predict" in block
    for output in ("probabilities", "predicted_class", "confidence", "entropy", "ood_score",
                   "is_ood"):
        assert f"outputs['{output}'] tensor_info:" in block, output


def test_predict_request_protos_feed_the_signature(exported):
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    case = exported["distance"]
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "classifier"
    request.model_spec.signature_name = "serving_default"
    request.inputs[export.INPUT_NAME].CopyFrom(tf.make_tensor_proto(case["x"]))
    request = predict_pb2.PredictRequest.FromString(request.SerializeToString())  # the wire

    loaded = tf.saved_model.load(str(case["info"].path))
    signature = loaded.signatures[request.model_spec.signature_name]
    assert set(request.inputs) == set(signature.structured_input_signature[1])
    feed = {key: tf.constant(tf.make_ndarray(proto)) for key, proto in request.inputs.items()}
    result = signature(**feed)
    _assert_outputs({k: v.numpy() for k, v in result.items()}, case["reference"], "request")

    response = predict_pb2.PredictResponse()
    for key, value in result.items():
        response.outputs[key].CopyFrom(tf.make_tensor_proto(value))
    response = predict_pb2.PredictResponse.FromString(response.SerializeToString())
    np.testing.assert_array_equal(tf.make_ndarray(response.outputs["is_ood"]),
                                  case["reference"]["is_ood"])


class _ModelServerStandIn:
    """Answers PredictionService.Predict from a loaded SavedModel, as tensorflow_model_server
    does, so that the documented gRPC client runs unchanged (the real server is not installable
    here)."""

    def __init__(self, path):
        import tensorflow as tf
        from tensorflow_serving.apis import predict_pb2
        from tensorflow_serving.apis import prediction_service_pb2_grpc

        self.loaded = tf.saved_model.load(path)
        stand_in = self

        class Servicer(prediction_service_pb2_grpc.PredictionServiceServicer):
            def Predict(self, request, context):
                name = request.model_spec.signature_name or "serving_default"
                signature = stand_in.loaded.signatures[name]
                feed = {key: tf.constant(tf.make_ndarray(proto))
                        for key, proto in request.inputs.items()}
                response = predict_pb2.PredictResponse()
                response.model_spec.CopyFrom(request.model_spec)
                for key, value in signature(**feed).items():
                    response.outputs[key].CopyFrom(tf.make_tensor_proto(value.numpy()))
                return response

        self.servicer = Servicer()


def test_grpc_client_of_the_docs(exported):
    """The gRPC snippet of README.md (Serving) against a stand-in server on localhost."""
    from concurrent import futures

    import grpc
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    case = exported["latent"]
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
        _ModelServerStandIn(str(case["info"].path)).servicer, server)
    port = server.add_insecure_port("localhost:0")
    server.start()
    try:
        # --- as in README.md (Serving) ---
        import tensorflow as tf
        from tensorflow_serving.apis import predict_pb2

        channel = grpc.insecure_channel(f"localhost:{port}")
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        request = predict_pb2.PredictRequest()
        request.model_spec.name = "latent"
        request.model_spec.signature_name = "serving_default"
        request.inputs["inputs"].CopyFrom(tf.make_tensor_proto(case["x"], dtype=tf.float32))
        response = stub.Predict(request, timeout=30.0)
        outputs = {name: tf.make_ndarray(tensor) for name, tensor in response.outputs.items()}
        # ---
        channel.close()
    finally:
        server.stop(None)
    _assert_outputs(outputs, case["reference"], "gRPC")


# ---------------------------------------------------------------------------- bad input


def _sequential(*layers, input_shape=(INPUT_DIM,)):
    return keras.Sequential([keras.Input(input_shape), *layers])


@pytest.mark.parametrize("model, match", [
    (lambda: _sequential(keras.layers.Dense(1)), "K >= 2"),
    (lambda: _sequential(keras.layers.Dense(NUM_CLASSES, activation="sigmoid")), "'sigmoid'"),
    (lambda: _sequential(keras.layers.Dense(NUM_CLASSES), input_shape=(3, INPUT_DIM)),
     "shape \\(batch, K\\)"),
    (lambda: _two_outputs(), "2 outputs"),
    (lambda: _two_inputs(), "exactly one input"),
    (lambda: "not a model", "keras.Model"),
    (lambda: _subclassed(), "Functional or Sequential"),
], ids=["one_unit", "sigmoid", "rank3", "two_outputs", "two_inputs", "not_a_model",
        "subclassed"])
def test_output_not_class_logits_or_probabilities(model, match, tmp_path):
    with pytest.raises(ValueError, match=match):
        export.export_for_serving(model(), tmp_path / "bad")


def _two_outputs():
    inputs = keras.Input((INPUT_DIM,))
    return keras.Model(inputs, [keras.layers.Dense(3)(inputs), keras.layers.Dense(3)(inputs)])


def _subclassed():
    return subclassed_classifier(INPUT_DIM, NUM_CLASSES)


def _two_inputs():
    a, b = keras.Input((INPUT_DIM,)), keras.Input((INPUT_DIM,))
    return keras.Model([a, b], keras.layers.Dense(3)(keras.layers.Concatenate()([a, b])))


@pytest.fixture(scope="module")
def plain_and_latent():
    keras.utils.set_random_seed(1)
    return (_sequential(keras.layers.Dense(NUM_CLASSES)),
            _classifier(StandInLatentHead(NUM_CLASSES)),
            _classifier(LatentHeadWithoutNumSamples(NUM_CLASSES)))


@pytest.mark.parametrize("which, kwargs, match", [
    ("plain", dict(ood_score=None, ood_threshold=0.5), "`ood_threshold` needs an OOD score"),
    ("plain", dict(ood_score="mahalanobis"), "`ood_score` must be 'auto'"),
    ("plain", dict(ood_score=3), "`ood_score` must be 'auto'"),
    ("plain", dict(ood_threshold=float("nan")), "`ood_threshold` must be finite"),
    ("latent", dict(mc_samples=0), "`mc_samples` must be >= 1"),
    ("latent", dict(mc_samples=2.5), "`mc_samples` must be an integer"),
    ("plain", dict(mc_samples=4), "`mc_samples` needs a head with a latent"),
    ("no_num_samples", dict(mc_samples=4), "accept `num_samples`"),
    ("latent", dict(temperature=1.5), "`temperature` must be None for this model"),
    ("plain", dict(temperature=0.0), "`temperature` must be > 0"),
    ("plain", dict(output_kind="scores"), "`output_kind` must be one of"),
], ids=["threshold_without_score", "unknown_score", "score_not_a_name", "nan_threshold",
        "mc_zero", "mc_float", "mc_without_latent", "latent_without_num_samples",
        "temperature_twice", "temperature_zero", "output_kind"])
def test_bad_arguments(plain_and_latent, which, kwargs, match, tmp_path):
    model = dict(zip(("plain", "latent", "no_num_samples"), plain_and_latent))[which]
    with pytest.raises(ValueError, match=match):
        export.export_for_serving(model, tmp_path / "bad", **kwargs)
    assert not (tmp_path / "bad").exists()


def test_bad_arguments_of_the_helpers(plain_and_latent, tmp_path):
    model = plain_and_latent[0]
    x = np.zeros((5, INPUT_DIM), "float32")
    with pytest.raises(ValueError, match="`tpr` must be <= 1"):
        export.fit_ood_threshold(model, x, tpr=1.5)
    with pytest.raises(ValueError, match="`ood_score` must name a score"):
        export.fit_ood_threshold(model, x, ood_score=None)
    with pytest.raises(ValueError, match="`x` must have shape \\(None, 6\\)"):
        export.serving_outputs(model, x[0])
    with pytest.raises(ValueError, match="`batch_size` must be >= 1"):
        export.serving_outputs(model, x, batch_size=0)
    with pytest.raises(ValueError, match="`path` must be a string"):
        export.export_for_serving(model, 42)


class _NotExportable(calibration.VectorScaling):
    exportable = False
    export_note = "no keras.ops form of this map"


def test_bad_calibrator_and_conformal_arguments(plain_and_latent, tmp_path):
    model = plain_and_latent[0]
    rng = np.random.default_rng(5)
    logits, labels = rng.normal(size=(30, NUM_CLASSES)), rng.integers(0, NUM_CLASSES, 30)
    vector = calibration.VectorScaling().fit(logits, labels)
    three = calibration.VectorScaling().fit(logits[:, :3], labels % 3)
    probs = _np_softmax(rng.normal(size=(30, NUM_CLASSES)))
    lac = conformal.SplitConformal("lac", alpha=0.2).fit(probs, rng.integers(0, NUM_CLASSES, 30))
    lac3 = conformal.SplitConformal("lac", alpha=0.2).fit(
        _np_softmax(rng.normal(size=(30, 3))), rng.integers(0, 3, 30))
    cases = [
        (dict(calibrator=vector, temperature=1.5), "`temperature` must be None when a"),
        (dict(calibrator=_NotExportable().fit(logits, labels)), "no keras.ops form"),
        (dict(calibrator=calibration.VectorScaling()), "is not fitted"),
        (dict(calibrator=three), "fitted on 3 classes"),
        (dict(calibrator="platt"), "`calibrator` must be a fitted"),
        (dict(conformal=conformal.SplitConformal("lac")), "`conformal` SplitConformal is not"),
        (dict(conformal=lac3), "fitted on 3 classes but the model outputs 4"),
        (dict(conformal=0.1), "`conformal` must be a fitted"),
    ]
    for kwargs, match in cases:
        with pytest.raises(ValueError, match=match):
            export.export_for_serving(model, tmp_path / "bad", **kwargs)
        assert not (tmp_path / "bad").exists()
    with pytest.raises(ValueError, match="fitted on 3 classes"):
        export.serving_outputs(model, np.zeros((2, INPUT_DIM), "float32"), conformal=lac3)
    assert export.serving_outputs(model, np.zeros((2, INPUT_DIM), "float32"),
                                  calibrator=vector, conformal=lac)["set_size"].dtype == np.int32


def test_bad_detector_arguments(tmp_path):
    keras.utils.set_random_seed(3)
    model = _classifier(keras.layers.Dense(NUM_CLASSES), hidden=5)
    other = _classifier(keras.layers.Dense(NUM_CLASSES), hidden=5)
    softmax = _classifier(keras.layers.Dense(NUM_CLASSES, activation="softmax"), hidden=5)
    latent = _classifier(StandInLatentHead(NUM_CLASSES))
    rng = np.random.default_rng(6)
    x = rng.normal(size=(30, INPUT_DIM)).astype("float32")
    y = np.arange(30) % NUM_CLASSES
    features = rng.normal(size=(30, 5))
    cases = [
        (model, dict(ood_score=detectors.Mahalanobis(model)), "`ood_score` Mahalanobis is not "
         "fitted"),
        (model, dict(ood_score=detectors.ODIN(model)),
         "`ood_score` ODIN cannot be exported: with epsilon=0.0014 its `score` perturbs"),
        (model, dict(ood_score=detectors.Mahalanobis(model, epsilon=0.001).fit(x, y)),
         "Mahalanobis cannot be exported: with epsilon=0.001"),
        (model, dict(ood_score=detectors.KNN(other, k=3).fit(x)),
         "was built on another model"),
        (model, dict(ood_score=detectors.Mahalanobis(layer="no_such_layer").fit_features(
            features, y)), "built without a model\\) does not fit this model: .*no_such_layer"),
        (model, dict(ood_score=detectors.Mahalanobis().fit_features(features[:, :3], y)),
         "does not fit this model: .*fitted on width 3"),
        (softmax, dict(ood_score=detectors.Energy()), "Energy needs logits"),
        (latent, dict(ood_score=detectors.Energy(latent), mc_samples=4),
         "`mc_samples` cannot be combined with a detector"),
    ]
    for which, kwargs, match in cases:
        with pytest.raises(ValueError, match=match):
            export.export_for_serving(which, tmp_path / "bad", **kwargs)
        assert not (tmp_path / "bad").exists()
    unfitted = detectors.KNN(model)
    with pytest.raises(ValueError, match="`ood_score` KNN is not fitted"):
        export.serving_outputs(model, x, ood_score=unfitted)
    with pytest.raises(ValueError, match="`ood_score` KNN is not fitted"):
        export.fit_ood_threshold(model, x, ood_score=unfitted)


def test_export_for_serving_refuses_other_backends_and_names_the_alternative(monkeypatch,
                                                                            tmp_path):
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    monkeypatch.setattr(keras.backend, "backend", lambda: "jax")
    path = os.path.join(str(tmp_path), "1")
    with pytest.raises(ValueError, match="needs the TensorFlow backend.*'jax' backend.*`.keras` "
                                         "file.*model.export"):
        export.export_for_serving(model, path)
    assert not os.path.exists(path)
