"""Runtime helpers every lesson's setup cell uses: seeds, device, versions, Colab, hub reachability,
and `to_numpy`, the one way a tensor on any device leaves torch for NumPy and matplotlib."""

from __future__ import annotations

import contextlib
import functools
import importlib.metadata
import os
import platform
import random
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


def seed_everything(seed: int = 0, deterministic: bool = True) -> None:
    """Seed Python, NumPy and torch (CPU and every GPU); ask torch for deterministic kernels."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    if deterministic:
        # warn_only: a kernel without a deterministic version warns instead of stopping a lesson.
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
        # cuBLAS needs this workspace setting to be deterministic; harmless on CPU.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")


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
    seed_everything(seed)
    device = pick_device()
    if not quiet:
        libs = [f"{name} {version}" for name, version in versions().items()]
        print(f"Chapter {chapter} | seed {seed} | {describe_device(device)}")
        print("Versions:", ", ".join(libs[:4]))
        print("         ", ", ".join(libs[4:]))
    return device
