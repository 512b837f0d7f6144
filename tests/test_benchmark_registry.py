"""The one registry of heads, and the cheap parts of a watchable ``keras-vc compare``: the quick
plan, the progress counter, the chance flag and its marks in the report (no model trained)."""

import argparse

import numpy as np
import pytest

from keras_vc.benchmark import cli
from keras_vc.benchmark import plan as plan_lib
from keras_vc.benchmark import pool
from keras_vc.benchmark import registry
from keras_vc.benchmark import report as report_lib
from keras_vc.benchmark import speed_variants
from keras_vc.benchmark import statistics
from keras_vc.benchmark import training_run


def test_compare_and_speed_enumerate_the_same_registry():
    compare_names = list(registry.compare_methods())
    speed_names = list(speed_variants.variants())
    assert compare_names == plan_lib.ordered_methods()
    assert compare_names[0] == speed_names[0] == registry.BASELINE
    # Every speed variant belongs to one head and carries its name (or the name and a suffix);
    # every head that both commands know has the same name in both.
    for head in registry.HEADS.values():
        for variant in head.speed:
            assert variant.name == head.name or variant.name.startswith(head.name + "_")
    timed = {head.name for head in registry.HEADS.values() if head.speed}
    assert timed <= set(speed_names)
    assert {"softmax", "isomax_plus", "dismax", "vc", "vc_deterministic", "snnl"} <= (
        timed & set(compare_names))
    assert {"tst", "vtst"} <= set(compare_names) - timed
    assert "variational" not in compare_names + speed_names


def test_vc_rows_say_which_encoder_runs():
    heads = registry.HEADS
    assert heads["vc"].title == "VC, Gaussian encoder"
    assert heads["vc_deterministic"].title == "VC, deterministic encoder"
    layer = heads["vc_deterministic"].layer(3, 0, "logits")
    assert layer.posterior == "deterministic" and layer.latent_dim is None
    assert heads["vc"].layer(3, 0, "logits").posterior == "gaussian"


def test_renamed_names_say_their_new_name(capsys):
    assert cli.main(["speed", "--variants", "variational"]) == 2
    assert "'variational' is now called 'vc'" in capsys.readouterr().err
    with pytest.raises(ValueError, match="`methods`: unknown method.*nope"):
        plan_lib.ordered_methods(["nope"])
    assert registry.unknown_names(["softmax"], ["softmax"], "method") is None


def test_registry_errors():
    with pytest.raises(ValueError, match="`head` must be a registry.Head"):
        registry.register("softmax")
    with pytest.raises(ValueError, match="cannot be unregistered"):
        registry.unregister(registry.BASELINE)


def test_help_lists_the_names(capsys):
    for command, names in (("compare", registry.compare_methods()),
                           ("speed", speed_variants.variants())):
        assert cli.main([command, "--help"]) == 0
        help_text = " ".join(capsys.readouterr().out.split())
        assert ", ".join(names) in help_text
    assert cli.main(["speed", "--help"]) == 0
    assert "Time and memory of one training step" in capsys.readouterr().out


def test_quick_plan_trains_the_main_models_only():
    plan = plan_lib.QUICK_PLAN
    assert plan.configs(10) == ["full"]
    assert plan.robustness is False and plan.open_set is False and plan.low_data_fractions == ()
    with pytest.raises(ValueError, match="`robustness` must be True or False"):
        plan_lib.Plan(robustness=1)


def test_quick_flag_runs_one_seed_of_the_quick_plan_for_few_epochs(monkeypatch, tmp_path):
    from keras_vc.benchmark import compare

    calls = []

    def fake_run_compare(datasets, methods, seeds, **kwargs):
        calls.append((datasets, methods, seeds, kwargs))
        raise KeyboardInterrupt  # stop before printing tables

    monkeypatch.setattr(compare, "run_compare", fake_run_compare)
    cases = ((["--quick"], [0], plan_lib.QUICK_EPOCHS), (["--quick", "--seeds", "2"], [0, 1],
             plan_lib.QUICK_EPOCHS), (["--quick", "--epochs", "7"], [0], 7), ([], [0, 1, 2], None))
    for argv, seeds, epochs in cases:
        assert cli.main(["compare", *argv, "--out", str(tmp_path)]) == 130
        datasets, methods, called_seeds, kwargs = calls[-1]
        assert called_seeds == seeds and methods is None
        assert kwargs["epochs"] == epochs
        assert datasets == list(plan_lib.DEFAULT_DATASETS)
        assert (kwargs["plan"] == plan_lib.QUICK_PLAN) == ("--quick" in argv)


