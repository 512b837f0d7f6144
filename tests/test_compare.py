"""``keras-vc compare`` at tiny settings: report structure, ranges, pairing, determinism."""

import dataclasses
import json
import math
import os
import re

import keras
import numpy as np
import pytest

from keras_vc import calibration
from keras_vc.benchmark import compare
from keras_vc.benchmark import conformal_eval
from keras_vc.benchmark import evaluation
from keras_vc.benchmark import plan as plan_lib
from keras_vc.benchmark import posthoc
from keras_vc.benchmark import registry
from keras_vc.benchmark import report as report_lib
from keras_vc.benchmark import report_posthoc
from keras_vc.benchmark import statistics
from keras_vc.benchmark import trainers

pytestmark = pytest.mark.tensorflow_only("keras-vc compare trains through tf.data")

# One epoch, and one step per call: at one epoch tracing dominates, and 16 steps per call (the
# default) trace a bigger function. The command-line test runs the default protocol.
TINY_PROTOCOL = trainers.Protocol(epochs=1, steps_per_execution=1)
# Every registered method runs on both offline datasets (full models, plus open-set models on
# digits, which the default run leaves out: `open_set=True` asks for them on every dataset); the
# low-data path runs in the worker-process test with softmax only, to keep the number of tiny
# models (each costs about 2 s of tracing) small as methods are added.
TINY_PLAN = compare.Plan(robustness_samples=40, attack_epsilons=(0.05,), pgd_steps=2,
                         low_data_fractions=(), corruption_severities=(1, 5), alphas=(0.1, 0.2),
                         open_set=True)


def _standin_train(backbone, split, protocol, seed, context):
    """A two-stage stand-in: a new Dense head on the frozen backbone of the softmax model."""
    features = context["softmax"].layers[0]
    features.trainable = False
    model = keras.Sequential([keras.Input(split.input_shape), features,
                              keras.layers.Dense(split.num_classes, name="logits")])
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    return trainers.fit_classifier(model, split, protocol, loss, seed=seed)


def _standin_extra_scores(model, split):
    features = keras.Sequential(model.layers[:-1])

    def score(x):
        return {"feature_norm": -np.linalg.norm(np.asarray(features(x)), axis=1)}

    return score


STANDIN = registry.Head(
    name="standin", title="Stand-in two-stage head", train=_standin_train,
    ood_score="max_logit", note="softmax of the new head's logits",
    extra_scores=_standin_extra_scores, requires=("softmax",))


@pytest.fixture(scope="module")
def standin():
    registry.register(STANDIN)
    yield STANDIN
    registry.unregister(STANDIN.name)


@pytest.fixture(scope="module")
def digits_report(standin, tmp_path_factory):
    out = tmp_path_factory.mktemp("digits")
    lines = []
    report = compare.run_compare(["digits"], None, [0], TINY_PROTOCOL, str(out),
                                 log=lines.append, plan=TINY_PLAN,
                                 command="keras-vc compare (test)")
    return report, out, lines


# MNIST-1D's checks (the CNN, shuffled signals, signal corruptions, every head on a conv
# backbone) hold on a fifth of its 5000 signals, stratified; the name keeps its settings.
MNIST1D_FRACTION = 0.2


@pytest.fixture(scope="module")
def mnist1d_report(standin, tmp_path_factory):
    from keras_vc.data import loaders
    from keras_vc.robustness import subsets

    out = tmp_path_factory.mktemp("mnist1d")
    full = loaders.load_dataset("mnist1d")
    index = np.sort(subsets.stratified_subset_indices(full.y, MNIST1D_FRACTION, seed=0))
    dataset = dataclasses.replace(full, x=full.x[index], y=full.y[index])
    plan = compare.Plan(robustness_samples=40, attack_epsilons=(0.02, 0.05), pgd_steps=2,
                        low_data_fractions=(), open_set=False, corruption_severities=(3,))
    report = compare.run_compare([dataset], None, [1], TINY_PROTOCOL, str(out),
                                 log=lambda _: None, plan=plan)
    return report, out


