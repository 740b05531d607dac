"""Chapter 5: hand-written answers a learner might give, for the checks and the mutation harness.

WRONG[key]: (answer, words its rejection must contain); CORRECT[key]: answers written differently
from the reference solution that must pass."""

from __future__ import annotations

import math
import re

import torch


def splice_loop(text, image, tokens, image_id):
    rows = []
    for row in range(len(tokens)):
        place = (tokens[row] == image_id).nonzero().item()
        rows.append(torch.cat([text[row, :place], image[row], text[row, place + 1 :]]))
    return torch.stack(rows)


def _splice_gather(text, image, tokens, image_id):
    place = (tokens == image_id).long().argmax(1, keepdim=True)  # [B, 1]
    k = image.shape[1]
    j = torch.arange(tokens.shape[1] - 1 + k)[None]
    from_image = ((j >= place) & (j < place + k))[..., None]
    text_index = torch.where(j < place, j, j - k + 1).clamp(0, tokens.shape[1] - 1)
    image_index = (j - place).clamp(0, k - 1)
    dim = text.shape[-1]
    take_text = text.gather(1, text_index[..., None].expand(-1, -1, dim))
    take_image = image.gather(1, image_index[..., None].expand(-1, -1, dim))
    return torch.where(from_image, take_image, take_text)


def labels_scan(tokens, sep_id, eos_id, ignore):
    labels = torch.full_like(tokens, ignore)
    for row in range(tokens.shape[0]):
        inside = False
        for position in range(tokens.shape[1]):
            token = int(tokens[row, position])
            if inside:
                labels[row, position] = token
                inside = token != eos_id
            else:
                inside = token == sep_id
    return labels


def _labels_cumsum(tokens, sep_id, eos_id, ignore):
    # inside an answer: more <sep> than <eos> seen before this position
    seps = (tokens == sep_id).long().cumsum(1)
    ends = (tokens == eos_id).long().cumsum(1)
    before_ends = ends - (tokens == eos_id).long()
    inside = (seps > before_ends) & (tokens != sep_id)
    return torch.where(inside, tokens, torch.full_like(tokens, ignore))


def tiles(height, width, tile, max_per_side, tokens_per_tile):
    long_tiles = min(max_per_side, -(-max(height, width) // tile))
    scale = long_tiles * tile / max(height, width)
    rows = max(1, math.ceil(round(height * scale, 6) / tile))
    cols = max(1, math.ceil(round(width * scale, 6) / tile))
    count = rows * cols + (rows * cols > 1)
    return {"rows": rows, "cols": cols, "tiles": int(count), "tokens": int(count) * tokens_per_tile}


def _tiles_floats(height, width, tile, max_per_side, tokens_per_tile):
    return {key: float(value) for key, value in tiles(height, width, tile, max_per_side, tokens_per_tile).items()}


def encode_box(box, image_size, bins):
    cells = [min(bins - 1, max(0, int(math.floor(v / image_size * bins)))) for v in box]
    return "<box> " + " ".join(f"<loc{c}>" for c in cells) + " </box>"


def decode_box(text, image_size, bins):
    match = re.fullmatch(r"\s*<box>\s*<loc(\d+)>\s*<loc(\d+)>\s*<loc(\d+)>\s*<loc(\d+)>\s*</box>\s*", text)
    if match is None:
        return None
    cells = [int(c) for c in match.groups()]
    if max(cells) >= bins:
        return None
    return tuple((c + 0.5) * image_size / bins for c in cells)


def verdict(first, second, chance):
    if not any(all(score > chance for score in arm) for arm in (first, second)):
        return "chance"
    if all(a > b for a in first for b in second):  # every pair of seeds agrees
        return "first"
    if all(b > a for a in first for b in second):
        return "second"
    return "tie"


def _verdict_sorted(first, second, chance):
    first, second = sorted(first), sorted(second)
    if first[0] <= chance and second[0] <= chance:
        return "chance"
    return "first" if first[0] > second[-1] else "second" if second[0] > first[-1] else "tie"


WRONG = {
    "5.1": [
        (lambda t, i, k, image_id: torch.cat([i, t], dim=1), "expected"),  # the placeholder kept, image first
        (lambda t, i, k, image_id: splice_loop(t, i.detach(), k, image_id), "gradient"),
        (lambda t, i, k, image_id: splice_loop(t, i, k, image_id).transpose(0, 1), "shape"),
        (lambda t, i, k, image_id: splice_loop(t, i, k, image_id)[:, :-1], "shape"),
    ],
    "5.2": [
        (lambda k, s, e, ig: torch.where(k == s, torch.full_like(k, ig), k), "expected"),
        (lambda k, s, e, ig: labels_scan(k, s, e, ig)[:, 1:], "shape"),
        (lambda k, s, e, ig: torch.roll(labels_scan(k, s, e, ig), -1, dims=1), "expected"),
    ],
    "5.3": [
        (_tiles_floats, "int"),
        (lambda h, w, t, m, p: {k: v for k, v in tiles(h, w, t, m, p).items() if k != "tokens"}, "tokens"),
        (lambda h, w, t, m, p: {**tiles(h, w, t, m, p), "rows": tiles(h, w, t, m, p)["cols"],
                                "cols": tiles(h, w, t, m, p)["rows"]}, "rows"),
    ],
    "5.4": [
        (lambda b, s, n: encode_box(b, s, n).replace("<box> ", "<box>"), "expected"),
        (lambda b, s, n: [f"<loc{c}>" for c in range(4)], "str"),
        (lambda b, s, n: encode_box(b[::-1], s, n), "expected"),
    ],
    "5.5": [
        (lambda t, s, n: decode_box(t, s, n) and tuple(round(v) for v in decode_box(t, s, n)), "expected"),
        (lambda t, s, n: decode_box(t, s, n) or (0.0, 0.0, 0.0, 0.0), "None"),
        (lambda t, s, n: decode_box(t, s, n) and tuple(v / s for v in decode_box(t, s, n)), "expected"),
    ],
    "5.6": [
        (lambda f, s, c: verdict(f, s, c).upper(), "expected"),
        (lambda f, s, c: ["first", "second", "tie", "chance"].index(verdict(f, s, c)), "str"),
        (lambda f, s, c: "first" if sum(f) > sum(s) else "second", "expected"),
    ],
}

CORRECT = {
    "5.1": [splice_loop, _splice_gather],
    "5.2": [labels_scan, _labels_cumsum],
    "5.3": [tiles],
    "5.4": [encode_box, lambda b, s, n: "<box> " + " ".join(
        f"<loc{int(min(n - 1, max(0, v * n // s)))}>" for v in b) + " </box>"],
    "5.5": [decode_box],
    "5.6": [verdict, _verdict_sorted],
}
