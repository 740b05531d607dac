"""Chapter 3's exercises: realistic wrong answers (not the simulated mistakes) fail, with a message that
says what is wrong. The generic checks (solution passes, stub not attempted, mistakes named) live in
test_exercises_chapters.py."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from utils.exercises import ch03
from utils.exercises.core import CORRECT


def _symmetric(a, b, scale):
    logits = scale * F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).T
    targets = torch.arange(len(logits))
    return (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets)) / 2


def _siglip_zero_one_labels(a, b, scale, bias):
    # labels as 0/1 but the loss written as -log sigmoid(z * logit): negatives get z = 0
    logits = scale * F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).T + bias
    return -F.logsigmoid(torch.eye(len(logits), dtype=logits.dtype) * logits).sum() / len(logits)


CH03_WRONG = {
    "3.1": [
        (lambda s, t: F.cross_entropy(s / t, torch.arange(len(s)), reduction="none"), "shape"),  # no mean
        (lambda s, t: -(F.softmax(s / t, dim=1).diagonal()).mean(), "expected"),  # forgot the log
    ],
    "3.2": [
        (lambda a, b, s: _symmetric(a.detach(), b, s), "autograd"),  # broke the graph
        (lambda a, b, s: torch.tensor(_symmetric(a, b, s).item()), "autograd"),  # .item() then a tensor
        (lambda a, b, s: _symmetric(a, b, 1.0), "ignored the logit scale"),  # ignored the scale
    ],
    "3.3": [
        (_siglip_zero_one_labels, "expected"),
        (lambda a, b, s, c: F.cross_entropy(s * F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).T + c,
                                            torch.arange(len(a))), "expected"),  # softmax, not sigmoid
    ],
    "3.4": [
        (lambda a, b: (F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).T), "shape"),  # no argmax
        (lambda a, b: (a @ b.T).softmax(1), "shape"),  # probabilities, not class indices
    ],
    "3.5": [
        (lambda v: F.normalize(v, dim=-1), "shape"),  # no average at all
        (lambda v: v.mean(0), "expected"),  # plain mean of raw vectors
    ],
}


def _exercise(key: str):
    return next(e for e in vars(ch03).values() if isinstance(e, ch03.Exercise) and e.key == key)


@pytest.mark.parametrize("key", sorted(CH03_WRONG))
def test_chapter3_wrong_answers_are_explained(key, wrong_answers_fail):
    wrong_answers_fail(_exercise(key), CH03_WRONG[key])


def test_worked_example_by_hand():
    # Row 1 of the worked example at tau = 0.1: logits 9, 1, 2 -> loss log(1 + e^-8 + e^-7).
    row = math.log(1 + math.exp(-8) + math.exp(-7))
    got = F.cross_entropy(ch03.WORKED[:1] / 0.1, torch.tensor([0])).item()
    assert abs(got - row) < 1e-12


def test_symmetric_reference_gradient_passes_gradcheck():
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(3, 4, generator=generator, dtype=torch.float64, requires_grad=True)
    b = torch.randn(3, 4, generator=generator, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda x: _symmetric(x, b, 5.0), (a,))
    assert ch03.symmetric_loss.check(_symmetric).status == CORRECT
