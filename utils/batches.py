"""Labelled batches: the one container shape of every data set the book generates.

A batch is a dataclass whose fields are the items and their labels: tensors whose first axis runs
over the items, lists with one entry per item, and anything else (a sample rate, say) shared by all.
`LabelledBatch` gives every such dataclass its length, `to(device)` and `subset(index)`, so that
`ShapesBatch` (images), `SoundBatch` (sounds) and `MotionBatch` (clips) behave alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from typing import Any

import numpy as np
import torch

Index = int | slice | Sequence[int] | torch.Tensor


def normalise_index(index: Index, length: int) -> torch.Tensor:
    """Any of int, slice, list or tensor (long or bool) -> a long tensor of positions in [0, length)."""
    if isinstance(index, (int, np.integer)):
        position = int(index) + (length if index < 0 else 0)
        if not 0 <= position < length:
            raise ValueError(f"index {index} is out of range for a batch of {length}")
        return torch.tensor([position])
    if isinstance(index, slice):
        return torch.arange(length)[index]
    positions = torch.as_tensor(index)
    if positions.dtype == torch.bool:
        if positions.shape != (length,):
            raise ValueError(f"a boolean mask must have length {length}, got shape {tuple(positions.shape)}")
        return positions.nonzero().flatten()
    return positions.long().flatten().cpu()


@dataclass
class LabelledBatch:
    """Base of the book's batch dataclasses; the first field holds the items (its length is the batch's)."""

    def __len__(self) -> int:
        return len(getattr(self, fields(self)[0].name))

    def to(self, device: torch.device | str) -> Any:
        """A copy with every tensor on `device`."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        return replace(self, **{k: v.to(device) for k, v in values.items() if isinstance(v, torch.Tensor)})

    def subset(self, index: Index) -> Any:
        """The items at `index` (int, slice, list, long or bool tensor) with their labels."""
        count = len(self)
        positions = normalise_index(index, count)
        values: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, torch.Tensor) and value.dim() and value.shape[0] == count:
                values[f.name] = value[positions.to(value.device)]
            elif isinstance(value, list) and len(value) == count:
                values[f.name] = [value[i] for i in positions.tolist()]
            else:  # shared by every item (or an empty optional label): kept as it is
                values[f.name] = value
        return replace(self, **values)