def _check_figures(figures, config, calibrators=plan_lib.DEFAULT_CALIBRATORS):
    flat = statistics.flatten(figures)
    for key, value in flat.items():
        assert math.isfinite(value), key
    cal = figures["calibration"]
    for key in ("accuracy", "ece", "ece_ts", "mce", "mce_ts"):
        assert 0.0 <= cal[key] <= 1.0, key
    for key in ("nll", "nll_ts"):
        assert cal[key] >= 0.0
    for key in ("brier", "brier_ts"):
        assert 0.0 <= cal[key] <= 2.0
    assert 0.05 <= cal["temperature"] <= 20.0
    for key in ("classwise_ece", "classwise_ece_ts", "aurc", "aurc_ts", "augrc", "augrc_ts"):
        assert 0.0 <= cal[key] <= 1.0, key
    alphas = [k for k in figures["conformal"] if k not in ("temperature", "calibration_samples")]
    assert alphas and 0.05 <= figures["conformal"]["temperature"] <= 20.0
    for alpha in alphas:
        assert set(figures["conformal"][alpha]) == {"aps", "raps", "lac"}
        for sets in figures["conformal"][alpha].values():
            assert 0.0 <= sets["worst_class_coverage"] <= sets["coverage"] <= 1.0
            assert 0.0 <= sets["set_size"] <= 10.0 and not sets["qhat_infinite"]
    if config == "full":
        assert set(figures["calibrators"]) == set(calibrators)
        for by_calibrator in figures["calibrators"].values():
            assert set(by_calibrator) == {"accuracy", "ece", "classwise_ece"}
            assert all(0.0 <= v <= 1.0 for v in by_calibrator.values())
    else:
        assert "calibrators" not in figures
    for by_score in figures.get("ood", {}).values():
        assert {"recommended", "msp"} <= set(by_score)
        for ood in by_score.values():
            assert set(ood) == {"auroc", "aupr_in", "aupr_out", "fpr_at_95_tpr",
                                "detection_error"}
            assert all(0.0 <= v <= 1.0 for v in ood.values())
            assert ood["detection_error"] <= 0.5
    for set_name, by_detector in figures.get("posthoc", {}).items():
        assert set_name in figures["ood"]
        assert set(posthoc.LOGIT_DETECTORS) <= set(by_detector)
        for ood in by_detector.values():
            assert all(0.0 <= v <= 1.0 for v in ood.values())
    if "ood" in figures:
        assert set(figures["posthoc"]) == set(figures["ood"])
        assert figures["detectors_cpu_seconds"] >= 0
    else:
        assert "posthoc" not in figures
    for section in ("adversarial", "corruptions"):
        if config == "full":
            for key, value in flat.items():
                if key.startswith(section + "."):
                    assert 0.0 <= value <= 1.0, key
        else:
            assert section not in figures
    assert figures["train_seconds"] >= 0 and figures["eval_cpu_seconds"] >= 0


