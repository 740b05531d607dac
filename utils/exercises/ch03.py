"""Exercises of chapter 3, Contrastive learning. Checks compare with independent references
(torch's cross_entropy and binary_cross_entropy_with_logits, hand-worked values, autograd), never
with a copy of the solution."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from utils.exercises.core import Case, Exercise, Mistake, chapter_progress

# ---------------------------------------------------------------- 3.1 InfoNCE (one direction)

WORKED = torch.tensor([[0.90, 0.10, 0.20], [0.15, 0.85, 0.05], [0.25, 0.00, 0.80]], dtype=torch.float64)


def _info_nce_reference(similarities: torch.Tensor, temperature: float) -> torch.Tensor:
    targets = torch.arange(similarities.shape[0])
    return F.cross_entropy(similarities / temperature, targets)


def _info_nce_cases() -> list[Case]:
    generator = torch.Generator().manual_seed(31)
    random = torch.rand(5, 5, generator=generator, dtype=torch.float64) * 2 - 1
    # Hand-worked: a 2 x 2 matrix with 1 on the diagonal and 0 elsewhere at tau = 1:
    # each row's loss is -log(e / (e + 1)) = log(1 + 1/e).
    identity = torch.eye(2, dtype=torch.float64)
    return [
        Case(inputs=(identity, 1.0), expected=torch.tensor(math.log(1 + math.exp(-1)), dtype=torch.float64),
             label="2x2 identity similarities, tau = 1 (by hand: log(1 + 1/e))"),
        Case(inputs=(WORKED.clone(), 0.1), expected=_info_nce_reference(WORKED, 0.1),
             label="the chapter's worked 3x3 example, tau = 0.1"),
        Case(inputs=(random, 0.07), expected=_info_nce_reference(random, 0.07),
             label="a random 5x5 similarity matrix, tau = 0.07"),
    ]


def _row_loss(logits):
    """-log softmax of each row's diagonal entry, averaged (the formula, without F.cross_entropy)."""
    return (torch.logsumexp(logits, dim=1) - logits.diagonal()).mean()


def _info_nce_no_temperature(similarities, temperature):
    return _row_loss(similarities)


def _info_nce_columns(similarities, temperature):
    return _row_loss(similarities.T / temperature)


def _info_nce_times_temperature(similarities, temperature):
    return _row_loss(similarities * temperature)


def _info_nce_sum(similarities, temperature):
    return _row_loss(similarities / temperature) * len(similarities)


info_nce = Exercise(
    key="3.1",
    title="InfoNCE, image to text",
    cases=_info_nce_cases,
    forbidden=("torch.nn.functional.cross_entropy",),
    gradient_reference=_info_nce_reference,
    hints=[
        "Row i of the matrix scores image i against every caption; the right caption is number i. The "
        "loss is a classification loss over each row, averaged over the rows.",
        "Divide the similarities by the temperature first. Then for row i: -log(exp(s_ii) / sum_j exp(s_ij)). "
        "torch.logsumexp keeps this stable.",
        "On the 2x2 identity at tau = 1 every row's loss is log(1 + 1/e) = 0.3133. Return a 0-dimensional "
        "tensor (no .item()), so that a training loop could call .backward() on it.",
    ],
    mistakes=[
        Mistake("forgot the temperature", "Divide the similarities by the temperature before the softmax.",
                _info_nce_no_temperature),
        Mistake("multiplied by the temperature", "The logits are similarities / tau (equivalently times "
                "the logit scale 1/tau), not similarities * tau.", _info_nce_times_temperature),
        Mistake("used the columns", "Image to text normalises over each row (softmax over the captions, "
                "dim=1); you normalised over the columns (the text-to-image direction).", _info_nce_columns),
        Mistake("summed instead of averaging", "Average the per-row losses over the batch.", _info_nce_sum),
    ],
    atol=1e-8,
    rtol=1e-6,
)

# ---------------------------------------------------------------- 3.2 symmetric loss + gradient


