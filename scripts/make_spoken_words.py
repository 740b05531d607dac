"""Build utils/data/spoken_words.npz: the book's small spoken-word set for speech recognition (chapter 6).

Twenty words (the digits "zero".."nine", the six colours and the four shapes of the Shapes world) are
spoken by the espeak-ng speech synthesiser in eight voices that differ in accent, pitch and speed.
Seven voices say every word once; the eighth, the held-out voice (a Caribbean English accent with a
high female variant), says every word three times at three speeds, so that chapter 6 can adapt a
recogniser to a new voice on one take and test it on the others.

Every clip is resampled to 16 kHz mono, trimmed of leading and trailing silence, peak-normalised and
stored as int16. The file is small (under 3 MB) and ships with the package; this script only needs
to run again if the word list or the voices change.

    sudo apt-get install espeak-ng     # Debian / Ubuntu
    python scripts/make_spoken_words.py
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import wave
from math import gcd
from pathlib import Path

import numpy as np

SAMPLE_RATE = 16_000
WORDS: tuple[str, ...] = (
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
    "red", "green", "blue", "yellow", "purple", "orange",
    "circle", "square", "triangle", "cross",
)
# (voice id, espeak-ng voice+variant, words per minute, pitch 0-99)
TRAIN_VOICES: tuple[tuple[str, str, int, int], ...] = (
    ("us_male", "en-us", 175, 50),
    ("us_female", "en-us+f3", 160, 60),
    ("british_male", "en-gb+m3", 180, 45),
    ("british_rp_female", "en-gb-x-rp+f2", 165, 55),
    ("lancaster_male", "en-gb-x-gbclan+m4", 165, 40),
    ("new_york_female", "en-us-nyc+f4", 185, 65),
    ("scottish_male", "en-gb-scotland+m7", 195, 35),
)
HELD_OUT_VOICE = "caribbean_female"
HELD_OUT_SPEC = "en-029+f5"
HELD_OUT_SPEEDS: tuple[int, ...] = (150, 175, 200)
HELD_OUT_PITCH = 70
SILENCE_DB = -40.0  # frames this far below the loudest frame are silence
PADDING_SECONDS = 0.01
PEAK = 0.9
OUTPUT = Path(__file__).resolve().parents[1] / "utils" / "data" / "spoken_words.npz"


def find_espeak() -> str:
    """Path of the espeak-ng program; exits with instructions when it is not installed."""
    program = shutil.which("espeak-ng")
    if program is None:
        sys.exit(
            "espeak-ng was not found on this machine. It is the speech synthesiser this script uses.\n"
            "Install it with `sudo apt-get install espeak-ng` (Debian/Ubuntu), `brew install espeak-ng`\n"
            "(macOS) or from https://github.com/espeak-ng/espeak-ng, then run this script again.\n"
            "You only need it to rebuild utils/data/spoken_words.npz, which already ships with the book."
        )
    return program


def synthesise(program: str, text: str, voice: str, speed: int, pitch: int) -> tuple[np.ndarray, int]:
    """Speak `text` with espeak-ng; returns (float waveform in [-1, 1], its sample rate)."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "word.wav"
        command = [program, "-v", voice, "-s", str(speed), "-p", str(pitch), "-w", str(path), text]
        subprocess.run(command, check=True, capture_output=True)
        with wave.open(str(path)) as recording:
            if recording.getnchannels() != 1 or recording.getsampwidth() != 2:
                raise RuntimeError(f"espeak-ng gave an unexpected format for {voice!r}: expected 16-bit mono")
            rate = recording.getframerate()
            frames = recording.readframes(recording.getnframes())
    return np.frombuffer(frames, dtype=np.int16).astype(np.float64) / 32768.0, rate