def test_digits_report_structure_and_ranges(digits_report):
    report, out, lines = digits_report
    # Every registered method, the stand-in included, in report order (softmax first).
    assert list(report["methods"]) == plan_lib.ordered_methods()
    assert list(report["methods"])[0] == "softmax" and "standin" in report["methods"]
    data = report["datasets"]["digits"]
    assert data["configs"] == ["full", "open_set"]
    assert set(data["ood_sets"]) == {"photo_patches", "held_out_classes"}
    assert data["kind"] == "image" and data["backbone"] == "mlp"
    assert data["protocol"]["epochs"] == 1 and data["protocol"]["jit_compile"] is False
    assert len(data["runs"]) == len(report["methods"]) * 2
    # The legend and a header, then one counted line per model (warnings are not counted).
    assert lines[0] == report_lib.LOG_LEGEND and lines[1].startswith("keras-vc compare: ")
    counted = [line for line in lines if re.match(r"\[ ?\d+/\d+ \d+:\d\d elapsed", line)]
    assert len(counted) == len(data["runs"])
    assert counted[-1].startswith(f"[{len(counted)}/{len(counted)} ")
    # Runs in plan order (config, seed, method), whatever order they finished in.
    for config in data["configs"]:
        assert [r["method"] for r in data["runs"] if r["config"] == config] == list(
            report["methods"])
    for run in data["runs"]:
        _check_figures(run["figures"], run["config"])
    full = {r["method"]: r["figures"] for r in data["runs"] if r["config"] == "full"}
    assert full["softmax"]["ood_score"] == "max_probability"
    assert full["standin"]["ood_score"] == "max_logit"
    assert "extra:feature_norm" in full["standin"]["ood"]["photo_patches"]
    assert set(full["softmax"]["corruptions"]) == {"clean", "mean"} | set(data["corruptions"])
    assert set(full["softmax"]["corruptions"]["blur"]) == {"1", "5"}
    assert set(full["softmax"]["adversarial"]) == {"clean", "fgsm", "pgd"}
    assert set(full["softmax"]["conformal"]) == {"temperature", "calibration_samples", "0.1",
                                                 "0.2"}
    # A larger alpha gives smaller sets (same model, same calibration half).
    for score in ("aps", "raps", "lac"):
        assert (full["softmax"]["conformal"]["0.2"][score]["set_size"]
                <= full["softmax"]["conformal"]["0.1"][score]["set_size"])
    every_detector = (set(posthoc.LOGIT_DETECTORS) | set(posthoc.FEATURE_DETECTORS)
                      | set(posthoc.DENSE_DETECTORS))
    assert set(full["softmax"]["posthoc"]["photo_patches"]) == every_detector
    assert set(full["standin"]["posthoc"]["photo_patches"]) == every_detector  # a Dense head
    assert set(full["dismax"]["posthoc"]["photo_patches"]) == (  # no Dense head: no ViM, ReAct
        set(posthoc.LOGIT_DETECTORS) | set(posthoc.FEATURE_DETECTORS))
    # Two sets (photo patches, held-out classes): each one's detector is chosen on the other.
    versus = data["versus_best_detector"]
    assert set(versus) == {"full", "open_set"}
    photo = versus["full"]["photo_patches"]
    assert photo["selected_by"] == "other sets"
    held_out = versus["open_set"]["held_out_classes"]["baseline"]
    assert photo["selected"] == max(held_out, key=held_out.get)
    assert set(photo["methods"]) == set(report["methods"])
    open_run = [r for r in data["runs"] if r["config"] == "open_set"][0]["figures"]
    assert set(open_run["ood"]) == {"held_out_classes"}
    assert data["sizes"]["open_set"]["train"] < data["sizes"]["full"]["train"]


def test_every_method_of_a_seed_starts_from_the_same_backbone(digits_report):
    report, _, _ = digits_report
    by_config = {}
    for run in report["datasets"]["digits"]["runs"]:
        by_config.setdefault(run["config"], set()).add(run["figures"]["init_checksum"])
    assert all(len(checksums) == 1 for checksums in by_config.values())


def test_summary_and_paired_differences(digits_report):
    report, _, _ = digits_report
    data = report["datasets"]["digits"]
    summary = data["summary"]["full"]["softmax"]
    assert summary["calibration.accuracy"]["n"] == 1
    assert summary["calibration.temperature_at_bound"]["n"] == 1
    paired = data["paired_vs_softmax"]["full"]["standin"]
    runs = {r["method"]: r["figures"] for r in data["runs"] if r["config"] == "full"}
    delta = paired["ood.photo_patches.recommended.auroc"]
    expected = (runs["standin"]["ood"]["photo_patches"]["recommended"]["auroc"]
                - runs["softmax"]["ood"]["photo_patches"]["recommended"]["auroc"])
    assert delta["mean"] == pytest.approx(expected) and delta["same_sign"] == 1
    assert not any(key.endswith("_seconds") for key in paired)
    assert "softmax" not in data["paired_vs_softmax"]["full"]


