"""Chapter 8: hand-written answers a learner might give, for the checks and the mutation harness.

WRONG[key]: (answer, words its rejection must contain); CORRECT[key]: answers written differently
from the reference solution that must pass."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def hamming(hashes_a, hashes_b):
    return torch.tensor([[bin(int(a, 16) ^ int(b, 16)).count("1") for b in hashes_b] for a in hashes_a],
                        dtype=torch.long).reshape(len(hashes_a), len(hashes_b))


def _hamming_bits(hashes_a, hashes_b):
    def bits(hashes):
        rows = [[(int(h, 16) >> k) & 1 for k in range(64)] for h in hashes]
        return torch.tensor(rows, dtype=torch.long).reshape(len(hashes), 64)
    a, b = bits(hashes_a), bits(hashes_b)
    return (a[:, None, :] != b[None, :, :]).sum(-1)


def clip_filter(image_embeddings, text_embeddings, threshold):
    return F.cosine_similarity(image_embeddings, text_embeddings, dim=1) >= threshold


def _clip_filter_normalise(image_embeddings, text_embeddings, threshold):
    image = F.normalize(image_embeddings, dim=-1)
    text = F.normalize(text_embeddings, dim=-1)
    return (image * text).sum(-1) >= threshold


def dpo(policy, reference, mask, beta, label_smoothing):
    ratio = ((policy - reference) * mask).sum(-1)  # [B, 2]
    z = beta * (ratio[:, 0] - ratio[:, 1])
    return (-(1 - label_smoothing) * F.logsigmoid(z) - label_smoothing * F.logsigmoid(-z)).mean()


def _dpo_where(policy, reference, mask, beta, label_smoothing):
    logp = torch.where(mask, policy, torch.zeros_like(policy)).sum(2)
    ref = torch.where(mask, reference, torch.zeros_like(reference)).sum(2)
    margin = (logp[:, 0] - ref[:, 0]) - (logp[:, 1] - ref[:, 1])
    loss = (1 - label_smoothing) * F.softplus(-beta * margin) + label_smoothing * F.softplus(beta * margin)
    return loss.mean()


def days(towers, samples, gpus, flops_per_gpu):
    flops = 6 * samples * sum(p * t for p, t in towers)
    return flops / (gpus * flops_per_gpu) / 86_400


def _days_hours(towers, samples, gpus, flops_per_gpu):
    hours = sum(6 * p * t * samples for p, t in towers) / (gpus * flops_per_gpu * 3600)
    return hours / 24


def kept(removed, skip):
    names = [name for name in removed if name != skip]
    drop = torch.zeros(len(removed[skip]), dtype=torch.bool)
    for name in names:
        drop |= torch.tensor(removed[name], dtype=torch.bool)
    return torch.nonzero(~drop)[:, 0]


def _kept_loop(removed, skip):
    others = [flags for name, flags in removed.items() if name != skip]
    return torch.tensor([i for i, verdicts in enumerate(zip(*others, strict=True))
                         if not any(verdicts)], dtype=torch.long)


WRONG = {
    "8.1": [
        (lambda a, b: hamming(a, b).T, "shape"),
        (lambda a, b: hamming(a, b).float() / 64, "expected"),
        (lambda a, b: [[bin(int(x, 16) ^ int(y, 16)).count("1") for y in b] for x in a], "list"),
    ],
    "8.2": [
        (lambda i, t, th: F.cosine_similarity(i, t, dim=1), "expected"),
        (lambda i, t, th: F.cosine_similarity(i, t, dim=1) > th + 0.05, "expected"),
        (lambda i, t, th: (F.cosine_similarity(i, t, dim=1) >= th)[1:], "shape"),
    ],
    "8.3": [
        (lambda p, r, m, b, e: dpo(p, r, m, b, e) * 2, "expected"),
        (lambda p, r, m, b, e: dpo(p, r, m, b, 0.0), "expected"),
        (lambda p, r, m, b, e: dpo(p, torch.zeros_like(r), m, b, e), "expected"),
    ],
    "8.4": [
        (lambda t, s, g, f: days(t, s, g, f) * 7, "expected"),
        (lambda t, s, g, f: [days(t, s, g, f)], "list"),
        (lambda t, s, g, f: days(t, s, g, f) / 365, "expected"),
    ],
    "8.5": [
        (lambda r, s: kept(r, s)[1:], "shape"),
        (lambda r, s: kept(r, s).tolist(), "list"),
        (lambda r, s: kept(r, s) + 1, "expected"),
    ],
}

CORRECT = {
    "8.1": [hamming, _hamming_bits],
    "8.2": [clip_filter, _clip_filter_normalise],
    "8.3": [dpo, _dpo_where],
    "8.4": [days, _days_hours],
    "8.5": [kept, _kept_loop],
}
