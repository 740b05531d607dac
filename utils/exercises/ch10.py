"""Exercises of chapter 10, Frontier topics and production systems. Checks compare with references
written independently of the solutions (late interaction and token pruning by explicit loops over
queries, pages and patches, action bins by walking the bin edges, the FGSM step from the gradient
of a hand-written softmax cross-entropy), never with a copy of the solution. Exercise 10.4 is the
*targeted* FGSM step, which section 10.5 does not write out."""

from __future__ import annotations

import math

import torch

from utils.exercises.compare import compare_values
from utils.exercises.core import Case, Exercise, Mistake, chapter_progress

# ---------------------------------------------------------------- 10.1 late interaction (MaxSim)


def _maxsim_reference(query, patches, patch_mask, mode="right"):
    scores = []
    for page in range(patches.shape[0]):
        real = [m for m in range(patches.shape[1]) if bool(patch_mask[page, m])]
        if mode == "patch_sum":  # every patch's best query vector, summed over patches
            total = sum(max(float(query[i] @ patches[page, m]) for i in range(query.shape[0]))
                        for m in real)
        elif mode == "one_best":  # only the single best (query vector, patch) pair
            total = max(float(query[i] @ patches[page, m]) for i in range(query.shape[0])
                        for m in real)
        elif mode == "mean_query":  # averaged over query vectors instead of summed
            total = sum(max(float(query[i] @ patches[page, m]) for m in real)
                        for i in range(query.shape[0])) / query.shape[0]
        elif mode == "pooled":  # the mean patch: a single vector per page
            mean = sum(patches[page, m] for m in real) / len(real)
            total = sum(float(query[i] @ mean) for i in range(query.shape[0]))
        elif mode == "zero_fill":  # padding set to 0 before the max: 0 beats negative matches
            total = sum(max([0.0] * (len(real) < patches.shape[1])
                            + [float(query[i] @ patches[page, m]) for m in real])
                        for i in range(query.shape[0]))
        elif mode == "no_mask":  # padding patches allowed to win
            total = sum(max(float(query[i] @ patches[page, m]) for m in range(patches.shape[1]))
                        for i in range(query.shape[0]))
        else:
            total = sum(max(float(query[i] @ patches[page, m]) for m in real)
                        for i in range(query.shape[0]))
        scores.append(total)
    return torch.tensor(scores, dtype=torch.float64).to(query.dtype)


def _unit(generator, *shape):
    vectors = torch.randn(*shape, generator=generator, dtype=torch.float64)
    return vectors / vectors.norm(dim=-1, keepdim=True)


def _maxsim_cases() -> list[Case]:
    generator = torch.Generator().manual_seed(101)
    cases = []
    for n, pages, patches, label in (
        (1, 3, 4, "one query vector, 3 pages of 4 patches"),
        (2, 4, 6, "two query vectors (two phrases), 4 pages of 6 patches"),
        (5, 2, 9, "five query vectors, 2 pages of 9 patches"),
    ):
        query, page_patches = _unit(generator, n, 8), _unit(generator, pages, patches, 8)
        mask = torch.ones(pages, patches, dtype=torch.bool)
        cases.append(Case(inputs=(query, page_patches, mask),
                          expected=_maxsim_reference(query, page_patches, mask), label=label))
    query, page_patches = _unit(generator, 3, 8), _unit(generator, 4, 5, 8)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0], [1, 1, 1, 1, 0]],
                        dtype=torch.bool)
    page_patches[~mask] = 0.0
    page_patches[0, 3] = query[0]  # a padding slot that would win if the mask were ignored
    cases.append(Case(inputs=(query, page_patches, mask),
                      expected=_maxsim_reference(query, page_patches, mask),
                      label="pages of 3, 5, 1 and 4 real patches; padded slots must not count"))
    query = _unit(generator, 2, 8)
    page_patches = torch.stack([query, -query, torch.zeros_like(query)])  # [3, 2, 8]
    page_patches[1, 1] = 0.0
    mask = torch.tensor([[1, 1], [1, 0], [1, 0]], dtype=torch.bool)
    page_patches[2, 0] = -query[1]
    cases.append(Case(inputs=(query, page_patches, mask),
                      expected=_maxsim_reference(query, page_patches, mask),
                      label="pages whose only real patch points away from a query vector: their "
                            "scores are negative, and padding must not lift them to 0"))
    query = _unit(generator, 2, 8)
    page_patches = torch.stack([torch.stack([query[0], query[0]]), torch.stack([query[0], query[1]])])
    mask = torch.ones(2, 2, dtype=torch.bool)
    cases.append(Case(inputs=(query, page_patches, mask),
                      expected=_maxsim_reference(query, page_patches, mask),
                      label="page 0 matches the first phrase twice, page 1 matches each phrase once"))
    return cases


