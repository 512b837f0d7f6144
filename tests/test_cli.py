"""The ``keras-vc`` command line: bad input gives one line and exit status 2, no traceback."""

import json
import os
import warnings

import numpy as np
import pytest

from keras_vc.benchmark import cli


@pytest.mark.parametrize("argv, message", [
    (["compare", "--dataset", "nope"], "unknown dataset 'nope'"),
    (["compare", "--dataset", "digits,tfds:"], "unknown dataset 'tfds:'"),
    (["compare", "--methods", "nope"], "unknown method(s) nope; expected some of softmax"),
    (["compare", "--seeds", "0"], "--seeds: expected a positive integer, got 0"),
    (["compare", "--epochs", "-3"], "--epochs: expected a positive integer, got -3"),
    (["compare", "--seeds", "two"], "expected a positive integer, got 'two'"),
    (["compare", "--low-data", "0.1,2"], "expected fractions in (0, 1] or 'none', got 2.0"),
    (["compare", "--alpha", "1.5"], "--alpha: expected a miscoverage level in (0, 1), got 1.5"),
    (["compare", "--alpha", "x"], "expected a miscoverage level in (0, 1), got 'x'"),
    (["compare", "--alpha", "0.1", "0.1"], "--alpha: expected distinct levels"),
    (["compare", "--calibrators", "platt"], "--calibrators: expected distinct calibrators from "
     "temperature, vector, matrix, dirichlet, histogram, isotonic or 'all', got 'platt'"),
    (["compare", "--calibrators", "vector,vector"], "--calibrators: expected distinct"),
    (["compare", "--open-set", "--no-open-set"],
     "argument --no-open-set: not allowed with argument --open-set"),
    (["compare", "--dataset", "folder:/nonexistent/keras_vc"], "does not exist"),
    (["compare", "--dataset", "tfds:keras_vc_no_such_dataset"], "no dataset named"),
    (["frobnicate"], "invalid choice"),
])
def test_bad_input_exits_with_a_message(argv, message, capsys, tmp_path):
    status = cli.main(argv + ["--out", str(tmp_path / "out")] if argv[0] == "compare" else argv)
    captured = capsys.readouterr()
    assert status == 2
    assert message in captured.err
    assert "Traceback" not in captured.err + captured.out
    error_lines = [line for line in captured.err.splitlines() if "error" in line]
    assert len(error_lines) == 1
    assert not os.path.exists(tmp_path / "out")


def test_unprepared_tfds_dataset_fails_fast_with_advice(capsys, tmp_path):
    status = cli.main(["compare", "--dataset", "tfds:mnist", "--data-dir", str(tmp_path),
                       "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert status == 2 and "is not prepared" in err and "--download" in err
    assert len(err.strip().splitlines()) == 1


def test_help_exits_zero(capsys):
    assert cli.main(["compare", "--help"]) == 0
    out = capsys.readouterr().out
    assert "--download" in out and "--alpha" in out and "--no-open-set" in out
    assert "--open-set" in out and "--calibrators" in out


class _Planned(Exception):
    pass


@pytest.mark.parametrize("flags, open_set, calibrators", [
    ([], None, ("temperature", "vector", "histogram", "isotonic")),
    (["--open-set", "--calibrators", "all"], True,
     ("temperature", "vector", "matrix", "dirichlet", "histogram", "isotonic")),
    (["--no-open-set", "--calibrators", "dirichlet,temperature"], False,
     ("dirichlet", "temperature")),
])
def test_open_set_and_calibrator_flags_reach_the_plan(flags, open_set, calibrators,
                                                      monkeypatch, tmp_path):
    from keras_vc.benchmark import compare

    planned = {}

    def run_compare(*args, plan, **kwargs):
        planned["plan"] = plan
        raise _Planned

    monkeypatch.setattr(compare, "run_compare", run_compare)
    with pytest.raises(_Planned):
        cli.main(["compare", "--out", str(tmp_path)] + flags)
    assert planned["plan"].open_set is open_set
    assert planned["plan"].calibrators == calibrators


def test_a_tiny_run_prints_tables_and_writes_reports(capsys, tmp_path):
    out = tmp_path / "reports"
    status = cli.main(["compare", "--dataset", "digits", "--methods", "softmax", "--seeds", "1",
                       "--epochs", "1", "--workers", "1", "--low-data", "none",
                       "--robustness-samples", "30", "--alpha", "0.1", "0.05", "--no-open-set",
                       "--out", str(out)])
    captured = capsys.readouterr()
    assert status == 0, captured.err
    assert "[digits | seed 0 | full]  softmax" in captured.out
    assert "== digits: calibration (test split" in captured.out
    assert "| Dense + softmax |" in captured.out
    report = json.loads((out / "compare.json").read_text())
    assert report["command"] == (f"keras-vc compare --dataset digits --methods softmax --seeds 1 "
                                 f"--epochs 1 --workers 1 --low-data none --robustness-samples 30 "
                                 f"--alpha 0.1 0.05 --no-open-set --out {out}")
    assert report["plan"]["low_data_fractions"] == [] and report["plan"]["robustness_samples"] == 30
    assert report["plan"]["alphas"] == [0.1, 0.05] and report["plan"]["open_set"] is False
    assert report["datasets"]["digits"]["configs"] == ["full"]
    assert set(report["datasets"]["digits"]["runs"][0]["figures"]["conformal"]) >= {"0.1", "0.05"}
    assert (out / "README_results.md").exists() and (out / "compare.md").exists()


def _noise_folder(root, size=8, per_class=10):
    from PIL import Image

    rng = np.random.default_rng(0)
    for label in ("a", "b", "c"):
        os.makedirs(root / label)
        for i in range(per_class):
            pixels = rng.integers(0, 256, (size, size), np.uint8)
            Image.fromarray(pixels, mode="L").save(root / label / f"{i}.png")
    return root


def test_a_quick_folder_run_states_the_image_size_and_flags_chance(capsys, tmp_path):
    # Noise images: nothing to learn, so the model ends at chance and the run says so.
    folder = _noise_folder(tmp_path / "noise")
    out = tmp_path / "reports"
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no NumPy 0/0 in the figures
        status = cli.main(["compare", "--dataset", f"folder:{folder}", "--quick",
                           "--methods", "softmax", "--epochs", "1", "--workers", "1",
                           "--image-size", "8", "--out", str(out)])
    captured = capsys.readouterr()
    assert status == 0, captured.err
    assert "folder:noise: images from" in captured.out and "resized to 8x8 rgb" in captured.out
    assert "--image-size" in captured.out
    assert "[1/1 " in captured.out and "ETA 0:00]" in captured.out
    assert "WARNING: softmax on folder:noise seed 0 (full) ended at chance accuracy" in (
        captured.out)
    report = json.loads((out / "compare.json").read_text())
    assert report["datasets"]["folder:noise"]["at_chance"] == {"full": {"softmax": [0]}}
    assert report["plan"]["robustness"] is False
    assert report["datasets"]["folder:noise"]["configs"] == ["full"]
    assert "Adversarial robustness" not in (out / "compare.md").read_text()
