"""Declaring an exercise and grading an answer: `Case`, `Mistake`, `Exercise`.

An exercise is a list of cases (inputs and the expected output, or a property the output must
have), a ladder of hints and a list of common mistakes. `check(answer)` runs the answer on every
case, each time on fresh copies of the inputs and with the random generators seeded, and explains
the first failure: which case, what was expected, what came back, and which common mistake it looks
like. With `gradient_reference`, an answer that is a loss must also have the right gradient with
respect to every floating-point tensor input, so that a `.detach()` on any input is caught.
"""

from __future__ import annotations

import contextlib
import copy
import importlib
import inspect
import io
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from utils.exercises import progress as registry
from utils.exercises.compare import compare_values, tolerance_for
from utils.exercises.describe import (
    describe_type,
    error_advice,
    indent,
    labelled,
    learner_line,
    short,
    short_pair,
)
from utils.exercises.display import CORRECT, ERROR, INCORRECT, NOT_ATTEMPTED, Result, Text, highlight_code
from utils.exercises.display import inline_code_html as _inline_code_html
from utils.exercises.solutions import chapter_of, find_solution
from utils.runtime import error_line, isolated_seed

NOT_ATTEMPTED_MESSAGE = "replace the NotImplementedError with your code, then run this cell again."


@dataclass
class Case:
    """One test case: call the answer with `inputs` (and `kwargs`), compare with `expected`.

    `expected` is either the right output, or a property check ``expected(output) -> str | None``
    that returns an error message (or None when the output is acceptable), for exercises with
    more than one right answer. `label` says in words what the case is; it is shown on failure.
    `gradient` turns the exercise's gradient check off (False) or on (True) for this case alone.
    """

    inputs: tuple
    expected: Any
    label: str
    kwargs: dict = field(default_factory=dict)
    gradient: bool | None = None


@dataclass
class Mistake:
    """A common wrong answer: `simulate` has the answer's signature and reproduces the mistake.

    The check names the mistake when the learner's output equals the simulated one on every case
    where both run, so that a coincidence on one case never blames the wrong slip.
    """

    name: str
    explanation: str
    simulate: Callable[..., Any]


