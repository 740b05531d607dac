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
