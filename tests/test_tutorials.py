"""Every tutorial notebook runs top to bottom offline at small settings, and is stored clean.

The notebooks read two environment variables: ``KERAS_VC_OFFLINE=1`` makes them use the bundled
offline data instead of TFDS (as they do by themselves where nothing can be downloaded) and
``KERAS_VC_TUTORIAL_FAST=1`` shrinks epochs and sample counts so the whole set runs within the
test suite's budget.
"""

import json
import os
import pathlib

import pytest

TUTORIALS = pathlib.Path(__file__).resolve().parent.parent / "tutorials"
NOTEBOOKS = sorted(TUTORIALS.glob("*.ipynb"))
ROOT = TUTORIALS.parent


def test_there_are_tutorials():
    assert len(NOTEBOOKS) >= 5, [p.name for p in NOTEBOOKS]


def test_notebooks_are_built_from_their_sources():
    """Each notebook is the output of tutorials/build_notebooks.py for its tutorials/src/ file."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("build_notebooks",
                                                  TUTORIALS / "build_notebooks.py")
    build_notebooks = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build_notebooks)
    assert build_notebooks.main(["--check"]) == 0, "run python tutorials/build_notebooks.py"
    assert [p.stem for p in build_notebooks.sources()] == [p.stem for p in NOTEBOOKS]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_stored_without_outputs_and_opens_in_colab(path):
    notebook = json.loads(path.read_text())
    code_cells = [c for c in notebook["cells"] if c["cell_type"] == "code"]
    assert code_cells, "a tutorial without code"
    for cell in code_cells:
        assert cell.get("outputs", []) == [], f"{path.name}: a cell has stored outputs"
        assert cell.get("execution_count") is None, f"{path.name}: a cell has an execution count"
    first_markdown = "".join(next(c for c in notebook["cells"] if c["cell_type"] == "markdown")
                             ["source"])
    assert "colab.research.google.com" in first_markdown and "colab-badge" in first_markdown, (
        f"{path.name}: no 'Open in Colab' badge in the first markdown cell")
    first_code = "".join(code_cells[0]["source"])
    assert "pip install" in first_code, f"{path.name}: the first code cell must install keras_vc"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_executes_offline(path, tmp_path):
    import nbformat
    from nbclient import NotebookClient

    notebook = nbformat.read(str(path), as_version=4)
    env = {
        "KERAS_VC_OFFLINE": "1",
        "KERAS_VC_TUTORIAL_FAST": "1",
        "KERAS_BACKEND": "tensorflow",
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "MPLBACKEND": "Agg",
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    previous = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    try:
        client = NotebookClient(notebook, timeout=300, kernel_name="python3",
                                resources={"metadata": {"path": str(tmp_path)}})
        client.execute()  # raises CellExecutionError naming the failing cell
    finally:
        for key, value in previous.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
