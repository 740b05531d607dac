"""Exercises of chapter 5, Vision-language models. Checks compare with references written
independently of the solutions (a per-row loop for the splice, a scan of the turns for the labels,
the tile rule applied step by step), never with a copy of the solution."""

from __future__ import annotations

import math
import re

import torch

from utils.exercises.core import Case, Exercise, Mistake, chapter_progress

IMAGE_ID, SEP_ID, EOS_ID, PAD_ID, IGNORE = 4, 5, 3, 0, -100

# ---------------------------------------------------------------- 5.1 splice at the placeholder


def _splice_reference(text, image, tokens, image_id):
    rows = []
    for row in range(tokens.shape[0]):
        place = int((tokens[row] == image_id).nonzero()[0, 0])
        rows.append(torch.cat([text[row, :place], image[row], text[row, place + 1 :]]))
    return torch.stack(rows)


def _splice_cases() -> list[Case]:
    generator = torch.Generator().manual_seed(51)
    cases = []
    for places, length, k, dim, image_id, label in (
        ((1, 1), 6, 3, 4, 4, "two rows, <image> (id 4) at position 1 in both"),
        ((0, 3, 5), 6, 2, 3, 7, "three rows, <image> (id 7) at positions 0, 3 and 5 (the last)"),
        ((2,), 4, 5, 2, 4, "one row, 5 image tokens into a 4-token sequence"),
    ):
        tokens = torch.randint(10, 30, (len(places), length), generator=generator)
        for row, place in enumerate(places):
            tokens[row, place] = image_id
        text = torch.randn(len(places), length, dim, generator=generator, dtype=torch.float64)
        image = torch.randn(len(places), k, dim, generator=generator, dtype=torch.float64)
        inputs = (text, image, tokens, image_id)
        cases.append(Case(inputs=inputs, expected=_splice_reference(*inputs), label=label))
    return cases


def _splice_first_row_place(text, image, tokens, image_id):
    place = int((tokens[0] == image_id).nonzero()[0, 0])
    return torch.cat([text[:, :place], image, text[:, place + 1 :]], dim=1)


def _splice_kept_placeholder(text, image, tokens, image_id):
    rows = []
    for row in range(tokens.shape[0]):
        place = int((tokens[row] == image_id).nonzero()[0, 0])
        rows.append(torch.cat([text[row, : place + 1], image[row], text[row, place + 1 :]]))
    return torch.stack(rows)


def _splice_at_start(text, image, tokens, image_id):
    rows = []
    for row in range(tokens.shape[0]):
        keep = tokens[row] != image_id
        rows.append(torch.cat([image[row], text[row][keep]]))
    return torch.stack(rows)


def _splice_replaced_next(text, image, tokens, image_id):
    rows = []
    for row in range(tokens.shape[0]):
        place = int((tokens[row] == image_id).nonzero()[0, 0])
        after = torch.cat([text[row, place + 2 :], text[row, place : place + 1]])
        rows.append(torch.cat([text[row, :place], image[row], after]))
    return torch.stack(rows)


splice_image = Exercise(
    key="5.1",
    title="Splice image tokens at each row's <image> placeholder",
    cases=_splice_cases,
    gradient_reference=_splice_reference,
    hints=[
        "Each row has one <image> token, but not always at the same position. The image's K vectors "
        "take the placeholder's place: everything before it stays before, everything after it stays after.",
        "The output has L - 1 + K positions: the placeholder is gone, K image positions came in. A loop "
        "over rows with torch.cat is fine; so is building, for every output position, the index it "
        "takes from the text or from the image.",
        "For a row whose placeholder sits at position p, output positions 0 .. p - 1 are the text's, "
        "p .. p + K - 1 are the image's, and the rest are the text's from p + 1 on; shape [B, L - 1 + K, D]. "
        "Gradients must flow to both text and image.",
    ],
    mistakes=[
        Mistake("used the first row's position for every row", "The placeholder can sit at a different "
                "position in each row (a system prompt, left padding, several turns): find it row by "
                "row.", _splice_first_row_place),
        Mistake("kept the placeholder", "The <image> token is replaced by the image tokens, not kept "
                "beside them: the output is L - 1 + K long.", _splice_kept_placeholder),
        Mistake("put the image first", "The image goes where the placeholder is; text before the "
                "placeholder stays before the image.", _splice_at_start),
        Mistake("dropped the token after the placeholder", "Only the placeholder leaves the sequence; "
                "the token right after it must follow the image.", _splice_replaced_next),
    ],
    atol=0.0,
    rtol=0.0,
)

