"""The Markdown tables of a ``keras-vc compare`` report (assembled by
:mod:`~keras_vc.benchmark.report_files`) and the legend of their columns and markers.

Every table is mean ± std over seeds; paired differences are ``method - softmax`` of the same
seed with, in brackets, the number of seeds whose difference has the sign of the mean.
"""

OOD_METRIC_TITLES = (("auroc", "AUROC"), ("aupr_in", "AUPR-in"), ("aupr_out", "AUPR-out"),
                     ("fpr_at_95_tpr", "FPR@95TPR"), ("detection_error", "det. error"))
SET_TITLES = {"photo_patches": "photo patches", "shuffled": "shuffled",
              "held_out_classes": "held-out classes"}


def _cell(stats, digits=3):
    if stats is None:
        return "n/a"
    if stats.get("n", 0) <= 1:
        return f"{stats['mean']:.{digits}f}"
    return f"{stats['mean']:.{digits}f} ± {stats['std']:.{digits}f}"


def _delta(stats, digits=3):
    if stats is None:
        return "n/a"
    text = f"{stats['mean']:+.{digits}f}"
    if stats["n"] > 1:
        text += f" ± {stats['std']:.{digits}f}"
    return text + f" ({stats['same_sign']}/{stats['n']})"


def _table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _title(report, method):
    return report["methods"][method]["title"]


def _ood_sets(data, config):
    runs = [r for r in data["runs"] if r["config"] == config and "ood" in r["figures"]]
    return list(runs[0]["figures"]["ood"]) if runs else []


def _score_name(data, config, method):
    for run in data["runs"]:
        if run["config"] == config and run["method"] == method and "ood_score" in run["figures"]:
            return run["figures"]["ood_score"]
    return "?"


def _bound_flag(summary_entry):
    flag = summary_entry.get("calibration.temperature_at_bound")
    if flag and flag["count"]:
        return f" (T at search bound in {flag['count']}/{flag['n']} runs)"
    return ""


FULL_CALIBRATION_COLUMNS = (("accuracy", "accuracy"), ("ece", "ECE"), ("ece_ts", "ECE (TS)"),
                            ("mce", "MCE"), ("nll", "NLL"), ("nll_ts", "NLL (TS)"),
                            ("brier", "Brier"), ("brier_ts", "Brier (TS)"), ("temperature", "T"))
SHORT_CALIBRATION_COLUMNS = (("accuracy", "accuracy"), ("ece", "ECE"), ("ece_ts", "ECE (TS)"),
                             ("nll", "NLL"), ("nll_ts", "NLL (TS)"), ("brier", "Brier"),
                             ("temperature", "T"))


def _chance_flag(data, config, method, prefix=""):
    seeds = data.get("at_chance", {}).get(config, {}).get(method)
    return f" [{prefix}at chance in {len(seeds)} seed(s)]" if seeds else ""


# What every column and marker of the tables means (the header of compare.md and of the README
# section).
LEGEND = (
    "`a ± b`: mean ± standard deviation over seeds (one seed: the value alone)",
    "`(TS)`: after temperature scaling, the logits divided by one temperature fitted on the "
    "validation split by NLL; `T`: that fitted temperature (T > 1 softens overconfident "
    "outputs, T < 1 sharpens underconfident ones, e.g. an averaged latent head)",
    "`(T at search bound in k/n runs)`: the temperature fit ended on a bound of its search "
    "interval, so the TS figures of those runs are not at an optimum",
    "`[at chance in k seed(s)]`: the model's test accuracy is within two standard errors of "
    "always predicting the most frequent class; it learned nothing usable, and its paired "
    "differences (`[softmax at chance ...]` when the baseline did) compare nothing meaningful",
    "`Δx`: paired difference method - softmax of the same seed (same split, initial backbone "
    "and batches); `(k/n)`: the seeds whose difference has the sign of the mean",
    "`method [score]`: the method's recommended OOD score; `(MSP)`: the maximum softmax "
    "probability of the same model; OOD figures take the in-distribution test samples as "
    "positives",
    "conformal tables: `cov` = coverage of the test labels, `size` = mean labels per set; bold "
    "= smallest sets",
)
# The progress lines of the command, explained where the run starts.
LOG_LEGEND = (
    "Progress lines: [k/N elapsed, ETA] [dataset | seed | config] method, test accuracy, "
    "ECE before -> after temperature scaling (TS), NLL, APS prediction sets at alpha (mean size, "
    "coverage), AUROC of the method's OOD score per OOD set, accuracy under PGD at the middle "
    "epsilon, seconds of training and evaluation; [temperature at search bound]: the "
    "temperature fit ended on a bound of its search interval.")


def legend_lines():
    """The table legend as Markdown list items."""
    return [f"- {line}." for line in LEGEND]


def calibration_table(report, name, config="full", columns=FULL_CALIBRATION_COLUMNS):
    """One row per method: the test calibration figures of one config (mean ± std)."""
    data = report["datasets"][name]
    rows = []
    for method, entry in data["summary"].get(config, {}).items():
        rows.append([_title(report, method) + _bound_flag(entry)
                     + _chance_flag(data, config, method)]
                    + [_cell(entry.get(f"calibration.{key}")) for key, _ in columns])
    return _table(["method"] + [title for _, title in columns], rows)


