"""utils.speech: log-mel frames, per-utterance normalisation, utterances and the held-back split."""

from __future__ import annotations

import pytest
import torch

from utils import sound, speech


@pytest.fixture(scope="module")
def spoken():
    return sound.load_spoken_words()


def test_log_mel_shape_and_a_tone_lands_in_its_bin():
    time = torch.arange(16_000) / 16_000
    low, high = torch.sin(2 * torch.pi * 300 * time), torch.sin(2 * torch.pi * 3000 * time)
    mel = speech.log_mel(torch.stack([low, high]))
    assert mel.shape == (2, 40, 101) and speech.frame_count(16_000) == 101
    peak = mel[:, :, 50].argmax(1)
    assert peak[0] < peak[1], "a higher tone must peak in a higher mel bin"
    with pytest.raises(ValueError, match="batch"):
        speech.log_mel(low)


def test_features_normalise_each_utterance_over_its_own_frames():
    generator = torch.Generator().manual_seed(0)
    waves = [torch.randn(8_000, generator=generator), 5 * torch.randn(3_000, generator=generator)]
    mel, frames = speech.features(waves)
    assert frames.tolist() == [51, 19] and mel.shape == (2, 40, 51)
    inside = mel[1, :, :19]
    assert torch.allclose(inside.mean(1), torch.zeros(40), atol=1e-4)
    assert torch.allclose(inside.std(1, unbiased=False), torch.ones(40), atol=1e-3)
    assert mel[1, :, 19:].abs().max() == 0, "frames past the end must be zero"
    loud, _ = speech.features([10 * waves[0]])
    assert torch.allclose(loud[0], mel[0], atol=1e-3), "a fixed gain must not change the features"


def test_text_ids_and_alphabet():
    assert speech.text_ids("ab z") == [2, 3, 1, 27]
    assert len(speech.ALPHABET) + 1 == 28 and speech.BLANK == 0
    with pytest.raises(ValueError, match="outside the alphabet"):
        speech.text_ids("Red!")


def test_make_utterances_is_deterministic_and_says_its_clips(spoken):
    clips = spoken.train_indices()[:30]
    first = speech.make_utterances(spoken, clips, 20, seed=3)
    again = speech.make_utterances(spoken, clips, 20, seed=3)
    other = speech.make_utterances(spoken, clips, 20, seed=4)
    assert first.texts == again.texts
    assert all(torch.equal(a, b) for a, b in zip(first.waveforms, again.waveforms, strict=True))
    assert first.texts != other.texts
    for text, used in zip(first.texts, first.clips, strict=True):
        assert 2 <= len(used) <= 4 and set(used) <= set(clips)
        assert text == " ".join(spoken.texts[i] for i in used)
    words = sum(len(c) for c in first.clips)
    assert first.seconds() > words * 0.25, "each word lasts at least a quarter of a second"


def test_make_utterances_with_slots_keeps_their_order(spoken):
    digits = [i for i in spoken.train_indices() if spoken.texts[i] in spoken.words[:10]]
    shapes_ = [i for i in spoken.train_indices() if spoken.texts[i] in spoken.words[16:]]
    made = speech.make_utterances(spoken, [], 10, seed=0, slots=[digits, shapes_])
    for text in made.texts:
        digit, shape = text.split()
        assert digit in spoken.words[:10] and shape in spoken.words[16:]
    with pytest.raises(ValueError, match="slot"):
        speech.make_utterances(spoken, [], 2, seed=0, slots=[digits, []])
    with pytest.raises(ValueError, match="at least one clip"):
        speech.make_utterances(spoken, [], 2, seed=0)


def test_held_back_split_keeps_every_word_in_training(spoken):
    train, back = speech.held_back_split(spoken)
    assert len(back) == 14 and len(train) == 126 and not set(train) & set(back)
    assert {spoken.texts[i] for i in train} == set(spoken.words)
    assert len({spoken.voices[i] for i in back}) == 7


def test_the_zoo_recipe_runs_and_scores_every_test_set(monkeypatch):
    """The recipe end to end at a toy size (the full run is the lesson's, about half a minute)."""
    monkeypatch.setattr(speech, "TRAIN_UTTERANCES", 40)
    monkeypatch.setattr(speech, "TRAIN_STEPS", 3)
    original = speech.make_utterances

    def fewer(spoken, clips, count, **kwargs):
        return original(spoken, clips, min(count, 40), **kwargs)

    monkeypatch.setattr(speech, "make_utterances", fewer)
    model = speech.build_tiny_asr()
    assert model.head.bias[speech.BLANK] > 3.0, "training starts with the blank favoured"
    metrics = speech.train_tiny_asr(model)
    assert set(metrics) == {"final_loss", "wer new orders", "wer held-back recordings", "wer held-out voice"}
    assert all(value >= 0 for value in metrics.values())
    assert not model.training


def test_recognise_and_corpus_wer():
    said = ["two red circle", "nine"]
    assert speech.corpus_wer(said, said) == 0.0
    assert speech.corpus_wer(said, ["two red", "nine nine"]) == 50.0  # 1 deletion + 1 insertion / 4
    torch.manual_seed(0)
    model = speech.TinyASR().eval()
    heard = speech.recognise(model, [torch.zeros(8_000), 0.1 * torch.randn(12_000)], batch=1)
    assert len(heard) == 2 and all(isinstance(text, str) for text in heard)
