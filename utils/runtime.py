"""Runtime helpers every lesson's setup cell uses: seeds, device, versions, Colab, hub reachability,
and `to_numpy`, the one way a tensor on any device leaves torch for NumPy and matplotlib."""

from __future__ import annotations

import contextlib
import functools
import importlib
import importlib.metadata
import os
import platform
import random
import re
import socket
import sys
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

HUB_HOST = "huggingface.co"
LIBRARIES = ("torch", "torchvision", "torchaudio", "transformers", "diffusers", "numpy")


def to_numpy(values: Any) -> np.ndarray:
    """A NumPy copy of a tensor (any device, any float width) or of anything np.asarray takes."""
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu()
        if values.dtype in (torch.float16, torch.bfloat16):
            values = values.float()
        return values.numpy()
    return np.asarray(values)


def device_of(model: Any) -> torch.device:
    """Where a model lives: a `transformers` model or `diffusers` pipeline says so (`.device`); a plain
    module is where its first parameter is; a module without parameters is on the CPU."""
    device = getattr(model, "device", None)
    if isinstance(device, torch.device):
        return device
    parameter = next(model.parameters(), None) if hasattr(model, "parameters") else None
    return parameter.device if parameter is not None else torch.device("cpu")


def error_line(error: BaseException, limit: int = 200, with_type: bool = True) -> str:
    """The first line of an error's message ('TypeError: ...'), at most `limit` characters, without
    memory addresses, so that messages stay the same from run to run."""
    text = str(error).strip()
    message = re.sub(r" at 0x[0-9a-fA-F]+", "", text.splitlines()[0]) if text else ""
    if len(message) > limit:
        message = message[: limit - 3] + "..."
    if not with_type:
        return message or type(error).__name__
    return f"{type(error).__name__}: {message}" if message else type(error).__name__


def seed_everything(seed: int = 0, deterministic: bool = True, device: torch.device | None = None) -> None:
    """Seed Python, NumPy and torch (CPU and every GPU), and choose deterministic kernels where that
    is free of warnings.

    `device` is where the lesson runs (default: `pick_device()`). On a CPU, torch's deterministic
    mode is on: a run is bit-reproducible on the same machine and library versions. On a GPU (CUDA or
    Apple's MPS) the runs are seeded and cuDNN picks deterministic convolutions, but torch's global
    deterministic mode stays off: several backward kernels the book uses (adaptive pooling,
    interpolation, CTC) accumulate with atomic adds whose order varies, have no deterministic version,
    and would print a warning into every lesson. So on a GPU two runs agree to float rounding, not bit
    for bit (book/setup.md says so).
    """
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    if deterministic:
        on_cpu = (device if device is not None else pick_device()).type == "cpu"
        torch.use_deterministic_algorithms(on_cpu, warn_only=True)
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True


@contextlib.contextmanager
def isolated_seed(seed: int = 0) -> Iterator[None]:
    """Seed Python, NumPy and torch for the block; give the caller's random states back afterwards.

    Used where code must be reproducible without disturbing a notebook's own random stream
    (grading a learner's function, training a model-zoo entry).
    """
    python_state, numpy_state = random.getstate(), np.random.get_state()
    devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)
        try:
            yield
        finally:
            random.setstate(python_state)
            np.random.set_state(numpy_state)


def pick_device(prefer: str | None = None) -> torch.device:
    """CUDA if there is one, then Apple MPS, then the CPU. `prefer` (e.g. "cpu") overrides."""
    prefer = prefer or os.environ.get("MMBOOK_DEVICE")
    if prefer:
        return torch.device(prefer)
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def describe_device(device: torch.device) -> str:
    """One human line: which device, and what that means for the lesson."""
    if device.type == "cuda":
        return f"GPU: {torch.cuda.get_device_name(device)}"
    if device.type == "mps":
        return "Apple GPU (MPS)"
    return f"CPU ({os.cpu_count()} cores): no GPU found; every lesson still runs"


def versions() -> dict[str, str]:
    """Installed versions of Python and the libraries the book leans on ('missing' if absent)."""
    found = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = "missing"
    return found


class MissingPackage(ModuleNotFoundError):
    """An optional package is not installed. In a notebook it shows as its one-line message, without
    a traceback (IPython calls `_render_traceback_`)."""

    def _render_traceback_(self) -> list[str]:
        return [f"MissingPackage: {self}"]


# Packages whose pip name differs from their import name, and what to install for each.
_PIP_NAMES = {"skimage": "scikit-image", "sklearn": "scikit-learn", "PIL": "pillow"}


def need(module: str, purpose: str) -> Any:
    """Import an optional `module` for `purpose`, or raise `MissingPackage` saying what to install.

    torchaudio must match the installed torch exactly, so its advice names that version.
    """
    try:
        return importlib.import_module(module)
    except (ImportError, OSError) as error:  # OSError: installed but broken (a torchaudio for another torch)
        top = module.split(".")[0]
        package = _PIP_NAMES.get(top, top)
        install = f"pip install {package}"
        if top == "torchaudio":
            torch_release = torch.__version__.split("+")[0]
            install = f"pip install torchaudio matching your torch {torch_release} (never upgrade torch for it)"
        if isinstance(error, ModuleNotFoundError):
            message = f"{purpose} needs the {package} package, which is not installed here: {install}."
        else:
            first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            message = f"{purpose} needs the {package} package, which could not be imported ({first}): {install}."
        raise MissingPackage(message) from error


def in_colab() -> bool:
    """True inside Google Colab."""
    return "google.colab" in sys.modules


@functools.lru_cache(maxsize=1)
def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the Hugging Face hub answers within `timeout` seconds; never hangs, never raises.

    HF_HUB_OFFLINE=1 (the hub library's own switch) or MMBOOK_OFFLINE=1 answer False at once.
    """
    for switch in ("HF_HUB_OFFLINE", "MMBOOK_OFFLINE"):
        if os.environ.get(switch, "").lower() in ("1", "true", "yes"):
            return False
    answers: list[bool] = []

    def probe() -> None:
        try:
            with socket.create_connection((HUB_HOST, 443), timeout=timeout):
                answers.append(True)
        except Exception:  # noqa: BLE001 - any failure means the hub is not reachable
            answers.append(False)

    # A thread bounds the whole check: the socket timeout does not cover a slow DNS look-up.
    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout + 0.5)
    return bool(answers and answers[0])


def setup(chapter: int, seed: int = 0, quiet: bool = False) -> torch.device:
    """The setup cell of every lesson: seed, pick the device, say what we run on. Returns the device."""
    device = pick_device()
    seed_everything(seed, device=device)
    if not quiet:
        libs = [f"{name} {version}" for name, version in versions().items()]
        print(f"Chapter {chapter} | seed {seed} | {describe_device(device)}")
        print("Versions:", ", ".join(libs[:4]))
        print("         ", ", ".join(libs[4:]))
    return device
