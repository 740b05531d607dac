"""utils.zoo: train when missing, load when intact, retrain when corrupt, never crash on a bad disk."""

from __future__ import annotations

import errno
import json
import os

import numpy as np
import pytest
import torch
from torch import nn

from utils import zoo

pytestmark = pytest.mark.filterwarnings("error")


class Counter:
    """A training function that records how often it ran: a few seeded SGD steps on fixed data."""

    def __init__(self):
        self.calls = 0

    def __call__(self, model: nn.Module) -> dict:
        self.calls += 1
        inputs = torch.randn(32, 4)  # drawn from the zoo's seed, so the same every time
        targets = inputs[:, :2].sum(dim=1, keepdim=True).repeat(1, 2)
        optimiser = torch.optim.SGD(model.parameters(), lr=0.1)
        for _ in range(20):
            loss = nn.functional.mse_loss(model(inputs), targets)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
        return {"loss": loss.detach(), "steps": np.int64(20), "curve": (1.0, 0.5)}


def small_net() -> nn.Module:
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))


def wider_net() -> nn.Module:
    return nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 2))


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    """Each test gets an empty zoo of its own and an empty registry."""
    folder = tmp_path / "zoo"
    monkeypatch.setenv(zoo.CACHE_ENV, str(folder))
    monkeypatch.setattr(zoo, "REGISTRY", {})
    return folder


def fetch(train, build=small_net, **kwargs):
    return zoo.get("toy", version="v1", build=build, train=train, device="cpu", **kwargs)


def same_weights(a: nn.Module, b: nn.Module) -> bool:
    pairs = zip(a.state_dict().values(), b.state_dict().values(), strict=True)
    return all(torch.equal(x, y) for x, y in pairs)


def test_cache_dir_follows_the_environment(cache, monkeypatch):
    assert zoo.cache_dir() == cache
    monkeypatch.delenv(zoo.CACHE_ENV)
    assert zoo.cache_dir() == zoo.DEFAULT_CACHE.expanduser()
    assert zoo.paths("tiny_clip", "v1.2")[0].name == "tiny_clip-v1.2.pt"


def test_trains_when_missing_then_loads_from_cache(cache, capsys):
    train = Counter()
    trained, meta = fetch(train, expected="a second")
    assert capsys.readouterr().out == "zoo: toy v1 not cached - training it now (a second)\n"
    assert train.calls == 1 and meta["source"] == "trained" and not trained.training
    weights, sidecar = zoo.paths("toy", "v1")
    stored = json.loads(sidecar.read_text())
    assert stored["sha256"] == zoo.sha256_of(weights)
    assert stored["torch"] == torch.__version__ and stored["date"][:2] == "20"
    assert stored["train_seconds"] >= 0 and stored["parameters"] == 58
    assert isinstance(stored["metrics"]["loss"], float) and stored["metrics"]["steps"] == 20
    assert stored["metrics"]["curve"] == [1.0, 0.5]

    loaded, meta = fetch(train)
    out = capsys.readouterr().out
    assert train.calls == 1, "the cached model was trained again"
    assert out.startswith("zoo: toy v1 loaded from cache (trained 20") and out.endswith(" s)\n")
    assert out.count("\n") == 1
    assert meta["source"] == "cache" and meta["sha256"] == stored["sha256"]
    assert same_weights(trained, loaded) and not loaded.training
    assert next(loaded.parameters()).device == torch.device("cpu")


def test_training_is_reproducible_and_leaves_the_callers_random_state_alone(capsys):
    torch.manual_seed(7)
    np.random.seed(7)
    first, _ = fetch(Counter())  # trains
    after_training = (torch.rand(2), np.random.rand(2))
    torch.manual_seed(7)
    np.random.seed(7)
    cached, _ = fetch(Counter())  # loads
    after_loading = (torch.rand(2), np.random.rand(2))
    retrained, _ = fetch(Counter(), retrain=True)
    capsys.readouterr()
    assert torch.equal(after_training[0], after_loading[0])
    assert np.array_equal(after_training[1], after_loading[1])
    assert same_weights(first, cached) and same_weights(first, retrained), "training is not reproducible"


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("junk", "cache was corrupt (checksum mismatch) - retraining"),
        ("checksum", "cache was corrupt (checksum mismatch) - retraining"),
        ("junk_with_its_checksum", "cache was corrupt (unreadable weights"),
        ("pickle_with_a_class", "cache was corrupt (unreadable weights"),
        ("no_sidecar", "cache was incomplete (no metadata file) - retraining"),
        ("bad_sidecar", "cache was corrupt (unreadable metadata) - retraining"),
    ],
)
def test_retrains_when_the_cache_is_damaged(damage, message, capsys):
    first, _ = fetch(Counter())
    weights, sidecar = zoo.paths("toy", "v1")
    meta = json.loads(sidecar.read_text())
    if damage in ("junk", "junk_with_its_checksum"):
        weights.write_bytes(b"\x00 these are not the weights you are looking for")
    if damage == "checksum":
        meta["sha256"] = "0" * 64
    if damage == "pickle_with_a_class":
        # A pickle that needs code to load: weights_only=True must refuse it.
        torch.save({"weight": torch.zeros(2), "gift": zoo.Entry("x", "v1", small_net, Counter())}, weights)
    if damage in ("junk_with_its_checksum", "pickle_with_a_class"):
        meta["sha256"] = zoo.sha256_of(weights)
    sidecar.write_text(json.dumps(meta))
    if damage == "no_sidecar":
        sidecar.unlink()
    if damage == "bad_sidecar":
        sidecar.write_text("{ not json")
    capsys.readouterr()

    train = Counter()
    model, meta = fetch(train)
    out = capsys.readouterr().out
    assert message in out and out.count("\n") == 1, out
    assert train.calls == 1 and meta["source"] == "trained" and same_weights(first, model)
    repaired = json.loads(sidecar.read_text())
    assert repaired["sha256"] == zoo.sha256_of(weights), "the repaired cache is not intact"
    fetch(train)
    assert train.calls == 1, "the repaired cache was not used"


