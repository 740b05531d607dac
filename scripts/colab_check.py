"""Run what a Colab reader runs, under Colab's package versions (.venv-colab, made by colab_env.sh).

    .venv-colab/bin/python scripts/colab_check.py

First utils is uninstalled, so that the setup cell really installs it: with `google.colab` present,
from a git clone of this repository's committed HEAD (as Colab clones GitHub; commit before running
this). Then for every lesson: the setup cell, the definitions the real-thing section uses from
earlier cells (imports, functions, constants), and the real-thing section itself (offline: the
stand-ins). Then every solutions notebook, whole: every check in it must say "correct". Nothing may
print an error, write to stderr or show a warning. Exit status 1 names the notebook, the cell and
what it printed. The lessons' training cells are not run here (nbval runs them under the pins).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellTimeoutError
from notebook_code import prelude, used_names

ROOT = Path(__file__).resolve().parents[1]
WARNING = re.compile(r"\bwarning\b", re.IGNORECASE)
VERDICT = re.compile(r"\[(incorrect|error|not attempted)\]")
FAKE_COLAB = """import importlib.machinery, sys, types
colab = types.ModuleType("google.colab")  # what the setup cell looks for, as in Colab
colab.__spec__ = importlib.machinery.ModuleSpec("google.colab", None)
sys.modules["google.colab"] = colab"""


def _source(cell) -> str:
    return cell.source if isinstance(cell.source, str) else "".join(cell.source)


def colab_view(lesson: Path) -> nbformat.NotebookNode:
    """The cells a Colab reader runs to reach the lesson's real-thing section, and that section: the
    setup cell, then the definitions the section uses from earlier cells, then the section."""
    notebook = nbformat.read(lesson, as_version=4)
    setup, earlier, section_cells = None, [], []
    section = None
    for cell in notebook.cells:
        text = _source(cell)
        if cell.cell_type == "markdown" and text.startswith("## "):
            section = "real" if "real thing" in text.lower() else "other"
        elif cell.cell_type == "code" and text.startswith("# Setup"):
            local = f"git+file://{ROOT}"
            setup = text.replace(text.split('BOOK = "')[1].split('"')[0], local, 1)
        elif cell.cell_type == "code":
            (section_cells if section == "real" else earlier).append(text)
    if setup is None or not section_cells:
        raise SystemExit(f"{lesson.name}: no setup cell or no section titled 'The real thing'")
    needed = set().union(*(used_names(source) for source in section_cells))
    sources = [FAKE_COLAB, setup, prelude(earlier, needed), *section_cells]
    view = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources])
    view.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return view


def problems(notebook: nbformat.NotebookNode) -> list[str]:
    """Errors, stderr and warnings stored in the executed notebook's outputs."""
    found = []
    for index, cell in enumerate(notebook.cells):
        for output in cell.get("outputs", []):
            kind = output.get("output_type")
            data = output.get("data", {})
            text = "".join(output.get("text", "")) + "".join(data.get("text/plain", "")) + "".join(
                data.get("text/html", ""))
            if kind == "error":
                found.append(f"cell {index}: {output.get('ename')}: {output.get('evalue')}")
            elif kind == "stream" and output.get("name") == "stderr":
                found.append(f"cell {index} wrote to stderr: {text.strip()[:400]}")
            elif WARNING.search(text):
                found.append(f"cell {index} printed a warning: {text.strip()[:400]}")
            elif VERDICT.search(text):
                found.append(f"cell {index}: a check did not pass: {text.strip()[:400]}")
    return found


def run(name: str, notebook: nbformat.NotebookNode, folder: Path) -> list[str]:
    client = NotebookClient(notebook, kernel_name="python3", timeout=300, allow_errors=True,
                            resources={"metadata": {"path": str(folder)}})
    start = time.perf_counter()
    try:
        client.execute()
    except CellTimeoutError:  # errors are stored in the outputs (allow_errors); a hang is not
        return [f"{name}: a cell ran longer than 300 s"]
    found = problems(notebook)
    status = "ok" if not found else f"{len(found)} problem(s)"
    print(f"colab-check: {name}: {status} ({time.perf_counter() - start:.0f} s)")
    return [f"{name}, {problem}" for problem in found]


def main() -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # no hub here: the stand-ins, as in CI
    os.environ.pop("MMBOOK_EXECUTE", None)  # a reader's session, not the book's build
    subprocess.run([sys.executable, "-m", "pip", "uninstall", "-q", "-y", "mmbook-utils"], check=True)
    os.environ.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")  # Colab's ipykernel 6.17 debugger notice
    import torch
    import transformers

    print(f"colab-check: Python {sys.version.split()[0]}, torch {torch.__version__}, "
          f"transformers {transformers.__version__}")
    failures = []
    for lesson in sorted((ROOT / "lessons").glob("[0-9][0-9]_*.ipynb")):
        failures += run(f"lessons/{lesson.name} (setup + real thing)", colab_view(lesson), lesson.parent)
    for solutions in sorted((ROOT / "solutions").glob("[0-9][0-9]_*.ipynb")):
        failures += run(f"solutions/{solutions.name}", nbformat.read(solutions, as_version=4), solutions.parent)
    if failures:
        print("colab-check FAILED:\n  " + "\n  ".join(failures), file=sys.stderr)
        return 1
    print("colab-check: every setup cell, real-thing section and solutions notebook ran clean")
    return 0


if __name__ == "__main__":
    sys.exit(main())
