"""The model zoo: the book's own tiny models, trained by the book's code and cached on disk.

Later chapters reuse models that earlier chapters train (tiny CLIP, tiny LM, tiny VLM, VQ tokenizer).
`get` returns such a model from the cache when the cached weights are intact, and otherwise builds
and trains it, then caches it. Every lesson still runs on its own: a missing cache only costs the
training time.

Files, in `cache_dir()` (env MMBOOK_CACHE, default ~/.cache/mmbook/zoo):

    <name>-<version>.pt     the state dict (tensors only; loaded with torch.load(weights_only=True))
    <name>-<version>.json   sha256 of the .pt, train seconds, the metrics `train` returned, torch
                            version, date

The book's models are listed once, in `BOOK_MODELS` (name, version, and where their model class and
training recipe live, as "module:attribute"; resolved only when a model is loaded, so importing a
module registers nothing), and any lesson calls `load("tiny_clip")`. A reader can add a model of their
own at run time with `register(name, version, build, train)`. Training runs under a fixed seed with the caller's
random state saved and restored, so a lesson's later random draws are the same whether its model
came from the cache or was trained on the spot.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import importlib
import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from utils import runtime

CACHE_ENV = "MMBOOK_CACHE"
DEFAULT_CACHE = Path("~/.cache/mmbook/zoo")
TRAIN_SEED = 0


@dataclasses.dataclass(frozen=True)
class Entry:
    """How to make one zoo model: its version, an untrained-model factory and a training function.

    build and train are callables, or "module:attribute" strings resolved when the model is loaded.
    """

    name: str
    version: str
    build: Callable[[], nn.Module] | str
    train: Callable[[nn.Module], dict | None] | str
    expected: str | None = None  # how long training takes, in words, for the "training it now" line

    def resolved(self) -> Entry:
        """The same entry with build and train as callables."""
        return dataclasses.replace(self, build=_resolve(self.build), train=_resolve(self.train))


# The book's own models: one line each, in chapter order.
BOOK_MODELS: dict[str, Entry] = {
    "tiny_clip": Entry("tiny_clip", "v2", "utils.tiny_clip:TinyCLIP", "utils.tiny_clip:train",
                       expected="about a minute on a CPU"),
    "tiny_vlm": Entry("tiny_vlm", "v2", "utils.tiny_vlm:build_tiny_vlm", "utils.tiny_vlm:train",
                      expected="about a minute and a half on a CPU"),
    "tiny_asr": Entry("tiny_asr", "v1", "utils.speech:build_tiny_asr", "utils.speech:train_tiny_asr",
                      expected="about half a minute on a CPU"),
    "tiny_gen": Entry("tiny_gen", "v1", "utils.generation:build_generator",
                      "utils.generation:train_generator", expected="about a minute on a CPU"),
    "tiny_vlm_dpo": Entry("tiny_vlm_dpo", "v1", "utils.tiny_vlm:build_tiny_vlm",
                          "utils.alignment:train_aligned", expected="about a minute on a CPU"),
}
# Models a reader registers at run time (they take precedence over BOOK_MODELS of the same name).
REGISTRY: dict[str, Entry] = {}


def _resolve(target: Callable | str) -> Callable:
    if callable(target):
        return target
    module, _, attribute = target.partition(":")
    return getattr(importlib.import_module(module), attribute)


class CacheProblem(Exception):
    """Why a cached model cannot be used; the message finishes the sentence 'the cache ...'."""


def cache_dir() -> Path:
    """Where the zoo keeps its files: $MMBOOK_CACHE, or ~/.cache/mmbook/zoo."""
    return Path(os.environ.get(CACHE_ENV) or DEFAULT_CACHE).expanduser()


def paths(name: str, version: str) -> tuple[Path, Path]:
    """The weights file and its metadata sidecar for `name` at `version`."""
    folder = cache_dir()
    return folder / f"{name}-{version}.pt", folder / f"{name}-{version}.json"


def register(
    name: str,
    version: str,
    build: Callable[[], nn.Module],
    train: Callable[[nn.Module], dict | None],
    *,
    expected: str | None = None,
) -> Entry:
    """Record how to make the zoo model `name` (a later registration of the same name replaces it)."""
    entry = Entry(name, version, build, train, expected)
    REGISTRY[name] = entry
    return entry


def load(name: str, *, device: torch.device | str | None = None, retrain: bool = False,
         quiet: bool = False) -> tuple[nn.Module, dict]:
    """`get` for a registered model: (model in eval mode on `device`, metadata)."""
    entry = _entry(name)
    return get(name, version=entry.version, build=entry.build, train=entry.train, device=device,
               retrain=retrain, expected=entry.expected, quiet=quiet)


def _entry(name: str) -> Entry:
    """The entry of `name`, from the reader's registrations or the book's table, with callables."""
    entry = REGISTRY.get(name) or BOOK_MODELS.get(name)
    if entry is None:
        known = ", ".join(sorted(set(REGISTRY) | set(BOOK_MODELS)))
        raise KeyError(f"zoo: no model registered as {name!r} (known: {known})")
    return entry.resolved()


def get(
    name: str,
    *,
    version: str,
    build: Callable[[], nn.Module],
    train: Callable[[nn.Module], dict | None],
    device: torch.device | str | None = None,
    retrain: bool = False,
    expected: str | None = None,
    quiet: bool = False,
) -> tuple[nn.Module, dict]:
    """The zoo model `name` at `version`: from the cache if intact, else built, trained and cached.

    build: makes the untrained model (the same architecture every time).
    train: trains the model in place (it arrives on `device`) and may return a dict of metrics,
        which the metadata keeps.
    device: where the model is trained and returned; default `runtime.pick_device()`.
    retrain: ignore the cache and train again (the new weights replace the cached ones).
    expected: how long training takes, in words ("about a minute on a CPU"), for the message.
    Prints one line saying what happened. Returns (model in eval mode on `device`, metadata), where
    metadata also says `source` ("cache" or "trained") and `path`.
    """
    device = torch.device(device) if device is not None else runtime.pick_device()
    weights_path, meta_path = paths(name, version)
    label = f"{name} {version}"
    say = (lambda line: None) if quiet else print
    if retrain:
        reason = "retraining as asked"
    else:
        try:
            model, meta = _load_cached(build, weights_path, meta_path)
        except CacheProblem as problem:
            reason = str(problem)
        else:
            say(f"zoo: {label} loaded from cache (trained {meta.get('date', '?')[:10]}, "
                f"{meta.get('train_seconds', 0.0):.1f} s)")
            return model.to(device).eval(), {**meta, "source": "cache", "path": str(weights_path)}
    say(_training_line(label, reason, expected))
    model, meta = _build_and_train(name, version, build, train, device)
    saved = _save(model, meta, weights_path, meta_path, label, say)
    meta = {**meta, "source": "trained", "path": str(weights_path) if saved else None}
    return model.eval(), meta


def clear(name: str | None = None) -> list[Path]:
    """Delete the cached files of `name` (all versions), or of the whole zoo when `name` is None."""
    folder = cache_dir()
    if not folder.is_dir():
        return []
    removed = []
    for path in sorted(folder.iterdir()):
        if path.is_file() and path.suffix in (".pt", ".json", ".tmp") and _belongs_to(path, name):
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def _belongs_to(path: Path, name: str | None) -> bool:
    """Whether a zoo file (`<name>-<version>.pt|.json`, or a leftover `.<name>-...tmp`) is `name`'s."""
    if name is None:
        return True
    stem = path.name.lstrip(".").split(".")[0]  # "tiny_clip-v1"
    return stem.rpartition("-")[0] == name


