"""Exercises of chapter 6, Audio, speech and video. Checks compare with references written
independently of the solutions (a recursive edit distance, itertools.groupby for CTC, the sampling
rule applied frame by frame, a loop over codewords), never with a copy of the solution."""

from __future__ import annotations

import functools
import itertools

import torch

from utils.exercises.core import Case, Exercise, Mistake, chapter_progress

# ---------------------------------------------------------------- 6.1 word errors by type


def _table(reference: list, hypothesis: list, substitution: int = 1) -> list[list[int]]:
    """d[i][j]: the fewest edits between reference[:i] and hypothesis[:j], filled recursively."""
    @functools.cache
    def distance(i: int, j: int) -> int:
        if i == 0 or j == 0:
            return i + j
        same = reference[i - 1] == hypothesis[j - 1]
        return min(distance(i - 1, j) + 1, distance(i, j - 1) + 1,
                   distance(i - 1, j - 1) + (0 if same else substitution))
    return [[distance(i, j) for j in range(len(hypothesis) + 1)] for i in range(len(reference) + 1)]


def _walk_back(reference, hypothesis, order=("diagonal", "deletion", "insertion"), substitution=1):
    """(S, D, I) of one utterance: walk back from the end, taking the first move in `order` that
    the table allows."""
    d = _table(reference, hypothesis, substitution)
    i, j, counts = len(reference), len(hypothesis), {"S": 0, "D": 0, "I": 0}
    while i or j:
        for move in order:
            if move == "diagonal" and i and j:
                cost = 0 if reference[i - 1] == hypothesis[j - 1] else substitution
                if d[i][j] == d[i - 1][j - 1] + cost:
                    counts["S"] += cost > 0
                    i, j = i - 1, j - 1
                    break
            elif move == "deletion" and i and d[i][j] == d[i - 1][j] + 1:
                counts["D"] += 1
                i -= 1
                break
            elif move == "insertion" and j and d[i][j] == d[i][j - 1] + 1:
                counts["I"] += 1
                j -= 1
                break
    return counts["S"], counts["D"], counts["I"]


def _breakdown(references, hypotheses, order=("diagonal", "deletion", "insertion"), per_hypothesis=False):
    s = d = i = 0
    for reference, hypothesis in zip(references, hypotheses, strict=True):
        sub, dele, ins = _walk_back(reference.split(), hypothesis.split(), order)
        s, d, i = s + sub, d + dele, i + ins
    words = sum(len((h if per_hypothesis else r).split()) for r, h in zip(references, hypotheses, strict=True))
    return {"substitutions": s, "deletions": d, "insertions": i, "wer": 100.0 * (s + d + i) / words}


def _breakdown_cases() -> list[Case]:
    corpora = (
        (["two red circle", "nine blue", "zero zero square"],
         ["two red circles", "nine blue green", "zero square"],
         "one substitution, one insertion and one deletion"),
        (["red blue", "one two three four"], ["blue red", "one three two four"],
         "swapped words: two substitutions or a deletion and an insertion cost the same"),
        (["red circle", "four", "six six"], ["", "four four", "six"],
         "an empty hypothesis (everything deleted) and a repeated word"),
        (["seven", "purple triangle cross"], ["seven seven seven", "cross purple triangle"],
         "insertions pile up: more errors than words in the first utterance"),
    )
    return [Case(inputs=(refs, hyps), expected=_breakdown(refs, hyps), label=label) for refs, hyps, label in corpora]


def _breakdown_deletions_first(references, hypotheses):
    return _breakdown(references, hypotheses, order=("deletion", "insertion", "diagonal"))


def _breakdown_swapped(references, hypotheses):
    result = _breakdown(references, hypotheses)
    return {**result, "deletions": result["insertions"], "insertions": result["deletions"]}


def _breakdown_mean_of_utterances(references, hypotheses):
    result = _breakdown(references, hypotheses)
    rates = [_breakdown([r], [h])["wer"] for r, h in zip(references, hypotheses, strict=True)]
    return {**result, "wer": sum(rates) / len(rates)}


def _breakdown_by_hypothesis_length(references, hypotheses):
    return _breakdown(references, hypotheses, per_hypothesis=True)


def _breakdown_fraction(references, hypotheses):
    result = _breakdown(references, hypotheses)
    return {**result, "wer": result["wer"] / 100}


