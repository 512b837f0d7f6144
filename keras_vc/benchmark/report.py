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


FULL_CALIBRATION_COLUMNS = (("accuracy", "accuracy"), ("ece", "ECE"), ("ece_ts", "ECE (TS)"),
                            ("mce", "MCE"), ("nll", "NLL"), ("nll_ts", "NLL (TS)"),
                            ("brier", "Brier"), ("brier_ts", "Brier (TS)"), ("temperature", "T"))
SHORT_CALIBRATION_COLUMNS = (("accuracy", "accuracy"), ("ece", "ECE"), ("ece_ts", "ECE (TS)"),
                             ("nll", "NLL"), ("nll_ts", "NLL (TS)"), ("brier", "Brier"))


def calibration_table(report, name, config="full", columns=FULL_CALIBRATION_COLUMNS):
    """One row per method: the test calibration figures of one config (mean ± std)."""
    data = report["datasets"][name]
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
    columns += _posthoc().paired_columns(report)
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
            f"batch {p['batch_size']}, no early stopping, no weight decay, no augmentation "
            f"(speed settings, which do not change the updates: XLA "
            f"{'on' if p.get('jit_compile') else 'off'}, "
            f"{p.get('steps_per_execution', 1)} steps per execution); "
            f"split sizes {data['sizes'].get('full', {})}.")
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
            f"training split (stratified, nested), trained for the same epochs as the full models, "
            f"so with proportionally fewer updates.")


def _timing_line(report):
    timing = report.get("timing")
    if not timing:
        return ""
    return (f"Time: {timing['load_seconds']:.0f} s loading data, {timing['tasks_seconds']:.0f} s "
            f"training and evaluating ({timing['model_cpu_seconds']:.0f} CPU seconds in the "
            f"models), {timing['report_seconds']:.0f} s writing the reports and plots.")


def _cpu_line(data):
    by_config = {}
    for run in data["runs"]:
        cpu = run["figures"]["train_cpu_seconds"] + run["figures"]["eval_cpu_seconds"]
        by_config.setdefault(run["config"], {}).setdefault(run["method"], []).append(cpu)
    parts = []
    for config, by_method in by_config.items():
        cells = ", ".join(f"{method} {sum(v) / len(v):.1f}" for method, v in by_method.items())
        parts.append(f"{config}: {cells}")
    return ("CPU seconds per model (training + evaluation, mean over seeds; one TensorFlow "
            "thread): " + "; ".join(parts) + ".")


def _posthoc():
    from keras_vc.benchmark import report_posthoc  # it builds on this module's helpers

    return report_posthoc


