"""``keras-vc speed`` at tiny sizes: the report's structure and finite figures (no timing asserted).

Stand-in variants, defined here only, exercise every path of the harness without the real heads:
an extra matrix product, a batch transform inside the step, a missing part of keras_vc, and a
factory that breaks.
"""

import json
import math
import os
import pathlib
import subprocess
import sys

import keras
import pytest

from keras_vc.benchmark import cli
from keras_vc.benchmark import speed
from keras_vc.benchmark import speed_memory
from keras_vc.benchmark import speed_runner
from keras_vc.benchmark import speed_variants

B, D, K = 16, 8, 1000
ROOT = pathlib.Path(__file__).resolve().parents[1]


def _two_matmuls(backbone, num_classes, seed):
    hidden = keras.layers.Dense(backbone.features.shape[-1], name="extra")(backbone.features)
    logits = keras.layers.Dense(num_classes, dtype="float32", name="logits")(hidden)
    return speed_variants.Built(keras.Model(backbone.inputs, logits),
                       keras.losses.SparseCategoricalCrossentropy(from_logits=True))


def _shuffle_batch(x, y, seed_generator):
    order = keras.random.shuffle(keras.ops.arange(keras.ops.shape(x)[0]), seed=seed_generator)
    return keras.ops.take(x, order, axis=0), keras.ops.take(y, order, axis=0)


def _with_transform(backbone, num_classes, seed):
    built = speed_variants.variants()[speed.BASELINE].build(backbone, num_classes, seed)
    return speed_variants.Built(built.model, built.loss, transform=_shuffle_batch)


def _missing(backbone, num_classes, seed):
    speed_variants.require("keras_vc", "NoSuchHead")


def _broken(backbone, num_classes, seed):
    raise RuntimeError("stand-in factory that breaks")


# Head scope only where they compile, to keep the ResNet compilations (slow on a CPU) to one.
STAND_INS = (
    speed_variants.Variant("standin_two_matmuls", "Stand-in: Dense + Dense", _two_matmuls,
                  scopes=("head",)),
    speed_variants.Variant("standin_transform", "Stand-in: shuffled batch", _with_transform,
                  scopes=("head",)),
    speed_variants.Variant("standin_missing", "Stand-in: missing", _missing),
    speed_variants.Variant("standin_broken", "Stand-in: broken", _broken, scopes=("head",)),
    speed_variants.Variant("standin_model_only", "Stand-in: model only", _missing, scopes=("model",)),
)


@pytest.fixture(scope="module")
def stand_ins():
    for variant in STAND_INS:
        speed_variants.register(variant)
    yield [variant.name for variant in STAND_INS]
    for variant in STAND_INS:
        speed_variants.unregister(variant.name)


@pytest.fixture(scope="module")
def quick_report(stand_ins, tmp_path_factory):
    out = tmp_path_factory.mktemp("speed")
    code = cli.main(["speed", "--quick", "--sizes", f"{B}x{D}x{K}",
                     "--variants", ",".join(stand_ins), "--out", str(out)])
    assert code == 0
    with open(out / "speed.json") as handle:
        report = json.load(handle)
    return report, (out / "speed.md").read_text()


def _finite_quantiles(stats):
    assert all(math.isfinite(stats[k]) for k in ("q25", "median", "q75"))
    assert stats["q25"] <= stats["median"] <= stats["q75"]


def _ok(entry):
    assert entry["status"] == "ok", entry
    assert entry["xla"] is True
    assert math.isfinite(entry["loss"]) and entry["compile_seconds"] > 0
    _finite_quantiles(entry["step_ms"])
    assert entry["step_ms"]["median"] > 0
    _finite_quantiles(entry["ratio"])


def test_report_structure(quick_report):
    report, _ = quick_report
    assert report["backend"] == keras.backend.backend()
    assert report["scopes"] == ["head", "model"]
    assert report["command"].startswith("keras-vc speed --quick --sizes 16x8x1000")
    assert report["overhead_ms"] > 0
    head, model = report["results"]
    assert (head["scope"], head["config"]) == ("head", {"batch": B, "features": D, "classes": K})
    assert model["scope"] == "model"
    assert model["config"]["batch"] == speed.QUICK.model_batches[0]
    assert list(report["variants"])[0] == speed.BASELINE
    for result in (head, model):
        assert result["steps_per_repeat"] == 1
        _ok(result["variants"][speed.BASELINE])
        assert result["variants"][speed.BASELINE]["ratio"]["median"] == 1.0
        missing = result["variants"]["standin_missing"]
        assert missing["status"] == "not available"
        assert "keras_vc.NoSuchHead" in missing["reason"]
    _ok(head["variants"]["standin_two_matmuls"])
    _ok(head["variants"]["standin_transform"])
    assert head["variants"]["standin_broken"] == {
        "status": "failed", "reason": "RuntimeError: stand-in factory that breaks"}
    assert head["variants"]["standin_model_only"]["status"] == "not applicable"
    assert model["variants"]["standin_model_only"]["status"] == "not available"
    assert model["variants"]["standin_two_matmuls"]["status"] == "not applicable"


