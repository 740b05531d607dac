"""The book's self-grading exercises: checks that explain, hints as a ladder, solutions on demand.

A chapter module (``utils/exercises/ch01.py``) declares its exercises once::

    cosine_similarity = Exercise(
        key="1.1", title="Cosine similarity between two batches of vectors",
        cases=lambda: [Case(inputs=(a, b), expected=reference(a, b), label="3 images vs 2 captions")],
        hints=["Normalise each row first.", "x / x.norm(dim=-1, keepdim=True)"],
        mistakes=[Mistake("forgot to normalise", "Divide each vector by its L2 norm first.",
                          simulate=lambda a, b: a @ b.T)],
    )
    progress = chapter_progress(1)

and a lesson uses it: ``ch01.cosine_similarity.check(my_function)``, ``.hint()``, ``.hint(2)``,
``.solution()``, ``ch01.progress()``. Each of these returns an object that Jupyter, Jupyter Book
and Colab display (coloured HTML, plain text elsewhere); make the call the last line of the cell,
or pass it to ``display()``. Nothing here raises because of what a learner wrote, and every
message is deterministic (no timings, no memory addresses), so stored outputs stay stable.
"""

from __future__ import annotations

import contextlib
import copy
import html
import importlib
import inspect
import json
import math
import os
import re
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from utils.runtime import isolated_seed

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

SOLUTIONS_ENV = "MMBOOK_SOLUTIONS_DIR"
SMALL_TENSOR = 16  # tensors with at most this many elements are shown value by value in messages
PACKAGE_DIR = Path(__file__).resolve().parents[1]

# The registry of this session: every Exercise created, and the latest status of each key.
_EXERCISES: dict[str, Exercise] = {}
_STATUS: dict[str, str] = {}


# ----------------------------------------------------------------------------------------------
# Declaring exercises
# ----------------------------------------------------------------------------------------------


@dataclass
class Case:
    """One test case: call the answer with `inputs` (and `kwargs`), compare with `expected`.

    `expected` is either the right output, or a property check ``expected(output) -> str | None``
    that returns an error message (or None when the output is acceptable), for exercises with
    more than one right answer. `label` says in words what the case is; it is shown on failure.
    """

    inputs: tuple
    expected: Any
    label: str
    kwargs: dict = field(default_factory=dict)


@dataclass
class Mistake:
    """A common wrong answer: `simulate` has the answer's signature and reproduces the mistake.

    When a learner's output equals the simulated output, the check names the mistake and explains it.
    """

    name: str
    explanation: str
    simulate: Callable[..., Any]


@dataclass
class Result:
    """The outcome of `Exercise.check`: displays as coloured HTML in notebooks, plain text elsewhere."""

    key: str
    title: str
    status: str
    message: str

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


class _Text:
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