def format_markdown(report):
    """The full Markdown report (``compare.md``)."""
    lines = [
        "# keras-vc compare",
        "",
        f"Date: {report['date']}. Machine: {report['machine']}. Command: `{report['command']}` "
        f"({report.get('wall_seconds', 0) / 60:.1f} min wall on {report['workers']} worker "
        f"process(es)).",
        "",
        _timing_line(report),
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
        "",
        *_posthoc().header_lines(report),
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
        versus = _posthoc().versus_detector_table(report, name)
        if versus:
            lines += ["### OOD: each method's own score vs the best post-hoc detector on "
                      "softmax (AUROC, paired by seed)", "", versus, "",
                      *_posthoc().verdict_lines(report, name), ""]
        lines += ["### Conformal prediction sets (test split)", "",
                  _posthoc().conformal_table(report, name), "",
                  *_posthoc().smallest_sets_lines(report, name), "",
                  "### Post-hoc calibrators and selective classification (test split)", "",
                  _posthoc().calibrator_table(report, name), ""]
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
        detectors = _posthoc().detector_tables(report, name)
        if detectors:
            lines += ["### Every post-hoc detector on every model", "", detectors, ""]
        lines += [_cpu_line(data), ""]
    return "\n".join(lines) + "\n"


def _middle_epsilon(report):
    epsilons = sorted(report["plan"]["attack_epsilons"])
    return f"{epsilons[len(epsilons) // 2]:g}" if epsilons else None


def format_readme_section(report):
    """A ready-to-paste README "Results" section (``README_results.md``)."""
    out = report.get("out_dir", "reports")
    lines = [
        "## Results",
        "",
        f"Produced by `{report['command']}` on {report['date'][:10]} on {report['machine']}: "
        f"{report.get('wall_seconds', 0) / 60:.1f} min wall on {report['workers']} worker "
        f"process(es). Mean ± std over seeds {report['seeds']}; paired differences are against "
        "the softmax model of the same seed (same split, same backbone initialisation, same "
        "batches), with the number of seeds in which the sign held. Every table and plot is in "
        f"`{out}/compare.md`, every raw figure in `{out}/compare.json`.",
        "",
        *_protocol_lines(report),
        "",
        "Scored probabilities (what each model outputs by default, temperature 1): " + "; ".join(
            f"{m['title']}: {m['probabilities'] or 'softmax of the logits'}"
            for m in report["methods"].values()) + ". ECE: 15 equal-width bins; (TS): after "
        "one temperature fitted on the validation split by NLL.",
    ]
    eps = _middle_epsilon(report)
    severity = str(max(report["plan"]["corruption_severities"], default=0))
    low_key, low_label = low_data_key(report), low_data_label(report)
    for name, data in report["datasets"].items():
        lines += ["", f"### {name} ({data['backbone']})", ""]
        if data["note"]:
            lines += [data["note"], ""]
        lines += [calibration_table(report, name, columns=SHORT_CALIBRATION_COLUMNS), "",
                  "OOD detection, AUROC (each method's score; MSP alongside):", "",
                  ood_table(report, name), ""]
        versus = _posthoc().versus_detector_table(report, name)
        if versus:
            lines += ["Each method's own OOD score against the best post-hoc detector on the "
                      "softmax baseline (chosen on the other OOD sets; AUROC, paired by seed; "
                      "every detector in `compare.md`):", "", versus, "",
                      *_posthoc().verdict_lines(report, name), ""]
        lines += ["Conformal prediction sets on the test split (cov = coverage, size = labels "
                  "per set; bold = smallest; protocol in `compare.md`):", "",
                  _posthoc().conformal_table(report, name, scores=("aps", "raps"),
                                             worst=False), "",
                  *_posthoc().smallest_sets_lines(report, name), ""]
        paired = paired_table(report, name)
        if paired:
            lines += ["Paired difference vs softmax (seeds where the sign held):", "", paired, ""]
        if "full" not in data["summary"] or eps is None:
            continue
        header = ["method", f"PGD ε={eps} acc", f"PGD ε={eps} ECE",
                  f"corrupted (severity {severity}) acc", f"corrupted (severity {severity}) ECE"]
        if low_key:
            header.append(f"{low_label} data acc")
        rows = []
        for method, entry in data["summary"]["full"].items():
            row = [report["methods"][method]["title"],
                   _cell(entry.get(f"adversarial.pgd.{eps}.accuracy")),
                   _cell(entry.get(f"adversarial.pgd.{eps}.ece")),
                   _cell(entry.get(f"corruptions.mean.{severity}.accuracy")),
                   _cell(entry.get(f"corruptions.mean.{severity}.ece"))]
            if low_key:
                row.append(_cell(data["summary"].get(low_key, {}).get(method, {}).get(
                    "calibration.accuracy")))
            rows.append(row)
        lines += [f"Robustness: PGD at ε = {eps} of the input range; the mean over "
                  f"{len(data['corruptions'])} corruptions at severity {severity}"
                  + (f"; accuracy when trained on {low_label} of the training split" if low_key
                     else "") + ".", "", _table(header, rows), ""]
    return "\n".join(lines) + "\n"


def low_data_key(report):
    fractions = report["plan"]["low_data_fractions"]
    return f"low_data_{min(fractions):g}" if fractions else None


def low_data_label(report):
    fractions = report["plan"]["low_data_fractions"]
    return f"{100 * min(fractions):g}%" if fractions else "n/a"
