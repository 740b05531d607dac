"""Chapter 9: hand-written answers a learner might give, for the checks and the mutation harness.

WRONG[key]: (answer, words its rejection must contain); CORRECT[key]: answers written differently
from the reference solution that must pass."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import scipy.linalg
import torch


def bleu(hypothesis, references):
    precisions = []
    for n in (1, 2, 3, 4):
        grams = Counter(zip(*(hypothesis[i:] for i in range(n)), strict=False))
        if not grams:
            return 0.0
        best = Counter()
        for r in references:
            for gram, count in Counter(zip(*(r[i:] for i in range(n)), strict=False)).items():
                best[gram] = max(best[gram], count)
        precisions.append(sum(min(c, best[g]) for g, c in grams.items()) / sum(grams.values()))
    if 0 in precisions:
        return 0.0
    lengths = sorted(len(r) for r in references)
    r = min(lengths, key=lambda length: abs(length - len(hypothesis)))  # sorted: shorter wins ties
    penalty = min(1.0, math.exp(1 - r / len(hypothesis)))
    return penalty * math.prod(precisions) ** 0.25


def _bleu_numpy(hypothesis, references):
    return float(np.float64(bleu(list(hypothesis), [list(r) for r in references])))


def expected_recall(scores, right, k):
    total = 0.0
    for row, target in zip(scores, right.tolist(), strict=True):
        mine = row[target]
        above = int((row > mine).sum())
        tied = int((row == mine).sum()) - 1
        total += max(0, min(k - above, tied + 1)) / (tied + 1)
    return total / len(right)


def _expected_recall_sort(scores, right, k):
    hits = []
    for row, target in zip(scores.tolist(), right.tolist(), strict=True):
        ordered = sorted(row, reverse=True)
        first = ordered.index(row[target])  # first position holding its score
        block = ordered.count(row[target])
        hits.append(sum(first + j < k for j in range(block)) / block)
    return sum(hits) / len(hits)


def pope(answers, truths):
    tp = sum(a == "yes" and t == "yes" for a, t in zip(answers, truths, strict=True))
    said_yes = answers.count("yes")
    truly_yes = truths.count("yes")
    precision = tp / said_yes if said_yes else 0.0
    recall = tp / truly_yes if truly_yes else 0.0
    return {"accuracy": sum(a == t for a, t in zip(answers, truths, strict=True)) / len(truths),
            "precision": precision, "recall": recall,
            "f1": 2 * tp / (said_yes + truly_yes) if said_yes + truly_yes else 0.0,
            "yes_ratio": said_yes / len(answers)}


def frechet(mean_a, cov_a, mean_b, cov_b):
    root = scipy.linalg.sqrtm(cov_a.numpy() @ cov_b.numpy()).real
    return float((mean_a - mean_b).pow(2).sum() + cov_a.trace() + cov_b.trace()) - 2 * float(np.trace(root))


def _frechet_eigvals(mean_a, cov_a, mean_b, cov_b):
    product_eigenvalues = torch.linalg.eigvals(cov_a @ cov_b).real.clamp(min=0)  # same as A^1/2 B A^1/2
    return float((mean_a - mean_b).pow(2).sum() + cov_a.trace() + cov_b.trace()
                 - 2 * product_eigenvalues.sqrt().sum())


def overlap(test_texts, train_texts, n):
    seen = {tuple(t.split()[i:i + n]) for t in train_texts for i in range(len(t.split()) - n + 1)}
    out = []
    for text in test_texts:
        words = text.split()
        grams = [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]
        out.append(None if not grams else float(np.mean([g in seen for g in grams])))
    return out


WRONG = {
    "9.1": [
        (lambda h, r: bleu(h, r) * 100, "expected"),
        (lambda h, r: bleu(h, r[:1]), "expected"),
        (lambda h, r: [bleu(h, r)], "list"),
    ],
    "9.2": [
        (lambda s, r, k: expected_recall(s, r, k) * 100, "expected"),
        (lambda s, r, k: expected_recall(s, r, 1), "expected"),
        (lambda s, r, k: torch.tensor([expected_recall(s, r, k)] * 2), "tensor"),
    ],
    "9.3": [
        (lambda a, t: {k: 100 * v for k, v in pope(a, t).items()}, "expected"),
        (lambda a, t: {k: v for k, v in pope(a, t).items() if k != "yes_ratio"}, "yes_ratio"),
        (lambda a, t: list(pope(a, t).values()), "list"),
    ],
    "9.4": [
        (lambda ma, ca, mb, cb: math.sqrt(max(0.0, frechet(ma, ca, mb, cb))), "expected"),
        (lambda ma, ca, mb, cb: frechet(ma, ca, mb, cb) / ma.numel(), "expected"),
        (lambda ma, ca, mb, cb: frechet(ma, cb, mb, ca) + 1.0, "expected"),
    ],
    "9.5": [
        (lambda a, b, n: [1.0 - x if x is not None else None for x in overlap(a, b, n)], "expected"),
        (lambda a, b, n: overlap(a, b, n)[1:], "length"),
        (lambda a, b, n: overlap(a, b, n + 1), "expected"),
    ],
}

CORRECT = {
    "9.1": [bleu, _bleu_numpy],
    "9.2": [expected_recall, _expected_recall_sort],
    "9.3": [pope],
    "9.4": [frechet, _frechet_eigvals],
    "9.5": [overlap],
}