def _symmetric_reference(image_vectors, text_vectors, logit_scale):
    """CLIP's loss through torch's own cross_entropy (the value the learner's loss must match)."""
    logits = logit_scale * F.normalize(image_vectors, dim=-1) @ F.normalize(text_vectors, dim=-1).T
    targets = torch.arange(len(logits))
    return (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets)) / 2


def _symmetric_cases() -> list[Case]:
    generator = torch.Generator().manual_seed(32)
    a = torch.randn(4, 6, generator=generator, dtype=torch.float64)
    b = torch.randn(4, 6, generator=generator, dtype=torch.float64)
    c = torch.randn(3, 5, generator=generator, dtype=torch.float64) * 3
    d = torch.randn(3, 5, generator=generator, dtype=torch.float64)
    return [Case(inputs=(images, texts, scale), expected=_symmetric_reference(images, texts, scale), label=label)
            for images, texts, scale, label in (
                (a, b, 1.0, "4 random pairs in 6-D, scale 1"),
                (a, b, 1 / 0.07, "the same pairs, CLIP's initial scale 1/0.07"),
                (c, d, 10.0, "3 pairs in 5-D, image vectors not unit length"))]


def _symmetric_one_way(image_vectors, text_vectors, logit_scale):
    logits = logit_scale * F.normalize(image_vectors, dim=-1) @ F.normalize(text_vectors, dim=-1).T
    return F.cross_entropy(logits, torch.arange(len(logits)))


def _symmetric_unnormalised(image_vectors, text_vectors, logit_scale):
    logits = logit_scale * image_vectors @ text_vectors.T
    targets = torch.arange(len(logits))
    return (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets)) / 2


def _symmetric_summed(image_vectors, text_vectors, logit_scale):
    return 2 * _symmetric_reference(image_vectors, text_vectors, logit_scale)


symmetric_loss = Exercise(
    key="3.2",
    title="The symmetric CLIP loss (checked with its gradient)",
    cases=_symmetric_cases,
    gradient_reference=_symmetric_reference,
    hints=[
        "Normalise both sets of vectors to unit length, form the scaled similarity matrix, and use it "
        "twice: once read by rows (image to text) and once by columns (text to image).",
        "After normalising, one matrix product gives the [N, N] cosine matrix; multiply it by logit_scale "
        "(the multiplier itself, not its log). The true pairs are on the diagonal in both directions.",
        "Your loss must be symmetric: swapping image_vectors and text_vectors gives the same value. Build it "
        "from torch operations only (no .item(), NumPy or detach) so that its gradient reaches both inputs.",
    ],
    mistakes=[
        Mistake("forgot the symmetric term", "CLIP averages two losses: image to text (rows) and text to "
                "image (columns, logits.T). You computed only one.", _symmetric_one_way),
        Mistake("forgot to normalise", "Cosine similarity needs unit vectors: F.normalize both sets first.",
                _symmetric_unnormalised),
        Mistake("summed the two directions", "Average the two directions: divide their sum by 2.",
                _symmetric_summed),
        Mistake("ignored the logit scale", "Multiply the cosine matrix by logit_scale (1 / temperature) "
                "before the softmax.", lambda images, texts, scale: _symmetric_reference(images, texts, 1.0)),
        Mistake("read logit_scale as a logarithm", "Here logit_scale is the multiplier itself (1 / tau); "
                "the lesson's model stores its log and calls .exp(), but this function receives the scale.",
                lambda images, texts, scale: _symmetric_reference(images, texts, math.exp(scale))),
    ],
    atol=1e-8,
    rtol=1e-6,
)

# ---------------------------------------------------------------- 3.3 SigLIP


def _siglip_reference(image_vectors, text_vectors, logit_scale, bias):
    logits = logit_scale * F.normalize(image_vectors, dim=-1) @ F.normalize(text_vectors, dim=-1).T + bias
    labels = torch.eye(len(logits), dtype=logits.dtype)
    # SigLIP's loss: summed over all N^2 pairs, divided by the batch size N.
    return F.binary_cross_entropy_with_logits(logits, labels, reduction="sum") / len(logits)


