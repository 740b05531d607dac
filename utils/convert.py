"""Conversions to the formats other libraries take: PIL images and Hugging Face datasets.

    >>> from utils import convert, shapes
    >>> convert.to_pil(shapes.generate(1).images[0]).size
    (32, 32)
"""

from __future__ import annotations

from typing import Any

import torch

from utils import runtime
from utils.shapes import ShapesBatch


def to_pil(image: torch.Tensor) -> Any:
    """One image [3, H, W] in [0, 1] as a PIL image."""
    from PIL import Image

    array = (image.detach().cpu().clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()  # [H, W, 3]
    return Image.fromarray(array)


def to_hf_dataset(batch: ShapesBatch) -> Any:
    """The batch as a `datasets.Dataset` with columns image (PIL), caption, colour, shape, size, count.

    colour, shape and size are lists of names, one per object in the image (length `count`).
    """
    datasets = runtime.need("datasets", "to_hf_dataset")  # lazy: only this function needs it

    names = ("image", "caption", "colour", "shape", "size", "count")
    columns: dict[str, list[Any]] = {name: [] for name in names}
    for i in range(len(batch)):
        objects = batch.objects(i)
        columns["image"].append(to_pil(batch.images[i]))
        columns["caption"].append(batch.captions[i])
        for key in ("colour", "shape", "size"):
            columns[key].append([o[key] for o in objects])
        columns["count"].append(int(batch.count[i]))
    features = datasets.Features(
        {
            "image": datasets.Image(),
            "caption": datasets.Value("string"),
            "colour": datasets.Sequence(datasets.Value("string")),
            "shape": datasets.Sequence(datasets.Value("string")),
            "size": datasets.Sequence(datasets.Value("string")),
            "count": datasets.Value("int64"),
        }
    )
    return datasets.Dataset.from_dict(columns, features=features)


