"""Reference solutions on demand: the code cell that starts with ``# Solution <key>`` in the chapter's
solutions notebook, looked up in a checkout, in the copy packed into the installed package (Colab), or
in the folder named by the MMBOOK_SOLUTIONS_DIR environment variable."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from utils.exercises.describe import PACKAGE_DIR

SOLUTIONS_ENV = "MMBOOK_SOLUTIONS_DIR"
_SOLUTION_HEADER = re.compile(r"^#\s*Solution\s+([0-9A-Za-z.\-_]+?)[:.]?(\s|$)")


def chapter_of(key: str) -> int:
    """The chapter number of an exercise key: "3.2" -> 3."""
    try:
        return int(str(key).split(".")[0])
    except ValueError:
        return 0


def solution_dirs() -> list[Path]:
    """Where solutions notebooks are looked for, in order."""
    dirs = []
    if os.environ.get(SOLUTIONS_ENV):
        dirs.append(Path(os.environ[SOLUTIONS_ENV]).expanduser())
    dirs.append(PACKAGE_DIR.parent / "solutions")  # a local checkout or an editable install
    dirs.append(PACKAGE_DIR / "_solutions")  # the copy packed into the wheel (Colab)
    return dirs


def find_solution(key: str) -> tuple[Path, str] | str:
    """(notebook path, cell source) of the cell starting with ``# Solution <key>``, or a message."""
    pattern = f"{chapter_of(key):02d}_*.ipynb"
    looked = []
    for folder in solution_dirs():
        for notebook in sorted(folder.glob(pattern)) if folder.is_dir() else []:
            looked.append(notebook)
            for source in _code_cells(notebook):
                first = next((line for line in source.splitlines() if line.strip()), "")
                match = _SOLUTION_HEADER.match(first.strip())
                if match and match.group(1) == key:
                    return notebook, source.strip("\n")
    places = ", ".join(str(d) for d in solution_dirs())
    if looked:
        return (
            f"No reference solution for {key} yet: no code cell starting with '# Solution {key}' in "
            f"{', '.join(p.name for p in looked)}."
        )
    return (
        f"Could not find the solutions notebook {pattern} for {key}. Looked in: {places}. "
        f"Set {SOLUTIONS_ENV} to the folder that holds it, or read it in the book's solutions/ folder."
    )


def _code_cells(notebook: Path) -> list[str]:
    try:
        cells = json.loads(notebook.read_text(encoding="utf-8")).get("cells", [])
    except (OSError, ValueError):
        return []
    sources = []
    for cell in cells:
        if cell.get("cell_type") == "code":
            source = cell.get("source", "")
            sources.append("".join(source) if isinstance(source, list) else str(source))
    return sources