def resample(waveform: np.ndarray, rate: int, target: int = SAMPLE_RATE) -> np.ndarray:
    """Band-limited polyphase resampling from `rate` to `target` Hz."""
    from scipy.signal import resample_poly  # scipy comes with scikit-learn and scikit-image

    divisor = gcd(rate, target)
    return resample_poly(waveform, target // divisor, rate // divisor)


def trim_and_normalise(waveform: np.ndarray, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Cut leading and trailing silence and scale the peak to PEAK.

    Silence is judged on the energy of 10 ms frames (quieter than SILENCE_DB below the loudest frame),
    not on single samples, so that quiet fricatives such as the final "s" of "cross" are kept.
    """
    frame = sample_rate // 100
    frames = len(waveform) // frame
    energy = (waveform[: frames * frame].reshape(frames, frame) ** 2).mean(axis=1)  # [frames]
    loud = np.flatnonzero(energy > energy.max() * 10 ** (SILENCE_DB / 10))
    padding = int(PADDING_SECONDS * sample_rate)
    start = max(loud[0] * frame - padding, 0)
    stop = min((loud[-1] + 1) * frame + padding, len(waveform))
    clip = waveform[start:stop]
    return clip * (PEAK / np.abs(clip).max())


def recordings() -> list[tuple[str, str, int, int]]:
    """Every (voice id, espeak voice, speed, pitch) take to record, train voices first."""
    takes = [(voice_id, spec, speed, pitch) for voice_id, spec, speed, pitch in TRAIN_VOICES]
    takes += [(HELD_OUT_VOICE, HELD_OUT_SPEC, speed, HELD_OUT_PITCH) for speed in HELD_OUT_SPEEDS]
    return takes


def espeak_version(program: str) -> str:
    """The espeak-ng version line, recorded in the asset's metadata."""
    line = subprocess.run([program, "--version"], capture_output=True, text=True).stdout.strip()
    return line.split("Data at")[0].strip()  # keep the version, not this machine's data folder


def build(output: Path = OUTPUT) -> None:
    """Record every word in every voice and write the npz asset."""
    program = find_espeak()
    clips, texts, voices, specs, speeds, takes = [], [], [], [], [], []
    takes_so_far: dict[str, int] = {}
    for voice_id, spec, speed, pitch in recordings():
        take = takes_so_far.get(voice_id, 0)
        takes_so_far[voice_id] = take + 1
        for word in WORDS:
            waveform, rate = synthesise(program, word, spec, speed, pitch)
            clip = trim_and_normalise(resample(waveform, rate))
            clips.append(np.round(clip * 32767).astype(np.int16))
            texts.append(word)
            voices.append(voice_id)
            specs.append(spec)
            speeds.append(speed)
            takes.append(take)
        print(f"recorded {len(WORDS)} words: voice {voice_id} ({spec}, {speed} wpm, pitch {pitch})")
    lengths = np.array([len(c) for c in clips])
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    output.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        output,
        audio=np.concatenate(clips),  # int16, every clip one after the other
        offsets=offsets,  # clip i is audio[offsets[i]:offsets[i + 1]]
        texts=np.array(texts),
        voices=np.array(voices),
        espeak_voices=np.array(specs),
        speeds_wpm=np.array(speeds, dtype=np.int16),
        takes=np.array(takes, dtype=np.int16),
        words=np.array(WORDS),
        sample_rate=np.array(SAMPLE_RATE),
        held_out_voice=np.array(HELD_OUT_VOICE),
        generator=np.array(f"scripts/make_spoken_words.py with {espeak_version(program)}"),
    )
    seconds = lengths.sum() / SAMPLE_RATE
    size_mb = output.stat().st_size / 1e6
    print(f"wrote {output} : {len(clips)} clips, {seconds:.1f} s of audio, {size_mb:.2f} MB")
    print(f"clip length: {lengths.min() / SAMPLE_RATE:.2f}-{lengths.max() / SAMPLE_RATE:.2f} s; "
          f"held-out voice: {HELD_OUT_VOICE} ({HELD_OUT_SPEC}, {len(HELD_OUT_SPEEDS)} takes)")


def main() -> None:
    """Command line: python scripts/make_spoken_words.py [--output PATH]."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--output", type=Path, default=OUTPUT, help=f"where to write (default {OUTPUT})")
    build(parser.parse_args().output)


if __name__ == "__main__":
    main()
