"""Exercises of chapter 8, Training at scale. Checks compare with references written independently
of the solutions (Hamming distances counted bit by bit in Python integers, cosines taken one pair at
a time, the DPO loss summed token by token in plain floats, the compute budget multiplied out step
by step), never with a copy of the solution."""

from __future__ import annotations

import math

import torch

from utils.exercises.core import Case, Exercise, Mistake, chapter_progress

# ---------------------------------------------------------------- 8.1 Hamming distance of hex hashes


def _hamming_reference(hashes_a, hashes_b):
    rows = []
    for a in hashes_a:
        row = []
        for b in hashes_b:
            x, y, differing = int(a, 16), int(b, 16), 0
            for _ in range(4 * len(a)):
                differing += (x & 1) != (y & 1)
                x, y = x >> 1, y >> 1
            row.append(differing)
        rows.append(row)
    return torch.tensor(rows, dtype=torch.long).reshape(len(hashes_a), len(hashes_b))


def _random_hashes(generator, n, digits=16):
    values = torch.randint(0, 16, (n, digits), generator=generator)
    return ["".join("0123456789abcdef"[int(v)] for v in row) for row in values]


def _hamming_cases() -> list[Case]:
    generator = torch.Generator().manual_seed(81)
    cases = []
    base = _random_hashes(generator, 3)
    flipped = []
    for h in base:  # one, two and four bits flipped
        value = int(h, 16)
        flipped.append(f"{value ^ 0x1:016x}")
        flipped.append(f"{value ^ 0x8000000000000001:016x}")
        flipped.append(f"{value ^ 0x0f00:016x}")
    for a, b, label in (
        (base, flipped, "3 hashes against copies with 1, 2 and 4 bits flipped"),
        (["0" * 16, "f" * 16, "00000000ffffffff"], ["0" * 16, "f" * 16], "all zeros and all ones"),
        (_random_hashes(generator, 4), _random_hashes(generator, 5), "4 against 5 random hashes"),
        (["8f373714acfcf4d0"], ["8f373714acfcf4d0", "0f373714acfcf4d1"], "one hash, itself and a near copy"),
    ):
        cases.append(Case(inputs=(a, b), expected=_hamming_reference(a, b), label=label))
    return cases


def _hamming_hex_digits(hashes_a, hashes_b):
    return torch.tensor([[sum(x != y for x, y in zip(a, b, strict=True)) for b in hashes_b] for a in hashes_a])


def _hamming_similarity(hashes_a, hashes_b):
    return 64 - _hamming_reference(hashes_a, hashes_b)


def _hamming_decimal(hashes_a, hashes_b):
    def value(h):
        return int("".join(c for c in h if c.isdigit()) or "0")
    return torch.tensor([[bin(value(a) ^ value(b)).count("1") for b in hashes_b] for a in hashes_a])


def _hamming_and(hashes_a, hashes_b):
    return torch.tensor([[bin(int(a, 16) & int(b, 16)).count("1") for b in hashes_b] for a in hashes_a])


hex_hamming = Exercise(
    key="8.1",
    title="Hamming distances between perceptual hashes",
    cases=_hamming_cases,
    hints=[
        "Each hash is 16 hexadecimal digits, so 64 bits. The Hamming distance counts the bits where "
        "two hashes differ - not the digits: one digit holds four bits.",
        "Turn each hash into a Python integer (int() accepts a base). Which bitwise operation on two "
        "integers gives a 1 exactly where they differ? Then count the ones in its binary form.",
        "Loop over both lists and build a list of rows, then torch.tensor(rows) - a LongTensor of "
        "shape [len(hashes_a), len(hashes_b)], 0 on the diagonal of a list against itself.",
    ],
    mistakes=[
        Mistake("counted differing hex digits", "A hex digit holds 4 bits, and two digits can differ "
                "in 1 to 4 of them: compare bits (int(h, 16), then xor), not characters.",
                _hamming_hex_digits),
        Mistake("returned the agreement", "The distance counts the bits that *differ*; 64 minus it "
                "counts those that agree.", _hamming_similarity),
        Mistake("read the hashes as decimal numbers", "The hashes are hexadecimal: int(h, 16).",
                _hamming_decimal),
        Mistake("counted common ones with and", "a & b marks bits that are 1 in both; the bits that "
                "differ are a ^ b (exclusive or).", _hamming_and),
    ],
)

