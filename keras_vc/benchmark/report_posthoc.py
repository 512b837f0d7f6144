"""Markdown of the post-hoc figures of a ``keras-vc compare`` report: conformal prediction
sets, post-hoc calibrators, selective classification and post-hoc OOD detectors.

Cells are mean ± std over seeds, as in :mod:`keras_vc.benchmark.report`; markers are explained
by :func:`header_lines`, which both reports print.
"""

from keras_vc.benchmark import posthoc
from keras_vc.benchmark import report as base

SCORE_TITLES = {"aps": "APS", "raps": "RAPS", "lac": "LAC"}
CALIBRATOR_TITLES = (("temperature", "TS"), ("vector", "vector"), ("matrix", "matrix"),
                     ("dirichlet", "Dirichlet"), ("histogram", "histogram"),
                     ("isotonic", "isotonic"))
BELOW = "↓"  # mean test coverage below 1 - alpha


def alphas(report):
    return [f"{a:g}" for a in report["plan"].get("alphas", ())]


def header_lines(report):
    """The protocol and every column and marker of the post-hoc tables."""
    levels = ", ".join(alphas(report)) or "none"
    return [
        f"Conformal prediction sets (α = {levels}; coverage target 1 − α): the validation "
        "split is cut in two stratified halves (seeded by the run's seed). On the first half a "
        "temperature T' is fitted by NLL (it differs slightly from the `(TS)` temperature, "
        "fitted on all of validation) and RAPS's k_reg and λ are tuned (Angelopoulos et al. "
        "2021, size criterion); on the second half the split-conformal threshold is fitted. "
        "The sets of the test split are built from softmax(logits / T'). The second half "
        "served no other fit, so the guarantee P(y ∈ C(x)) ≥ 1 − α holds exactly "
        "(marginally, over calibration and test draws). Columns: `cov` = test coverage, "
        "`size` = mean set size (labels per set), `worst` = the lowest per-class coverage "
        "(conformal guarantees marginal coverage only). APS and RAPS are randomised (a set "
        "can be empty, so a mean size below 1 is possible); LAC (1 − p_y) is not. **Bold** "
        f"size: the smallest mean set size among the methods; `{BELOW}` after a coverage: its "
        "mean over seeds fell below 1 − α (the guarantee is in expectation: a finite test "
        "split fluctuates around it). Computed for every config; the tables show the "
        "all-classes models.",
        "",
        "Post-hoc calibrators: each fitted on the validation logits at temperature 1 and "
        "applied to the test logits, with the library's defaults (`keras_vc.calibration`: "
        "temperature scaling by NLL; vector, matrix and Dirichlet scaling without ODIR "
        "penalty; one-vs-rest histogram binning with 15 bins and isotonic regression, which "
        "can change the argmax). `ECE` = before any calibrator; **bold** = the lowest ECE of "
        "the row. `cwECE` = classwise ECE (Kull et al. 2019, 15 bins per class), before and "
        "after temperature scaling. `AURC` / `AUGRC` = areas under the (generalised) "
        "risk-coverage curve with the largest probability as confidence (Geifman et al. 2019; "
        "Traub et al. 2024; lower is better; right-endpoint sums, not x1000). Calibrators: "
        "all-classes models only (the dearest of these figures: Dirichlet scaling's fit), "
        "a column per calibrator of the run (the default run leaves out matrix and Dirichlet "
        "scaling: `--calibrators all`).",
        "",
        "Post-hoc OOD detectors (`keras_vc.detectors`), on every model with OOD sets, from the "
        "one forward pass per input set that also gives the logits: MSP, max logit, energy and "
        "GEN on the output logits (T = 1); Mahalanobis, Relative Mahalanobis (RMDS) and KNN "
        f"(k = {posthoc.KNN_K}, a seeded bank of at most {posthoc.KNN_BANK} training features) "
        "on the head's input features, fitted on the training split (`fit_features`); ViM and "
        "ReAct (90th percentile, fitted on the training features) where the last layer is "
        "Dense (softmax, TST). ODIN and input-preprocessed Mahalanobis need input gradients "
        "and are left out. **Best post-hoc detector on the softmax baseline**: chosen without "
        "the set it is compared on, as the detector with the highest mean AUROC of the "
        "softmax baseline on the *other* OOD sets of the dataset (seeds averaged); `(oracle)` "
        "marks a set for which no other set exists, where the best on the set itself is taken "
        "(optimistic for the detector). `oracle best` = the best on the set itself, for "
        "reference. `Δ own − best` = the method's own recommended score minus that detector "
        "on the softmax model of the same seed (paired), with the seeds in which the sign "
        "held. In the per-detector tables **bold** is the best detector of the row.",
    ]


