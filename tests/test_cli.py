"""The ``keras-vc`` command line: bad input gives one line and exit status 2, no traceback."""

import json
import os

import pytest

from keras_vc.benchmark import cli


@pytest.mark.parametrize("argv, message", [
    (["compare", "--dataset", "nope"], "unknown dataset 'nope'"),
    (["compare", "--dataset", "digits,tfds:"], "unknown dataset 'tfds:'"),
    (["compare", "--methods", "nope"], "unknown method(s) nope; available: softmax"),
    (["compare", "--seeds", "0"], "--seeds: expected a positive integer, got 0"),
    (["compare", "--epochs", "-3"], "--epochs: expected a positive integer, got -3"),
    (["compare", "--seeds", "two"], "expected a positive integer, got 'two'"),
    (["compare", "--low-data", "0.1,2"], "expected fractions in (0, 1] or 'none', got 2.0"),
    (["compare", "--alpha", "1.5"], "--alpha: expected a miscoverage level in (0, 1), got 1.5"),
    (["compare", "--alpha", "x"], "expected a miscoverage level in (0, 1), got 'x'"),
    (["compare", "--alpha", "0.1", "0.1"], "--alpha: expected distinct levels"),
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
