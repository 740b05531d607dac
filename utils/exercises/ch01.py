"""Exercises of chapter 1, Foundations. Checks compare with independent references (torch's own
functions, autograd, hand-worked cases), never with a copy of the solution."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from utils.exercises.core import Case, Exercise, Mistake, chapter_progress
from utils.exercises.declare import dict_answer_problem

# ---------------------------------------------------------------- 1.1 cosine similarity


def _cosine_cases() -> list[Case]:
    images = torch.tensor([[3.0, 4.0, 0.0], [0.0, 0.0, 2.0], [1.0, 1.0, 1.0]])  # [3, 3], lengths differ
    captions = torch.tensor([[6.0, 8.0, 0.0], [0.0, 1.0, 1.0]])  # [2, 3]
    generator = torch.Generator().manual_seed(11)
    wide_a, wide_b = torch.randn(5, 16, generator=generator) * 7, torch.randn(4, 16, generator=generator)

    def reference(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return F.cosine_similarity(a[:, None, :], b[None, :, :], dim=-1)  # [N, M]

    return [
        Case(inputs=(images, captions), expected=reference(images, captions),
             label="3 image vectors vs 2 caption vectors of different lengths"),
        Case(inputs=(wide_a, wide_b), expected=reference(wide_a, wide_b),
             label="5 vs 4 random 16-dimensional vectors"),
        Case(inputs=(captions, captions), expected=reference(captions, captions),
             label="a batch against itself (the diagonal must be 1)"),
    ]


cosine_similarity = Exercise(
    key="1.1",
    title="Cosine similarity between two batches of vectors",
    cases=_cosine_cases,
    hints=[
        "Cosine similarity is the dot product of two vectors after each is scaled to length 1.",
        "Each ROW is one vector. tensor.norm(dim=-1, keepdim=True) gives every row's length as [N, 1].",
        "With both batches scaled to unit rows, one matrix product gives every pair: [N, D] @ [D, M] -> [N, M].",
    ],
    mistakes=[
        Mistake("forgot to normalise", "You returned raw dot products; long vectors score high whatever "
                "their direction. Divide each row by its L2 norm first.", lambda a, b: a @ b.T),
        Mistake("normalised along the wrong axis", "You divided by the norm of each column (dim=0). Each "
                "row is one vector: use dim=-1.",
                lambda a, b: (a / a.norm(dim=0, keepdim=True)) @ (b / b.norm(dim=0, keepdim=True)).T),
        Mistake("normalised only one side", "Both batches need unit-length rows.",
                lambda a, b: (a / a.norm(dim=-1, keepdim=True)) @ b.T),
    ],
    atol=1e-5,
)

# ---------------------------------------------------------------- 1.2 Recall@K


def _recall_cases() -> list[Case]:
    # Row q holds the scores of query q against 4 gallery items; true_index[q] is its partner.
    similarity = torch.tensor([
        [0.9, 0.1, 0.3, 0.2, 0.0],   # partner 0 ranks 1st
        [0.2, 0.1, 0.8, 0.7, 0.3],   # partner 2 ranks 1st
        [0.1, 0.4, 0.6, 0.7, 0.0],   # partner 3 ranks 1st
        [0.7, 0.6, 0.5, 0.0, 0.2],   # partner 1 ranks 2nd
        [0.9, 0.6, 0.8, 0.7, 0.5],   # partner 4 ranks 5th
    ])
    true_index = torch.tensor([0, 2, 3, 1, 4])
    generator = torch.Generator().manual_seed(5)
    big = torch.randn(50, 80, generator=generator)
    big_true = torch.randint(0, 80, (50,), generator=generator)
    ranks = (big > big.gather(1, big_true[:, None])).sum(dim=1)  # how many items beat the partner
    return [
        Case(inputs=(similarity, true_index, 1), expected=3 / 5, label="5 queries, K=1 (three hit)"),
        Case(inputs=(similarity, true_index, 2), expected=4 / 5, label="5 queries, K=2"),
        Case(inputs=(similarity, true_index, 5), expected=1.0, label="5 queries, K=5 (everything is in the top 5)"),
        Case(inputs=(big, big_true, 5), expected=(ranks < 5).float().mean().item(),
             label="50 random queries over 80 items, K=5"),
    ]


def _recall_ascending(similarity, true_index, k):
    top = similarity.argsort(dim=1)[:, :k]
    return (top == true_index[:, None]).any(dim=1).float().mean().item()


def _recall_count(similarity, true_index, k):
    top = similarity.topk(k, dim=1).indices
    return (top == true_index[:, None]).any(dim=1).sum().item()


def _recall_ignoring_k(similarity, true_index, k):
    return (similarity.argmax(dim=1) == true_index).float().mean().item()


def _recall_percent(similarity, true_index, k):
    top = similarity.topk(k, dim=1).indices
    return 100 * (top == true_index[:, None]).any(dim=1).float().mean().item()


recall_at_k = Exercise(
    key="1.2",
    title="Recall@K for cross-modal retrieval",
    cases=_recall_cases,
    hints=[
        "For each query (a row), find the K gallery items with the highest similarity, and ask whether "
        "the true partner is among them. Recall@K is the fraction of queries for which it is.",
        "similarity.topk(k, dim=1).indices gives a [Q, K] tensor of the best items per row.",
        "Check by hand: similarity [[0.9, 0.1, 0.5], [0.2, 0.3, 0.8]] with true_index [0, 1] gives "
        "Recall@1 = 0.5 (query 1's partner ranks second) and Recall@2 = 1.0. Recall@K never falls as K "
        "grows, and is a fraction between 0 and 1.",
    ],
    mistakes=[
        Mistake("sorted in the wrong direction", "argsort is ascending: its first columns are the LEAST "
                "similar items. Use topk, or argsort(descending=True).", _recall_ascending),
        Mistake("returned a count", "Recall@K is a fraction of queries (0 to 1), not the number of hits: "
                "divide by the number of queries.", _recall_count),
        Mistake("returned a percentage", "The check wants a fraction between 0 and 1; the book multiplies "
                "by 100 only when it prints.", _recall_percent),
        Mistake("ignored k", "Your result is the same for every k: it looks only at the single best item. "
                "Take the k best items of each row.", _recall_ignoring_k),
    ],
    atol=1e-6,
)

# ---------------------------------------------------------------- 1.3 taxonomy quiz

FUSION_TYPES = ("late", "middle", "early")
OBJECTIVES = ("contrastive", "generative", "masked")
_TAXONOMY = {
    "CLIP": ("late", "contrastive"),
    "Flamingo": ("middle", "generative"),
    "LLaVA": ("early", "generative"),
    "Chameleon": ("early", "generative"),
    "VisualBERT": ("early", "masked"),
}


def _taxonomy_feedback(got) -> str | None:
    """A property check (so that a wrong answer never prints the answer key)."""
    return _taxonomy_compare(_TAXONOMY, got)


def _taxonomy_compare(expected: dict, got) -> str | None:
    problem = dict_answer_problem(got, list(expected), "model name to (fusion, objective)", "models",
                                  "the five models")
    if problem:
        return problem
    wrong = []
    for model, answer in expected.items():
        given = got[model]
        if not isinstance(given, (tuple, list)) or len(given) != 2:
            return f"{model}: expected a pair (fusion, objective), got {given!r}"
        fusion, objective = (str(part).strip().lower() for part in given)
        if fusion in OBJECTIVES and objective in FUSION_TYPES:
            return f"{model}: {given!r} has the order swapped; write (fusion, objective), e.g. ('late', ...)"
        if fusion not in FUSION_TYPES or objective not in OBJECTIVES:
            return (f"{model}: {given!r} uses a label outside the choices; fusion is one of {FUSION_TYPES}, "
                    f"objective one of {OBJECTIVES}")
        if fusion != answer[0]:
            wrong.append(f"{model}: the fusion type is off - where do its two token streams first meet?")
        if objective != answer[1]:
            wrong.append(f"{model}: the objective is off - what does its loss ask the model to do?")
    if wrong:
        return f"{len(wrong)} of {2 * len(expected)} placements are off:\n  " + "\n  ".join(wrong)
    return None


taxonomy_quiz = Exercise(
    key="1.3",
    title="Place five models by fusion type and pretraining objective",
    cases=lambda: [Case(inputs=(), expected=_taxonomy_feedback, label="the five models")],
    hints=[
        "Fusion type is WHERE the modalities first interact: only in a final score (late), through "
        "cross-attention inside the network (middle), or as tokens of one input sequence (early).",
        "The objective is what the loss asks: pick the right partner among many (contrastive), predict "
        "the next token (generative), or fill in hidden tokens (masked).",
        "Ask each paper two questions: through what does the image first reach the text side (a final "
        "score, attention layers added inside, or the input sequence itself)? And what does the training "
        "loss compare the model's output with (the right partner, the next token, or a hidden token)?",
    ],
)

# ---------------------------------------------------------------- 1.4 one alignment step


def _alignment_cases() -> list[Case]:
    generator = torch.Generator().manual_seed(3)
    cases = []
    for n, d_in, d_out, lr, label in ((6, 4, 3, 0.1, "6 pairs, 4 -> 3 dims, lr 0.1"),
                                      (32, 10, 5, 0.05, "32 pairs, 10 -> 5 dims, lr 0.05")):
        weights = torch.randn(d_in, d_out, generator=generator)
        image_features = torch.randn(n, d_in, generator=generator)
        text_features = torch.randn(n, d_out, generator=generator)
        leaf = weights.clone().requires_grad_(True)
        loss = ((image_features @ leaf - text_features) ** 2).sum(dim=1).mean()
        (gradient,) = torch.autograd.grad(loss, leaf)
        cases.append(Case(inputs=(weights, image_features, text_features, lr),
                          expected=weights - lr * gradient, label=label))
    return cases


def _step_with(scale: float, sign: float = 1.0):
    def step(weights, image_features, text_features, lr):
        n = image_features.shape[0]
        gradient = scale / n * image_features.T @ (image_features @ weights - text_features)
        return weights - sign * lr * gradient
    return step


alignment_step = Exercise(
    key="1.4",
    title="One gradient step of a least-squares alignment",
    cases=_alignment_cases,
    hints=[
        "Start with one pair: r = x_i W - y_i is a row vector, and ||r||^2 = r r^T. How does r change when "
        "W changes? Differentiate r r^T with the chain rule.",
        "For one pair the gradient is 2 x_i^T r_i, a [d_in, d_out] matrix like W. Average it over the N pairs "
        "and write the sum as one matrix product of X^T with the residuals.",
        "The gradient has W's shape, [d_in, d_out], and descent moves against it. To test your formula, "
        "compare it with autograd: make a copy of W with requires_grad_(True), compute the loss, call "
        ".backward() and read .grad.",
    ],
    mistakes=[
        Mistake("dropped the factor 2", "d/dW of a square brings down a 2: the gradient is (2/N) X^T(XW - Y).",
                _step_with(1.0)),
        Mistake("summed instead of averaging", "The loss averages over the N pairs, so the gradient carries "
                "1/N.", lambda w, x, y, lr: w - lr * 2 * x.T @ (x @ w - y)),
        Mistake("flipped the sign", "Your step goes uphill: either the residual is Y - XW instead of XW - Y, "
                "or lr * gradient is added instead of subtracted.", _step_with(2.0, sign=-1.0)),
        Mistake("averaged over every entry", "F.mse_loss-style averaging divides by N * d_out; the loss here "
                "averages over the N pairs only.",
                lambda w, x, y, lr: w - lr * 2 / (x.shape[0] * y.shape[1]) * x.T @ (x @ w - y)),
    ],
    atol=1e-5,
)

# ---------------------------------------------------------------- 1.5 close the gap (ablation)


def _close_gap_cases() -> list[Case]:
    generator = torch.Generator().manual_seed(8)
    image_embeddings = F.normalize(torch.randn(40, 8, generator=generator) + 2.0 * torch.eye(8)[0], dim=-1)
    text_embeddings = F.normalize(torch.randn(30, 8, generator=generator) + 2.0 * torch.eye(8)[1], dim=-1)

    def reference(images: torch.Tensor, texts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # Each output row must point along (row - its modality's mean) and have length 1.
        return (F.normalize(images - images.mean(dim=0), dim=-1), F.normalize(texts - texts.mean(dim=0), dim=-1))

    small_images, small_texts = image_embeddings[:5], text_embeddings[:4]
    return [
        Case(inputs=(small_images, small_texts), expected=reference(small_images, small_texts),
             label="5 image and 4 text unit vectors in two clusters"),
        Case(inputs=(image_embeddings, text_embeddings), expected=reference(image_embeddings, text_embeddings),
             label="40 image and 30 text unit vectors in two clusters"),
    ]


def _joint_centring(images, texts):
    joint_mean = torch.cat([images, texts]).mean(dim=0)
    return F.normalize(images - joint_mean, dim=-1), F.normalize(texts - joint_mean, dim=-1)


close_gap = Exercise(
    key="1.5",
    title="Close the modality gap by centring each modality",
    cases=_close_gap_cases,
    hints=[
        "The gap is the offset between the two modalities' centroids. Remove each modality's own centroid.",
        "images - images.mean(dim=0) moves the image centroid to the origin; do the same for texts.",
        "Return a pair (images, texts) with the input shapes and rows of length 1. Just before that last "
        "renormalisation, each modality's mean is the zero vector.",
    ],
    mistakes=[
        Mistake("forgot to renormalise", "After subtracting the mean the rows are no longer unit length; "
                "cosine similarity needs them back on the sphere.",
                lambda a, b: (a - a.mean(dim=0), b - b.mean(dim=0))),
        Mistake("subtracted one joint mean", "A single mean of both modalities shifts both clusters by the "
                "same vector: the offset between them, the gap, stays. Centre each modality on its own.",
                _joint_centring),
        Mistake("centred only the images", "Both modalities have their own centroid; centre the texts too.",
                lambda a, b: (F.normalize(a - a.mean(dim=0), dim=-1), b)),
        Mistake("averaged along the wrong axis", "mean(dim=1) averages the coordinates of each vector; the "
                "centroid averages the vectors, mean(dim=0).",
                lambda a, b: (F.normalize(a - a.mean(dim=1, keepdim=True), dim=-1),
                              F.normalize(b - b.mean(dim=1, keepdim=True), dim=-1))),
        Mistake("normalised along the wrong axis", "Each ROW is one embedding: normalise with dim=-1.",
                lambda a, b: (F.normalize(a - a.mean(dim=0), dim=0), F.normalize(b - b.mean(dim=0), dim=0))),
    ],
    atol=1e-5,
)


def progress():
    """This session's results for the chapter's exercises, as a table."""
    return chapter_progress(1)