def test_report_files(digits_report):
    report, out, _ = digits_report
    with open(os.path.join(out, "compare.json")) as handle:
        saved = json.load(handle)
    assert saved["datasets"]["digits"]["runs"][0]["figures"]["calibration"] == \
        report["datasets"]["digits"]["runs"][0]["figures"]["calibration"]
    markdown = open(os.path.join(out, "compare.md")).read()
    for heading in ("## digits", "### Calibration", "### Out-of-distribution detection",
                    "### Paired difference vs softmax", "### Adversarial robustness: accuracy",
                    "### Corruptions: ECE", "### Open-set models", "### All OOD figures",
                    "### Conformal prediction sets", "| method | APS α=0.1 cov |",
                    "RAPS α=0.2 worst", "Smallest conformal sets at α = 0.2",
                    "### Post-hoc calibrators", "| ECE | TS | vector | histogram | isotonic | cwECE",
                    "ΔAPS size α=0.1", "the validation split is cut in two stratified halves",
                    "### OOD: each method's own score vs the best post-hoc detector",
                    "### Every post-hoc detector on every model", "| method | MSP | max logit |",
                    "oracle best:", "Best post-hoc detector on the softmax baseline",
                    "Digits is too easy for calibration claims", "Stand-in two-stage head"):
        assert heading in markdown, heading
    # The calibrator table has a column per calibrator of the plan (matrix and Dirichlet
    # scaling are not in the default plan).
    assert "| matrix |" not in markdown and "| Dirichlet |" not in markdown
    every = dict(report, plan=dict(report["plan"], calibrators=list(evaluation.CALIBRATORS)))
    assert "| TS | vector | matrix | Dirichlet | histogram | isotonic |" in (
        report_posthoc.calibrator_table(every, "digits"))
    readme = open(os.path.join(out, "README_results.md")).read()
    assert readme.startswith("## Results") and report["machine"] in readme
    assert "keras-vc compare (test)" in readme
    assert "Smallest conformal sets at α = 0.1" in readme and "RAPS α=0.2 size" in readme
    assert "against the best post-hoc detector on the softmax baseline" in readme
    assert "- **photo patches** (full models), against " in readme and "beats it in all 1" in readme
    plots = report["datasets"]["digits"]["plots"]
    assert set(plots["reliability diagrams"]) == set(report["methods"])
    assert set(plots["OOD score histograms"]) == {"photo_patches", "held_out_classes"}
    files = [p for v in plots.values() for p in (v.values() if isinstance(v, dict) else [v])]
    assert len(files) == len(report["methods"]) + 2 + 2  # no low-data plot here
    for name in files:
        assert os.path.getsize(os.path.join(out, name)) > 1000


def test_mnist1d_uses_the_cnn_and_shuffled_signals(mnist1d_report):
    report, out = mnist1d_report
    data = report["datasets"]["mnist1d"]
    assert data["backbone"] == "cnn1d" and data["kind"] == "signal"
    assert data["configs"] == ["full"] and set(data["ood_sets"]) == {"shuffled"}
    assert "rotation" not in data["corruptions"] and "shift" in data["corruptions"]
    assert data["protocol"]["epochs"] == 1
    assert data["sizes"]["full"]["train"] == pytest.approx(0.6 * MNIST1D_FRACTION * 5000, abs=5)
    for run in data["runs"]:
        assert run["seed"] == 1
        _check_figures(run["figures"], "full")
        assert set(run["figures"]["adversarial"]["pgd"]) == {"0.02", "0.05"}
    assert "### Low data" not in open(os.path.join(out, "compare.md")).read()
    # One OOD set: no other set to choose the detector on, so the oracle choice is marked.
    shuffled = data["versus_best_detector"]["full"]["shuffled"]
    assert shuffled["selected_by"] == "oracle" and shuffled["selected"] == shuffled["oracle"]
    assert "(oracle) on softmax" in open(os.path.join(out, "README_results.md")).read()