# ---------------------------------------------------------------- 5.2 answer-only labels


def _labels_reference(tokens, sep_id, eos_id, ignore):
    labels = torch.full_like(tokens, ignore)
    for row in range(tokens.shape[0]):
        answering = False
        for position, token in enumerate(tokens[row].tolist()):
            if answering:
                labels[row, position] = token
                if token == eos_id:
                    answering = False
            elif token == sep_id:
                answering = True
    return labels


def _conversation(turns: list[tuple[int, int]], length: int, generator: torch.Generator, sep_id: int,
                  eos_id: int) -> list[int]:
    row = [2, IMAGE_ID]
    for question_length, answer_length in turns:
        row += torch.randint(10, 40, (question_length,), generator=generator).tolist() + [sep_id]
        row += torch.randint(10, 40, (answer_length,), generator=generator).tolist() + [eos_id]
    return row + [PAD_ID] * (length - len(row))


def _labels_cases() -> list[Case]:
    generator = torch.Generator().manual_seed(52)
    cases = []
    for conversations, sep_id, eos_id, ignore, label in (
        ([[(4, 1)], [(3, 1)]], SEP_ID, EOS_ID, IGNORE, "two one-turn conversations, one-word answers"),
        ([[(3, 2), (4, 1)], [(2, 5)]], 8, 9, IGNORE,
         "a two-turn conversation and a one-turn one with a 5-token answer (<sep> 8, <eos> 9)"),
        ([[(2, 1), (2, 1), (3, 3)]], SEP_ID, EOS_ID, -1, "three turns in one row, ignore = -1"),
    ):
        length = max(2 + sum(q + a + 2 for q, a in turns) for turns in conversations) + 2
        tokens = torch.tensor([_conversation(turns, length, generator, sep_id, eos_id)
                               for turns in conversations])
        inputs = (tokens, sep_id, eos_id, ignore)
        cases.append(Case(inputs=inputs, expected=_labels_reference(*inputs), label=label))
    return cases


def _labels_first_turn_only(tokens, sep_id, eos_id, ignore):
    labels = _labels_reference(tokens, sep_id, eos_id, ignore)
    for row in range(tokens.shape[0]):
        ends = (tokens[row] == eos_id).nonzero()
        if len(ends):
            labels[row, int(ends[0, 0]) + 1 :] = ignore
    return labels


def _labels_with_sep(tokens, sep_id, eos_id, ignore):
    labels = _labels_reference(tokens, sep_id, eos_id, ignore)
    return torch.where(tokens == sep_id, tokens, labels)


def _labels_without_eos(tokens, sep_id, eos_id, ignore):
    labels = _labels_reference(tokens, sep_id, eos_id, ignore)
    return labels.masked_fill(tokens == eos_id, ignore)


def _labels_everything_after_sep(tokens, sep_id, eos_id, ignore):
    labels = torch.full_like(tokens, ignore)
    for row in range(tokens.shape[0]):
        first = int((tokens[row] == sep_id).nonzero()[0, 0])
        labels[row, first + 1 :] = tokens[row, first + 1 :]
    return labels


def _labels_pre_shifted(tokens, sep_id, eos_id, ignore):
    labels = _labels_reference(tokens, sep_id, eos_id, ignore)
    shifted = torch.full_like(labels, ignore)
    shifted[:, :-1] = labels[:, 1:]
    return shifted


def _labels_scored_padding(tokens, sep_id, eos_id, ignore):
    labels = _labels_reference(tokens, sep_id, eos_id, ignore)
    return torch.where(tokens == PAD_ID, tokens, labels)


