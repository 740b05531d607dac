"""The book's tooling: notebook execution names the failing cell; the runtime table renders."""

from __future__ import annotations

import importlib.util
import re
import sys
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


# -- one source of truth for the repository, and a setup cell that fails clearly ------------------

sync_spec = importlib.util.spec_from_file_location("book_sync", ROOT / "scripts" / "sync_repository.py")
sync_repository = importlib.util.module_from_spec(sync_spec)
sys.modules["book_sync"] = sync_repository  # dataclasses look their module up there
sync_spec.loader.exec_module(sync_repository)


def lesson_cells(path: Path) -> list[str]:
    return ["".join(cell["source"]) for cell in nbformat.read(path, as_version=4).cells]


def setup_cell(path: Path) -> str:
    return next(source for source in lesson_cells(path) if source.startswith("# Setup"))


def test_every_copy_of_the_repository_agrees_with_config():
    assert sync_repository.sync(check=True) == [], "run: python scripts/sync_repository.py"
    repo = sync_repository.repository()
    for path in sorted((ROOT / "lessons").glob("[0-9][0-9]_*.ipynb")):
        assert f'BOOK = "{repo.pip_source}"' in setup_cell(path), f"{path.name}: setup cell installs elsewhere"
        assert repo.colab_link(path.name) in lesson_cells(path)[0]
    assert repo.pip_source.endswith("@" + repo.branch), "the setup cell installs the branch the links open"


def test_changing_the_url_in_config_updates_every_copy(tmp_path):
    import shutil

    shutil.copytree(ROOT / "lessons", tmp_path / "lessons")
    shutil.copy(ROOT / "README.md", tmp_path / "README.md")
    config = (ROOT / "_config.yml").read_text()
    old = sync_repository.repository()
    (tmp_path / "_config.yml").write_text(config.replace(old.url, "https://github.com/a-fork/the-book")
                                          .replace(f"branch: {old.branch}", "branch: draft"))
    changed = sync_repository.sync(tmp_path)
    lessons = sorted((tmp_path / "lessons").glob("[0-9][0-9]_*.ipynb"))
    assert set(changed) == set(lessons) | {tmp_path / "README.md"}
    for path in lessons:
        assert 'BOOK = "git+https://github.com/a-fork/the-book@draft"' in setup_cell(path)
        assert f"colab.research.google.com/github/a-fork/the-book/blob/draft/lessons/{path.name}" in \
            lesson_cells(path)[0]
        assert old.url not in "".join(lesson_cells(path)), f"{path.name} still names the old repository"
    first = lessons[0]
    notebook = nbformat.read(first, as_version=4)
    other = sync_repository.repository(tmp_path).colab_link(lessons[1].name)
    notebook.cells.append(nbformat.v4.new_markdown_cell(f"Next: [chapter 2]({other.replace('draft', 'old')})"))
    nbformat.write(notebook, first)
    sync_repository.sync(tmp_path)
    assert other in lesson_cells(first)[-1], "a link to another chapter keeps its target"
    readme = (tmp_path / "README.md").read_text()
    assert old.url not in readme and "git+https://github.com/a-fork/the-book@draft" in readme
    assert sync_repository.sync(tmp_path, check=True) == []


def test_setup_cells_are_the_same_but_for_the_chapter_number():
    cells = {path.name: setup_cell(path) for path in sorted((ROOT / "lessons").glob("[0-9][0-9]_*.ipynb"))}
    normalised = {re.sub(r"chapter=\d+", "chapter=N", source) for source in cells.values()}
    assert len(normalised) == 1, "the setup cells differ beyond the chapter number"
    for name, source in cells.items():
        assert f"chapter={int(name[:2])}," in source


def test_a_failed_colab_install_stops_with_a_clear_message(monkeypatch):
    import types

    source = setup_cell(next((ROOT / "lessons").glob("01_*.ipynb")))
    install_part = source.split("\ntry:")[0]
    unreachable = "git+file:///nonexistent/mmbook-fork@main"
    install_part = re.sub(r'BOOK = "[^"]*"', f'BOOK = "{unreachable}"', install_part)
    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    with pytest.raises(RuntimeError) as failure:
        exec(compile(install_part, "setup cell", "exec"), {})  # noqa: S102 - the book's own setup cell
    message = str(failure.value)
    assert unreachable in message and "_config.yml" in message and "public" in message


def test_without_utils_outside_colab_the_setup_cell_says_how_to_install(monkeypatch):
    source = setup_cell(next((ROOT / "lessons").glob("01_*.ipynb")))
    until_setup = source.split("\ndevice = ")[0]
    monkeypatch.setitem(sys.modules, "utils", None)  # as if the package were not installed
    with pytest.raises(ModuleNotFoundError) as missing:
        exec(compile(until_setup, "setup cell", "exec"), {})  # noqa: S102 - the book's own setup cell
    assert "pip install" in str(missing.value) and "mmbook-utils @ git+" in str(missing.value)