def test_same_seed_same_report_on_worker_processes(digits_report, tmp_path):
    """A second run on 2 spawned worker processes, with softmax alone and a low-data config
    added, gives the softmax model of the in-process run the same figures (same seed, same
    report, whatever the scheduling and the other methods)."""
    report, _, _ = digits_report
    lines = []
    plan = dataclasses.replace(TINY_PLAN, open_set=False, low_data_fractions=(0.25,))
    again = compare.run_compare(["digits"], ["softmax"], [0], TINY_PROTOCOL, str(tmp_path),
                                log=lines.append, plan=plan, workers=2)
    assert again["workers"] == 2  # worker lines reach the log, counted
    assert sorted(line[:5] for line in lines if line.startswith("[")) == ["[1/2 ", "[2/2 "]
    data = again["datasets"]["digits"]
    assert data["configs"] == ["full", "low_data_0.25"]
    low = [r for r in data["runs"] if r["config"] == "low_data_0.25"]
    assert len(low) == 1 and set(low[0]["figures"]) >= {"calibration", "train_cpu_seconds"}
    _check_figures(low[0]["figures"], "low_data_0.25")
    assert data["sizes"]["low_data_0.25"]["train"] == pytest.approx(
        0.25 * data["sizes"]["full"]["train"], abs=10)
    assert "### Low data" in open(os.path.join(tmp_path, "compare.md")).read()
    assert "accuracy / ECE vs training fraction" in data["plots"]

    def softmax_full(r):
        return [statistics.flatten(run["figures"]) for run in r["datasets"]["digits"]["runs"]
                if run["method"] == "softmax" and run["config"] == "full"][0]

    first, second = softmax_full(report), softmax_full(again)
    keys = [k for k in first if not k.endswith("_seconds")]
    assert keys == [k for k in second if not k.endswith("_seconds")]
    np.testing.assert_allclose([first[k] for k in keys], [second[k] for k in keys], atol=1e-5)


def test_paired_differences_by_hand():
    runs = [{"config": "full", "method": m, "seed": s, "figures": {"x": {"acc": v}, "flag": True}}
            for m, s, v in [("softmax", 0, 0.5), ("softmax", 1, 0.6), ("softmax", 2, 0.7),
                            ("other", 0, 0.6), ("other", 1, 0.9), ("other", 2, 0.65)]]
    paired = statistics.paired_differences(runs)["full"]["other"]["x.acc"]
    deltas = np.array([0.1, 0.3, -0.05])
    assert paired["mean"] == pytest.approx(deltas.mean())
    assert paired["std"] == pytest.approx(deltas.std())
    assert paired["same_sign"] == 2 and paired["n"] == 3
    summary = statistics.summarize_runs(runs)["full"]["other"]
    assert summary["x.acc"]["mean"] == pytest.approx(np.mean([0.6, 0.9, 0.65]))
    assert summary["flag"] == {"count": 3, "n": 3}
    assert report_lib._delta(paired) == "+0.117 ± 0.143 (2/3)"
    for run in runs:
        run["figures"]["x"]["same"] = 0.25
    assert statistics.paired_differences(runs)["full"]["other"]["x.same"]["same_sign"] == 0


def test_flatten_and_plan_validation():
    assert statistics.flatten({"a": {"b": 1, "c": "text"}, "d": np.float32(2.5), "e": False}) == {
        "a.b": 1.0, "d": 2.5, "e": False}
    for kwargs in (dict(robustness_samples=0), dict(attack_epsilons=(-0.1,)),
                   dict(corruption_severities=(6,)), dict(low_data_fractions=(0.0,)),
                   dict(pgd_steps=0), dict(open_set="yes"), dict(alphas=()),
                   dict(alphas=(0.0,)), dict(alphas=(1.0,)), dict(alphas=(0.1, 0.1)),
                   dict(calibrators=("platt",))):
        with pytest.raises(ValueError):
            compare.Plan(**kwargs)
    assert compare.Plan().configs(10) == ["full", "open_set"]
    assert compare.Plan().configs(2) == ["full"]
    assert compare.Plan(low_data_fractions=(0.1,)).configs(10) == ["full", "open_set",
                                                                    "low_data_0.1"]
    # open_set None follows the dataset's settings; True and False override them.
    assert compare.Plan().configs(10, dataset_open_set=False) == ["full"]
    assert compare.Plan(open_set=True).configs(10, dataset_open_set=False) == ["full",
                                                                               "open_set"]
    assert compare.Plan(open_set=False).configs(10, dataset_open_set=True) == ["full"]
    assert compare.Plan(open_set=True).configs(2) == ["full"]


def test_the_default_run_trains_open_set_models_on_mnist1d_only():
    settings = plan_lib.DATASET_SETTINGS
    assert [name for name in compare.DEFAULT_DATASETS if settings[name].open_set] == ["mnist1d"]
    assert plan_lib.OTHER_DATASET_SETTINGS.open_set
    assert compare.Plan().calibrators == ("temperature", "vector", "histogram", "isotonic")
    assert set(compare.Plan().calibrators) < set(evaluation.CALIBRATORS)


