"""Exercises of chapter 2, Encoders for each modality. Checks compare with independent references
(F.unfold and F.fold, torchaudio's filterbank, torch's FLOP counter, a one-hot 3-D convolution),
never with a copy of the solution."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from utils.exercises.core import Case, Exercise, Mistake, chapter_progress

# ---------------------------------------------------------------- 2.1 patchify


def _patch_cases() -> list[Case]:
    generator = torch.Generator().manual_seed(21)
    counting = torch.arange(2 * 4 * 4, dtype=torch.float32).reshape(1, 2, 4, 4)  # [1, 2, 4, 4]
    colour = torch.rand(3, 3, 8, 8, generator=generator)
    wide = torch.rand(2, 3, 8, 12, generator=generator)  # not square: 2 x 3 patches of 4 x 4

    def reference(images: torch.Tensor, patch: int) -> torch.Tensor:
        return F.unfold(images, kernel_size=patch, stride=patch).transpose(1, 2)  # [N, L, C*P*P]

    return [
        Case(inputs=(counting, 2), expected=reference(counting, 2),
             label="one 2-channel 4x4 image of counting numbers, patch 2"),
        Case(inputs=(colour, 4), expected=reference(colour, 4), label="3 random RGB 8x8 images, patch 4"),
        Case(inputs=(wide, 4), expected=reference(wide, 4), label="2 RGB 8x12 images (not square), patch 4"),
    ]


def _patch_channels_last(images, patch):
    n, c, h, w = images.shape
    grid = images.reshape(n, c, h // patch, patch, w // patch, patch)
    return grid.permute(0, 2, 4, 3, 5, 1).reshape(n, (h // patch) * (w // patch), patch * patch * c)


def _patch_column_major(images, patch):
    n, c, h, w = images.shape
    grid = images.reshape(n, c, h // patch, patch, w // patch, patch)
    return grid.permute(0, 4, 2, 1, 3, 5).reshape(n, (h // patch) * (w // patch), c * patch * patch)


def _patch_no_permute(images, patch):
    n, c, h, w = images.shape
    return images.reshape(n, (h // patch) * (w // patch), c * patch * patch)


patchify = Exercise(
    key="2.1",
    title="Cut images into flattened patches",
    cases=_patch_cases,
    forbidden=("torch.nn.functional.unfold", "torch.Tensor.unfold", "torch.nn.functional.conv2d"),
    hints=[
        "Split each spatial axis in two: H becomes (H/P, P) and W becomes (W/P, P). A reshape does that: "
        "[N, C, H, W] -> [N, C, H/P, P, W/P, P].",
        "Then one permute reorders the six axes: the batch, then the two grid axes (which patch), then the "
        "three axes inside a patch in the order channel, row, column. Write down which old axis goes where.",
        "Test on torch.arange(16.).reshape(1, 1, 4, 4) with patch 2: the first patch must be [0, 1, 4, 5], "
        "the second [2, 3, 6, 7] (the top row of patches comes first).",
    ],
    mistakes=[
        Mistake("flattened channels last", "Each patch must be flattened as (channel, row, column), as a "
                "Conv2d weight [D, C, P, P] is; you put the channel last (row, column, channel).",
                _patch_channels_last),
        Mistake("patches ordered by columns", "Patches go row by row: first the top row left to right. You "
                "walked down the columns first (the grid axes are swapped in your permute).",
                _patch_column_major),
        Mistake("reshaped without permuting", "A single reshape keeps memory order, so each 'patch' is a run "
                "of consecutive pixels of one row, not a P x P square. Split the axes, permute, then merge.",
                _patch_no_permute),
    ],
    atol=1e-6,
)

# ---------------------------------------------------------------- 2.2 mel filterbank (Slaney)


def _slaney_bank(n_freqs, f_min, f_max, n_mels, sample_rate) -> torch.Tensor:
    """The reference filterbank: torchaudio's, or without torchaudio the grader's own Slaney bank
    (a test keeps the two equal)."""
    try:
        import torchaudio.functional as audio_functional
    except ImportError:  # Colab without torchaudio: the pure-torch bank below is the reference
        return _filterbank(n_freqs, f_min, f_max, n_mels, sample_rate)
    return audio_functional.melscale_fbanks(n_freqs, f_min, f_max, n_mels, sample_rate, norm="slaney",
                                            mel_scale="slaney")  # [n_freqs, n_mels]


def _mel_cases() -> list[Case]:
    settings = [
        ((201, 0.0, 8000.0, 80, 16000), "Whisper's setting: n_fft 400 at 16 kHz (201 bins), 80 mels to 8 kHz"),
        ((257, 0.0, 4000.0, 16, 8000), "n_fft 512 at 8 kHz (257 bins), 16 mels from 0 to 4000 Hz"),
        ((65, 0.0, 8000.0, 8, 16000), "n_fft 128 at 16 kHz (65 bins), 8 mels"),
        ((129, 300.0, 6000.0, 20, 16000), "n_fft 256 at 16 kHz (129 bins), 20 mels from 300 to 6000 Hz"),
        ((257, 60.0, 3800.0, 24, 8000), "n_fft 512 at 8 kHz (257 bins), 24 mels from 60 to 3800 Hz"),
    ]
    cases = []
    for (n_freqs, f_min, f_max, n_mels, rate), label in settings:
        expected = _slaney_bank(n_freqs, f_min, f_max, n_mels, rate)  # [n_freqs, n_mels]
        cases.append(Case(inputs=(n_freqs, f_min, f_max, n_mels, rate), expected=expected, label=label))
    return cases


def _slaney_mel(hz: torch.Tensor) -> torch.Tensor:
    log_step = math.log(6.4) / 27.0
    return torch.where(hz < 1000.0, 3.0 * hz / 200.0, 15.0 + torch.log(hz / 1000.0) / log_step)


def _slaney_hz(mel: torch.Tensor) -> torch.Tensor:
    log_step = math.log(6.4) / 27.0
    return torch.where(mel < 15.0, 200.0 * mel / 3.0, 1000.0 * torch.exp(log_step * (mel - 15.0)))


def _htk_mel(hz: torch.Tensor) -> torch.Tensor:
    return 2595.0 * torch.log10(1.0 + hz / 700.0)


def _htk_hz(mel: torch.Tensor) -> torch.Tensor:
    return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)


def _filterbank(n_freqs, f_min, f_max, n_mels, sample_rate, scale="slaney", area=True, even_hz=False):
    to_mel, to_hz = (_slaney_mel, _slaney_hz) if scale == "slaney" else (_htk_mel, _htk_hz)
    ends = torch.tensor([f_min, f_max], dtype=torch.float32)
    if even_hz:
        corners = torch.linspace(f_min, f_max, n_mels + 2)
    else:
        low, high = to_mel(ends).tolist()
        corners = to_hz(torch.linspace(low, high, n_mels + 2))
    freqs = torch.linspace(0, sample_rate // 2, n_freqs)[:, None]  # [F, 1]
    left, centre, right = corners[:-2], corners[1:-1], corners[2:]
    rising = (freqs - left) / (centre - left)
    falling = (right - freqs) / (right - centre)
    bank = torch.minimum(rising, falling).clamp(min=0.0)
    return bank * (2.0 / (right - left)) if area else bank


mel_filterbank = Exercise(
    key="2.2",
    title="Whisper's mel filterbank (Slaney scale, equal areas)",
    cases=_mel_cases,
    hints=[
        "Same recipe as the lesson's filterbank - n_mels + 2 corner points evenly spaced in mel between "
        "f_min and f_max, triangles between neighbours - with two changes: the Slaney mel scale of the "
        "statement, and each triangle scaled to equal area.",
        "The scale has two branches (below and above 1 kHz, or mel 15): torch.where picks the branch per "
        "element, for the conversion to mel and for the way back to Hz.",
        "Check a property: scaled by 2 / (right - left) in Hz, every triangle has area 1 when integrated over "
        "Hz, so for filters that span several bins bank[:, k].sum() * bin_width is close to 1. The output is "
        "[n_freqs, n_mels]: bins as rows.",
    ],
    mistakes=[
        Mistake("used the HTK mel formula", "2595 log10(1 + f/700) is the HTK mel scale of the lesson; the "
                "Slaney scale is linear below 1 kHz (m = 3f/200) and logarithmic above.",
                lambda *args: _filterbank(*args, scale="htk")),
        Mistake("forgot the area normalisation", "The triangles are right, but each must be scaled by "
                "2 / (right - left) in Hz so that every filter has the same area.",
                lambda *args: _filterbank(*args, area=False)),
        Mistake("spaced the filters evenly in Hz", "Without a mel scale every filter is equally wide; space "
                "the n_mels + 2 corners evenly in mel, then convert them to Hz.",
                lambda *args: _filterbank(*args, even_hz=True)),
    ],
    atol=1e-6,
    rtol=1e-4,
)

# ---------------------------------------------------------------- 2.3 token and FLOP counting


def _counted_flops(tokens: int, dim: int, mlp_ratio: int) -> tuple[int, int]:
    """(attention, linear) FLOPs of one pre-norm block on one image, counted by torch's FLOP counter."""
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.zeros(tokens, dim)
    w_qkv, w_out = torch.zeros(dim, 3 * dim), torch.zeros(dim, dim)
    w_up, w_down = torch.zeros(dim, mlp_ratio * dim), torch.zeros(mlp_ratio * dim, dim)
    with FlopCounterMode(display=False) as attention_counter:
        q = k = v = x
        weights = q @ k.T  # [N, N] scores (all heads together)
        _ = weights @ v  # [N, D]
    with FlopCounterMode(display=False) as linear_counter:
        _ = x @ w_qkv
        _ = x @ w_out
        _ = (x @ w_up) @ w_down
    return attention_counter.get_total_flops(), linear_counter.get_total_flops()


