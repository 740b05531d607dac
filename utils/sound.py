"""The Sound world: synthetic audio tied to the Shapes world's concepts, plus a small spoken-word set.

Each colour has a pitch and each shape a timbre, so a "large red circle" can be seen (shapes.py),
read (its caption) and heard (here):

- colour -> pitch: the rainbow climbs a pentatonic scale from A3 = 220 Hz (red) to A4 = 440 Hz (purple),
  the same way the frequency of light climbs from red to violet;
- shape -> timbre: circle = a pure sine, square = odd harmonics falling as 1/k (square-like),
  triangle = odd harmonics falling as 1/k^2 (triangle-like, mellow), cross = a buzzy, inharmonic
  FM tone with a little hiss;
- size -> loudness: small is quiet, large is loud.

Rendering is vectorised over the batch with torch; every example gets a slight detune, its own phase
and a small random onset, so no two sounds are identical. All waveforms are 16 kHz and within [-1, 1].

The spoken-word set (`load_spoken_words`) is real synthesised speech shipped with the package:
the digits "zero".."nine" and the colour and shape words, in several voices (see
scripts/make_spoken_words.py, which made it with espeak-ng).
"""

from __future__ import annotations

import importlib.resources
import math
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from utils.batches import LabelledBatch
from utils.shapes import (
    COLOURS,
    DEFAULT_HOLDOUT,
    SHAPES,
    SIZES,
    SPLITS,
    ShapesBatch,
    describe,
    holdout_table,
)

SAMPLE_RATE = 16_000
# Pitch of each colour in Hz: red A3, orange C4, yellow D4, green E4, blue G4, purple A4.
PITCH_HZ: dict[str, float] = {
    "red": 220.00,
    "orange": 261.63,
    "yellow": 293.66,
    "green": 329.63,
    "blue": 392.00,
    "purple": 440.00,
}
TIMBRES: dict[str, str] = {
    "circle": "sine",
    "square": "odd harmonics 1/k (square-like)",
    "triangle": "odd harmonics 1/k^2 (triangle-like)",
    "cross": "inharmonic FM buzz with hiss",
}
LOUDNESS: dict[str, float] = {"small": 0.45, "large": 0.85}  # peak amplitude of the tone
MAX_SECONDS = 10.0
_HARMONICS = 15
_DETUNE = 0.015  # at most +-1.5%: adjacent colours are at least 12% apart
_ATTACK_SECONDS = 0.01
_RELEASE_SECONDS = 0.03
_DECAY_SECONDS = 0.6
_MAX_ONSET_SECONDS = 0.02
_FM_RATIO = 1.5  # modulator frequency / carrier frequency: inharmonic, hence buzzy
_FM_INDEX = 1.2  # small enough for the carrier (the pitch) to stay the strongest partial
_CROSS_HISS = 0.08

SPOKEN_WORDS_FILE = "spoken_words.npz"
SPOKEN_WORDS_SCRIPT = "scripts/make_spoken_words.py"


