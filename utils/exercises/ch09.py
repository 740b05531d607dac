"""Exercises of chapter 9, Evaluation. Checks compare with references written independently of the
solutions (BLEU's n-grams matched position by position in plain Python, tie-broken recall averaged
over every ordering of the tied items, POPE's counts taken one answer at a time, the Frechet distance
through scipy's matrix square root, n-gram overlap by scanning the training words), never with a copy
of the solution."""

from __future__ import annotations

import itertools
import math

import numpy as np
import scipy.linalg
import torch

from utils.exercises.core import Case, Exercise, Mistake, chapter_progress

# ---------------------------------------------------------------- 9.1 sentence BLEU


def _count(words, gram):
    n = len(gram)
    return sum(1 for i in range(len(words) - n + 1) if tuple(words[i:i + n]) == gram)


def _bleu_reference(hypothesis, references, clip=True, closest=True, geometric=True, brevity=True,
                    shortest=False, summed=False):
    precisions = []
    for n in range(1, 5):
        grams = [tuple(hypothesis[i:i + n]) for i in range(len(hypothesis) - n + 1)]
        if not grams:
            return 0.0
        matched = 0
        for gram in set(grams):
            in_hypothesis = _count(hypothesis, gram)
            best = (sum if summed else max)(_count(r, gram) for r in references)
            matched += min(in_hypothesis, best) if clip else (in_hypothesis if best > 0 else 0)
        precisions.append(matched / len(grams))
    if min(precisions) == 0:
        return 0.0
    if shortest:
        ref_length = min(len(r) for r in references)
    elif closest:
        ref_length = sorted((abs(len(r) - len(hypothesis)), len(r)) for r in references)[0][1]
    else:
        ref_length = sum(len(r) for r in references) / len(references)
    penalty = 1.0 if (len(hypothesis) > ref_length or not brevity) else math.exp(1 - ref_length / len(hypothesis))
    mean = math.exp(sum(math.log(p) for p in precisions) / 4) if geometric else sum(precisions) / 4
    return penalty * mean


def _bleu_cases() -> list[Case]:
    specs = [
        ("a large red circle left of a small blue square", ["a large red circle left of a small blue square"],
         "a caption identical to its one reference"),
        ("a large red circle left of a small blue square",
         ["a large red circle right of a small blue square", "there is a red circle and a blue square"],
         "one word changed, two references"),
        ("a red circle a red circle a red circle", ["a red circle left of a red circle"],
         "repeated n-grams: a reference allows each only as often as it has it"),
        ("a small red circle", ["a small red circle above a large green cross , with a blue square",
                                 "a small red circle and a cross"],
         "a short caption: the closest reference is 7 words long"),
        ("a large red circle left of a square",
         ["a large red circle left of a blue square", "a red circle left of a square"],
         "two references equally close in length (9 and 7 words around 8)"),
        ("a photo of a circle", ["a large red circle"], "no 4-gram in common: BLEU is 0"),
        ("a large red circle left of a cross", ["a large red circle left of a blue cross",
                                                "a red circle"],
         "references of 9 and 3 words: the closest (9) is longer than the hypothesis (8)"),
        ("a red circle a red circle a red circle", ["a red circle a cross", "a red circle and a cross"],
         "a phrase said three times, against two references that each say it once"),
        ("red circle", ["a red circle"], "fewer than 4 words: no 4-gram at all, BLEU is 0"),
        ("a large yellow cross below a small green triangle , with a large blue circle",
         ["a large yellow cross below a small green triangle", "a yellow cross and a green triangle",
          "a large blue circle and a yellow cross below a green triangle"],
         "a longer caption against three references"),
    ]
    return [Case(inputs=(h.split(), [r.split() for r in refs]), expected=_bleu_reference(h.split(),
                 [r.split() for r in refs]), label=label) for h, refs, label in specs]