def _siglip_cases() -> list[Case]:
    generator = torch.Generator().manual_seed(33)
    a = torch.randn(4, 8, generator=generator, dtype=torch.float64)
    b = torch.randn(4, 8, generator=generator, dtype=torch.float64)
    c = torch.randn(6, 3, generator=generator, dtype=torch.float64)
    d = torch.randn(6, 3, generator=generator, dtype=torch.float64)
    one = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    # By hand: one pair, identical unit vectors, scale 1, bias 0: -log sigmoid(1) = log(1 + e^-1).
    return [
        Case(inputs=(one, one.clone(), 1.0, 0.0), expected=torch.tensor(math.log(1 + math.exp(-1)),
                                                                         dtype=torch.float64),
             label="one matching pair, scale 1, bias 0 (by hand: log(1 + 1/e))"),
        Case(inputs=(a, b, 10.0, -10.0), expected=_siglip_reference(a, b, 10.0, -10.0),
             label="4 random pairs in 8-D, SigLIP's initial scale 10 and bias -10"),
        Case(inputs=(c, d, 5.0, -2.0), expected=_siglip_reference(c, d, 5.0, -2.0),
             label="6 random pairs in 3-D, scale 5, bias -2"),
    ]


def _siglip_mean(image_vectors, text_vectors, logit_scale, bias):
    logits = logit_scale * F.normalize(image_vectors, dim=-1) @ F.normalize(text_vectors, dim=-1).T + bias
    signs = 2 * torch.eye(len(logits), dtype=logits.dtype) - 1
    return -F.logsigmoid(signs * logits).mean()


def _siglip_unnormalised(image_vectors, text_vectors, logit_scale, bias):
    logits = logit_scale * image_vectors @ text_vectors.T + bias
    labels = 2 * torch.eye(len(logits), dtype=logits.dtype) - 1
    return -F.logsigmoid(labels * logits).sum() / len(logits)


def _siglip_no_bias(image_vectors, text_vectors, logit_scale, bias):
    return _siglip_mean(image_vectors, text_vectors, logit_scale, 0.0) * len(image_vectors)


def _siglip_diagonal_only(image_vectors, text_vectors, logit_scale, bias):
    logits = logit_scale * F.normalize(image_vectors, dim=-1) @ F.normalize(text_vectors, dim=-1).T + bias
    return -F.logsigmoid(logits.diagonal()).sum() / len(logits)


siglip_loss = Exercise(
    key="3.3",
    title="SigLIP's pairwise sigmoid loss",
    cases=_siglip_cases,
    forbidden=("torch.nn.functional.binary_cross_entropy_with_logits",),
    gradient_reference=_siglip_reference,
    hints=[
        "Every (image, text) pair in the batch is its own yes/no question: is this the right caption? The "
        "N true pairs (the diagonal) say yes, the N^2 - N others say no. No softmax over the batch.",
        "Each logit is logit_scale times a cosine plus the bias. Give every pair a label z that is +1 on "
        "the diagonal and -1 elsewhere: then one formula, -log sigmoid(z * logit), covers both kinds.",
        "One matching pair of identical unit vectors at scale 1 and bias 0 gives log(1 + 1/e) = 0.3133. "
        "The loss is a sum over all N^2 pairs divided by N, not by N^2.",
    ],
    mistakes=[
        Mistake("averaged over all pairs", "SigLIP sums over the N^2 pairs and divides by the batch size N, "
                "not by N^2.", _siglip_mean),
        Mistake("forgot the bias", "Add the learned bias b to every logit: t * cos + b.", _siglip_no_bias),
        Mistake("left out the negative pairs", "Every off-diagonal pair contributes -log sigmoid(-logit): "
                "the negatives are what the loss learns from.", _siglip_diagonal_only),
        Mistake("forgot to normalise", "The logits use cosine similarities: F.normalize both sets first. "
                "(On unit-length inputs the value can still come out right; the gradient does not.)",
                _siglip_unnormalised),
    ],
    atol=1e-8,
    rtol=1e-6,
)