def _harmonic_table() -> torch.Tensor:
    """Amplitude of harmonic k (columns 0..H-1 for k = 1..H) of each shape's timbre: [4, H]."""
    table = torch.zeros(len(SHAPES), _HARMONICS)
    table[0, 0] = 1.0  # circle: the fundamental alone
    for k in range(1, _HARMONICS + 1, 2):  # odd harmonics only
        table[1, k - 1] = 1.0 / k  # square
        table[2, k - 1] = (-1.0) ** ((k - 1) // 2) / k**2  # triangle
    return table  # row 3 (cross) is made by FM synthesis instead


def _as_labels(values: torch.Tensor | Sequence[int], names: Sequence[str], what: str) -> torch.Tensor:
    """A long [N] tensor of valid indices into `names`; ValueError otherwise."""
    labels = torch.as_tensor(values)
    if labels.dtype.is_floating_point or labels.dtype == torch.bool:
        raise ValueError(f"{what} must be integer indices into {tuple(names)}, got dtype {labels.dtype}")
    labels = labels.long().flatten().cpu()
    if labels.numel() and (labels.min() < 0 or labels.max() >= len(names)):
        raise ValueError(
            f"{what} indices must be in 0..{len(names) - 1} ({', '.join(names)}), got {labels.tolist()}"
        )
    return labels


def _envelope(time: torch.Tensor, onset: torch.Tensor, seconds: float) -> torch.Tensor:
    """Attack, exponential decay and release: [N, S] in [0, 1]."""
    local = time[None, :] - onset[:, None]  # [N, S] seconds since the note started
    attack = (local / _ATTACK_SECONDS).clamp(0.0, 1.0)
    decay = torch.exp(-local.clamp(min=0.0) / _DECAY_SECONDS)
    release = ((seconds - time) / _RELEASE_SECONDS).clamp(0.0, 1.0)[None, :]
    return attack * decay * release


def _tones(shape: torch.Tensor, freq: torch.Tensor, phase: torch.Tensor, time: torch.Tensor,
           generator: torch.Generator) -> torch.Tensor:
    """Unit-peak periodic tones [N, S] with each shape's timbre (a loop over harmonics, not examples)."""
    n = shape.shape[0]
    waves = torch.zeros(n, time.shape[0])
    table = _harmonic_table()
    nyquist = SAMPLE_RATE / 2
    for k in range(1, _HARMONICS + 1):
        amplitude = table[shape, k - 1] * (k * freq < 0.9 * nyquist)  # [N], band-limited
        rows = amplitude.nonzero().flatten()
        if rows.numel() == 0:
            continue
        angle = 2 * math.pi * k * freq[rows, None] * time[None, :] + k * phase[rows, None]  # [n_k, S]
        waves[rows] += amplitude[rows, None] * torch.sin(angle)
    buzzy = (shape == SHAPES.index("cross")).nonzero().flatten()
    if buzzy.numel():
        carrier = 2 * math.pi * freq[buzzy, None] * time[None, :] + phase[buzzy, None]  # [n_c, S]
        modulator = torch.sin(_FM_RATIO * carrier)
        hiss = _CROSS_HISS * torch.randn(buzzy.numel(), time.shape[0], generator=generator)
        waves[buzzy] = torch.sin(carrier + _FM_INDEX * modulator) + hiss
    return waves / waves.abs().amax(dim=1, keepdim=True).clamp(min=1e-8)


def render(
    colour: torch.Tensor | Sequence[int],
    shape: torch.Tensor | Sequence[int],
    size: torch.Tensor | Sequence[int] | None = None,
    *,
    seconds: float = 0.5,
    seed: int = 0,
    noise: float = 0.01,
) -> torch.Tensor:
    """The sound of each (colour, shape, size): float [N, seconds * SAMPLE_RATE] in [-1, 1].

    colour, shape and size are long [N] indices into COLOURS, SHAPES and SIZES (size None: all large).
    `noise` is the standard deviation of added white noise. Deterministic given `seed`.
    """
    colour = _as_labels(colour, COLOURS, "colour")
    shape = _as_labels(shape, SHAPES, "shape")
    size = torch.ones_like(colour) if size is None else _as_labels(size, SIZES, "size")
    if not (colour.shape == shape.shape == size.shape) or colour.numel() == 0:
        raise ValueError(
            "colour, shape and size need the same non-zero length, got "
            f"{colour.numel()}, {shape.numel()} and {size.numel()}"
        )
    if not 0.05 <= seconds <= MAX_SECONDS:
        raise ValueError(f"seconds must be between 0.05 and {MAX_SECONDS}, got {seconds}")
    if not 0 <= noise <= 0.5:
        raise ValueError(f"noise is a standard deviation between 0 and 0.5, got {noise}")
    n, samples = colour.shape[0], int(round(seconds * SAMPLE_RATE))
    generator = torch.Generator().manual_seed(seed)
    time = torch.arange(samples, dtype=torch.float32) / SAMPLE_RATE  # [S] seconds
    pitch = torch.tensor([PITCH_HZ[c] for c in COLOURS])
    freq = pitch[colour] * (1 + _DETUNE * (2 * torch.rand(n, generator=generator) - 1))  # [N] Hz
    phase = 2 * math.pi * torch.rand(n, generator=generator)  # [N]
    onset = _MAX_ONSET_SECONDS * torch.rand(n, generator=generator)  # [N] seconds
    loudness = torch.tensor([LOUDNESS[s] for s in SIZES])[size]  # [N]
    tones = _tones(shape, freq, phase, time, generator)  # [N, S]
    waves = loudness[:, None] * _envelope(time, onset, seconds) * tones  # [N, S]
    if noise > 0:
        waves = waves + noise * torch.randn(n, samples, generator=generator)
    return waves.clamp(-1.0, 1.0)


def sounds_for(
    batch: ShapesBatch, *, seconds: float = 0.5, seed: int = 0, noise: float = 0.01
) -> torch.Tensor:
    """The sound of the first object of every image in a ShapesBatch: float [N, samples] in [-1, 1]."""
    first = (batch.colour[:, 0], batch.shape[:, 0], batch.size[:, 0])
    return render(*first, seconds=seconds, seed=seed, noise=noise)


@dataclass
class SoundBatch(LabelledBatch):
    """Sounds of single Shapes-world objects, with their labels and the captions of the objects."""

    waveforms: torch.Tensor  # float [N, samples] in [-1, 1]
    colour: torch.Tensor  # long [N]
    shape: torch.Tensor  # long [N]
    size: torch.Tensor  # long [N]
    captions: list[str]
    sample_rate: int = SAMPLE_RATE


def generate(
    n: int,
    *,
    seed: int = 0,
    seconds: float = 0.5,
    noise: float = 0.01,
    split: str = "all",
    holdout: Sequence[tuple[str, str]] = DEFAULT_HOLDOUT,
) -> SoundBatch:
    """`n` random object sounds with labels; captions name the object ("a large red circle").

    split works as in shapes.generate: "train" never plays a held-out (colour, shape) pair, "test"
    plays only held-out pairs, "all" plays anything.
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be an integer >= 1, got {n!r}")
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(repr(s) for s in SPLITS)}; got {split!r}")
    held = holdout_table(holdout).flatten()  # [24] in pair_index order
    allowed = {"all": torch.ones_like(held), "train": ~held, "test": held}[split].nonzero().flatten()
    if allowed.numel() == 0:
        raise ValueError(f"split={split!r} leaves no (colour, shape) pair with this holdout")
    generator = torch.Generator().manual_seed(seed)
    pair = allowed[torch.randint(0, allowed.numel(), (n,), generator=generator)]  # [N]
    colour, shape = pair // len(SHAPES), pair % len(SHAPES)
    size = torch.randint(0, len(SIZES), (n,), generator=generator)
    waveforms = render(colour, shape, size, seconds=seconds, seed=seed + 1, noise=noise)
    captions = [describe(int(c), int(s), int(z)) for c, s, z in zip(colour, shape, size, strict=True)]
    return SoundBatch(waveforms, colour, shape, size, captions)


# ----------------------------------------------------------------------------------------------
# The spoken-word set
# ----------------------------------------------------------------------------------------------


@dataclass
class SpokenWords:
    """Single spoken words (synthesised with espeak-ng), for speech recognition in chapter 6.

    Twenty words: "zero".."nine", the six colours and the four shapes. Seven voices say every word
    once; the held-out voice, "caribbean_female" (espeak-ng's Caribbean English, en-029, with a high
    female variant), is kept out of training and says every word in three takes at three speeds
    (take 0, 1, 2): adapt on one take, test on the others.
    """

    waveforms: list[torch.Tensor]  # each float [samples] in [-1, 1]
    texts: list[str]
    voices: list[str]
    sample_rate: int
    held_out_voice: str
    takes: list[int]
    words: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.waveforms)

    def train_indices(self) -> list[int]:
        """Clips of every voice but the held-out one."""
        return [i for i, voice in enumerate(self.voices) if voice != self.held_out_voice]

    def held_out_indices(self, take: int | None = None) -> list[int]:
        """Clips of the held-out voice (only one take if `take` is given)."""
        return [
            i for i, voice in enumerate(self.voices)
            if voice == self.held_out_voice and (take is None or self.takes[i] == take)
        ]

    def padded(self, indices: Sequence[int] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Clips zero-padded to the longest: (float [N, max_samples], long [N] lengths)."""
        chosen = list(range(len(self))) if indices is None else list(indices)
        lengths = torch.tensor([self.waveforms[i].shape[0] for i in chosen])
        batch = torch.zeros(len(chosen), int(lengths.max()) if chosen else 0)
        for row, i in enumerate(chosen):
            batch[row, : lengths[row]] = self.waveforms[i]
        return batch, lengths


def _spoken_words_problem(path: Any, what: str) -> str:
    return (
        f"{what}: {path}. This file ships with the book's `utils` package; rebuild it with "
        f"`python {SPOKEN_WORDS_SCRIPT}` (needs espeak-ng: `sudo apt-get install espeak-ng`), "
        "or reinstall the package."
    )


def load_spoken_words(path: str | Path | None = None) -> SpokenWords:
    """Load the spoken-word set from utils/data/spoken_words.npz (or `path`).

    The held-out voice is "caribbean_female" (also in the file's metadata, `held_out_voice`).
    Raises FileNotFoundError when the file is missing and ValueError when it is unreadable, both
    naming the file and the script that rebuilds it.
    """
    if path is None:
        resource: Any = importlib.resources.files("utils.data").joinpath(SPOKEN_WORDS_FILE)
    else:
        resource = Path(path)
    if not resource.is_file():
        raise FileNotFoundError(_spoken_words_problem(resource, "the spoken-word set is missing"))
    try:
        with resource.open("rb") as handle, np.load(handle, allow_pickle=False) as archive:
            audio, offsets = archive["audio"], archive["offsets"]
            texts = [str(t) for t in archive["texts"]]
            voices = [str(v) for v in archive["voices"]]
            takes = [int(t) for t in archive["takes"]]
            words = tuple(str(w) for w in archive["words"])
            sample_rate = int(archive["sample_rate"])
            held_out_voice = str(archive["held_out_voice"])
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as error:
        problem = _spoken_words_problem(resource, f"the spoken-word set is corrupt ({error})")
        raise ValueError(problem) from error
    if audio.dtype != np.int16 or len(offsets) != len(texts) + 1 or offsets[-1] != len(audio):
        raise ValueError(_spoken_words_problem(resource, "the spoken-word set has inconsistent arrays"))
    scaled = torch.from_numpy(audio.astype(np.float32) / 32768.0)  # [total samples] in [-1, 1)
    waveforms = [scaled[offsets[i] : offsets[i + 1]].clone() for i in range(len(texts))]
    return SpokenWords(waveforms, texts, voices, sample_rate, held_out_voice, takes, words)


def dominant_frequency(waveforms: torch.Tensor, sample_rate: int = SAMPLE_RATE) -> torch.Tensor:
    """The frequency (Hz) of the strongest FFT bin of each waveform [N, S] -> float [N]."""
    spectrum = torch.fft.rfft(waveforms * torch.hann_window(waveforms.shape[-1]), dim=-1).abs()  # [N, S//2+1]
    spectrum[..., 0] = 0  # ignore any DC offset
    return spectrum.argmax(dim=-1).float() * sample_rate / waveforms.shape[-1]
