"""The book's tooling: notebook execution names the failing cell; the runtime table renders."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("book_notebooks", ROOT / "scripts" / "notebooks.py")
notebooks = importlib.util.module_from_spec(spec)
spec.loader.exec_module(notebooks)


def write_notebook(path: Path, *sources: str) -> Path:
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources])
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(notebook, path)
    return path


def test_a_failing_notebook_names_the_cell_and_the_error(tmp_path, monkeypatch):
    monkeypatch.setattr(notebooks, "ROOT", tmp_path)
    path = write_notebook(tmp_path / "01_broken.ipynb", "x = 1", "raise ValueError('the shapes world is flat')")
    with pytest.raises(SystemExit) as failure:
        notebooks.run(path)
    message = str(failure.value)
    assert "01_broken.ipynb" in message and "cell 1" in message
    assert "ValueError" in message and "the shapes world is flat" in message


def test_a_good_notebook_reports_its_slowest_cells(tmp_path):
    path = write_notebook(tmp_path / "01_good.ipynb", "import time; time.sleep(0.3)", "y = 2")
    notebook, seconds, cell_times = notebooks.run(path)
    assert seconds > 0.3
    assert cell_times[0][1] == 0, "the sleeping cell is the slowest"
    assert all("execution" not in cell.metadata for cell in notebook.cells), "timing metadata is not stored"


def test_runtime_table_has_cpu_and_gpu_columns():
    table = {"01_foundations": {
        "cpu": {"seconds": 20.0, "device": "x86_64 CPU, 2 cores", "date": "2026-11-23", "top_cells": [[4.0, 7, "fit"]]},
        "gpu": {"seconds": 6.0, "device": "NVIDIA H100", "date": "2026-11-24", "top_cells": [[1.0, 7, "fit"]]},
    }}
    text = notebooks.render_table(table)
    assert "| 01_foundations | 20.0 | 6.0 |" in text
    assert "NVIDIA H100" in text and "x86_64 CPU, 2 cores" in text