answer_labels = Exercise(
    key="5.2",
    title="Labels for the answers only, in multi-turn conversations",
    cases=_labels_cases,
    hints=[
        "The model reads the prompt but is scored only on what the assistant says: every answer token "
        "keeps its id as its label, every other position gets `ignore`.",
        "An answer starts right after a <sep> and ends with the next <eos>, which is scored too (the "
        "model must learn to stop). A row can hold several turns: question, <sep>, answer, <eos>, "
        "question, <sep>, ... then padding.",
        "The labels have the tokens' shape and dtype. The <sep> tokens, the questions, <bos>, <image> "
        "and the padding are all `ignore`; each answer's tokens and its <eos> equal the tokens.",
    ],
    mistakes=[
        Mistake("scored the first turn only", "Every assistant turn is an answer: after an <eos>, the "
                "next <sep> starts another answer to score.", _labels_first_turn_only),
        Mistake("scored the <sep> token", "<sep> is part of the prompt (it tells the model to answer); "
                "labels start at the token after it.", _labels_with_sep),
        Mistake("left out the <eos>", "Score the <eos> that ends each answer, or the model never "
                "learns when to stop talking.", _labels_without_eos),
        Mistake("scored everything after the first <sep>", "The second question is the user's words, "
                "not the model's: only the spans from <sep> to <eos> are answers.",
                _labels_everything_after_sep),
        Mistake("scored the padding", "Padding is not text: give it `ignore`.", _labels_scored_padding),
        Mistake("shifted the labels by one", "Keep each label at its own token's position: the loss "
                "shifts (position t's logits against the label at t + 1), so labels must not be "
                "shifted in advance.", _labels_pre_shifted),
    ],
)

# ---------------------------------------------------------------- 5.3 AnyRes tile count


def _tiles_reference(height, width, tile, max_per_side, tokens_per_tile):
    longest = max(height, width)
    side_tiles = min(max_per_side, math.ceil(longest / tile))
    scale = side_tiles * tile / longest
    rows = max(1, math.ceil(round(height * scale, 6) / tile))
    cols = max(1, math.ceil(round(width * scale, 6) / tile))
    tiles = rows * cols + (1 if rows * cols > 1 else 0)
    return {"rows": rows, "cols": cols, "tiles": tiles, "tokens": tiles * tokens_per_tile}


def _tiles_cases() -> list[Case]:
    cases = []
    for size, label in (
        ((32, 32, 32, 4, 16), "a 32 x 32 image with 32-pixel tiles: one tile, no thumbnail"),
        ((64, 64, 32, 4, 16), "64 x 64: 2 x 2 tiles and a thumbnail"),
        ((40, 100, 32, 6, 16), "40 x 100 (wide), at most 6 tiles a side: the long side becomes 4 tiles"),
        ((300, 90, 32, 3, 16), "300 x 90 (tall), capped at 3 tiles a side"),
        ((1536, 2048, 512, 4, 64), "SmolVLM's geometry: 1536 x 2048 photo, 512-pixel tiles, 64 tokens a tile"),
        ((20, 30, 32, 4, 16), "20 x 30, smaller than one tile"),
    ):
        cases.append(Case(inputs=size, expected=_tiles_reference(*size), label=label))
    return cases


def _tiles_no_thumbnail(height, width, tile, max_per_side, tokens_per_tile):
    found = _tiles_reference(height, width, tile, max_per_side, tokens_per_tile)
    tiles = found["rows"] * found["cols"]
    return {**found, "tiles": tiles, "tokens": tiles * tokens_per_tile}


def _tiles_no_cap(height, width, tile, max_per_side, tokens_per_tile):
    return _tiles_reference(height, width, tile, 10**6, tokens_per_tile)


def _tiles_always_thumbnail(height, width, tile, max_per_side, tokens_per_tile):
    found = _tiles_reference(height, width, tile, max_per_side, tokens_per_tile)
    tiles = found["rows"] * found["cols"] + 1
    return {**found, "tiles": tiles, "tokens": tiles * tokens_per_tile}


