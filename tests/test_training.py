"""The lessons' training loop: it learns, it is reproducible, and it reports in exactly one line."""

from __future__ import annotations

import re

import pytest
import torch
from torch import nn

from utils import training
from utils.training import History, accuracy, evaluate, fit

SUMMARY = re.compile(r"^toy: \d+ steps, \d+\.\d s, [\d,]+ samples/s, final loss \d+\.\d{4}$")


def toy_problem(n: int = 512) -> tuple[torch.Tensor, torch.Tensor]:
    """Two well separated Gaussian blobs in 2-D."""
    generator = torch.Generator().manual_seed(0)
    labels = torch.arange(n) % 2
    points = torch.randn(n, 2, generator=generator) + 3.0 * (2 * labels[:, None] - 1)
    return points, labels


def classification_loss(model, batch):
    points, labels = batch
    return nn.functional.cross_entropy(model(points), labels)


def make_model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Dropout(0.1), nn.Linear(16, 2))


def test_loss_decreases_and_the_model_learns(capsys):
    model = make_model()
    data = toy_problem()
    history = fit(model, classification_loss, data, steps=60, batch_size=64, lr=1e-2, log_every=10)
    assert isinstance(history, History)
    assert history.steps == 60 and len(history.losses) == 6 and history.logged_steps[-1] == 60
    assert history.losses[-1] < 0.5 * history.losses[0]
    assert accuracy(evaluate(model, None, data[:1]), data[1]) > 0.95
    assert model.training  # the mode it had before fit


def test_same_seed_same_losses(capsys):
    data = toy_problem()
    first = fit(make_model(), classification_loss, data, steps=25, batch_size=32, seed=3, log_every=5)
    second = fit(make_model(), classification_loss, data, steps=25, batch_size=32, seed=3, log_every=5)
    other = fit(make_model(), classification_loss, data, steps=25, batch_size=32, seed=4, log_every=5)
    assert first.losses == second.losses
    assert first.losses != other.losses


def test_exactly_one_summary_line_and_no_bar_when_executing(capsys, monkeypatch):
    monkeypatch.setenv("MMBOOK_EXECUTE", "1")
    monkeypatch.setattr(training.sys.stderr, "isatty", lambda: True, raising=False)
    assert not training.show_progress_bar()
    history = fit(make_model(), classification_loss, toy_problem(), epochs=2, batch_size=128, desc="toy")
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert len(lines) == 1, lines
    assert lines[0] == history.summary(timing=False) == f"toy: 8 steps, final loss {history.final_loss:.4f}"
    assert " s," not in lines[0], "stored outputs carry no timings"
    assert SUMMARY.match(history.summary()), "interactive use still reports time and throughput"
    assert captured.err == ""  # no progress bar
    assert history.steps == 2 * (512 // 128)


def test_bar_shows_in_interactive_use(capsys, monkeypatch):
    monkeypatch.delenv("MMBOOK_EXECUTE", raising=False)
    monkeypatch.setattr(training, "show_progress_bar", lambda: True)
    fit(make_model(), classification_loss, toy_problem(), steps=5, batch_size=64, desc="toy", verbose=False)
    captured = capsys.readouterr()
    assert "toy" in captured.err and captured.out == ""


def test_steps_epochs_and_bad_data():
    data = toy_problem(100)
    history = fit(make_model(), classification_loss, data, batch_size=256, verbose=False)  # one epoch
    assert history.steps == 1  # the batch is capped at the data size
    with pytest.raises(ValueError):
        fit(make_model(), classification_loss, data, steps=3, epochs=1, verbose=False)
    with pytest.raises(ValueError):
        fit(make_model(), classification_loss, (data[0], data[1][:50]), steps=3, verbose=False)


def test_custom_optimizer_and_grad_clip():
    model = make_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    history = fit(model, classification_loss, toy_problem(), steps=20, batch_size=64, optimizer=optimizer,
                  grad_clip=1.0, verbose=False)
    assert history.losses[-1] < history.losses[0]


def test_divergence_is_reported():
    def exploding(model, batch):
        return model(batch[0]).sum() * float("inf")

    with pytest.raises(FloatingPointError, match="diverged"):
        fit(make_model(), exploding, toy_problem(), steps=3, verbose=False)


def test_evaluate_keeps_order_mode_and_no_grad():
    model = nn.Linear(3, 1)
    model.train()
    inputs = torch.randn(10, 3)
    outputs = evaluate(model, lambda m, batch: m(batch[0]), (inputs,), batch_size=4)
    assert torch.allclose(outputs, model(inputs).detach())
    assert not outputs.requires_grad and model.training
    losses = evaluate(model, lambda m, batch: m(batch[0]).mean(), inputs, batch_size=5)
    assert losses.shape == (2,)


def test_accuracy_with_indices_and_one_hot():
    logits = torch.tensor([[2.0, 1.0], [0.0, 3.0], [1.0, 0.0], [0.0, 1.0]])
    assert accuracy(logits, torch.tensor([0, 1, 1, 1])) == 0.75
    assert accuracy(logits, nn.functional.one_hot(torch.tensor([0, 1, 0, 1]), 2)) == 1.0


def test_progress_hides_its_bar_when_the_book_executes(monkeypatch, capsys):
    monkeypatch.setenv("MMBOOK_EXECUTE", "1")
    assert list(training.progress(range(3), desc="steps")) == [0, 1, 2]
    training.print_timing("took 1.2 s")
    out, err = capsys.readouterr()
    assert out == "" and err == "", "no bar and no timing in the book's stored outputs"
    monkeypatch.setenv("MMBOOK_EXECUTE", "0")
    training.print_timing("took 1.2 s")
    assert capsys.readouterr().out == "took 1.2 s\n"


def test_spread_gives_mean_and_range_over_seeds():
    assert training.spread([58.2, 72.3, 85.8]) == " 72.1 (58.2 to 85.8)"
    assert training.spread([99.9]) == " 99.9 (1 seed)"
    with pytest.raises(ValueError):
        training.spread([])