# ---------------------------------------------------------------- 3.4 zero-shot classifier


def _zero_shot_cases() -> list[Case]:
    generator = torch.Generator().manual_seed(34)
    classes = torch.randn(5, 8, generator=generator)
    # Images near a known class, but with lengths that differ a lot: unnormalised dot products mislead.
    labels = torch.tensor([3, 0, 4, 1, 2, 3, 0])
    images = (F.normalize(classes[labels], dim=-1) + 0.3 * torch.randn(7, 8, generator=generator))
    images = images * torch.tensor([0.2, 5.0, 1.0, 0.5, 3.0, 1.0, 0.1])[:, None]
    texts = classes * torch.tensor([4.0, 0.3, 1.0, 2.0, 0.5])[:, None]
    expected = (F.cosine_similarity(images[:, None], texts[None], dim=-1)).argmax(1)
    tiny_images = torch.tensor([[1.0, 0.0], [0.0, 2.0], [-1.0, 0.1]])
    tiny_texts = torch.tensor([[0.0, 1.0], [3.0, 0.0], [-1.0, 0.0]])
    # More images than classes, one class popular: normalising over the images (a softmax or a
    # column-wise scaling) changes which class some rows pick, so an answer on the wrong axis fails.
    popular = torch.Generator().manual_seed(2)
    popular_classes = torch.randn(4, 6, generator=popular)
    popular_labels = torch.tensor([0, 0, 0, 1, 2, 3])
    crowd = F.normalize(popular_classes[popular_labels], dim=-1) + 0.6 * torch.randn(6, 6, generator=popular)
    crowd = crowd * torch.tensor([1.0, 3.0, 0.5, 2.0, 1.0, 0.3])[:, None]
    crowd_expected = F.cosine_similarity(crowd[:, None], popular_classes[None], dim=-1).argmax(1)
    # Class vectors of unequal lengths in few dimensions: skipping the normalisation and normalising
    # each coordinate across the classes (dim=0) pick different, wrong classes here.
    mixed = torch.Generator().manual_seed(7)
    long_and_short = torch.randn(3, 4, generator=mixed) * torch.tensor([3.0, 0.5, 1.0])[:, None]
    scattered = torch.randn(6, 4, generator=mixed)
    scattered_expected = F.cosine_similarity(scattered[:, None], long_and_short[None], dim=-1).argmax(1)
    return [
        Case(inputs=(tiny_images, tiny_texts), expected=torch.tensor([1, 0, 2]),
             label="3 images, 3 classes in 2-D (by hand: classes 1, 0, 2)"),
        Case(inputs=(images, texts), expected=expected,
             label="7 images, 5 classes, vectors of very different lengths"),
        Case(inputs=(crowd, popular_classes), expected=crowd_expected,
             label="6 images, 4 classes in 6-D, three images near one popular class"),
        Case(inputs=(scattered, long_and_short), expected=scattered_expected,
             label="6 random images, 3 classes in 4-D, class vectors of lengths near 3, 0.5 and 1"),
    ]


def _zero_shot_unnormalised(image_vectors, class_text_vectors):
    return (image_vectors @ class_text_vectors.T).argmax(1)


def _zero_shot_wrong_axis(image_vectors, class_text_vectors):
    sims = F.normalize(image_vectors, dim=-1) @ F.normalize(class_text_vectors, dim=-1).T
    return sims.argmax(0)


def _zero_shot_classes_wrong_axis(image_vectors, class_text_vectors):
    sims = F.normalize(image_vectors, dim=-1) @ F.normalize(class_text_vectors, dim=0).T
    return sims.argmax(1)


def _zero_shot_argmin(image_vectors, class_text_vectors):
    sims = F.normalize(image_vectors, dim=-1) @ F.normalize(class_text_vectors, dim=-1).T
    return sims.argmin(1)


