"""Chapter 3: hand-written answers a learner might give, for the checks and the mutation harness.

WRONG[key]: (answer, words its rejection must contain); CORRECT[key]: answers written differently
from the reference solution that must pass."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def symmetric(a, b, scale):
    logits = scale * F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).T
    targets = torch.arange(len(logits))
    return (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets)) / 2


def _symmetric_by_hand_float32(a, b, scale):
    a, b = a.float(), b.float()
    a = a / a.norm(dim=1, keepdim=True)
    b = b / b.norm(dim=1, keepdim=True)
    logits = scale * torch.einsum("id,jd->ij", a, b)
    rows = torch.logsumexp(logits, dim=1) - logits.diagonal()
    columns = torch.logsumexp(logits, dim=0) - logits.diagonal()
    return (rows.mean() + columns.mean()) / 2


def _siglip_zero_one_labels(a, b, scale, bias):
    # labels as 0/1 but the loss written as -log sigmoid(z * logit): negatives get z = 0
    logits = scale * F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).T + bias
    return -F.logsigmoid(torch.eye(len(logits), dtype=logits.dtype) * logits).sum() / len(logits)


def _siglip_bce(a, b, scale, bias):
    logits = scale * F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).T + bias
    labels = torch.eye(len(logits), dtype=logits.dtype)
    return F.binary_cross_entropy_with_logits(logits, labels, reduction="sum") / len(logits)


def _siglip_softplus(a, b, scale, bias):
    logits = scale * F.normalize(a, dim=1) @ F.normalize(b, dim=1).T + bias
    signs = torch.ones_like(logits).fill_diagonal_(1.0) * 2 * torch.eye(len(a), dtype=a.dtype) - 1
    return F.softplus(-signs * logits).sum() / len(a)   # softplus(-x) = -log sigmoid(x)


def _siglip_unnormalised(a, b, scale, bias):
    logits = scale * a @ b.T + bias
    return -F.logsigmoid((2 * torch.eye(len(a), dtype=a.dtype) - 1) * logits).sum() / len(a)


def _zero_shot_softmax_wrong_axis(a, b):
    similarities = F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).T
    return similarities.softmax(dim=0).argmax(dim=1)


def _ensemble_loop(vectors):
    total = torch.zeros_like(vectors[0])
    for template in vectors:
        total = total + template / template.norm(dim=-1, keepdim=True)
    return total / total.norm(dim=-1, keepdim=True)


WRONG = {
    "3.1": [
        (lambda s, t: F.cross_entropy(s / t, torch.arange(len(s)), reduction="none"), "shape"),  # no mean
        (lambda s, t: -(F.softmax(s / t, dim=1).diagonal()).mean(), "expected"),  # forgot the log
        (lambda s, t: (torch.logsumexp(s / t, 1) - (s / t).diagonal()).mean().item(), "0-dimensional tensor"),
        (lambda s, t: F.cross_entropy(s.float() / t, torch.arange(len(s))), "without F.cross_entropy"),
    ],
    "3.2": [
        (lambda a, b, s: symmetric(a.detach(), b, s), "no gradient reaches"),  # broke the graph
        (lambda a, b, s: symmetric(a, b.detach(), s), "no gradient reaches"),  # the text side too
        (lambda a, b, s: torch.tensor(symmetric(a, b, s).item()), "no gradient reaches"),  # .item() then a tensor
        (lambda a, b, s: symmetric(a, b, s).item(), "0-dimensional tensor"),
        (lambda a, b, s: symmetric(a, b, 1.0), "ignored the logit scale"),  # ignored the scale
        (lambda a, b, s: symmetric(a, b, torch.tensor(s).exp()), "logarithm"),
    ],
    "3.3": [
        (_siglip_zero_one_labels, "expected"),
        (lambda a, b, s, c: F.cross_entropy(s * F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).T + c,
                                            torch.arange(len(a))), "expected"),  # softmax, not sigmoid
        (_siglip_bce, "without F.binary_cross_entropy_with_logits"),
        (_siglip_unnormalised, "forgot to normalise"),
    ],
    "3.4": [
        (lambda a, b: (F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).T), "shape"),  # no argmax
        (lambda a, b: (a @ b.T).softmax(1), "shape"),  # probabilities, not class indices
        (_zero_shot_softmax_wrong_axis, "expected"),
        (lambda a, b: (F.normalize(a, dim=-1) @ F.normalize(b, dim=0).T).argmax(1), "wrong axis"),
        (lambda a, b: (F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).T).argmax(1).float(), "dtype"),
    ],
    "3.5": [
        (lambda v: F.normalize(v, dim=-1), "shape"),  # no average at all
        (lambda v: v.mean(0), "expected"),  # plain mean of raw vectors
    ],
}

CORRECT = {
    "3.1": [
        lambda s, t: (torch.logsumexp(s.float() / t, 1) - (s.float() / t).diagonal()).mean(),  # in float32
        lambda s, t: -F.log_softmax(s / t, dim=1).diagonal().mean(),
    ],
    "3.2": [_symmetric_by_hand_float32, symmetric],
    "3.3": [_siglip_softplus],
    "3.4": [lambda a, b: F.cosine_similarity(a[:, None], b[None], dim=-1).max(dim=1).indices],
    "3.5": [_ensemble_loop],
}
