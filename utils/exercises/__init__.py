"""Self-grading exercises: one module per chapter (`ch01`, ...), built on `core`.

Each chapter's module is listed in `CHAPTERS`, once; nothing is discovered by scanning or imported
behind the reader's back, and a chapter module that fails to import is an error the tests see.
A chapter module declares `Exercise(key=..., cases=..., hints=..., mistakes=...)` objects and a
`progress()` function returning `core.chapter_progress(N)`; lessons call `.check(fn)`, `.hint()`,
`.solution()` and `progress()`. How to add an exercise: book/how_to_use.md, "Writing an exercise".
"""

from __future__ import annotations

import importlib
from types import ModuleType

# Chapter number -> module name under utils.exercises.
CHAPTERS: dict[int, str] = {
    1: "ch01",
    2: "ch02",
    3: "ch03",
    4: "ch04",
    5: "ch05",
    6: "ch06",
    7: "ch07",
    8: "ch08",
    9: "ch09",
    10: "ch10",
}


def load_chapter(chapter: int) -> ModuleType:
    """The exercise module of `chapter`, imported (its exercises register themselves)."""
    if chapter not in CHAPTERS:
        raise KeyError(f"chapter {chapter} has no exercises; known chapters: {sorted(CHAPTERS)}")
    return importlib.import_module(f"utils.exercises.{CHAPTERS[chapter]}")


def all_exercises() -> list:
    """Every exercise of every chapter, in chapter order (imports each chapter module)."""
    from utils.exercises.declare import Exercise

    found = []
    for chapter in sorted(CHAPTERS):
        module = load_chapter(chapter)
        found += [value for value in vars(module).values() if isinstance(value, Exercise)]
    return found