sentence_bleu = Exercise(
    key="9.1",
    title="BLEU of one sentence",
    cases=_bleu_cases,
    hints=[
        "For n = 1..4 count the hypothesis's n-grams (tuples of n consecutive words) and how many of "
        "them the references contain. An n-gram that appears c times in the hypothesis is credited "
        "at most as many times as it appears in the one reference that has it most (clipping).",
        "Each precision p_n is clipped matches over the hypothesis's number of n-grams. If any p_n is "
        "0 (or the hypothesis has no 4-gram), BLEU is 0. Otherwise take the geometric mean "
        "exp(mean of log p_n).",
        "The brevity penalty uses r, the length of the reference closest in length to the hypothesis "
        "(the shorter one on a tie): 1 if len(hypothesis) > r, else exp(1 - r / len(hypothesis)). "
        "An identical single reference gives exactly 1.0.",
    ],
    mistakes=[
        Mistake("did not clip the counts", "A repeated n-gram is credited at most as often as the "
                "reference that has it most contains it ('the the the' must not match one 'the' three "
                "times).", lambda h, r: _bleu_reference(h, r, clip=False)),
        Mistake("used the shortest reference", "r is the length of the reference *closest* to the "
                "hypothesis's length (the shorter only on a tie), not the shortest reference.",
                lambda h, r: _bleu_reference(h, r, shortest=True)),
        Mistake("added the references' counts", "An n-gram is credited at most as many times as it "
                "occurs in the *one* reference where it occurs most: take the maximum over references, "
                "not their sum.", lambda h, r: _bleu_reference(h, r, summed=True)),
        Mistake("used the mean reference length", "The brevity penalty uses the length of the "
                "reference closest to the hypothesis's length, not the average.",
                lambda h, r: _bleu_reference(h, r, closest=False)),
        Mistake("took the arithmetic mean of the precisions", "BLEU combines the four precisions "
                "with a geometric mean: exp of the mean of their logs.",
                lambda h, r: _bleu_reference(h, r, geometric=False)),
        Mistake("left out the brevity penalty", "Without it a two-word hypothesis could score "
                "perfectly; multiply by exp(1 - r / c) when the hypothesis is not longer than r.",
                lambda h, r: _bleu_reference(h, r, brevity=False)),
    ],
    atol=1e-9,
    rtol=1e-7,
)

# ---------------------------------------------------------------- 9.2 Recall@K with ties


def _expected_recall_reference(scores, right, k):
    total = 0.0
    for row, target in zip(scores.tolist(), right.tolist(), strict=True):
        mine = row[target]
        above = sum(1 for j, s in enumerate(row) if j != target and s > mine)
        tied = [j for j, s in enumerate(row) if j != target and s == mine]
        orders = list(itertools.permutations(tied + [target])) if len(tied) <= 6 else None
        if orders is not None:  # every order of the tied block, equally likely
            hits = sum(1 for order in orders if above + order.index(target) + 1 <= k)
            total += hits / len(orders)
        else:
            total += sum(1 for position in range(len(tied) + 1) if above + position + 1 <= k) / (len(tied) + 1)
    return total / len(right)


def _recall_cases() -> list[Case]:
    generator = torch.Generator().manual_seed(92)
    cases = []
    for q, g, levels, k, label in (
        (6, 8, 100, 1, "6 queries, 8 items, no ties (continuous scores), k = 1"),
        (8, 10, 4, 1, "8 queries, 10 items scored 0..3: many ties, k = 1"),
        (8, 10, 4, 3, "the same kind of scores, k = 3"),
        (5, 12, 3, 5, "5 queries, 12 items scored 0..2, k = 5"),
    ):
        scores = torch.randint(0, levels, (q, g), generator=generator).double()
        if levels == 100:
            scores = torch.rand(q, g, generator=generator, dtype=torch.float64)
        right = torch.randint(0, g, (q,), generator=generator)
        cases.append(Case(inputs=(scores, right, k), expected=_expected_recall_reference(scores, right, k),
                          label=label))
    scores = torch.tensor([[1.0, 1.0, 1.0, 1.0], [2.0, 1.0, 1.0, 0.0], [0.0, 0.0, 0.0, 0.0]], dtype=torch.float64)
    right = torch.tensor([0, 1, 3])
    cases.append(Case(inputs=(scores, right, 2), expected=_expected_recall_reference(scores, right, 2),
                      label="hand-made: all 4 tied; one item above and one tied; all tied, k = 2"))
    return cases


def _recall_with(scores, right, k, mode):
    mine = scores.gather(1, right[:, None])  # [Q, 1]
    above = (scores > mine).sum(1)
    tied = (scores == mine).sum(1) - 1
    if mode == "optimistic":
        return (above < k).double().mean().item()
    if mode == "pessimistic":
        return (above + tied < k).double().mean().item()
    top = scores.topk(k, dim=1).indices
    return (top == right[:, None]).any(1).double().mean().item()


