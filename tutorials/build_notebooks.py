"""Writes the tutorial notebooks (tutorials/*.ipynb) from their sources (tutorials/src/*.py).

The sources are plain Python files in the "percent" format that Jupytext, VS Code and PyCharm
understand: ``# %%`` starts a code cell, ``# %% [markdown]`` a markdown cell whose lines are
comments (``# `` is removed). Everything before the first ``# %%`` is a note to maintainers and is
not copied. Edit the sources, then run::

    python tutorials/build_notebooks.py          # rewrite the notebooks
    python tutorials/build_notebooks.py --check  # exit 1 if a notebook differs from its source

The notebooks are written without outputs or execution counts and with stable cell ids, so that a
change to a source gives a small diff. The "Open in Colab" badge is added at the top of the first
markdown cell. In markdown, a link target ``colab:02_dismax_isomax.ipynb`` becomes that notebook's
Colab address and ``github:docs/serving.md`` the file's GitHub address, so that the repository's
address is written only here. tests/test_tutorials.py runs ``--check`` and executes every notebook.
"""

import argparse
import pathlib
import re
import sys

import nbformat

TUTORIALS = pathlib.Path(__file__).resolve().parent
SOURCES = TUTORIALS / "src"
REPOSITORY = "keras-vc/keras_vc"
BRANCH = "main"
BADGE_IMAGE = "https://colab.research.google.com/assets/colab-badge.svg"
METADATA = {
    "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
    "language_info": {"name": "python"},
    "colab": {"provenance": [], "toc_visible": True},
}


def colab_url(notebook_name):
    """The Colab address of a notebook of this folder on the project's GitHub repository."""
    return (f"https://colab.research.google.com/github/{REPOSITORY}/blob/{BRANCH}/tutorials/"
            f"{notebook_name}")


def github_url(path):
    """The GitHub address of a file of the repository."""
    return f"https://github.com/{REPOSITORY}/blob/{BRANCH}/{path}"


def resolve_links(markdown):
    """Replaces ``](colab:NAME.ipynb)`` and ``](github:PATH)`` link targets by addresses."""
    markdown = re.sub(r"\]\(colab:([\w.-]+\.ipynb)\)",
                      lambda m: f"]({colab_url(m.group(1))})", markdown)
    return re.sub(r"\]\(github:([\w./-]+)\)", lambda m: f"]({github_url(m.group(1))})", markdown)


def colab_badge(notebook_name):
    return f"[![Open In Colab]({BADGE_IMAGE})]({colab_url(notebook_name)})"


def parse_cells(text):
    """Splits a percent-format source into ``[(kind, source), ...]``, kind "code" or "markdown"."""
    cells = []
    kind, lines = None, []

    def flush():
        if kind is None:
            return
        while lines and not lines[-1].strip():
            lines.pop()
        while lines and not lines[0].strip():
            lines.pop(0)
        if not lines:
            raise ValueError(f"an empty {kind} cell after cell {len(cells)}")
        cells.append((kind, "\n".join(lines)))

    for line in text.splitlines():
        marker = line.strip()
        if marker.startswith("# %%"):
            flush()
            kind = "markdown" if marker == "# %% [markdown]" else "code"
            if kind == "code" and marker != "# %%":
                raise ValueError(f"unknown cell marker {line!r}")
            lines = []
        elif kind == "markdown":
            if line.strip() and not line.startswith("#"):
                raise ValueError(f"a markdown cell line must be a comment: {line!r}")
            lines.append(line[2:] if line.startswith("# ") else line[1:])
        elif kind == "code":
            lines.append(line)
    flush()
    return cells


def build(source_path):
    """The notebook (an ``nbformat.NotebookNode``) for one source file."""
    notebook_name = source_path.stem + ".ipynb"
    cells = parse_cells(source_path.read_text())
    if not cells or cells[0][0] != "markdown":
        raise ValueError(f"{source_path.name}: the first cell must be markdown (title and badge)")
    notebook = nbformat.v4.new_notebook(metadata=METADATA)
    for index, (kind, source) in enumerate(cells):
        cell_id = f"cell-{index:02d}"
        if index == 0:
            title, _, rest = source.partition("\n")
            source = f"{title}\n\n{colab_badge(notebook_name)}\n{rest}"
        if kind == "markdown":
            source = resolve_links(source)
            for target in re.findall(r"\]\((colab|github):([^)]*)\)", source):
                raise ValueError(f"{source_path.name}: unresolved link target {':'.join(target)}")
            notebook.cells.append(nbformat.v4.new_markdown_cell(source, id=cell_id))
        else:
            notebook.cells.append(nbformat.v4.new_code_cell(source, id=cell_id))
    nbformat.validate(notebook)
    return notebook


def render(notebook):
    return nbformat.writes(notebook) + "\n"


def sources():
    return sorted(SOURCES.glob("[0-9][0-9]_*.py"))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="do not write; exit 1 if a notebook is missing or out of date")
    args = parser.parse_args(argv)
    stale = []
    for source_path in sources():
        target = TUTORIALS / (source_path.stem + ".ipynb")
        text = render(build(source_path))
        if target.exists() and target.read_text() == text:
            continue
        stale.append(target.name)
        if not args.check:
            target.write_text(text)
    expected = {path.stem + ".ipynb" for path in sources()}
    orphans = sorted(path.name for path in TUTORIALS.glob("*.ipynb") if path.name not in expected)
    if args.check:
        for name in stale:
            print(f"{name} is out of date: run python tutorials/build_notebooks.py")
        for name in orphans:
            print(f"{name} has no source in tutorials/src/")
        return 1 if stale or orphans else 0
    for name in stale:
        print(f"wrote tutorials/{name}")
    for name in orphans:
        print(f"warning: tutorials/{name} has no source in tutorials/src/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