def test_run_compare_rejects_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="seeds"):
        compare.run_compare(["digits"], None, [], out_dir=str(tmp_path))
    with pytest.raises(ValueError, match="seeds"):
        compare.run_compare(["digits"], None, [0, 0], out_dir=str(tmp_path))
    with pytest.raises(ValueError, match="unknown method"):
        compare.run_compare(["digits"], ["nope"], [0], out_dir=str(tmp_path))
    with pytest.raises(ValueError, match="unknown dataset"):
        compare.run_compare(["nope"], None, [0], out_dir=str(tmp_path))
    assert not os.listdir(tmp_path)


def test_method_order_adds_requirements(standin):
    assert plan_lib.ordered_methods(["standin"]) == ["softmax", "standin"]
    assert plan_lib.ordered_methods()[0] == "softmax"
    with pytest.raises(ValueError, match="unknown method"):
        plan_lib.ordered_methods(["softmax", "nope"])


# ------------------------------------------------------------------------------------------
# Post-hoc figures from logits, against independent NumPy computations


def _logits(rng, n, num_classes=4, signal=2.0):
    labels = np.arange(n) % num_classes
    logits = rng.normal(size=(n, num_classes))
    logits[np.arange(n), labels] += signal
    return logits, labels


def _softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _ece(labels, probs, bins=15):
    confidence, correct = probs.max(axis=1), probs.argmax(axis=1) == labels
    index = np.clip(np.ceil(confidence * bins).astype(int) - 1, 0, bins - 1)
    return sum(abs(correct[index == b].mean() - confidence[index == b].mean())
               * np.mean(index == b) for b in range(bins) if np.any(index == b))


def test_validation_halves_are_disjoint_stratified_and_seeded():
    labels = np.repeat(np.arange(3), [10, 20, 31])
    tuning, cal = conformal_eval.split_validation(labels, seed=4)
    assert np.intersect1d(tuning, cal).size == 0
    assert np.array_equal(np.sort(np.concatenate([tuning, cal])), np.arange(labels.size))
    assert np.bincount(labels[tuning]).tolist() == [5, 10, 16]
    again, _ = conformal_eval.split_validation(labels, seed=4)
    other, _ = conformal_eval.split_validation(labels, seed=5)
    assert np.array_equal(tuning, again) and not np.array_equal(tuning, other)


def test_conformal_sets_use_the_tuning_temperature_and_the_calibration_threshold():
    rng = np.random.default_rng(0)
    val_logits, y_val = _logits(rng, 200)
    test_logits, y_test = _logits(rng, 300)
    figures = conformal_eval.conformal_figures(val_logits, y_val, test_logits, y_test,
                                               (0.1, 0.3), seed=2)
    tuning, cal = conformal_eval.split_validation(y_val, seed=2)
    assert figures["calibration_samples"] == cal.size == 100
    temperature = calibration.find_temperature(val_logits[tuning], y_val[tuning]).temperature
    assert figures["temperature"] == pytest.approx(temperature)
    for alpha in (0.1, 0.3):
        # LAC by hand: qhat = the ceil((n + 1)(1 - alpha))-th smallest 1 - p_y of the
        # calibration half; a label is in the set when 1 - p <= qhat.
        p_cal = _softmax(val_logits[cal] / temperature)
        cal_scores = np.sort(1.0 - p_cal[np.arange(cal.size), y_val[cal]])
        qhat = cal_scores[int(np.ceil((cal.size + 1) * (1 - alpha))) - 1]
        sets = 1.0 - _softmax(test_logits / temperature) <= qhat
        lac = figures[f"{alpha:g}"]["lac"]
        assert lac["coverage"] == pytest.approx(np.mean(sets[np.arange(300), y_test]))
        assert lac["set_size"] == pytest.approx(sets.sum(axis=1).mean())
        per_class = [np.mean(sets[y_test == k, k]) for k in range(4)]
        assert lac["worst_class_coverage"] == pytest.approx(min(per_class))
        assert figures[f"{alpha:g}"]["raps"]["k_reg"] >= 1


