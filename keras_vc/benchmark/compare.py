"""``keras-vc compare``: every method against the softmax baseline on real data.

Protocol: for each dataset and seed the split, the backbone's initial weights and the batch order
are fixed by the seed, so every method is paired with the softmax run of the same seed. Each
model is trained with the same optimizer, epochs and batch size (no early stopping). On the test
split we report accuracy, ECE (15 bins), MCE, NLL and Brier, before and after temperature
scaling fitted on the validation split by NLL (never on test).
"""

import datetime
import json
import os
import platform
import time

import keras
import numpy as np

from keras_vc import calibration
from keras_vc import metrics
from keras_vc.benchmark import backbones
from keras_vc.benchmark import methods as methods_lib
from keras_vc.data import offline

DATASETS = {"digits": offline.load_digits, "mnist1d": offline.load_mnist1d}
CALIBRATION_METRICS = ("accuracy", "ece", "mce", "nll", "brier")
NUM_BINS = 15


def calibration_report(labels, probs):
    """Accuracy, ECE, MCE, NLL and Brier of probabilities (15 equal-width bins)."""
    return {
        "accuracy": metrics.accuracy(labels, probs),
        "ece": metrics.expected_calibration_error(labels, probs, NUM_BINS),
        "mce": metrics.expected_calibration_error(labels, probs, NUM_BINS, norm="max"),
        "nll": metrics.negative_log_likelihood(labels, probs),
        "brier": metrics.brier_score(labels, probs),
    }


def evaluate_logits(val_logits, y_val, test_logits, y_test):
    """Test metrics before and after temperature scaling fitted on validation NLL."""
    fit = calibration.find_temperature(val_logits, y_val, objective="nll")
    before = calibration_report(y_test, calibration.softmax(test_logits))
    after = calibration_report(y_test, calibration.softmax(test_logits, fit.temperature))
    result = {f"{key}": value for key, value in before.items()}
    result.update({f"{key}_ts": value for key, value in after.items() if key != "accuracy"})
    result["temperature"] = fit.temperature
    result["temperature_at_bound"] = fit.at_bound
    return result


def _predict_logits(model, x):
    return np.asarray(model.predict(x, batch_size=512, verbose=0), dtype=np.float64)


def run_one(dataset_name, split, method, seed, protocol, context):
    """Trains one method on one seed and returns its raw figures and test probabilities."""
    keras.utils.set_random_seed(seed)
    backbone = backbones.for_dataset(dataset_name)()
    start = time.perf_counter()
    model = method.train(backbone, split, protocol, seed, context)
    context[method.name] = model
    train_seconds = time.perf_counter() - start
    val_logits = _predict_logits(model, split.x_val)
    test_logits = _predict_logits(model, split.x_test)
    if not (np.all(np.isfinite(val_logits)) and np.all(np.isfinite(test_logits))):
        raise FloatingPointError(f"{method.name} on {dataset_name} seed {seed} gave non-finite logits")
    figures = evaluate_logits(val_logits, split.y_val, test_logits, split.y_test)
    figures["train_seconds"] = train_seconds
    return figures, calibration.softmax(test_logits)


def summarize(values):
    values = np.asarray(values, dtype=np.float64)
    return {"mean": float(values.mean()), "std": float(values.std(ddof=0)), "n": int(values.size)}


def paired_differences(runs, method, baseline="softmax", keys=CALIBRATION_METRICS):
    """Per-metric paired difference method - baseline over seeds, with the sign agreement count."""
    by_seed = {r["seed"]: r["figures"] for r in runs if r["method"] == baseline}
    diffs = {}
    for key in keys:
        deltas = [r["figures"][key] - by_seed[r["seed"]][key]
                  for r in runs if r["method"] == method and r["seed"] in by_seed]
        if not deltas:
            continue
        deltas = np.asarray(deltas)
        sign = np.sign(deltas.mean())
        diffs[key] = dict(summarize(deltas), same_sign=int(np.sum(np.sign(deltas) == sign)))
    return diffs


