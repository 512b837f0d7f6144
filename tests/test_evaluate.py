"""``keras_vc.evaluate`` and ``keras-vc evaluate``: a saved model and the user's data, one report.

The figures are checked against NumPy computations on the model's own predictions, made here.
"""

import json
import math

import keras
import numpy as np
import pytest
from sklearn.datasets import load_digits

import keras_vc
from keras_vc import detectors
from keras_vc import metrics
from keras_vc.benchmark import cli
from keras_vc.evaluation import inputs

K = 10
ALPHA = 0.1


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A small Dense classifier on sklearn's digits, saved as .keras, and its data as .npz."""
    folder = tmp_path_factory.mktemp("evaluate")
    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32)
    y = digits.target.astype(np.int64)
    order = np.random.default_rng(0).permutation(len(y))
    train, val, test = order[:900], order[900:1300], order[1300:]
    keras.utils.set_random_seed(0)
    inputs_ = keras.Input((64,))
    hidden = keras.layers.Dense(32, activation="relu")(inputs_)
    model = keras.Model(inputs_, keras.layers.Dense(K)(hidden))
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x[train], y[train], epochs=5, batch_size=64, verbose=0)
    model_path = str(folder / "model.keras")
    model.save(model_path)
    # OOD: test digits with their pixels shuffled (one fixed permutation).
    shuffled = x[test][:, np.random.default_rng(1).permutation(64)]
    paths = {}
    for name, arrays in {"train": {"x": x[train], "y": y[train]},
                         "val": {"x": x[val], "y": y[val]},
                         "test": {"x": x[test], "y": y[test]},
                         "ood": {"x": shuffled}}.items():
        paths[name] = str(folder / f"{name}.npz")
        np.savez(paths[name], **arrays)
    return dict(folder=folder, model_path=model_path, model=model, shuffled=shuffled,
                train=(x[train], y[train]), val=(x[val], y[val]), test=(x[test], y[test]),
                paths=paths)


@pytest.fixture(scope="module")
def result(setup):
    out = setup["folder"] / "api_report"
    report = keras_vc.evaluate(setup["model_path"], setup["test"], val_data=setup["val"],
                               ood_data={"shuffled": setup["shuffled"]}, out_dir=str(out),
                               detectors=["head", "msp", "energy", "mahalanobis", "knn"],
                               verbose=0)
    return report, out


def _softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _ece(labels, probs, bins=15):
    """15 equal-width bins (lo, hi], the first [0, 1/15]."""
    confidence = probs.max(axis=1)
    correct = probs.argmax(axis=1) == labels
    index = np.clip(np.ceil(confidence * bins).astype(int) - 1, 0, bins - 1)
    total = 0.0
    for b in range(bins):
        members = index == b
        if members.any():
            total += members.mean() * abs(correct[members].mean() - confidence[members].mean())
    return total


def _auroc(scores_in, scores_out):
    """P(score_in > score_out) + 0.5 P(tie), in-distribution = positive."""
    diff = scores_in[:, None] - scores_out[None, :]
    return float(np.mean(diff > 0) + 0.5 * np.mean(diff == 0))


def _logits(setup, x):
    return setup["model"].predict(x, verbose=0).astype(np.float64)


def test_calibration_figures_match_numpy(setup, result):
    report, _ = result
    x_test, y_test = setup["test"]
    probs = _softmax(_logits(setup, x_test))
    before = report["calibration"]["before"]
    assert before["accuracy"] == pytest.approx(np.mean(probs.argmax(1) == y_test), abs=1e-12)
    assert before["nll"] == pytest.approx(-np.mean(np.log(probs[np.arange(len(y_test)), y_test])),
                                          rel=1e-4)
    assert before["brier"] == pytest.approx(
        np.mean(np.sum((probs - np.eye(K)[y_test]) ** 2, axis=1)), rel=1e-4)
    assert before["ece"] == pytest.approx(_ece(y_test, probs), abs=1e-4)
    assert before["classwise_ece"] == pytest.approx(
        metrics.classwise_calibration_error(y_test, probs), abs=1e-4)
    assert before["aurc"] == pytest.approx(metrics.aurc(y_test, probs), abs=1e-4)