expected_recall_at_k = Exercise(
    key="9.2",
    title="Recall@K when scores tie",
    cases=_recall_cases,
    hints=[
        "For one query, let s be the right item's score. Items scoring more than s are certainly "
        "ranked above it; items scoring exactly s share its place in a random order.",
        "If `above` items score strictly higher and `tied` others score the same, the right item is "
        "equally likely to land at each of the tied + 1 places after the `above` ones. How many of "
        "those places are among the first k?",
        "Average that chance over the queries. Check yourself: without ties it equals ordinary "
        "Recall@K; with every score equal it is k / G for a gallery of G items (when k <= G).",
    ],
    mistakes=[
        Mistake("counted every tie as a win", "Tied items are ranked in random order, so a tie is "
                "only sometimes in your favour: that is the optimistic bound, not the expectation.",
                lambda s, r, k: _recall_with(s, r, k, "optimistic")),
        Mistake("counted every tie as a loss", "That is the pessimistic bound; with random "
                "tie-breaking the right item lands anywhere in its tied block.",
                lambda s, r, k: _recall_with(s, r, k, "pessimistic")),
        Mistake("used topk", "torch.topk breaks ties by its own implementation's order, not at random: "
                "compute the probability instead.", lambda s, r, k: _recall_with(s, r, k, "topk")),
    ],
    atol=1e-9,
    rtol=1e-7,
)

# ---------------------------------------------------------------- 9.3 POPE metrics


def _pope_reference(answers, truths):
    tp = fp = fn = tn = 0
    for said, truth in zip(answers, truths, strict=True):
        if said == "yes" and truth == "yes":
            tp += 1
        elif said == "yes":
            fp += 1
        elif truth == "yes":
            fn += 1
        else:
            tn += 1
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"accuracy": (tp + tn) / len(answers), "precision": precision, "recall": recall, "f1": f1,
            "yes_ratio": (tp + fp) / len(answers)}