class Exercise:
    """One self-graded exercise of a chapter; see the module docstring for how chapters use it.

    `cases` is a list of `Case`, or (better: nothing is built at import) a function returning one.
    `compare(expected, got) -> str | None` replaces the default comparison (None means equal).
    """

    def __init__(
        self,
        key: str,
        title: str,
        cases: Callable[[], Sequence[Case]] | Sequence[Case],
        hints: Sequence[str],
        mistakes: Sequence[Mistake] = (),
        atol: float = 1e-6,
        rtol: float = 1e-5,
        compare: Callable[[Any, Any], str | None] | None = None,
    ) -> None:
        self.key = key
        self.title = title
        self.cases = cases
        self.hints = list(hints)
        self.mistakes = list(mistakes)
        self.atol = atol
        self.rtol = rtol
        self.compare = compare
        _EXERCISES[key] = self

    def __repr__(self) -> str:
        return f"Exercise {self.key}: {self.title} (.check(your_function), .hint(), .solution())"

    @property
    def chapter(self) -> int:
        """The chapter number, read from the key ("3.2" -> 3)."""
        return chapter_of(self.key)

    @property
    def status(self) -> str:
        """The latest status of this exercise in this session."""
        return _STATUS.get(self.key, NOT_CHECKED)

    @property
    def passed(self) -> bool:
        """True once this exercise's latest check in this session was correct."""
        return self.status == CORRECT

    # -- checking ------------------------------------------------------------------------------

    def check(self, answer: Any) -> Result:
        """Run the learner's `answer` on every case and explain the first failure. Never raises.

        `answer` is the learner's function (for a quiz, a function of no arguments). None or
        ``...`` and a function raising NotImplementedError count as "not attempted".
        """
        try:
            result = self._grade(answer)
        except Exception as error:  # last line of defence: a check must never stop a lesson
            result = self._result(ERROR, _broken_check_message(error))
        _STATUS[self.key] = result.status
        return result

    def _result(self, status: str, message: str) -> Result:
        return Result(self.key, self.title, status, message)

    def _grade(self, answer: Any) -> Result:
        if answer is None or answer is Ellipsis:
            return self._result(NOT_ATTEMPTED, _NOT_ATTEMPTED_MESSAGE)
        try:
            cases = list(self.cases() if callable(self.cases) else self.cases)
        except Exception as error:  # a bug in the book's exercise, not the learner's
            return self._result(ERROR, _broken_check_message(error))
        if not callable(answer):
            if any(case.inputs or case.kwargs for case in cases):
                return self._result(INCORRECT, _not_callable_message(answer))
            value = answer
            answer = lambda: value  # noqa: E731 - a quiz answered with a value rather than a function
        for number, case in enumerate(cases, start=1):
            failure = self._run_case(answer, case, number, len(cases))
            if failure is not None:
                return failure
        count = len(cases)
        return self._result(CORRECT, "1 case passes" if count == 1 else f"all {count} cases pass")

    def _run_case(self, answer: Callable, case: Case, number: int, count: int) -> Result | None:
        where = f'case "{case.label}" ({number} of {count})'
        try:
            with isolated_seed(0):
                got = answer(*_clone(case.inputs), **_clone(case.kwargs))
        except NotImplementedError as error:
            if number == 1:
                return self._result(NOT_ATTEMPTED, _NOT_ATTEMPTED_MESSAGE)
            lines = [where, _inputs_block(answer, case), f"  your function raised {_exception_line(error)}"]
            lines.append("  Earlier cases passed: one path of your code is still unfinished.")
            return self._result(INCORRECT, "\n".join(lines))
        except (Exception, SystemExit) as error:
            return self._result(INCORRECT, self._exception_message(answer, case, where, error))
        if _unanswered(got):
            return self._result(NOT_ATTEMPTED, _NOT_ATTEMPTED_MESSAGE)
        problem = self._compare_case(case, got)
        if not problem:
            return None
        lines = [where, _inputs_block(answer, case)]
        if not callable_expected(case.expected):
            lines.append(_labelled("expected", _short(case.expected)))
        lines.append(_labelled("got", _short(got)))
        lines.append(_indent(problem, "  "))
        mistake = self._matching_mistake(case, got)
        if mistake is not None:
            lines.append(f"  This looks like a common mistake: {mistake.name}. {mistake.explanation}")
        if self.hints:
            lines.append("  Stuck? .hint() gives a first hint.")
        return self._result(INCORRECT, "\n".join(line for line in lines if line))

    def _compare_case(self, case: Case, got: Any) -> str | None:
        try:
            if callable_expected(case.expected):
                problem = case.expected(got)
            else:
                problem = self._compare(case.expected, got)
            return None if problem is None else str(problem)
        except Exception as error:
            return f"your output could not be checked ({_exception_line(error)})."

    def _compare(self, expected: Any, got: Any) -> str | None:
        if self.compare is not None:
            return self.compare(expected, got)
        return compare_values(expected, got, atol=self.atol, rtol=self.rtol)

    def _matching_mistake(self, case: Case, got: Any) -> Mistake | None:
        for mistake in self.mistakes:
            try:
                with isolated_seed(0):
                    simulated = mistake.simulate(*_clone(case.inputs), **_clone(case.kwargs))
                if self._compare(simulated, got) is None:
                    return mistake
            except Exception:
                continue
        return None

    def _exception_message(self, answer: Callable, case: Case, where: str, error: BaseException) -> str:
        lines = [where, _inputs_block(answer, case), f"  your function raised {_exception_line(error)}"]
        location = _learner_line(error)
        if location:
            lines.append(f"  at {location}")
        return "\n".join(line for line in lines if line)

    # -- hints and solutions -------------------------------------------------------------------

    def hint(self, level: int = 1) -> _Text:
        """Hints 1..`level` of the ladder (a level past the last shows all and points to solution())."""
        total = len(self.hints)
        if total == 0:
            return _Text(f"{self.key}: no hints for this exercise; .solution() shows the reference code.")
        shown = max(1, min(int(level), total))
        if shown < total:
            footer = f"hint {shown} of {total}; .hint({shown + 1}) for more."
        else:
            last = "that was the only hint" if total == 1 else f"that was the last of {total} hints"
            footer = f"{last}; .solution() shows the reference code."
        plain = [f"{self.key} {self.title}"]
        plain += [f"  Hint {i} of {total}: {text}" for i, text in enumerate(self.hints[:shown], start=1)]
        plain.append(f"  ({footer})")
        items = "".join(
            f"<li>{_inline_code_html(text)}</li>" for text in self.hints[:shown]
        )
        rich = (
            f'<div style="border-left:4px solid #0969da;padding:4px 10px;margin:4px 0">'
            f"<b>Hint</b> for <b>{html.escape(self.key)}</b> {html.escape(self.title)}"
            f'<ol style="margin:4px 0">{items}</ol><i>{html.escape(footer)}</i></div>'
        )
        return _Text("\n".join(plain), rich)

    def solution(self) -> _Text:
        """The reference solution, read from the chapter's solutions notebook, shown as code."""
        found = find_solution(self.key)
        if isinstance(found, str):
            return _Text(found)
        notebook, source = found
        header = f"Reference solution for {self.key} {self.title} (from {notebook.name}):"
        return _Text(f"{header}\n\n{source}", f"<p><b>{html.escape(header)}</b></p>{_highlight(source)}")


