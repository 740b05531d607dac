"""Chapter 6: hand-written answers a learner might give, for the checks and the mutation harness.

WRONG[key]: (answer, words its rejection must contain); CORRECT[key]: answers written differently
from the reference solution that must pass."""

from __future__ import annotations

import torch


def breakdown(references, hypotheses):
    totals = {"substitutions": 0, "deletions": 0, "insertions": 0}
    words = 0
    for reference, hypothesis in zip(references, hypotheses, strict=True):
        a, b = reference.split(), hypothesis.split()
        d = [[max(i, j) if min(i, j) == 0 else 0 for j in range(len(b) + 1)] for i in range(len(a) + 1)]
        for i in range(1, len(a) + 1):
            for j in range(1, len(b) + 1):
                d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] != b[j - 1]))
        i, j = len(a), len(b)
        while i > 0 or j > 0:
            if i > 0 and j > 0 and d[i][j] - d[i - 1][j - 1] == int(a[i - 1] != b[j - 1]):
                totals["substitutions"] += a[i - 1] != b[j - 1]
                i, j = i - 1, j - 1
            elif i > 0 and d[i][j] - d[i - 1][j] == 1:
                totals["deletions"] += 1
                i -= 1
            else:
                totals["insertions"] += 1
                j -= 1
        words += len(a)
    return {**totals, "wer": 100.0 * sum(totals.values()) / words}


def _breakdown_numpy(references, hypotheses):
    import numpy as np

    s = d_count = ins = words = 0
    for reference, hypothesis in zip(references, hypotheses, strict=True):
        a, b = reference.split(), hypothesis.split()
        table = np.zeros((len(a) + 1, len(b) + 1), dtype=int)
        table[:, 0], table[0, :] = np.arange(len(a) + 1), np.arange(len(b) + 1)
        for i in range(1, len(a) + 1):
            for j in range(1, len(b) + 1):
                table[i, j] = min(table[i - 1, j] + 1, table[i, j - 1] + 1,
                                  table[i - 1, j - 1] + (a[i - 1] != b[j - 1]))
        i, j = len(a), len(b)
        while (i, j) != (0, 0):
            cost = int(i and j and a[i - 1] != b[j - 1])
            if i and j and table[i, j] == table[i - 1, j - 1] + cost:
                s, i, j = s + cost, i - 1, j - 1
            elif i and table[i, j] == table[i - 1, j] + 1:
                d_count, i = d_count + 1, i - 1
            else:
                ins, j = ins + 1, j - 1
        words += len(a)
    return {"substitutions": s, "deletions": d_count, "insertions": ins, "wer": 100 * (s + d_count + ins) / words}


def greedy(log_probs, lengths, alphabet, blank):
    texts = []
    for row in range(log_probs.shape[0]):
        best = log_probs[row, : int(lengths[row])].argmax(-1)
        kept, previous = [], None
        for output in best.tolist():
            if output != previous and output != blank:
                kept.append(alphabet[output if output < blank else output - 1])
            previous = output
        texts.append("".join(kept))
    return texts


def _greedy_tensor(log_probs, lengths, alphabet, blank):
    out = []
    for row, length in zip(log_probs.argmax(-1), lengths, strict=True):
        path = torch.unique_consecutive(row[: int(length)])
        path = path[path != blank]
        out.append("".join(alphabet[i - (i > blank)] for i in path.tolist()))
    return out


def clip(total, count, stride):
    span = (count - 1) * stride + 1
    start = max(0, (total - span) // 2)
    return [min(start + stride * i, total - 1) for i in range(count)]


def _clip_tensor(total, count, stride):
    span = (count - 1) * stride + 1
    start = (total - span) // 2 if span <= total else 0
    return (start + stride * torch.arange(count)).clamp(max=total - 1).tolist()


def stage(residual, codebook):
    codes = torch.cdist(residual, codebook).argmin(1)
    return codes, codebook[codes], residual - codebook[codes]


def _stage_expanded(residual, codebook):
    # |r - c|^2 = |r|^2 - 2 r.c + |c|^2; |r|^2 is the same for every codeword
    codes = ((codebook**2).sum(1)[None] - 2 * residual @ codebook.T).argmin(1)
    quantised = codebook.index_select(0, codes)
    return codes, quantised, residual - quantised


def apparent(speed, gap, world):
    shift = (speed * gap) % world
    return shift - world if shift > world / 2 else shift


def _apparent_round(speed, gap, world):
    shift = speed * gap
    k = -((shift - world / 2) // world) - 1 if shift > world / 2 else 0
    shift += k * world
    while shift <= -world / 2:
        shift += world
    return float(shift)


WRONG = {
    "6.1": [
        (lambda r, h: {k: v for k, v in breakdown(r, h).items() if k != "insertions"}, "insertions"),
        (lambda r, h: list(breakdown(r, h).values()), "dict"),
        (lambda r, h: {**breakdown(r, h), "substitutions": 0}, "expected"),
    ],
    "6.2": [
        (lambda lp, n, a, b: " ".join(greedy(lp, n, a, b)), "str"),
        (lambda lp, n, a, b: [t.upper() for t in greedy(lp, n, a, b)], "expected"),
        (lambda lp, n, a, b: greedy(lp, n, a, b)[:1], "expected"),
    ],
    "6.3": [
        (lambda t, c, s: clip(t, c, s)[::-1], "expected"),
        (lambda t, c, s: clip(t, c, s)[:-1], "expected"),
        (lambda t, c, s: [i + 1 for i in clip(t, c, s)], "expected"),
    ],
    "6.5": [
        (lambda s, g, w: -apparent(s, g, w), "expected"),
        (lambda s, g, w: str(apparent(s, g, w)), "str"),
        (lambda s, g, w: apparent(s, g, w) / w, "expected"),
    ],
    "6.4": [
        (lambda r, c: stage(r, c)[:2], "expected"),
        (lambda r, c: (stage(r, c)[0].float(), *stage(r, c)[1:]), "expected"),
        (lambda r, c: (torch.cdist(r, c).argmax(1), c[torch.cdist(r, c).argmax(1)],
                       r - c[torch.cdist(r, c).argmax(1)]), "expected"),
    ],
}

CORRECT = {
    "6.1": [breakdown, _breakdown_numpy],
    "6.2": [greedy, _greedy_tensor],
    "6.3": [clip, _clip_tensor],
    "6.4": [stage, _stage_expanded],
    "6.5": [apparent, _apparent_round],
}
