"""Chapter 2's exercises: realistic wrong answers (not the simulated mistakes) fail, with a message that
says what is wrong. The generic checks (solution passes, stub not attempted, mistakes named) live in
test_exercises_chapters.py."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
import torchaudio.functional as audio_functional

from utils.exercises import ch02
from utils.exercises.core import CORRECT


def _unfold_no_permute(images, patch):
    n, c = images.shape[:2]
    return images.unfold(2, patch, patch).unfold(3, patch, patch).reshape(n, -1, c * patch * patch)


def _per_frame_patches(video, frames, patch):
    n, t, c, h, w = video.shape
    flat = F.unfold(video.reshape(n * t, c, h, w), patch, stride=patch).transpose(1, 2)
    return flat.reshape(n, -1, c * patch * patch)


def _cost_one_block(image_size, patch_size, dim, depth):
    n = (image_size // patch_size) ** 2 + 1
    return {"tokens": n, "attention_flops": 4 * n * n * dim, "linear_flops": 24 * n * dim * dim}


CH02_WRONG = {
    "2.1": [
        (lambda images, p: F.unfold(images, p, stride=p), "shape"),  # forgot the transpose
        (_unfold_no_permute, "differ"),  # patches of the right size, pixels in the wrong places
    ],
    "2.2": [
        (lambda *args: audio_functional.melscale_fbanks(*args, norm="slaney", mel_scale="slaney").T,
         "shape"),  # [n_mels, n_freqs]
        (lambda *args: audio_functional.melscale_fbanks(*args), "differ"),  # the lesson's HTK bank as is
    ],
    "2.3": [
        (lambda s, p, d, L: ((s // p) ** 2 + 1, 0, 0), "wrong type"),  # a tuple, not a dict
        (_cost_one_block, "wrong value"),  # forgot to multiply by depth
        (lambda s, p, d, L: {"tokens": (s // p) ** 2 + 1}, "missing keys"),
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


def _exercise(key: str):
    return next(e for e in vars(ch02).values() if isinstance(e, ch02.Exercise) and e.key == key)


@pytest.mark.parametrize("key", sorted(CH02_WRONG))
def test_chapter2_wrong_answers_are_explained(key, wrong_answers_fail):
    wrong_answers_fail(_exercise(key), CH02_WRONG[key])


def test_exercise_2_3_agrees_with_hand_counts():
    # ViT-B/16 on 224 x 224: 197 tokens; one block's attention 4 N^2 D, linear 24 N D^2, 12 blocks.
    def by_hand(image_size, patch_size, dim, depth):
        n = (image_size // patch_size) ** 2 + 1
        return {"tokens": n, "attention_flops": depth * 4 * n * n * dim,
                "linear_flops": depth * 24 * n * dim * dim}

    assert ch02.vit_cost.check(by_hand).status == CORRECT


def test_exercise_2_4_matches_a_conv3d_tubelet_embedding():
    # The check's layout is the one that makes a linear map equal to nn.Conv3d with the same weights.
    generator = torch.Generator().manual_seed(0)
    video = torch.rand(2, 4, 3, 8, 8, generator=generator)  # [N, T, C, H, W]
    conv = torch.nn.Conv3d(3, 5, kernel_size=(2, 4, 4), stride=(2, 4, 4))
    expected = conv(video.transpose(1, 2)).flatten(2).transpose(1, 2)  # [2, 8, 5]
    flat = ch02._tubelet_reference(video, 2, 4)  # [2, 8, 96]
    got = flat @ conv.weight.reshape(5, -1).T + conv.bias
    assert torch.allclose(got, expected, atol=1e-5)


def test_exercise_2_5_identity_order_changes_nothing():
    images = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    assert torch.equal(ch02._jigsaw_reference(images, 4, torch.arange(4)), images)