# ---------------------------------------------------------------- 8.2 a CLIP-score filter


def _clip_filter_reference(image_embeddings, text_embeddings, threshold):
    keep = []
    for image, text in zip(image_embeddings.tolist(), text_embeddings.tolist(), strict=True):
        dot = sum(a * b for a, b in zip(image, text, strict=True))
        norms = math.sqrt(sum(a * a for a in image)) * math.sqrt(sum(b * b for b in text))
        keep.append(dot / norms >= threshold)
    return torch.tensor(keep, dtype=torch.bool)


def _clip_filter_cases() -> list[Case]:
    generator = torch.Generator().manual_seed(82)
    cases = []
    for n, dim, image_scale, text_scale, threshold, label in (
        (12, 8, 3.0, 0.3, 0.2, "12 pairs of 8-dim embeddings, not unit length, threshold 0.2"),
        (20, 16, 0.1, 4.0, -0.1, "20 pairs, short image and long text vectors, a negative threshold"),
        (9, 4, 10.0, 1.0, 0.5, "9 pairs, long image vectors, threshold 0.5"),
    ):
        image = image_scale * torch.randn(n, dim, generator=generator, dtype=torch.float64)
        text = text_scale * torch.randn(n, dim, generator=generator, dtype=torch.float64)
        text[: n // 3] = image[: n // 3] * text_scale + 0.3 * torch.randn(n // 3, dim, generator=generator,
                                                                           dtype=torch.float64)
        cases.append(Case(inputs=(image, text, threshold),
                          expected=_clip_filter_reference(image, text, threshold), label=label))
    # scores placed just either side of the threshold: 2-D vectors at chosen angles, mixed lengths
    cosines = torch.tensor([0.31, 0.29, 0.302, 0.298, 0.9, -0.5, 0.33, 0.27], dtype=torch.float64)
    lengths = torch.tensor([1.0, 2.0, 0.5, 3.0, 1.5, 0.2, 4.0, 1.0], dtype=torch.float64)
    image = torch.stack([lengths, torch.zeros(8, dtype=torch.float64)], 1)
    text = torch.stack([cosines, (1 - cosines**2).sqrt()], 1) * lengths.flip(0)[:, None]
    cases.append(Case(inputs=(image, text, 0.3), expected=_clip_filter_reference(image, text, 0.3),
                      label="8 pairs whose cosines sit just above and below 0.3"))
    return cases


def _clip_filter_unnormalised(image_embeddings, text_embeddings, threshold):
    return (image_embeddings * text_embeddings).sum(1) >= threshold


def _clip_filter_inverted(image_embeddings, text_embeddings, threshold):
    return ~_clip_filter_reference(image_embeddings, text_embeddings, threshold)


def _clip_filter_image_only(image_embeddings, text_embeddings, threshold):
    image = image_embeddings / image_embeddings.norm(dim=1, keepdim=True)
    return (image * text_embeddings).sum(1) >= threshold


def _clip_filter_best_text(image_embeddings, text_embeddings, threshold):
    image = image_embeddings / image_embeddings.norm(dim=1, keepdim=True)
    text = text_embeddings / text_embeddings.norm(dim=1, keepdim=True)
    return (image @ text.T).max(1).values >= threshold


