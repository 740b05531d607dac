"""A mutation harness for the exercise checkers: wrong answers derived automatically from each
reference solution, which every checker must reject, and correct variants it must accept.

A mutant is the reference solution changed in one way a learner's code plausibly differs: an input
detached, two inputs swapped, an axis flipped inside `norm`/`softmax`/`argmax`/`mean`, `sum` for
`mean`, a parameter ignored (held at one value) or off by one, a Python number for a tensor, an input
edited in place. Whether a mutant changes the mathematics is decided on *probe* inputs (the cases'
inputs and random inputs of the same shapes), not on the cases themselves: a mutant that changes the
result on probes but passes the check exposes a case set too weak to tell them apart.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from utils.exercises.core import (
    CORRECT,
    Case,
    Exercise,
    callable_expected,
    clone,
    compare_values,
    find_solution,
    gradients,
)

WRONG, CORRECT_VARIANT, SIDE_EFFECT = "wrong", "correct", "side effect"


@dataclass
class Mutant:
    name: str
    function: Callable
    kind: str = WRONG  # WRONG: reject if it changes the result; CORRECT_VARIANT: accept; SIDE_EFFECT: reject
    words: str = ""  # for a hand-written wrong answer: words its rejection must contain


@dataclass
class Outcome:
    """What happened to one mutant."""

    mutant: Mutant
    changes_result: bool
    verdict: str  # the check's status
    message: str
    property_check: bool = False  # the cases check a property, so no expected value is shown

    @property
    def ok(self) -> bool:
        if self.mutant.kind == CORRECT_VARIANT:
            return self.verdict == CORRECT
        if self.mutant.kind == SIDE_EFFECT or self.changes_result:
            explained = well_explained(self.message, self.property_check)
            return self.verdict != CORRECT and explained and self.mutant.words.lower() in self.message.lower()
        return True  # an equivalent mutant may pass or fail

    @property
    def applicable(self) -> bool:
        return self.mutant.kind != WRONG or self.changes_result


@dataclass
class Report:
    key: str
    outcomes: list[Outcome] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def count(self, kinds: tuple[str, ...]) -> tuple[int, int]:
        chosen = [o for o in self.outcomes if o.mutant.kind in kinds and o.applicable]
        return sum(o.ok for o in chosen), len(chosen)


def well_explained(message: str, property_check: bool = False) -> bool:
    """A rejection names the case and says what came back (and what was expected, or what broke);
    a property check shows what came back and what is wrong with it, never the expected answer."""
    names_case = 'case "' in message
    expected = "expected" in message or property_check
    says_what = (expected and "got" in message) or any(
        words in message for words in ("raised", "in place", "no gradient reaches", "sends a gradient"))
    return names_case and says_what


# ------------------------------------------------------------------------------------------------
# The reference solution and probe inputs
# ------------------------------------------------------------------------------------------------


def reference_function(exercise: Exercise) -> Callable:
    """The function defined by the exercise's cell in solutions/NN_*.ipynb."""
    found = find_solution(exercise.key)
    assert isinstance(found, tuple), found
    namespace: dict = {}
    exec(compile(found[1], f"solution {exercise.key}", "exec"), namespace)  # noqa: S102 - the book's own code
    functions = [v for k, v in namespace.items() if inspect.isfunction(v) and v.__module__ is None
                 and not k.startswith("_")]
    assert functions, f"solution {exercise.key} defines no function"
    return functions[-1]


def probe_inputs(cases: list[Case], draws: int = 2) -> list[tuple]:
    """The cases' inputs, and `draws` random versions of each: float tensors redrawn with the same
    shape, mean and spread; integer tensors shuffled (so indices and permutations stay valid)."""
    generator = torch.Generator().manual_seed(1234)
    probes = [tuple(case.inputs) for case in cases]
    for case in cases:
        for _ in range(draws):
            probes.append(tuple(_redraw(value, generator) for value in case.inputs))
    return probes


def _redraw(value: Any, generator: torch.Generator) -> Any:
    if not isinstance(value, torch.Tensor) or value.numel() == 0:
        return value
    if value.is_floating_point():
        spread = value.double().std().item() if value.numel() > 1 else 1.0
        spread = spread if spread > 0 else 1.0
        noise = torch.randn(value.shape, generator=generator, dtype=torch.float64)
        return (noise * spread + value.double().mean()).to(value.dtype)
    if value.dtype == torch.bool:
        return torch.rand(value.shape, generator=generator) < 0.5
    order = torch.randperm(value.numel(), generator=generator)
    return value.flatten()[order].reshape(value.shape)