def _maxsim_as(mode):
    return lambda query, patches, patch_mask: _maxsim_reference(query, patches, patch_mask, mode)


late_interaction_scores = Exercise(
    key="10.1",
    title="Late interaction: MaxSim over padded pages",
    cases=_maxsim_cases,
    hints=[
        "For each page, and each query vector, find the patch with the largest dot product; add "
        "those best values up over the query vectors.",
        "One einsum gives every (query vector, page, patch) similarity at once, [n, P, M]. Before "
        "taking the max over patches, give the padded patches a value that can never be the "
        "maximum - not 0, since a real match can be negative.",
        "Check yourself: a page whose patches include each query vector exactly scores n (the "
        "number of query vectors), the most any page can score with unit vectors.",
    ],
    mistakes=[
        Mistake("took each patch's best query vector and summed over patches",
                "MaxSim is asymmetric: each *query* vector looks for its best patch, and the sum runs "
                "over the query vectors, so a page with many patches gains nothing from its size.",
                _maxsim_as("patch_sum")),
        Mistake("kept only the single best (query vector, patch) pair",
                "Every query vector contributes its own best patch; a page must match all of the "
                "query's phrases to score high.", _maxsim_as("one_best")),
        Mistake("averaged over the query vectors",
                "ColBERT and ColPali sum over the query's vectors (the ranking is the same, but the "
                "score is not).", _maxsim_as("mean_query")),
        Mistake("pooled the patches into one vector first",
                "That is the single-vector baseline of section 10.1: late interaction keeps the "
                "patches apart and takes the maximum over them.", _maxsim_as("pooled")),
        Mistake("filled the padded similarities with 0",
                "A similarity can be negative: a page whose real patches all point away from a query "
                "vector must score below 0 for it. Fill the padded similarities with -inf, which no "
                "real patch can lose to.", _maxsim_as("zero_fill")),
        Mistake("let padded patches take part",
                "A patch whose mask is False is padding: it must never be the maximum (fill its "
                "similarities with -inf before the max).", _maxsim_as("no_mask")),
    ],
    atol=1e-5,
    rtol=1e-5,
)

# ---------------------------------------------------------------- 10.2 image-token pruning


def _prune_reference(tokens, scores, keep, mode="right"):
    kept_rows, index_rows = [], []
    for row in range(tokens.shape[0]):
        values = [float(v) for v in scores[row]]
        if mode == "lowest":
            order = sorted(range(len(values)), key=lambda j: (values[j], j))
        else:
            order = sorted(range(len(values)), key=lambda j: (-values[j], j))
        chosen = order[:keep]
        gathered = chosen
        if mode != "score_order":
            chosen = sorted(chosen)
        if mode != "kept_unsorted":
            gathered = chosen
        index_rows.append(chosen)
        kept_rows.append(torch.stack([tokens[row, j] for j in gathered]))
    return torch.stack(kept_rows), torch.tensor(index_rows, dtype=torch.long)