clip_filter = Exercise(
    key="8.2",
    title="A CLIP-score filter at a threshold",
    cases=_clip_filter_cases,
    hints=[
        "The CLIP score of pair i is the cosine between image_embeddings[i] and text_embeddings[i]: "
        "their dot product divided by both lengths. These embeddings are not unit length.",
        "Normalise each row (x / x.norm(dim=1, keepdim=True), or F.normalize), multiply the two "
        "matrices element by element and sum over the last dimension: one score per pair, [N].",
        "Return a bool tensor [N]: True for the pairs to keep, those with score >= threshold.",
    ],
    mistakes=[
        Mistake("did not normalise", "A dot product grows with the vectors' lengths; the CLIP score "
                "is the cosine. Divide by both norms first.", _clip_filter_unnormalised),
        Mistake("normalised only the images", "Both embeddings need unit length: normalise the "
                "texts too.", _clip_filter_image_only),
        Mistake("returned the pairs to drop", "The filter keeps pairs whose score is at or above "
                "the threshold.", _clip_filter_inverted),
        Mistake("scored each image against its best text", "Pair i's score uses text i only: the "
                "diagonal of the similarity matrix, not its row maximum.", _clip_filter_best_text),
    ],
)

# ---------------------------------------------------------------- 8.3 the DPO loss from token log-probs


def _dpo_reference(policy, reference, mask, beta, label_smoothing):
    losses = []
    for b in range(policy.shape[0]):
        ratio = []
        for answer in (0, 1):
            total = 0.0
            for t in range(policy.shape[2]):
                if bool(mask[b, answer, t]):
                    total += float(policy[b, answer, t]) - float(reference[b, answer, t])
            ratio.append(total)
        z = beta * (ratio[0] - ratio[1])
        log_sig = -math.log1p(math.exp(-z)) if z > 0 else z - math.log1p(math.exp(z))
        log_sig_neg = log_sig - z  # log sigmoid(-z) = log sigmoid(z) - z
        losses.append(-(1 - label_smoothing) * log_sig - label_smoothing * log_sig_neg)
    return torch.tensor(sum(losses) / len(losses), dtype=torch.float64)


def _dpo_cases() -> list[Case]:
    generator = torch.Generator().manual_seed(83)
    cases = []
    for batch, length, beta, smoothing, label in (
        (4, 6, 0.1, 0.0, "4 pairs, answers of up to 6 tokens, beta 0.1, no smoothing"),
        (3, 5, 0.5, 0.1, "3 pairs, beta 0.5, label smoothing 0.1"),
        (5, 3, 2.0, 0.0, "5 pairs, beta 2"),
        (2, 7, 1.0, 0.3, "2 pairs, beta 1, label smoothing 0.3"),
    ):
        policy = -3 * torch.rand(batch, 2, length, generator=generator, dtype=torch.float64)
        reference = -3 * torch.rand(batch, 2, length, generator=generator, dtype=torch.float64)
        lengths = torch.randint(1, length + 1, (batch, 2), generator=generator)
        mask = torch.arange(length)[None, None, :] < lengths[..., None]
        policy = policy.masked_fill(~mask, -50.0)  # padding holds junk the mask must remove
        reference = reference.masked_fill(~mask, -20.0)
        cases.append(Case(inputs=(policy, reference, mask, beta, smoothing),
                          expected=_dpo_reference(policy, reference, mask, beta, smoothing),
                          label=label, gradient=False))
    return cases


def _dpo_with(policy, reference, mask, beta, label_smoothing, *, mean=False, use_mask=True,
              swap=False, no_beta=False):
    weights = mask.to(policy.dtype) if use_mask else torch.ones_like(policy)
    sums = ((policy - reference) * weights).sum(-1)
    if mean:
        sums = sums / weights.sum(-1)
    margin = sums[:, 0] - sums[:, 1]
    if swap:
        margin = -margin
    z = margin if no_beta else beta * margin
    e = label_smoothing
    return (-(1 - e) * torch.nn.functional.logsigmoid(z) - e * torch.nn.functional.logsigmoid(-z)).mean()


