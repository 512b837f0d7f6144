"""Compares two ``compare.json`` reports figure by figure, timings excluded.

Used to check that a change of the benchmark's code changes no figure: run the same command
before and after, then::

    python -m keras_vc.benchmark.diff_reports BEFORE/compare.json AFTER/compare.json

Every figure of every run (dataset, config, method, seed) present in both reports is compared,
and so are the per-dataset summaries, paired differences, post-hoc comparisons, split sizes and
OOD set descriptions; keys ending in ``_seconds`` (timings) are skipped. Methods or runs found in
only one report are listed, not counted as differences. The exit status is 0 when every shared
figure is equal (within ``--tolerance``, absolute), 1 otherwise.
"""

import argparse
import json
import math
import sys

COMPARED_SECTIONS = ("summary", "paired_vs_softmax", "versus_best_detector", "sizes",
                     "ood_sets", "configs")


def leaves(value, prefix=""):
    """``{"a.b.c": leaf}`` of nested dicts and lists (timings, keys ending ``_seconds``, left
    out)."""
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, list):
        items = ((str(i), v) for i, v in enumerate(value))
    else:
        return {prefix: value}
    flat = {}
    for key, item in items:
        if str(key).endswith("_seconds"):
            continue
        flat.update(leaves(item, f"{prefix}.{key}" if prefix else str(key)))
    return flat


def _equal(a, b, tolerance):
    if isinstance(a, bool) or isinstance(b, bool) or not (
            isinstance(a, (int, float)) and isinstance(b, (int, float))):
        return a == b
    if math.isnan(a) and math.isnan(b):
        return True
    return abs(a - b) <= tolerance


def _shared_methods(by_config, other):
    """``{config: {method: ...}}`` restricted to the methods ``other`` has in that config."""
    return {config: {m: v for m, v in methods.items() if m in (other or {}).get(config, {})}
            for config, methods in (by_config or {}).items()}


def _runs(report):
    return {(name, run["config"], run["method"], run["seed"]): run["figures"]
            for name, data in report["datasets"].items() for run in data["runs"]}


def diff_reports(before, after, tolerance=0.0):
    """Differences between two reports (dicts loaded from ``compare.json``).

    Args:
        before, after: the two reports.
        tolerance: the largest absolute difference of two numbers still counted as equal.

    Returns:
        ``{"compared": number of figures compared, "differences": [(where, before, after)],
        "only_before": [...], "only_after": [...]}``; ``where`` names the dataset, the section
        or run, and the figure.
    """
    if not (isinstance(tolerance, (int, float)) and tolerance >= 0):
        raise ValueError(f"`tolerance` must be a number >= 0, got {tolerance!r}.")
    result = {"compared": 0, "differences": [], "only_before": [], "only_after": []}

    def compare(where, a, b):
        flat_a, flat_b = leaves(a), leaves(b)
        for key in sorted(set(flat_a) | set(flat_b)):
            if key not in flat_b:
                result["only_before"].append(f"{where}: {key}")
            elif key not in flat_a:
                result["only_after"].append(f"{where}: {key}")
            else:
                result["compared"] += 1
                if not _equal(flat_a[key], flat_b[key], tolerance):
                    result["differences"].append((f"{where}: {key}", flat_a[key], flat_b[key]))

    runs_a, runs_b = _runs(before), _runs(after)
    for key in sorted(set(runs_a) | set(runs_b), key=str):
        where = "run {} {} {} seed {}".format(*key)
        if key not in runs_b:
            result["only_before"].append(where)
        elif key not in runs_a:
            result["only_after"].append(where)
        else:
            compare(where, runs_a[key], runs_b[key])
    for name in sorted(set(before["datasets"]) & set(after["datasets"])):
        data_a, data_b = before["datasets"][name], after["datasets"][name]
        for section in COMPARED_SECTIONS:
            a, b = data_a.get(section), data_b.get(section)
            if section in ("summary", "paired_vs_softmax"):  # methods of one report only
                a, b = _shared_methods(a, b), _shared_methods(b, a)
            compare(f"{name} {section}", a, b)
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("before", help="the first compare.json")
    parser.add_argument("after", help="the second compare.json")
    parser.add_argument("--tolerance", type=float, default=0.0,
                        help="largest absolute difference counted as equal (default 0: exact)")
    args = parser.parse_args(argv)
    reports = []
    for path in (args.before, args.after):
        with open(path) as handle:
            reports.append(json.load(handle))
    result = diff_reports(*reports, tolerance=args.tolerance)
    for label in ("only_before", "only_after"):
        if result[label]:
            print(f"{label.replace('_', ' ')} ({len(result[label])}): "
                  + "; ".join(result[label][:20]) + (" ..." if len(result[label]) > 20 else ""))
    for where, a, b in result["differences"][:50]:
        print(f"DIFFERENT {where}: {a!r} -> {b!r}")
    print(f"{result['compared']} figures compared, {len(result['differences'])} different "
          f"(tolerance {args.tolerance:g}; timings excluded).")
    return 1 if result["differences"] else 0


if __name__ == "__main__":
    sys.exit(main())