def _prune_cases() -> list[Case]:
    generator = torch.Generator().manual_seed(102)
    cases = []
    for batch, n, dim, keep, label in (
        (2, 6, 4, 3, "2 images of 6 tokens, keep 3"),
        (3, 16, 8, 4, "3 images of 16 tokens (the TinyVLM's grid), keep 4"),
        (1, 5, 3, 5, "keep all 5: the tokens come back unchanged"),
        (2, 9, 4, 1, "keep 1"),
    ):
        tokens = torch.randn(batch, n, dim, generator=generator, dtype=torch.float64)
        # distinct scores, the best ones deliberately not at the start
        scores = torch.stack([torch.randperm(n, generator=generator) for _ in range(batch)]).double()
        cases.append(Case(inputs=(tokens, scores, keep), expected=_prune_reference(tokens, scores, keep),
                          label=label))
    tokens = torch.randn(1, 6, 2, generator=generator, dtype=torch.float64)
    scores = torch.tensor([[0.1, 0.9, 0.2, 0.8, 0.3, 0.7]], dtype=torch.float64)
    cases.append(Case(inputs=(tokens, scores, 3), expected=_prune_reference(tokens, scores, 3),
                      label="hand-made: the best tokens are 1, 3 and 5"))
    return cases


def _prune_as(mode):
    return lambda tokens, scores, keep: _prune_reference(tokens, scores, keep, mode)


def _compare_pruned(expected, got):
    """The default comparison, after insisting that the index is a long tensor."""
    pair = isinstance(got, (tuple, list)) and len(got) == 2
    if pair and all(isinstance(part, torch.Tensor) for part in got) and got[0].dim() == 2:
        return ("your output looks swapped: the first element is 2-D and the second "
                f"{got[1].dim()}-D. Return (kept, index): kept [B, keep, D] first, then index "
                "[B, keep].")
    index = got[1] if pair else None
    if isinstance(index, torch.Tensor) and index.dtype != torch.long:
        return (f"wrong dtype at output[1]: the index is {str(index.dtype).replace('torch.', '')}; "
                "PyTorch indexes with int64 (torch.long) - return index.long().")
    return compare_values(expected, got, 0.0, 0.0)


prune_tokens = Exercise(
    key="10.2",
    title="Keep the k highest-scoring image tokens, in their original order",
    cases=_prune_cases,
    hints=[
        "scores.topk(keep, dim=1).indices gives the best tokens of each image - but in score "
        "order. Sort those indices so the kept tokens stay in the order they had in the image.",
        "Two properties to aim for: every row of the index is increasing, and kept[b, j] is "
        "tokens[b, index[b, j]]. Picking rows of a 3-D tensor with a 2-D index is a job for "
        "torch.gather, whose index needs as many dimensions as its input.",
        "Check yourself: with keep equal to the number of tokens, kept equals tokens and index is "
        "0, 1, 2, ... on every row.",
    ],
    mistakes=[
        Mistake("kept the tokens in score order",
                "A token's place in the sequence carries its position in the image; the model was "
                "trained on tokens in grid order, so keep the survivors in their original order.",
                _prune_as("score_order")),
        Mistake("sorted the index but gathered the tokens in score order",
                "Index and tokens must agree: gather the tokens with the *sorted* index, so that "
                "kept[:, j] is the token at position index[:, j].", _prune_as("kept_unsorted")),
        Mistake("kept the lowest-scoring tokens",
                "Keep the `keep` tokens with the *highest* scores (topk, largest=True).",
                _prune_as("lowest")),
    ],
    atol=0.0,
    rtol=0.0,
    compare=_compare_pruned,
)

# ---------------------------------------------------------------- 10.3 action tokenisation


def _bins_reference(actions, low, high, bins, mode="right"):
    rows = []
    for action in actions.tolist():
        row = []
        for d, value in enumerate(action):
            lo, hi = float(low[d]), float(high[d])
            if mode != "no_clip":
                value = min(max(value, lo), hi)
            width = (hi - lo) / bins
            if mode == "round":
                token = min(round((value - lo) / width), bins - 1)
            elif mode == "narrow":  # bins - 1 intervals' width, then clamped
                token = min(math.floor((value - lo) / ((hi - lo) / (bins - 1))), bins - 1)
            elif mode == "points":  # bins points spread from low to high, nearest point
                token = round((value - lo) / (hi - lo) * (bins - 1))
            else:
                token = 0
                while token < bins - 1 and value >= lo + (token + 1) * width:
                    token += 1  # walk up the edges: bin i is [lo + i w, lo + (i + 1) w)
                if mode == "no_top" and value >= hi:
                    token = bins
                if mode == "no_clip" and value < lo:
                    token = math.floor((value - lo) / width)
            row.append(token)
        rows.append(row)
    return torch.tensor(rows, dtype=torch.long)