dpo_from_tokens = Exercise(
    key="8.3",
    title="The DPO loss from token log-probabilities",
    cases=_dpo_cases,
    hints=[
        "First the sequence log-probabilities: sum the token log-probabilities over the positions "
        "the mask marks (a sum, not a mean), for policy and reference, chosen (index 0 of dim 1) and "
        "rejected (index 1).",
        "The margin is (policy - reference) of the chosen minus (policy - reference) of the "
        "rejected. The loss of a pair is -log sigmoid(beta * margin); use F.logsigmoid.",
        "With label smoothing e (conservative DPO), a pair's loss is "
        "-(1 - e) * logsigmoid(beta * margin) - e * logsigmoid(-beta * margin). Average over pairs.",
    ],
    mistakes=[
        Mistake("averaged over tokens", "A sequence's log-probability is the *sum* of its tokens' "
                "log-probabilities; a mean would change the loss with the answer's length.",
                lambda *a: _dpo_with(*a, mean=True)),
        Mistake("ignored the mask", "Positions the mask marks False are padding: leave them out of "
                "the sums.", lambda *a: _dpo_with(*a, use_mask=False)),
        Mistake("swapped chosen and rejected", "Index 0 of the second dimension is the chosen "
                "answer: the margin is chosen minus rejected. (Putting the smoothing weights the wrong "
                "way round, e on the usual term, gives the same numbers.)",
                lambda *a: _dpo_with(*a, swap=True)),
        Mistake("left out beta", "The margin is multiplied by beta inside the sigmoid.",
                lambda *a: _dpo_with(*a, no_beta=True)),
    ],
    atol=1e-9,
    rtol=1e-7,
)

# ---------------------------------------------------------------- 8.4 a compute budget


def _days_reference(towers, samples, gpus, flops_per_gpu):
    per_sample = 0.0
    for params, tokens in towers:
        per_sample += 2 * params * tokens  # forward
        per_sample += 4 * params * tokens  # backward
    seconds = per_sample * samples / (gpus * flops_per_gpu)
    return seconds / (24 * 3600)


def _days_cases() -> list[Case]:
    cases = []
    for towers, samples, gpus, rate, label in (
        ([(304e6, 257), (123e6, 77)], 12.8e9, 256, 40e12, "CLIP ViT-L/14's towers, 256 GPUs at 40 TFLOP/s"),
        ([(86e6, 197), (63e6, 77)], 3e9, 64, 100e12, "ViT-B/16-sized towers, 64 GPUs"),
        ([(1.0e9, 1000)], 1e6, 1, 1e12, "one 1B-parameter model, 1,000 tokens a sample, one device"),
        ([(5e6, 40), (2e6, 24), (1e6, 16)], 5e7, 8, 2e11, "three towers, 8 devices"),
    ):
        cases.append(Case(inputs=(towers, samples, gpus, rate),
                          expected=_days_reference(towers, samples, gpus, rate), label=label))
    return cases


def _days_forward_only(towers, samples, gpus, flops_per_gpu):
    return _days_reference(towers, samples, gpus, flops_per_gpu) / 3


def _days_seconds(towers, samples, gpus, flops_per_gpu):
    return _days_reference(towers, samples, gpus, flops_per_gpu) * 86_400


def _days_hours(towers, samples, gpus, flops_per_gpu):
    return _days_reference(towers, samples, gpus, flops_per_gpu) * 24


def _days_product_of_sums(towers, samples, gpus, flops_per_gpu):
    params = sum(p for p, _ in towers)
    tokens = sum(t for _, t in towers)
    return 6 * params * tokens * samples / (gpus * flops_per_gpu) / 86_400


def _days_one_gpu(towers, samples, gpus, flops_per_gpu):
    return _days_reference(towers, samples, 1, flops_per_gpu)


