"""Every exercise of every chapter: the reference solution (from solutions/NN_*.ipynb) passes, the
stub reads as not attempted, and realistic wrong answers fail with a message that names the problem."""

from __future__ import annotations

import importlib
import pkgutil

import pytest
import torch
import torch.nn.functional as F

import utils.exercises
from utils.exercises.core import CORRECT, INCORRECT, NOT_ATTEMPTED, Exercise, find_solution

CHAPTER_MODULES = [
    importlib.import_module(f"utils.exercises.{info.name}")
    for info in pkgutil.iter_modules(utils.exercises.__path__)
    if info.name.startswith("ch")
]
EXERCISES = [
    exercise for module in CHAPTER_MODULES
    for exercise in vars(module).values() if isinstance(exercise, Exercise)
]


def reference(exercise: Exercise):
    """The function defined by the exercise's solution cell."""
    found = find_solution(exercise.key)
    assert isinstance(found, tuple), found
    namespace: dict = {}
    exec(compile(found[1], f"solution {exercise.key}", "exec"), namespace)  # noqa: S102 - the book's own code
    functions = [v for k, v in namespace.items() if callable(v) and getattr(v, "__module__", None) is None
                 and not k.startswith("_") and not isinstance(v, type)]
    assert functions, f"solution {exercise.key} defines no function"
    return functions[-1]


def test_every_chapter_has_at_least_four_exercises():
    for module in CHAPTER_MODULES:
        count = sum(isinstance(v, Exercise) for v in vars(module).values())
        assert count >= 4, f"{module.__name__} has {count} exercises"


@pytest.mark.parametrize("exercise", EXERCISES, ids=lambda e: e.key)
def test_reference_solution_passes(exercise):
    result = exercise.check(reference(exercise))
    assert result.status == CORRECT, str(result)


@pytest.mark.parametrize("exercise", EXERCISES, ids=lambda e: e.key)
def test_stub_reads_as_not_attempted(exercise):
    def stub(*args, **kwargs):
        raise NotImplementedError("your code here")

    result = exercise.check(stub)
    assert result.status == NOT_ATTEMPTED
    assert "NotImplementedError" in str(result)


@pytest.mark.parametrize("exercise", [e for e in EXERCISES if e.mistakes], ids=lambda e: e.key)
def test_each_known_mistake_is_named(exercise):
    for mistake in exercise.mistakes:
        result = exercise.check(mistake.simulate)
        assert result.status == INCORRECT
        assert mistake.name in str(result), f"{exercise.key}: '{mistake.name}' not named in:\n{result}"


# Realistic wrong answers of chapter 1 that are not simulated mistakes, with the words the message must hold.
CH01_WRONG = {
    "1.1": [
        (lambda a, b: F.normalize(a, dim=-1) @ F.normalize(b, dim=-1), "shape"),   # forgot the transpose
        (lambda a, b: F.cosine_similarity(a, b, dim=-1), "your function raised"),   # rows, not all pairs
    ],
    "1.2": [
        (lambda s, t, k: (s.topk(k, dim=1).indices == t[:, None]).any(dim=1).float(), "shape"),  # no mean
        (lambda s, t, k: (s.topk(k, dim=0).indices.T[:, :1] == t[:, None]).float().mean().item(), "expected"),
    ],
    "1.3": [
        (lambda: {"CLIP": ("late", "contrastive")}, "missing"),
        (lambda: {m: ("contrastive", "late") for m in ("CLIP", "Flamingo", "LLaVA", "Chameleon", "VisualBERT")},
         "order swapped"),
        (lambda: {m: ("early", "generative") for m in ("CLIP", "Flamingo", "LLaVA", "Chameleon", "VisualBERT")},
         "placements are off"),
        (lambda: {m: ("late-ish", "contrastive") for m in ("CLIP", "Flamingo", "LLaVA", "Chameleon",
                                                            "VisualBERT")}, "outside the choices"),
    ],
    "1.4": [
        (lambda w, x, y, lr: w - lr * 2 / len(x) * (x @ w - y), "shape"),             # forgot X^T
        (lambda w, x, y, lr: w.T - lr * (2 / len(x) * x.T @ (x @ w - y)).T, "shape"),  # transposed result
    ],
    "1.5": [
        (lambda a, b: (F.normalize(a - a.mean(0), dim=-1), F.normalize(b - a.mean(0), dim=-1)), "expected"),
        (lambda a, b: torch.cat([a, b]), "type"),                                     # one tensor, not a pair
    ],
}


@pytest.mark.parametrize("key", sorted(CH01_WRONG))
def test_chapter1_wrong_answers_are_explained(key, wrong_answers_fail):
    exercise = next(e for e in EXERCISES if e.key == key)
    for message in wrong_answers_fail(exercise, CH01_WRONG[key]):
        if key == "1.3":
            assert "('middle', 'generative')" not in message, "a wrong answer must not reveal the key"
