"""The Shapes world: the book's own dataset, from chapter 1 to chapter 10.

Small images of coloured shapes with captions that are true by construction. Everything is
generated from a seed, so every reader sees the same pictures, and rendering is vectorised over
the batch (signed-distance functions evaluated on a pixel grid), so ten thousand images take a
fraction of a second on one CPU core.

The world has 6 colours x 4 shapes x 2 sizes. Within one image every object has its own colour
and its own shape, which keeps questions such as "what colour is the circle?" unambiguous.

    >>> from utils import shapes
    >>> batch = shapes.generate(8, seed=0, max_objects=2)
    >>> batch.images.shape, batch.captions[0]
    (torch.Size([8, 3, 32, 32]), '...')

Also here: held-out colour x shape pairs (compositional generalisation), VQA questions and
bounding boxes (grounding). Built on the same painter, in modules of their own: `motion` (clips of
moving shapes, the video chapter) and `web_corpus` (a noisy web-like corpus, the data chapter);
`convert` turns batches into PIL images and Hugging Face datasets.

The pictures are drawn by `painter` (signed distance functions, vectorised over the batch).
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from utils import painter
from utils.batches import LabelledBatch

# ----------------------------------------------------------------------------------------------
# The vocabulary of the world
# ----------------------------------------------------------------------------------------------

COLOURS: tuple[str, ...] = tuple(painter.COLOUR_RGB)
COLOUR_RGB: dict[str, tuple[float, float, float]] = painter.COLOUR_RGB
SHAPES: tuple[str, ...] = painter.SHAPE_NAMES
SIZES: tuple[str, ...] = ("small", "large")
RELATIONS: tuple[str, ...] = ("left of", "right of", "above", "below")
CAPTION_STYLES: tuple[str, ...] = ("full", "partial", "varied")
SPLITS: tuple[str, ...] = ("all", "train", "test")
QUESTION_KINDS: tuple[str, ...] = ("colour", "shape", "size", "count", "relation", "exists", "where")
WHERE_ANSWERS: tuple[str, ...] = ("left", "right", "above", "below")  # one word per RELATIONS entry
NUMBER_WORDS: tuple[str, ...] = ("zero", "one", "two", "three", "four")

# One held-out pair per colour; every shape is held out at least once.
DEFAULT_HOLDOUT: tuple[tuple[str, str], ...] = (
    ("red", "triangle"),
    ("green", "cross"),
    ("blue", "circle"),
    ("yellow", "square"),
    ("purple", "circle"),
    ("orange", "triangle"),
)

MIN_IMAGE_SIZE = 16
MAX_IMAGE_SIZE = 128
MAX_OBJECTS = len(SHAPES)  # every object in an image has its own shape

# Object radius as a fraction of the image side, for "small" and "large".
RADIUS_FRACTION: tuple[float, float] = (0.12, 0.19)
# Extent of each shape around its centre in units of its radius: (left, top, right, bottom).
_SHAPE_EXTENT = torch.tensor(
    [
        [1.00, 1.00, 1.00, 1.00],  # circle
        [0.86, 0.86, 0.86, 0.86],  # square (half side)
        [1.04, 1.20, 1.04, 0.60],  # triangle, pointing up, centred on its centroid
        [1.00, 1.00, 1.00, 1.00],  # cross (plus sign)
    ]
)
# Radius of the circle around the centre that contains the whole shape, in units of the radius.
_SHAPE_REACH = torch.tensor([1.00, 1.22, 1.20, 1.05])

_RELATION_SYNONYMS: dict[str, tuple[str, ...]] = {
    "left of": ("left of", "to the left of", "on the left of"),
    "right of": ("right of", "to the right of", "on the right of"),
    "above": ("above", "over", "higher than"),
    "below": ("below", "under", "beneath"),
}
OPPOSITE_RELATION = {"left of": "right of", "right of": "left of", "above": "below", "below": "above"}
_VARIED_TEMPLATES: tuple[str, ...] = (
    "a photo of {p}",
    "there is {p}",
    "{bare}",
    "an image of {p}",
    "a picture showing {p}",
    "{p} on a dark background",
    "a drawing of {p}",
    "a rendering of {p}",
)
_RENDER_CHUNK = 1024


# ----------------------------------------------------------------------------------------------
# Names, indices and small validation helpers
# ----------------------------------------------------------------------------------------------


def _index_of(value: str | int, names: Sequence[str], what: str) -> int:
    """Index of `value` (a name or an index) in `names`; ValueError naming the valid ones."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        if 0 <= int(value) < len(names):
            return int(value)
        raise ValueError(
            f"{what} index {value} is out of range: use 0..{len(names) - 1} ({', '.join(names)})"
        )
    if isinstance(value, str) and value.strip().lower() in names:
        return names.index(value.strip().lower())
    raise ValueError(f"unknown {what} {value!r}: the Shapes world has {', '.join(names)}")