training_days = Exercise(
    key="8.4",
    title="A compute budget in days",
    cases=_days_cases,
    hints=[
        "Training costs about 6 FLOPs per parameter per token: 2 for the forward pass, 4 for the "
        "backward. A tower with P parameters reading T tokens costs 6 * P * T per sample.",
        "Add the towers' costs (each with its own tokens), multiply by the number of samples, and "
        "divide by the cluster's rate: gpus * flops_per_gpu FLOPs per second.",
        "That gives seconds; a day has 24 * 3600 = 86,400 of them. Return a plain number of days.",
    ],
    mistakes=[
        Mistake("counted the forward pass only", "Training runs a backward pass too, twice the "
                "forward's cost: 6 P T, not 2 P T.", _days_forward_only),
        Mistake("returned seconds", "Divide the seconds by 86,400 to get days.", _days_seconds),
        Mistake("returned hours", "A day is 24 hours: divide by 86,400 seconds, not 3,600.", _days_hours),
        Mistake("multiplied the sums", "Each tower reads its own tokens: sum P_i * T_i over the "
                "towers, not (sum of P) * (sum of T).", _days_product_of_sums),
        Mistake("used one GPU", "The cluster's rate is gpus * flops_per_gpu.", _days_one_gpu),
    ],
    rtol=1e-9,
    atol=0.0,
)

# ---------------------------------------------------------------- 8.5 leave one filter out (ablation)


def _kept_reference(removed, skip):
    names = list(removed)
    size = len(removed[names[0]])
    kept = []
    for i in range(size):
        if not any(bool(removed[name][i]) for name in names if name != skip):
            kept.append(i)
    return torch.tensor(kept, dtype=torch.long)


def _kept_cases() -> list[Case]:
    generator = torch.Generator().manual_seed(85)
    cases = []
    for size, names, skip, rate, label in (
        (30, ("exact", "url", "phash", "safety", "size", "clip"), "phash", 0.15, "six filters, leave out pHash"),
        (25, ("exact", "url", "phash", "safety", "size", "clip"), "clip", 0.2, "six filters, leave out the CLIP score"),
        (40, ("dedup", "safety"), "safety", 0.3, "two filters, leave out safety"),
        (20, ("a", "b", "c"), "a", 0.5, "three filters that remove half each"),
    ):
        removed = {name: (torch.rand(size, generator=generator) < rate).tolist() for name in names}
        cases.append(Case(inputs=(removed, skip), expected=_kept_reference(removed, skip), label=label))
    return cases


def _kept_all_filters(removed, skip):
    return _kept_reference(removed, None)


def _kept_only_skip(removed, skip):
    return torch.tensor([i for i, r in enumerate(removed[skip]) if not r], dtype=torch.long)


def _kept_removed(removed, skip):
    everything = set(range(len(removed[skip])))
    return torch.tensor(sorted(everything - set(_kept_reference(removed, skip).tolist())), dtype=torch.long)


def _kept_all_must_agree(removed, skip):
    names = [name for name in removed if name != skip]
    size = len(removed[skip])
    return torch.tensor([i for i in range(size) if not all(removed[n][i] for n in names)], dtype=torch.long)


leave_one_out = Exercise(
    key="8.5",
    title="Leave one filter out (an ablation)",
    cases=_kept_cases,
    hints=[
        "An item is kept when no filter removes it. Leaving a filter out means ignoring its verdicts: "
        "an item that only the left-out filter removes comes back.",
        "For each item i, look at removed[name][i] for every name except `skip`; keep i when all of "
        "them are False. torch.tensor(list_of_indices, dtype=torch.long) gives the answer.",
        "Check yourself: with skip set to a filter that removes nothing, you get the same set as "
        "applying every filter; the result never shrinks when you leave a filter out.",
    ],
    mistakes=[
        Mistake("applied every filter", "The left-out filter's verdicts must be ignored: skip the "
                "entry removed[skip].", _kept_all_filters),
        Mistake("applied only the left-out filter", "Leave-one-out applies every filter *except* "
                "`skip`, not `skip` alone.", _kept_only_skip),
        Mistake("returned the removed items", "Return the indices that are kept, the ones no "
                "remaining filter removes.", _kept_removed),
        Mistake("removed an item only when every filter agreed", "One filter is enough to remove an "
                "item: combine the filters with 'any', not 'all'.", _kept_all_must_agree),
    ],
)


def progress():
    """This session's results for the chapter's exercises, as a table."""
    return chapter_progress(8)
