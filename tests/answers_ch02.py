"""Chapter 2: hand-written answers a learner might give, for the checks and the mutation harness.

WRONG[key]: (answer, words its rejection must contain); CORRECT[key]: answers written differently
from the reference solution that must pass."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
import torchaudio.functional as audio_functional


def _unfold_no_permute(images, patch):
    n, c = images.shape[:2]
    return images.unfold(2, patch, patch).unfold(3, patch, patch).reshape(n, -1, c * patch * patch)


def _unfold_patches(images, patch):
    n, c = images.shape[:2]
    tiles = images.unfold(2, patch, patch).unfold(3, patch, patch)   # [N, C, H/P, W/P, P, P]
    return tiles.permute(0, 2, 3, 1, 4, 5).reshape(n, -1, c * patch * patch)


def _patches_by_loop(images, patch):
    n, c, h, w = images.shape
    tiles = [images[:, :, row:row + patch, col:col + patch].reshape(n, 1, c * patch * patch)
             for row in range(0, h, patch) for col in range(0, w, patch)]
    return torch.cat(tiles, dim=1)


def _per_frame_patches(video, frames, patch):
    n, t, c, h, w = video.shape
    flat = F.unfold(video.reshape(n * t, c, h, w), patch, stride=patch).transpose(1, 2)
    return flat.reshape(n, -1, c * patch * patch)


def _tubelets_by_unfold(video, frames, patch):
    n = video.shape[0]
    blocks = video.unfold(1, frames, frames).unfold(3, patch, patch).unfold(4, patch, patch)
    # [N, T/t, C, H/P, W/P, t, P, P] -> tokens (T/t, H/P, W/P), contents (C, t, P, P)
    return blocks.permute(0, 1, 3, 4, 2, 5, 6, 7).reshape(n, -1, blocks[0, 0, :, 0, 0].numel())


def _cost_one_block(height, width, patch, dim, depth, ratio):
    n = (height // patch) * (width // patch) + 1
    return {"tokens": n, "attention_flops": 4 * n * n * dim, "linear_flops": (8 + 4 * ratio) * n * dim * dim,
            "crossover_tokens": (2 + ratio) * dim}


def _cost_by_hand(height, width, patch, dim, depth, ratio):
    n = (height * width) // (patch * patch) + 1
    per_block_attention, per_block_linear = 4 * n * n * dim, 2 * n * dim * dim * (4 + 2 * ratio)
    # Solve 4 N^2 D = (8 + 4r) N D^2 by scanning N: slow but independent of the algebra.
    crossover = next(m for m in range(1, 100 * dim) if 4 * m * m * dim >= (8 + 4 * ratio) * m * dim * dim)
    return {"tokens": n, "attention_flops": depth * per_block_attention,
            "linear_flops": depth * per_block_linear, "crossover_tokens": crossover}


def _cost_lesson_formula(height, width, patch, dim, depth, ratio):
    n = (height // patch) * (width // patch) + 1
    return {"tokens": n, "attention_flops": depth * 4 * n * n * dim, "linear_flops": depth * 24 * n * dim * dim,
            "crossover_tokens": 6 * dim}  # the lesson's ratio-4 count, copied as it is


def _mel_in_float64(n_freqs, f_min, f_max, n_mels, sample_rate):
    step = math.log(6.4) / 27.0

    def to_mel(f):
        return 3 * f / 200 if f < 1000 else 15 + math.log(f / 1000) / step

    def to_hz(m):
        return 200 * m / 3 if m < 15 else 1000 * math.exp(step * (m - 15))

    low, high = to_mel(f_min), to_mel(f_max)
    corners = torch.tensor([to_hz(low + (high - low) * i / (n_mels + 1)) for i in range(n_mels + 2)],
                           dtype=torch.float64)
    bins = torch.linspace(0, sample_rate // 2, n_freqs, dtype=torch.float64)
    bank = torch.zeros(n_freqs, n_mels, dtype=torch.float64)
    for k in range(n_mels):
        left, centre, right = corners[k], corners[k + 1], corners[k + 2]
        up, down = (bins - left) / (centre - left), (right - bins) / (right - centre)
        bank[:, k] = torch.clamp(torch.minimum(up, down), min=0) * 2 / (right - left)
    return bank


def _mel_ignoring(parameter):
    def answer(n_freqs, f_min, f_max, n_mels, sample_rate):
        if parameter == "f_min":
            f_min = 0.0
        else:
            f_max = sample_rate / 2
        return audio_functional.melscale_fbanks(n_freqs, f_min, f_max, n_mels, sample_rate, norm="slaney",
                                                mel_scale="slaney")
    return answer


def _jigsaw_by_fold(images, patch, order):
    columns = F.unfold(images, patch, stride=patch)        # [N, C*P*P, L]
    return F.fold(columns[:, :, order], images.shape[-2:], patch, stride=patch)


WRONG = {
    "2.1": [
        (lambda images, p: F.unfold(images, p, stride=p).transpose(1, 2), "without F.unfold"),  # ruled out
        (_unfold_no_permute, "without Tensor.unfold"),
        (_unfold_patches, "without Tensor.unfold"),
        (lambda images, p: images.reshape(images.shape[0], -1, images.shape[1] * p * p), "differ"),
    ],
    "2.2": [
        (lambda *args: audio_functional.melscale_fbanks(*args, norm="slaney", mel_scale="slaney").T,
         "shape"),  # [n_mels, n_freqs]
        (lambda *args: audio_functional.melscale_fbanks(*args), "differ"),  # the lesson's HTK bank as is
        (_mel_ignoring("f_min"), "differ"),
        (_mel_ignoring("f_max"), "differ"),
        (lambda *args: _mel_ignoring("f_min")(*args).bfloat16(), "dtype"),  # hidden by half precision
    ],
    "2.3": [
        (lambda h, w, p, d, L, r: ((h // p) * (w // p) + 1, 0, 0), "wrong type"),  # a tuple, not a dict
        (_cost_one_block, "wrong value"),  # forgot to multiply by depth
        (lambda h, w, p, d, L, r: {"tokens": (h // p) * (w // p) + 1}, "missing keys"),
        (lambda h, w, p, d, L, r: {k: float(v) for k, v in _cost_by_hand(h, w, p, d, L, r).items()},
         "whole number"),
        (_cost_lesson_formula, "mlp_ratio"),
    ],
    "2.4": [
        (_per_frame_patches, "shape"),  # ignored the time extent of a tubelet
        (lambda v, t, p: v.reshape(v.shape[0], -1, v.shape[2] * t * p * p), "differ"),  # no permute
    ],
    "2.5": [
        (lambda images, p, order: F.unfold(images, p, stride=p)[:, :, order], "shape"),  # never folded back
        (lambda images, p, order: images, "differ"),  # returned the input unchanged
    ],
}

CORRECT = {
    "2.1": [_patches_by_loop],
    "2.2": [_mel_in_float64],
    "2.3": [_cost_by_hand],
    "2.4": [_tubelets_by_unfold],
    "2.5": [_jigsaw_by_fold],
}
