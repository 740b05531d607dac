"""How much faster is `utils.training.fit` (tensors on the device, permutation indexing) than the
textbook loop over a DataLoader of a per-sample Dataset? Same model, batch size, steps, optimizer.

    .venv/bin/python scripts/bench_training.py            # three small models on the CPU
    .venv/bin/python scripts/bench_training.py --device cuda --steps 200

Prints samples/s of both loops and their ratio for each model.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("MMBOOK_EXECUTE", "1")  # no progress bar while timing

from utils.training import fit  # noqa: E402 - after the path set-up above

SAMPLES, CLASSES = 20_000, 10


def make_tiny_mlp() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 32), nn.ReLU(), nn.Linear(32, CLASSES))


def make_mlp() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 256), nn.ReLU(), nn.Linear(256, CLASSES))


def make_cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # [B, 16, 16, 16]
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # [B, 32, 8, 8]
        nn.Flatten(), nn.Linear(32 * 8 * 8, CLASSES),
    )


def classification_loss(model: nn.Module, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
    images, labels = batch
    return nn.functional.cross_entropy(model(images), labels)


def dataloader_loop(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, steps: int,
                    batch_size: int, device: torch.device) -> float:
    """The usual loop: DataLoader(TensorDataset) with shuffling; returns samples per second."""
    model.to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    loader = DataLoader(TensorDataset(images, labels), batch_size=batch_size, shuffle=True, drop_last=True,
                        num_workers=0, generator=torch.Generator().manual_seed(0))
    start, done = time.perf_counter(), 0
    while done < steps:
        for batch_images, batch_labels in loader:
            batch = (batch_images.to(device), batch_labels.to(device))
            loss = classification_loss(model, batch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            done += 1
            if done == steps:
                break
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return steps * batch_size / (time.perf_counter() - start)


def fit_loop(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, steps: int, batch_size: int,
             device: torch.device) -> float:
    """The book's loop; timed from the outside, data transfer to the device included."""
    start = time.perf_counter()
    fit(model, classification_loss, (images, labels), steps=steps, batch_size=batch_size, lr=1e-3,
        device=device, log_every=50, verbose=False)
    return steps * batch_size / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    images = torch.rand(SAMPLES, 3, 32, 32)  # [20000, 3, 32, 32]
    labels = torch.randint(0, CLASSES, (SAMPLES,))
    print(f"{SAMPLES:,} inputs 3x32x32, batch {args.batch_size}, {args.steps} steps, device {device}, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    models = (("tiny MLP 3072-32-10", make_tiny_mlp), ("MLP 3072-256-10", make_mlp), ("small CNN", make_cnn))
    for name, make in models:
        fit_loop(make(), images, labels, 5, args.batch_size, device)  # warm-up both paths once
        dataloader_loop(make(), images, labels, 5, args.batch_size, device)
        fast, slow = [], []
        for _ in range(args.repeats):  # alternate, keep the median: the machine may be shared
            torch.manual_seed(0)
            fast.append(fit_loop(make(), images, labels, args.steps, args.batch_size, device))
            torch.manual_seed(0)
            slow.append(dataloader_loop(make(), images, labels, args.steps, args.batch_size, device))
        fast_median, slow_median = statistics.median(fast), statistics.median(slow)
        print(f"{name}: fit {fast_median:,.0f} samples/s | DataLoader(TensorDataset) {slow_median:,.0f} "
              f"samples/s | ratio {fast_median / slow_median:.1f}x (median of {args.repeats})")


if __name__ == "__main__":
    main()