def test_temperature_is_fitted_on_validation_and_applied_to_test(setup, result):
    report, _ = result
    section = report["calibration"]
    temperature = section["temperature"]
    assert section["skipped"] is None and section["temperature_at_bound"] is False
    val_logits = _logits(setup, setup["val"][0])
    y_val = setup["val"][1]

    def nll(t):
        p = _softmax(val_logits / t)
        return -np.mean(np.log(p[np.arange(len(y_val)), y_val]))

    # The fitted T minimises the validation NLL (checked against neighbours, not the search).
    assert nll(temperature) <= min(nll(temperature * 0.97), nll(temperature * 1.03)) + 1e-9
    assert nll(temperature) < nll(1.0)
    x_test, y_test = setup["test"]
    probs = _softmax(_logits(setup, x_test) / temperature)
    assert section["after"]["ece"] == pytest.approx(_ece(y_test, probs), abs=1e-4)
    assert section["after"]["accuracy"] == section["before"]["accuracy"]
    assert section["after"]["nll"] < section["before"]["nll"]


def test_ood_figures_match_numpy_and_say_where_detectors_were_fitted(setup, result):
    report, _ = result
    ood = report["ood"]
    assert ood["fit_on"] == "val_data" and ood["head_score"] == "max_probability"
    entry = ood["sets"]["shuffled"]
    assert entry["n"] == len(setup["shuffled"])
    assert list(entry["detectors"]) == ["head", "msp", "energy", "mahalanobis", "knn"]
    msp_in = _softmax(_logits(setup, setup["test"][0])).max(axis=1)
    msp_out = _softmax(_logits(setup, setup["shuffled"])).max(axis=1)
    assert entry["detectors"]["msp"]["auroc"] == pytest.approx(_auroc(msp_in, msp_out), abs=1e-4)
    assert entry["detectors"]["head"] == entry["detectors"]["msp"]
    # FPR at 95 % TPR: the OOD fraction at or above the 5 % quantile of in-distribution scores.
    threshold = np.sort(msp_in)[int(math.floor(0.05 * len(msp_in)))]
    assert entry["detectors"]["msp"]["fpr_at_95_tpr"] == pytest.approx(
        np.mean(msp_out >= threshold), abs=0.01)
    mahalanobis = detectors.Mahalanobis(setup["model"]).fit(*setup["val"])
    expected = metrics.auroc(mahalanobis.score(setup["test"][0]),
                             mahalanobis.score(setup["shuffled"]))
    assert entry["detectors"]["mahalanobis"]["auroc"] == pytest.approx(expected, abs=1e-6)
    assert ood["skipped"] == {}


def test_conformal_lac_matches_numpy(setup, result):
    report, _ = result
    section = report["conformal"]
    assert section["alpha"] == ALPHA and set(section["scores"]) == {"aps", "raps", "lac"}
    p_val = _softmax(_logits(setup, setup["val"][0]))
    y_val = setup["val"][1]
    cal_scores = np.sort(1.0 - p_val[np.arange(len(y_val)), y_val])
    qhat = cal_scores[math.ceil((len(y_val) + 1) * (1 - ALPHA)) - 1]
    x_test, y_test = setup["test"]
    sets = 1.0 - _softmax(_logits(setup, x_test)) <= qhat + 1e-6
    lac = section["scores"]["lac"]
    assert lac["qhat"] == pytest.approx(qhat, abs=1e-5)
    assert lac["coverage"] == pytest.approx(np.mean(sets[np.arange(len(y_test)), y_test]),
                                            abs=2 / len(y_test))
    assert lac["mean_set_size"] == pytest.approx(sets.sum(axis=1).mean(), abs=2 / len(y_test))


