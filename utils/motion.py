"""Motion clips of the Shapes world (the video chapter): one shape moving left, right, up or down.

A clip is T frames of a shape in a wrap-around world; the label is its direction of motion. Every
single frame looks the same whatever the direction, so a model must compare frames in order to
answer - the test that per-frame pooling fails and tubelets with temporal position embeddings pass
(the video encoders of Arnab et al., 2021, "ViViT", and Tong et al., 2022, "VideoMAE").

    >>> from utils import motion
    >>> clips = motion.motion_clips(4, frames=16, seed=0)     # videos: [4, 16, 3, 32, 32]
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from utils import painter, shapes
from utils.batches import LabelledBatch

DIRECTIONS: tuple[str, ...] = ("left", "right", "up", "down")

_DIRECTION_STEP = torch.tensor([[-1.0, 0.0], [1.0, 0.0], [0.0, -1.0], [0.0, 1.0]])  # (dx, dy) per direction


@dataclass
class MotionBatch(LabelledBatch):
    """Short clips of one shape moving in a straight line across a wrap-around world."""

    videos: torch.Tensor  # float [N, T, 3, H, W] in [0, 1]
    direction: torch.Tensor  # long [N], index into DIRECTIONS
    speed: torch.Tensor  # float [N], pixels per frame
    colour: torch.Tensor  # long [N]
    shape: torch.Tensor  # long [N]
    size: torch.Tensor  # long [N]
    centres: torch.Tensor  # float [N, T, 2], (x, y) in pixels, wrapped into [0, image_size)
    captions: list[str]


def motion_clips(
    n: int, *, frames: int = 8, seed: int = 0, image_size: int = 32, noise: float = 0.03
) -> MotionBatch:
    """n clips of `frames` frames; one shape moves left, right, up or down at 1-2 pixels per frame
    (scaled with image_size).

    The world wraps around (an object leaving on the right comes back on the left) and the start is
    uniform over the image, so every single frame has the same position distribution whatever the
    direction: one frame says nothing about the direction. A bag of frames (per-frame features pooled
    over time) tells the axis (horizontal or vertical) from the spread of positions but never the
    sign, left from right or up from down: that needs the order of the frames.
    """
    n = shapes.check_count("n", n)
    frames = shapes.check_count("frames", frames, minimum=2)
    image_size = shapes.check_image_size(image_size)
    generator = torch.Generator().manual_seed(seed)
    direction = torch.randint(0, len(DIRECTIONS), (n,), generator=generator)
    speed = (1.0 + torch.rand(n, generator=generator)) * image_size / 32
    colour = torch.randint(0, len(shapes.COLOURS), (n,), generator=generator)
    shape = torch.randint(0, len(shapes.SHAPES), (n,), generator=generator)
    size = torch.randint(0, len(shapes.SIZES), (n,), generator=generator)
    start = torch.rand(n, 2, generator=generator) * image_size  # [N, 2]
    steps = torch.arange(frames, dtype=torch.float32)  # [T]
    travel = _DIRECTION_STEP[direction] * speed[:, None]  # [N, 2] pixels per frame
    unwrapped = start[:, None] + steps[None, :, None] * travel[:, None]  # [N, T, 2]
    centres = torch.remainder(unwrapped, image_size)  # [N, T, 2]
    rgb = painter.object_rgb(colour[:, None], 0.04, generator)  # [N, 1, 3]
    canvas = painter.backgrounds(painter.background_params(n, generator), image_size, True)  # [N, 3, H, W]

    def per_frame(t: torch.Tensor) -> torch.Tensor:  # [N, ...] -> [N * T, ...], clip-major
        return t.repeat_interleave(frames, dim=0)

    painted = painter.compose(
        per_frame(canvas),
        centres.reshape(n * frames, 1, 2),
        per_frame(shapes.radius_pixels(size, image_size)[:, None]),
        per_frame(shape[:, None]),
        per_frame(rgb),
        wrap=True,
    )  # [N * T, 3, H, W]
    videos = painter.add_noise(painted, noise, generator).reshape(n, frames, 3, image_size, image_size)
    captions = [
        f"{shapes.describe(int(c), int(s), int(z))} moving {DIRECTIONS[int(d)]}"
        for c, s, z, d in zip(colour, shape, size, direction, strict=True)
    ]
    return MotionBatch(videos, direction, speed, colour, shape, size, centres, captions)