def test_retrains_when_the_cache_does_not_fit_the_model(capsys):
    fetch(Counter())
    train = Counter()
    model, _ = fetch(train, build=wider_net)
    assert "cache did not fit the model" in capsys.readouterr().out
    assert train.calls == 1 and model[0].out_features == 16


def test_loads_with_weights_only(monkeypatch, capsys):
    fetch(Counter())
    seen = {}
    real_load = torch.load

    def spy(*args, **kwargs):
        seen.update(kwargs)
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    fetch(Counter())
    assert seen.get("weights_only") is True
    assert "loaded from cache" in capsys.readouterr().out


def test_an_unwritable_cache_trains_in_memory_with_one_warning(tmp_path, monkeypatch, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    monkeypatch.setenv(zoo.CACHE_ENV, str(blocker / "zoo"))  # mkdir fails here even for root
    model, meta = fetch(Counter())
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("zoo: toy v1 not cached - training it now")
    assert len(lines) == 2 and lines[1].startswith("zoo: could not cache toy v1")
    assert "in memory only" in lines[1]
    assert meta["path"] is None and meta["source"] == "trained" and not model.training


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_cache_folder_trains_in_memory(cache, capsys):
    cache.mkdir()
    cache.chmod(0o500)
    try:
        _, meta = fetch(Counter())
    finally:
        cache.chmod(0o700)
    assert meta["path"] is None and "in memory only" in capsys.readouterr().out
    assert list(cache.iterdir()) == []


def test_a_full_disk_leaves_no_partial_files(cache, monkeypatch, capsys):
    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", disk_full)
    _, meta = fetch(Counter())
    assert "No space left on device" in capsys.readouterr().out and meta["path"] is None
    assert list(cache.iterdir()) == [], "a half-written file was left in the cache"


def test_register_load_and_clear(cache, capsys):
    train = Counter()
    zoo.register("toy", "v1", small_net, train, expected="a second")
    zoo.register("other", "v3", wider_net, Counter())
    assert set(zoo.REGISTRY) == {"toy", "other"} and zoo.REGISTRY["toy"].version == "v1"
    zoo.load("toy")
    zoo.load("toy")
    zoo.load("other")
    assert train.calls == 1
    assert "(a second)" in capsys.readouterr().out
    with pytest.raises(KeyError, match="other, tiny_asr, tiny_clip, tiny_gen, tiny_vlm, tiny_vlm_dpo, toy"):
        zoo.load("missing")
    removed = zoo.clear("toy")
    assert sorted(p.name for p in removed) == ["toy-v1.json", "toy-v1.pt"]
    assert sorted(p.name for p in cache.iterdir()) == ["other-v3.json", "other-v3.pt"]
    assert len(zoo.clear()) == 2 and list(cache.iterdir()) == []
    zoo.load("toy")
    assert train.calls == 2


def test_save_caches_a_model_a_lesson_trained_and_load_returns_it(cache, capsys):
    train = Counter()
    zoo.register("toy", "v1", small_net, train)
    torch.manual_seed(5)
    trained_here = small_net()
    path = zoo.save("toy", trained_here, train_seconds=1.5, metrics={"accuracy": np.float32(0.5)})
    assert path == cache / "toy-v1.pt" and "saved to the cache" in capsys.readouterr().out
    loaded, meta = zoo.load("toy")
    assert train.calls == 0 and meta["source"] == "cache" and same_weights(loaded, trained_here)
    assert meta["train_seconds"] == 1.5 and meta["metrics"] == {"accuracy": 0.5}
    with pytest.raises(ValueError, match="architecture registered as 'toy'"):
        zoo.save("toy", wider_net())
    with pytest.raises(KeyError, match="no model registered as 'missing'.*tiny_clip"):
        zoo.save("missing", small_net())


def test_every_book_model_resolves_to_a_class_and_a_recipe():
    for name, entry in zoo.BOOK_MODELS.items():
        assert entry.name == name
        resolved = entry.resolved()
        assert isinstance(resolved.build(), torch.nn.Module) and callable(resolved.train)
