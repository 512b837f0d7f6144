"""Markdown of the post-hoc figures of a ``keras-vc compare`` report: conformal prediction
sets, post-hoc calibrators and selective classification.

Cells are mean ± std over seeds, as in :mod:`keras_vc.benchmark.report`; markers are explained
by :func:`header_lines`, which both reports print.
"""

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
        "all-classes models only (the dearest of these figures: Dirichlet scaling's fit).",
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
    """One row per method: test ECE after each calibrator, classwise ECE, AURC and AUGRC."""
    data = report["datasets"][name]
    header = (["method", "ECE"] + [title for _, title in CALIBRATOR_TITLES]
              + ["cwECE", "cwECE (TS)", "AURC", "AUGRC"])
    rows = []
    for method in report["methods"]:
        entry = _entry(data, config, method)
        if not entry:
            continue
        keys = ["calibration.ece"] + [f"calibrators.{c}.ece" for c, _ in CALIBRATOR_TITLES]
        means = [entry[k]["mean"] for k in keys if k in entry]
        best = min(means) if means else None
        cells = []
        for key in keys:
            cell = base._cell(entry.get(key))
            cells.append(f"**{cell}**" if key in entry and entry[key]["mean"] == best else cell)
        rows.append([base._title(report, method)] + cells
                    + [base._cell(entry.get(f"calibration.{k}"))
                       for k in ("classwise_ece", "classwise_ece_ts", "aurc", "augrc")])
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
