"""Statistics of compare runs: summaries over seeds and paired differences against softmax."""

import numpy as np

from keras_vc.benchmark import registry


def flatten(figures, prefix=""):
    """Numeric leaves of nested figures as ``{"a.b.c": value}`` (strings are skipped)."""
    flat = {}
    for key, value in figures.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, path + "."))
        elif isinstance(value, (bool, np.bool_)):
            flat[path] = bool(value)
        elif isinstance(value, (int, float, np.integer, np.floating)):
            flat[path] = float(value)
    return flat


def summarize(values):
    values = np.asarray(values, dtype=np.float64)
    return {"mean": float(values.mean()), "std": float(values.std(ddof=0)), "n": int(values.size)}


_NOT_COMPARED = ("init_checksum",)


def _compared(key):
    return not key.endswith("_seconds") and key not in _NOT_COMPARED


def summarize_runs(runs):
    """``{config: {method: {key: {mean, std, n}}}}``; booleans as ``{count, n}``."""
    summary = {}
    for run in runs:
        flat = flatten(run["figures"])
        entry = summary.setdefault(run["config"], {}).setdefault(run["method"], {})
        for key, value in flat.items():
            entry.setdefault(key, []).append(value)
    for config in summary.values():
        for method, values_by_key in config.items():
            config[method] = {
                key: ({"count": int(sum(values)), "n": len(values)}
                      if isinstance(values[0], bool) else summarize(values))
                for key, values in values_by_key.items()}
    return summary


def paired_differences(runs, baseline=registry.BASELINE):
    """Paired ``method - baseline`` over seeds, per config and figure, with the number of
    seeds whose difference has the (strict) sign of the mean difference (``same_sign``)."""
    by_key = {}
    for run in runs:
        by_key[(run["config"], run["method"], run["seed"])] = flatten(run["figures"])
    paired = {}
    for (config, method, seed), flat in sorted(by_key.items()):
        if method == baseline or (config, baseline, seed) not in by_key:
            continue
        base = by_key[(config, baseline, seed)]
        entry = paired.setdefault(config, {}).setdefault(method, {})
        for key, value in flat.items():
            if isinstance(value, bool) or key not in base or not _compared(key):
                continue
            entry.setdefault(key, []).append(value - base[key])
    for config in paired.values():
        for method, deltas_by_key in config.items():
            result = {}
            for key, deltas in deltas_by_key.items():
                deltas = np.asarray(deltas)
                sign = np.sign(deltas.mean())
                # A zero difference holds no sign: identical figures give 0/n, not n/n.
                same_sign = int(np.sum(np.sign(deltas) == sign)) if sign != 0 else 0
                result[key] = dict(summarize(deltas), same_sign=same_sign)
            config[method] = result
    return paired


def at_chance_seeds(runs):
    """``{config: {method: [seeds]}}`` of the models that ended at chance accuracy (runs
    flagged ``at_chance``); empty when none did."""
    found = {}
    for run in runs:
        if run.get("at_chance"):
            found.setdefault(run["config"], {}).setdefault(run["method"], []).append(run["seed"])
    return found
