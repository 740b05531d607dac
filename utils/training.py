"""A small training loop for the lessons: the data stays as tensors on the device.

Every step draws a batch by indexing the tensors with a slice of a random permutation: no
DataLoader, no per-sample Python, so a tiny model trains at the speed of its own arithmetic.
A progress bar shows in interactive use only; every run ends with one plain summary line, e.g.
``training: 300 steps, 2.1 s, 36,571 samples/s, final loss 0.0421``. The book sets
MMBOOK_EXECUTE=1 when it executes notebooks to store their outputs: then there is no bar.
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from utils import runtime

LossFn = Callable[[nn.Module, tuple[Tensor, ...]], Tensor]


@dataclass
class History:
    """What `fit` did: the loss at each logged step (mean since the previous log), and the speed."""

    losses: list[float]
    steps: int
    seconds: float
    samples_per_second: float
    logged_steps: list[int] = field(default_factory=list)
    desc: str = "training"

    @property
    def final_loss(self) -> float:
        """The last logged loss (nan when nothing was logged)."""
        return self.losses[-1] if self.losses else float("nan")

    def summary(self, timing: bool = True) -> str:
        """One line, e.g. 'training: 300 steps, 2.1 s, 36,571 samples/s, final loss 0.0421'.

        With timing=False the line leaves out seconds and throughput, which change on every run.
        """
        speed = f"{self.seconds:.1f} s, {self.samples_per_second:,.0f} samples/s, " if timing else ""
        return f"{self.desc}: {self.steps:,} steps, {speed}final loss {self.final_loss:.4f}"


def executing_for_the_book() -> bool:
    """True when the book's tooling runs the notebook to store its outputs (MMBOOK_EXECUTE=1)."""
    return os.environ.get("MMBOOK_EXECUTE", "").strip().lower() in ("1", "true", "yes")


def progress(iterable: Any, desc: str = "", total: int | None = None) -> Any:
    """`iterable` with a progress bar in a live notebook or terminal, and without one when the book's
    tooling executes the lesson (where a bar would be noise in the stored page)."""
    return tqdm(iterable, desc=desc, total=total, disable=not show_progress_bar(), leave=False)


def print_timing(text: str) -> None:
    """Print a line that holds wall-clock times, in a live session only: times change on every run,
    so the book's stored outputs leave them out (the runtime table reports them instead)."""
    if not executing_for_the_book():
        print(text)


def show_progress_bar() -> bool:
    """Whether to draw a progress bar: in a live notebook or terminal, not when the book executes."""
    if executing_for_the_book():
        return False
    try:
        from IPython import get_ipython
    except ImportError:
        get_ipython = None  # noqa: N806 - the name IPython gives it
    shell = get_ipython() if get_ipython is not None else None
    if shell is not None and getattr(shell, "kernel", None) is not None:
        return True  # a Jupyter or Colab kernel
    return bool(getattr(sys.stderr, "isatty", lambda: False)())


def _as_tuple(data: Tensor | Sequence[Tensor]) -> tuple[Tensor, ...]:
    tensors = (data,) if isinstance(data, Tensor) else tuple(data)
    if not tensors or not all(isinstance(t, Tensor) for t in tensors):
        raise TypeError("data must be a tensor or a tuple of tensors")
    lengths = {len(t) for t in tensors}
    if len(lengths) != 1:
        raise ValueError(f"all data tensors need the same first dimension; got {[len(t) for t in tensors]}")
    if 0 in lengths:
        raise ValueError("data is empty")
    return tensors


def _total_steps(steps: int | None, epochs: int | None, steps_per_epoch: int) -> int:
    if steps is not None and epochs is not None:
        raise ValueError("give steps or epochs, not both")
    if steps is not None:
        if steps < 1:
            raise ValueError("steps must be at least 1")
        return int(steps)
    return max(1, int(epochs if epochs is not None else 1) * steps_per_epoch)