class Exercise:
    """One self-graded exercise of a chapter.

    `cases` is a list of `Case`, or (better: nothing is built at import) a function returning one.
    `compare(expected, got) -> str | None` replaces the default comparison (None means equal).
    `gradient_reference`, an independent formula with the answer's signature, turns on the gradient
    check: on every case, autograd's gradient of the answer with respect to each floating-point
    tensor input must match the reference's (a non-scalar output is first reduced by a fixed random
    weighting, so every element counts).
    `forbidden` names functions the statement rules out (e.g. ``"torch.nn.functional.unfold"``):
    while the answer runs they raise an error that says so.
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
        gradient_reference: Callable[..., Any] | None = None,
        forbidden: Sequence[str] = (),
    ) -> None:
        self.key = key
        self.title = title
        self.cases = cases
        self.hints = list(hints)
        self.mistakes = list(mistakes)
        self.atol = atol
        self.rtol = rtol
        self.compare = compare
        self.gradient_reference = gradient_reference
        self.forbidden = tuple(forbidden)
        registry.register(self)

    def __repr__(self) -> str:
        return f"Exercise {self.key}: {self.title} (.check(your_function), .hint(), .solution())"

    @property
    def chapter(self) -> int:
        """The chapter number, read from the key ("3.2" -> 3)."""
        return chapter_of(self.key)

    @property
    def status(self) -> str:
        """The latest status of this exercise in this session."""
        return registry.status_of(self.key)

    @property
    def passed(self) -> bool:
        """True once this exercise's latest check in this session was correct."""
        return self.status == CORRECT

    def build_cases(self) -> list[Case]:
        """The cases, built fresh."""
        return list(self.cases() if callable(self.cases) else self.cases)

    # -- checking ------------------------------------------------------------------------------

    def check(self, answer: Any) -> Result:
        """Run the learner's `answer` on every case, explain the first failure, and show the verdict.

        `answer` is the learner's function (for a quiz, a function of no arguments). None or
        ``...`` and a function raising NotImplementedError count as "not attempted". Never raises
        because of what the learner wrote. In a notebook the verdict is displayed at once, wherever
        the call stands in the cell; the returned `Result` carries it for code.
        """
        try:
            result = self._grade(answer)
        except Exception as error:  # last line of defence: a check must never stop a lesson
            result = self._result(ERROR, _broken_check_message(error))
        registry.record(self.key, result.status)
        result.show()
        return result

    def _result(self, status: str, message: str) -> Result:
        return Result(self.key, self.title, status, message)

    def _grade(self, answer: Any) -> Result:
        if answer is None or answer is Ellipsis:
            return self._result(NOT_ATTEMPTED, NOT_ATTEMPTED_MESSAGE)
        try:
            cases = self.build_cases()
        except Exception as error:  # a bug in the book's exercise, not the learner's
            return self._result(ERROR, _broken_check_message(error))
        if not callable(answer):
            if any(case.inputs or case.kwargs for case in cases):
                return self._result(INCORRECT, _not_callable_message(answer))
            value = answer
            answer = lambda: value  # noqa: E731 - a quiz answered with a value rather than a function
        for number, case in enumerate(cases, start=1):
            failure = self._run_case(answer, cases, case, number)
            if failure is not None:
                return failure
        count = len(cases)
        return self._result(CORRECT, "1 case passes" if count == 1 else f"all {count} cases pass")

    def _run_case(self, answer: Callable, cases: list[Case], case: Case, number: int) -> Result | None:
        where = f'case "{case.label}" ({number} of {len(cases)})'
        inputs, kwargs = clone(case.inputs), clone(case.kwargs)
        try:
            with isolated_seed(0), self._rules():
                got = answer(*inputs, **kwargs)
        except KeyboardInterrupt:
            raise
        except NotImplementedError as error:
            if number == 1:
                return self._result(NOT_ATTEMPTED, NOT_ATTEMPTED_MESSAGE)
            lines = [where, _inputs_block(answer, case), f"  your function raised {error_line(error)}"]
            lines.append("  Earlier cases passed: one path of your code is still unfinished.")
            return self._result(INCORRECT, "\n".join(lines))
        except BaseException as error:  # SystemExit and the learner's own BaseException subclasses too
            return self._result(INCORRECT, self._exception_message(answer, case, where, error))
        if _unanswered(got):
            return self._result(NOT_ATTEMPTED, NOT_ATTEMPTED_MESSAGE)
        changed = _changed_inputs(answer, case, inputs, kwargs)
        problem = self._compare_case(case, got)
        if problem:
            lines = [where, _inputs_block(answer, case)]
            if callable_expected(case.expected):
                lines.append(labelled("got", short(got)))
            else:
                shown_expected, shown_got = short_pair(case.expected, got)
                lines += [labelled("expected", shown_expected), labelled("got", shown_got)]
            lines.append(indent(problem, "  "))
            if changed:
                lines.append(f"  Note: your function also changed its input {changed} in place.")
            mistake = self._matching_mistake(answer, cases, case, got)
            if mistake is not None:
                lines.append(f"  This looks like a common mistake: {mistake.name}. {mistake.explanation}")
            if self.hints:
                lines.append("  Stuck? .hint() gives a first hint.")
            return self._result(INCORRECT, "\n".join(line for line in lines if line))
        if changed:
            return self._result(INCORRECT, "\n".join(line for line in (
                where, _inputs_block(answer, case),
                f"  your output is right, but your function changed its input {changed} in place (a method "
                "ending in _ such as div_, or x /= ...). The caller's tensor changes too: write x = x / ... "
                "to make a new tensor instead.") if line))
        if self.gradient_reference is not None and case.gradient is not False:
            return self._check_gradient(answer, case, where)
        return None

    def _compare_case(self, case: Case, got: Any) -> str | None:
        try:
            if callable_expected(case.expected):
                problem = case.expected(got)
            else:
                problem = self._compare(case.expected, got)
            return None if problem is None else str(problem)
        except Exception as error:
            return f"your output could not be checked ({error_line(error)})."

    def _compare(self, expected: Any, got: Any, where: str = "") -> str | None:
        if self.compare is not None:
            return self.compare(expected, got)
        return compare_values(expected, got, atol=self.atol, rtol=self.rtol, where=where)

    def _matching_mistake(self, answer: Callable, cases: list[Case], failing: Case, got: Any) -> Mistake | None:
        """The first mistake whose simulation equals the learner's output on every case where both run."""
        candidates = [m for m in self.mistakes if self._same_as_mistake(m, failing, got)]
        if not candidates:
            return None
        outputs = []
        for case in cases:
            if case is failing:
                continue
            try:
                with isolated_seed(0), self._rules(), _quiet():
                    outputs.append((case, answer(*clone(case.inputs), **clone(case.kwargs))))
            except Exception:
                continue
        for mistake in candidates:
            if all(self._same_as_mistake(mistake, case, output) for case, output in outputs):
                return mistake
        return None

    @contextlib.contextmanager
    def _rules(self):
        """While the answer runs, the functions the statement forbids raise an error that says so."""
        saved = []
        try:
            for dotted in self.forbidden:
                owner_name, _, name = dotted.rpartition(".")
                try:
                    owner = _resolve(owner_name)
                    original = getattr(owner, name)
                except (ImportError, AttributeError):
                    continue  # not installed here (jiwer in Colab): the answer cannot call it anyway
                saved.append((owner, name, original))
                setattr(owner, name, _forbidden_call(self.key, dotted))
            yield
        finally:
            for owner, name, original in reversed(saved):
                setattr(owner, name, original)

    def _same_as_mistake(self, mistake: Mistake, case: Case, got: Any) -> bool:
        try:
            with isolated_seed(0):
                simulated = mistake.simulate(*clone(case.inputs), **clone(case.kwargs))
            return self._compare(simulated, got) is None
        except Exception:
            return False

    def _exception_message(self, answer: Callable, case: Case, where: str, error: BaseException) -> str:
        lines = [where, _inputs_block(answer, case), f"  your function raised {error_line(error)}"]
        location = learner_line(error)
        if location:
            lines.append(f"  at {location}")
        advice = error_advice(error)
        if advice:
            lines.append(f"  {advice}")
        return "\n".join(line for line in lines if line)

    # -- gradients -----------------------------------------------------------------------------

    def _check_gradient(self, answer: Callable, case: Case, where: str) -> Result | None:
        """Compare the answer's gradients with the reference's, for every floating-point tensor input."""
        names = [name for name, _ in _argument_names(answer, case)]
        expected_output, expected_grads = gradients(self.gradient_reference, case.inputs, case.kwargs)
        head = [where, _inputs_block(answer, case), "  your output has the right value, but"]
        try:
            with isolated_seed(0), self._rules(), _quiet():
                got_output, got_grads = gradients(answer, case.inputs, case.kwargs, like=expected_output)
        except KeyboardInterrupt:
            raise
        except BaseException as error:
            advice = error_advice(error) or (
                "Autograd could not differentiate your result: keep every step a torch operation "
                "(no .item(), float(), NumPy or torch.tensor(...) of a result)."
            )
            lines = head + [f"  differentiating it raised {error_line(error)}", f"  {advice}"]
            return self._result(INCORRECT, "\n".join(line for line in lines if line))
        for position, expected in expected_grads.items():
            name = names[position] if isinstance(position, int) and position < len(names) else str(position)
            got = got_grads.get(position)
            if expected is None:  # the reference sends no gradient to this input: neither may the answer
                if got is not None and bool(got.detach().abs().max() > 0):
                    lines = head + [
                        f"  it sends a gradient to the input {name}, and the reference formula sends none:",
                        f"  nothing of {name} should reach the output through autograd (detach it where it enters).",
                    ]
                    return self._gradient_failure(lines, case, got_grads)
                continue
            if got is None:
                lines = head + [
                    f"  no gradient reaches the input {name}: your output does not depend on it through "
                    "autograd.",
                    "  A .detach(), .data, .item() or torch.tensor(...) on the way cut the graph.",
                ]
                return self._gradient_failure(lines, case, got_grads)
            atol, rtol = tolerance_for(got_output, self.atol, self.rtol)  # float32 inside: float32 tolerance
            problem = compare_values(expected, got, atol=atol, rtol=rtol)
            if problem:
                shown_expected, shown_got = short_pair(expected, got)
                lines = head + [
                    f"  its gradient with respect to {name} is not the one autograd gives the reference formula:",
                    labelled("expected", shown_expected), labelled("got", shown_got), indent(problem, "  "),
                ]
                luck = ("  The value can be right by luck on these inputs (unit vectors, say) while the "
                        "formula is not; or a .detach() or in-place edit changes what flows back.")
                return self._gradient_failure(lines, case, got_grads, otherwise=luck)
        return None

    def _gradient_failure(self, lines: list[str], case: Case, got_grads: dict, otherwise: str = "") -> Result:
        """An incorrect result for a gradient problem, naming the known mistake whose gradients match."""
        mistake = self._gradient_mistake(case, got_grads)
        if mistake is not None:
            lines = lines + [f"  This looks like a common mistake: {mistake.name}. {mistake.explanation}"]
        elif otherwise:
            lines = lines + [otherwise]
        return self._result(INCORRECT, "\n".join(line for line in lines if line))

    def _gradient_mistake(self, case: Case, got_grads: dict) -> Mistake | None:
        """The first mistake whose gradients on this case equal the learner's."""
        for mistake in self.mistakes:
            try:
                with isolated_seed(0), _quiet():
                    _, grads = gradients(mistake.simulate, case.inputs, case.kwargs)
            except Exception:
                continue
            same = all(
                (want is None) == (got_grads.get(key) is None)
                and (want is None or compare_values(want, got_grads[key], self.atol, self.rtol) is None)
                for key, want in grads.items()
            )
            if same:
                return mistake
        return None

    # -- hints and solutions -------------------------------------------------------------------

    def hint(self, level: int = 1) -> Text:
        """Hints 1..`level` of the ladder (a level past the last shows all and points to solution())."""
        total = len(self.hints)
        if total == 0:
            return Text(f"{self.key}: no hints for this exercise; .solution() shows the reference code.")
        shown = max(1, min(int(level), total))
        if shown < total:
            footer = f"hint {shown} of {total}; .hint({shown + 1}) for more."
        else:
            last = "that was the only hint" if total == 1 else f"that was the last of {total} hints"
            footer = f"{last}; .solution() shows the reference code."
        plain = [f"{self.key} {self.title}"]
        plain += [f"  Hint {i} of {total}: {text}" for i, text in enumerate(self.hints[:shown], start=1)]
        plain.append(f"  ({footer})")
        items = "".join(f"<li>{_inline_code_html(text)}</li>" for text in self.hints[:shown])
        rich = (
            f'<div style="border-left:4px solid #0969da;padding:4px 10px;margin:4px 0">'
            f"<b>Hint</b> for <b>{_inline_code_html(self.key)}</b> {_inline_code_html(self.title)}"
            f'<ol style="margin:4px 0">{items}</ol><i>{_inline_code_html(footer)}</i></div>'
        )
        return Text("\n".join(plain), rich)

    def solution(self) -> Text:
        """The reference solution, read from the chapter's solutions notebook, shown as code."""
        found = find_solution(self.key)
        if isinstance(found, str):
            return Text(found)
        notebook, source = found
        header = f"Reference solution for {self.key} {self.title} (from {notebook.name}):"
        return Text(f"{header}\n\n{source}", f"<p><b>{_inline_code_html(header)}</b></p>{highlight_code(source)}")


