"""Chapter 3's exercise checks against independent facts (a hand-worked row, gradcheck).
The generic checks and the hand-written answers (answers_ch03.py) run in test_exercises_chapters.py."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from answers_ch03 import symmetric as _symmetric

from utils.exercises import ch03
from utils.exercises.core import CORRECT


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
