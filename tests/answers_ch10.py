"""Chapter 10: hand-written answers a learner might give, for the checks and the mutation harness.

WRONG[key]: (answer, words its rejection must contain); CORRECT[key]: answers written differently
from the reference solution that must pass."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F


def maxsim_loops(query, patches, patch_mask):
    scores = []
    for page, mask in zip(patches, patch_mask, strict=True):
        real = page[mask]  # [m, D]
        scores.append((query @ real.T).max(dim=1).values.sum())
    return torch.stack(scores)


def _maxsim_numpy(query, patches, patch_mask):
    q, p, m = query.numpy(), patches.numpy(), patch_mask.numpy()
    similarity = np.einsum("nd,pmd->pnm", q, p)
    similarity = np.where(m[:, None, :], similarity, -np.inf)
    return torch.from_numpy(similarity.max(axis=2).sum(axis=1))


def prune(tokens, scores, keep):
    order = torch.argsort(scores, dim=1, descending=True, stable=True)[:, :keep]
    index, _ = torch.sort(order, dim=1)
    kept = torch.stack([tokens[b, index[b]] for b in range(len(tokens))])
    return kept, index


def _prune_mask(tokens, scores, keep):
    threshold = scores.topk(keep, dim=1).values[:, -1:]  # [B, 1]
    chosen = scores >= threshold
    index = torch.stack([row.nonzero()[:, 0] for row in chosen])
    return tokens[chosen].view(len(tokens), keep, -1), index


def bins(actions, low, high, count):
    fraction = (actions - low) / (high - low)
    return (fraction.clamp(0, 1) * count).floor().long().clamp(0, count - 1)


def _bins_python(actions, low, high, count):
    rows = []
    for action in actions.tolist():
        row = []
        for value, lo, hi in zip(action, low.tolist(), high.tolist(), strict=True):
            value = min(max(value, lo), hi)
            row.append(min(count - 1, int(math.floor((value - lo) / ((hi - lo) / count)))))
        rows.append(row)
    return torch.tensor(rows)


def targeted_fgsm(model, images, targets, epsilon):
    x = images.detach().clone().requires_grad_()
    F.cross_entropy(model(x), targets, reduction="sum").backward()  # the sum: same sign
    return torch.clamp(x.detach() - epsilon * torch.sign(x.grad), 0.0, 1.0)


def _untargeted(model, images, targets, epsilon):
    x = images.detach().clone().requires_grad_()
    F.cross_entropy(model(x), targets).backward()
    return (x.detach() + epsilon * x.grad.sign()).clamp(0, 1)


def _attached(model, images, targets, epsilon):
    x = images.detach().clone().requires_grad_()
    (gradient,) = torch.autograd.grad(F.cross_entropy(model(x), targets), x, create_graph=True)
    return (x - epsilon * gradient.sign()).clamp(0, 1)


def candidate_recall(neighbour_pages, relevant, counts):
    return torch.stack([100 * relevant.gather(1, neighbour_pages[:, :, :k].flatten(1)).any(1).float().mean()
                        for k in counts])


def _candidate_loops(neighbour_pages, relevant, counts):
    out = []
    for k in counts:
        found = [bool(relevant[q, neighbour_pages[q, :, :k].unique()].any()) for q in range(len(relevant))]
        out.append(100.0 * sum(found) / len(found))
    return torch.tensor(out)


WRONG = {
    "10.1": [
        (lambda q, p, m: maxsim_loops(q, p, torch.ones_like(m)), "padded"),
        (lambda q, p, m: maxsim_loops(q, p, m) / len(q), "sum"),
        (lambda q, p, m: maxsim_loops(q, p, m)[:, None], "shape"),
        (lambda q, p, m: torch.stack([(q @ page[mask].T).max() for page, mask in zip(p, m, strict=True)]),
         "own best patch"),
    ],
    "10.2": [
        (lambda t, s, k: (t[:, :k], torch.arange(k).expand(len(t), -1)), "expected"),
        (lambda t, s, k: prune(t, -s, k), "highest"),
        (lambda t, s, k: prune(t, s, k)[0], "tuple"),
        (lambda t, s, k: (t.gather(1, s.topk(k, 1).indices[..., None].expand(-1, -1, t.shape[2])),
                          s.topk(k, 1).indices), "original order"),
    ],
    "10.3": [
        (lambda a, lo, hi, n: bins(a, lo, hi, n) + 1, "expected"),
        (lambda a, lo, hi, n: torch.round((a.clamp(lo, hi) - lo) / ((hi - lo) / n)).long()
         .clamp(max=n - 1), "rounding"),
        (lambda a, lo, hi, n: ((a.clamp(lo, hi) - lo) / ((hi - lo) / n)).floor().long(), "last bin"),
        (lambda a, lo, hi, n: bins(a, lo, hi, n).float(), "integer"),
    ],
    "10.4": [
        (lambda m, x, y, e: _untargeted(m, x, y, e), "decreases"),
        (lambda m, x, y, e: x, "expected"),
        (lambda m, x, y, e: targeted_fgsm(m, x, y, 2 * e), "expected"),
        (_attached, "requires a gradient"),
    ],
    "10.5": [
        (lambda n, r, c: candidate_recall(n[:, :1], r, c), "first query vector"),
        (lambda n, r, c: candidate_recall(n, r, c) / 100, "fractions"),
        (lambda n, r, c: candidate_recall(n, r, c)[:1], "expected"),
        (lambda n, r, c: torch.stack([100 * r.gather(1, n[:, :, k - 1]).any(1).float().mean() for k in c]),
         "k-th"),
    ],
}

CORRECT = {
    "10.1": [maxsim_loops, _maxsim_numpy],
    "10.2": [prune, _prune_mask],
    "10.3": [bins, _bins_python],
    "10.4": [targeted_fgsm],
    "10.5": [candidate_recall, _candidate_loops],
}
