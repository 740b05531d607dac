# %% [markdown]
# # Solutions to chapter 9
#
# Reference solutions to the exercises of {doc}`../lessons/09_evaluation`. Each solution is
# collapsed: open it only after you have tried the exercise and its hints. Running this notebook
# shows every check passing.
#
# %%
import numpy as np
import torch

from utils.exercises import ch09

#
# %% [markdown]
# ## Exercise 9.1 - BLEU of one sentence
#
# %% tags=hide-input
# Solution 9.1
import math
from collections import Counter


def sentence_bleu(hypothesis, references):
    """Word lists -> BLEU in [0, 1]: clipped precisions, geometric mean, brevity."""
    log_precisions = []
    for n in range(1, 5):
        grams = Counter(
            tuple(hypothesis[i : i + n]) for i in range(len(hypothesis) - n + 1)
        )
        if not grams:
            return 0.0  # shorter than n words
        allowed = Counter()
        for reference in references:  # each n-gram as often as one reference has it
            allowed |= Counter(
                tuple(reference[i : i + n]) for i in range(len(reference) - n + 1)
            )
        matched = sum(min(count, allowed[gram]) for gram, count in grams.items())
        if matched == 0:
            return 0.0
        log_precisions.append(math.log(matched / sum(grams.values())))
    closest = min(references, key=lambda r: (abs(len(r) - len(hypothesis)), len(r)))
    c, r = len(hypothesis), len(closest)
    brevity = 1.0 if c > r else math.exp(1 - r / c)
    return brevity * math.exp(sum(log_precisions) / 4)


#
# %% tags=nbval-check-output
ch09.sentence_bleu.check(sentence_bleu)
#
# %% [markdown]
# ## Exercise 9.2 - Recall@K when scores tie
#
# %% tags=hide-input
# Solution 9.2
import torch


def expected_recall_at_k(scores, right, k):
    """[Q, G] scores, [Q] right indices -> expected Recall@k, ties broken at random."""
    mine = scores.gather(1, right[:, None])  # [Q, 1]: the right item's score
    above = (scores > mine).sum(1)  # [Q]: certainly ranked higher
    tied = (scores == mine).sum(1) - 1  # [Q]: the others sharing its score
    fits = (k - above).clamp(min=0, max=None)  # places left in the top k
    chance = torch.minimum(fits, tied + 1).double() / (tied + 1)
    return chance.mean().item()


#
# %% tags=nbval-check-output
ch09.expected_recall_at_k.check(expected_recall_at_k)
#
# %% [markdown]
# ## Exercise 9.3 - POPE's five numbers
#
# %% tags=hide-input
# Solution 9.3
import numpy as np


def pope_metrics(answers, truths):
    """Lists of 'yes'/'no' -> accuracy, precision, recall, f1, yes_ratio."""
    said = np.array(answers) == "yes"
    truth = np.array(truths) == "yes"
    hits = int((said & truth).sum())
    precision = hits / said.sum() if said.sum() else 0.0
    recall = hits / truth.sum() if truth.sum() else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "accuracy": float((said == truth).mean()),
        "precision": float(precision),
        "recall": float(recall),
        "f1": float(f1),
        "yes_ratio": float(said.mean()),
    }


#
# %% tags=nbval-check-output
ch09.pope_metrics.check(pope_metrics)
#
# %% [markdown]
# ## Exercise 9.4 - The Frechet distance between two Gaussians
#
# %% tags=hide-input
# Solution 9.4
import torch


def psd_root(matrix):
    """The square root of a symmetric positive semi-definite matrix."""
    values, vectors = torch.linalg.eigh((matrix + matrix.T) / 2)
    return vectors @ torch.diag(values.clamp(min=0).sqrt()) @ vectors.T


def gaussian_frechet(mean_a, cov_a, mean_b, cov_b):
    """|mu_a - mu_b|^2 + tr(A) + tr(B) - 2 tr((A^1/2 B A^1/2)^1/2), as a float."""
    root_a, root_b = psd_root(cov_a), psd_root(cov_b)
    cov_a, cov_b = (
        root_a @ root_a,
        root_b @ root_b,
    )  # exactly symmetric, no negative eigenvalue
    inner = root_a @ cov_b @ root_a
    trace_root = psd_root(inner).trace()
    gap = (mean_a - mean_b).square().sum()
    return float(gap + cov_a.trace() + cov_b.trace() - 2 * trace_root)


#
# %% tags=nbval-check-output
ch09.gaussian_frechet.check(gaussian_frechet)


#
# %% [markdown]
# ## Exercise 9.5 - An n-gram contamination check
#
# %% tags=hide-input
# Solution 9.5
def ngram_overlap(test_texts, train_texts, n):
    """Per test text: the share of its n-grams seen in training (None: too short)."""
    seen = set()
    for text in train_texts:  # each text alone: no n-gram across two texts
        words = text.split()
        seen.update(tuple(words[i : i + n]) for i in range(len(words) - n + 1))
    shares = []
    for text in test_texts:
        words = text.split()
        grams = [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]
        shares.append(sum(g in seen for g in grams) / len(grams) if grams else None)
    return shares


#
# %% tags=nbval-check-output
ch09.ngram_overlap.check(ngram_overlap)
#
# %%
ch09.progress()
