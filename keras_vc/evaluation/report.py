"""Writing a ``keras_vc.evaluate`` report: a table for the terminal, Markdown, JSON and PNGs."""

import json
import os

from keras_vc import metrics

CALIBRATION_COLUMNS = (("accuracy", "accuracy"), ("nll", "NLL"), ("brier", "Brier"),
                       ("ece", "ECE"), ("classwise_ece", "cw-ECE"), ("aurc", "AURC"))
OOD_COLUMNS = (("auroc", "AUROC"), ("fpr_at_95_tpr", "FPR@95TPR"), ("aupr_in", "AUPR-in"),
               ("aupr_out", "AUPR-out"))


def _table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def calibration_table(report):
    """Test calibration before and (when fitted) after temperature scaling."""
    section = report["calibration"]
    rows = [["as served (T = 1)"] + [f"{section['before'][k]:.4f}" for k, _ in
                                     CALIBRATION_COLUMNS]]
    if section["after"] is not None:
        bound = " (at search bound)" if section["temperature_at_bound"] else ""
        rows.append([f"T = {section['temperature']:.3f}{bound}"]
                    + [f"{section['after'][k]:.4f}" for k, _ in CALIBRATION_COLUMNS])
    return _table(["probabilities"] + [title for _, title in CALIBRATION_COLUMNS], rows)


def ood_table(report, name):
    """One row per detector on one OOD set."""
    section = report["ood"]
    rows = []
    for detector, values in section["sets"][name]["detectors"].items():
        title = f"head [{section['head_score']}]" if detector == "head" else detector
        rows.append([title] + [f"{values[k]:.4f}" for k, _ in OOD_COLUMNS])
    return _table(["detector"] + [title for _, title in OOD_COLUMNS], rows)


def conformal_table(report):
    """Coverage and mean set size of each conformal score."""
    section = report["conformal"]
    rows = [[name, f"{v['coverage']:.4f}", f"{v['mean_set_size']:.3f}", f"{v['qhat']:.4g}"]
            for name, v in section["scores"].items()]
    return _table(["score", f"coverage (target {1 - section['alpha']:.2f})", "mean set size",
                   "qhat"], rows)


def _skip_lines(skipped):
    return [f"- `{name}` skipped: {reason}" for name, reason in skipped.items()]


def format_markdown(report):
    """The whole report as Markdown (the terminal table is the same text)."""
    data = report["data"]
    lines = [f"# Evaluation of {report['model']}", "",
             f"{report['num_classes']} classes; test: {data['test']['source']} "
             f"({data['test']['n']} samples)"
             + "".join(f"; {role}: {data[role]['source']} ({data[role]['n']} samples)"
                       for role in ("val", "train") if role in data) + ".", "",
             "## Calibration (test set)", ""]
    calibration = report["calibration"]
    lines.append(calibration_table(report))
    lines.append("")
    if calibration["skipped"]:
        lines.append(f"Temperature scaling skipped: {calibration['skipped']}")
    else:
        lines.append(f"Temperature fitted on the validation set by NLL ({report['num_bins']}-bin "
                     "ECE; AURC with the maximum probability as confidence).")
    ood = report["ood"]
    if ood["sets"]:
        lines += ["", "## OOD detection (test set against each OOD set)", "",
                  f"Feature detectors fitted on: {ood['fit_on'] or 'nothing (no data)'}. "
                  f"The head's own score: {ood['head_score']}."]
        for name, entry in ood["sets"].items():
            lines += ["", f"### {name} ({entry['n']} samples)", "", ood_table(report, name)]
        if ood["skipped"]:
            lines += [""] + _skip_lines(ood["skipped"])
    conformal = report["conformal"]
    lines += ["", f"## Conformal prediction sets (alpha = {conformal['alpha']})", ""]
    if conformal["skipped"]:
        lines.append(f"Skipped: {conformal['skipped']}")
    else:
        lines += ["Calibrated on the validation set (probabilities as served), measured on the "
                  "test set.", "", conformal_table(report)]
    if report["files"]:
        lines += ["", "Files: " + ", ".join(report["files"])]
    return "\n".join(lines) + "\n"


def write_reliability(labels, probs, path, title):
    """Saves the reliability diagram (``keras_vc.metrics.reliability_diagram``) as a PNG."""
    figure = metrics.reliability_diagram(labels, probs, num_bins=15, title=title)
    figure.savefig(path, dpi=110, bbox_inches="tight")


def write_files(report, out_dir):
    """Writes ``evaluate.json`` and ``evaluate.md`` into ``out_dir`` (the PNGs are already
    there) and returns their paths."""
    json_path = os.path.join(out_dir, "evaluate.json")
    markdown_path = os.path.join(out_dir, "evaluate.md")
    with open(json_path, "w") as handle:
        json.dump(report, handle, indent=2, sort_keys=False)
        handle.write("\n")
    with open(markdown_path, "w") as handle:
        handle.write(format_markdown(report))
    return json_path, markdown_path
