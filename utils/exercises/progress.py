"""This session's record of the exercises: which exist, and the latest status of each.

Every `Exercise` registers itself here when its chapter module is imported; `check` records the
verdict. A chapter module exposes its table in one form::

    def progress() -> ProgressTable:
        return chapter_progress(3)

and a lesson shows it with ``ch03.progress()``.
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING

from utils.exercises.display import COLOURS, CORRECT, ERROR, INCORRECT, NOT_ATTEMPTED, NOT_CHECKED, SYMBOLS
from utils.exercises.solutions import chapter_of

if TYPE_CHECKING:
    from utils.exercises.declare import Exercise

# Every Exercise created in this session, by key, and the latest status of each key.
EXERCISES: dict[str, Exercise] = {}
STATUS: dict[str, str] = {}


def register(exercise: Exercise) -> None:
    """Called by `Exercise.__init__`: a key declared twice is a bug in the book, not silently replaced."""
    known = EXERCISES.get(exercise.key)
    if known is not None and known.title != exercise.title:
        raise ValueError(f"exercise key {exercise.key} is declared twice: {known.title!r} and {exercise.title!r}")
    EXERCISES[exercise.key] = exercise


def record(key: str, status: str) -> None:
    STATUS[key] = status


def status_of(key: str) -> str:
    return STATUS.get(key, NOT_CHECKED)


class ProgressTable:
    """This session's status of each exercise: an HTML table in notebooks, aligned text elsewhere.

    The table is live: it reads the statuses each time it is shown.
    """

    def __init__(self, chapter: int | None = None) -> None:
        self.chapter = chapter

    @property
    def rows(self) -> list[tuple[str, str, str]]:
        """(key, title, status) of each exercise, in key order (1.2 before 1.10)."""
        chapter = self.chapter
        if chapter is not None and not any(chapter_of(key) == chapter for key in EXERCISES):
            from utils.exercises import CHAPTERS, load_chapter

            if chapter in CHAPTERS:  # load the chapter's exercises if nobody has yet; errors are real
                load_chapter(chapter)
        chosen = [e for e in EXERCISES.values() if chapter is None or e.chapter == chapter]
        return [(e.key, e.title, e.status) for e in sorted(chosen, key=lambda e: _key_order(e.key))]

    @property
    def summary(self) -> str:
        """The count line, e.g. 'Chapter 1: 3 of 5 correct (1 incorrect, 1 not checked yet)'."""
        return self._summary(self.rows)

    def _summary(self, rows: list[tuple[str, str, str]]) -> str:
        scope = f"Chapter {self.chapter}" if self.chapter is not None else "All chapters"
        if not rows:
            return f"{scope}: no exercises loaded."
        counts: dict[str, int] = {}
        for _, _, status in rows:
            counts[status] = counts.get(status, 0) + 1
        others = [f"{counts[s]} {s}" for s in (INCORRECT, NOT_ATTEMPTED, ERROR, NOT_CHECKED) if counts.get(s)]
        tail = f" ({', '.join(others)})" if others else ""
        return f"{scope}: {counts.get(CORRECT, 0)} of {len(rows)} correct{tail}"

    def __str__(self) -> str:
        rows = self.rows
        if not rows:
            return self._summary(rows)
        key_width = max(3, *(len(k) for k, _, _ in rows))
        title_width = min(60, max(5, *(len(t) for _, t, _ in rows)))
        lines = [self._summary(rows), f"{'key':<{key_width}}  {'title':<{title_width}}  status"]
        for key, title, status in rows:
            short = title if len(title) <= title_width else title[: title_width - 3] + "..."
            lines.append(f"{key:<{key_width}}  {short:<{title_width}}  {SYMBOLS.get(status, '')} {status}")
        return "\n".join(lines)

    __repr__ = __str__

    def _repr_html_(self) -> str:
        rows = self.rows
        cells = []
        for key, title, status in rows:
            colour = COLOURS.get(status, COLOURS[NOT_CHECKED])
            cells.append(
                f"<tr><td>{html.escape(key)}</td><td style='text-align:left'>{html.escape(title)}</td>"
                f"<td style='color:{colour};font-weight:bold;text-align:left'>"
                f"{SYMBOLS.get(status, '')} {html.escape(status)}</td></tr>"
            )
        table = (
            "<table><thead><tr><th>key</th><th style='text-align:left'>title</th>"
            f"<th style='text-align:left'>status</th></tr></thead><tbody>{''.join(cells)}</tbody></table>"
            if cells else ""
        )
        return f"<div><p><b>{html.escape(self._summary(rows))}</b></p>{table}</div>"


def _key_order(key: str) -> tuple:
    return tuple((0, int(part), "") if part.isdigit() else (1, 0, part) for part in key.split("."))


def progress(chapter: int | None = None) -> ProgressTable:
    """A table of this session's latest status per exercise (one chapter, or all loaded ones)."""
    return ProgressTable(chapter)


def chapter_progress(chapter: int) -> ProgressTable:
    """The progress table of one chapter; a chapter module returns it from its ``progress()``."""
    return ProgressTable(chapter)