_NOT_ATTEMPTED_MESSAGE = "replace the NotImplementedError with your code, then run this cell again."


def callable_expected(expected: Any) -> bool:
    """Whether a case's `expected` is a property check (a function) rather than a value."""
    return callable(expected) and not isinstance(expected, (torch.Tensor, np.ndarray, type, torch.nn.Module))


def chapter_of(key: str) -> int:
    """The chapter number of an exercise key: "3.2" -> 3."""
    try:
        return int(str(key).split(".")[0])
    except ValueError:
        return 0


# ----------------------------------------------------------------------------------------------
# Comparing outputs
# ----------------------------------------------------------------------------------------------


def compare_values(
    expected: Any, got: Any, atol: float = 1e-6, rtol: float = 1e-5, where: str = ""
) -> str | None:
    """Compare a learner's output with the expected one: type, then shape, then values.

    Returns None when they agree (within `atol` + `rtol` * |expected| for numbers), otherwise a
    message in words. Scalars may be int, float, NumPy or 0-d tensors; arrays may be torch or NumPy.
    """
    at = f" at output{where}" if where else ""
    if _is_array(expected) and _ndim(expected) > 0:
        return _compare_arrays(expected, got, atol, rtol, at)
    if isinstance(expected, (bool, np.bool_)) or (_is_array(expected) and _is_bool_dtype(expected)):
        if not _is_scalar(got) or not _is_boolish(got):
            return f"wrong type{at}: expected True or False, got {_describe_type(got)}."
        if bool(_scalar(got)) != bool(_scalar(expected)):
            return f"wrong value{at}: expected {bool(_scalar(expected))}, got {bool(_scalar(got))}."
        return None
    if _is_scalar(expected):
        return _compare_scalars(expected, got, atol, rtol, at)
    if isinstance(expected, str):
        if not isinstance(got, str):
            return f"wrong type{at}: expected a string, got {_describe_type(got)}."
        if got == expected:
            return None
        if got.strip().lower() == expected.strip().lower():
            return f"wrong value{at}: expected {expected!r}, got {got!r} (only case or spaces differ)."
        return f"wrong value{at}: expected {_short(expected)}, got {_short(got)}."
    if isinstance(expected, Mapping):
        return _compare_dicts(expected, got, atol, rtol, where)
    if isinstance(expected, (list, tuple)):
        return _compare_sequences(expected, got, atol, rtol, where)
    if expected is None:
        return None if got is None else f"expected None{at}, got {_describe_type(got)}."
    try:
        equal = bool(expected == got)
    except Exception:
        equal = False
    return None if equal else f"wrong value{at}: expected {_short(expected)}, got {_short(got)}."


