"""How checks, hints and solutions look: coloured HTML in Jupyter, Jupyter Book and Colab, plain text
elsewhere.

A check result shows itself the moment it is made, so `ex.check(f)` shows its verdict wherever it
stands in a cell; when it is also the cell's last line, Jupyter's own display of the returned value
is skipped, so the verdict never appears twice.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from typing import Any

NOT_ATTEMPTED = "not attempted"
CORRECT = "correct"
INCORRECT = "incorrect"
ERROR = "error"  # the check itself broke: a bug in the book, not in the learner's code
NOT_CHECKED = "not checked yet"

COLOURS = {
    CORRECT: "#1a7f37",
    INCORRECT: "#c62828",
    NOT_ATTEMPTED: "#9a6700",
    ERROR: "#6f42c1",
    NOT_CHECKED: "#6e7781",
}
SYMBOLS = {CORRECT: "\u2714", INCORRECT: "\u2718", NOT_ATTEMPTED: "\u2026", ERROR: "!", NOT_CHECKED: "\u00b7"}


def _shell() -> Any:
    """The running IPython shell, or None in plain Python."""
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - IPython is a dependency of the package
        return None
    return get_ipython()


@dataclass
class Result:
    """The outcome of `Exercise.check`: displays as coloured HTML in notebooks, plain text elsewhere."""

    key: str
    title: str
    status: str
    message: str
    _shown_in_cell: int | None = field(default=None, repr=False, compare=False)

    @property
    def correct(self) -> bool:
        """True when every case passed."""
        return self.status == CORRECT

    def __str__(self) -> str:
        head = f"[{self.status}] {self.key} {self.title}"
        if self.status == CORRECT:
            return f"{head} - {self.message}"
        if "\n" in self.message:
            return f"{head}\n{self.message}"
        return f"{head}: {self.message}"

    __repr__ = __str__

    def _repr_html_(self) -> str:
        colour = COLOURS.get(self.status, COLOURS[NOT_CHECKED])
        badge = (
            f'<span style="color:{colour};font-weight:bold">{SYMBOLS.get(self.status, "")} '
            f"{html.escape(self.status)}</span>"
        )
        head = f"{badge} &nbsp;<b>{html.escape(self.key)}</b> {html.escape(self.title)}"
        if "\n" in self.message:
            body = (
                '<pre style="margin:4px 0 0 0;padding:0;background:none;border:none;'
                f'white-space:pre-wrap;font-size:0.9em">{html.escape(self.message)}</pre>'
            )
        else:
            body = f" &mdash; {html.escape(self.message)}"
        return (
            f'<div style="border-left:4px solid {colour};padding:4px 10px;margin:4px 0">'
            f"{head}{body}</div>"
        )

    def show(self) -> None:
        """Display now, in a notebook (in plain Python, nothing: the caller prints or uses the value)."""
        shell = _shell()
        if shell is None:
            return
        from IPython.display import display

        display({"text/plain": str(self), "text/html": self._repr_html_()}, raw=True)
        self._shown_in_cell = getattr(shell, "execution_count", None)

    def _ipython_display_(self) -> None:
        shell = _shell()
        if shell is not None and self._shown_in_cell == getattr(shell, "execution_count", -1):
            return  # already shown by check() in this very cell
        self.show()


class Text:
    """A displayable block of text (hints, solutions, notices): HTML in notebooks, plain elsewhere."""

    def __init__(self, text: str, html_text: str | None = None) -> None:
        self.text = text
        self.html_text = html_text

    def __str__(self) -> str:
        return self.text

    __repr__ = __str__

    def _repr_html_(self) -> str:
        if self.html_text is not None:
            return self.html_text
        return f'<pre style="white-space:pre-wrap">{html.escape(self.text)}</pre>'


def highlight_code(source: str) -> str:
    """Python source as syntax-highlighted HTML (plain <pre> without pygments)."""
    try:
        from pygments import highlight
        from pygments.formatters import HtmlFormatter
        from pygments.lexers import PythonLexer
    except ImportError:
        return f"<pre>{html.escape(source)}</pre>"
    return highlight(source, PythonLexer(), HtmlFormatter(noclasses=True, nobackground=True))


def inline_code_html(text: str) -> str:
    """Escape `text` for HTML, turning `backticked` spans into <code>."""
    escaped = html.escape(text)
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", escaped)