# ---------------------------------------------------------------------------------------------------
# Loading


def _load_cached(
    build: Callable[[], nn.Module], weights_path: Path, meta_path: Path
) -> tuple[nn.Module, dict]:
    """The cached model and its metadata, or CacheProblem saying why the cache cannot be used."""
    if not weights_path.is_file():
        raise CacheProblem("not cached")
    meta = _read_meta(meta_path)
    if sha256_of(weights_path) != meta.get("sha256"):
        raise CacheProblem("cache was corrupt (checksum mismatch)")
    try:
        state = torch.load(weights_path, map_location="cpu", weights_only=True)
    except Exception as error:  # unpickling errors come in many types; all mean "unreadable"
        raise CacheProblem(f"cache was corrupt (unreadable weights: {type(error).__name__})") from error
    with runtime.isolated_seed(TRAIN_SEED):  # building draws initial weights: leave the caller's random state alone
        model = build()
    try:
        model.load_state_dict(state)
    except (RuntimeError, TypeError, AttributeError) as error:
        raise CacheProblem("cache did not fit the model (missing, extra or mis-shaped weights)") from error
    return model, meta


def _read_meta(meta_path: Path) -> dict:
    try:
        meta = json.loads(meta_path.read_text())
    except FileNotFoundError as error:
        raise CacheProblem("cache was incomplete (no metadata file)") from error
    except (OSError, ValueError) as error:
        raise CacheProblem("cache was corrupt (unreadable metadata)") from error
    if not isinstance(meta, dict):
        raise CacheProblem("cache was corrupt (unreadable metadata)")
    return meta


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# ---------------------------------------------------------------------------------------------------
# Training