def run_compare(dataset_names, method_names, seeds, protocol, out_dir, log=print):
    """Runs the comparison and writes the JSON and Markdown reports and the plots."""
    os.makedirs(out_dir, exist_ok=True)
    report = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.platform()}; {os.cpu_count()} CPU cores; "
                   f"Python {platform.python_version()}; Keras {keras.__version__} "
                   f"({keras.backend.backend()} backend)",
        "protocol": dict(vars(protocol), seeds=list(seeds), temperature_objective="nll",
                         num_bins=NUM_BINS, jit_compile=True, early_stopping=False),
        "methods": {name: {"title": methods_lib.METHODS[name].title,
                           "ood_score": methods_lib.METHODS[name].ood_score,
                           "probabilities": methods_lib.METHODS[name].note}
                    for name in method_names},
        "datasets": {},
    }
    for dataset_name in dataset_names:
        runs, first_seed_probs, sizes = [], {}, None
        for seed in seeds:
            split = DATASETS[dataset_name](seed)
            sizes = split.sizes()
            context = {}
            for name in method_names:
                figures, probs = run_one(dataset_name, split, methods_lib.METHODS[name], seed,
                                         protocol, context)
                runs.append({"method": name, "seed": seed, "figures": figures})
                if seed == seeds[0]:
                    first_seed_probs[name] = (split.y_test, probs)
                flag = "  [temperature at search bound]" if figures["temperature_at_bound"] else ""
                log(f"[{dataset_name}] seed {seed} {name:<12s} acc {figures['accuracy']:.3f}  "
                    f"ECE {figures['ece']:.3f} -> {figures['ece_ts']:.3f} (TS)  "
                    f"NLL {figures['nll']:.3f}  {figures['train_seconds']:.1f}s{flag}")
        summary = {}
        for name in method_names:
            method_runs = [r["figures"] for r in runs if r["method"] == name]
            keys = [k for k in method_runs[0] if isinstance(method_runs[0][k], (int, float))
                    and not isinstance(method_runs[0][k], bool)]
            summary[name] = {k: summarize([f[k] for f in method_runs]) for k in keys}
            summary[name]["temperature_at_bound_runs"] = int(
                sum(f["temperature_at_bound"] for f in method_runs))
        paired = {name: paired_differences(runs, name) for name in method_names
                  if name != "softmax" and "softmax" in method_names}
        plots = _reliability_plots(dataset_name, first_seed_probs, out_dir)
        report["datasets"][dataset_name] = {"sizes": sizes, "runs": runs, "summary": summary,
                                            "paired_vs_softmax": paired, "plots": plots}
    with open(os.path.join(out_dir, "compare.json"), "w") as handle:
        json.dump(report, handle, indent=2)
    markdown = format_markdown(report)
    with open(os.path.join(out_dir, "compare.md"), "w") as handle:
        handle.write(markdown)
    return report


def _reliability_plots(dataset_name, first_seed_probs, out_dir):
    paths = {}
    for name, (labels, probs) in first_seed_probs.items():
        figure = metrics.reliability_diagram(labels, probs, num_bins=NUM_BINS,
                                             title=f"{dataset_name}: {name}")
        path = os.path.join(out_dir, f"reliability_{dataset_name}_{name}.png")
        figure.savefig(path, dpi=90, bbox_inches="tight")
        paths[name] = os.path.basename(path)
    return paths


def _cell(stats):
    return f"{stats['mean']:.3f} ± {stats['std']:.3f}"


def _delta_cell(stats):
    return f"{stats['mean']:+.3f} ± {stats['std']:.3f} ({stats['same_sign']}/{stats['n']})"


def format_table(report, dataset_name):
    """A Markdown table of one dataset (mean ± std over seeds), with the paired deltas."""
    data = report["datasets"][dataset_name]
    columns = ["accuracy", "ece", "ece_ts", "mce", "nll", "nll_ts", "brier", "temperature"]
    lines = [f"| method | {' | '.join(columns)} |", "|---" * (len(columns) + 1) + "|"]
    for name, summary in data["summary"].items():
        cells = [_cell(summary[c]) for c in columns]
        flag = summary["temperature_at_bound_runs"]
        title = report["methods"][name]["title"] + (f" (T at bound in {flag} runs)" if flag else "")
        lines.append(f"| {title} | {' | '.join(cells)} |")
    if data["paired_vs_softmax"]:
        lines += ["", "Paired difference vs softmax (mean ± std over seeds; seeds where the sign "
                  "agrees):", "", f"| method | {' | '.join(CALIBRATION_METRICS)} |",
                  "|---" * (len(CALIBRATION_METRICS) + 1) + "|"]
        for name, diffs in data["paired_vs_softmax"].items():
            cells = [_delta_cell(diffs[c]) for c in CALIBRATION_METRICS]
            lines.append(f"| {report['methods'][name]['title']} | {' | '.join(cells)} |")
    return "\n".join(lines)


def format_markdown(report):
    protocol = report["protocol"]
    lines = [
        "# keras-vc compare",
        "",
        f"Date: {report['date']}. Machine: {report['machine']}.",
        "",
        f"Protocol: {protocol['optimizer']} (learning rate {protocol['learning_rate']}), "
        f"{protocol['epochs']} epochs, batch {protocol['batch_size']}, no early stopping, XLA on; "
        f"seeds {protocol['seeds']}. Metrics on the test split; ECE/MCE with "
        f"{protocol['num_bins']} equal-width bins; `_ts` = after temperature scaling fitted on "
        "the validation split by NLL.",
        "",
        "Probabilities scored: " + "; ".join(
            f"{m['title']}: {m['probabilities']}" for m in report["methods"].values()) + ".",
    ]
    for dataset_name, data in report["datasets"].items():
        sizes = data["sizes"]
        lines += ["", f"## {dataset_name} (train {sizes['train']}, val {sizes['val']}, "
                      f"test {sizes['test']})", "", format_table(report, dataset_name)]
    return "\n".join(lines) + "\n"