def test_state_memory_counts_weights_and_momentum(quick_report):
    report, _ = quick_report
    head = report["results"][0]["variants"]
    weights = 4 * (D + D * K + K)  # feature scale, Dense kernel and bias, float32
    for name, extra in ((speed.BASELINE, 0), ("standin_two_matmuls", 4 * (D * D + D))):
        state = head[name]["memory"]["state_bytes"]
        # weights + one SGD momentum slot each, plus a few scalars (iterations, learning rate)
        # and nothing of the size of a weight.
        assert 2 * (weights + extra) <= state <= 2 * (weights + extra) + 64
    assert report["results"][1]["variants"][speed.BASELINE]["memory"]["state_bytes"] > 0


def test_step_memory_is_a_reading_or_says_why(quick_report):
    # In this process the allocator's state depends on what ran before (TensorFlow picks its CPU
    # allocator at the first allocation): whatever it is, a step is a positive reading or None
    # with the reason, never a silent 0.
    report, markdown = quick_report
    for result in report["results"]:
        for entry in result["variants"].values():
            if entry["status"] != "ok":
                continue
            step = entry["memory"]["step_bytes"]
            if step is None:
                assert entry["memory"]["step_reason"]
            else:
                assert report["memory"]["step_available"] and step > 0
    if not report["memory"]["step_available"]:
        assert report["memory"]["step_method"].startswith("not available: ")
        assert report["memory"]["step_method"] in markdown


# The stand-in is registered in a fresh process that runs the command as a user does, so that
# the allocator is the one `keras-vc speed` chooses, whatever this process ran before.
_FRESH_SPEED = """
import sys
sys.path.insert(0, sys.argv[1])
from keras_vc.benchmark import cli, speed_variants
import test_speed
speed_variants.register(test_speed.STAND_INS[0])
sys.exit(cli.main(["speed", "--quick", "--scopes", "head", "--sizes", sys.argv[2],
                   "--variants", test_speed.STAND_INS[0].name, "--out", sys.argv[3]]))
"""


@pytest.mark.skipif(keras.backend.backend() != "tensorflow",
                    reason="the allocator reading is TensorFlow's")
def test_step_memory_holds_the_logits(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != speed_memory.BFC_VARIABLE}
    subprocess.run([sys.executable, "-c", _FRESH_SPEED, str(pathlib.Path(__file__).parent),
                    f"{B}x{D}x{K}", str(tmp_path)], check=True, env=env, cwd=ROOT)
    report = json.loads((tmp_path / "speed.json").read_text())
    assert report["memory"]["step_available"], report["memory"]["step_method"]
    head = report["results"][0]["variants"]
    # A step holds at least the logits' gradient, batch x classes floats.
    assert head[speed.BASELINE]["memory"]["step_bytes"] >= 4 * B * K
    ratio = head["standin_two_matmuls"]["memory"]["step_ratio"]
    assert ratio is not None and math.isfinite(ratio) and ratio > 0


def test_frozen_allocator_statistics_are_not_a_reading(monkeypatch):
    # Statistics that exist but do not move (they missed the allocations) must not read as 0.
    tf = pytest.importorskip("tensorflow")
    if keras.backend.backend() != "tensorflow":
        pytest.skip("the allocator reading is TensorFlow's")
    monkeypatch.setattr(tf.config.experimental, "reset_memory_stats", lambda device: None)
    monkeypatch.setattr(tf.config.experimental, "get_memory_info",
                        lambda device: {"current": 4096, "peak": 4096})
    available, description = speed.memory_method()
    assert not available
    assert "do not follow its allocations" in description
    assert f"a probe of {2 ** 20} bytes read 0 bytes" in description


def test_markdown(quick_report):
    _, markdown = quick_report
    assert markdown.startswith("# keras-vc speed")
    head, model = markdown.split("## Full model")
    assert f"| variant | B={B} D={D} K={K} |" in head
    assert "| Stand-in: missing | not available |" in head
    assert "Stand-in: broken | failed |" in head
    assert "model only" not in head  # a model-only variant gets no head row
    assert "| Stand-in: model only | not available |" in model
    assert "Stand-in: Dense + Dense" not in model.split("## Goals")[0]
    assert "| head alone at K = 10000 (time) | 1.50 | - | not measured |" in markdown
    assert "- Stand-in: missing: not available: " in markdown