def test_calibrator_and_selective_figures_by_hand():
    rng = np.random.default_rng(1)
    val_logits, y_val = _logits(rng, 240, signal=3.0)
    test_logits, y_test = _logits(rng, 160, signal=3.0)
    figures = evaluation.calibrator_figures(val_logits * 2, y_val, test_logits * 2, y_test)
    assert list(figures) == list(evaluation.CALIBRATORS)
    temperature = calibration.find_temperature(val_logits * 2, y_val).temperature
    probs = _softmax(test_logits * 2 / temperature)
    assert figures["temperature"]["ece"] == pytest.approx(_ece(y_test, probs), abs=1e-6)
    assert figures["temperature"]["accuracy"] == np.mean(probs.argmax(axis=1) == y_test)
    # AURC without ties: the mean over m of the error rate among the m most confident.
    probs = _softmax(test_logits)
    errors = (probs.argmax(axis=1) != y_test)[np.argsort(-probs.max(axis=1))]
    risks = np.cumsum(errors) / np.arange(1, errors.size + 1)
    selective = evaluation.selective_figures(y_test, probs)
    assert selective["aurc"] == pytest.approx(risks.mean())
    assert selective["augrc"] == pytest.approx(np.mean(np.cumsum(errors) / errors.size))


def _synthetic_report(sizes, coverages):
    summary = {method: {f"conformal.0.1.{score}.{key}": {"mean": value, "std": 0.0, "n": 1}
                        for score in ("aps", "raps", "lac")
                        for key, value in (("set_size", sizes[method]),
                                           ("coverage", coverages[method]),
                                           ("worst_class_coverage", 0.8))}
               for method in sizes}
    paired = {"full": {"other": {"conformal.0.1.aps.set_size": {
        "mean": sizes["other"] - sizes["softmax"], "std": 0.0, "n": 3, "same_sign": 3}}}}
    return {"plan": {"alphas": [0.1]},
            "methods": {m: {"title": m.title()} for m in sizes},
            "datasets": {"d": {"summary": {"full": summary}, "paired_vs_softmax": paired}}}


def test_conformal_table_marks_the_smallest_sets_and_low_coverage():
    from keras_vc.benchmark import report_posthoc

    report = _synthetic_report({"softmax": 1.5, "other": 1.2}, {"softmax": 0.91, "other": 0.85})
    table = report_posthoc.conformal_table(report, "d").splitlines()
    assert table[2].startswith("| Softmax | 0.910 | 1.50 | 0.800 |")
    assert table[3].startswith("| Other | 0.850 ↓ | **1.20** | 0.800 |")
    lines = report_posthoc.smallest_sets_lines(report, "d")
    assert lines == ["Smallest conformal sets at α = 0.1 (target coverage 0.9): APS: Other, "
                     "1.20 labels per set at coverage 0.850 (paired vs softmax: -0.30 ± 0.00 "
                     "(3/3)); RAPS: Other, 1.20 labels per set at coverage 0.850."]


# ------------------------------------------------------------------------------------------
# Post-hoc detectors on computed features, and the head-vs-best-detector comparison


def _dense_model(width=6, num_classes=3):
    return keras.Sequential([keras.Input((4,)), keras.layers.Dense(width, activation="relu",
                                                                  name="hidden"),
                             keras.layers.Dense(num_classes, name="logits")])


def test_predict_outputs_gives_the_head_input_and_the_logits():
    keras.utils.set_random_seed(0)
    model = _dense_model()
    x = np.random.default_rng(0).normal(size=(7, 4)).astype(np.float32)
    features, logits = evaluation.predict_outputs(model, x)
    kernel, bias = (np.asarray(w) for w in model.layers[0].weights)
    np.testing.assert_allclose(features, np.maximum(x @ kernel + bias, 0.0), atol=1e-5)
    np.testing.assert_allclose(logits, np.asarray(model(x)), atol=1e-5)
    np.testing.assert_allclose(evaluation.predict_logits(model, x), logits)


