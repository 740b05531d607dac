"""utils.runtime: seeds, device choice, versions, Colab and hub detection, the setup line."""

from __future__ import annotations

import random
import socket
import sys
import time

import numpy as np
import pytest
import torch

from utils import runtime


def draw() -> tuple:
    return random.random(), float(np.random.rand()), torch.rand(3).tolist()


def test_seed_everything_makes_every_generator_repeat():
    runtime.seed_everything(7)
    first = draw()
    runtime.seed_everything(7)
    assert draw() == first
    runtime.seed_everything(8)
    assert draw() != first


def test_pick_device_prefers_the_argument_then_the_environment(monkeypatch):
    monkeypatch.delenv("MMBOOK_DEVICE", raising=False)
    assert runtime.pick_device("cpu") == torch.device("cpu")
    monkeypatch.setenv("MMBOOK_DEVICE", "cpu")
    assert runtime.pick_device() == torch.device("cpu")
    monkeypatch.delenv("MMBOOK_DEVICE")
    expected = "cuda" if torch.cuda.is_available() else None
    if expected:
        assert runtime.pick_device().type == expected


def test_describe_device_says_what_a_cpu_means():
    text = runtime.describe_device(torch.device("cpu"))
    assert text.startswith("CPU") and "no GPU" in text


def test_versions_name_python_and_the_libraries():
    found = runtime.versions()
    assert found["python"].count(".") == 2
    assert set(runtime.LIBRARIES) <= set(found)
    assert found["torch"].startswith("2.")


def test_in_colab_is_false_here_and_true_with_the_colab_module(monkeypatch):
    assert runtime.in_colab() is False
    monkeypatch.setitem(sys.modules, "google.colab", object())
    assert runtime.in_colab() is True


@pytest.fixture
def fresh_hub_check():
    runtime.hub_reachable.cache_clear()
    yield
    runtime.hub_reachable.cache_clear()


def test_hub_check_answers_at_once_when_told_offline(monkeypatch, fresh_hub_check):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    def never(*args, **kwargs):
        raise AssertionError("no connection may be attempted offline")

    monkeypatch.setattr(socket, "create_connection", never)
    start = time.perf_counter()
    assert runtime.hub_reachable() is False
    assert time.perf_counter() - start < 0.5


def test_hub_check_reports_failure_and_success(monkeypatch, fresh_hub_check):
    for switch in ("HF_HUB_OFFLINE", "MMBOOK_OFFLINE"):
        monkeypatch.delenv(switch, raising=False)

    def refuse(*args, **kwargs):
        raise OSError("network unreachable")

    monkeypatch.setattr(socket, "create_connection", refuse)
    assert runtime.hub_reachable(timeout=0.1) is False
    runtime.hub_reachable.cache_clear()

    class Connection:
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    monkeypatch.setattr(socket, "create_connection", lambda *args, **kwargs: Connection())
    assert runtime.hub_reachable(timeout=0.1) is True


def test_setup_seeds_picks_and_prints(capsys, monkeypatch):
    monkeypatch.setenv("MMBOOK_DEVICE", "cpu")
    device = runtime.setup(chapter=3, seed=5)
    out = capsys.readouterr().out.splitlines()
    assert device == torch.device("cpu")
    assert out[0].startswith("Chapter 3 | seed 5 | CPU")
    assert out[1].startswith("Versions: python")
    assert runtime.setup(chapter=3, quiet=True) == device
    assert capsys.readouterr().out == ""


def test_hub_check_never_hangs_on_a_slow_lookup(monkeypatch, fresh_hub_check):
    for switch in ("HF_HUB_OFFLINE", "MMBOOK_OFFLINE"):
        monkeypatch.delenv(switch, raising=False)
    def slow_lookup(*args, **kwargs):
        time.sleep(3)
        raise OSError("name resolution timed out")

    monkeypatch.setattr(socket, "create_connection", slow_lookup)
    start = time.perf_counter()
    assert runtime.hub_reachable(timeout=0.2) is False
    assert time.perf_counter() - start < 2


def test_isolated_seed_repeats_inside_and_restores_outside():
    runtime.seed_everything(1)
    with runtime.isolated_seed(4):
        inside = draw()
    after = draw()
    runtime.seed_everything(1)
    with runtime.isolated_seed(4):
        assert draw() == inside
    assert draw() == after, "the caller's random stream must continue as if nothing happened"


def test_a_missing_optional_package_is_one_clear_line():
    with pytest.raises(runtime.MissingPackage) as missing:
        runtime.need("skimage_that_does_not_exist", "The bundled photos")
    assert "The bundled photos needs the skimage_that_does_not_exist package" in str(missing.value)
    assert missing.value._render_traceback_() == [f"MissingPackage: {missing.value}"]  # no traceback in Jupyter
    assert isinstance(missing.value, ModuleNotFoundError)
    assert runtime.need("math", "Arithmetic").sqrt(4) == 2


def test_a_broken_optional_package_names_its_error(monkeypatch):
    import importlib

    def broken(name):
        raise OSError("libtorchaudio.so: undefined symbol")

    monkeypatch.setattr(importlib, "import_module", broken)
    with pytest.raises(runtime.MissingPackage) as missing:
        runtime.need("torchaudio", "The log-mel comparison")
    assert "could not be imported" in str(missing.value) and "undefined symbol" in str(missing.value)


def test_missing_torchaudio_advice_never_upgrades_torch(monkeypatch):
    monkeypatch.setitem(sys.modules, "torchaudio", None)  # None in sys.modules: the import fails
    with pytest.raises(runtime.MissingPackage) as missing:
        runtime.need("torchaudio", "The log-mel comparison")
    assert "matching your torch" in str(missing.value) and "never upgrade torch" in str(missing.value)


def test_deterministic_kernels_on_the_cpu_only():
    runtime.seed_everything(0, device=torch.device("cpu"))
    assert torch.are_deterministic_algorithms_enabled()
    assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
    runtime.seed_everything(0, device=torch.device("cuda"))  # only decides; needs no GPU
    assert not torch.are_deterministic_algorithms_enabled()
    runtime.seed_everything(0, device=torch.device("cpu"))