def _bins_cases() -> list[Case]:
    generator = torch.Generator().manual_seed(103)
    cases = []
    low, high = torch.tensor([-1.0, -1.0, 0.0]), torch.tensor([1.0, 1.0, 0.5])
    actions = torch.rand(6, 3, generator=generator) * (high - low) + low
    cases.append(Case(inputs=(actions, low, high, 256), expected=_bins_reference(actions, low, high, 256),
                      label="6 actions of 3 dimensions in range, 256 bins (RT-2's count)"))
    actions = torch.tensor([[-1.0, 1.0, 0.5], [0.0, -0.999, 0.25], [0.99, 0.5, 0.0]])
    cases.append(Case(inputs=(actions, low, high, 8), expected=_bins_reference(actions, low, high, 8),
                      label="the range's edges, 8 bins: the top edge belongs to the last bin"))
    actions = torch.tensor([[-3.0, 2.0, 0.6], [1.5, -1.2, -0.1]])
    cases.append(Case(inputs=(actions, low, high, 8), expected=_bins_reference(actions, low, high, 8),
                      label="actions outside the range: clip them first"))
    actions = torch.tensor([[0.13, -0.62, 0.31], [0.38, 0.88, 0.07], [-0.37, 0.12, 0.44]])
    cases.append(Case(inputs=(actions, low, high, 4), expected=_bins_reference(actions, low, high, 4),
                      label="4 bins: values past the middle of a bin must not round up"))
    return cases


def _bins_as(mode):
    return lambda actions, low, high, bins: _bins_reference(actions, low, high, bins, mode)


def _compare_tokens(expected, got):
    """The default comparison, after insisting on int64 tokens (what an embedding table takes)."""
    if isinstance(got, torch.Tensor) and not got.dtype.is_floating_point and got.dtype != torch.long:
        return (f"wrong dtype: your tokens are {str(got.dtype).replace('torch.', '')}; token ids are "
                "int64 (torch.long), the type nn.Embedding and cross_entropy expect - return .long().")
    return compare_values(expected, got, 0.0, 0.0)


action_tokens = Exercise(
    key="10.3",
    title="Continuous actions to tokens: uniform bins",
    cases=_bins_cases,
    hints=[
        "Per dimension d, the bin width is (high[d] - low[d]) / bins and bin i covers "
        "[low + i * width, low + (i + 1) * width). Clip the action to [low, high] first.",
        "The bin is the floor of (clipped action - low) / width. One value needs care: an action "
        "exactly at high lands one past the last bin, and must become bins - 1.",
        "Check yourself: with low -1, high 1 and 8 bins, -1 -> 0, 0 -> 4, 0.99 -> 7, 1 -> 7.",
    ],
    mistakes=[
        Mistake("rounded instead of taking the floor",
                "A bin is an interval: every value inside [low + i w, low + (i + 1) w) is token i; "
                "rounding sends the upper half of each bin to the next token.", _bins_as("round")),
        Mistake("spread bins points from low to high and took the nearest",
                "That is a different scheme (the ends get half-width bins). Here the range is cut "
                "into `bins` equal intervals.", _bins_as("points")),
        Mistake("divided the range by bins - 1",
                "There are `bins` intervals, so each is (high - low) / bins wide; dividing by bins - 1 "
                "makes them too wide and pushes values into lower tokens.", _bins_as("narrow")),
        Mistake("let the top edge fall outside",
                "An action equal to `high` must be token bins - 1, the last bin: clamp the result.",
                _bins_as("no_top")),
        Mistake("did not clip actions outside the range",
                "Clip each action to [low, high] before binning, so every token is between 0 and "
                "bins - 1.", _bins_as("no_clip")),
    ],
    atol=0.0,
    rtol=0.0,
    compare=_compare_tokens,
)

# ---------------------------------------------------------------- 10.4 one FGSM step