def test_files_are_written(result):
    report, out = result
    assert report["files"] == ["reliability.png", "reliability_ts.png", "evaluate.json",
                               "evaluate.md"]
    assert json.loads((out / "evaluate.json").read_text()) == json.loads(json.dumps(report))
    markdown = (out / "evaluate.md").read_text()
    assert "## Calibration (test set)" in markdown and "| head [max_probability] |" in markdown
    for name in ("reliability.png", "reliability_ts.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_without_validation_data_nothing_is_fitted_on_test(setup):
    report = keras_vc.evaluate(setup["model"], setup["test"],
                               ood_data={"shuffled": setup["shuffled"]},
                               detectors=["msp", "odin", "mahalanobis"], verbose=0)
    calibration = report["calibration"]
    assert calibration["after"] is None and calibration["temperature"] is None
    assert "no val_data" in calibration["skipped"]
    assert report["conformal"]["scores"] == {} and "no val_data" in report["conformal"]["skipped"]
    assert report["ood"]["fit_on"] is None
    assert "needs fitting" in report["ood"]["skipped"]["mahalanobis"]
    assert set(report["ood"]["sets"]["shuffled"]["detectors"]) == {"msp", "odin"}
    assert report["files"] == []


def test_train_data_fits_the_feature_detectors(setup):
    report = keras_vc.evaluate(setup["model"], setup["test"], val_data=setup["val"],
                               train_data=setup["train"], ood_data={"noise": setup["shuffled"]},
                               detectors=["knn"], conformal_scores=["lac"], verbose=0)
    assert report["ood"]["fit_on"] == "train_data"
    knn = detectors.KNN(setup["model"]).fit(setup["train"][0])
    expected = metrics.auroc(knn.score(setup["test"][0]), knn.score(setup["shuffled"]))
    assert report["ood"]["sets"]["noise"]["detectors"]["knn"]["auroc"] == pytest.approx(
        expected, abs=1e-6)


def test_a_keras_vc_head_is_scored_by_its_own_score(setup):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(16, activation="relu"),
                              keras_vc.layers.DistanceLogits(K)])
    x_test, y_test = setup["test"]
    report = keras_vc.evaluate(model, (x_test, y_test), ood_data={"noise": setup["shuffled"]},
                               detectors=["head", "vim"], verbose=0)
    name, score = keras_vc.scores.recommended(model)
    assert report["ood"]["head_score"] == name == "mmles"
    expected = metrics.auroc(score(model.predict(x_test, verbose=0)),
                             score(model.predict(setup["shuffled"], verbose=0)))
    assert report["ood"]["sets"]["noise"]["detectors"]["head"]["auroc"] == pytest.approx(
        expected, abs=1e-6)
    assert "final Dense layer" in report["ood"]["skipped"]["vim"]


def test_cli_writes_the_same_report(setup, result, tmp_path, capsys):
    paths = setup["paths"]
    out = tmp_path / "cli"
    status = cli.main(["evaluate", setup["model_path"], "--test", paths["test"],
                       "--val", paths["val"], "--ood", f"shuffled={paths['ood']}",
                       "--detectors", "msp,mahalanobis", "--out", str(out), "--quiet"])
    captured = capsys.readouterr()
    assert status == 0, captured.err
    assert "| as served (T = 1) |" in captured.out and "| mahalanobis |" in captured.out
    report = json.loads((out / "evaluate.json").read_text())
    api_report, _ = result
    assert report["calibration"] == api_report["calibration"]
    assert (report["ood"]["sets"]["shuffled"]["detectors"]["mahalanobis"]
            == api_report["ood"]["sets"]["shuffled"]["detectors"]["mahalanobis"])
    assert report["data"]["test"] == {"source": paths["test"], "n": len(setup["test"][1])}


def test_folder_data_is_read_at_the_model_input_size(tmp_path):
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        for i in range(5):
            keras.utils.save_img(str(tmp_path / name / f"{i}.png"),
                                 rng.integers(0, 255, (12, 10, 3)).astype(np.uint8))
    image = keras.Input((6, 5, 1))
    model = keras.Model(image, keras.layers.Dense(2)(keras.layers.Flatten()(image)))
    x, y = inputs.load_data(f"folder:{tmp_path}", "test_data", model)
    assert x.shape == (10, 6, 5, 1) and 0 <= x.min() and x.max() <= 1
    np.testing.assert_array_equal(y, [0] * 5 + [1] * 5)


