"""The book's self-grading exercises: checks that explain, hints as a ladder, solutions on demand.

This module is the one a chapter imports; the parts live beside it, one seam each:
``declare`` (Case, Mistake, Exercise and grading), ``compare`` (output against expected),
``describe`` (values in words), ``display`` (HTML and text), ``solutions`` and ``progress``.

A chapter module (``utils/exercises/ch01.py``, listed in ``utils.exercises.CHAPTERS``) declares::

    cosine_similarity = Exercise(
        key="1.1", title="Cosine similarity between two batches of vectors",
        cases=lambda: [Case(inputs=(a, b), expected=reference(a, b), label="3 images vs 2 captions")],
        hints=["Normalise each row first.", "The output is [N, M]: one row per image."],
        mistakes=[Mistake("forgot to normalise", "Divide each vector by its L2 norm first.",
                          simulate=lambda a, b: a @ b.T)],
    )

    def progress():
        return chapter_progress(1)

and a lesson uses it: ``ch01.cosine_similarity.check(my_function)``, ``.hint()``, ``.hint(2)``,
``.solution()``, ``ch01.progress()``. A check shows its verdict at once in a notebook (coloured
HTML; plain text elsewhere), wherever the call stands in the cell. Nothing here raises because of
what a learner wrote, and every message is deterministic (no timings, no memory addresses).
"""

from __future__ import annotations

from utils.exercises.compare import compare_values, tolerance_for
from utils.exercises.declare import (
    NOT_ATTEMPTED_MESSAGE,
    Case,
    Exercise,
    Mistake,
    callable_expected,
    clone,
    gradients,
)
from utils.exercises.describe import describe_type, fmt, short
from utils.exercises.display import (
    COLOURS,
    CORRECT,
    ERROR,
    INCORRECT,
    NOT_ATTEMPTED,
    NOT_CHECKED,
    SYMBOLS,
    Result,
    Text,
)
from utils.exercises.progress import ProgressTable, chapter_progress, progress
from utils.exercises.solutions import SOLUTIONS_ENV, chapter_of, find_solution, solution_dirs

__all__ = [
    "COLOURS", "CORRECT", "ERROR", "INCORRECT", "NOT_ATTEMPTED", "NOT_ATTEMPTED_MESSAGE", "NOT_CHECKED",
    "SOLUTIONS_ENV", "SYMBOLS", "Case", "Exercise", "Mistake", "ProgressTable", "Result", "Text",
    "callable_expected", "chapter_of", "chapter_progress", "clone", "compare_values", "describe_type",
    "find_solution", "fmt", "gradients", "progress", "short", "solution_dirs", "tolerance_for",
]
