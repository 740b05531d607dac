"""A noisy web-like image-text corpus from the Shapes world (the data chapter).

Real web corpora (LAION, DataComp) mix good pairs with generic or wrong alt text, exact and near
duplicates, unsafe images and odd sizes. This corpus has each of those faults in known proportions,
and labels every item with its fault, so that a filtering pipeline's precision and recall can be
measured exactly (Schuhmann et al., 2022, "LAION-5B"; Gadre et al., 2023, "DataComp").

    >>> from utils import web_corpus
    >>> corpus = web_corpus.web_corpus(200, seed=0)
    >>> corpus.counts()["duplicate"]
    20
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from utils import shapes

GENERIC_ALT_TEXTS: tuple[str, ...] = (
    "image", "photo.jpg", "click here", "IMG_2041.JPG", "untitled", "picture", "download", "thumbnail",
)
WEB_KINDS: tuple[str, ...] = ("clean", "generic", "wrong", "duplicate", "flagged", "odd_aspect")
WEB_PROPORTIONS: dict[str, float] = {
    "clean": 0.50, "generic": 0.15, "wrong": 0.15, "duplicate": 0.10, "flagged": 0.05, "odd_aspect": 0.05,
}
# Odd web shapes as (height, width) for a 32-pixel world; scaled with image_size.
_ODD_ASPECTS: tuple[tuple[int, int], ...] = ((32, 96), (96, 32), (20, 96), (96, 20))


@dataclass
class WebCorpus:
    """A web-like image-text corpus with the faults real ones have, each item labelled with its fault.

    kind is one of WEB_KINDS: "clean" (alt text = true caption), "generic" ("click here"), "wrong"
    (another item's caption), "duplicate" (an exact or near copy of item duplicate_of), "flagged" (an
    unsafe-marked image: a black-and-white checker flag is drawn in a corner) and "odd_aspect" (a banner
    or a tower, stretched from the scene). Images are a list because their shapes differ.
    """

    images: list[torch.Tensor]  # each float [3, H, W] in [0, 1]
    alt_text: list[str]
    true_caption: list[str]
    kind: list[str]
    duplicate_of: list[int]  # index of the original for duplicates, -1 otherwise
    flagged: list[bool]
    aspect: list[float]  # width / height
    colour: torch.Tensor  # long [N, K] scene labels, as in shapes.ShapesBatch
    shape: torch.Tensor  # long [N, K]

    def __len__(self) -> int:
        return len(self.images)

    def counts(self) -> dict[str, int]:
        """How many items of each kind."""
        return {kind: self.kind.count(kind) for kind in WEB_KINDS}


def _draw_flag(image: torch.Tensor, corner: int) -> torch.Tensor:
    """A black-and-white checker patch (the 'unsafe' mark) in one corner of a [3, H, W] image."""
    side = image.shape[-1]
    patch = max(6, side // 4)
    cell = max(1, patch // 4)
    rows = torch.arange(patch)[:, None] // cell
    cols = torch.arange(patch)[None, :] // cell
    checker = ((rows + cols) % 2).float()  # [patch, patch]
    top = 1 if corner in (0, 1) else side - patch - 1
    left = 1 if corner in (0, 2) else side - patch - 1
    flagged = image.clone()
    flagged[:, top : top + patch, left : left + patch] = checker
    return flagged


def web_corpus(n: int, *, seed: int = 0, image_size: int = 32) -> WebCorpus:
    """A noisy web-like corpus of n Shapes scenes: 50% clean, 15% generic, 15% wrong, 10% duplicate,
    5% flagged and 5% odd aspect ratio (counts rounded down, the rest clean), shuffled."""
    n = shapes.check_count("n", n)
    image_size = shapes.check_image_size(image_size)
    scenes = shapes.generate(n, seed=seed, image_size=image_size, min_objects=1, max_objects=2)
    rng = np.random.default_rng([seed, 303])
    generator = torch.Generator().manual_seed(seed + 303)
    kinds = _web_kinds(n, rng)
    images = list(scenes.images)
    alt_text = list(scenes.captions)
    true_caption = list(scenes.captions)
    duplicate_of = [-1] * n
    aspect = [1.0] * n
    clean = [i for i in range(n) if kinds[i] == "clean"]
    originals = rng.permutation(clean)
    duplicates = [i for i in range(n) if kinds[i] == "duplicate"]
    for i, original in zip(duplicates, originals, strict=False):
        original = int(original)
        duplicate_of[i] = original
        copy = scenes.images[original]
        if rng.random() < 0.5:  # a near duplicate: re-encoded, slightly brighter or darker
            shift = float(rng.uniform(-0.03, 0.03))
            copy = (copy + shift + 0.02 * torch.randn(copy.shape, generator=generator)).clamp(0, 1)
        images[i] = copy.clone()
        alt_text[i] = true_caption[i] = scenes.captions[original]
    for i in range(n):
        if kinds[i] == "generic":
            alt_text[i] = GENERIC_ALT_TEXTS[int(rng.integers(len(GENERIC_ALT_TEXTS)))]
        elif kinds[i] == "wrong":
            alt_text[i] = _another_caption(i, scenes.captions, rng)
        elif kinds[i] == "flagged":
            images[i] = _draw_flag(images[i], int(rng.integers(4)))
        elif kinds[i] == "odd_aspect":
            height, width = (max(8, round(d * image_size / 32)) for d in _ODD_ASPECTS[int(rng.integers(4))])
            images[i] = F.interpolate(images[i][None], size=(height, width), mode="bilinear",
                                      align_corners=False)[0].clamp(0, 1)
            aspect[i] = width / height
    return WebCorpus(
        images=images, alt_text=alt_text, true_caption=true_caption, kind=kinds,
        duplicate_of=duplicate_of, flagged=[k == "flagged" for k in kinds], aspect=aspect,
        colour=scenes.colour, shape=scenes.shape,
    )


def _web_kinds(n: int, rng: np.random.Generator) -> list[str]:
    """The kind of every item: counts from WEB_PROPORTIONS (rounded down, rest clean), shuffled."""
    counts = {kind: int(WEB_PROPORTIONS[kind] * n) for kind in WEB_KINDS if kind != "clean"}
    counts["clean"] = n - sum(counts.values())
    kinds = [kind for kind in WEB_KINDS for _ in range(counts[kind])]
    return [kinds[j] for j in rng.permutation(n)]


def _another_caption(i: int, captions: list[str], rng: np.random.Generator) -> str:
    """The caption of another item, different from caption i when the corpus allows it."""
    if len(captions) == 1:
        return "a blue sky over the sea"
    for _ in range(20):
        j = int(rng.integers(len(captions)))
        if j != i and captions[j] != captions[i]:
            return captions[j]
    return "a blue sky over the sea"