def test_detectors_fitted_on_training_features_by_hand():
    keras.utils.set_random_seed(1)
    model = _dense_model()
    rng = np.random.default_rng(1)
    train = rng.normal(size=(60, 6)) + np.repeat(np.eye(3, 6) * 3, 20, axis=0)
    labels = np.repeat(np.arange(3), 20)
    test = rng.normal(size=(9, 6))
    fitted = posthoc.fit_detectors(model, train, labels, num_classes=3, seed=0)
    assert set(fitted) == (set(posthoc.LOGIT_DETECTORS) | set(posthoc.FEATURE_DETECTORS)
                           | set(posthoc.DENSE_DETECTORS))
    logits = rng.normal(size=(9, 3))
    scores = posthoc.score_all(fitted, test, logits)
    # Mahalanobis (Lee et al. 2018): class means, shared covariance S_W / N, max_k of -d_k^2.
    means = np.stack([train[labels == k].mean(axis=0) for k in range(3)])
    centred = train - means[labels]
    precision = np.linalg.pinv(centred.T @ centred / len(train))
    distances = np.stack([np.einsum("nd,de,ne->n", test - m, precision, test - m)
                          for m in means], axis=1)
    np.testing.assert_allclose(scores["mahalanobis"], -distances.min(axis=1), rtol=1e-4)
    # KNN (Sun et al. 2022): minus the distance to the k-th nearest normalised training
    # feature; with 60 training rows k is capped at 50 and the bank holds all of them.
    unit = lambda a: a / np.linalg.norm(a, axis=1, keepdims=True)  # noqa: E731
    d = np.linalg.norm(unit(test)[:, None, :] - unit(train)[None, :, :], axis=2)
    np.testing.assert_allclose(scores["knn"], -np.sort(d, axis=1)[:, 49], atol=1e-4)
    np.testing.assert_allclose(scores["max_logit"], logits.max(axis=1), rtol=1e-6)
    # Without features (a model that hides its head's input) only the logit detectors apply.
    assert set(posthoc.fit_detectors(model, None, labels, 3, 0)) == set(posthoc.LOGIT_DETECTORS)


def _detector_run(method, seed, config, own, detectors_by_set):
    return {"method": method, "seed": seed, "config": config, "figures": {
        "ood": {s: {"recommended": {"auroc": own[s]}} for s in own},
        "posthoc": {s: {d: {"auroc": v} for d, v in by_d.items()}
                    for s, by_d in detectors_by_set.items()}}}


def test_versus_best_detector_chooses_on_the_other_sets_by_hand():
    runs = []
    for seed, shift in ((0, 0.0), (1, 0.02), (2, -0.01)):
        runs += [
            _detector_run("softmax", seed, "full", {"a": 0.6},
                          {"a": {"knn": 0.9 + shift, "energy": 0.7}}),
            _detector_run("softmax", seed, "open_set", {"b": 0.7},
                          {"b": {"knn": 0.6, "energy": 0.8 + shift}}),
            _detector_run("head", seed, "full", {"a": 0.75 + 2 * shift}, {}),
            _detector_run("head", seed, "open_set", {"b": 0.9}, {}),
        ]
    result = posthoc.versus_best_detector(runs)
    a, b = result["full"]["a"], result["open_set"]["b"]
    # Set a is compared with the best on set b (energy), though KNN is best on a itself.
    assert (a["selected"], a["selected_by"], a["oracle"]) == ("energy", "other sets", "knn")
    assert (b["selected"], b["oracle"]) == ("knn", "energy")
    deltas = np.array([0.75 - 0.7, 0.79 - 0.7, 0.73 - 0.7])
    assert a["methods"]["head"]["mean"] == pytest.approx(deltas.mean())
    assert a["methods"]["head"]["std"] == pytest.approx(deltas.std())
    assert a["methods"]["head"]["same_sign"] == 3 and a["methods"]["head"]["n"] == 3
    assert b["methods"]["softmax"]["mean"] == pytest.approx(0.7 - 0.6)
    alone = posthoc.versus_best_detector([r for r in runs if r["config"] == "full"])
    assert alone["full"]["a"]["selected"] == "knn"
    assert alone["full"]["a"]["selected_by"] == "oracle"
    with pytest.raises(ValueError, match="metric"):
        posthoc.versus_best_detector(runs, metric="aupr_in")