class ForbiddenCall(RuntimeError):
    """Raised when an answer calls a function its exercise's statement rules out."""


def _forbidden_call(key: str, dotted: str) -> Callable[..., Any]:
    short_name = dotted.replace("torch.nn.functional.", "F.").replace("torch.Tensor.", "Tensor.")

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise ForbiddenCall(f"exercise {key} asks you to write this without {short_name}")
    return refuse


def _resolve(dotted: str) -> Any:
    """The object named by a dotted path: 'torch.nn.functional' -> the module, 'torch.Tensor' -> the class."""
    parts = dotted.split(".")
    for split in range(len(parts), 0, -1):
        try:
            target = importlib.import_module(".".join(parts[:split]))
        except ImportError:
            continue
        for attribute in parts[split:]:
            target = getattr(target, attribute)
        return target
    raise ImportError(f"cannot resolve {dotted!r}")


@contextlib.contextmanager
def _quiet():
    """Silence prints of the learner's code while the check re-runs it behind the scenes."""
    with contextlib.redirect_stdout(io.StringIO()):
        yield


def dict_answer_problem(got: Any, keys: Sequence[str], maps: str, noun: str, among: str) -> str | None:
    """The first problem with the shape of a quiz answer that must be a dict with exactly `keys`, or
    None. `maps` says what it maps ("model name to (fusion, objective)"), `noun` what the keys are
    ("models"), `among` the set in words ("the five models")."""
    if not isinstance(got, Mapping):
        return f"expected a dict from {maps}, got {type(got).__name__}"
    missing = sorted(set(keys) - set(got))
    if missing:
        return f"these {noun} are missing from your dict: {missing} (keys must be spelled as in the stub)"
    extra = sorted(str(key) for key in set(got) - set(keys))
    if extra:
        return f"your dict has entries that are not among {among}: {extra}; remove them"
    return None