def _entry(data, config, method):
    return data["summary"].get(config, {}).get(method, {})


def _smallest(data, config, methods, key):
    sizes = {m: _entry(data, config, m).get(key) for m in methods}
    sizes = {m: s["mean"] for m, s in sizes.items() if s is not None}
    return min(sizes, key=sizes.get) if sizes else None


def conformal_table(report, name, config="full", scores=("aps", "raps", "lac"), worst=True):
    """One row per method: coverage, mean set size (and worst-class coverage) per alpha."""
    data = report["datasets"][name]
    methods = [m for m in report["methods"] if m in data["summary"].get(config, {})]
    header, rows = ["method"], [[base._title(report, m)] for m in methods]
    for alpha in alphas(report):
        for score in scores:
            prefix = f"conformal.{alpha}.{score}"
            title = f"{SCORE_TITLES[score]} α={alpha}"
            header += [f"{title} cov", f"{title} size"] + ([f"{title} worst"] if worst else [])
            smallest = _smallest(data, config, methods, f"{prefix}.set_size")
            for row, method in zip(rows, methods):
                entry = _entry(data, config, method)
                cov = entry.get(f"{prefix}.coverage")
                below = cov is not None and cov["mean"] < 1.0 - float(alpha)
                size = base._cell(entry.get(f"{prefix}.set_size"), 2)
                row += [base._cell(cov) + (f" {BELOW}" if below else ""),
                        f"**{size}**" if method == smallest else size]
                if worst:
                    row.append(base._cell(entry.get(f"{prefix}.worst_class_coverage")))
    return base._table(header, rows)


def calibrator_table(report, name, config="full"):
    """One row per method: test ECE after each calibrator of the run's plan, classwise ECE,
    AURC and AUGRC."""
    data = report["datasets"][name]
    fitted = report.get("plan", {}).get("calibrators", [c for c, _ in CALIBRATOR_TITLES])
    titles = [(c, title) for c, title in CALIBRATOR_TITLES if c in fitted]
    header = (["method", "ECE"] + [title for _, title in titles]
              + ["cwECE", "cwECE (TS)", "AURC", "AUGRC"])
    rows = []
    for method in report["methods"]:
        entry = _entry(data, config, method)
        if not entry:
            continue
        keys = ["calibration.ece"] + [f"calibrators.{c}.ece" for c, _ in titles]
        means = [entry[k]["mean"] for k in keys if k in entry]
        best = min(means) if means else None
        cells = []
        for key in keys:
            cell = base._cell(entry.get(key))
            cells.append(f"**{cell}**" if key in entry and entry[key]["mean"] == best else cell)
        rows.append([base._title(report, method)] + cells
                    + [base._cell(entry.get(f"calibration.{k}"), digits)
                       for k, digits in (("classwise_ece", 3), ("classwise_ece_ts", 3),
                                         ("aurc", 4), ("augrc", 4))])
    return base._table(header, rows)


def paired_columns(report):
    """Extra columns of the paired table: set sizes at the first alpha and AURC."""
    columns = []
    if alphas(report):
        alpha = alphas(report)[0]
        columns += [("full", f"conformal.{alpha}.{s}.set_size", f"Δ{SCORE_TITLES[s]} size "
                     f"α={alpha}") for s in ("aps", "raps")]
    return columns + [("full", "calibration.aurc", "ΔAURC")]


def smallest_sets_lines(report, name, config="full"):
    """Sentences naming, per alpha, the method with the smallest APS and RAPS sets."""
    data = report["datasets"][name]
    methods = [m for m in report["methods"] if m in data["summary"].get(config, {})]
    lines = []
    for alpha in alphas(report):
        parts = []
        for score in ("aps", "raps"):
            prefix = f"conformal.{alpha}.{score}"
            best = _smallest(data, config, methods, f"{prefix}.set_size")
            if best is None:
                continue
            entry = _entry(data, config, best)
            text = (f"{SCORE_TITLES[score]}: {base._title(report, best)}, "
                    f"{base._cell(entry[prefix + '.set_size'], 2)} labels per set at coverage "
                    f"{base._cell(entry.get(prefix + '.coverage'))}")
            paired = data["paired_vs_softmax"].get(config, {}).get(best, {}).get(
                f"{prefix}.set_size")
            if paired is not None:
                text += f" (paired vs softmax: {base._delta(paired, 2)})"
            parts.append(text)
        if parts:
            lines.append(f"Smallest conformal sets at α = {alpha} (target coverage "
                         f"{1 - float(alpha):g}): " + "; ".join(parts) + ".")
    return lines