wer_breakdown = Exercise(
    key="6.1",
    title="Word errors by type: substitutions, deletions, insertions",
    cases=_breakdown_cases,
    hints=[
        "Fill the edit-distance table d[i][j] (the fewest edits between the first i reference words "
        "and the first j hypothesis words) as in section 6.4. Then walk back from d[n][m] to d[0][0]; "
        "each step is one move, and the move tells you the kind of error.",
        "At (i, j), try the moves in the stated order and take the first one the table allows: "
        "diagonal if d[i][j] == d[i-1][j-1] + (0 if the words match else 1) - a match or a "
        "substitution; else deletion if d[i][j] == d[i-1][j] + 1 (a reference word missing); else "
        "insertion (d[i][j] == d[i][j-1] + 1, an extra hypothesis word).",
        "Sum S, D and I over all utterances; wer = 100 * (S + D + I) / (number of reference words). "
        "For ['red blue'] against ['blue red'] the diagonal-first walk gives 2 substitutions, 0 "
        "deletions and 0 insertions, 100.0%.",
    ],
    mistakes=[
        Mistake("preferred a deletion and an insertion in ties", "When a substitution costs the "
                "same as a deletion plus an insertion, the stated order takes the diagonal move "
                "first: try diagonal, then deletion, then insertion.", _breakdown_deletions_first),
        Mistake("swapped deletions and insertions", "A deletion is a *reference* word the "
                "recogniser missed (a step up in i); an insertion is an extra word it heard (a step "
                "in j).", _breakdown_swapped),
        Mistake("averaged the utterances' rates", "A corpus error rate pools the edits and the "
                "reference words over all utterances; averaging per-utterance rates lets a short "
                "utterance weigh as much as a long one.", _breakdown_mean_of_utterances),
        Mistake("divided by the hypothesis length", "Divide by the number of words in the "
                "reference (what was said), not in the hypothesis (what was heard).",
                _breakdown_by_hypothesis_length),
        Mistake("returned a fraction", "Return the rate in percent: 100 * (S + D + I) / N.",
                _breakdown_fraction),
    ],
    forbidden=["jiwer.process_words", "jiwer.wer", "torchaudio.functional.edit_distance"],
)

# ---------------------------------------------------------------- 6.2 CTC greedy decoding


def _ctc_reference(log_probs, lengths, alphabet, blank):
    symbols = list(alphabet[:blank]) + [None] + list(alphabet[blank:])  # output index -> character
    texts = []
    for row in range(log_probs.shape[0]):
        path = log_probs[row, : int(lengths[row])].argmax(-1).tolist()
        merged = [key for key, _ in itertools.groupby(path)]
        texts.append("".join(symbols[i] for i in merged if i != blank))
    return texts


def _ctc_log_probs(paths, frames, vocabulary, generator):
    """Log-probabilities whose argmax follows each path (padding frames get random winners)."""
    scores = torch.randn(len(paths), frames, vocabulary, generator=generator, dtype=torch.float64)
    for row, path in enumerate(paths):
        for t, index in enumerate(path):
            scores[row, t, index] += 6.0
    return scores.log_softmax(-1)


def _ctc_cases() -> list[Case]:
    generator = torch.Generator().manual_seed(62)
    cases = []
    # blank 0, alphabet ' abc...': 'yellow' needs a blank between the two l's
    alphabet = " abcdefghijklmnopqrstuvwxyz"
    ids = {c: alphabet.index(c) + 1 for c in alphabet}
    yellow = [0, ids["y"], ids["y"], ids["e"], 0, ids["l"], ids["l"], 0, ids["l"], ids["o"], ids["w"], 0]
    red = [ids["r"], ids["e"], ids["e"], ids["d"], ids[" "], ids[" "], ids["o"], 0, ids["k"]]
    log_probs = _ctc_log_probs([yellow, red], 14, 28, generator)
    # padding frames after row 1's length: make them say something, so decoding them shows
    log_probs[1, 9:, ids["z"]] += 20.0
    log_probs = log_probs.log_softmax(-1)
    cases.append(Case(inputs=(log_probs, torch.tensor([12, 9]), alphabet, 0),
                      expected=_ctc_reference(log_probs, torch.tensor([12, 9]), alphabet, 0),
                      label="blank = 0: 'yellow' (a blank between the l's) and a padded row"))
    # blank last (as some toolkits put it), a small alphabet
    alphabet = "abc"
    path = [0, 0, 3, 1, 1, 3, 3, 2, 0, 3, 0]
    log_probs = _ctc_log_probs([path, [2, 2, 2, 3, 2]], 11, 4, generator)
    cases.append(Case(inputs=(log_probs, torch.tensor([11, 5]), alphabet, 3),
                      expected=_ctc_reference(log_probs, torch.tensor([11, 5]), alphabet, 3),
                      label="blank = 3 (the last output), alphabet 'abc'"))
    # blank in the middle, every row shorter than the tensor
    alphabet = "xyz"
    log_probs = _ctc_log_probs([[1, 1, 0, 0, 3, 2, 3], [3, 2, 2, 1]], 9, 4, generator)
    lengths = torch.tensor([7, 4])
    cases.append(Case(inputs=(log_probs, lengths, alphabet, 2),
                      expected=_ctc_reference(log_probs, lengths, alphabet, 2),
                      label="blank = 2 (between the characters), alphabet 'xyz'"))
    return cases