def test_image_size_option():
    assert cli._image_size("8") == (8, 8)
    assert cli._image_size("16,24") == (16, 24) and cli._image_size("16x24") == (16, 24)
    for bad in ("0", "a,b", "1,2,3"):
        with pytest.raises(argparse.ArgumentTypeError, match="HEIGHT,WIDTH"):
            cli._image_size(bad)


def test_image_size_needs_a_folder_dataset(capsys, tmp_path):
    assert cli.main(["compare", "--dataset", "digits", "--image-size", "8",
                     "--out", str(tmp_path)]) == 2
    assert "--image-size applies to folder: datasets only" in capsys.readouterr().err


def test_progress_counter_format():
    now = [100.0]
    lines = []
    progress = pool.Progress(12, lines.append, clock=lambda: now[0])
    now[0] += 30.0
    progress.model("[digits | seed 0 | full]  softmax  acc 0.9")
    now[0] += 95.0
    progress(("warning", "WARNING: something"))
    progress(("model", "second"))
    # 30 s for one model of 12: 11 x 30 s = 5:30 left; then 125 s for two: 10 x 62.5 = 10:25.
    assert lines == ["[ 1/12 0:30 elapsed, ETA 5:30] [digits | seed 0 | full]  softmax  acc 0.9",
                     "WARNING: something",
                     "[ 2/12 2:05 elapsed, ETA 10:25] second"]


def test_results_come_back_in_task_order(monkeypatch):
    tasks = [plan_lib.Task("d", seed, "full", ("softmax",), None, plan_lib.QUICK_PLAN, False)
             for seed in (2, 0, 1)]
    seen = []

    def fake_run_task(task, dataset, methods, log, warn):
        seen.append(task.seed)
        log(f"seed {task.seed}")
        return {"task": task}

    monkeypatch.setattr(training_run, "run_task", fake_run_task)
    lines = []
    results = pool.run_tasks(tasks, {"d": None}, {}, 1, lines.append)
    assert [r["task"].seed for r in results] == [2, 0, 1]
    assert [line.split("] ", 1)[1] for line in lines] == ["seed 2", "seed 0", "seed 1"]
    assert lines[-1].startswith("[3/3 ")


def test_chance_accuracy_by_hand():
    labels = np.array([0] * 50 + [1] * 30 + [2] * 20)
    assert training_run.chance_accuracy(labels) == 0.5
    # Two binomial standard errors above the majority share: 0.5 + 2 sqrt(0.25 / 100) = 0.6.
    assert training_run.at_chance(0.6, labels) and training_run.at_chance(0.33, labels)
    assert not training_run.at_chance(0.61, labels)


def _report_with_chance(method_at_chance):
    runs = []
    for seed in (0, 1):
        for method, accuracy in (("softmax", 0.9), ("vc", 0.95)):
            runs.append({"method": method, "seed": seed, "config": "full",
                         "at_chance": method == method_at_chance and seed == 1,
                         "figures": {"calibration": {"accuracy": accuracy, "ece": 0.1,
                                                     "temperature": 1.5,
                                                     "temperature_at_bound": False}}})
    data = {"runs": runs, "configs": ["full"], "summary": statistics.summarize_runs(runs),
            "paired_vs_softmax": statistics.paired_differences(runs),
            "at_chance": statistics.at_chance_seeds(runs), "versus_best_detector": {}}
    return {"methods": {"softmax": {"title": "Dense + softmax"}, "vc": {"title": "VC"}},
            "datasets": {"d": data}}


def test_models_at_chance_are_marked_in_the_tables():
    report = _report_with_chance("vc")
    assert report["datasets"]["d"]["at_chance"] == {"full": {"vc": [1]}}
    assert "| VC [at chance in 1 seed(s)] |" in report_lib.paired_table(report, "d")
    assert "| VC [at chance in 1 seed(s)] |" in report_lib.calibration_table(report, "d")
    assert "| Dense + softmax |" in report_lib.calibration_table(report, "d")
    # The baseline at chance marks every paired row.
    paired = report_lib.paired_table(_report_with_chance("softmax"), "d")
    assert "| VC [softmax at chance in 1 seed(s)] |" in paired


def test_the_legend_explains_every_marker():
    legend = " ".join(report_lib.LEGEND) + report_lib.LOG_LEGEND
    for marker in ("(TS)", "`T`", "T at search bound", "at chance", "(k/n)", "(MSP)", "± ",
                   "-> after temperature scaling", "[temperature at search bound]",
                   "[k/N elapsed, ETA]", "cov", "size"):
        assert marker in legend, marker