class _TinyClassifier(torch.nn.Module):
    """A fixed linear classifier of 3 x 4 x 4 images into 5 classes (the check's model)."""

    def __init__(self, seed: int) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.weight = torch.nn.Parameter(torch.randn(5, 48, generator=generator))
        self.bias = torch.nn.Parameter(torch.randn(5, generator=generator) * 0.1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        weight, bias = self.weight.to(images.dtype), self.bias.to(images.dtype)
        return images.flatten(1) @ weight.T + bias


def _loss_gradient(model, images, labels):
    """d(mean cross-entropy)/d(images), from the softmax written out."""
    with torch.no_grad():
        logits = model(images)
        probabilities = torch.exp(logits - logits.max(1, keepdim=True).values)
        probabilities = probabilities / probabilities.sum(1, keepdim=True)
        probabilities[torch.arange(len(labels)), labels] -= 1.0  # d loss / d logits, per image
        weight = model.weight.to(images.dtype)
        return (probabilities / len(labels)) @ weight  # linear model: d logits / d x = W


def _fgsm_reference(model, images, targets, epsilon, mode="right"):
    gradient = _loss_gradient(model, images, targets).view_as(images)
    if mode == "ascent":  # the untargeted step: away from the target
        step = epsilon * torch.sign(gradient)
    elif mode == "raw":
        step = -epsilon * gradient
    else:  # down the target's loss
        step = -epsilon * torch.sign(gradient)
    adversarial = images + step
    return adversarial if mode == "no_clamp" else adversarial.clamp(0.0, 1.0)


def _fgsm_cases() -> list[Case]:
    generator = torch.Generator().manual_seed(104)
    cases = []
    for seed, n, epsilon, label in (
        (1, 4, 0.03, "4 images, epsilon 0.03"),
        (2, 8, 8 / 255, "8 images, epsilon 8/255"),
        (3, 3, 0.5, "a large epsilon: the result must stay in [0, 1]"),
    ):
        model = _TinyClassifier(seed)
        images = torch.rand(n, 3, 4, 4, generator=generator)
        if epsilon == 0.5:  # pixels near the edges of [0, 1]
            images = (images > 0.5).float() * 0.98 + 0.01
        targets = torch.randint(5, (n,), generator=generator)
        cases.append(Case(inputs=(model, images, targets, epsilon),
                          expected=_fgsm_reference(model, images, targets, epsilon), label=label))
    return cases


def _compare_attack(expected, got):
    """The default comparison, after insisting that the result is cut off from the graph."""
    if isinstance(got, torch.Tensor) and got.requires_grad:
        return ("your result still requires a gradient: it is tied to the autograd graph of the "
                "step. Return it .detach()ed, as an attack's output is an input, not a parameter.")
    return compare_values(expected, got, 1e-6, 1e-5)


def _fgsm_as(mode):
    return lambda model, images, targets, epsilon: _fgsm_reference(model, images, targets, epsilon, mode)


targeted_fgsm_step = Exercise(
    key="10.4",
    title="One step of the targeted fast gradient sign method",
    cases=_fgsm_cases,
    hints=[
        "You need the gradient of the mean cross-entropy between model(images) and the *target* "
        "classes, with respect to the pixels: work on a copy of the images that requires a "
        "gradient.",
        "Move every pixel by epsilon in the direction that *decreases* the target's loss - only "
        "the direction of the gradient matters, not its size. Then keep the pixels valid, and "
        "return a tensor that is cut off from the autograd graph.",
        "Check yourself: every pixel moves by exactly epsilon (up or down) unless the clamp stops "
        "it at 0 or 1.",
    ],
    mistakes=[
        Mistake("stepped up the target's loss",
                "A targeted attack decreases the loss of the target class, pulling the image towards "
                "it: subtract epsilon times the sign of the gradient. Adding it pushes the image away "
                "from the target - section 10.5's untargeted step, aimed at the wrong class.",
                _fgsm_as("ascent")),
        Mistake("used the raw gradient instead of its sign",
                "FGSM moves every pixel by exactly epsilon: take torch.sign of the gradient.",
                _fgsm_as("raw")),
        Mistake("did not clamp to [0, 1]",
                "Pixels live in [0, 1]: clamp the perturbed images so they stay valid images.",
                _fgsm_as("no_clamp")),
    ],
    atol=1e-6,
    rtol=1e-5,
    compare=_compare_attack,
)


# ---------------------------------------------------------------- 10.5 first-stage recall (ablation)


def _candidate_reference(neighbour_pages, relevant, counts, mode="right"):
    queries, vectors, _ = neighbour_pages.shape
    values = []
    for k in counts:
        found = 0
        for q in range(queries):
            used = [0] if mode == "first_vector" else range(vectors)
            if mode == "kth_only":
                per_vector = [{int(neighbour_pages[q, i, k - 1])} for i in used]
            else:
                per_vector = [{int(p) for p in neighbour_pages[q, i, :k]} for i in used]
            hits = [any(bool(relevant[q, p]) for p in pages) for pages in per_vector]
            found += all(hits) if mode == "every_vector" else any(hits)
        values.append(found / queries if mode == "fraction" else 100 * found / queries)
    return torch.tensor(values, dtype=torch.float64)


def _candidate_cases() -> list[Case]:
    generator = torch.Generator().manual_seed(105)
    cases = []
    for queries, vectors, k_max, pages, counts, label in (
        (6, 2, 8, 10, [1, 2, 4, 8], "6 queries of 2 vectors, 8 neighbours each, 10 pages"),
        (8, 1, 5, 6, [1, 3, 5], "one vector per query"),
        (5, 3, 6, 12, [2, 6], "three vectors per query, two candidate counts"),
    ):
        neighbour_pages = torch.randint(pages, (queries, vectors, k_max), generator=generator)
        relevant = torch.rand(queries, pages, generator=generator) < 0.15
        cases.append(Case(inputs=(neighbour_pages, relevant, counts),
                          expected=_candidate_reference(neighbour_pages, relevant, counts), label=label))
    # hand-made: query 0 finds its page only through its second vector, at rank 2;
    # query 1 only through its first vector, at rank 3; query 2 never
    neighbour_pages = torch.tensor([[[0, 0, 0], [0, 4, 0]],
                                    [[1, 1, 5], [1, 1, 1]],
                                    [[2, 2, 2], [3, 3, 3]]])
    relevant = torch.zeros(3, 6, dtype=torch.bool)
    relevant[0, 4] = relevant[1, 5] = relevant[2, 5] = True
    counts = [1, 2, 3]
    cases.append(Case(inputs=(neighbour_pages, relevant, counts),
                      expected=_candidate_reference(neighbour_pages, relevant, counts),
                      label="hand-made: 0%, 33.3%, 66.7% as the candidates grow"))
    return cases


def _candidate_as(mode):
    return lambda neighbour_pages, relevant, counts: _candidate_reference(neighbour_pages, relevant,
                                                                          counts, mode)


candidate_recall = Exercise(
    key="10.5",
    title="Recall of the first stage, against the number of candidates (an ablation)",
    cases=_candidate_cases,
    hints=[
        "For one count k, a query's candidate pages are the pages of the first k neighbours of *each* "
        "of its vectors, pooled together. The query counts as found when any candidate page is "
        "relevant.",
        "Slicing neighbour_pages[:, :, :k] and flattening the last two dimensions gives every "
        "query's candidates in one row; relevant can then be looked up at those pages.",
        "Check yourself: the values never fall as k grows, and a query whose relevant page appears "
        "only as some vector's k-th neighbour is found from that k on.",
    ],
    mistakes=[
        Mistake("used only the first query vector",
                "Every query vector brings its own neighbours: pool the candidates of all of a "
                "query's vectors (a two-object question needs both phrases' neighbours).",
                _candidate_as("first_vector")),
        Mistake("looked only at the k-th neighbour",
                "The candidates for count k are the first k neighbours, not the k-th alone.",
                _candidate_as("kth_only")),
        Mistake("required every query vector to find a relevant page",
                "One relevant candidate is enough for the second stage to rank it: pool the vectors' "
                "candidates, and ask whether any of them is relevant.", _candidate_as("every_vector")),
        Mistake("returned fractions",
                "Return percentages (100 times the fraction), as the lesson's tables do.",
                _candidate_as("fraction")),
    ],
    atol=1e-6,
    rtol=1e-6,
)


def progress():
    """This session's results for the chapter's exercises, as a table."""
    return chapter_progress(10)