def _ctc_blanks_first(log_probs, lengths, alphabet, blank):
    symbols = list(alphabet[:blank]) + [None] + list(alphabet[blank:])
    texts = []
    for row in range(log_probs.shape[0]):
        path = [i for i in log_probs[row, : int(lengths[row])].argmax(-1).tolist() if i != blank]
        texts.append("".join(symbols[key] for key, _ in itertools.groupby(path)))
    return texts


def _ctc_with_padding(log_probs, lengths, alphabet, blank):
    full = torch.full_like(torch.as_tensor(lengths), log_probs.shape[1])
    return _ctc_reference(log_probs, full, alphabet, blank)


def _ctc_blank_zero(log_probs, lengths, alphabet, blank):
    texts = []
    for row in range(log_probs.shape[0]):
        path = log_probs[row, : int(lengths[row])].argmax(-1).tolist()
        texts.append("".join(alphabet[key - 1] for key, _ in itertools.groupby(path)
                             if key != blank and 0 < key <= len(alphabet)))
    return texts


def _ctc_no_merge(log_probs, lengths, alphabet, blank):
    symbols = list(alphabet[:blank]) + [None] + list(alphabet[blank:])
    return ["".join(symbols[i] for i in log_probs[row, : int(lengths[row])].argmax(-1).tolist() if i != blank)
            for row in range(log_probs.shape[0])]


ctc_greedy = Exercise(
    key="6.2",
    title="CTC greedy decoding",
    cases=_ctc_cases,
    hints=[
        "For each row, take the best output of each of its first lengths[row] frames "
        "(log_probs[row, :lengths[row]].argmax(-1)); the frames after that are padding.",
        "Then merge runs of the same output into one, and only then drop the blanks: the path "
        "'l l _ l' reads 'll', which is how CTC spells a double letter. Dropping blanks first "
        "would read 'l'.",
        "Output `blank` is not a character; the other outputs are the alphabet's characters in "
        "order, skipping the blank: with blank = 0, output k is alphabet[k - 1]; with blank = 3, "
        "outputs 0, 1, 2 are alphabet[0], [1], [2]. Return the strings as decoded, without "
        "stripping spaces.",
    ],
    mistakes=[
        Mistake("dropped the blanks before merging repeats", "Merge repeated outputs first, then "
                "drop the blanks: a blank between two l's is what keeps 'yellow' from reading "
                "'yelow'.", _ctc_blanks_first),
        Mistake("decoded the padding", "Decode only the first lengths[row] frames of each row: the "
                "frames after them are padding of a shorter utterance.", _ctc_with_padding),
        Mistake("assumed the blank is output 0", "The blank is output `blank`: the characters are "
                "the other outputs in order, so output k is alphabet[k] below the blank and "
                "alphabet[k - 1] above it.", _ctc_blank_zero),
        Mistake("did not merge repeats", "A character held over several frames is emitted on each "
                "of them: merge runs of the same output into one before dropping blanks.",
                _ctc_no_merge),
    ],
)

# ---------------------------------------------------------------- 6.3 clip sampling at a fixed stride


def _clip_reference(total, count, stride):
    span = (count - 1) * stride + 1
    start = (total - span) // 2 if span <= total else 0
    return [min(start + i * stride, total - 1) for i in range(count)]


def _clip_cases() -> list[Case]:
    return [Case(inputs=(total, count, stride), expected=_clip_reference(total, count, stride), label=label)
            for total, count, stride, label in (
                (32, 8, 2, "8 frames 2 apart from 32: a window of 15 frames, centred"),
                (10, 4, 3, "a window that exactly fills the video"),
                (12, 5, 4, "a window longer than the video: the last frame repeats"),
                (100, 4, 1, "4 consecutive frames from the middle of 100"),
                (30, 4, 5, "4 frames 5 apart from 30: a window of 16, centred"),
                (7, 3, 5, "too short again: 3 frames 5 apart from 7"),
            )]


