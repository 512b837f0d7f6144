"""The two Markdown documents of a ``keras-vc compare`` report: ``compare.md`` (everything) and
``README_results.md`` (a ready README "Results" section), built from the tables of
:mod:`keras_vc.benchmark.report`."""

from keras_vc.benchmark import report as tables
from keras_vc.benchmark import report_posthoc


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
        "Reading the tables:",
        "",
        *tables.legend_lines(),
        "",
        _plan_line(report),
        "",
        *report_posthoc.header_lines(report),
    ]
    for name, data in report["datasets"].items():
        lines += ["", f"## {name}", "", data["description"] + ".", ""]
        if data["note"]:
            lines += [f"> {data['note']}", ""]
        lines += ["### Calibration (all classes, test split)", "",
                  tables.calibration_table(report, name),
                  "", "### Out-of-distribution detection (AUROC; the method's score and MSP)", "",
                  "Sets: " + "; ".join(f"**{tables.SET_TITLES.get(k, k)}**: {v}"
                                       for k, v in data["ood_sets"].items()) + ".", "",
                  tables.ood_table(report, name), ""]
        versus = report_posthoc.versus_detector_table(report, name)
        if versus:
            lines += ["### OOD: each method's own score vs the best post-hoc detector on "
                      "softmax (AUROC, paired by seed)", "", versus, "",
                      *report_posthoc.verdict_lines(report, name), ""]
        lines += ["### Conformal prediction sets (test split)", "",
                  report_posthoc.conformal_table(report, name), "",
                  *report_posthoc.smallest_sets_lines(report, name), "",
                  "### Post-hoc calibrators and selective classification (test split)", "",
                  report_posthoc.calibrator_table(report, name), ""]
        paired = tables.paired_table(report, name, report_posthoc.paired_columns(report))
        if paired:
            lines += ["### Paired difference vs softmax (same seed; seeds where the sign "
                      "agrees)", "", paired, ""]
        if report["plan"].get("robustness", True):
            for metric, title in (("accuracy", "accuracy"), ("ece", "ECE")):
                lines += [f"### Adversarial robustness: {title}", "",
                          tables.adversarial_table(report, name, metric), ""]
            for metric, title in (("accuracy", "accuracy"), ("ece", "ECE"),
                                  ("ece_ts", "ECE (TS)")):
                lines += [f"### Corruptions: {title} (mean over {len(data['corruptions'])} "
                          f"corruptions: {', '.join(data['corruptions'])})", "",
                          tables.corruption_table(report, name, metric), ""]
            severity, table = tables.per_corruption_table(report, name)
            lines += [f"Accuracy per corruption at severity {severity}:", "", table, ""]
        low = tables.low_data_table(report, name)
        if low:
            lines += ["### Low data (trained on a fraction of the training split)", "", low, ""]
        if "open_set" in data["configs"]:
            lines += ["### Open-set models (known classes only)", "",
                      tables.calibration_table(report, name, "open_set"), ""]
        lines += ["### Plots", ""]
        lines += [f"- {title}: " + ", ".join(f"[{k}]({v})" for k, v in paths.items())
                  if isinstance(paths, dict) else f"- {title}: [{paths}]({paths})"
                  for title, paths in data["plots"].items()]
        lines += ["", "### All OOD figures", "", tables.ood_appendix(report, name), ""]
        detectors = report_posthoc.detector_tables(report, name)
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
        "one temperature fitted on the validation split by NLL. Reading the tables:",
        "",
        *tables.legend_lines(),
    ]
    eps = _middle_epsilon(report)
    severity = str(max(report["plan"]["corruption_severities"], default=0))
    low_key, low_label = low_data_key(report), low_data_label(report)
    for name, data in report["datasets"].items():
        lines += ["", f"### {name} ({data['backbone']})", ""]
        if data["note"]:
            lines += [data["note"], ""]
        lines += [tables.calibration_table(report, name,
                                          columns=tables.SHORT_CALIBRATION_COLUMNS), "",
                  "OOD detection, AUROC (each method's score; MSP alongside):", "",
                  tables.ood_table(report, name), ""]
        versus = report_posthoc.versus_detector_table(report, name)
        if versus:
            lines += ["Each method's own OOD score against the best post-hoc detector on the "
                      "softmax baseline (chosen on the other OOD sets; AUROC, paired by seed; "
                      "every detector in `compare.md`):", "", versus, "",
                      *report_posthoc.verdict_lines(report, name), ""]
        lines += ["Conformal prediction sets on the test split (cov = coverage, size = labels "
                  "per set; bold = smallest; protocol in `compare.md`):", "",
                  report_posthoc.conformal_table(report, name, scores=("aps", "raps"),
                                             worst=False), "",
                  *report_posthoc.smallest_sets_lines(report, name), ""]
        paired = tables.paired_table(report, name, report_posthoc.paired_columns(report))
        if paired:
            lines += ["Paired difference vs softmax (seeds where the sign held):", "", paired, ""]
        if ("full" not in data["summary"] or eps is None
                or not report["plan"].get("robustness", True)):
            continue
        header = ["method", f"PGD ε={eps} acc", f"PGD ε={eps} ECE",
                  f"corrupted (severity {severity}) acc", f"corrupted (severity {severity}) ECE"]
        if low_key:
            header.append(f"{low_label} data acc")
        rows = []
        for method, entry in data["summary"]["full"].items():
            row = [report["methods"][method]["title"],
                   tables._cell(entry.get(f"adversarial.pgd.{eps}.accuracy")),
                   tables._cell(entry.get(f"adversarial.pgd.{eps}.ece")),
                   tables._cell(entry.get(f"corruptions.mean.{severity}.accuracy")),
                   tables._cell(entry.get(f"corruptions.mean.{severity}.ece"))]
            if low_key:
                row.append(tables._cell(data["summary"].get(low_key, {}).get(method, {}).get(
                    "calibration.accuracy")))
            rows.append(row)
        lines += [f"Robustness: PGD at ε = {eps} of the input range; the mean over "
                  f"{len(data['corruptions'])} corruptions at severity {severity}"
                  + (f"; accuracy when trained on {low_label} of the training split" if low_key
                     else "") + ".", "", tables._table(header, rows), ""]
    return "\n".join(lines) + "\n"


def low_data_key(report):
    fractions = report["plan"]["low_data_fractions"]
    return f"low_data_{min(fractions):g}" if fractions else None


def low_data_label(report):
    fractions = report["plan"]["low_data_fractions"]
    return f"{100 * min(fractions):g}%" if fractions else "n/a"