# ------------------------------------------------------------------------------------------------
# Patches: swap a torch function for a mutated one while the mutant runs
# ------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def patched(replacements: list[tuple[Any, str, Callable[[Callable], Callable]]]) -> Iterator[None]:
    """Temporarily replace owner.name by make(original) for each (owner, name, make)."""
    saved = []
    try:
        for owner, name, make in replacements:
            original = getattr(owner, name)
            saved.append((owner, name, original))
            setattr(owner, name, make(original))
        yield
    finally:
        for owner, name, original in reversed(saved):
            setattr(owner, name, original)


def _other_axis(dim: int, ndim: int) -> int:
    if ndim < 2:
        return dim
    positive = dim % ndim
    return ndim - 1 if positive != ndim - 1 else ndim - 2


def _flip_dim(position: int) -> Callable[[Callable], Callable]:
    """A wrapper maker: the `dim` argument (keyword, or positional at `position`) moves to another axis."""
    def make(original: Callable) -> Callable:
        def mutated(tensor, *args, **kwargs):
            args = list(args)
            if "dim" in kwargs and kwargs["dim"] is not None and isinstance(kwargs["dim"], int):
                kwargs["dim"] = _other_axis(kwargs["dim"], tensor.dim())
            elif len(args) > position and isinstance(args[position], int) and not isinstance(args[position], bool):
                args[position] = _other_axis(args[position], tensor.dim())
            return original(tensor, *args, **kwargs)
        return mutated
    return make


def _redirect(target: Callable) -> Callable[[Callable], Callable]:
    return lambda original: target


def _flips(*targets: tuple[Any, str, int]) -> list:
    return [(owner, name, _flip_dim(position)) for owner, name, position in targets]


AXIS_PATCHES = {
    "normalised along the other axis": _flips((torch.Tensor, "norm", 1), (F, "cosine_similarity", 1)),
    "softmax over the other axis": _flips((torch.Tensor, "softmax", 0), (F, "softmax", 0), (torch, "softmax", 0),
                                          (torch.Tensor, "log_softmax", 0), (F, "log_softmax", 0),
                                          (torch, "logsumexp", 0), (torch.Tensor, "logsumexp", 0)),
    "argmax/topk over the other axis": _flips((torch.Tensor, "argmax", 0), (torch, "argmax", 0),
                                              (torch.Tensor, "argmin", 0), (torch.Tensor, "topk", 1),
                                              (torch, "topk", 1), (torch.Tensor, "argsort", 0)),
    "reduced over the other axis": _flips((torch.Tensor, "mean", 0), (torch, "mean", 0),
                                          (torch.Tensor, "sum", 0), (torch, "sum", 0)),
}


def _sum_for_mean() -> list:
    tensor_sum, torch_sum = torch.Tensor.sum, torch.sum
    return [(torch.Tensor, "mean", _redirect(tensor_sum)), (torch, "mean", _redirect(torch_sum))]


def _mean_for_sum() -> list:
    tensor_mean, torch_mean = torch.Tensor.mean, torch.mean
    return [(torch.Tensor, "sum", _redirect(tensor_mean)), (torch, "sum", _redirect(torch_mean))]


def _einsum_matmul(original: Callable) -> Callable:
    def matmul(a, b):
        if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.dim() == 2 and b.dim() == 2:
            return torch.einsum("ij,jk->ik", a, b)
        return original(a, b)
    return matmul


def _log_of_softmax(original: Callable) -> Callable:
    def log_softmax(tensor, dim=None, *args, **kwargs):
        return torch.log(torch.softmax(tensor, dim=dim))
    return log_softmax


# ------------------------------------------------------------------------------------------------
# The mutants of one exercise
# ------------------------------------------------------------------------------------------------


def _within(replacements: Callable[[], list], function: Callable) -> Callable:
    def mutant(*args, **kwargs):
        with patched(replacements()):
            return function(*args, **kwargs)
    return mutant


def _with_input(function: Callable, position: int, change: Callable[[Any], Any]) -> Callable:
    def mutant(*args, **kwargs):
        args = list(args)
        args[position] = change(args[position])
        return function(*args, **kwargs)
    return mutant