def _training_line(label: str, reason: str, expected: str | None) -> str:
    how_long = f" ({expected})" if expected else ""
    if reason == "not cached":
        return f"zoo: {label} not cached - training it now{how_long}"
    if reason == "retraining as asked":
        return f"zoo: {label} retraining as asked{how_long}"
    return f"zoo: {label} {reason} - retraining{how_long}"


def _build_and_train(
    name: str,
    version: str,
    build: Callable[[], nn.Module],
    train: Callable[[nn.Module], dict | None],
    device: torch.device,
) -> tuple[nn.Module, dict]:
    """Build and train under the zoo's seed; return the model and its metadata (without the checksum)."""
    with runtime.isolated_seed(TRAIN_SEED):
        model = build().to(device)
        start = time.perf_counter()
        metrics = train(model)
        seconds = time.perf_counter() - start
    return model, _metadata(name, version, model, seconds, metrics)


def _metadata(name: str, version: str, model: nn.Module, seconds: float, metrics: dict | None) -> dict:
    """The sidecar's fields (all but the checksum, which `_save` adds)."""
    return {
        "name": name,
        "version": version,
        "train_seconds": round(seconds, 2),
        "metrics": _jsonable(metrics or {}),
        "parameters": sum(p.numel() for p in model.parameters()),
        "device": str(next(model.parameters(), torch.empty(0)).device),
        "torch": torch.__version__,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "seed": TRAIN_SEED,
    }


def save(name: str, model: nn.Module, *, train_seconds: float = 0.0, metrics: dict | None = None,
         quiet: bool = False) -> Path | None:
    """Cache `model` as the registered zoo model `name`, when a lesson has just trained it with the recipe.

    The model must have the registered architecture (its state dict must load into `build()`), so a
    later `load(name)` returns exactly these weights. Returns the weights path, or None when the cache
    cannot be written (the reason is printed).
    """
    entry = _entry(name)
    with runtime.isolated_seed(TRAIN_SEED):
        reference = entry.build()
    try:
        reference.load_state_dict(model.state_dict())
    except (RuntimeError, TypeError, AttributeError) as error:
        raise ValueError(f"zoo: this model does not have the architecture registered as {name!r}") from error
    weights_path, meta_path = paths(name, entry.version)
    label = f"{name} {entry.version}"
    say = (lambda line: None) if quiet else print
    meta = _metadata(name, entry.version, model, train_seconds, metrics)
    if not _save(model, meta, weights_path, meta_path, label, say):
        return None
    say(f"zoo: {label} saved to the cache; later chapters load it with zoo.load({name!r})")
    return weights_path


def _jsonable(value: Any) -> Any:
    """Metrics as plain JSON: tensors and NumPy numbers become Python numbers, tuples become lists."""
    if isinstance(value, dict):
        return {str(key): _jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(item) for item in value]
    if isinstance(value, torch.Tensor):
        return value.item() if value.numel() == 1 else value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


# ---------------------------------------------------------------------------------------------------
# Saving


def _save(model: nn.Module, meta: dict, weights_path: Path, meta_path: Path, label: str,
          say: Callable[[str], None]) -> bool:
    """Write weights then metadata, each atomically; on a read-only or full disk keep the model in memory."""
    state = {key: tensor.detach().cpu() for key, tensor in model.state_dict().items()}
    try:
        weights_path.parent.mkdir(parents=True, exist_ok=True)
        _atomic_write(weights_path, lambda handle: torch.save(state, handle))
        meta["sha256"] = sha256_of(weights_path)
        text = json.dumps(meta, indent=2, sort_keys=True) + "\n"
        _atomic_write(meta_path, lambda handle: handle.write(text.encode()))
    except OSError as error:
        reason = error.strerror or type(error).__name__
        say(f"zoo: could not cache {label} in {weights_path.parent} ({reason}) - keeping it in memory only")
        return False
    return True


def _atomic_write(path: Path, write: Callable[[Any], Any]) -> None:
    """Write to a temporary file beside `path`, flush it to disk, then rename it over `path`."""
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(descriptor, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
