"""A noisy web-like image-text corpus from the Shapes world (the data chapter).

Real web corpora (LAION, DataComp) mix good pairs with generic or wrong alt text, exact and near
duplicates, the same URL crawled twice, unsafe images and odd sizes. This corpus has each of those
faults in known proportions, and labels every item with its fault, so that a filtering pipeline's
precision and recall can be measured exactly (Schuhmann et al., 2022, "LAION-5B"; Gadre et al.,
2023, "DataComp"). Every item is stored as the web stores it: encoded bytes (PNG, or JPEG for
re-encoded copies) with a URL and an alt text.

    >>> from utils import web_corpus
    >>> corpus = web_corpus.web_corpus(200, seed=0)
    >>> corpus.counts()["wrong"]
    40
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from utils import convert, shapes

GENERIC_ALT_TEXTS: tuple[str, ...] = (
    "image", "photo.jpg", "click here", "IMG_2041.JPG", "untitled", "picture", "download", "thumbnail",
)
WEB_KINDS: tuple[str, ...] = (
    "clean", "generic", "wrong", "exact_duplicate", "near_duplicate", "url_duplicate", "flagged",
    "odd_size",
)
WEB_PROPORTIONS: dict[str, float] = {
    "clean": 0.40, "generic": 0.15, "wrong": 0.20, "exact_duplicate": 0.05, "near_duplicate": 0.05,
    "url_duplicate": 0.03, "flagged": 0.04, "odd_size": 0.08,
}
TEXTURE = 0.1  # the strength of every web photo's own background texture (see with_texture)
DUPLICATE_KINDS: tuple[str, ...] = ("exact_duplicate", "near_duplicate", "url_duplicate")
NEAR_DUPLICATE_EDITS: tuple[str, ...] = ("re-encoded", "resized", "shifted")
# Odd web sizes as (height, width) for a 32-pixel world, scaled with image_size: banners and
# towers (aspect ratio 3 or more) and thumbnails (too small to show anything).
_ODD_SIZES: tuple[tuple[int, int], ...] = ((32, 96), (96, 32), (20, 96), (96, 20), (10, 10), (12, 12))


@dataclass
class WebCorpus:
    """A web-like image-text corpus with the faults real ones have, each item labelled with its fault.

    kind is one of WEB_KINDS: "clean" (alt text = a true caption), "generic" ("click here"), "wrong"
    (another item's caption), "exact_duplicate" (the same bytes as item duplicate_of, another URL),
    "near_duplicate" (item duplicate_of re-encoded as JPEG, resized or shifted by a pixel or two),
    "url_duplicate" (item duplicate_of's URL crawled again: the same picture, re-encoded), "flagged"
    (an unsafe-marked image: a black-and-white checker flag is drawn in a corner; it stands for
    unsafe content) and "odd_size" (a banner, a tower or a thumbnail). A duplicate copies its
    original's alt text. Images are a list because their sizes differ.
    """

    image_bytes: list[bytes]  # PNG, or JPEG for re-encoded copies
    images: list[torch.Tensor]  # the decoded bytes, each float [3, H, W] in [0, 1]
    url: list[str]
    alt_text: list[str]
    true_caption: list[str]
    kind: list[str]
    duplicate_of: list[int]  # index of the original for duplicates, -1 otherwise
    edit: list[str]  # how a copy differs: "exact", "re-encoded", "resized", "shifted"; "" if not a copy
    colour: torch.Tensor  # long [N, K] scene labels, as in shapes.ShapesBatch (K = 2, -1 = none)
    shape: torch.Tensor  # long [N, K]

    def __len__(self) -> int:
        return len(self.images)

    def counts(self) -> dict[str, int]:
        """How many items of each kind."""
        return {kind: self.kind.count(kind) for kind in WEB_KINDS}

    @property
    def flagged(self) -> list[bool]:
        return [kind == "flagged" for kind in self.kind]

    @property
    def aspect(self) -> list[float]:
        """Width / height of every image."""
        return [image.shape[2] / image.shape[1] for image in self.images]


def encode_png(image: torch.Tensor) -> bytes:
    """A float [3, H, W] image in [0, 1] -> PNG bytes (8 bits per channel)."""
    return _encode(image, "PNG")


def encode_jpeg(image: torch.Tensor, quality: int = 75) -> bytes:
    """A float [3, H, W] image in [0, 1] -> JPEG bytes at `quality` (lossy: a re-encoded copy)."""
    return _encode(image, "JPEG", quality=quality)


def _encode(image: torch.Tensor, kind: str, **options: int) -> bytes:
    buffer = io.BytesIO()
    convert.to_pil(image).save(buffer, format=kind, **options)
    return buffer.getvalue()


def decode(data: bytes) -> torch.Tensor:
    """Encoded image bytes -> float [3, H, W] in [0, 1]. Raises ValueError on bytes that are not an image."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            pixels = np.asarray(image.convert("RGB"), dtype=np.uint8)
    except (OSError, SyntaxError) as error:  # PIL's UnidentifiedImageError is an OSError
        raise ValueError(f"these {len(data)} bytes are not an image PIL can read ({error})") from None
    return torch.from_numpy(pixels.copy()).permute(2, 0, 1).float() / 255


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


def _near_copy(image: torch.Tensor, edit: str, rng: np.random.Generator) -> bytes:
    """The bytes of a near duplicate of `image`: JPEG re-encoded, resized down and up, or shifted."""
    if edit == "re-encoded":
        return encode_jpeg(image, quality=int(rng.integers(40, 90)))
    side = image.shape[-1]
    if edit == "resized":
        small = F.interpolate(image[None], size=(3 * side // 4,) * 2, mode="bilinear", align_corners=False)
        return encode_png(F.interpolate(small, size=(side, side), mode="bilinear", align_corners=False)[0])
    dy, dx = (int(v) * int(rng.choice([-1, 1])) for v in rng.integers(1, 3, size=2))
    return encode_png(torch.roll(image, shifts=(dy, dx), dims=(1, 2)))


def _url(rng: np.random.Generator, index: int) -> str:
    site = ("shop", "blog", "cdn", "forum", "news")[int(rng.integers(5))]
    return f"https://{site}{int(rng.integers(1, 400))}.example/img/{index:06d}.png"


def web_corpus(n: int, *, seed: int = 0, image_size: int = 32, max_objects: int = 2) -> WebCorpus:
    """A noisy web-like corpus of n Shapes scenes (one or two objects, training split: the held-out
    colour x shape pairs never appear), with the kinds of WEB_PROPORTIONS (counts rounded down, the
    rest clean), shuffled. Deterministic in `seed`."""
    n = shapes.check_count("n", n)
    image_size = shapes.check_image_size(image_size)
    scenes = shapes.generate(n, seed=seed, image_size=image_size, min_objects=1, max_objects=max_objects,
                             split="train", caption_style="varied")
    rng = np.random.default_rng([seed, 303])
    kinds = _web_kinds(n, rng)
    pictures = with_texture(scenes.images, seed)
    data = [encode_png(image) for image in pictures]
    urls = [_url(rng, i) for i in range(n)]
    alt_text = list(scenes.captions)
    true_caption = list(scenes.captions)
    duplicate_of = [-1] * n
    edits = [""] * n
    originals = rng.permutation([i for i in range(n) if kinds[i] == "clean"])
    duplicates = [i for i in range(n) if kinds[i] in DUPLICATE_KINDS]
    for i, original in zip(duplicates, originals, strict=False):
        original = int(original)
        duplicate_of[i] = original
        if kinds[i] == "exact_duplicate":
            data[i] = data[original]
            edits[i] = "exact"
        elif kinds[i] == "near_duplicate":
            edits[i] = NEAR_DUPLICATE_EDITS[int(rng.integers(len(NEAR_DUPLICATE_EDITS)))]
            data[i] = _near_copy(pictures[original], edits[i], rng)
        else:  # the same URL crawled again: the server re-encoded the picture
            edits[i] = "re-encoded"
            data[i] = encode_jpeg(pictures[original], quality=int(rng.integers(40, 90)))
            urls[i] = urls[original]
        alt_text[i] = true_caption[i] = scenes.captions[original]
    for i in range(n):
        if kinds[i] == "generic":
            alt_text[i] = GENERIC_ALT_TEXTS[int(rng.integers(len(GENERIC_ALT_TEXTS)))]
        elif kinds[i] == "wrong":
            alt_text[i] = _another_caption(i, scenes, rng)
        elif kinds[i] == "flagged":
            data[i] = encode_png(_draw_flag(pictures[i], int(rng.integers(4))))
        elif kinds[i] == "odd_size":
            size = _ODD_SIZES[int(rng.integers(len(_ODD_SIZES)))]
            height, width = (max(4, round(d * image_size / 32)) for d in size)
            odd = F.interpolate(pictures[i][None], size=(height, width), mode="bilinear",
                                align_corners=False, antialias=True)[0]
            data[i] = encode_png(odd)
    colour, shape = scenes.colour.clone(), scenes.shape.clone()
    for i, original in enumerate(duplicate_of):
        if original >= 0:
            colour[i], shape[i] = scenes.colour[original], scenes.shape[original]
    return WebCorpus(
        image_bytes=data, images=[decode(item) for item in data], url=urls, alt_text=alt_text,
        true_caption=true_caption, kind=kinds, duplicate_of=duplicate_of, edit=edits, colour=colour, shape=shape,
    )


def with_texture(images: torch.Tensor, seed: int, strength: float = TEXTURE) -> torch.Tensor:
    """Images [N, 3, H, W] plus a faint smooth random texture of their own (a 6x6 grid of Gaussian
    values, upsampled): web photos are all different pictures, where two Shapes renders of the same
    object in the same place are nearly identical. Clamped to [0, 1]."""
    generator = torch.Generator().manual_seed(seed + 909)
    coarse = torch.randn(len(images), 3, 6, 6, generator=generator)
    texture = F.interpolate(coarse, size=images.shape[-2:], mode="bicubic", align_corners=False)
    return (images + strength * texture).clamp(0, 1)


def sha256(data: bytes) -> str:
    """The hex SHA-256 of some bytes: equal only for identical bytes (the exact-duplicate key)."""
    return hashlib.sha256(data).hexdigest()


def _web_kinds(n: int, rng: np.random.Generator) -> list[str]:
    """The kind of every item: counts from WEB_PROPORTIONS (rounded down, rest clean), shuffled."""
    counts = {kind: int(WEB_PROPORTIONS[kind] * n) for kind in WEB_KINDS if kind != "clean"}
    counts["clean"] = n - sum(counts.values())
    kinds = [kind for kind in WEB_KINDS for _ in range(counts[kind])]
    return [kinds[j] for j in rng.permutation(n)]


def _another_caption(i: int, scenes: shapes.ShapesBatch, rng: np.random.Generator) -> str:
    """The caption of another scene whose objects differ from scene i's (a wrong alt text)."""
    def objects(k: int) -> set[tuple[int, int]]:
        return {(int(c), int(s)) for c, s in zip(scenes.colour[k], scenes.shape[k], strict=True) if c >= 0}

    mine = objects(i)
    for _ in range(50):
        j = int(rng.integers(len(scenes)))
        if objects(j) != mine:
            return scenes.captions[j]
    return "a blue sky over the sea"
