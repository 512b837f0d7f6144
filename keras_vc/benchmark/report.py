"""Markdown of a ``keras-vc compare`` report: the full report and a ready README section.

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


def calibration_table(report, name, config="full"):
    data = report["datasets"][name]
    columns = [("accuracy", "accuracy"), ("ece", "ECE"), ("ece_ts", "ECE (TS)"), ("mce", "MCE"),
               ("nll", "NLL"), ("nll_ts", "NLL (TS)"), ("brier", "Brier"),
               ("brier_ts", "Brier (TS)"), ("temperature", "T")]
    rows = []
    for method, entry in data["summary"].get(config, {}).items():
        rows.append([_title(report, method) + _bound_flag(entry)]
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


def paired_table(report, name):
    data = report["datasets"][name]
    columns = [("full", "calibration.accuracy", "Δacc"), ("full", "calibration.ece", "ΔECE"),
               ("full", "calibration.ece_ts", "ΔECE (TS)"), ("full", "calibration.nll", "ΔNLL"),
               ("full", "calibration.nll_ts", "ΔNLL (TS)")]
    for config in data["configs"]:
        for set_name in _ood_sets(data, config):
            columns.append((config, f"ood.{set_name}.recommended.auroc",
                            f"ΔAUROC {SET_TITLES.get(set_name, set_name)}"))
    rows = []
    for method in report["methods"]:
        if method not in data["paired_vs_softmax"].get("full", {}):
            continue
        rows.append([_title(report, method)]
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


def _protocol_lines(report):
    lines = []
    for name, data in report["datasets"].items():
        p = data["protocol"]
        lines.append(
            f"- **{name}**: backbone `{data['backbone']}` + each method's head; "
            f"{p['optimizer']} (learning rate {p['learning_rate']:g}), {p['epochs']} epochs, "
            f"batch {p['batch_size']}, no early stopping, XLA {'on' if p['jit_compile'] else 'off'}"
            f"; split sizes {data['sizes'].get('full', {})}.")
    return lines


def _method_lines(report):
    lines = []
    for name, method in report["methods"].items():
        lines.append(f"- **{method['title']}** (`{name}`): scored probabilities: "
                     f"{method['probabilities'] or 'softmax of the output logits'}; recommended "
                     f"OOD score: `{method['ood_score']}`"
                     + (f"; trained after {', '.join(method['requires'])}"
                        if method["requires"] else "") + ".")
    return lines


def _plan_line(report):
    plan = report["plan"]
    return (f"Robustness: on a fixed stratified subset of at most {plan['robustness_samples']} "
            f"test samples per seed, FGSM and PGD ({plan['pgd_steps']} steps, random start, "
            f"step 2.5 ε / steps) at ε = {', '.join(f'{e:g}' for e in plan['attack_epsilons'])} "
            f"of the input range width, gradients through each model as trained; corruptions at "
            f"severities {', '.join(str(s) for s in plan['corruption_severities'])} "
            f"(parameters in `keras_vc/robustness/corruptions.py`). Low data: "
            f"{', '.join(f'{100 * f:g}%' for f in plan['low_data_fractions']) or 'none'} of the "
            f"training split (stratified, nested).")


def format_markdown(report):
    """The full Markdown report (``compare.md``)."""
    lines = [
        "# keras-vc compare",
        "",
        f"Date: {report['date']}. Machine: {report['machine']}. Command: `{report['command']}` "
        f"({report.get('wall_seconds', 0) / 60:.1f} min wall on {report['workers']} worker "
        f"process(es)).",
        "",
        "## Protocol",
        "",
        f"Seeds {report['seeds']}. For each dataset and seed the seed fixes the stratified "
        "60/20/20 train/validation/test split, the backbone's initial weights (identical for "
        "every method) and the batch order, so every method is paired with the softmax run of "
        "the same seed. Every method of a dataset is trained under the same protocol:",
        "",
        *_protocol_lines(report),
        "",
        f"Metrics on the test split: ECE and MCE with {report['metrics']['num_bins']} equal-width "
        "bins (top label), NLL, Brier; `(TS)` = after one temperature fitted on the validation "
        "split by NLL (bounded search T in [0.05, 20]; a fit on a bound is flagged). OOD: "
        "in-distribution test samples are positive, higher score = more in-distribution; each "
        "method's recommended score and, for every method, the maximum softmax probability (MSP).",
        "",
        "Scored probabilities and OOD scores:",
        "",
        *_method_lines(report),
        "",
        _plan_line(report),
    ]
    for name, data in report["datasets"].items():
        lines += ["", f"## {name}", "", data["description"] + ".", ""]
        if data["note"]:
            lines += [f"> {data['note']}", ""]
        lines += ["### Calibration (all classes, test split)", "", calibration_table(report, name),
                  "", "### Out-of-distribution detection (AUROC; the method's score and MSP)", "",
                  "Sets: " + "; ".join(f"**{SET_TITLES.get(k, k)}**: {v}"
                                       for k, v in data["ood_sets"].items()) + ".", "",
                  ood_table(report, name), ""]
        paired = paired_table(report, name)
        if paired:
            lines += ["### Paired difference vs softmax (same seed; seeds where the sign "
                      "agrees)", "", paired, ""]
        for metric, title in (("accuracy", "accuracy"), ("ece", "ECE")):
            lines += [f"### Adversarial robustness: {title}", "",
                      adversarial_table(report, name, metric), ""]
        for metric, title in (("accuracy", "accuracy"), ("ece", "ECE"), ("ece_ts", "ECE (TS)")):
            lines += [f"### Corruptions: {title} (mean over {len(data['corruptions'])} "
                      f"corruptions: {', '.join(data['corruptions'])})", "",
                      corruption_table(report, name, metric), ""]
        severity, table = per_corruption_table(report, name)
        lines += [f"Accuracy per corruption at severity {severity}:", "", table, ""]
        low = low_data_table(report, name)
        if low:
            lines += ["### Low data (trained on a fraction of the training split)", "", low, ""]
        if "open_set" in data["configs"]:
            lines += ["### Open-set models (known classes only)", "",
                      calibration_table(report, name, "open_set"), ""]
        lines += ["### Plots", ""]
        lines += [f"- {title}: " + ", ".join(f"[{k}]({v})" for k, v in paths.items())
                  if isinstance(paths, dict) else f"- {title}: [{paths}]({paths})"
                  for title, paths in data["plots"].items()]
        lines += ["", "### All OOD figures", "", ood_appendix(report, name), ""]
        seconds = [r["figures"]["train_seconds"] for r in data["runs"]]
        lines += [f"Training time: {sum(seconds):.0f} s over {len(seconds)} models "
                  f"(sum over workers).", ""]
    return "\n".join(lines) + "\n"


def format_readme_section(report):
    """A ready-to-paste README "Results" section (``README_results.md``)."""
    lines = [
        "## Results",
        "",
        f"`{report['command']}` (what `make demo` runs), {report['date'][:10]}, on "
        f"{report['machine']}; {report.get('wall_seconds', 0) / 60:.1f} min wall on "
        f"{report['workers']} worker process(es). Mean ± std over seeds {report['seeds']}; "
        "paired differences are against the softmax model of the same seed (same split, same "
        "backbone initialisation), with the number of seeds in which the sign held. The full "
        "report with every table and plot is `reports/compare.md`; every raw figure is in "
        "`reports/compare.json`.",
        "",
        *_protocol_lines(report),
        "",
        "Scored probabilities: " + "; ".join(
            f"{m['title']}: {m['probabilities'] or 'softmax of the logits'}"
            for m in report["methods"].values()) + ". ECE: 15 equal-width bins; (TS): after "
        "temperature scaling fitted on the validation split.",
    ]
    for name, data in report["datasets"].items():
        lines += ["", f"### {name} ({data['backbone']})", ""]
        if data["note"]:
            lines += [data["note"], ""]
        lines += [calibration_table(report, name), "", "OOD detection (AUROC):", "",
                  ood_table(report, name), ""]
        paired = paired_table(report, name)
        if paired:
            lines += ["Paired difference vs softmax:", "", paired, ""]
        eps = f"{max(report['plan']['attack_epsilons']):g}"
        severity = str(max(report["plan"]["corruption_severities"]))
        rows = []
        for method, entry in data["summary"].get("full", {}).items():
            rows.append([report["methods"][method]["title"],
                         _cell(entry.get(f"adversarial.pgd.{eps}.accuracy")),
                         _cell(entry.get(f"corruptions.mean.{severity}.accuracy")),
                         _cell(entry.get(f"corruptions.mean.{severity}.ece")),
                         _cell(data["summary"].get(
                             low_data_key(report), {}).get(method, {}).get(
                             "calibration.accuracy"))])
        lines += [f"Robustness: accuracy under PGD at ε = {eps} of the input range; mean "
                  f"accuracy and ECE over corruptions at severity {severity}; accuracy when "
                  f"trained on {low_data_label(report)} of the training data.", "",
                  _table(["method", f"PGD ε={eps} acc", f"corrupted (s{severity}) acc",
                          f"corrupted (s{severity}) ECE", f"{low_data_label(report)} data acc"],
                         rows), ""]
    return "\n".join(lines) + "\n"


def low_data_key(report):
    fractions = report["plan"]["low_data_fractions"]
    return f"low_data_{min(fractions):g}" if fractions else None


def low_data_label(report):
    fractions = report["plan"]["low_data_fractions"]
    return f"{100 * min(fractions):g}%" if fractions else "n/a"
