"""Speech plumbing for chapter 6 and later: log-mel features, utterances made from the spoken words,
and the character alphabet of a CTC recogniser.

What chapter 6 teaches (the CTC model, greedy decoding, word error rate, residual quantisation) is
written out in the chapter; this module holds the data plumbing around it, once:

- `log_mel` is chapter 2's function (the same name and numbers; a test checks that they agree);
- `make_utterances` strings 2-4 spoken words together with pauses, a little speed and gain
  variation and noise, so that a word error rate means something;
- `features` turns waveforms into per-utterance normalised log-mel frames for a recogniser;
- `held_back_split` keeps two recordings of every training voice out of training;
- `TinyASR`, `build_tiny_asr` and `train_tiny_asr`: the chapter's recogniser and its recipe, for
  the model zoo (`zoo.load("tiny_asr")`), with `recognise` and `corpus_wer` to use and score it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from utils.sound import SAMPLE_RATE, SpokenWords, load_spoken_words
from utils.training import progress

N_FFT, HOP, N_MELS = 400, 160, 40  # 25 ms windows every 10 ms, 40 mel bins (as in chapter 2)
ALPHABET = " abcdefghijklmnopqrstuvwxyz"  # output k + 1 is ALPHABET[k]; output 0 is the CTC blank
BLANK = 0


def _power_spectrogram(waveforms: torch.Tensor) -> torch.Tensor:
    """[B, S] -> [B, N_FFT // 2 + 1, frames]: |FFT|^2 of Hann-windowed, centred frames."""
    padded = F.pad(waveforms[:, None], (N_FFT // 2, N_FFT // 2), mode="reflect")[:, 0]
    frames = padded.unfold(-1, N_FFT, HOP)  # [B, frames, N_FFT]
    k = torch.arange(N_FFT, device=waveforms.device)
    window = 0.5 - 0.5 * torch.cos(2 * math.pi * k / N_FFT)  # periodic Hann
    return torch.fft.rfft(frames * window, dim=-1).abs().pow(2).transpose(1, 2)


def mel_weights(n_freqs: int = N_FFT // 2 + 1, n_mels: int = N_MELS) -> torch.Tensor:
    """Triangular filters evenly spaced in (HTK) mel from 0 Hz to Nyquist: [n_freqs, n_mels]."""
    top = 2595.0 * math.log10(1.0 + (SAMPLE_RATE / 2) / 700.0)
    corners = 700.0 * (10.0 ** (torch.linspace(0.0, top, n_mels + 2) / 2595.0) - 1.0)  # Hz
    freqs = torch.linspace(0, SAMPLE_RATE // 2, n_freqs)[:, None]
    left, centre, right = corners[:-2], corners[1:-1], corners[2:]
    rising = (freqs - left) / (centre - left)
    falling = (right - freqs) / (right - centre)
    return torch.minimum(rising, falling).clamp(min=0.0)


def log_mel(waveforms: torch.Tensor) -> torch.Tensor:
    """16 kHz waveforms [B, S] -> natural-log mel power [B, 40, 1 + S // 160] (chapter 2's)."""
    if waveforms.dim() != 2:
        raise ValueError(f"log_mel takes a batch of waveforms [B, S], got shape {tuple(waveforms.shape)}")
    if waveforms.shape[1] <= N_FFT // 2:
        raise ValueError(f"each waveform needs more than {N_FFT // 2} samples, got {waveforms.shape[1]}")
    power = _power_spectrogram(waveforms)
    filters = mel_weights().to(power.device, power.dtype)
    return torch.log(torch.einsum("bft,fm->bmt", power, filters) + 1e-6)


def frame_count(samples: torch.Tensor | int) -> torch.Tensor | int:
    """How many log-mel frames a waveform of `samples` samples has: 1 + samples // HOP."""
    return 1 + samples // HOP


def normalise(mel: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
    """Log-mel [N, 40, T] of utterances `frames` [N] long -> each utterance's bins shifted to mean 0
    and scaled to standard deviation 1 over its own frames (cepstral mean and variance
    normalisation), which removes a fixed loudness and much of a fixed channel colour; frames past
    an utterance's end become zero."""
    inside = (torch.arange(mel.shape[-1], device=mel.device)[None] < frames[:, None])[:, None]
    count = frames[:, None, None].to(mel.dtype)
    mean = (mel * inside).sum(-1, keepdim=True) / count
    std = ((((mel - mean) ** 2) * inside).sum(-1, keepdim=True) / count).sqrt()
    return (mel - mean) / (std + 1e-5) * inside


def padded(waveforms: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Waveforms of any lengths -> (zero-padded batch [N, S], lengths in samples [N])."""
    if len(waveforms) == 0:
        raise ValueError("need at least one waveform")
    lengths = torch.tensor([len(wave) for wave in waveforms])
    batch = torch.zeros(len(waveforms), int(lengths.max()))
    for row, wave in enumerate(waveforms):
        batch[row, : len(wave)] = wave
    return batch, lengths


def features(waveforms: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Waveforms of any lengths -> (normalised log-mel [N, 40, T], frames [N]): `log_mel` of the
    padded batch, then `normalise` over each utterance's own frames."""
    batch, lengths = padded(waveforms)
    frames = frame_count(lengths)
    return normalise(log_mel(batch), frames), frames


def text_ids(text: str) -> list[int]:
    """'red one' -> CTC target ids (ALPHABET index + 1; 0 is kept for the blank)."""
    unknown = sorted(set(text) - set(ALPHABET))
    if unknown:
        raise ValueError(f"text {text!r} has characters outside the alphabet: {unknown}")
    return [ALPHABET.index(character) + 1 for character in text]


@dataclass
class Utterances:
    """Spoken-word utterances: `waveforms[i]` (float [samples]) says `texts[i]` ('two red circle')."""

    waveforms: list[torch.Tensor]
    texts: list[str]
    clips: list[list[int]]  # the spoken-word clips each utterance is made of, in order

    def __len__(self) -> int:
        return len(self.texts)

    def seconds(self) -> float:
        return sum(len(wave) for wave in self.waveforms) / SAMPLE_RATE


def _speed(wave: torch.Tensor, factor: float) -> torch.Tensor:
    """Resample by linear interpolation: factor 1.1 plays 10% faster (and 10% higher)."""
    if abs(factor - 1.0) < 1e-3:
        return wave
    samples = int(round(len(wave) / factor))
    return F.interpolate(wave[None, None], size=samples, mode="linear", align_corners=False)[0, 0]


def make_utterances(
    spoken: SpokenWords,
    clips: Sequence[int],
    count: int,
    *,
    seed: int,
    words: tuple[int, int] = (2, 4),
    pause: tuple[float, float] = (0.1, 0.3),
    speed: float = 0.1,
    noise: float = 0.003,
    slots: Sequence[Sequence[int]] | None = None,
) -> Utterances:
    """`count` utterances of `words[0]..words[1]` words drawn (with replacement) from `clips`.

    With `slots` (lists of clip indices), every utterance instead says one clip drawn from each
    slot, in order: slots=(digits, colours, shapes) gives 'three red circle'; `clips` is unused.

    Each word is played at a speed drawn from 1 +- `speed` and a gain from 0.5..1, words are
    separated by a silence drawn from `pause` (seconds), 50 ms of silence lead in, and white noise
    of standard deviation `noise` covers the whole utterance. Deterministic given `seed`.
    """
    if slots is not None and not all(len(slot) for slot in slots):
        raise ValueError("every slot needs at least one clip to draw from")
    if slots is None and not clips:
        raise ValueError("make_utterances needs at least one clip to draw words from")
    if not 1 <= words[0] <= words[1]:
        raise ValueError(f"words must be (fewest, most) with 1 <= fewest <= most, got {words}")
    generator = torch.Generator().manual_seed(seed)

    def uniform(low: float, high: float) -> float:
        return low + (high - low) * float(torch.rand((), generator=generator))

    waveforms, texts, used = [], [], []
    for _ in range(count):
        if slots is None:
            n_words = int(torch.randint(words[0], words[1] + 1, (), generator=generator))
            picked = [clips[int(j)] for j in torch.randint(len(clips), (n_words,), generator=generator)]
        else:
            picked = [slot[int(torch.randint(len(slot), (), generator=generator))] for slot in slots]
        parts = [torch.zeros(int(SAMPLE_RATE * 0.05))]
        for clip in picked:
            factor = uniform(1.0 - speed, 1.0 + speed)
            parts.append(_speed(spoken.waveforms[clip], factor) * uniform(0.5, 1.0))
            parts.append(torch.zeros(int(SAMPLE_RATE * uniform(*pause))))
        wave = torch.cat(parts)
        waveforms.append(wave + noise * torch.randn(wave.shape, generator=generator))
        texts.append(" ".join(spoken.texts[clip] for clip in picked))
        used.append(picked)
    return Utterances(waveforms, texts, used)


def held_back_split(spoken: SpokenWords, per_voice: int = 2) -> tuple[list[int], list[int]]:
    """Training-voice clips split into (train, held back): `per_voice` words of each voice held
    back, a different pair for each voice, so every word is still heard in the other voices."""
    voices = sorted({spoken.voices[i] for i in spoken.train_indices()})
    held = set()
    for v, voice in enumerate(voices):
        for j in range(per_voice):
            held.add((voice, spoken.words[(per_voice * v + j) % len(spoken.words)]))
    train, back = [], []
    for i in spoken.train_indices():
        (back if (spoken.voices[i], spoken.texts[i]) in held else train).append(i)
    return train, back


# ---------------------------------------------------------------- the recogniser (chapter 6), for the zoo
# Chapter 6 writes these out; they are kept here, same names, so that later chapters can load the
# trained recogniser with zoo.load("tiny_asr") (tests/test_lesson_contract.py checks they agree).

OUTPUTS = len(ALPHABET) + 1  # 27 characters + the CTC blank
TRAIN_UTTERANCES, TRAIN_DATA_SEED, TRAIN_STEPS, BLANK_BIAS = 2000, 1, 300, 4.0
TEST_SEEDS = {"new orders": 100, "held-back recordings": 101, "held-out voice": 102}


class ConvBlock(nn.Module):
    """LayerNorm, GELU, then a dilated convolution added back: [B, D, T] -> [B, D, T]."""

    def __init__(self, width: int, dilation: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.conv = nn.Conv1d(width, width, 5, padding=2 * dilation, dilation=dilation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.gelu(self.norm(x.transpose(1, 2)).transpose(1, 2))
        return x + self.conv(h)


class TinyASR(nn.Module):
    """Log-mel [B, 40, T] -> per-frame log-probabilities over 28 outputs [B, (T - 1) // 3 + 1, 28]."""

    def __init__(self, width: int = 96, mels: int = N_MELS, outputs: int = OUTPUTS) -> None:
        super().__init__()
        self.stem = nn.Conv1d(mels, width, 5, stride=3, padding=2)  # 10 ms -> 30 ms frames
        self.blocks = nn.Sequential(*[ConvBlock(width, d) for d in (1, 2, 4, 1)])
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, outputs)

    def encode(self, mel: torch.Tensor, frames: torch.Tensor | None = None) -> torch.Tensor:
        """[B, 40, T] -> [B, T', width]; with each row's log-mel `frames` [B], positions past a row's
        end are held at zero between layers (as the convolutions' own padding is)."""
        x = self.stem(mel)  # [B, width, T']
        inside = torch.ones_like(x[:, :1])  # [B, 1, T']
        if frames is not None:
            steps = torch.arange(x.shape[-1], device=x.device)
            inside = (steps < _output_frames(frames)[:, None])[:, None].to(x.dtype)
        for block in self.blocks:
            x = block(x * inside)
        return self.norm((x * inside).transpose(1, 2))

    def forward(self, mel: torch.Tensor, frames: torch.Tensor | None = None) -> torch.Tensor:
        return self.head(self.encode(mel, frames)).log_softmax(-1)  # [B, T', 28]


def _output_frames(frames: torch.Tensor) -> torch.Tensor:
    """Log-mel frames -> frames after the stride-3 stem (kernel 5, padding 2)."""
    return (frames - 1) // 3 + 1


def _ctc_loss(model: TinyASR, mel: torch.Tensor, frames: torch.Tensor, texts: Sequence[str]) -> torch.Tensor:
    log_probs = model(mel[..., : int(frames.max())], frames)  # [B, T', 28]
    targets = [torch.tensor(text_ids(text)) for text in texts]
    return F.ctc_loss(log_probs.transpose(0, 1), torch.cat(targets).to(mel.device), _output_frames(frames),
                      torch.tensor([len(t) for t in targets], device=mel.device), blank=BLANK,
                      zero_infinity=True)


def greedy_decode(log_probs: torch.Tensor, lengths: torch.Tensor) -> list[str]:
    """[B, T', 28] -> one text per row: best output per frame, repeats merged, blanks dropped."""
    texts = []
    for best, length in zip(log_probs.argmax(-1), lengths.tolist(), strict=True):
        path = torch.unique_consecutive(best[:length])  # merge repeats first ...
        path = path[path != BLANK]  # ... then drop the blanks
        text = "".join(ALPHABET[i - 1] for i in path.tolist())
        texts.append(" ".join(text.split()))
    return texts


def recognise(model: TinyASR, waveforms: Sequence[torch.Tensor], batch: int = 100) -> list[str]:
    """Transcribe 16 kHz waveforms with a TinyASR: features, the model, greedy CTC decoding."""
    device = next(model.parameters()).device
    texts: list[str] = []
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for start in range(0, len(waveforms), batch):
            mel, frames = features(waveforms[start : start + batch])
            texts += greedy_decode(model(mel.to(device), frames.to(device)).cpu(), _output_frames(frames))
    model.train(was_training)
    return texts


def _edit_distance(reference: Sequence[str], hypothesis: Sequence[str]) -> int:
    previous = list(range(len(hypothesis) + 1))
    for i, said in enumerate(reference, start=1):
        current = [i]
        for j, heard in enumerate(hypothesis, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (said != heard)))
        previous = current
    return previous[-1]


def corpus_wer(references: Sequence[str], hypotheses: Sequence[str]) -> float:
    """Word error rate in %: all the edits over all the reference words (not a mean of rates)."""
    edits = sum(_edit_distance(r.split(), h.split()) for r, h in zip(references, hypotheses, strict=True))
    return 100 * edits / sum(len(r.split()) for r in references)


def asr_test_sets(spoken: SpokenWords) -> dict[str, Utterances]:
    """Chapter 6's three test sets of 300 utterances: new orders of the training recordings,
    held-back recordings of the training voices, and the held-out voice (takes 0 and 2)."""
    train, back = held_back_split(spoken)
    voice = spoken.held_out_indices(0) + spoken.held_out_indices(2)
    clips = {"new orders": train, "held-back recordings": back, "held-out voice": voice}
    return {name: make_utterances(spoken, clips[name], 300, seed=seed, speed=0.0)
            for name, seed in TEST_SEEDS.items()}


def build_tiny_asr(seed: int = 0) -> TinyASR:
    """The zoo's untrained recogniser, initialised as chapter 6 does: under `seed`, the blank's bias
    raised by BLANK_BIAS so that training starts out saying "nothing new"."""
    torch.manual_seed(seed)
    model = TinyASR()
    with torch.no_grad():
        model.head.bias[BLANK] += BLANK_BIAS
    return model


def train_tiny_asr(model: TinyASR, seed: int = 0) -> dict:
    """The zoo's recipe, chapter 6's run: 300 steps of 32 utterances, AdamW with a one-cycle
    schedule peaking at 3e-3, gradients clipped to norm 1. Returns the WER (%) of each test set."""
    device = next(model.parameters()).device
    spoken = load_spoken_words()
    train, _ = held_back_split(spoken)
    utterances = make_utterances(spoken, train, TRAIN_UTTERANCES, seed=TRAIN_DATA_SEED)
    mel, frames = features(utterances.waveforms)
    mel, frames = mel.to(device), frames.to(device)
    parameters = list(model.parameters())
    optimiser = torch.optim.AdamW(parameters, 3e-3, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, 3e-3, total_steps=TRAIN_STEPS, pct_start=0.1)
    generator = torch.Generator().manual_seed(seed)
    model.train()
    loss = torch.tensor(float("nan"))
    for _ in progress(range(TRAIN_STEPS), desc="tiny ASR"):
        pick = torch.randint(len(utterances), (32,), generator=generator)
        loss = _ctc_loss(model, mel[pick], frames[pick], [utterances.texts[i] for i in pick.tolist()])
        optimiser.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(parameters, 1.0)
        optimiser.step()
        schedule.step()
    model.eval()
    metrics = {"final_loss": loss.item()}
    for name, test in asr_test_sets(spoken).items():
        metrics[f"wer {name}"] = corpus_wer(test.texts, recognise(model, test.waveforms))
    return metrics