def _pope_cases() -> list[Case]:
    rng = np.random.default_rng(93)
    cases = []
    for n, p_yes_when_yes, p_yes_when_no, label in (
        (40, 0.9, 0.3, "40 balanced questions, a model that says yes too often"),
        (30, 0.5, 0.05, "30 balanced questions, a cautious model"),
        (24, 1.0, 1.0, "24 balanced questions, a model that always says yes"),
        (20, 0.0, 0.0, "20 balanced questions, a model that never says yes"),
    ):
        truths = ["yes", "no"] * (n // 2)
        answers = ["yes" if rng.random() < (p_yes_when_yes if t == "yes" else p_yes_when_no) else "no"
                   for t in truths]
        cases.append(Case(inputs=(answers, truths), expected=_pope_reference(answers, truths), label=label))
    truths = ["yes", "yes", "no", "no", "no", "no"]
    answers = ["yes", "no", "yes", "no", "no", "no"]
    cases.append(Case(inputs=(answers, truths), expected=_pope_reference(answers, truths),
                      label="hand-made: 2 yes and 4 no questions, one hit, one false yes"))
    return cases


def _pope_no_positive(answers, truths):
    flipped = ["no" if a == "yes" else "yes" for a in answers]
    flipped_truths = ["no" if t == "yes" else "yes" for t in truths]
    result = _pope_reference(flipped, flipped_truths)
    result["yes_ratio"] = _pope_reference(answers, truths)["yes_ratio"]
    return result


def _pope_truth_ratio(answers, truths):
    result = _pope_reference(answers, truths)
    result["yes_ratio"] = sum(t == "yes" for t in truths) / len(truths)
    return result


def _pope_arithmetic_f1(answers, truths):
    result = _pope_reference(answers, truths)
    result["f1"] = (result["precision"] + result["recall"]) / 2
    return result


def _pope_swapped(answers, truths):
    result = _pope_reference(answers, truths)
    result["precision"], result["recall"] = result["recall"], result["precision"]
    return result


pope_metrics = Exercise(
    key="9.3",
    title="POPE's five numbers",
    cases=_pope_cases,
    hints=[
        "'yes' is the positive class. Count true positives (said yes, truth yes), false positives "
        "(said yes, truth no), false negatives (said no, truth yes) and true negatives.",
        "precision = TP / (TP + FP), recall = TP / (TP + FN), F1 their harmonic mean, accuracy the "
        "share of answers equal to the truth, yes_ratio the share of answers that are 'yes'. "
        "Return 0.0 for a precision or F1 whose denominator is 0.",
        "Check yourself: a model that always says 'yes' on balanced questions gets accuracy 0.5, "
        "precision 0.5, recall 1.0, F1 2/3 and yes_ratio 1.0.",
    ],
    mistakes=[
        Mistake("took 'no' as the positive class", "POPE scores the detection of objects: 'yes' is "
                "the positive answer.", _pope_no_positive),
        Mistake("computed the yes-ratio of the truths", "The yes-ratio is the share of the model's "
                "answers that are 'yes' (for balanced questions, 0.5 is unbiased).", _pope_truth_ratio),
        Mistake("averaged precision and recall", "F1 is their harmonic mean, 2PR / (P + R).",
                _pope_arithmetic_f1),
        Mistake("swapped precision and recall", "Precision divides the hits by everything the model "
                "said 'yes' to; recall divides them by everything whose truth is 'yes'.", _pope_swapped),
    ],
    atol=1e-9,
    rtol=1e-7,
)

# ---------------------------------------------------------------- 9.4 the Frechet distance


def _frechet_reference(mean_a, cov_a, mean_b, cov_b, mode="right"):
    a, b = cov_a.numpy(), cov_b.numpy()
    root = scipy.linalg.sqrtm(a @ b).real  # tr((A B)^1/2) = tr((A^1/2 B A^1/2)^1/2)
    gap = float(((mean_a - mean_b) ** 2).sum())
    if mode == "no_mean":
        gap = 0.0
    if mode == "elementwise":
        root = np.sqrt(np.abs(a * b))
    if mode == "product_of_roots":
        root = scipy.linalg.sqrtm(a).real @ scipy.linalg.sqrtm(b).real
    if mode == "no_two":
        return gap + float(np.trace(a) + np.trace(b) - np.trace(root))
    return gap + float(np.trace(a) + np.trace(b) - 2 * np.trace(root))


def _random_cov(generator, d, rank=None):
    factor = torch.randn(d, rank or d, generator=generator, dtype=torch.float64)
    return factor @ factor.T / (rank or d) + (0.01 if rank else 0.1) * torch.eye(d, dtype=torch.float64)


def _frechet_cases() -> list[Case]:
    generator = torch.Generator().manual_seed(94)
    cases = []
    for d, label in ((3, "3 dimensions, full covariances"), (6, "6 dimensions, full covariances")):
        mean_a, mean_b = torch.randn(d, generator=generator, dtype=torch.float64), torch.randn(
            d, generator=generator, dtype=torch.float64)
        cov_a, cov_b = _random_cov(generator, d), _random_cov(generator, d)
        cases.append(Case(inputs=(mean_a, cov_a, mean_b, cov_b),
                          expected=_frechet_reference(mean_a, cov_a, mean_b, cov_b), label=label))
    mean = torch.randn(4, generator=generator, dtype=torch.float64)
    cov = _random_cov(generator, 4)
    cases.append(Case(inputs=(mean, cov, mean.clone(), cov.clone()), expected=0.0,
                      label="two identical Gaussians: the distance is 0"))
    diag_a, diag_b = torch.tensor([1.0, 4.0, 9.0], dtype=torch.float64), torch.tensor([4.0, 1.0, 1.0],
                                                                                        dtype=torch.float64)
    zero = torch.zeros(3, dtype=torch.float64)
    cases.append(Case(inputs=(zero, torch.diag(diag_a), zero + 1, torch.diag(diag_b)),
                      expected=3.0 + float(((diag_a.sqrt() - diag_b.sqrt()) ** 2).sum()),
                      label="diagonal covariances: 3 + sum of (sqrt a_i - sqrt b_i)^2"))
    mean_a, mean_b = torch.randn(5, generator=generator, dtype=torch.float64), torch.zeros(5, dtype=torch.float64)
    cov_a, cov_b = _random_cov(generator, 5), _random_cov(generator, 5, rank=2)
    cases.append(Case(inputs=(mean_a, cov_a, mean_b, cov_b),
                      expected=_frechet_reference(mean_a, cov_a, mean_b, cov_b),
                      label="5 dimensions, the second covariance nearly of rank 2 (few samples)"))
    return cases


def _frechet_as(mode):
    return lambda ma, ca, mb, cb: _frechet_reference(ma, ca, mb, cb, mode)


gaussian_frechet = Exercise(
    key="9.4",
    title="The Frechet distance between two Gaussians",
    cases=_frechet_cases,
    hints=[
        "The distance is |mean_a - mean_b|^2 + tr(cov_a) + tr(cov_b) - 2 tr(M), where M is the "
        "matrix square root of cov_a^1/2 cov_b cov_a^1/2 (a symmetric positive semi-definite matrix).",
        "A symmetric matrix has an eigendecomposition with real eigenvalues (torch.linalg.eigh). "
        "What do you do to the eigenvalues to get its square root? You never need M itself: its "
        "trace is a sum over eigenvalues. Rounding can make tiny eigenvalues negative.",
        "Check yourself: with diagonal covariances the answer is |mean_a - mean_b|^2 + "
        "sum_i (sqrt(a_i) - sqrt(b_i))^2, and two identical Gaussians give 0. Return a Python float.",
    ],
    mistakes=[
        Mistake("left out the means", "The first term, |mean_a - mean_b|^2, compares the centres of "
                "the two Gaussians.", _frechet_as("no_mean")),
        Mistake("took an element-wise square root", "The square root is of the matrix product (a "
                "matrix function), not of each entry: use an eigendecomposition.", _frechet_as("elementwise")),
        Mistake("multiplied the two roots", "tr(cov_a^1/2 cov_b^1/2) is not tr((cov_a^1/2 cov_b "
                "cov_a^1/2)^1/2) unless the matrices commute.", _frechet_as("product_of_roots")),
        Mistake("forgot the factor 2", "The cross term is subtracted twice: - 2 tr(M).", _frechet_as("no_two")),
    ],
    atol=1e-4,
    rtol=1e-5,
)

# ---------------------------------------------------------------- 9.5 n-gram overlap


def _overlap_reference(test_texts, train_texts, n, distinct=False, none_for_short=True, joined=False):
    streams = [" ".join(train_texts).split()] if joined else [t.split() for t in train_texts]
    seen = set()
    for words in streams:
        for i in range(len(words) - n + 1):
            seen.add(tuple(words[i:i + n]))
    result = []
    for text in test_texts:
        words = text.split()
        grams = [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]
        if distinct:
            grams = sorted(set(grams))
        if not grams:
            result.append(None if none_for_short else 0.0)
            continue
        result.append(sum(g in seen for g in grams) / len(grams))
    return result


def _overlap_cases() -> list[Case]:
    train = ["a large red circle left of a small blue square", "a small green cross above a large red circle",
             "a large red circle left of a large red circle"]
    tests = [
        ("a large red circle left of a small blue square", "copied from training"),
        ("a small blue square right of a large red circle", "the same objects, another order"),
        ("a red circle", "too short for 4-grams"),
        ("circle left of a large red circle left of a", "repeats a 4-gram that training has"),
        ("square a small green cross above", "4-grams that exist only across two training texts"),
    ]
    cases = [Case(inputs=([t for t, _ in tests], train, 4), expected=_overlap_reference([t for t, _ in tests],
                  train, 4), label="5 test captions against 3 training captions, n = 4")]
    cases.append(Case(inputs=([t for t, _ in tests], train, 2),
                      expected=_overlap_reference([t for t, _ in tests], train, 2), label="the same with n = 2"))
    letters = ["a b c d e f", "a b", "f e d c b a", "x b c d b c d y"]
    cases.append(Case(inputs=(letters, ["b c d", "x y z", "d c"], 3),
                      expected=_overlap_reference(letters, ["b c d", "x y z", "d c"], 3),
                      label="letters as words, n = 3; the last text repeats a trigram"))
    return cases


ngram_overlap = Exercise(
    key="9.5",
    title="An n-gram contamination check",
    cases=_overlap_cases,
    hints=[
        "Words are the whitespace-separated pieces of a text (text.split()). Collect every n-gram (a "
        "tuple of n consecutive words) of each training text into one set; n-grams never run across "
        "two training texts.",
        "For a test text, list its n-grams position by position (a repeated n-gram counts each time) "
        "and return the share of them that are in the set. A text with fewer than n words has no "
        "n-gram: return None for it, not 0.",
        "The result is a list with one entry per test text, in order. A test text copied from the "
        "training texts gets 1.0.",
    ],
    mistakes=[
        Mistake("counted distinct n-grams", "Count every position: a repeated n-gram counts each time "
                "it occurs.", lambda a, b, n: _overlap_reference(a, b, n, distinct=True)),
        Mistake("returned 0 for texts too short to check", "A text with fewer than n words cannot be "
                "checked: None says so, 0.0 would claim it is clean.",
                lambda a, b, n: _overlap_reference(a, b, n, none_for_short=False)),
        Mistake("joined the training texts", "n-grams must not run across two training texts: collect "
                "each text's n-grams separately.", lambda a, b, n: _overlap_reference(a, b, n, joined=True)),
    ],
    atol=1e-12,
    rtol=1e-9,
)


def progress():
    """This session's results for the chapter's exercises, as a table."""
    return chapter_progress(9)
