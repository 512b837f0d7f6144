"""PNG figures of a ``keras-vc compare`` report (matplotlib ``Figure`` objects, no pyplot).

Per dataset: a reliability diagram per method (first seed, all classes), OOD score histograms
per OOD set (first seed, each method's recommended score), accuracy / ECE versus corruption
severity and versus attack epsilon, and versus the training fraction (mean ± std over seeds).
"""

import os
import re

import numpy as np
from matplotlib.figure import Figure

from keras_vc import metrics
from keras_vc.benchmark import evaluation

DPI = 90


def _file_name(*parts):
    return "_".join(re.sub(r"[^A-Za-z0-9_.-]+", "-", str(p)) for p in parts) + ".png"


def _save(figure, out_dir, name):
    figure.savefig(os.path.join(out_dir, name), dpi=DPI, bbox_inches="tight")
    return name


def _mean_std(entry, key):
    stats = entry.get(key)
    if stats is None:
        return np.nan, 0.0
    return stats["mean"], stats["std"]


def _curve(ax, x, entry, keys, label):
    means, stds = zip(*[_mean_std(entry, key) for key in keys])
    means, stds = np.asarray(means), np.asarray(stds)
    line, = ax.plot(x, means, marker="o", markersize=3, label=label)
    ax.fill_between(x, means - stds, means + stds, color=line.get_color(), alpha=0.15)


def reliability_plots(name, plot_data, out_dir):
    paths = {}
    for method, plot in plot_data.get("full", {}).items():
        labels, probs = plot["reliability"]
        figure = metrics.reliability_diagram(labels, probs, num_bins=evaluation.NUM_BINS,
                                             title=f"{name}: {method} (T = 1)")
        paths[method] = _save(figure, out_dir, _file_name("reliability", name, method))
    return paths


def ood_histograms(report, name, plot_data, out_dir):
    paths = {}
    sets = {}
    for config, by_method in plot_data.items():
        for method, plot in by_method.items():
            for set_name, scores in plot.get("ood_scores", {}).items():
                sets.setdefault(set_name, {})[method] = scores["recommended"]
    for set_name, by_method in sets.items():
        columns = min(4, len(by_method))
        rows = int(np.ceil(len(by_method) / columns))
        figure = Figure(figsize=(3.2 * columns, 2.6 * rows))
        for i, (method, (scores_in, scores_out)) in enumerate(by_method.items()):
            ax = figure.add_subplot(rows, columns, i + 1)
            both = np.concatenate([scores_in, scores_out])
            bins = np.linspace(both.min(), both.max() + 1e-12, 31)
            # One filled outline per histogram rather than a patch per bar (the same picture,
            # drawn in a fraction of the time: these figures were most of the report step).
            ax.hist(scores_in, bins=bins, alpha=0.6, density=True, histtype="stepfilled",
                    label="in-distribution")
            ax.hist(scores_out, bins=bins, alpha=0.6, density=True, histtype="stepfilled",
                    label=set_name)
            auroc = metrics.auroc(scores_in, scores_out)
            score = next((r["figures"].get("ood_score") for r in report["datasets"][name]["runs"]
                          if r["method"] == method and "ood_score" in r["figures"]), "score")
            ax.set_title(f"{method}: AUROC {auroc:.3f}", fontsize=9)
            ax.set_xlabel(score, fontsize=8)
            ax.tick_params(labelsize=7)
            if i == 0:
                ax.legend(fontsize=7)
        figure.suptitle(f"{name}: OOD scores, in-distribution test vs {set_name}", fontsize=10)
        figure.tight_layout()
        paths[set_name] = _save(figure, out_dir, _file_name("ood", name, set_name))
    return paths


