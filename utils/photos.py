"""Real photos with no download: the images that scikit-image and scikit-learn ship inside their packages.

Only images whose files are inside the installed packages are listed here (some of skimage.data's
images are fetched from the internet on first use; those are left out so that this module works
offline). Photos come back as float tensors [3, H, W] in [0, 1], RGB; grey images are repeated over
the three channels. With `size`, the photo is centre-cropped to a square and resized with torch.

    >>> from utils import photos
    >>> names, images = photos.load_all(size=224)   # images: float [20, 3, 224, 224]
    >>> photos.PHOTOS["astronaut"]
    'Astronaut Eileen Collins in a portrait photo, with the US flag behind her'
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from utils import runtime

PHOTOS: dict[str, str] = {
    "astronaut": "Astronaut Eileen Collins in a portrait photo, with the US flag behind her",
    "cat": "Chelsea the cat, a tabby, looking at the camera",
    "coffee": "A cup of coffee on a saucer on a wooden table",
    "rocket": "A SpaceX Falcon 9 rocket on its launch pad at night",
    "horse": "The black silhouette of a horse on a white background",
    "camera": "A photographer with a camera on a tripod, in black and white",
    "text": "Handwritten letters and numbers on a sheet of paper, photographed at an angle",
    "page": "A scanned page of printed text with uneven lighting",
    "coins": "Greek coins from Pompeii on a grey background",
    "moon": "The cratered surface of the moon, in grey",
    "clock": "A wall clock blurred by camera motion",
    "china": "A Chinese temple on a hill above a lake, among green trees",
    "flower": "An orange dahlia flower in close-up against a dark green background",
    "hubble": "The Hubble Extreme Deep Field: thousands of distant galaxies on black",
    "retina": "A photo of a human retina with its blood vessels",
    "motorcycle": "A motorcycle in a workshop, seen from the front",
    "tissue": "Stained colon tissue under a microscope (immunohistochemistry)",
    "colorwheel": "A colour wheel: every hue around a circle",
    "brick": "A section of a brick wall, in grey",
    "grass": "A close-up of grass, in grey",
}

# Where each photo comes from: (library, loader name).
_SOURCES: dict[str, tuple[str, str]] = {
    "astronaut": ("skimage", "astronaut"),
    "cat": ("skimage", "chelsea"),
    "coffee": ("skimage", "coffee"),
    "rocket": ("skimage", "rocket"),
    "horse": ("skimage", "horse"),
    "camera": ("skimage", "camera"),
    "text": ("skimage", "text"),
    "page": ("skimage", "page"),
    "coins": ("skimage", "coins"),
    "moon": ("skimage", "moon"),
    "clock": ("skimage", "clock"),
    "china": ("sklearn", "china.jpg"),
    "flower": ("sklearn", "flower.jpg"),
    "hubble": ("skimage", "hubble_deep_field"),
    "retina": ("skimage", "retina"),
    "motorcycle": ("skimage", "stereo_motorcycle"),
    "tissue": ("skimage", "immunohistochemistry"),
    "colorwheel": ("skimage", "colorwheel"),
    "brick": ("skimage", "brick"),
    "grass": ("skimage", "grass"),
}
MIN_SIZE = 8
MAX_SIZE = 1024


def _check_name(name: str) -> str:
    if name not in PHOTOS:
        raise ValueError(f"unknown photo {name!r}; the bundled photos are: {', '.join(PHOTOS)}")
    return name


def _check_size(size: int | None) -> int | None:
    if size is None:
        return None
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or not MIN_SIZE <= size <= MAX_SIZE:
        raise ValueError(
            f"size must be None (native size) or an integer from {MIN_SIZE} to {MAX_SIZE}, got {size!r}"
        )
    return int(size)


@functools.cache
def _raw(name: str) -> np.ndarray:
    """The photo as its library ships it (uint8, bool or float; grey, RGB or RGBA), cached."""
    library, loader = _SOURCES[name]
    if library == "sklearn":
        datasets = runtime.need("sklearn.datasets", f"The bundled photo {name!r}")
        return datasets.load_sample_image(loader)
    skimage_data = runtime.need("skimage.data", f"The bundled photo {name!r}")
    image = getattr(skimage_data, loader)()
    return image[0] if isinstance(image, tuple) else image  # stereo_motorcycle: (left, right, disparity)


def _to_float_rgb(array: np.ndarray) -> torch.Tensor:
    """Any grey/RGB/RGBA array (uint8, bool or float) -> float [3, H, W] in [0, 1]."""
    if array.dtype == np.uint8:
        values = array.astype(np.float32) / 255.0
    else:
        values = array.astype(np.float32)
        values = (values - values.min()) / max(float(values.max() - values.min()), 1e-8)
    if values.ndim == 2:
        values = np.repeat(values[:, :, None], 3, axis=2)  # [H, W] -> [H, W, 3]
    return torch.from_numpy(np.ascontiguousarray(values[:, :, :3])).permute(2, 0, 1)  # [3, H, W]


def _square(image: torch.Tensor, size: int) -> torch.Tensor:
    """Centre-crop [3, H, W] to a square and resize it to [3, size, size] (antialiased bilinear)."""
    _, height, width = image.shape
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    crop = image[:, top : top + side, left : left + side]  # [3, side, side]
    resized = F.interpolate(crop[None], size=(size, size), mode="bilinear", antialias=True)
    return resized[0].clamp(0.0, 1.0)  # [3, size, size]


def load(name: str, size: int | None = 224) -> torch.Tensor:
    """One bundled photo as float [3, H, W] in [0, 1], RGB; with `size`, centre-cropped to [3, size, size]."""
    image = _to_float_rgb(_raw(_check_name(name)))
    size = _check_size(size)
    return image if size is None else _square(image, size)


def load_all(size: int = 224) -> tuple[list[str], torch.Tensor]:
    """Every bundled photo, square: (names, float [N, 3, size, size])."""
    size = _check_size(size)
    if size is None:
        raise ValueError("load_all stacks the photos into one tensor, so it needs a size (e.g. 224)")
    names = list(PHOTOS)
    return names, torch.stack([load(name, size) for name in names])


def as_pil(name: str, size: int | None = 224) -> Any:
    """One bundled photo as an RGB PIL image (what Hugging Face processors expect)."""
    from utils.convert import to_pil

    return to_pil(load(name, size))