def colour_index(colour: str | int) -> int:
    """Index of a colour name in COLOURS (ValueError for an unknown colour)."""
    return _index_of(colour, COLOURS, "colour")


def shape_index(shape: str | int) -> int:
    """Index of a shape name in SHAPES (ValueError for an unknown shape)."""
    return _index_of(shape, SHAPES, "shape")


def size_index(size: str | int) -> int:
    """Index of a size name in SIZES (ValueError for an unknown size)."""
    return _index_of(size, SIZES, "size")


def check_count(name: str, value: int, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def check_image_size(image_size: int) -> int:
    if isinstance(image_size, bool) or not isinstance(image_size, (int, np.integer)):
        raise ValueError(f"image_size must be an integer number of pixels, got {image_size!r}")
    if not MIN_IMAGE_SIZE <= image_size <= MAX_IMAGE_SIZE:
        raise ValueError(
            f"image_size must be between {MIN_IMAGE_SIZE} and {MAX_IMAGE_SIZE} pixels, got {image_size}: "
            f"below {MIN_IMAGE_SIZE} a small triangle is a few pixels and no longer recognisable"
        )
    return int(image_size)


def _check_choice(name: str, value: str, choices: Sequence[str]) -> str:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(repr(c) for c in choices)}; got {value!r}")
    return value


def holdout_table(holdout: Sequence[tuple[str, str]]) -> torch.Tensor:
    """Bool [6, 4] table: True where the (colour, shape) pair is held out."""
    table = torch.zeros(len(COLOURS), len(SHAPES), dtype=torch.bool)
    for pair in holdout:
        if not (isinstance(pair, (tuple, list)) and len(pair) == 2):
            raise ValueError(
                f"holdout must hold (colour, shape) pairs such as ('red', 'triangle'), got {pair!r}"
            )
        table[colour_index(pair[0]), shape_index(pair[1])] = True
    return table


def pair_index(colour_idx: int | torch.Tensor, shape_idx: int | torch.Tensor) -> int | torch.Tensor:
    """Index of a colour x shape pair among the 24 classes: colour * 4 + shape (ints or tensors)."""
    return colour_idx * len(SHAPES) + shape_idx


def pair_names() -> list[tuple[str, str]]:
    """The 24 (colour, shape) pairs in class order, so that pair_names()[pair_index(c, s)] == (c, s)."""
    return [(colour, shape) for colour in COLOURS for shape in SHAPES]


def _with_articles(text: str) -> str:
    """Turn 'a orange' into 'an orange' (and the same for every vowel)."""
    return re.sub(r"\b([Aa]) (?=[aeiouAEIOU])", r"\1n ", text)


def _phrase(colour: int | None, shape: int | None, size: int | None = None) -> str:
    """describe() without the checks, for label indices known to be valid (the fast path of captions)."""
    words = [SIZES[size]] if size is not None else []
    if colour is not None:
        words.append(COLOURS[colour])
    words.append(SHAPES[shape] if shape is not None else "object")
    return ("an " if words[0][0] in "aeiou" else "a ") + " ".join(words)


def describe(colour: str | int | None, shape: str | int | None, size: str | int | None = None) -> str:
    """Words for one object with its article: describe('red', 'circle', 'small') -> 'a small red circle'.

    Leave out the shape for "a red object", the colour for "a circle"; at least one is needed.
    """
    if colour is None and shape is None:
        raise ValueError("describe needs a colour or a shape (or both)")
    return _phrase(
        colour_index(colour) if colour is not None else None,
        shape_index(shape) if shape is not None else None,
        size_index(size) if size is not None else None,
    )