def mutants_of(reference: Callable, cases: list[Case]) -> list[Mutant]:
    """Every automatic mutant that applies to this exercise's reference and inputs."""
    first = cases[0].inputs
    found: list[Mutant] = []
    tensors = [i for i, v in enumerate(first) if isinstance(v, torch.Tensor)]
    floats = [i for i in tensors if first[i].is_floating_point()]
    numbers = [i for i, v in enumerate(first) if isinstance(v, (int, float)) and not isinstance(v, bool)]

    for i in floats:
        found.append(Mutant(f"detach input {i + 1}", _with_input(reference, i, lambda x: x.detach())))
    for i in tensors:
        for j in tensors:
            if i < j and all(_same_kind(c.inputs[i], c.inputs[j]) for c in cases):
                found.append(Mutant(f"swap inputs {i + 1} and {j + 1}", _swapped(reference, i, j)))
        if first[i].dim() >= 2:
            found.append(Mutant(f"transpose input {i + 1}",
                                _with_input(reference, i, lambda x: x.transpose(-1, -2))))
    found.append(Mutant("transpose the output", _transposed_output(reference)))
    for name, replacements in AXIS_PATCHES.items():
        found.append(Mutant(name, _within(lambda r=replacements: r, reference)))
    found.append(Mutant("sum instead of mean", _within(_sum_for_mean, reference)))
    found.append(Mutant("mean instead of sum", _within(_mean_for_sum, reference)))
    for i in numbers:
        for value in sorted({c.inputs[i] for c in cases}):
            found.append(Mutant(f"input {i + 1} ignored (held at {value})",
                                _with_input(reference, i, lambda _, v=value: v)))
        if all(isinstance(c.inputs[i], int) for c in cases):
            found.append(Mutant(f"input {i + 1} off by one (+1)", _with_input(reference, i, lambda v: v + 1)))
            found.append(Mutant(f"input {i + 1} off by one (-1)", _with_input(reference, i, lambda v: v - 1)))
    found.append(Mutant("a Python number instead of a tensor", _as_python_number(reference)))
    for i in tensors:
        found.append(Mutant(f"edits input {i + 1} in place", _edits_in_place(reference, i), kind=SIDE_EFFECT))
    # Variants that do not change the mathematics: each must pass.
    found.append(Mutant("computed in float32", _in_dtype(reference, torch.float32), kind=CORRECT_VARIANT))
    found.append(Mutant("computed in float64", _in_dtype(reference, torch.float64), kind=CORRECT_VARIANT))
    found.append(Mutant("einsum for @", _within(lambda: [(torch.Tensor, "__matmul__", _einsum_matmul)], reference),
                        kind=CORRECT_VARIANT))
    found.append(Mutant("log(softmax) for log_softmax", _within(
        lambda: [(F, "log_softmax", _log_of_softmax), (torch.Tensor, "log_softmax", _log_of_softmax)], reference),
        kind=CORRECT_VARIANT))
    return found


def _same_kind(a: Any, b: Any) -> bool:
    return isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.shape == b.shape and a.dtype == b.dtype


def _swapped(function: Callable, i: int, j: int) -> Callable:
    def mutant(*args, **kwargs):
        args = list(args)
        args[i], args[j] = args[j], args[i]
        return function(*args, **kwargs)
    return mutant


def _transposed_output(function: Callable) -> Callable:
    def mutant(*args, **kwargs):
        output = function(*args, **kwargs)
        if isinstance(output, torch.Tensor) and output.dim() >= 2:
            return output.transpose(-1, -2)
        return output
    return mutant


def _as_python_number(function: Callable) -> Callable:
    def mutant(*args, **kwargs):
        output = function(*args, **kwargs)
        if isinstance(output, torch.Tensor) and output.dim() == 0:
            return output.item()
        return output
    return mutant


def _edits_in_place(function: Callable, position: int) -> Callable:
    def mutant(*args, **kwargs):
        output = function(*args, **kwargs)
        target = args[position]
        if target.dtype == torch.bool:
            target.logical_not_()
        elif target.is_floating_point():
            target.mul_(2.0).add_(1.0)
        else:
            target.add_(1)
        return output
    return mutant


