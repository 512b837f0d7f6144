"""The Markdown of a ``keras-vc speed`` report (``speed.md``): time and memory tables, goals."""

from keras_vc.benchmark.registry import BASELINE
from keras_vc.benchmark.speed_goals import config_label
from keras_vc.benchmark.speed_runner import IMAGE_SHAPE


def _duration(milliseconds):
    if milliseconds >= 1000:
        return f"{milliseconds / 1000:.2f} s"
    return f"{milliseconds:.3g} ms"


def _bytes(value):
    if value is None:
        return "n/a"
    if value < 2 ** 20:
        return f"{value / 2 ** 10:.0f} KiB"
    return f"{value / 2 ** 20:.1f} MiB"


def _time_cell(entry, is_baseline):
    if entry["status"] != "ok":
        return entry["status"]
    if is_baseline:
        return f"1.00 ({_duration(entry['step_ms']['median'])})"
    ratio = entry["ratio"]
    return f"{ratio['median']:.2f} [{ratio['q25']:.2f}, {ratio['q75']:.2f}]"


def _memory_cell(entry, is_baseline):
    if entry["status"] != "ok":
        return entry["status"]
    memory = entry["memory"]
    if is_baseline:
        return f"1.00 ({_bytes(memory['step_bytes'])})"
    if memory["step_ratio"] is None:
        return "n/a"
    return f"{memory['step_ratio']:.2f} ({_bytes(memory['step_bytes'])})"


def _table(report, scope, cell):
    results = [r for r in report["results"] if r["scope"] == scope]
    columns = [config_label(scope, r["config"]) for r in results]
    lines = [f"| variant | {' | '.join(columns)} |", "|---" * (len(columns) + 1) + "|"]
    for name, variant in report["variants"].items():
        cells = [cell(r["variants"][name], name == BASELINE) for r in results]
        if all(c == "not applicable" for c in cells):
            continue
        lines.append(f"| {variant['title']} | {' | '.join(cells)} |")
    return lines


def format_markdown(report):
    """The report as Markdown: time and memory tables per scope, goals, what was not measured."""
    settings = report["settings"]
    lines = [
        "# keras-vc speed",
        "",
        f"Date: {report['date']}. Machine: {report['machine']}. Backend: {report['backend']} "
        f"on {report['device']}, XLA on.",
    ]
    if report.get("command"):
        lines += ["", f"Command: `{report['command']}` ({report['wall_seconds']:.0f} s)."]
    lines += [
        "",
        f"Method: {report['method']}. Time cells: median ratio to the baseline [interquartile "
        "range]; the baseline row gives its median step time. Memory cells: ratio of the step's "
        f"extra memory to the baseline's (absolute value); step memory = "
        f"{report['memory']['step_method']}. Keras's own per-step overhead (a one-weight "
        f"model, timed the same way) was {report['overhead_ms']:.2f} ms: ratios of steps not "
        "much longer than that are compressed towards 1.",
    ]
    fallbacks = sorted({f"{name} ({config_label(r['scope'], r['config'])})"
                        for r in report["results"] for name, e in r["variants"].items()
                        if e.get("timer") == "train_on_batch" and report["backend"] == "jax"})
    if fallbacks:
        lines += ["", "Timed with train_on_batch instead (the jitted train_step could not be "
                      "used): " + ", ".join(fallbacks) + "."]
    no_xla = sorted({f"{name} ({config_label(r['scope'], r['config'])})"
                     for r in report["results"] for name, e in r["variants"].items()
                     if e.get("status") == "ok" and not e["xla"]})
    if no_xla:
        lines += ["", "Keras turned XLA off (a layer does not support it) for: "
                  + ", ".join(no_xla) + "."]
    widths = "-".join(str(w) for w in settings["model_widths"])
    titles = {"head": "Head alone (features -> head -> loss, forward and backward)",
              "model": f"Full model (ResNet with stages of {widths} filters, on "
                       f"{IMAGE_SHAPE[0]}x{IMAGE_SHAPE[1]}x{IMAGE_SHAPE[2]} inputs)"}
    for scope in report["scopes"]:
        lines += ["", f"## {titles[scope]}", "", "Training-step time:", ""]
        lines += _table(report, scope, _time_cell)
        lines += ["", "Step memory:", ""]
        lines += _table(report, scope, _memory_cell)
        unmeasured = [f"- {report['variants'][name]['title']} "
                      f"({config_label(scope, r['config'])}): {e['memory']['step_reason']}"
                      for r in report["results"] if r["scope"] == scope
                      for name, e in r["variants"].items()
                      if e.get("status") == "ok" and "step_reason" in e["memory"]]
        if unmeasured and report["memory"]["step_available"]:  # else the method says why
            lines += ["", "Step memory not measurable:", ""] + unmeasured
    lines += ["", "## Goals", "", "| goal | limit | worst median ratio | status |",
              "|---|---|---|---|"]
    for goal in report["goals"]:
        worst = goal["worst"]
        measured = "-" if worst is None else (
            f"{worst['ratio']:.2f} ({report['variants'][worst['variant']]['title']}, "
            f"{worst['config']})")
        lines.append(f"| {goal['goal']} | {goal['limit']:.2f} | {measured} | {goal['status']} |")
    reasons = {}
    for result in report["results"]:
        for name, entry in result["variants"].items():
            if entry["status"] in ("not available", "failed"):
                reasons.setdefault((name, entry["status"], entry["reason"]), None)
    if reasons:
        lines += ["", "Not measured:", ""]
        lines += [f"- {report['variants'][name]['title']}: {status}: {reason}"
                  for name, status, reason in reasons]
    lines += ["", "Variants:", ""]
    lines += [f"- {v['title']}: {v['note']}" for v in report["variants"].values()]
    return "\n".join(lines) + "\n"