def corruption_plot(report, name, out_dir):
    data = report["datasets"][name]
    severities = report["plan"]["corruption_severities"]
    x = [0] + list(severities)
    figure = Figure(figsize=(9, 3.4))
    for i, (metric, title) in enumerate((("accuracy", "accuracy"), ("ece", "ECE (T = 1)"),
                                         ("ece_ts", "ECE (TS)"))):
        ax = figure.add_subplot(1, 3, i + 1)
        for method, entry in data["summary"].get("full", {}).items():
            keys = [f"corruptions.clean.{metric}"] + [f"corruptions.mean.{s}.{metric}"
                                                      for s in severities]
            _curve(ax, x, entry, keys, method)
        ax.set_xlabel("severity (0 = clean)")
        ax.set_title(title)
        ax.set_xticks(x)
    figure.axes[0].legend(fontsize=7)
    figure.suptitle(f"{name}: mean over corruptions ({', '.join(data['corruptions'])})",
                    fontsize=9)
    figure.tight_layout()
    return _save(figure, out_dir, _file_name("corruptions", name))


def adversarial_plot(report, name, out_dir):
    data = report["datasets"][name]
    epsilons = report["plan"]["attack_epsilons"]
    x = [0.0] + list(epsilons)
    figure = Figure(figsize=(8, 6))
    for row, (metric, title) in enumerate((("accuracy", "accuracy"), ("ece", "ECE (T = 1)"))):
        for column, attack in enumerate(("fgsm", "pgd")):
            ax = figure.add_subplot(2, 2, 2 * row + column + 1)
            for method, entry in data["summary"].get("full", {}).items():
                keys = [f"adversarial.clean.{metric}"] + [f"adversarial.{attack}.{e:g}.{metric}"
                                                          for e in epsilons]
                _curve(ax, x, entry, keys, method)
            ax.set_title(f"{attack.upper()}: {title}", fontsize=10)
            ax.set_xlabel("ε / input range")
    figure.axes[0].legend(fontsize=7)
    figure.suptitle(f"{name}: L-infinity attacks", fontsize=10)
    figure.tight_layout()
    return _save(figure, out_dir, _file_name("adversarial", name))


def low_data_plot(report, name, out_dir):
    data = report["datasets"][name]
    low = [c for c in data["configs"] if c.startswith("low_data_")]
    if not low:
        return None
    configs = low + ["full"]
    x = [float(c[len("low_data_"):]) for c in low] + [1.0]
    figure = Figure(figsize=(8, 3.4))
    for i, (metric, title) in enumerate((("accuracy", "accuracy"), ("ece", "ECE (T = 1)"))):
        ax = figure.add_subplot(1, 2, i + 1)
        for method in report["methods"]:
            means, stds = zip(*[_mean_std(data["summary"].get(c, {}).get(method, {}),
                                          f"calibration.{metric}") for c in configs])
            line, = ax.plot(x, means, marker="o", markersize=3, label=method)
            ax.fill_between(x, np.asarray(means) - stds, np.asarray(means) + stds,
                            color=line.get_color(), alpha=0.15)
        ax.set_xscale("log")
        ax.set_xticks(x)
        ax.set_xticklabels([f"{100 * f:g}%" for f in x])
        ax.minorticks_off()
        ax.set_xlabel("share of the training split")
        ax.set_title(title)
    figure.axes[0].legend(fontsize=7)
    figure.suptitle(f"{name}: low data", fontsize=10)
    figure.tight_layout()
    return _save(figure, out_dir, _file_name("low_data", name))


def write_plots(report, name, plot_data, out_dir):
    """Writes every PNG of one dataset; returns ``{title: file name or {key: file name}}``."""
    paths = {"reliability diagrams": reliability_plots(name, plot_data, out_dir),
             "OOD score histograms": ood_histograms(report, name, plot_data, out_dir)}
    data = report["datasets"][name]
    if "full" in data["summary"] and any("corruptions.clean.accuracy" in e
                                         for e in data["summary"]["full"].values()):
        paths["accuracy / ECE vs corruption severity"] = corruption_plot(report, name, out_dir)
        paths["accuracy / ECE vs attack epsilon"] = adversarial_plot(report, name, out_dir)
    low = low_data_plot(report, name, out_dir)
    if low:
        paths["accuracy / ECE vs training fraction"] = low
    return paths