def _tiles_floor(height, width, tile, max_per_side, tokens_per_tile):
    longest = max(height, width)
    side_tiles = max(1, min(max_per_side, longest // tile))
    scale = side_tiles * tile / longest
    rows, cols = max(1, int(height * scale // tile)), max(1, int(width * scale // tile))
    tiles = rows * cols + (1 if rows * cols > 1 else 0)
    return {"rows": rows, "cols": cols, "tiles": tiles, "tokens": tiles * tokens_per_tile}


anyres_tiles = Exercise(
    key="5.3",
    title="AnyRes: how many tiles, and tokens, a large image costs",
    cases=_tiles_cases,
    hints=[
        "Big images are cut into tiles the vision tower was trained on, and a downscaled copy of the "
        "whole image (the thumbnail) goes along when there is more than one tile.",
        "First fix the long side: ceil(longest / tile) tiles, at most max_per_side. Scale the image so "
        "the long side is exactly that many tiles; the short side scales by the same factor, and its "
        "tiles are ceil(scaled short side / tile), at least 1.",
        "Return a dict with int values for rows, cols, tiles (rows * cols, plus 1 for the thumbnail "
        "when rows * cols > 1) and tokens (tiles * tokens_per_tile). A 64 x 64 image with 32-pixel "
        "tiles costs 5 tiles.",
    ],
    mistakes=[
        Mistake("forgot the thumbnail", "With more than one tile, the downscaled whole image is one "
                "more tile: it gives the model the global layout the tiles cut apart.", _tiles_no_thumbnail),
        Mistake("did not cap the tiles", "The long side gets at most max_per_side tiles; a bigger image "
                "is scaled down to fit.", _tiles_no_cap),
        Mistake("added a thumbnail to a single tile", "One tile already is the whole image: no thumbnail.",
                _tiles_always_thumbnail),
        Mistake("rounded down", "A partly covered tile is still a tile: round the tile counts up "
                "(math.ceil).", _tiles_floor),
    ],
)

# ---------------------------------------------------------------- 5.4 boxes as tokens

_BOX_TEXT = re.compile(r"\s*<box>" + r"\s*<loc(\d+)>" * 4 + r"\s*</box>\s*")


def _encode_reference(box, image_size, bins):
    cells = [min(bins - 1, max(0, math.floor(value * bins / image_size))) for value in box]
    return "<box> " + " ".join(f"<loc{c}>" for c in cells) + " </box>"


def _decode_reference(text, image_size, bins):
    found = _BOX_TEXT.fullmatch(text)
    if not found or any(int(c) >= bins for c in found.groups()):
        return None
    return tuple((int(c) + 0.5) * image_size / bins for c in found.groups())


def _encode_cases() -> list[Case]:
    return [Case(inputs=(box, size, bins), expected=_encode_reference(box, size, bins), label=label)
            for box, size, bins, label in (
                ((3.2, 10.0, 17.9, 31.5), 32, 16, "a box in a 32-pixel image, 16 bins"),
                ((0.0, 0.0, 32.0, 32.0), 32, 16, "the whole image: 32.0 must land in the last bin, 15"),
                ((-1.5, 4.0, 20.0, 40.0), 32, 16, "a box sticking out of the image: clip to bins 0 and 15"),
                ((100.0, 220.0, 639.0, 480.0), 640, 100, "a 640-pixel image with 100 bins"),
            )]


def _encode_rounded(box, image_size, bins):
    cells = [min(bins - 1, max(0, round(value * bins / image_size))) for value in box]
    return "<box> " + " ".join(f"<loc{c}>" for c in cells) + " </box>"


def _encode_unclipped(box, image_size, bins):
    return "<box> " + " ".join(f"<loc{math.floor(v * bins / image_size)}>" for v in box) + " </box>"


box_encode = Exercise(
    key="5.4",
    title="Boxes as tokens: a box in pixels to <loc> tokens",
    cases=_encode_cases,
    hints=[
        "A coordinate becomes one of `bins` location tokens: the image side is cut into `bins` equal "
        "cells, and the token names the cell the coordinate falls in.",
        "Cell = floor(value * bins / image_size), clipped to 0 .. bins - 1, so that an edge at exactly "
        "image_size, or outside the image, still gives a valid token.",
        "The text is '<box> <locA> <locB> <locC> <locD> </box>' with single spaces, in the order x0, "
        "y0, x1, y1. (3.2, 10.0, 17.9, 31.5) in a 32-pixel image with 16 bins starts '<box> <loc1> <loc5>'.",
    ],
    mistakes=[
        Mistake("rounded instead of flooring", "A coordinate belongs to the cell it falls in: floor, "
                "not round (round moves half the values to the next cell).", _encode_rounded),
        Mistake("did not clip", "Coordinates at the image edge or outside it must map to bins 0 .. bins - "
                "1.", _encode_unclipped),
    ],
)


def _decode_cases() -> list[Case]:
    cases = []
    for text, size, bins, label in (
        ("<box> <loc1> <loc5> <loc8> <loc15> </box>", 32, 16, "a valid box, 32-pixel image, 16 bins"),
        ("<box> <loc0> <loc99> <loc50> <loc7> </box>", 640, 100, "a valid box, 640 pixels, 100 bins"),
        ("  <box><loc2> <loc3>  <loc4> <loc5></box> ", 32, 16, "valid, with irregular spaces"),
        ("<box> <loc1> <loc5> <loc8> </box>", 32, 16, "only three coordinates: malformed"),
        ("red", 32, 16, "not a box at all"),
        ("<box> <loc1> <loc5> <loc8> <loc16> </box>", 32, 16, "bin 16 does not exist with 16 bins"),
        ("<box> <loc1> <loc5> <loc8> <loc9> </box> <box>", 32, 16, "a box and a stray <box>: malformed"),
    ):
        cases.append(Case(inputs=(text, size, bins), expected=_decode_reference(text, size, bins),
                          label=label))
    return cases


def _decode_corner(text, image_size, bins):
    found = _BOX_TEXT.fullmatch(text)
    if not found or any(int(c) >= bins for c in found.groups()):
        return None
    return tuple(int(c) * image_size / bins for c in found.groups())


def _decode_split_on_spaces(text, image_size, bins):
    parts = text.strip().split(" ")
    if len(parts) != 6 or parts[0] != "<box>" or parts[-1] != "</box>":
        return None
    cells = []
    for part in parts[1:5]:
        found = re.fullmatch(r"<loc(\d+)>", part)
        if found is None:
            return None
        cells.append(int(found.group(1)))
    if max(cells) >= bins:
        return None
    return tuple((c + 0.5) * image_size / bins for c in cells)


def _decode_trusting(text, image_size, bins):
    cells = [int(c) for c in re.findall(r"<loc(\d+)>", text)]
    if not cells:
        return None
    return tuple((c + 0.5) * image_size / bins for c in cells)


box_decode = Exercise(
    key="5.5",
    title="Boxes as tokens: <loc> tokens back to pixels, or None for malformed text",
    cases=_decode_cases,
    hints=[
        "Decoding maps each cell back to a point inside it, and must refuse text that is not a box: a "
        "model's output can be anything.",
        "A cell stands for every coordinate in it; its centre, (cell + 0.5) * image_size / bins, is the "
        "best single guess. A regular expression for '<box>', four '<loc(digits)>' and '</box>', "
        "spaces allowed anywhere between them, matched against the whole text, does the parsing.",
        "Return a tuple of 4 floats, or None unless the whole text is exactly one box of four location "
        "tokens, each below `bins`. '<box> <loc1> <loc5> <loc8> <loc15> </box>' (32 pixels, 16 bins) "
        "gives (3.0, 11.0, 17.0, 31.0).",
    ],
    mistakes=[
        Mistake("decoded to the cell's corner", "Decode to the cell's centre, (cell + 0.5) * image_size "
                "/ bins: it halves the worst-case error.", _decode_corner),
        Mistake("trusted malformed text", "Return None unless the text is exactly one <box> with four "
                "valid <loc> tokens and </box>: a generated answer can be truncated or invalid.",
                _decode_trusting),
        Mistake("split on single spaces", "Tokens may be separated by any number of spaces, or none: "
                "match the pattern, do not split the text on ' '.", _decode_split_on_spaces),
    ],
)


# ---------------------------------------------------------------- 5.6 reading an ablation


def _verdict_reference(first, second, chance):
    if min(first) <= chance and min(second) <= chance:
        return "chance"
    if min(first) > max(second):
        return "first"
    if min(second) > max(first):
        return "second"
    return "tie"


def _verdict_cases() -> list[Case]:
    cases = []
    for first, second, chance, label in (
        ([41.2, 44.0, 43.1], [40.5, 43.6, 41.0], 25.0, "the seeds of the two arms overlap"),
        ([55.0, 60.1, 57.2], [44.9, 48.0, 47.5], 25.0, "every seed of the first above every seed of the second"),
        ([23.3, 27.1, 26.7], [23.8, 27.1, 26.8], 25.0, "seeds on both sides of chance, in both arms"),
        ([60.2, 61.0], [64.9, 66.3], 50.0, "two seeds each, the second arm ahead"),
        ([70.0, 72.5, 71.0], [68.0, 70.0, 69.5], 33.3, "the ranges touch at 70.0"),
        ([52.0, 47.0, 58.0], [44.0, 49.0, 46.0], 50.0, "a mean above chance, but one seed below it"),
        ([30.1, 31.0, 30.4, 29.8], [20.0, 24.0, 22.5, 21.0], 25.0, "one arm above chance, one below"),
        ([24.0, 20.0, 23.5], [10.0, 12.0, 11.5], 25.0, "both below chance, one far ahead of the other"),
        ([20.0, 22.0, 28.0], [10.0, 12.0, 11.0], 25.0, "one seed above chance, the mean below it"),
    ):
        inputs = (first, second, chance)
        cases.append(Case(inputs=inputs, expected=_verdict_reference(*inputs), label=label))
    return cases


def _verdict_by_means(first, second, chance):
    mean_first, mean_second = sum(first) / len(first), sum(second) / len(second)
    if max(mean_first, mean_second) <= chance:
        return "chance"
    return "first" if mean_first > mean_second else "second" if mean_second > mean_first else "tie"


def _verdict_without_chance(first, second, chance):
    return _verdict_reference(first, second, float("-inf"))


def _verdict_touching_wins(first, second, chance):
    if min(first) <= chance and min(second) <= chance:
        return "chance"
    if min(first) >= max(second):
        return "first"
    if min(second) >= max(first):
        return "second"
    return "tie"


def _verdict_chance_by_mean(first, second, chance):
    if sum(first) / len(first) <= chance and sum(second) / len(second) <= chance:
        return "chance"
    return _verdict_reference(first, second, float("-inf"))


def _verdict_chance_by_best_seed(first, second, chance):
    if max(first) <= chance and max(second) <= chance:
        return "chance"
    return _verdict_reference(first, second, float("-inf"))


ablation_verdict = Exercise(
    key="5.6",
    title="Reading an ablation: which arm wins, over seeds and above chance",
    cases=_verdict_cases,
    hints=[
        "A difference between two arms counts only if the seeds agree on it, and only if the arms "
        "are doing better than guessing at all. The chapter's rules: converged or labelled, seeds, "
        "the chance level of what is ranked.",
        "An arm is above chance when even its worst seed beats chance: min(scores) > chance. If "
        "neither arm is, there is nothing to rank. Otherwise one arm wins only when every one of its "
        "seeds beats every seed of the other: min(winner) > max(loser).",
        "Return one of the strings 'first', 'second', 'tie' (the ranges overlap or touch) or 'chance' "
        "(neither arm above chance). [55.0, 60.1, 57.2] against [44.9, 48.0, 47.5] with chance 25.0 "
        "is 'first'.",
    ],
    mistakes=[
        Mistake("compared the means", "Two means differ almost always; whether the seeds agree is the "
                "question. Compare the worst seed of one arm with the best seed of the other.",
                _verdict_by_means),
        Mistake("ignored chance", "Arms that do not beat guessing are not ranked: return 'chance' when "
                "neither arm's worst seed is above chance.", _verdict_without_chance),
        Mistake("called touching ranges a win", "When the worst seed of one arm equals the best seed "
                "of the other, the seeds do not separate them: that is a 'tie'.", _verdict_touching_wins),
        Mistake("judged chance by the mean", "A mean above chance can hide a seed at or below it; an "
                "arm is above chance only when its worst seed is.", _verdict_chance_by_mean),
        Mistake("judged chance by the best seed", "One lucky seed above chance is not an arm above "
                "chance: use the worst seed.", _verdict_chance_by_best_seed),
    ],
)


def progress():
    """This session's results for the chapter's exercises, as a table."""
    return chapter_progress(5)