def callable_expected(expected: Any) -> bool:
    """Whether a case's `expected` is a property check (a function) rather than a value."""
    return callable(expected) and not isinstance(expected, (torch.Tensor, np.ndarray, type, torch.nn.Module))


def gradients(
    function: Callable, inputs: tuple, kwargs: Mapping, like: Any = None
) -> tuple[torch.Tensor, dict[int | str, torch.Tensor | None]]:
    """Call `function` on fresh leaf copies of the inputs and differentiate its output.

    Returns (output, {position or keyword: gradient or None}) for every floating-point tensor input.
    A non-scalar output is reduced with fixed random weights (seeded by its shape, the same for the
    reference and the answer) so that every element's gradient counts. `like`, the reference output,
    lets a wrongly shaped output fail clearly.
    """
    leaves: dict[int | str, torch.Tensor] = {}

    def leaf(position: int | str, value: Any) -> Any:
        if isinstance(value, torch.Tensor) and value.is_floating_point():
            leaves[position] = value.detach().clone().requires_grad_(True)
            return leaves[position]
        return clone(value)

    call_inputs = tuple(leaf(i, v) for i, v in enumerate(inputs))
    call_kwargs = {k: leaf(k, v) for k, v in kwargs.items()}
    output = function(*call_inputs, **call_kwargs)
    if not isinstance(output, torch.Tensor):
        raise TypeError(f"the output is {describe_type(output)}, not a tensor")
    if like is not None and tuple(output.shape) != tuple(like.shape):
        raise ValueError(f"the output has shape {tuple(output.shape)}, expected {tuple(like.shape)}")
    weights = torch.randn(output.shape, generator=torch.Generator().manual_seed(output.numel()),
                          dtype=torch.float64).to(output.dtype) if output.dim() else torch.ones((), dtype=output.dtype)
    if not output.requires_grad:
        return output.detach(), dict.fromkeys(leaves)
    grads = torch.autograd.grad((output * weights).sum(), list(leaves.values()), allow_unused=True)
    return output.detach(), dict(zip(leaves, grads, strict=True))