def _cost_cases() -> list[Case]:
    settings = (
        ((32, 32, 4, 48, 3, 4), "the chapter's ViT: 32x32 images, patch 4, D 48, 3 blocks, MLP ratio 4"),
        ((224, 224, 16, 768, 12, 4), "ViT-B/16: 224x224 images, patch 16, D 768, 12 blocks, MLP ratio 4"),
        ((32, 64, 16, 8, 1, 2), "a toy: 32 high x 64 wide, patch 16, D 8, 1 block, MLP ratio 2"),
        ((48, 16, 8, 16, 2, 3), "a tall toy: 48 high x 16 wide, patch 8, D 16, 2 blocks, MLP ratio 3"),
    )
    cases = []
    for (height, width, patch, dim, depth, ratio), label in settings:
        tokens = (height // patch) * (width // patch) + 1
        attention, linear = _counted_flops(tokens, dim, ratio)
        # Attention grows as N^2 and the linear layers as N, so they are equal at N * linear / attention.
        crossover = tokens * linear // attention
        expected = {"tokens": tokens, "attention_flops": depth * attention, "linear_flops": depth * linear,
                    "crossover_tokens": crossover}
        cases.append(Case(inputs=(height, width, patch, dim, depth, ratio), expected=expected, label=label))
    return cases


def _cost_with(extra_tokens: int = 1, flops_per_mac: int = 2, one_side: bool = False,
               attention_products: int = 2, fixed_ratio: int | None = None):
    def cost(height, width, patch_size, dim, depth, mlp_ratio):
        ratio = fixed_ratio if fixed_ratio is not None else mlp_ratio
        patches = width // patch_size if one_side else (height // patch_size) * (width // patch_size)
        n = patches + extra_tokens
        attention = attention_products * flops_per_mac * n * n * dim
        linear = flops_per_mac * n * dim * dim * (4 + 2 * ratio)
        return {"tokens": n, "attention_flops": depth * attention, "linear_flops": depth * linear,
                "crossover_tokens": n * linear // attention}
    return cost


def _cost_crossover_of_total(height, width, patch_size, dim, depth, mlp_ratio):
    right = _cost_with()(height, width, patch_size, dim, depth, mlp_ratio)
    return {**right, "crossover_tokens": (2 + mlp_ratio) * dim * depth}


vit_cost = Exercise(
    key="2.3",
    title="Count a ViT's tokens and FLOPs, and find the crossover",
    cases=_cost_cases,
    hints=[
        "Tokens: an H x W image in P x P patches gives (H/P)(W/P) patch tokens, plus one CLS token. Count a "
        "matrix product [m, k] @ [k, n] as 2*m*k*n FLOPs (one multiply and one add per term).",
        "Per block, attention has two N x N products: the scores Q K^T ([N, D] @ [D, N]) and the mixing "
        "([N, N] @ [N, D]); heads split D but do not change the total. The linear layers are four D -> D maps "
        "(Q, K, V, output) and the MLP D -> rD -> D. Multiply by depth. For the crossover, set ONE block's two "
        "counts equal and solve for N.",
        "Properties to aim for: with mlp_ratio 4 the crossover is 6D (288 tokens for D = 48, as in section "
        "2.3); it grows in proportion to D and with the MLP ratio, and does not depend on the image or the "
        "depth. ViT-B/16 on 224 x 224 gives 197 tokens and about 35 billion FLOPs in all.",
    ],
    mistakes=[
        Mistake("forgot the CLS token", "The ViT prepends one learned CLS token, so N = (H/P)(W/P) + 1.",
                _cost_with(extra_tokens=0)),
        Mistake("counted a multiply-add as one FLOP", "A product [m, k] @ [k, n] is m*k*n multiply-adds, which "
                "is 2*m*k*n FLOPs.", _cost_with(flops_per_mac=1)),
        Mistake("counted patches along one side only", "The patch grid is (H/P) rows by (W/P) columns: "
                "multiply the two.", _cost_with(one_side=True)),
        Mistake("counted only Q K^T", "Attention has two N x N products: the scores Q K^T and the "
                "weighted sum of the values, weights @ V.", _cost_with(attention_products=1)),
        Mistake("used an MLP four times wider whatever mlp_ratio says", "The MLP maps D -> rD -> D with r = "
                "mlp_ratio: its two products cost 2 * 2 N D (rD) FLOPs.", _cost_with(fixed_ratio=4)),
        Mistake("took the crossover of the whole network", "The crossover compares attention and linear "
                "FLOPs of one block (depth multiplies both sides), so it does not depend on depth.",
                _cost_crossover_of_total),
    ],
)

# ---------------------------------------------------------------- 2.4 tubelets


def _tubelet_reference(video: torch.Tensor, frames: int, patch: int) -> torch.Tensor:
    """Flattened tubelets via a 3-D convolution whose kernels each pick out one input value."""
    channels = video.shape[2]
    size = channels * frames * patch * patch
    picker = torch.eye(size).reshape(size, channels, frames, patch, patch)  # one-hot kernels
    out = F.conv3d(video.permute(0, 2, 1, 3, 4), picker, stride=(frames, patch, patch))  # [N, K, T', H', W']
    return out.flatten(2).transpose(1, 2)  # [N, T'*H'*W', C*t*P*P]


def _tubelet_cases() -> list[Case]:
    generator = torch.Generator().manual_seed(24)
    counting = torch.arange(1 * 4 * 1 * 4 * 4, dtype=torch.float32).reshape(1, 4, 1, 4, 4)
    small = torch.rand(2, 4, 3, 8, 8, generator=generator)
    long = torch.rand(1, 6, 3, 4, 8, generator=generator)
    return [
        Case(inputs=(counting, 2, 2), expected=_tubelet_reference(counting, 2, 2),
             label="1 clip, 4 one-channel 4x4 frames of counting numbers, tubelet 2x2x2"),
        Case(inputs=(small, 2, 4), expected=_tubelet_reference(small, 2, 4),
             label="2 random RGB clips of 4 frames 8x8, tubelet 2 frames x 4x4"),
        Case(inputs=(long, 3, 4), expected=_tubelet_reference(long, 3, 4),
             label="1 RGB clip of 6 frames 4x8, tubelet 3 frames x 4x4"),
    ]


def _tubelet_with(order: tuple[int, ...]):
    def tubelets(video, frames, patch):
        n, t, c, h, w = video.shape
        grid = video.reshape(n, t // frames, frames, c, h // patch, patch, w // patch, patch)
        count = (t // frames) * (h // patch) * (w // patch)
        return grid.permute(*order).reshape(n, count, c * frames * patch * patch)
    return tubelets


def _tubelet_channels_as_time(video, frames, patch):
    n, t, c, h, w = video.shape
    grid = video.reshape(n, c, t // frames, frames, h // patch, patch, w // patch, patch)  # wrong axes
    count = (t // frames) * (h // patch) * (w // patch)
    return grid.permute(0, 2, 4, 6, 1, 3, 5, 7).reshape(n, count, c * frames * patch * patch)


tubelets = Exercise(
    key="2.4",
    title="Cut a video into tubelets",
    cases=_tubelet_cases,
    hints=[
        "A tubelet is a block of t frames x P x P pixels. Split T into (T/t, t), H into (H/P, P) and W into "
        "(W/P, P): video [N, T, C, H, W] -> [N, T/t, t, C, H/P, P, W/P, P].",
        "One permute then brings the three grid axes (which tubelet) forward and the block contents to the "
        "back in the order of a Conv3d weight [D, C, t, P, P]: channel, then time, row, column.",
        "Test on torch.arange(64.).reshape(1, 4, 1, 4, 4) (one channel, 4 frames of 4x4) with a 2x2x2 "
        "tubelet: the first token must be [0, 1, 4, 5, 16, 17, 20, 21] - frame 0's top-left 2x2, then "
        "frame 1's.",
    ],
    mistakes=[
        Mistake("flattened time before channels", "Flatten each tubelet as (channel, time, row, column), the "
                "order of a Conv3d weight [D, C, t, P, P]; you put time before channel.",
                _tubelet_with((0, 1, 4, 6, 2, 3, 5, 7))),
        Mistake("mixed up the time and channel axes", "The clips are [N, T, C, H, W] (time before "
                "channels), as motion_clips gives them; you read them as [N, C, T, H, W].",
                _tubelet_channels_as_time),
        Mistake("ordered tokens space first", "Tokens go time first, then rows, then columns: the grid "
                "axes are (T/t, H/P, W/P) in that order.", _tubelet_with((0, 4, 6, 1, 3, 2, 5, 7))),
    ],
)

# ---------------------------------------------------------------- 2.5 jigsaw (ablation)


def _jigsaw_reference(images: torch.Tensor, patch: int, order: torch.Tensor) -> torch.Tensor:
    height, width = images.shape[-2:]
    columns = F.unfold(images, kernel_size=patch, stride=patch)  # [N, C*P*P, L]
    return F.fold(columns[:, :, order], (height, width), kernel_size=patch, stride=patch)


def _jigsaw_cases() -> list[Case]:
    generator = torch.Generator().manual_seed(25)
    counting = torch.arange(16, dtype=torch.float32).reshape(1, 1, 4, 4)
    cycle = torch.tensor([1, 2, 3, 0])  # a 4-cycle: its inverse differs from it
    images = torch.rand(2, 3, 8, 8, generator=generator)
    shuffle = torch.tensor([5, 0, 12, 9, 1, 14, 3, 7, 2, 10, 15, 4, 6, 13, 8, 11])
    wide = torch.rand(1, 3, 4, 8, generator=generator)
    return [
        Case(inputs=(counting, 2, cycle), expected=_jigsaw_reference(counting, 2, cycle),
             label="a 4x4 image of counting numbers, patch 2, order [1, 2, 3, 0]"),
        Case(inputs=(images, 2, shuffle), expected=_jigsaw_reference(images, 2, shuffle),
             label="2 RGB 8x8 images, patch 2, a fixed shuffle of the 16 patches"),
        Case(inputs=(wide, 4, torch.tensor([1, 0])), expected=_jigsaw_reference(wide, 4, torch.tensor([1, 0])),
             label="one RGB 4x8 image (two patches side by side), swapped"),
    ]


def _jigsaw_grid(images, patch, order, transpose_grid=False):
    n, c, h, w = images.shape
    rows, cols = h // patch, w // patch
    grid = images.reshape(n, c, rows, patch, cols, patch).permute(0, 2, 4, 1, 3, 5)  # [N, R, Cc, C, P, P]
    if transpose_grid:
        grid = grid.transpose(1, 2)
    flat = grid.reshape(n, rows * cols, c, patch, patch)[:, order]
    if transpose_grid:
        flat = flat.reshape(n, cols, rows, c, patch, patch).transpose(1, 2)
    return flat.reshape(n, rows, cols, c, patch, patch).permute(0, 3, 1, 4, 2, 5).reshape(n, c, h, w)


jigsaw = Exercise(
    key="2.5",
    title="Shuffle the patches of an image (a jigsaw)",
    cases=_jigsaw_cases,
    hints=[
        "Cut the image into its grid of patches, reorder the patches, and put the grid back together. Patch "
        "i of the OUTPUT (counted row by row) is patch order[i] of the input.",
        "Once the patches sit along one axis of length L = (H/P)(W/P), indexing that axis with the tensor "
        "`order` reorders them all at once; then undo the cutting, in reverse.",
        "Two properties to test: order = torch.arange(L) returns the image unchanged, and shuffling with "
        "order and then with order.argsort() returns it unchanged too.",
    ],
    mistakes=[
        Mistake("applied the inverse permutation", "Output patch i must be input patch order[i]; you sent "
                "input patch i to position order[i] instead (that is the inverse shuffle).",
                lambda images, patch, order: _jigsaw_grid(images, patch, order.argsort())),
        Mistake("counted patches by columns", "Number the patches row by row (left to right, then down), as "
                "F.unfold and the ViT do.",
                lambda images, patch, order: _jigsaw_grid(images, patch, order, transpose_grid=True)),
    ],
)


def progress():
    """This session's results for the chapter's exercises, as a table."""
    return chapter_progress(2)
