"""The painter of the Shapes world: anti-aliased shapes drawn with signed distance functions,
vectorised over a batch of images.

Each shape is a signed distance function (negative inside) evaluated on the pixel grid; coverage is
the distance clamped to one pixel of anti-aliasing, and objects are composited over dark gradient
backgrounds in slot order. `shapes.generate` (scenes), `motion.motion_clips` (clips on a torus) and
`web_corpus` use it; lessons call those, not the painter. The palette and the order of the shapes
live here, so that index i means the same colour or shape everywhere.
"""

from __future__ import annotations

import math

import torch

COLOUR_RGB: dict[str, tuple[float, float, float]] = {
    "red": (0.88, 0.16, 0.14),
    "green": (0.18, 0.74, 0.26),
    "blue": (0.18, 0.38, 0.95),
    "yellow": (0.96, 0.88, 0.18),
    "purple": (0.62, 0.26, 0.84),
    "orange": (0.98, 0.56, 0.10),
}
SHAPE_NAMES: tuple[str, ...] = ("circle", "square", "triangle", "cross")  # index order of the shapes

_HALF_SQRT3 = math.sqrt(3.0) / 2.0
_TRIANGLE_INRADIUS = 0.60
_SQUARE_HALF_SIDE = 0.86
_CROSS_HALF_THICKNESS = 0.34


def _shape_distance(shape: int, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Signed distance (in radius units, negative inside) of one shape at local coordinates u, v."""
    if shape == 0:  # circle
        return torch.sqrt(u * u + v * v) - 1.0
    if shape == 1:  # square
        return torch.maximum(u.abs(), v.abs()) - _SQUARE_HALF_SIDE
    if shape == 2:  # triangle pointing up (y grows downwards): three half-planes
        slanted = _HALF_SQRT3 * u.abs() - 0.5 * v
        return torch.maximum(v, slanted) - _TRIANGLE_INRADIUS
    # cross: the union of a horizontal and a vertical bar
    au, av = u.abs(), v.abs()
    horizontal_bar = torch.maximum(au - 1.0, av - _CROSS_HALF_THICKNESS)
    vertical_bar = torch.maximum(au - _CROSS_HALF_THICKNESS, av - 1.0)
    return torch.minimum(horizontal_bar, vertical_bar)


def _coverage(
    centre: torch.Tensor, radius: torch.Tensor, shape: torch.Tensor, image_size: int, wrap: bool = False
) -> torch.Tensor:
    """Anti-aliased coverage [N, H, W] in [0, 1] of one object per image (shape -1: nothing)."""
    n = centre.shape[0]
    pixels = torch.arange(image_size, dtype=torch.float32) + 0.5
    dx = pixels[None, None, :] - centre[:, 0, None, None]  # [N, 1, W]
    dy = pixels[None, :, None] - centre[:, 1, None, None]  # [N, H, 1]
    if wrap:  # the world is a torus: measure the shortest way round
        dx = torch.remainder(dx + image_size / 2, image_size) - image_size / 2
        dy = torch.remainder(dy + image_size / 2, image_size) - image_size / 2
    u = dx / radius[:, None, None]
    v = dy / radius[:, None, None]
    alpha = torch.zeros(n, image_size, image_size)
    for s in range(len(SHAPE_NAMES)):
        chosen = (shape == s).nonzero().flatten()
        if chosen.numel() == 0:
            continue
        distance = _shape_distance(s, u[chosen], v[chosen])  # [n_s, H, W]
        alpha[chosen] = (0.5 - distance * radius[chosen, None, None]).clamp(0.0, 1.0)
    return alpha


def backgrounds(params: dict[str, torch.Tensor], image_size: int, enabled: bool) -> torch.Tensor:
    """Dark tinted backgrounds with a soft linear gradient: [N, 3, H, W]."""
    n = params["tint"].shape[0]
    if not enabled:
        return torch.zeros(n, 3, image_size, image_size)
    ramp = (torch.arange(image_size, dtype=torch.float32) + 0.5) / image_size - 0.5  # [W]
    along = params["cos"][:, None, None] * ramp[None, None, :] + params["sin"][:, None, None] * ramp[:, None]
    gradient = params["gradient"][:, None, None] * along  # [N, H, W]
    return (params["tint"][:, :, None, None] + gradient[:, None]).clamp(0.0, 1.0)  # [N, 3, H, W]


def background_params(n: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Random tint, gradient direction and gradient strength per image."""
    angle = torch.rand(n, generator=generator) * 2 * math.pi
    return {
        "tint": 0.04 + 0.16 * torch.rand(n, 3, generator=generator),
        "cos": torch.cos(angle),
        "sin": torch.sin(angle),
        "gradient": 0.15 * torch.rand(n, generator=generator),
    }


def compose(
    background: torch.Tensor,
    centre: torch.Tensor,
    radius: torch.Tensor,
    shape: torch.Tensor,
    rgb: torch.Tensor,
    wrap: bool = False,
) -> torch.Tensor:
    """Paint K objects (in slot order) over backgrounds [N, 3, H, W]; rgb is [N, K, 3]."""
    images = background.clone()
    image_size = background.shape[-1]
    for k in range(shape.shape[1]):  # a loop over object slots (at most 4), not over images
        alpha = _coverage(centre[:, k], radius[:, k], shape[:, k], image_size, wrap)[:, None]  # [N, 1, H, W]
        images.lerp_(rgb[:, k, :, None, None].expand_as(images), alpha)  # images += alpha * (rgb - images)
    return images


def add_noise(images: torch.Tensor, noise: float, generator: torch.Generator) -> torch.Tensor:
    if noise > 0:
        images.add_(torch.randn(images.shape, generator=generator), alpha=noise)
    return images.clamp_(0.0, 1.0)


def object_rgb(colour: torch.Tensor, jitter: float, generator: torch.Generator) -> torch.Tensor:
    """RGB [N, K, 3] of every object, with a little per-object jitter."""
    table = torch.tensor(list(COLOUR_RGB.values()))  # [colours, 3], in COLOUR_RGB's order
    rgb = table[colour.clamp(min=0)]
    if jitter > 0:
        rgb = rgb + jitter * (2 * torch.rand(rgb.shape, generator=generator) - 1)
    return rgb.clamp(0.0, 1.0)
