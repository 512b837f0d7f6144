"""The README's results tables are the committed report of the default ``keras-vc compare`` run.

``docs/results/`` holds what the default run wrote (``compare.json.gz``, ``compare.md``,
``README_results.md``); the README's "Results" section pastes ``README_results.md`` between two
markers. These tests fail when a table in the README is edited by hand, when the committed
section is not what the report code makes of the committed JSON, or when the README's quoted
run time disagrees with the report.
"""

import gzip
import json
import pathlib
import re

from keras_vc.benchmark import report_files

ROOT = pathlib.Path(__file__).resolve().parents[1]
RESULTS = ROOT / "docs" / "results"
BEGIN = "<!-- results:begin docs/results/README_results.md -->"
END = "<!-- results:end -->"


def _readme_section():
    text = (ROOT / "README.md").read_text()
    assert text.count(BEGIN) == 1 and text.count(END) == 1, (
        f"README.md must hold the markers {BEGIN!r} and {END!r} once each")
    return text[text.index(BEGIN) + len(BEGIN):text.index(END)].strip("\n")


def _report():
    with gzip.open(RESULTS / "compare.json.gz", "rt") as handle:
        return json.load(handle)


def _committed_body():
    """The committed section without its ``## Results`` heading (the README has its own)."""
    text = (RESULTS / "README_results.md").read_text()
    heading, body = text.split("\n", 1)
    assert heading == "## Results"
    return body.strip("\n")


def test_readme_results_equal_the_committed_report():
    committed = _committed_body()
    section = _readme_section()
    assert section == committed, (
        "The README's results differ from docs/results/README_results.md: paste the file "
        "between the markers unchanged (regenerate both with `make demo`).")


def test_committed_section_is_what_the_report_code_makes_of_the_committed_json():
    committed = (RESULTS / "README_results.md").read_text().strip("\n")
    assert report_files.format_readme_section(_report()).strip("\n") == committed


def test_readme_run_time_is_the_reports():
    report = _report()
    text = (ROOT / "README.md").read_text()
    intro = text[text.index("## Results"):text.index(BEGIN)]
    minutes = f"{report['wall_seconds'] / 60:.1f} min"
    assert minutes in intro, f"the README's Results intro must quote the run's {minutes}"
    count = sum(len(d["runs"]) for d in report["datasets"].values())
    assert re.search(rf"\b{count} models\b", intro), f"the intro must say {count} models"