_NON_FINITE_ADVICE = " - look for a division by zero, a log of 0 or an overflow"


def _compare_scalars(expected: Any, got: Any, atol: float, rtol: float, at: str) -> str | None:
    if _is_array(got) and _ndim(got) > 0:
        shape = tuple(got.shape)
        extra = " - use .item() to get the number" if _numel(got) == 1 else ""
        return f"wrong type{at}: expected a single number, got {_describe_type(got)} of shape {shape}{extra}."
    if not _is_scalar(got):
        return f"wrong type{at}: expected a number, got {_describe_type(got)}."
    want, have = float(_scalar(expected)), float(_scalar(got))
    if math.isnan(want) and math.isnan(have):
        return None
    if math.isnan(have) or (math.isinf(have) and not math.isinf(want)):
        return f"wrong value{at}: expected {_fmt(want)}, got {_fmt(have)}{_NON_FINITE_ADVICE}."
    if want == have or abs(want - have) <= atol + rtol * abs(want):
        return None
    return f"wrong value{at}: expected {_fmt(want)}, got {_fmt(have)} (difference {_fmt(abs(want - have))})."


def _compare_arrays(expected: Any, got: Any, atol: float, rtol: float, at: str) -> str | None:
    kind = "tensor" if isinstance(expected, torch.Tensor) else "array"
    if not _is_array(got):
        return (
            f"wrong type{at}: expected a {kind} of shape {tuple(expected.shape)}, got {_describe_type(got)}."
        )
    want_shape, got_shape = tuple(expected.shape), tuple(got.shape)
    if want_shape != got_shape:
        advice = _shape_advice(want_shape, got_shape)
        return f"wrong shape{at}: expected {want_shape}, got {got_shape}{advice}."
    want, have = _to_numpy(expected), _to_numpy(got)
    if want.size == 0:
        return None
    if have.dtype.kind in "c" or want.dtype.kind in "c":
        want, have = want.astype(complex), have.astype(complex)
    else:
        want, have = want.astype(np.float64), have.astype(np.float64)
    bad_values = ~np.isfinite(have) & np.isfinite(want)
    if bad_values.any():
        index = _index(np.argwhere(bad_values)[0])
        word = "nan" if np.isnan(have[index]) else "inf"
        return (
            f"wrong values{at}: your output contains {word} ({int(bad_values.sum())} of {have.size} "
            f"elements, the first at index {index}){_NON_FINITE_ADVICE}."
        )
    close = np.isclose(have, want, atol=atol, rtol=rtol, equal_nan=True)
    if close.all():
        return None
    diff = np.where(close, 0.0, np.abs(have - want))
    diff = np.nan_to_num(diff, nan=np.inf)
    first = _index(np.argwhere(~close)[0])
    worst = _index(np.unravel_index(int(np.argmax(diff)), diff.shape))
    return (
        f"wrong values{at}: {int((~close).sum())} of {have.size} elements differ "
        f"(tolerance atol={atol:g}, rtol={rtol:g}).\n"
        f"The first differs at index {first}: expected {_fmt(want[first])}, got {_fmt(have[first])}.\n"
        f"Max abs difference {_fmt(float(diff[worst]))}, at index {worst}."
    )


def _compare_dicts(expected: Mapping, got: Any, atol: float, rtol: float, where: str) -> str | None:
    at = f" at output{where}" if where else ""
    if not isinstance(got, Mapping):
        return f"wrong type{at}: expected a dict with keys {_keys(expected)}, got {_describe_type(got)}."
    missing = [k for k in expected if k not in got]
    extra = [k for k in got if k not in expected]
    if missing:
        return f"missing keys{at}: {_keys(missing)} (expected keys {_keys(expected)})."
    if extra:
        return f"unexpected keys{at}: {_keys(extra)} (expected keys {_keys(expected)})."
    for key in expected:
        problem = compare_values(expected[key], got[key], atol, rtol, f"{where}[{key!r}]")
        if problem:
            return problem
    return None