def test_goals():
    def result(scope, config, **ratios):
        return {"scope": scope, "config": config,
                "variants": {name: {"status": "ok", "ratio": {"median": value}}
                             for name, value in ratios.items()}}

    results = [
        result("model", {"batch": 128, "classes": 10}, softmax=1.0, dismax=1.02, snnl=1.9),
        result("model", {"batch": 256, "classes": 10}, softmax=1.0, dismax=1.07, snnl=1.2),
        result("head", {"batch": 256, "features": 512, "classes": 10000}, softmax=1.0,
               isomax_plus=1.4),
    ]
    goals = {g["goal"]: g for g in speed.evaluate_goals(results)}
    distance = goals["DistanceLogits, full model"]
    assert distance["status"] == "missed"
    assert distance["worst"] == {"ratio": 1.07, "variant": "dismax", "config": "B=256 K=10"}
    assert goals["SNNL on three layers, full model at batch 256"]["status"] == "met"
    assert goals["VariationalSoftmax, full model"]["status"] == "not measured"
    assert goals["head alone at K = 10000 (time)"]["status"] == "met"


def test_cli_usage_errors(capsys):
    other = "jax" if keras.backend.backend() == "tensorflow" else "tensorflow"
    assert cli.main(["speed", "--backend", other, "--quick"]) == 2
    assert f"KERAS_BACKEND={other}" in capsys.readouterr().err
    assert cli.main(["speed", "--variants", "nope"]) == 2
    assert "unknown variant(s) nope" in capsys.readouterr().err
    assert cli.main(["speed", "--scopes", "everything"]) == 2
    assert "unknown scope(s) ['everything']" in capsys.readouterr().err
    assert cli.main(["speed", "--sizes", "16x8x1"]) == 2
    assert "head_sizes[0]" in capsys.readouterr().err
    for option in ("--model-batches", "--repeats"):
        assert cli.main(["speed", option, "0"]) == 2
        assert "expected a positive integer, got 0" in capsys.readouterr().err
    for bad in ("16x8", "16x8xten", "0x8x10"):
        assert cli.main(["speed", "--sizes", bad]) == 2
        assert "BATCHxFEATURESxCLASSES" in capsys.readouterr().err


def test_api_errors():
    with pytest.raises(ValueError, match="`variant` must be a speed.Variant"):
        speed_variants.register("softmax")
    with pytest.raises(ValueError, match="`variant.scopes`"):
        speed_variants.register(speed_variants.Variant("x", "x", _broken, scopes=("everywhere",)))
    with pytest.raises(ValueError, match="cannot be unregistered"):
        speed_variants.unregister(speed.BASELINE)
    with pytest.raises(speed_variants.NotAvailable, match="cannot import keras_vc.nowhere"):
        speed_variants.require("keras_vc.nowhere", "Thing")
    with pytest.raises(ValueError, match="`variant_names`: unknown variant"):
        speed.run_speed(["nope"], speed.QUICK)
    with pytest.raises(ValueError, match="`scopes`"):
        speed.run_speed(None, speed.QUICK, scopes=("head", "elsewhere"))
    with pytest.raises(ValueError, match="`settings` must be a speed.Settings"):
        speed.run_speed(None, {"repeats": 3})
    bad_settings = {
        "head_sizes": ((16, 8),), "model_batches": (0,), "model_classes": 1,
        "model_widths": (), "repeats": 0, "warmup_steps": 0, "block_seconds": -1.0,
        "learning_rate": 0.0,
    }
    for field, value in bad_settings.items():
        with pytest.raises(ValueError, match=f"`{field}"):
            speed.validate_settings(speed.Settings(**{field: value}))
    with pytest.raises(ValueError, match="must start with the baseline"):
        speed.measure_configuration("head", {"batch": 2, "features": 2, "classes": 2},
                                    [STAND_INS[0]], speed.QUICK)
    with pytest.raises(ValueError, match="nothing to measure"):
        speed.validate_settings(speed.Settings(head_sizes=(), model_batches=()))


def test_a_step_that_reads_no_growth_is_not_a_reading(monkeypatch):
    tf = pytest.importorskip("tensorflow")
    if keras.backend.backend() != "tensorflow":
        pytest.skip("the allocator reading is TensorFlow's")
    backbone = speed_runner.speed_models.feature_input(4)
    built = speed_variants.variants()[speed.BASELINE].build(backbone, 3, 0)
    x, y = speed_runner._data("head", {"batch": 2, "features": 4, "classes": 3}, 0)
    runner = speed_runner._Runner(speed.BASELINE, built, x, y, speed.Settings(warmup_steps=1))
    # The probe passes, then the step's allocations are missed: peak never passes current.
    monkeypatch.setattr(speed_memory, "tf_allocator_problem", lambda device: None)
    monkeypatch.setattr(tf.config.experimental, "reset_memory_stats", lambda device: None)
    monkeypatch.setattr(tf.config.experimental, "get_memory_info",
                        lambda device: {"current": 4096, "peak": 4096})
    memory = runner.memory()
    assert memory["step_bytes"] is None
    assert "read 0 bytes for a step" in memory["step_reason"]
    assert memory["state_bytes"] > 0