def fit(
    model: nn.Module,
    loss_fn: LossFn,
    data: Tensor | Sequence[Tensor],
    *,
    steps: int | None = None,
    epochs: int | None = None,
    batch_size: int = 256,
    lr: float = 1e-3,
    weight_decay: float = 0.0,
    optimizer: torch.optim.Optimizer | None = None,
    device: torch.device | str | None = None,
    seed: int = 0,
    desc: str = "training",
    log_every: int = 10,
    grad_clip: float | None = None,
    verbose: bool = True,
) -> History:
    """Train `model` to minimise ``loss_fn(model, batch)`` over random batches of `data`.

    `data` is a tuple of tensors sharing their first dimension (e.g. ``(images, labels)``); each
    batch is the same tuple indexed by one slice of a random permutation. An epoch is
    ``len(data) // batch_size`` full batches. Give `steps` or `epochs` (default: one epoch).
    The optimizer defaults to AdamW(`lr`, `weight_decay`). `seed` fixes the batch order and the
    global torch generator (dropout), so the same model and seed give the same losses. The data
    moves to `device` (default: where the model's parameters are). The model's train/eval mode
    is restored at the end. Prints one summary line unless `verbose` is False.
    """
    tensors = _as_tuple(data)
    device = torch.device(device) if device is not None else runtime.device_of(model)
    model.to(device)
    tensors = tuple(t.to(device) for t in tensors)
    count = len(tensors[0])
    batch = max(1, min(batch_size, count))
    steps_per_epoch = max(1, count // batch)
    total = _total_steps(steps, epochs, steps_per_epoch)
    optimizer = optimizer or torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    log_every = max(1, int(log_every))
    losses: list[float] = []
    logged: list[int] = []
    was_training = model.training
    model.train()
    bar = tqdm(total=total, desc=desc, disable=not show_progress_bar(), leave=False)
    start = time.perf_counter()
    try:
        running, since_log = torch.zeros((), device=device), 0
        order = torch.empty(0, dtype=torch.long, device=device)
        for step in range(1, total + 1):
            position = (step - 1) % steps_per_epoch
            if position == 0:
                order = torch.randperm(count, generator=generator).to(device)
            index = order[position * batch : (position + 1) * batch]
            loss = loss_fn(model, tuple(t.index_select(0, index) for t in tensors))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if grad_clip is not None:
                nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            optimizer.step()
            running, since_log = running + loss.detach().float(), since_log + 1
            if step % log_every == 0 or step == total:
                value = (running / since_log).item()
                _stop_if_diverged(value, step, lr)
                losses.append(value)
                logged.append(step)
                running, since_log = torch.zeros((), device=device), 0
                bar.set_postfix(loss=f"{value:.4f}", refresh=False)
            bar.update(1)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    finally:
        bar.close()
        model.train(was_training)
    seconds = time.perf_counter() - start
    history = History(
        losses=losses, steps=total, seconds=seconds,
        samples_per_second=total * batch / max(seconds, 1e-9), logged_steps=logged, desc=desc,
    )
    if verbose:
        # Stored outputs (the book executing) stay identical from run to run: no timings there.
        print(history.summary(timing=not executing_for_the_book()))
    return history


def _stop_if_diverged(value: float, step: int, lr: float) -> None:
    if not math.isfinite(value):
        raise FloatingPointError(
            f"the loss became {value} by step {step}: training diverged. Try a smaller learning rate "
            f"(lr={lr:g} now), gradient clipping (grad_clip=1.0), or look for a log of 0 in the loss."
        )


@torch.no_grad()
def evaluate(
    model: nn.Module,
    fn: Callable[[nn.Module, tuple[Tensor, ...]], Tensor] | None,
    data: Tensor | Sequence[Tensor],
    batch_size: int = 1024,
) -> Tensor:
    """Run ``fn(model, batch)`` (default: ``model(*batch)``) over `data` in order, in batches, in eval
    mode without gradients, and concatenate the outputs along the first dimension.

    Batches move to the model's device; the result stays there. The model's mode is restored.
    """
    tensors = _as_tuple(data)
    device = runtime.device_of(model)
    was_training = model.training
    model.eval()
    outputs = []
    try:
        for begin in range(0, len(tensors[0]), max(1, batch_size)):
            batch = tuple(t[begin : begin + batch_size].to(device) for t in tensors)
            outputs.append(fn(model, batch) if fn is not None else model(*batch))
    finally:
        model.train(was_training)
    if outputs[0].dim() == 0:
        return torch.stack(outputs)
    return torch.cat(outputs, dim=0)


def accuracy(logits: Tensor, labels: Tensor) -> float:
    """The fraction of rows whose largest logit is at the label (labels: class indices or one-hot)."""
    if labels.dim() == logits.dim() and labels.shape == logits.shape:
        labels = labels.argmax(dim=-1)
    predictions = logits.argmax(dim=-1)
    return (predictions == labels.to(predictions.device)).double().mean().item()


def spread(values: Sequence[float]) -> str:
    """'mean (lowest to highest)' of a few results, one per seed, e.g. ' 72.1 (58.2 to 85.8)';
    a single value is labelled '(1 seed)'. The book quotes seeded results this way."""
    if not values:
        raise ValueError("spread needs at least one value")
    if len(values) == 1:
        return f"{values[0]:5.1f} (1 seed)"
    return f"{sum(values) / len(values):5.1f} ({min(values):.1f} to {max(values):.1f})"