def _compare_sequences(expected: Sequence, got: Any, atol: float, rtol: float, where: str) -> str | None:
    at = f" at output{where}" if where else ""
    kind = type(expected).__name__
    if not isinstance(got, (list, tuple)):
        return f"wrong type{at}: expected a {kind} of {len(expected)} items, got {_describe_type(got)}."
    if len(got) != len(expected):
        return f"wrong length{at}: expected {len(expected)} items, got {len(got)}."
    for i, (want, have) in enumerate(zip(expected, got, strict=True)):
        problem = compare_values(want, have, atol, rtol, f"{where}[{i}]")
        if problem:
            return problem
    return None


def _shape_advice(want: tuple, got: tuple) -> str:
    if len(want) == len(got) and tuple(reversed(got)) == want:
        return " (the axes look swapped)"
    if math.prod(want) == math.prod(got):
        squeezed_want = tuple(d for d in want if d != 1)
        squeezed_got = tuple(d for d in got if d != 1)
        if squeezed_want == squeezed_got:
            return " (an axis of size 1 too many or too few: keepdim, squeeze or unsqueeze?)"
        return " (same number of elements, arranged differently)"
    if len(got) == len(want) - 1:
        return " (one axis too few: did you reduce over an axis you should keep?)"
    return ""


# ----------------------------------------------------------------------------------------------
# Describing values in words, deterministically
# ----------------------------------------------------------------------------------------------


def _is_array(x: Any) -> bool:
    return isinstance(x, (torch.Tensor, np.ndarray))


def _ndim(x: Any) -> int:
    return x.dim() if isinstance(x, torch.Tensor) else x.ndim


def _numel(x: Any) -> int:
    return x.numel() if isinstance(x, torch.Tensor) else x.size


def _is_bool_dtype(x: Any) -> bool:
    return x.dtype == torch.bool if isinstance(x, torch.Tensor) else x.dtype == np.bool_


def _is_scalar(x: Any) -> bool:
    if isinstance(x, (bool, int, float, np.number, np.bool_)):
        return True
    return _is_array(x) and _ndim(x) == 0


def _is_boolish(x: Any) -> bool:
    return isinstance(x, (bool, np.bool_)) or (_is_array(x) and _is_bool_dtype(x))


def _scalar(x: Any) -> Any:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().item()
    if isinstance(x, np.ndarray):
        return x.item()
    return x


def _to_numpy(x: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
        if x.dtype in (torch.bfloat16, torch.float16):
            x = x.float()
        return x.numpy()
    return np.asarray(x)


def _index(index: Any) -> tuple[int, ...]:
    return tuple(int(i) for i in index)


def _fmt(x: Any) -> str:
    if isinstance(x, (complex, np.complexfloating)):
        return f"{complex(x):.4g}"
    value = float(x)
    if math.isfinite(value) and value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.4g}"


def _keys(keys: Any) -> str:
    return "[" + ", ".join(repr(k) for k in keys) + "]"


def _describe_type(x: Any) -> str:
    if x is None:
        return "None (did you forget to return?)"
    if x is Ellipsis:
        return "... (not answered yet)"
    if isinstance(x, torch.Tensor):
        return f"a tensor of shape {tuple(x.shape)}"
    if isinstance(x, np.ndarray):
        return f"a NumPy array of shape {x.shape}"
    if isinstance(x, (bool, np.bool_)):
        return f"a bool ({bool(x)})"
    if isinstance(x, (int, float, np.number)):
        return f"a number ({_fmt(x)})"
    if isinstance(x, str):
        return f"a string ({_short(x)})"
    if isinstance(x, (list, tuple, dict)):
        return f"a {type(x).__name__} of {len(x)} items"
    return f"a {type(x).__name__}"


