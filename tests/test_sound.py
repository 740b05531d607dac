"""The Sound world and the spoken-word set: right pitches and timbres, deterministic, clear errors."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from utils import shapes, sound

ROOT = Path(__file__).resolve().parents[1]


def harmonic_energy(waveforms: torch.Tensor, freq: float, harmonic: int) -> torch.Tensor:
    """Share of spectral energy within 3% of harmonic * freq: [N]."""
    spectrum = torch.fft.rfft(waveforms, dim=-1).abs() ** 2
    bins = torch.fft.rfftfreq(waveforms.shape[-1], 1 / sound.SAMPLE_RATE)
    near = (bins - harmonic * freq).abs() < 0.03 * harmonic * freq
    return spectrum[:, near].sum(dim=-1) / spectrum.sum(dim=-1)


def test_render_shape_range_and_determinism():
    colour, shape = torch.tensor([0, 1, 2, 3, 4, 5]), torch.tensor([0, 1, 2, 3, 0, 1])
    waves = sound.render(colour, shape, seconds=0.25, seed=3)
    assert waves.shape == (6, 4000) and waves.dtype == torch.float32
    assert waves.abs().max() <= 1.0
    assert torch.equal(waves, sound.render(colour, shape, seconds=0.25, seed=3))
    assert not torch.equal(waves, sound.render(colour, shape, seconds=0.25, seed=4))
    again = sound.render(torch.zeros(2, dtype=torch.long), torch.zeros(2, dtype=torch.long), seed=0)
    assert not torch.equal(again[0], again[1]), "two renderings of the same object should differ a little"


def test_loud_settings_stay_within_minus_one_and_one():
    waves = sound.render([3] * 8, [1] * 8, [1] * 8, noise=0.5, seed=1)
    assert waves.abs().max() <= 1.0


@pytest.mark.parametrize("shape", range(4))
def test_dominant_frequency_is_the_colour_pitch(shape):
    colour = torch.arange(6).repeat(4)
    waves = sound.render(colour, torch.full_like(colour, shape), seconds=0.5, seed=shape)
    found = sound.dominant_frequency(waves)
    pitch = torch.tensor([sound.PITCH_HZ[c] for c in shapes.COLOURS])[colour]
    assert ((found / pitch - 1).abs() < 0.025).all(), (found, pitch)


def test_timbres_differ_by_shape():
    waves = sound.render([0] * 4, [0, 1, 2, 3], noise=0.0, seed=0)  # red = 220 Hz, all four shapes
    third = harmonic_energy(waves, sound.PITCH_HZ["red"], 3)
    second = harmonic_energy(waves, sound.PITCH_HZ["red"], 2)
    circle, square, triangle, cross = third.tolist()
    assert circle < 0.001 and square > 0.05 and 0.005 < triangle < square  # 1/k vs 1/k^2 harmonics
    assert second[:3].max() < 0.001  # the periodic timbres have odd harmonics only
    fundamental = harmonic_energy(waves, sound.PITCH_HZ["red"], 1)
    assert fundamental[3] < 0.9 * fundamental[0], "the cross should spread energy away from the pitch"


def test_size_sets_the_loudness():
    small = sound.render([2] * 20, [0] * 20, [0] * 20, noise=0.0, seed=1)
    large = sound.render([2] * 20, [0] * 20, [1] * 20, noise=0.0, seed=1)
    ratio = large.pow(2).mean().sqrt() / small.pow(2).mean().sqrt()
    assert ratio == pytest.approx(sound.LOUDNESS["large"] / sound.LOUDNESS["small"], rel=0.05)


def test_sounds_for_a_shapes_batch_use_the_first_object():
    batch = shapes.generate(10, seed=2, max_objects=2)
    waves = sound.sounds_for(batch, seconds=0.2, seed=5)
    expected = sound.render(batch.colour[:, 0], batch.shape[:, 0], batch.size[:, 0], seconds=0.2, seed=5)
    assert torch.equal(waves, expected)


def test_generate_sound_batch_and_splits():
    batch = sound.generate(48, seed=1, seconds=0.2)
    assert batch.waveforms.shape == (48, 3200) and batch.sample_rate == sound.SAMPLE_RATE
    assert batch.captions[0] == shapes.describe(int(batch.colour[0]), int(batch.shape[0]), int(batch.size[0]))
    assert torch.equal(batch.waveforms, sound.generate(48, seed=1, seconds=0.2).waveforms)
    part = batch.subset([1, 3])
    assert len(part) == 2 and part.captions == [batch.captions[1], batch.captions[3]]
    assert part.to("cpu").waveforms.shape == (2, 3200)
    held = shapes.holdout_table(shapes.DEFAULT_HOLDOUT)
    train = sound.generate(200, seed=2, seconds=0.1, split="train")
    test = sound.generate(50, seed=2, seconds=0.1, split="test")
    assert not held[train.colour, train.shape].any()
    assert held[test.colour, test.shape].all()


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: sound.render([6], [0]), r"colour indices must be in 0\.\.5"),
        (lambda: sound.render([0.5], [0]), "integer indices"),
        (lambda: sound.render([0, 1], [0]), "same non-zero length"),
        (lambda: sound.render([0], [0], [2]), r"size indices must be in 0\.\.1"),
        (lambda: sound.render([0], [0], seconds=0), "seconds must be between"),
        (lambda: sound.render([0], [0], noise=2), "noise"),
        (lambda: sound.generate(0), "n must be an integer >= 1"),
        (lambda: sound.generate(4, split="dev"), "split must be one of"),
        (lambda: sound.generate(4, holdout=(("pink", "circle"),)), "unknown colour 'pink'"),
    ],
)
def test_bad_input_gives_a_helpful_value_error(call, message):
    with pytest.raises(ValueError, match=message):
        call()


# ------------------------------------------------------------------------------ spoken words


@pytest.fixture(scope="module")
def spoken() -> sound.SpokenWords:
    return sound.load_spoken_words()


def test_spoken_words_load_with_the_held_out_voice(spoken):
    assert spoken.sample_rate == 16_000
    assert spoken.held_out_voice == "caribbean_female"
    assert len(spoken) == len(spoken.texts) == len(spoken.voices) == len(spoken.takes) == 200
    assert set(spoken.texts) == set(spoken.words) and len(spoken.words) == 20
    assert {"zero", "nine", "red", "purple", "circle", "cross"} <= set(spoken.words)
    voices = set(spoken.voices)
    assert spoken.held_out_voice in voices and len(voices) == 8
    for voice in voices:  # every voice says every word
        said = [t for t, v in zip(spoken.texts, spoken.voices, strict=True) if v == voice]
        assert set(said) == set(spoken.words)
    for waveform in spoken.waveforms:
        assert waveform.dtype == torch.float32 and waveform.ndim == 1
        assert 0.15 * 16_000 < waveform.shape[0] < 1.2 * 16_000
        assert waveform.abs().max() <= 1.0 and waveform.abs().max() > 0.5


def test_spoken_word_splits_and_padding(spoken):
    train, held = spoken.train_indices(), spoken.held_out_indices()
    assert len(train) == 140 and len(held) == 60 and not set(train) & set(held)
    takes = [spoken.held_out_indices(take) for take in range(3)]
    assert all(len(t) == 20 for t in takes)
    assert all({spoken.texts[i] for i in t} == set(spoken.words) for t in takes)
    batch, lengths = spoken.padded(takes[0])
    assert batch.shape == (20, int(lengths.max()))
    assert torch.equal(batch[0, : lengths[0]], spoken.waveforms[takes[0][0]])


def test_spoken_words_asset_is_small():
    size = (ROOT / "utils" / "data" / "spoken_words.npz").stat().st_size
    assert size < 3_000_000, f"spoken_words.npz is {size / 1e6:.2f} MB; keep it under 3 MB"


def test_missing_or_corrupt_spoken_words_name_the_file_and_the_script(tmp_path):
    missing = tmp_path / "nowhere.npz"
    with pytest.raises(FileNotFoundError, match=r"nowhere\.npz.*scripts/make_spoken_words\.py"):
        sound.load_spoken_words(missing)
    corrupt = tmp_path / "corrupt.npz"
    corrupt.write_bytes(b"this is not an npz file")
    with pytest.raises(ValueError, match=r"corrupt.*scripts/make_spoken_words\.py"):
        sound.load_spoken_words(corrupt)
    incomplete = tmp_path / "incomplete.npz"
    np.savez(incomplete, audio=np.zeros(3, dtype=np.int16))
    with pytest.raises(ValueError, match="make_spoken_words"):
        sound.load_spoken_words(incomplete)


def test_the_build_script_explains_a_missing_espeak(monkeypatch):
    path = ROOT / "scripts" / "make_spoken_words.py"
    spec = importlib.util.spec_from_file_location("make_spoken_words", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    assert sound.load_spoken_words().held_out_voice == script.HELD_OUT_VOICE
    monkeypatch.setattr(script.shutil, "which", lambda name: None)
    with pytest.raises(SystemExit, match="apt-get install espeak-ng"):
        script.find_espeak()
