"""Chapter 7's generator, kept for later chapters: a small class-conditional U-Net trained by
flow matching on 16 x 16 Shapes images, its samplers, and the measures chapter 7 scores it by.

What chapter 7 teaches (the forward process, the DDPM and DDIM steps, classifier-free guidance,
flow matching, latent diffusion, the VQ-VAE) is written out in the chapter; this module keeps the
pieces that chapter 9 evaluates, once, with the same names and signatures as the chapter's cells
(a test checks that they agree):

- `timestep_embedding`, `ResBlock`, `TinyUNet`: the denoiser; class `NULL_CLASS` is "no caption";
- `q_sample`: the forward process in closed form;
- `guided`: the classifier-free guidance combination, w = 1 being plain conditional;
- `euler_sample`: the flow-matching sampler with guidance;
- `adherence`, `burn`, `diversity`: how chapter 7 scores a set of generated images;
- `build_generator` / `train_generator`: the zoo's recipe (`zoo.load("tiny_gen")`).

Images are [N, 3, H, W] in [-1, 1] inside the generator and [0, 1] outside it.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from utils import shapes, tiny_clip
from utils.training import progress

N_CLASSES = 24  # the (colour, shape) pairs, in shapes.pair_index order
NULL_CLASS = N_CLASSES  # the label of "no caption": the condition dropped for guidance
IMAGE_SIZE = 16
DROP_RATE = 0.15  # how often training drops the caption
TRAIN_IMAGES = 20_000
TRAIN_DATA_SEED = 11
TRAIN_STEPS = 600
BATCH_SIZE = 32
LEARNING_RATE = 3e-3
EMA_DECAY = 0.995


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal features of the time t [B] (any real numbers): [B, dim]."""
    half = dim // 2
    frequencies = torch.exp(-math.log(10_000.0) * torch.arange(half, device=t.device) / half)
    angles = t.float()[:, None] * frequencies[None]  # [B, half]
    return torch.cat([angles.sin(), angles.cos()], dim=1)


class ResBlock(nn.Module):
    """Two 3x3 convolutions with group norm and SiLU and a skip connection:
    [B, c_in, H, W] -> [B, c_out, H, W]. The conditioning vector sets a per-channel scale and
    shift of the normalised features between the convolutions (FiLM, as in "adaptive group norm")."""

    def __init__(self, c_in: int, c_out: int, cond_dim: int):
        super().__init__()
        self.norm1, self.conv1 = nn.GroupNorm(8, c_in), nn.Conv2d(c_in, c_out, 3, padding=1)
        self.film = nn.Linear(cond_dim, 2 * c_out)
        self.norm2, self.conv2 = nn.GroupNorm(8, c_out), nn.Conv2d(c_out, c_out, 3, padding=1)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))  # [B, c_out, H, W]
        scale, shift = self.film(cond)[:, :, None, None].chunk(2, dim=1)  # [B, c_out, 1, 1] each
        h = self.norm2(h) * (1 + scale) + shift
        return self.conv2(F.silu(h)) + self.skip(x)