def _short(x: Any, depth: int = 0) -> str:
    """A short, deterministic description of a value for messages."""
    if x is Ellipsis:
        return "... (not answered yet)"
    if isinstance(x, torch.Tensor):
        dtype = str(x.dtype).replace("torch.", "")
        return _array_text(f"tensor of shape {tuple(x.shape)}, {dtype}", x)
    if isinstance(x, np.ndarray):
        return _array_text(f"array of shape {x.shape}, {x.dtype}", x)
    if isinstance(x, (bool, np.bool_)):
        return str(bool(x))
    if isinstance(x, (int, float, np.number)):
        return _fmt(x)
    if isinstance(x, str):
        return repr(x) if len(x) <= 60 else repr(x[:57]) + "..."
    if isinstance(x, Mapping):
        if depth > 1:
            return f"dict of {len(x)} items"
        items = [f"{k!r}: {_short(v, depth + 1)}" for k, v in list(x.items())[:6]]
        return "{" + ", ".join(items) + (", ..." if len(x) > 6 else "") + "}"
    if isinstance(x, (list, tuple)):
        if depth > 1 or len(x) > 8:
            inner = ", ".join(_short(v, 2) for v in list(x)[:3])
            return f"{type(x).__name__} of {len(x)} items [{inner}, ...]" if len(x) > 3 else f"[{inner}]"
        inner = ", ".join(_short(v, depth + 1) for v in x)
        return f"({inner}{',' if len(x) == 1 else ''})" if isinstance(x, tuple) else f"[{inner}]"
    if isinstance(x, torch.nn.Module):
        count = sum(p.numel() for p in x.parameters())
        return f"{type(x).__name__} module ({count:,} parameters)"
    if callable(x):
        return f"function {getattr(x, '__name__', type(x).__name__)}"
    try:
        text = repr(x)
    except Exception:
        text = f"a {type(x).__name__}"
    return re.sub(r" at 0x[0-9a-fA-F]+", "", text)[:80]


def _array_text(head: str, x: Any) -> str:
    values = _to_numpy(x)
    if values.size == 0:
        return head
    if values.size <= SMALL_TENSOR:
        text = np.array2string(values, precision=4, separator=", ", suppress_small=True, max_line_width=90)
        return f"{head}\n{text}" if "\n" in text else f"{head}: {text}"
    if values.dtype.kind in "biuf":
        finite = values[np.isfinite(values)] if values.dtype.kind == "f" else values
        if finite.size:
            low, high = _fmt(finite.min()), _fmt(finite.max())
            return f"{head}, values from {low} to {high}"
    return head


def _labelled(label: str, text: str) -> str:
    prefix = f"  {label + ':':<10}"
    return _indent(text, " " * len(prefix), first=prefix)


def _indent(text: str, pad: str, first: str | None = None) -> str:
    lines = text.splitlines() or [""]
    head = (pad if first is None else first) + lines[0]
    return "\n".join([head] + [pad + line for line in lines[1:]])


def _inputs_block(answer: Callable, case: Case) -> str:
    if not case.inputs and not case.kwargs:
        return ""
    names = _argument_names(answer, case)
    parts = [f"{name} = {_short(value)}" for name, value in names]
    lines = [_labelled("input" if len(parts) == 1 else "inputs", parts[0])]
    pad = " " * 12
    lines += [_indent(part, pad) for part in parts[1:]]
    return "\n".join(lines)


def _argument_names(answer: Callable, case: Case) -> list[tuple[str, Any]]:
    """(name, value) of each input, named after the learner's parameters where they bind."""
    try:
        signature = inspect.signature(answer)
        bound = signature.bind(*case.inputs, **case.kwargs)
    except (TypeError, ValueError):
        numbered = [(f"input {i}", v) for i, v in enumerate(case.inputs, start=1)]
        return numbered + list(case.kwargs.items())
    pairs: list[tuple[str, Any]] = []
    for name, value in bound.arguments.items():
        kind = signature.parameters[name].kind
        if kind is inspect.Parameter.VAR_POSITIONAL:
            pairs += [(f"{name}[{i}]", v) for i, v in enumerate(value)]
        elif kind is inspect.Parameter.VAR_KEYWORD:
            pairs += list(value.items())
        else:
            pairs.append((name, value))
    return pairs


def _exception_line(error: BaseException) -> str:
    message = str(error).strip().splitlines()[0] if str(error).strip() else ""
    message = re.sub(r" at 0x[0-9a-fA-F]+", "", message)
    if len(message) > 200:
        message = message[:197] + "..."
    return f"{type(error).__name__}: {message}" if message else type(error).__name__