def _bad(setup, tmp_path, case):
    x_test, y_test = setup["test"]
    model, ood = setup["model"], {"shuffled": setup["shuffled"]}
    np.savez(tmp_path / "no_x.npz", inputs=x_test)
    np.savez(tmp_path / "no_y.npz", x=x_test)
    return {
        "missing model": (dict(model=str(tmp_path / "nope.keras")), "no model file"),
        "not a model": (dict(model=42), "keras.Model or the path"),
        "unreadable model": (dict(model=str(tmp_path / "no_x.npz")), "could not be loaded"),
        "input shape": (dict(test_data=(x_test[:, :32], y_test)), "model takes (64,)"),
        "labels out of range": (dict(val_data=(x_test, np.full(len(y_test), K))),
                                "val_data labels` must lie in [0, 9]"),
        "labels length": (dict(test_data=(x_test, y_test[:-1])), "has 496 entries"),
        "empty OOD set": (dict(ood_data={"none": np.zeros((0, 64), np.float32)}),
                          "ood_data['none']` must hold at least one sample"),
        "OOD not a dict": (dict(ood_data=[setup["shuffled"]]), "`ood_data` must be a dict"),
        "alpha zero": (dict(alpha=0.0), "`alpha` must lie in (0, 1)"),
        "alpha one": (dict(alpha=1.0), "`alpha` must lie in (0, 1)"),
        "alpha not a number": (dict(alpha="0.1"), "`alpha` must be a number"),
        "unknown detector": (dict(detectors=["nope"]), "`detectors`: unknown ['nope']"),
        "unknown conformal score": (dict(conformal_scores=["nope"]), "`conformal_scores`"),
        "no labels": (dict(test_data=str(tmp_path / "no_y.npz")), "`test_data` needs labels"),
        "npz without x": (dict(test_data=str(tmp_path / "no_x.npz")), "array named 'x'"),
        "not a path or spec": (dict(test_data=str(tmp_path / "missing.npz")),
                               "neither an .npz file"),
        "wrong type": (dict(test_data={"x": x_test}), "`test_data` must be (x, y) arrays"),
        "text inputs": (dict(test_data=(np.array([["a"] * 64]), [0])), "must be numeric"),
        "batch size": (dict(batch_size=0), "`batch_size` must be >= 1"),
        "verbose": (dict(verbose=3), "`verbose` must be one of"),
        "out_dir": (dict(out_dir=3), "`out_dir` must be a folder path"),
    }[case], dict(model=model, test_data=(x_test, y_test), val_data=setup["val"], ood_data=ood,
                  verbose=0)


@pytest.mark.parametrize("case", [
    "missing model", "not a model", "unreadable model", "input shape", "labels out of range",
    "labels length", "empty OOD set", "OOD not a dict", "alpha zero", "alpha one",
    "alpha not a number", "unknown detector", "unknown conformal score", "no labels",
    "npz without x", "not a path or spec", "wrong type", "text inputs", "batch size", "verbose",
    "out_dir"])
def test_bad_input_raises_value_error_naming_it(setup, tmp_path, case):
    (changes, message), arguments = _bad(setup, tmp_path, case)
    arguments.update(changes)
    with pytest.raises(ValueError) as error:
        keras_vc.evaluate(arguments.pop("model"), arguments.pop("test_data"), **arguments)
    assert message in str(error.value)


@pytest.mark.parametrize("argv, message", [
    (["--test", "{test}", "--ood", "shuffled"], "expected NAME=DATA"),
    (["--test", "{test}", "--ood", "a={ood}", "--ood", "a={ood}"], "--ood names must differ"),
    (["--test", "{test}", "--val", "{val}", "--alpha", "1.5"], "`alpha` must lie in (0, 1)"),
    (["--test", "{ood}"], "`test_data` needs labels"),
    (["--test", "tfds:keras_vc_no_such_dataset"], "no dataset named"),
    (["--test", "folder:/nonexistent/keras_vc"], "does not exist"),
])
def test_cli_bad_input_exits_with_one_line(setup, tmp_path, capsys, argv, message):
    argv = [a.format(**setup["paths"]) for a in argv]
    status = cli.main(["evaluate", setup["model_path"]] + argv + ["--out", str(tmp_path / "o")])
    captured = capsys.readouterr()
    assert status == 2 and message in captured.err
    assert "Traceback" not in captured.err + captured.out
    assert len([line for line in captured.err.splitlines() if "error" in line]) == 1
    assert not (tmp_path / "o").exists()


def test_cli_missing_model_file(tmp_path, capsys):
    status = cli.main(["evaluate", str(tmp_path / "nope.keras"), "--test", "x.npz"])
    assert status == 2 and "no model file" in capsys.readouterr().err