DETECTOR_TITLES = {"msp": "MSP", "max_logit": "max logit", "energy": "energy", "gen": "GEN",
                   "mahalanobis": "Mahalanobis", "rmds": "RMDS", "knn": "KNN", "vim": "ViM",
                   "react": "ReAct"}


def _set_title(set_name):
    return base.SET_TITLES.get(set_name, set_name)


def _comparisons(data):
    versus = data.get("versus_best_detector", {})
    return [(config, set_name, versus[config][set_name]) for config in data["configs"]
            for set_name in versus.get(config, {})]


def _selected_label(comparison):
    name = DETECTOR_TITLES.get(comparison["selected"], comparison["selected"])
    return name + (" (oracle)" if comparison["selected_by"] == "oracle" else "")


def versus_detector_table(report, name):
    """One row per method: its own score's AUROC and the paired difference to the best
    post-hoc detector on the softmax baseline, per OOD set."""
    data = report["datasets"][name]
    comparisons = _comparisons(data)
    if not comparisons:
        return ""
    header = ["method [score]"]
    for config, set_name, comparison in comparisons:
        header += [f"{_set_title(set_name)}: own",
                   f"Δ own − {_selected_label(comparison)} on softmax"]
    rows = []
    for method in report["methods"]:
        if not any(method in c["methods"] for _, _, c in comparisons):
            continue
        row = [f"{base._title(report, method)} [{base._score_name(data, 'full', method)}]"]
        for config, set_name, comparison in comparisons:
            row.append(base._cell(_entry(data, config, method).get(
                f"ood.{set_name}.recommended.auroc")))
            row.append(base._delta(comparison["methods"].get(method)))
        rows.append(row)
    footer = ["best post-hoc on softmax (mean AUROC)"]
    for _, _, comparison in comparisons:
        footer += [f"{_selected_label(comparison)} "
                   f"{comparison['baseline'][comparison['selected']]:.3f}",
                   f"oracle best: {DETECTOR_TITLES.get(comparison['oracle'])} "
                   f"{comparison['baseline'][comparison['oracle']]:.3f}"]
    return base._table(header, rows + [footer])


def detector_tables(report, name, metric="auroc"):
    """Per OOD set, one row per method: every post-hoc detector that applied to it."""
    data = report["datasets"][name]
    blocks = []
    for config in data["configs"]:
        for set_name in base._ood_sets(data, config):
            rows = []
            for method in report["methods"]:
                entry = _entry(data, config, method)
                cells = {d: entry.get(f"posthoc.{set_name}.{d}.{metric}")
                         for d in DETECTOR_TITLES}
                means = [c["mean"] for c in cells.values() if c is not None]
                if not means:
                    continue
                row = [base._title(report, method)]
                for cell in cells.values():
                    text = base._cell(cell)
                    row.append(f"**{text}**" if cell is not None and cell["mean"] == max(means)
                               else text)
                rows.append(row)
            if rows:
                blocks.append(f"**{_set_title(set_name)}** ({config} model), {metric.upper()}:"
                              "\n\n" + base._table(["method"] + list(DETECTOR_TITLES.values()),
                                                    rows))
    return "\n\n".join(blocks)


def verdict_lines(report, name):
    """Plain sentences: where a head's own score beats the best post-hoc detector on the
    softmax baseline in every seed, where it loses in every seed, and where the seeds split."""
    data = report["datasets"][name]
    lines = []
    for config, set_name, comparison in _comparisons(data):
        groups = {"beats": [], "loses": [], "mixed": []}
        for method, delta in comparison["methods"].items():
            text = f"{base._title(report, method)} ({delta['mean']:+.3f})"
            if delta["same_sign"] == delta["n"] and delta["mean"] > 0:
                groups["beats"].append(text)
            elif delta["same_sign"] == delta["n"] and delta["mean"] < 0:
                groups["loses"].append(text)
            else:
                groups["mixed"].append(text)
        n = max((d["n"] for d in comparison["methods"].values()), default=0)
        lines.append(
            f"- **{_set_title(set_name)}** ({config} models), against "
            f"{_selected_label(comparison)} on softmax (mean AUROC "
            f"{comparison['baseline'][comparison['selected']]:.3f}): beats it in all {n} "
            f"seeds: {', '.join(groups['beats']) or 'none'}; below it in all {n} seeds: "
            f"{', '.join(groups['loses']) or 'none'}; seeds disagree: "
            f"{', '.join(groups['mixed']) or 'none'}.")
    return lines