def _learner_line(error: BaseException) -> str:
    """'line 3: `return a @ b`' for the deepest frame of the learner's own code, or ''."""
    library_roots = (str(PACKAGE_DIR), "site-packages", "dist-packages", os.path.dirname(os.__file__))
    frames = [
        frame for frame in traceback.extract_tb(error.__traceback__)
        if not any(root in frame.filename for root in library_roots)
    ]
    if not frames:
        return ""
    frame = frames[-1]
    code = (frame.line or "").strip()
    return f"line {frame.lineno} of your code: {code}" if code else f"line {frame.lineno} of your code"


def _broken_check_message(error: BaseException) -> str:
    return f"the check itself failed ({_exception_line(error)}); please report it."


def _not_callable_message(answer: Any) -> str:
    return (
        f"check() takes your function itself, but got {_describe_type(answer)}.\n"
        "Write .check(my_function) - the name, without calling it."
    )


def _unanswered(got: Any) -> bool:
    if got is Ellipsis:
        return True
    return isinstance(got, Mapping) and len(got) > 0 and all(v is Ellipsis for v in got.values())


def _clone(value: Any) -> Any:
    """A copy the learner may change freely: tensors are detached clones, the rest deep copies."""
    if isinstance(value, torch.Tensor):
        copied = value.detach().clone()
        return copied.requires_grad_(True) if value.requires_grad and copied.is_floating_point() else copied
    if isinstance(value, tuple):
        return tuple(_clone(v) for v in value)
    if isinstance(value, list):
        return [_clone(v) for v in value]
    if isinstance(value, dict):
        return {k: _clone(v) for k, v in value.items()}
    try:
        return copy.deepcopy(value)
    except Exception:
        return value


# ----------------------------------------------------------------------------------------------
# Solutions
# ----------------------------------------------------------------------------------------------


def solution_dirs() -> list[Path]:
    """Where solutions notebooks are looked for, in order."""
    dirs = []
    if os.environ.get(SOLUTIONS_ENV):
        dirs.append(Path(os.environ[SOLUTIONS_ENV]).expanduser())
    dirs.append(PACKAGE_DIR.parent / "solutions")  # a local checkout or an editable install
    dirs.append(PACKAGE_DIR / "_solutions")  # the copy packed into the wheel (Colab)
    return dirs


_SOLUTION_HEADER = re.compile(r"^#\s*Solution\s+([0-9A-Za-z.\-_]+?)[:.]?(\s|$)")


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


def _highlight(source: str) -> str:
    try:
        from pygments import highlight
        from pygments.formatters import HtmlFormatter
        from pygments.lexers import PythonLexer
    except ImportError:
        return f"<pre>{html.escape(source)}</pre>"
    return highlight(source, PythonLexer(), HtmlFormatter(noclasses=True, nobackground=True))


def _inline_code_html(text: str) -> str:
    escaped = html.escape(text)
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", escaped)


# ----------------------------------------------------------------------------------------------
# Progress
# ----------------------------------------------------------------------------------------------


class ProgressTable:
    """This session's status of each exercise: an HTML table in notebooks, aligned text elsewhere.

    The table is live: it reads the statuses each time it is shown. Calling it returns itself, so
    a chapter module may write either ``progress = chapter_progress(1)`` or ``def progress(): ...``.
    """

    def __init__(self, chapter: int | None = None) -> None:
        self.chapter = chapter

    def __call__(self) -> ProgressTable:
        return self

    @property
    def rows(self) -> list[tuple[str, str, str]]:
        """(key, title, status) of each exercise, in key order (1.2 before 1.10)."""
        chapter = self.chapter
        if chapter is not None and not any(e.chapter == chapter for e in _EXERCISES.values()):
            with contextlib.suppress(Exception):  # load the chapter's exercises if nobody has yet
                importlib.import_module(f"utils.exercises.ch{int(chapter):02d}")
        chosen = [e for e in _EXERCISES.values() if chapter is None or e.chapter == chapter]
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
    """The progress table of one chapter, for its module to expose as ``progress``.

    Works both as ``progress = chapter_progress(1)`` and as ``def progress(): return chapter_progress(1)``;
    either way ``ch01.progress()`` shows the current statuses.
    """
    return ProgressTable(chapter)