zero_shot = Exercise(
    key="3.4",
    title="A zero-shot classifier from class prompts",
    cases=_zero_shot_cases,
    hints=[
        "Zero-shot classification is retrieval: each image picks the class whose prompt vector is most "
        "similar to it. No training, no labels.",
        "Compare directions, not lengths: normalise both sets to unit length, then one matrix product "
        "gives every cosine similarity, [N_images, N_classes].",
        "The output is a long tensor of class indices, one per image: [N_images]. Scaling any image or "
        "class vector by a positive number must not change it.",
    ],
    mistakes=[
        Mistake("forgot to normalise", "A long text vector wins every dot product; normalise both sets.",
                _zero_shot_unnormalised),
        Mistake("used the wrong axis", "Each image (row) picks a class: argmax over dim=1.",
                _zero_shot_wrong_axis),
        Mistake("normalised along the wrong axis", "dim=0 scales each coordinate across the classes; every "
                "class vector needs length 1 on its own: normalise with dim=-1.", _zero_shot_classes_wrong_axis),
        Mistake("took the least similar class", "Pick the most similar class: argmax, not argmin.",
                _zero_shot_argmin),
    ],
)

# ---------------------------------------------------------------- 3.5 prompt ensembling


def _ensemble_reference(text_vectors):
    """[T, C, D] -> [C, D]: normalise each prompt, mean over templates, normalise again (by hand)."""
    unit = text_vectors / text_vectors.norm(dim=-1, keepdim=True)
    mean = unit.sum(0) / text_vectors.shape[0]
    return mean / mean.norm(dim=-1, keepdim=True)


def _ensemble_cases() -> list[Case]:
    generator = torch.Generator().manual_seed(35)
    hand = torch.tensor([[[2.0, 0.0]], [[0.0, 1.0]]])  # two templates, one class: unit average (1, 1)/sqrt 2
    lengths = torch.randn(4, 6, 8, generator=generator) * torch.tensor([0.1, 1.0, 10.0, 3.0])[:, None, None]
    return [
        Case(inputs=(hand,), expected=torch.tensor([[1.0, 1.0]]) / math.sqrt(2),
             label="2 templates, 1 class: (2, 0) and (0, 1) (by hand: (1, 1)/sqrt 2)"),
        Case(inputs=(lengths,), expected=_ensemble_reference(lengths),
             label="4 templates x 6 classes in 8-D, templates of very different lengths"),
    ]


def _ensemble_no_pre_norm(text_vectors):
    return F.normalize(text_vectors.mean(0), dim=-1)


def _ensemble_no_post_norm(text_vectors):
    return F.normalize(text_vectors, dim=-1).mean(0)


def _ensemble_wrong_axis(text_vectors):
    return F.normalize(F.normalize(text_vectors, dim=-1).mean(1), dim=-1)


prompt_ensemble = Exercise(
    key="3.5",
    title="Prompt ensembling",
    cases=_ensemble_cases,
    hints=[
        "Each class gets one vector per template ('a photo of a ...', 'a drawing of a ...'). Ensembling "
        "averages a class's vectors into one; the result is used as a single class prompt.",
        "The input is [templates, classes, D]. Every prompt vector should count equally, whatever its "
        "length, and the class vector must end up unit length like any other.",
        "The output is [classes, D] with rows of length 1, and scaling any one prompt vector by a positive "
        "number must not change it.",
    ],
    mistakes=[
        Mistake("averaged before normalising", "Normalise each prompt vector first, so that a long vector "
                "does not outvote the others.", _ensemble_no_pre_norm),
        Mistake("forgot to renormalise", "The mean of unit vectors is shorter than 1; normalise it again.",
                _ensemble_no_post_norm),
        Mistake("averaged over the classes", "Average over the templates (dim=0), one vector per class.",
                _ensemble_wrong_axis),
    ],
)


def progress():
    """This session's results for the chapter's exercises, as a table."""
    return chapter_progress(3)
