"""Chapter 1: hand-written answers a learner might give, for the checks and the mutation harness.

WRONG[key]: (answer, words its rejection must contain); CORRECT[key]: answers written differently
from the reference solution that must pass."""

from __future__ import annotations

import torch
import torch.nn.functional as F

MODELS = ("CLIP", "Flamingo", "LLaVA", "Chameleon", "VisualBERT")


def _gradient_by_autograd(W, X, Y, lr):
    leaf = W.clone().requires_grad_(True)
    loss = ((X @ leaf - Y) ** 2).sum(dim=1).mean()
    loss.backward()
    return (W - lr * leaf.grad).detach()


def _recall_by_rank(similarity, true_index, k):
    partner = similarity.gather(1, true_index[:, None])          # [Q, 1]
    rank = (similarity > partner).sum(dim=1)                      # items that beat the partner
    return (rank < k).float().mean()                              # a 0-d tensor is fine here


class _LearnerStop(BaseException):
    """A learner's own exception class, derived from BaseException by mistake."""


def _raises_base_exception(a, b):
    raise _LearnerStop("stop here")


WRONG = {
    "1.1": [
        (lambda a, b: F.normalize(a, dim=-1) @ F.normalize(b, dim=-1), "shape"),   # forgot the transpose
        (lambda a, b: F.cosine_similarity(a, b, dim=-1), "your function raised"),   # rows, not all pairs
        (lambda a, b: F.normalize(a, dim=0) @ F.normalize(b, dim=0).T, "wrong axis"),
        (lambda a, b: ((a / (a.norm(dim=-1, keepdim=True) + 1e-3)) @ (b / b.norm(dim=-1, keepdim=True)).T).half(),
         "dtype"),  # a small slip hidden by half precision
        (_raises_base_exception, "raised"),
    ],
    "1.2": [
        (lambda s, t, k: (s.topk(k, dim=1).indices == t[:, None]).any(dim=1).float(), "shape"),  # no mean
        (lambda s, t, k: (s.topk(k, dim=0).indices.T[:, :1] == t[:, None]).float().mean().item(), "expected"),
        (lambda s, t, k: (s.topk(k, dim=1).indices == t[:, None]).any(dim=1).sum().item(), "returned a count"),
    ],
    "1.3": [
        (lambda: {"CLIP": ("late", "contrastive")}, "missing"),
        (lambda: dict.fromkeys(MODELS, ("contrastive", "late")), "order swapped"),
        (lambda: dict.fromkeys(MODELS, ("early", "generative")), "placements are off"),
        (lambda: dict.fromkeys(MODELS, ("late-ish", "contrastive")), "outside the choices"),
        (lambda: {**dict.fromkeys(MODELS, ("late", "contrastive")), "BLIP-2": ("banana", "xyz")},
         "not among the five models"),
    ],
    "1.4": [
        (lambda w, x, y, lr: w - lr * 2 / len(x) * (x @ w - y), "shape"),             # forgot X^T
        (lambda w, x, y, lr: w.T - lr * (2 / len(x) * x.T @ (x @ w - y)).T, "shape"),  # transposed result
        (lambda w, x, y, lr: w - 0.1 * 2 / len(x) * x.T @ (x @ w - y), "expected"),   # lr hard-coded
    ],
    "1.5": [
        (lambda a, b: (F.normalize(a - a.mean(0), dim=-1), F.normalize(b - a.mean(0), dim=-1)), "expected"),
        (lambda a, b: torch.cat([a, b]), "type"),                                     # one tensor, not a pair
    ],
}

CORRECT = {
    "1.1": [
        lambda a, b: F.cosine_similarity(a[:, None, :], b[None, :, :], dim=-1),
        lambda a, b: torch.einsum("nd,md->nm", F.normalize(a.double(), dim=1), F.normalize(b.double(), dim=1)),
    ],
    "1.2": [_recall_by_rank],
    "1.3": [lambda: {"CLIP": ["Late", "Contrastive"], "Flamingo": ("middle ", "generative"),
                     "LLaVA": ("early", "generative"), "Chameleon": ("EARLY", "generative"),
                     "VisualBERT": ("early", "masked")}],
    "1.4": [_gradient_by_autograd],
    "1.5": [lambda a, b: ((a - a.mean(0, keepdim=True)) / (a - a.mean(0)).norm(dim=1, keepdim=True),
                          (b - b.mean(0, keepdim=True)) / (b - b.mean(0)).norm(dim=1, keepdim=True))],
}