def clone(value: Any) -> Any:
    """A copy the learner may change freely: tensors are detached clones, the rest deep copies."""
    if isinstance(value, torch.Tensor):
        copied = value.detach().clone()
        return copied.requires_grad_(True) if value.requires_grad and copied.is_floating_point() else copied
    if isinstance(value, tuple):
        return tuple(clone(v) for v in value)
    if isinstance(value, list):
        return [clone(v) for v in value]
    if isinstance(value, dict):
        return {k: clone(v) for k, v in value.items()}
    try:
        return copy.deepcopy(value)
    except Exception:
        return value


def _changed_inputs(answer: Callable, case: Case, inputs: tuple, kwargs: dict) -> str:
    """The names of tensor inputs the answer changed in place ('' when none), e.g. '`a`' or '`a` and `b`'."""
    names = dict(_argument_names(answer, case))
    changed = []
    originals = list(zip(case.inputs, inputs, strict=True)) + [(case.kwargs[k], kwargs[k]) for k in kwargs]
    keys = list(range(len(case.inputs))) + list(kwargs)
    for key, (original, given) in zip(keys, originals, strict=True):
        if not isinstance(original, torch.Tensor) or not isinstance(given, torch.Tensor):
            continue
        same = given.shape == original.shape and torch.equal(
            torch.nan_to_num(given.detach(), nan=0.5), torch.nan_to_num(original.detach(), nan=0.5))
        if not same:
            name = next((n for n, v in names.items() if v is original), None)
            changed.append(f"`{name}`" if name else f"number {key + 1 if isinstance(key, int) else key}")
    return " and ".join(changed)


def _inputs_block(answer: Callable, case: Case) -> str:
    if not case.inputs and not case.kwargs:
        return ""
    parts = [f"{name} = {short(value)}" for name, value in _argument_names(answer, case)]
    lines = [labelled("input" if len(parts) == 1 else "inputs", parts[0])]
    pad = " " * 12
    lines += [indent(part, pad) for part in parts[1:]]
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


def _broken_check_message(error: BaseException) -> str:
    return f"the check itself failed ({error_line(error)}); please report it."


def _not_callable_message(answer: Any) -> str:
    return (
        f"check() takes your function itself, but got {describe_type(answer)}.\n"
        "Write .check(my_function) - the name, without calling it."
    )


def _unanswered(got: Any) -> bool:
    if got is Ellipsis:
        return True
    return isinstance(got, Mapping) and len(got) > 0 and all(v is Ellipsis for v in got.values())