def _in_dtype(function: Callable, dtype: torch.dtype) -> Callable:
    def mutant(*args, **kwargs):
        cast = [a.to(dtype) if isinstance(a, torch.Tensor) and a.is_floating_point() else a for a in args]
        return function(*cast, **kwargs)
    return mutant


# ------------------------------------------------------------------------------------------------
# Running the harness on one exercise
# ------------------------------------------------------------------------------------------------


def changes_result(exercise: Exercise, reference: Callable, mutant: Callable, probes: list[tuple]) -> bool:
    """Whether `mutant` differs from `reference` on any probe (value, type, or gradient where checked)."""
    for inputs in probes:
        try:
            want = reference(*clone(inputs))
        except Exception:
            continue  # a probe the reference itself rejects tells nothing
        try:
            got = mutant(*clone(inputs))
        except Exception:
            return True
        if exercise.compare is not None:
            problem = exercise.compare(want, got)
        else:
            problem = compare_values(want, got, atol=exercise.atol, rtol=exercise.rtol)
        if problem:
            return True
        if exercise.gradient_reference is not None and _gradients_differ(exercise, reference, mutant, inputs):
            return True
    return False


def _gradients_differ(exercise: Exercise, reference: Callable, mutant: Callable, inputs: tuple) -> bool:
    _, want = gradients(reference, inputs, {})
    try:
        _, got = gradients(mutant, inputs, {})
    except Exception:
        return True
    for position, expected in want.items():
        given = got.get(position)
        if expected is None:
            continue
        if given is None or compare_values(expected, given, atol=exercise.atol, rtol=exercise.rtol):
            return True
    return False


def run(exercise: Exercise, extra_wrong: list[tuple[Callable, str]] = (), extra_correct: list[Callable] = ()) -> Report:
    """Run every mutant, known mistake and hand-written answer of `exercise` through its check."""
    report = Report(exercise.key)
    reference = reference_function(exercise)
    cases = exercise.build_cases()
    report.problems += constant_parameters(cases)
    probes = probe_inputs(cases)
    property_check = any(callable_expected(c.expected) for c in cases)
    candidates = mutants_of(reference, cases) if any(c.inputs for c in cases) else []
    candidates += [Mutant(f"known mistake: {m.name}", m.simulate, words=m.name) for m in exercise.mistakes]
    candidates += [Mutant(f"hand-written wrong answer {n}", fn, words=words)
                   for n, (fn, words) in enumerate(extra_wrong, start=1)]
    candidates += [Mutant(f"hand-written correct variant {n}", fn, kind=CORRECT_VARIANT)
                   for n, fn in enumerate(extra_correct, start=1)]
    for mutant in candidates:
        if mutant.kind == WRONG and mutant.name.startswith(("known mistake", "hand-written")):
            differs = True  # declared wrong: it must be rejected whatever the probes say
        elif mutant.kind == WRONG:
            differs = changes_result(exercise, reference, mutant.function, probes)
        else:
            differs = False
        result = exercise.check(mutant.function)
        report.outcomes.append(Outcome(mutant, differs, result.status, str(result), property_check))
    return report


def constant_parameters(cases: list[Case]) -> list[str]:
    """Number parameters that take the same value in every case (so ignoring them cannot be caught)."""
    if not cases or not cases[0].inputs:
        return []
    problems = []
    for i, value in enumerate(cases[0].inputs):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            values = {c.inputs[i] for c in cases}
            if len(values) == 1:
                problems.append(f"input {i + 1} is {value} in every case: an answer that ignores it passes")
    return problems


def table(reports: list[Report]) -> str:
    """The kill table: per exercise, wrong answers rejected, side effects caught, variants accepted."""
    lines = [f"{'exercise':<9}{'wrong rejected':>16}{'side effects':>14}{'variants accepted':>19}"
             f"{'equivalent (n/a)':>18}"]
    for report in reports:
        killed, wrong = report.count((WRONG,))
        caught, side = report.count((SIDE_EFFECT,))
        accepted, variants = report.count((CORRECT_VARIANT,))
        equivalent = sum(not o.applicable for o in report.outcomes)
        lines.append(f"{report.key:<9}{f'{killed}/{wrong}':>16}{f'{caught}/{side}':>14}"
                     f"{f'{accepted}/{variants}':>19}{equivalent:>18}")
    return "\n".join(lines)