def _clip_from_start(total, count, stride):
    return [min(i * stride, total - 1) for i in range(count)]


def _clip_centre_count_stride(total, count, stride):
    span = count * stride
    start = max(0, (total - span) // 2)
    return [min(start + i * stride, total - 1) for i in range(count)]


def _clip_wrapped(total, count, stride):
    span = (count - 1) * stride + 1
    start = (total - span) // 2 if span <= total else 0
    return [(start + i * stride) % total for i in range(count)]


def _clip_uniform(total, count, stride):
    return [int((i + 0.5) * total / count) for i in range(count)]


clip_indices = Exercise(
    key="6.3",
    title="Frames at a fixed stride, centred in the video",
    cases=_clip_cases,
    hints=[
        "The clip spans (count - 1) * stride + 1 frames, from its first index to its last. If that "
        "fits in the video, centre it: start = (total - span) // 2, and the indices are start, "
        "start + stride, start + 2 * stride, ...",
        "If the span is longer than the video, start at frame 0 and repeat the last frame "
        "(total - 1) for every index that would fall past the end - the usual padding of video "
        "loaders; never wrap around to the start.",
        "Return a list of `count` ints. clip_indices(32, 8, 2) is [8, 10, 12, 14, 16, 18, 20, 22].",
    ],
    mistakes=[
        Mistake("started at frame 0", "Centre the window when it fits: start = (total - span) // 2 with "
                "span = (count - 1) * stride + 1.", _clip_from_start),
        Mistake("took the span as count * stride", "From the first index to the last there are "
                "count - 1 gaps of `stride`: the span is (count - 1) * stride + 1 frames.",
                _clip_centre_count_stride),
        Mistake("wrapped around past the end", "When the window is longer than the video, repeat "
                "the last frame (total - 1) instead of wrapping to the start: a clip never jumps "
                "back in time.", _clip_wrapped),
        Mistake("ignored the stride", "The frames are `stride` apart, not spread over the whole "
                "video: that is uniform sampling, a different strategy.", _clip_uniform),
    ],
)

# ---------------------------------------------------------------- 6.4 one residual quantisation stage


def _rvq_reference(residual, codebook):
    best = []
    for point in residual:
        distances = [float(((point - word) ** 2).sum()) for word in codebook]
        best.append(min(range(len(distances)), key=distances.__getitem__))
    codes = torch.tensor(best, dtype=torch.long)
    quantised = codebook[codes]
    return codes, quantised, residual - quantised


def _rvq_cases() -> list[Case]:
    generator = torch.Generator().manual_seed(64)
    cases = []
    for n, k, dim, label in ((6, 4, 2, "6 points, 4 codewords in 2-d"),
                             (10, 8, 5, "10 points, 8 codewords in 5-d"),
                             (3, 16, 3, "3 points, 16 codewords in 3-d")):
        # codewords of very different lengths: the nearest is rarely the best dot product
        codebook = torch.randn(k, dim, generator=generator, dtype=torch.float64)
        codebook = codebook * torch.linspace(0.3, 3.0, k, dtype=torch.float64)[:, None]
        residual = torch.randn(n, dim, generator=generator, dtype=torch.float64) * 1.5
        cases.append(Case(inputs=(residual, codebook), expected=_rvq_reference(residual, codebook), label=label))
    return cases


def _rvq_by_dot(residual, codebook):
    codes = (residual @ codebook.T).argmax(1)
    return codes, codebook[codes], residual - codebook[codes]


def _rvq_by_cosine(residual, codebook):
    unit = torch.nn.functional.normalize
    codes = (unit(residual, dim=1) @ unit(codebook, dim=1).T).argmax(1)
    return codes, codebook[codes], residual - codebook[codes]


def _rvq_flipped_residual(residual, codebook):
    codes, quantised, next_residual = _rvq_reference(residual, codebook)
    return codes, quantised, -next_residual


def _rvq_residual_is_input(residual, codebook):
    codes, quantised, _ = _rvq_reference(residual, codebook)
    return codes, quantised, residual


rvq_stage = Exercise(
    key="6.4",
    title="One stage of residual vector quantisation",
    cases=_rvq_cases,
    hints=[
        "Each row of `residual` is replaced by its nearest codeword: the row of `codebook` with the "
        "smallest squared Euclidean distance to it. torch.cdist gives all N x K distances at once.",
        "`codes` holds, for each row, the index of that codeword (long, shape [N]); `quantised` holds "
        "the codewords themselves, one per row ([N, D]).",
        "What the next stage quantises is what this one missed, so quantised + next_residual must "
        "equal residual exactly, and no other codeword would leave a shorter next_residual row.",
    ],
    mistakes=[
        Mistake("picked the largest dot product", "The nearest codeword is the one with the smallest "
                "distance; a large dot product favours long codewords that can be far away.",
                _rvq_by_dot),
        Mistake("picked by cosine similarity", "Cosine ignores length, but a quantiser must match the "
                "length too: use the squared Euclidean distance.", _rvq_by_cosine),
        Mistake("flipped the residual's sign", "The next residual is residual - quantised (what "
                "is left to add), not quantised - residual.", _rvq_flipped_residual),
        Mistake("passed the residual on unchanged", "The next stage quantises what this stage "
                "missed: subtract the chosen codeword.", _rvq_residual_is_input),
    ],
)


# ---------------------------------------------------------------- 6.5 apparent motion between sampled frames


def _apparent_reference(speed, gap, world):
    shift = speed * gap
    while shift > world / 2:  # step round the wrapping world until the shortest way is left
        shift -= world
    while shift <= -world / 2:
        shift += world
    return shift


def _apparent_cases() -> list[Case]:
    return [Case(inputs=(speed, gap, world), expected=_apparent_reference(speed, gap, world), label=label)
            for speed, gap, world, label in (
                (1.5, 4, 32, "1.5 px a frame, frames 4 apart: 6 px, no wrapping"),
                (1.5, 16, 32, "1.5 px a frame, frames 16 apart: 24 px looks like 8 px the other way"),
                (-1.25, 16, 32, "moving left 1.25 px a frame, 16 frames apart"),
                (1.0, 16, 32, "exactly half the world: +16 (the interval includes +world/2)"),
                (3.0, 11, 20, "more than one and a half times round a 20-px world"),
                (0.5, 3, 64, "a slow shape in a larger world"),
            )]


def _apparent_unwrapped(speed, gap, world):
    return speed * gap


def _apparent_positive(speed, gap, world):
    return (speed * gap) % world


def _apparent_wrong_boundary(speed, gap, world):
    shift = (speed * gap) % world
    return shift - world if shift >= world / 2 else shift


def _apparent_one_wrap(speed, gap, world):
    shift = speed * gap
    if shift > world / 2:
        shift -= world
    elif shift <= -world / 2:
        shift += world
    return shift


apparent_motion = Exercise(
    key="6.5",
    title="The wagon-wheel effect: apparent motion between sampled frames",
    cases=_apparent_cases,
    hints=[
        "The shape really moves speed * gap pixels between the two frames. In a world of `world` "
        "pixels that wraps around, a move of d pixels and a move of d - world (or d + world) pixels "
        "end in the same place, so the two frames cannot tell them apart.",
        "Of all the moves d + k * world (k any integer) that end in the same place, a viewer sees "
        "the shortest: bring d into the interval (-world / 2, world / 2] by adding or subtracting "
        "whole worlds - as many times as it takes.",
        "The answer is a float in (-world / 2, world / 2]: speed 1.5, gap 16, world 32 gives -8.0 "
        "(24 px to the right looks like 8 px to the left); exactly half a world stays positive.",
    ],
    mistakes=[
        Mistake("did not wrap", "The world wraps around: a move of more than half the world looks like "
                "a shorter move the other way. Bring the shift into (-world / 2, world / 2].",
                _apparent_unwrapped),
        Mistake("wrapped into [0, world)", "Python's % gives a shift in [0, world), which loses the "
                "direction: a shift above world / 2 is a move the other way, so subtract a world.",
                _apparent_positive),
        Mistake("put half a world on the wrong side", "The interval is (-world / 2, world / 2]: a "
                "shift of exactly half the world stays +world / 2.", _apparent_wrong_boundary),
        Mistake("wrapped only once", "A shift can be more than a whole world: keep adding or "
                "subtracting worlds until it lies in (-world / 2, world / 2].", _apparent_one_wrap),
    ],
)


def progress():
    """This session's results for the chapter's exercises, as a table."""
    return chapter_progress(6)
