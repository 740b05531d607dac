"""Chapter 2's exercise checks against independent facts (hand counts, nn.Conv3d, an identity order).
The generic checks and the hand-written answers (answers_ch02.py) run in test_exercises_chapters.py."""

from __future__ import annotations

import torch

from utils.exercises import ch02
from utils.exercises.core import CORRECT


def test_exercise_2_3_agrees_with_hand_counts():
    # ViT-B/16 on 224 x 224: 197 tokens; one block's attention 4 N^2 D, linear (8 + 4r) N D^2, 12 blocks;
    # attention and linear FLOPs of one block are equal at N = (2 + r) D.
    def by_hand(height, width, patch_size, dim, depth, mlp_ratio):
        n = (height // patch_size) * (width // patch_size) + 1
        return {"tokens": n, "attention_flops": depth * 4 * n * n * dim,
                "linear_flops": depth * (8 + 4 * mlp_ratio) * n * dim * dim,
                "crossover_tokens": (2 + mlp_ratio) * dim}

    assert ch02.vit_cost.check(by_hand).status == CORRECT
    expected = {case.label: case.expected for case in ch02._cost_cases()}
    vit_b16 = next(value for label, value in expected.items() if label.startswith("ViT-B/16"))
    assert vit_b16["tokens"] == 197 and vit_b16["crossover_tokens"] == 6 * 768


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


def test_exercise_2_2_grades_without_torchaudio_too():
    # The grader's pure-torch Slaney bank is the reference when torchaudio is missing: it must agree.
    import torchaudio.functional as audio_functional

    for case in ch02._mel_cases():
        n_freqs, f_min, f_max, n_mels, rate = case.inputs
        ours = ch02._filterbank(n_freqs, f_min, f_max, n_mels, rate)
        theirs = audio_functional.melscale_fbanks(n_freqs, f_min, f_max, n_mels, rate, norm="slaney",
                                                  mel_scale="slaney")
        assert torch.allclose(ours, theirs, atol=1e-7, rtol=1e-4), case.label


def test_exercise_2_2_falls_back_when_torchaudio_is_missing(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "torchaudio", None)  # None in sys.modules: the import fails
    calls = []
    monkeypatch.setattr(ch02, "_filterbank", lambda *args, _real=ch02._filterbank: calls.append(1) or _real(*args))
    from mutation_harness import reference_function

    assert ch02.mel_filterbank.check(reference_function(ch02.mel_filterbank)).status == CORRECT
    assert calls, "the pure-torch bank was not used"