def class_prompts(template: str = "a photo of a {colour} {shape}") -> list[str]:
    """The 24 class prompts for zero-shot classification, in pair_index order ('a' -> 'an' fixed)."""
    if "{colour}" not in template and "{shape}" not in template:
        raise ValueError(f"template needs a {{colour}} and/or {{shape}} placeholder, got {template!r}")
    return [_with_articles(template.format(colour=c, shape=s)) for c, s in pair_names()]


# ----------------------------------------------------------------------------------------------
# The batch of images and its labels
# ----------------------------------------------------------------------------------------------


@dataclass
class ShapesBatch(LabelledBatch):
    """A batch of Shapes-world images with every label that made them.

    K is the largest number of objects per image; unused object slots hold -1 (labels) and 0 (geometry).
    """

    images: torch.Tensor  # float32 [N, 3, H, W] in [0, 1]
    colour: torch.Tensor  # long [N, K], index into COLOURS, -1 where no object
    shape: torch.Tensor  # long [N, K], index into SHAPES, -1 where no object
    size: torch.Tensor  # long [N, K], index into SIZES, -1 where no object
    centre: torch.Tensor  # float [N, K, 2], (x, y) in pixels
    boxes: torch.Tensor  # float [N, K, 4], (x0, y0, x1, y1) in pixels
    count: torch.Tensor  # long [N], number of objects
    captions: list[str]
    relation: torch.Tensor = field(default_factory=lambda: torch.empty(0, dtype=torch.long))
    # long [N]: index into RELATIONS of object 0 relative to object 1, -1 when count < 2

    def objects(self, i: int) -> list[dict[str, Any]]:
        """The objects of image `i` in words and numbers, one dict each."""
        described = []
        for k in range(int(self.count[i])):
            colour, shape, size = int(self.colour[i, k]), int(self.shape[i, k]), int(self.size[i, k])
            described.append(
                {
                    "colour": COLOURS[colour],
                    "shape": SHAPES[shape],
                    "size": SIZES[size],
                    "centre": tuple(round(float(v), 2) for v in self.centre[i, k]),
                    "box": tuple(round(float(v), 2) for v in self.boxes[i, k]),
                    "description": describe(colour, shape, size),
                }
            )
        return described


# ----------------------------------------------------------------------------------------------
# Sampling what is in each image
# ----------------------------------------------------------------------------------------------