def ood_table(report, name, metric="auroc"):
    """One row per method: the recommended score's metric on every OOD set (MSP alongside)."""
    data = report["datasets"][name]
    columns = [(config, s) for config in data["configs"] for s in _ood_sets(data, config)]
    header = ["method [score]"]
    for config, set_name in columns:
        title = SET_TITLES.get(set_name, set_name)
        header += [f"{title}", f"{title} (MSP)"]
    rows = []
    for method in report["methods"]:
        if method not in data["summary"].get("full", {}):
            continue
        row = [f"{_title(report, method)} [{_score_name(data, 'full', method)}]"]
        for config, set_name in columns:
            entry = data["summary"].get(config, {}).get(method, {})
            row.append(_cell(entry.get(f"ood.{set_name}.recommended.{metric}")))
            row.append(_cell(entry.get(f"ood.{set_name}.msp.{metric}")))
        rows.append(row)
    return _table(header, rows)


def paired_table(report, name, extra_columns=()):
    """One row per method: paired differences against softmax (calibration, each OOD set's
    AUROC, then ``extra_columns``: ``(config, figure key, title)`` triples)."""
    data = report["datasets"][name]
    columns = [("full", "calibration.accuracy", "Δacc"), ("full", "calibration.ece", "ΔECE"),
               ("full", "calibration.ece_ts", "ΔECE (TS)"), ("full", "calibration.nll", "ΔNLL"),
               ("full", "calibration.nll_ts", "ΔNLL (TS)")]
    for config in data["configs"]:
        for set_name in _ood_sets(data, config):
            columns.append((config, f"ood.{set_name}.recommended.auroc",
                            f"ΔAUROC {SET_TITLES.get(set_name, set_name)}"))
    columns += list(extra_columns)
    rows = []
    baseline_chance = data.get("at_chance", {}).get("full", {}).get("softmax")
    for method in report["methods"]:
        if method not in data["paired_vs_softmax"].get("full", {}):
            continue
        flag = _chance_flag(data, "full", method) or (
            _chance_flag(data, "full", "softmax", "softmax ") if baseline_chance else "")
        rows.append([_title(report, method) + flag]
                    + [_delta(data["paired_vs_softmax"].get(config, {}).get(method, {}).get(key))
                       for config, key, _ in columns])
    if not rows:
        return ""
    return _table(["method"] + [title for _, _, title in columns], rows)


def adversarial_table(report, name, metric="accuracy"):
    data = report["datasets"][name]
    epsilons = [f"{e:g}" for e in report["plan"]["attack_epsilons"]]
    header = ["method", "clean"] + [f"{attack.upper()} ε={e}" for attack in ("fgsm", "pgd")
                                    for e in epsilons]
    rows = []
    for method, entry in data["summary"].get("full", {}).items():
        row = [_title(report, method), _cell(entry.get(f"adversarial.clean.{metric}"))]
        row += [_cell(entry.get(f"adversarial.{attack}.{e}.{metric}"))
                for attack in ("fgsm", "pgd") for e in epsilons]
        rows.append(row)
    return _table(header, rows)


def corruption_table(report, name, metric="accuracy"):
    data = report["datasets"][name]
    severities = [str(s) for s in report["plan"]["corruption_severities"]]
    header = ["method", "clean"] + [f"severity {s}" for s in severities]
    rows = []
    for method, entry in data["summary"].get("full", {}).items():
        rows.append([_title(report, method), _cell(entry.get(f"corruptions.clean.{metric}"))]
                    + [_cell(entry.get(f"corruptions.mean.{s}.{metric}")) for s in severities])
    return _table(header, rows)


def per_corruption_table(report, name, metric="accuracy"):
    data = report["datasets"][name]
    severity = str(max(report["plan"]["corruption_severities"]))
    header = ["method"] + data["corruptions"]
    rows = []
    for method, entry in data["summary"].get("full", {}).items():
        rows.append([_title(report, method)]
                    + [_cell(entry.get(f"corruptions.{c}.{severity}.{metric}"))
                       for c in data["corruptions"]])
    return severity, _table(header, rows)


def low_data_table(report, name):
    data = report["datasets"][name]
    low = [c for c in data["configs"] if c.startswith("low_data_")]
    if not low:
        return ""
    configs = low + ["full"]

    def label(config):
        return "100%" if config == "full" else f"{100 * float(config[9:]):g}%"

    header = (["method"] + [f"acc {label(c)}" for c in configs]
              + [f"ECE {label(c)}" for c in configs] + [f"ECE (TS) {label(c)}" for c in configs])
    rows = []
    for method in report["methods"]:
        row = [_title(report, method)]
        for key in ("accuracy", "ece", "ece_ts"):
            row += [_cell(data["summary"].get(c, {}).get(method, {}).get(f"calibration.{key}"))
                    for c in configs]
        rows.append(row)
    return _table(header, rows)


def ood_appendix(report, name):
    data = report["datasets"][name]
    blocks = []
    for config in data["configs"]:
        for set_name in _ood_sets(data, config):
            rows = []
            for method, entry in data["summary"].get(config, {}).items():
                found = {key.split(".")[2] for key in entry
                         if key.startswith(f"ood.{set_name}.")}
                recommended = _score_name(data, config, method)
                scores = [s for s in ("recommended", "msp") if s in found]
                scores += sorted(found - {"recommended", "msp"})
                if recommended in ("max_probability", "msp") and "recommended" in scores:
                    scores.remove("msp")  # the same score twice
                for score in scores:
                    label = recommended if score == "recommended" else score
                    rows.append([_title(report, method), label]
                                + [_cell(entry.get(f"ood.{set_name}.{score}.{metric}"))
                                   for metric, _ in OOD_METRIC_TITLES])
            blocks.append(f"**{SET_TITLES.get(set_name, set_name)}** ({config} model): "
                          f"{data['ood_sets'].get(set_name, '')}\n\n"
                          + _table(["method", "score"] + [t for _, t in OOD_METRIC_TITLES], rows))
    return "\n\n".join(blocks)