class TinyUNet(nn.Module):
    """A class-conditional U-Net: x [B, C, H, W], time t [B], labels [B] in 0..N_CLASSES
    (NULL_CLASS = no caption) -> a tensor shaped like x (the noise, or the velocity).

    Three resolutions (H, H/2, H/4) with widths (w, 2w, 2w), one ResBlock each on the way down
    and up, skip connections between them, and a middle block. Time (scaled by 1000 so that
    flow-matching times in [0, 1] and DDPM steps 0..999 span the same range) and label are
    embedded and summed into one conditioning vector that every block receives."""

    def __init__(self, channels: int = 3, width: int = 32, cond_dim: int = 128):
        super().__init__()
        self.width = width
        self.time_mlp = nn.Sequential(nn.Linear(width, cond_dim), nn.SiLU(), nn.Linear(cond_dim, cond_dim))
        self.label_embedding = nn.Embedding(N_CLASSES + 1, cond_dim)
        self.stem = nn.Conv2d(channels, width, 3, padding=1)
        self.down1 = ResBlock(width, width, cond_dim)
        self.down2 = ResBlock(width, 2 * width, cond_dim)
        self.down3 = ResBlock(2 * width, 2 * width, cond_dim)
        self.middle = ResBlock(2 * width, 2 * width, cond_dim)
        self.up3 = ResBlock(4 * width, 2 * width, cond_dim)
        self.up2 = ResBlock(4 * width, width, cond_dim)
        self.up1 = ResBlock(2 * width, width, cond_dim)
        self.head = nn.Sequential(nn.GroupNorm(8, width), nn.SiLU(), nn.Conv2d(width, channels, 3, padding=1))

    def forward(self, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        cond = self.time_mlp(timestep_embedding(t, self.width)) + self.label_embedding(labels)
        h1 = self.down1(self.stem(x), cond)  # [B, w, H, W]
        h2 = self.down2(F.avg_pool2d(h1, 2), cond)  # [B, 2w, H/2, W/2]
        h3 = self.down3(F.avg_pool2d(h2, 2), cond)  # [B, 2w, H/4, W/4]
        u = self.up3(torch.cat([self.middle(h3, cond), h3], 1), cond)
        u = self.up2(torch.cat([F.interpolate(u, scale_factor=2.0), h2], 1), cond)
        u = self.up1(torch.cat([F.interpolate(u, scale_factor=2.0), h1], 1), cond)
        return self.head(u)


def q_sample(x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor,
             alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """The forward process in closed form: sqrt(abar_t) x0 + sqrt(1 - abar_t) noise, per image."""
    abar = alphas_cumprod.to(x0.device)[t].view(-1, *([1] * (x0.dim() - 1)))  # [B, 1, 1, 1]
    return abar.sqrt() * x0 + (1 - abar).sqrt() * noise


def linear_alphas_cumprod(steps: int = 1000, beta_start: float = 1e-4,
                          beta_end: float = 0.02) -> torch.Tensor:
    """DDPM's linear noise schedule (Ho et al., 2020): abar_t = prod_{s<=t} (1 - beta_s), [steps]."""
    betas = torch.linspace(beta_start, beta_end, steps)
    return torch.cumprod(1 - betas, dim=0)


def trailing_timesteps(n: int, steps: int = 1000) -> list[int]:
    """n network calls spread over the DDPM steps, starting at the last one ("trailing" spacing:
    steps 999, ..., like diffusers' timestep_spacing="trailing")."""
    return [round(steps - k * steps / n) - 1 for k in range(n)]


def guided(model: nn.Module, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor,
           w: float) -> torch.Tensor:
    """Classifier-free guidance: uncond + w (cond - uncond). w = 1 is plain conditional (one
    network call), w = 0 ignores the caption (one call); otherwise both in one batch."""
    null = torch.full_like(labels, NULL_CLASS)
    if w == 1:
        return model(x, t, labels)
    if w == 0:
        return model(x, t, null)
    both = model(torch.cat([x, x]), torch.cat([t, t]), torch.cat([labels, null]))
    conditional, unconditional = both.chunk(2)
    return unconditional + w * (conditional - unconditional)


@torch.no_grad()
def euler_sample(model: nn.Module, labels: torch.Tensor, *, steps: int = 16, w: float = 3.0,
                 seed: int = 0, channels: int = 3, size: int = IMAGE_SIZE,
                 trajectory: list | None = None) -> torch.Tensor:
    """Flow-matching samples for `labels` [B]: Euler steps of dx/dt = v(x, t) from noise at t = 0
    to data at t = 1, guided with scale w. Returns images [B, channels, size, size] in [-1, 1]
    (not clipped); `trajectory`, if given, receives x after every step."""
    device = next(model.parameters()).device
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(len(labels), channels, size, size, generator=generator).to(device)
    labels = labels.to(device)
    for k in range(steps):
        t = torch.full((len(labels),), k / steps, device=device)
        x = x + guided(model, x, t * 1000, labels, w) / steps
        if trajectory is not None:
            trajectory.append(x.cpu())
    return x


@torch.no_grad()
def ddpm_sample(model: nn.Module, labels: torch.Tensor, alphas_cumprod: torch.Tensor, *,
                steps: int = 16, w: float = 3.0, eta: float = 1.0, seed: int = 0,
                channels: int = 3, size: int = IMAGE_SIZE, trajectory: list | None = None
                ) -> torch.Tensor:
    """Samples of an epsilon-predicting model on `steps` trailing timesteps, guided with scale w.
    eta = 1 is DDPM's ancestral sampler (fresh noise every step, the posterior's variance);
    eta = 0 is DDIM's deterministic step. Returns [B, channels, size, size] in [-1, 1] units;
    `trajectory`, if given, receives the predicted clean image x0 after every step."""
    device = next(model.parameters()).device
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(len(labels), channels, size, size, generator=generator).to(device)
    labels = labels.to(device)
    timesteps = trailing_timesteps(steps, len(alphas_cumprod))
    for t, t_prev in zip(timesteps, timesteps[1:] + [-1], strict=True):
        abar = alphas_cumprod[t].item()
        abar_prev = alphas_cumprod[t_prev].item() if t_prev >= 0 else 1.0
        eps = guided(model, x, torch.full((len(labels),), t, device=device), labels, w)
        x0 = (x - math.sqrt(1 - abar) * eps) / math.sqrt(abar)
        x0 = x0.clamp(-1, 1)   # images live in [-1, 1]; early guesses can be far outside
        eps = (x - math.sqrt(abar) * x0) / math.sqrt(1 - abar)   # the noise that x0 implies
        if trajectory is not None:
            trajectory.append(x0.cpu())
        # the variance of the step from t to t_prev (DDIM's sigma^2; eta = 1 is DDPM's)
        variance = eta**2 * (1 - abar_prev) / (1 - abar) * (1 - abar / abar_prev)
        x = math.sqrt(abar_prev) * x0 + math.sqrt(1 - abar_prev - variance) * eps
        if variance > 0 and t_prev >= 0:
            x = x + math.sqrt(variance) * torch.randn(x.shape, generator=generator).to(device)
    return x


def drop_captions(labels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """The labels with each replaced by NULL_CLASS with probability DROP_RATE: how training teaches
    one network both the conditional and the unconditional model that guidance combines."""
    dropped = torch.rand(len(labels), generator=generator) < DROP_RATE
    return torch.where(dropped.to(labels.device), torch.full_like(labels, NULL_CLASS), labels)


def ddpm_loss(model: nn.Module, images: torch.Tensor, labels: torch.Tensor,
              generator: torch.Generator, alphas_cumprod: torch.Tensor | None = None) -> torch.Tensor:
    """DDPM's simple loss: noise the images to a random step t with q_sample and predict the noise
    (schedule: linear_alphas_cumprod() unless given). Labels are replaced by NULL_CLASS with
    probability DROP_RATE (drop_captions)."""
    if alphas_cumprod is None:
        alphas_cumprod = linear_alphas_cumprod()
    n = len(images)
    labels = drop_captions(labels, generator)
    noise = torch.randn(images.shape, generator=generator).to(images.device)
    t = torch.randint(len(alphas_cumprod), (n,), generator=generator).to(images.device)
    return F.mse_loss(model(q_sample(images, t, noise, alphas_cumprod), t, labels), noise)


def flow_matching_loss(model: nn.Module, images: torch.Tensor, labels: torch.Tensor,
                       generator: torch.Generator) -> torch.Tensor:
    """Flow matching on the straight path x_t = (1 - t) noise + t image: the network predicts the
    velocity image - noise. Labels are replaced by NULL_CLASS with probability DROP_RATE."""
    n = len(images)
    labels = drop_captions(labels, generator)
    noise = torch.randn(images.shape, generator=generator).to(images.device)
    t = torch.rand(n, generator=generator).to(images.device)
    x_t = (1 - t.view(-1, 1, 1, 1)) * noise + t.view(-1, 1, 1, 1) * images
    return F.mse_loss(model(x_t, t * 1000, labels), images - noise)


def training_data(n: int | None = None, seed: int = TRAIN_DATA_SEED) -> tuple[torch.Tensor, torch.Tensor]:
    """One-object Shapes images at 16 px, large objects only (a small one is 4 pixels across),
    in [-1, 1]: images [n, 3, 16, 16] and their classes [n] (n defaults to TRAIN_IMAGES)."""
    return large_objects(TRAIN_IMAGES if n is None else n, seed)


def large_objects(n: int, seed: int, image_size: int = IMAGE_SIZE) -> tuple[torch.Tensor, torch.Tensor]:
    """The first n large-object images of a Shapes draw under `seed`, in [-1, 1], with their
    classes: [n, 3, image_size, image_size], [n]."""
    for draw in (2 * n + 200, 3 * n + 400):  # about half the objects are large
        batch = shapes.generate(draw, seed=seed, image_size=image_size)
        keep = (batch.size[:, 0] == 1).nonzero()[:n, 0]
        if len(keep) == n:
            break
    else:
        raise RuntimeError(f"only {len(keep)} large objects in a draw of {len(batch.images)}")
    images = batch.images[keep] * 2 - 1
    return images, shapes.pair_index(batch.colour[keep, 0], batch.shape[keep, 0])


def update_ema(average: nn.Module, model: nn.Module, step: int, decay: float = EMA_DECAY) -> None:
    """Exponential moving average of the weights, with the warm-up min(decay, (1+s)/(10+s))."""
    rate = min(decay, (1 + step) / (10 + step))
    with torch.no_grad():
        for kept, current in zip(average.parameters(), model.parameters(), strict=True):
            kept.lerp_(current, 1 - rate)


def train_denoiser(model: nn.Module, loss_fn: Callable[..., torch.Tensor], images: torch.Tensor,
                   labels: torch.Tensor, *, steps: int | None = None, seed: int = 0
                   ) -> tuple[nn.Module, list[float]]:
    """Chapter 7's training loop for both DDPM and flow matching: `steps` AdamW steps on random
    batches of BATCH_SIZE, the learning rate warming up to LEARNING_RATE over the first 10% and
    annealing to zero (one-cycle), and an exponential moving average of the weights.
    loss_fn(model, images, labels, generator) -> loss. Returns (the EMA copy in eval mode, the
    loss of every step); `model` keeps the raw weights."""
    steps = TRAIN_STEPS if steps is None else steps
    device = next(model.parameters()).device
    average = copy.deepcopy(model).requires_grad_(False)
    optimiser = torch.optim.AdamW(model.parameters(), LEARNING_RATE)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, LEARNING_RATE, total_steps=steps,
                                                   pct_start=0.1)
    generator = torch.Generator().manual_seed(seed)
    losses = []
    model.train()
    for step in progress(range(1, steps + 1), desc="denoiser"):
        pick = torch.randint(len(images), (BATCH_SIZE,), generator=generator)
        loss = loss_fn(model, images[pick].to(device), labels[pick].to(device), generator)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        schedule.step()
        update_ema(average, model, step)
        losses.append(loss.item())
    model.eval()
    return average.eval(), losses


def build_generator(seed: int = 0) -> TinyUNet:
    """The zoo's untrained generator, initialised under `seed`."""
    torch.manual_seed(seed)
    return TinyUNet()


def train_generator(model: TinyUNet, seed: int = 0) -> dict:
    """The zoo's recipe, chapter 7's flow-matching run (`train_denoiser` with
    `flow_matching_loss` on `training_data()`); `model` ends up with the EMA weights."""
    images, labels = training_data()
    average, losses = train_denoiser(model, flow_matching_loss, images, labels, seed=seed)
    model.load_state_dict(average.state_dict())
    model.eval()
    return {"final_loss": sum(losses[-50:]) / len(losses[-50:])}


@torch.no_grad()
def adherence(clip: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """How often the tiny CLIP's 24-way zero-shot choice is the intended class, for images
    [N, 3, H, W] in [0, 1] (smaller than 32 px: enlarged with nearest neighbours, as chapter 7
    scores them). Returns the accuracy of the pair, of the colour and of the shape."""
    device = next(clip.parameters()).device
    if images.shape[-1] < 32:
        images = F.interpolate(images, size=32, mode="nearest")
    prompts = clip.encode_text(tiny_clip.tokenize(shapes.class_prompts()).to(device))  # [24, D]
    chosen = (clip.encode_image(images.to(device)) @ prompts.T).argmax(1).cpu()  # [N]
    n_shapes = len(shapes.SHAPES)
    return {
        "accuracy": chosen.eq(labels).float().mean().item(),
        "colour": chosen.div(n_shapes, rounding_mode="floor").eq(labels // n_shapes).float().mean().item(),
        "shape": chosen.remainder(n_shapes).eq(labels % n_shapes).float().mean().item(),
    }


def burn(samples: torch.Tensor) -> dict[str, float]:
    """Saturation of raw sampler outputs [N, 3, H, W] in [-1, 1] units: the fraction of values
    outside [-1, 1] (they get clipped) and the mean chroma (max - min over RGB, in [0, 1] units)
    after clipping."""
    clipped = samples.abs().gt(1).float().mean().item()
    pixels = ((samples + 1) / 2).clamp(0, 1)
    chroma = (pixels.amax(1) - pixels.amin(1)).mean().item()
    return {"clipped": clipped, "chroma": chroma}


def object_centres(images: torch.Tensor, threshold: float = 0.3) -> torch.Tensor:
    """Where the object is, without labels: the centroid (x, y in pixels) of the colourful pixels,
    weighted by how far their chroma exceeds `threshold` (backgrounds are dark and grey). Images
    [N, 3, H, W] in [0, 1] -> [N, 2]; an image with no colourful pixel gets its centre."""
    chroma = images.amax(1) - images.amin(1)  # [N, H, W]
    weight = (chroma - threshold).clamp(min=0) + 1e-6
    size = images.shape[-1]
    coords = torch.arange(size, dtype=images.dtype, device=images.device) + 0.5
    x = (weight.sum(1) * coords).sum(1) / weight.sum((1, 2))
    y = (weight.sum(2) * coords).sum(1) / weight.sum((1, 2))
    return torch.stack([x, y], dim=1)


def diversity(images: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """Spread within each class, averaged over classes, for images [N, 3, H, W] in [0, 1]: the
    RMS distance (pixels) of object centres from their class's mean centre, and the mean pairwise
    L2 distance between images of the same class (per pixel value, in [0, 1] units)."""
    centres = object_centres(images)
    position, pairwise = [], []
    for label in labels.unique():
        members = labels == label
        if members.sum() < 2:
            continue
        group = centres[members]
        position.append((group - group.mean(0)).pow(2).sum(1).mean().sqrt().item())
        flat = images[members].flatten(1)
        distances = torch.cdist(flat, flat) / math.sqrt(flat.shape[1])  # RMS difference per value
        k = len(flat)
        pairwise.append((distances.sum() / (k * (k - 1))).item())
    return {"position": sum(position) / len(position), "pairwise": sum(pairwise) / len(pairwise)}