def _sample_identities(
    count: torch.Tensor, slots: int, split: str, held: torch.Tensor, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Distinct colours and shapes per image that respect the split. Returns two long [N, slots]."""
    n = count.shape[0]
    colour = torch.empty(n, slots, dtype=torch.long)
    shape = torch.empty(n, slots, dtype=torch.long)
    todo = torch.arange(n)
    for _ in range(400):  # rejection rounds over the images still to fill, not a per-image loop
        m = todo.shape[0]
        colour_try = torch.rand(m, len(COLOURS), generator=generator).argsort(dim=1)[:, :slots]  # [m, slots]
        shape_try = torch.rand(m, len(SHAPES), generator=generator).argsort(dim=1)[:, :slots]  # [m, slots]
        is_held = held[colour_try, shape_try]  # [m, slots]
        present = torch.arange(slots) < count[todo, None]  # [m, slots]
        if split == "train":
            accepted = ~(is_held & present).any(dim=1)
        elif split == "test":
            accepted = is_held[:, 0]
        else:
            accepted = torch.ones(m, dtype=torch.bool)
        colour[todo[accepted]] = colour_try[accepted]
        shape[todo[accepted]] = shape_try[accepted]
        todo = todo[~accepted]
        if todo.numel() == 0:
            return colour, shape
    raise ValueError(
        f"could not draw objects for split={split!r} with this holdout; is the holdout sensible?"
    )


def radius_pixels(size: torch.Tensor, image_size: int) -> torch.Tensor:
    """Object radius in pixels for size indices (any shape)."""
    return torch.tensor(RADIUS_FRACTION)[size.clamp(min=0)] * image_size


def _relation_of(centre_a: torch.Tensor, centre_b: torch.Tensor) -> torch.Tensor:
    """RELATIONS index of a relative to b along the axis where they differ most. [..., 2] -> long [...]."""
    dx = centre_a[..., 0] - centre_b[..., 0]
    dy = centre_a[..., 1] - centre_b[..., 1]
    horizontal = dx.abs() >= dy.abs()
    return torch.where(horizontal, torch.where(dx < 0, 0, 1), torch.where(dy < 0, 2, 3)).long()


def _place_objects(
    shape: torch.Tensor, size: torch.Tensor, count: torch.Tensor, image_size: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Centres [N, K, 2]: objects stay inside, barely overlap, and objects 0 and 1 have a clear relation.

    Vectorised rejection sampling: each round proposes many layouts for every unplaced image and keeps
    the first valid one. Images still unplaced halfway through are made all-small. Returns (centre, size).
    """
    n, slots = shape.shape
    size = size.clone()
    centre = torch.zeros(n, slots, 2)
    present = torch.arange(slots) < count[:, None]  # [N, K]
    upper = torch.ones(slots, slots).triu(1).bool()  # [K, K] each pair once
    pair_present = present[:, :, None] & present[:, None, :] & upper  # [N, K, K]
    relation_margin = 0.1 * image_size
    proposals, rounds = 32, 60
    todo = torch.arange(n)
    for round_number in range(rounds):
        if round_number == rounds // 2:
            size[todo] = torch.where(present[todo], 0, size[todo])
        radius = radius_pixels(size[todo], image_size)  # [m, K]
        extent = _SHAPE_EXTENT[shape[todo].clamp(min=0)] * radius[..., None]  # [m, K, 4]
        low = extent[..., :2] + 1.0  # [m, K, 2] smallest allowed x, y
        high = image_size - 1.0 - extent[..., 2:]  # [m, K, 2] largest allowed x, y
        u = torch.rand(todo.shape[0], proposals, slots, 2, generator=generator)
        tries = low[:, None] + u * (high - low)[:, None]  # [m, P, K, 2]
        distance = (tries[:, :, :, None] - tries[:, :, None, :]).norm(dim=-1)  # [m, P, K, K]
        reach = _SHAPE_REACH[shape[todo].clamp(min=0)] * radius  # [m, K]
        needed = 0.9 * (reach[:, :, None] + reach[:, None, :])  # [m, K, K]
        apart = (distance >= needed[:, None]) | ~pair_present[todo, None]  # [m, P, K, K]
        valid = apart.flatten(2).all(dim=2)  # [m, P]
        if slots >= 2:  # objects 0 and 1 must differ clearly more along one axis than the other
            offset = (tries[:, :, 0] - tries[:, :, 1]).abs()  # [m, P, 2]
            clear = (offset.max(dim=-1).values - offset.min(dim=-1).values) >= relation_margin
            valid &= clear | (count[todo] < 2)[:, None]
        found = valid.any(dim=1)
        first = valid.float().argmax(dim=1)
        chosen = tries[torch.arange(todo.shape[0]), first]  # [m, K, 2]
        centre[todo[found]] = chosen[found]
        todo = todo[~found]
        if todo.numel() == 0:
            return centre * present[..., None], size
    raise ValueError(
        f"could not place {int(count.max())} objects without overlap in {image_size}x{image_size} images; "
        "use a larger image_size or fewer objects"
    )


def _boxes(centre: torch.Tensor, shape: torch.Tensor, size: torch.Tensor, image_size: int) -> torch.Tensor:
    """Tight boxes (x0, y0, x1, y1) [N, K, 4] from centres, shapes and sizes."""
    radius = radius_pixels(size, image_size)  # [N, K]
    extent = _SHAPE_EXTENT[shape.clamp(min=0)] * radius[..., None]  # [N, K, 4]
    boxes = torch.cat([centre - extent[..., :2], centre + extent[..., 2:]], dim=-1)  # [N, K, 4]
    return boxes * (shape >= 0)[..., None]


# ----------------------------------------------------------------------------------------------
# Captions
# ----------------------------------------------------------------------------------------------


def _bare(phrase: str) -> str:
    return re.sub(r"^an? ", "", phrase)


def _partial_phrase(colour: int, shape: int, size: int, rng: np.random.Generator) -> str:
    """Words for one object with a random subset of its attributes (always true, never empty)."""
    keep_colour, keep_shape, keep_size = rng.random(3) < (0.6, 0.7, 0.3)
    if not keep_colour and not keep_shape:
        keep_colour = bool(rng.random() < 0.5)
        keep_shape = not keep_colour
    if not keep_shape and rng.random() < 0.5:
        adjectives = ([SIZES[size]] if keep_size else []) + [COLOURS[colour]]
        return "something " + " and ".join(adjectives)
    return _phrase(
        colour if keep_colour else None, shape if keep_shape else None, size if keep_size else None
    )


def caption_for(
    batch: ShapesBatch, i: int, style: str = "full", rng: np.random.Generator | None = None
) -> str:
    """A caption of image `i` that is true for it, in one of CAPTION_STYLES.

    full: every attribute, the relation of the first two objects, and the rest after "with".
    partial: a random subset of attributes. varied: the full content in one of several phrasings.
    """
    _check_choice("caption_style", style, CAPTION_STYLES)
    count = int(batch.count[i])
    labels = [(int(batch.colour[i, k]), int(batch.shape[i, k]), int(batch.size[i, k])) for k in range(count)]
    relation = int(_relation_of(batch.centre[i, 0], batch.centre[i, 1])) if count >= 2 else -1
    return _caption_text(labels, relation, style, rng if rng is not None else np.random.default_rng(0))


def _caption_text(
    labels: list[tuple[int, int, int]], relation: int, style: str, rng: np.random.Generator
) -> str:
    """The caption of one image from its (colour, shape, size) labels and the relation of objects 0 and 1."""
    if style == "partial":
        phrases = [_partial_phrase(c, s, z, rng) for c, s, z in labels]
    elif style == "varied":
        phrases = [_phrase(c, s, z if rng.random() < 0.7 else None) for c, s, z in labels]
    else:
        phrases = [_phrase(c, s, z) for c, s, z in labels]
    text = phrases[0]
    if len(labels) >= 2:
        if style == "partial" and rng.random() < 0.4:
            text = f"{phrases[0]} and {phrases[1]}"
        else:
            said = RELATIONS[relation]
            if style == "varied":
                said = _RELATION_SYNONYMS[said][int(rng.integers(3))]
            text = f"{phrases[0]} {said} {phrases[1]}"
        if len(labels) >= 3:
            text += ", with " + " and ".join(phrases[2:])
    if style == "varied":
        template = _VARIED_TEMPLATES[int(rng.integers(len(_VARIED_TEMPLATES)))]
        text = template.format(p=text, bare=_bare(text))
    return text


def _captions(batch: ShapesBatch, style: str, seed: int) -> list[str]:
    """Captions of every image (labels read once as Python lists: much faster than tensor indexing)."""
    rng = np.random.default_rng([seed, 101])
    colour, shape, size = batch.colour.tolist(), batch.shape.tolist(), batch.size.tolist()
    count, relation = batch.count.tolist(), batch.relation.tolist()
    captions = []
    for i in range(len(batch)):
        labels = list(zip(colour[i][: count[i]], shape[i][: count[i]], size[i][: count[i]], strict=True))
        captions.append(_caption_text(labels, relation[i], style, rng))
    return captions


# ----------------------------------------------------------------------------------------------
# The generator
# ----------------------------------------------------------------------------------------------


def generate(
    n: int,
    *,
    seed: int = 0,
    image_size: int = 32,
    min_objects: int = 1,
    max_objects: int = 1,
    split: str = "all",
    holdout: Sequence[tuple[str, str]] = DEFAULT_HOLDOUT,
    noise: float = 0.03,
    background: bool = True,
    caption_style: str = "full",
) -> ShapesBatch:
    """Generate `n` Shapes-world images with labels and captions, deterministically from `seed`.

    Args:
        n: number of images.
        seed: the same seed always gives the same batch (on any machine, CPU tensors).
        image_size: side in pixels, 16 to 128.
        min_objects, max_objects: objects per image, drawn uniformly in this range (1 to 4). When
            large objects do not fit (3-4 objects in a small image) the image's objects are made small,
            so with many objects "small" is somewhat more common than "large".
        split: "train" never shows a held-out (colour, shape) pair; "test" makes the first object
            of every image a held-out pair (the others are free); "all" shows anything.
        holdout: the held-out (colour, shape) pairs.
        noise: standard deviation of the Gaussian pixel noise.
        background: a dark random tint with a soft gradient (False: plain black).
        caption_style: "full", "partial" or "varied" (see caption_for).
    Returns:
        A ShapesBatch; images are float32 [n, 3, image_size, image_size] in [0, 1].
    """
    n = check_count("n", n)
    image_size = check_image_size(image_size)
    min_objects = check_count("min_objects", min_objects)
    max_objects = check_count("max_objects", max_objects)
    if not min_objects <= max_objects <= MAX_OBJECTS:
        raise ValueError(
            f"need 1 <= min_objects <= max_objects <= {MAX_OBJECTS} (each object has its own shape); "
            f"got min_objects={min_objects}, max_objects={max_objects}"
        )
    _check_choice("split", split, SPLITS)
    _check_choice("caption_style", caption_style, CAPTION_STYLES)
    if not 0 <= noise <= 1:
        raise ValueError(f"noise is a pixel standard deviation between 0 and 1, got {noise}")
    held = holdout_table(holdout)
    if split == "test" and not held.any():
        raise ValueError("split='test' shows held-out pairs, but the holdout is empty")
    if split == "train" and held.all():
        raise ValueError("split='train' avoids held-out pairs, but every pair is held out")

    generator = torch.Generator().manual_seed(seed)
    count = torch.randint(min_objects, max_objects + 1, (n,), generator=generator)  # [N]
    colour, shape = _sample_identities(count, max_objects, split, held, generator)  # [N, K] each
    size = torch.randint(0, len(SIZES), (n, max_objects), generator=generator)  # [N, K]
    centre, size = _place_objects(shape, size, count, image_size, generator)  # [N, K, 2], [N, K]
    absent = torch.arange(max_objects) >= count[:, None]  # [N, K]
    colour, shape, size = (t.masked_fill(absent, -1) for t in (colour, shape, size))
    rgb = painter.object_rgb(colour, 0.04 if background else 0.0, generator)  # [N, K, 3]
    scene_params = painter.background_params(n, generator)

    images = torch.empty(n, 3, image_size, image_size)
    for start in range(0, n, _RENDER_CHUNK):  # small chunks stay in cache; the work inside is vectorised
        part = slice(start, start + _RENDER_CHUNK)
        canvas = painter.backgrounds({k: v[part] for k, v in scene_params.items()}, image_size, background)
        radius = radius_pixels(size[part], image_size)
        painted = painter.compose(canvas, centre[part], radius, shape[part], rgb[part])  # [n_c, 3, H, W]
        images[part] = painter.add_noise(painted, noise, generator)
    relation = _relation_of(centre[:, 0], centre[:, 1]) if max_objects > 1 else torch.zeros(n).long()
    batch = ShapesBatch(
        images=images,
        colour=colour,
        shape=shape,
        size=size,
        centre=centre,
        boxes=_boxes(centre, shape, size, image_size),
        count=count,
        captions=[],
        relation=torch.where(count >= 2, relation, -1),
    )
    batch.captions = _captions(batch, caption_style, seed)
    return batch


def make_grid(images: torch.Tensor, nrow: int = 8, padding: int = 1, pad_value: float = 1.0) -> torch.Tensor:
    """Tile images [N, 3, H, W] into one picture [3, H', W'] (a torchvision-free make_grid)."""
    n, channels, height, width = images.shape
    rows = math.ceil(n / nrow)
    grid = torch.full(
        (channels, rows * (height + padding) + padding, nrow * (width + padding) + padding), pad_value
    )
    for i in range(n):
        top, left = padding + (i // nrow) * (height + padding), padding + (i % nrow) * (width + padding)
        grid[:, top : top + height, left : left + width] = images[i]
    return grid


# ----------------------------------------------------------------------------------------------
# Questions and answers (VQA, hallucination probes)
# ----------------------------------------------------------------------------------------------


def _balanced_flags(n: int, rng: np.random.Generator) -> np.ndarray:
    """n booleans, half True (one more when n is odd, chosen at random), in random order."""
    flags = np.arange(n) < (n + int(rng.integers(2))) // 2
    return rng.permutation(flags)


def _absent_pair(present: set[tuple[int, int]], rng: np.random.Generator) -> tuple[int, int]:
    """A (colour, shape) not in the image; half the time one that shares an attribute with an object."""
    absent = [pair for pair in np.ndindex(len(COLOURS), len(SHAPES)) if pair not in present]
    tricky = [p for p in absent if any(p[0] == q[0] or p[1] == q[1] for q in present)]
    pool = tricky if tricky and rng.random() < 0.5 else absent
    return pool[int(rng.integers(len(pool)))]


def questions(
    batch: ShapesBatch,
    *,
    seed: int = 0,
    kinds: Sequence[str] = ("colour", "shape", "count", "relation", "exists"),
) -> list[dict[str, Any]]:
    """Questions with one-word answers about every image, one per kind (relation: images with >= 2 objects).

    Answers are a colour, a shape, a size, a digit ("1".."4"), "yes"/"no", or for "where" (not asked
    by default; "where is the red circle relative to the blue square?") one of WHERE_ANSWERS: the
    relation's one-word form, along the axis where the centres differ most. The yes/no kinds
    ("relation", "exists") are balanced: half "yes", half "no". "exists" asks about absent objects
    for its "no" answers (half of those share a colour or a shape with an object in the image), which
    makes it a POPE-style hallucination probe. Returns dicts with image_index, question, answer, kind.
    """
    for kind in kinds:
        _check_choice("question kind", kind, QUESTION_KINDS)
    rng = np.random.default_rng([seed, 202])
    n = len(batch)
    with_pairs = [i for i in range(n) if int(batch.count[i]) >= 2]
    say_yes = {
        "exists": dict(zip(range(n), _balanced_flags(n, rng), strict=True)),
        "relation": dict(zip(with_pairs, _balanced_flags(len(with_pairs), rng), strict=True)),
    }
    asked = []
    for i in range(n):
        objects = batch.objects(i)
        for kind in kinds:
            qa = _question(kind, i, objects, batch, say_yes, rng)
            if qa is not None:
                asked.append({"image_index": i, "question": qa[0], "answer": qa[1], "kind": kind})
    return asked


def _question(
    kind: str, i: int, objects: list[dict[str, Any]], batch: ShapesBatch,
    say_yes: dict[str, dict[int, bool]], rng: np.random.Generator,
) -> tuple[str, str] | None:
    """One (question, answer) of a kind about image i, or None when the kind does not apply."""
    target = objects[int(rng.integers(len(objects)))]
    if kind == "colour":
        return f"what colour is the {target['shape']}?", target["colour"]
    if kind == "shape":
        return f"what shape is the {target['colour']} object?", target["shape"]
    if kind == "size":
        return f"is the {target['colour']} {target['shape']} small or large?", target["size"]
    if kind == "count":
        return "how many objects are there?", str(len(objects))
    if kind == "exists":
        if say_yes["exists"][i]:
            return f"is there {describe(target['colour'], target['shape'])}?", "yes"
        present = {(colour_index(o["colour"]), shape_index(o["shape"])) for o in objects}
        colour, shape = _absent_pair(present, rng)
        return f"is there {describe(colour, shape)}?", "no"
    if len(objects) < 2:  # relation and where
        return None
    first, second = (0, 1) if rng.random() < 0.5 else (1, 0)
    relation_index = int(_relation_of(batch.centre[i, first], batch.centre[i, second]))
    a, b = objects[first], objects[second]
    if kind == "where":
        question = f"where is the {a['colour']} {a['shape']} relative to the {b['colour']} {b['shape']}?"
        return question, WHERE_ANSWERS[relation_index]
    relation = RELATIONS[relation_index]
    asked = relation if say_yes["relation"][i] else OPPOSITE_RELATION[relation]
    answer = "yes" if asked == relation else "no"
    return f"is the {a['colour']} {a['shape']} {asked} the {b['colour']} {b['shape']}?", answer


# ----------------------------------------------------------------------------------------------
# The speed benchmark
# ----------------------------------------------------------------------------------------------


def benchmark(
    n: int = 20_000, *, image_size: int = 32, max_objects: int = 1, threads: int = 1, repeats: int = 3
) -> float:
    """Images generated per second (best of `repeats`) with `threads` torch threads, captions included."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        best = math.inf
        for repeat in range(repeats):
            started = time.perf_counter()
            generate(n, seed=repeat, image_size=image_size, max_objects=max_objects)
            best = min(best, time.perf_counter() - started)
    finally:
        torch.set_num_threads(previous)
    return n / best


if __name__ == "__main__":
    for objects in (1, 3):
        rate = benchmark(max_objects=objects)
        print(f"Shapes world: {rate:,.0f} images/s (32x32, up to {objects} object(s), 1 CPU thread)")
