"""utils.generation: the forward process and samplers against diffusers, guidance's convention,
the flow-matching sampler, and the measures chapter 7 scores generated images by."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from utils import generation as gen
from utils import shapes


class LinearDenoiser(nn.Module):
    """A stand-in network whose output is a fixed linear function of x, t and the label."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(0.5))

    def forward(self, x, t, labels):
        shift = (labels.float() / 10 + t.float() / 2000).view(-1, 1, 1, 1)
        return self.scale * x + shift


def test_schedule_and_q_sample_match_diffusers():
    diffusers = pytest.importorskip("diffusers")
    scheduler = diffusers.DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear")
    abar = gen.linear_alphas_cumprod()
    assert torch.equal(abar, scheduler.alphas_cumprod)
    generator = torch.Generator().manual_seed(0)
    x0 = torch.randn(6, 3, 16, 16, generator=generator)
    noise = torch.randn(6, 3, 16, 16, generator=generator)
    t = torch.tensor([0, 1, 100, 500, 900, 999])
    ours = gen.q_sample(x0, t, noise, abar)
    assert (ours - scheduler.add_noise(x0, noise, t)).abs().max() < 1e-6
    assert torch.allclose(ours[0], x0[0], atol=0.05), "at t = 0 the image is almost untouched"


def test_trailing_timesteps_match_diffusers():
    diffusers = pytest.importorskip("diffusers")
    scheduler = diffusers.DDIMScheduler(num_train_timesteps=1000, timestep_spacing="trailing")
    for n in (4, 8, 16, 32):
        scheduler.set_timesteps(n)
        assert gen.trailing_timesteps(n) == scheduler.timesteps.tolist()


@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_sampler_matches_diffusers_ddim_and_ddpm(eta):
    diffusers = pytest.importorskip("diffusers")
    model, labels = LinearDenoiser(), torch.tensor([0, 3, 7, 23])
    abar = gen.linear_alphas_cumprod()
    ours = gen.ddpm_sample(model, labels, abar, steps=8, w=1, eta=eta, seed=0)
    common = dict(num_train_timesteps=1000, clip_sample=True, timestep_spacing="trailing")
    if eta == 0:
        scheduler = diffusers.DDIMScheduler(**common, set_alpha_to_one=True)
    else:
        scheduler = diffusers.DDPMScheduler(**common)
    scheduler.set_timesteps(8)
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(4, 3, 16, 16, generator=generator)
    for t in scheduler.timesteps:
        eps = model(x, t.repeat(4), labels)
        if eta == 0:
            x = scheduler.step(eps, t, x, eta=0.0, use_clipped_model_output=True).prev_sample
        else:  # the same noise draws as ours: one [B, C, H, W] draw per step but the last
            x = scheduler.step(eps, t, x, generator=generator).prev_sample
    assert (ours - x).abs().max() < 1e-4


def test_guidance_convention():
    model, x = LinearDenoiser(), torch.randn(4, 3, 8, 8)
    t, labels = torch.full((4,), 500), torch.tensor([1, 2, 3, 4])
    conditional = model(x, t, labels)
    unconditional = model(x, t, torch.full_like(labels, gen.NULL_CLASS))
    assert torch.allclose(gen.guided(model, x, t, labels, 1.0), conditional)
    assert torch.allclose(gen.guided(model, x, t, labels, 0.0), unconditional)
    expected = unconditional + 3 * (conditional - unconditional)
    assert torch.allclose(gen.guided(model, x, t, labels, 3.0), expected, atol=1e-6)


def test_euler_sampler_integrates_a_known_velocity():
    class ToTarget(nn.Module):  # v = target - noise along the straight path, exactly
        def __init__(self):
            super().__init__()
            self.dummy = nn.Parameter(torch.zeros(()))

        def forward(self, x, t, labels):
            target = labels.float().view(-1, 1, 1, 1) / 24
            s = (t / 1000).view(-1, 1, 1, 1)
            return (target - x) / (1 - s)

    labels = torch.tensor([0, 12, 23])
    out = gen.euler_sample(ToTarget(), labels, steps=4, w=1, size=4)
    assert torch.allclose(out, (labels.float() / 24).view(-1, 1, 1, 1).expand_as(out), atol=1e-5)


def test_unet_shapes_and_time_matter():
    torch.manual_seed(0)
    model = gen.TinyUNet(width=16, cond_dim=32)
    x, labels = torch.randn(2, 3, 16, 16), torch.tensor([0, gen.NULL_CLASS])
    early, late = model(x, torch.tensor([0, 0]), labels), model(x, torch.tensor([900, 900]), labels)
    assert early.shape == x.shape and not torch.allclose(early, late)


@pytest.fixture(scope="module")
def real():
    batch = shapes.generate(240, seed=5, image_size=16, min_objects=1, max_objects=1)
    return batch


def test_object_centres_find_the_object(real):
    found = gen.object_centres(real.images)
    error = (found - real.centre[:, 0]).norm(dim=1)
    assert error.median() < 0.5 and error.mean() < 1.0


def test_burn_and_diversity_on_real_images(real):
    as_samples = real.images * 2 - 1
    assert gen.burn(as_samples)["clipped"] == 0
    assert gen.burn(as_samples * 3)["clipped"] > 0.1
    labels = shapes.pair_index(real.colour[:, 0], real.shape[:, 0])
    spread = gen.diversity(real.images, labels)
    copies = real.images[labels.argsort()][:1].expand(240, -1, -1, -1)  # one image, repeated
    assert spread["position"] > 2 and spread["pairwise"] > 0.1
    assert gen.diversity(copies, labels)["pairwise"] < 1e-3


def test_adherence_of_real_images_is_high_and_of_noise_near_chance(real):
    from utils import zoo

    clip, _ = zoo.load("tiny_clip", device="cpu", quiet=True)
    labels = shapes.pair_index(real.colour[:, 0], real.shape[:, 0])
    scores = gen.adherence(clip, real.images, labels)
    assert scores["accuracy"] > 0.85 and scores["colour"] > 0.95
    noise = torch.rand(240, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    assert gen.adherence(clip, noise, labels)["accuracy"] < 0.2


def test_zoo_recipe_trains_and_lowers_the_loss(monkeypatch):
    monkeypatch.setattr(gen, "TRAIN_STEPS", 3)
    monkeypatch.setattr(gen, "TRAIN_IMAGES", 256)
    model = gen.build_generator()
    metrics = gen.train_generator(model)
    assert math.isfinite(metrics["final_loss"]) and not model.training


def test_the_runs_file_holds_every_part_the_lesson_prints():
    """utils/data/ch07_runs.json (scripts/ch07_runs.py): three seeds of every table the lesson reads."""
    import json
    from importlib import resources

    runs = json.loads(resources.files("utils.data").joinpath("ch07_runs.json").read_text())
    assert runs["script"] == "scripts/ch07_runs.py"
    assert set(runs["seeds"]) == {"0", "1", "2"}
    for run in runs["seeds"].values():
        assert set(run["guidance"]) == {"0", "1", "3", "7"}
        assert set(run["samplers"]) == {"DDPM ancestral", "DDIM", "flow matching, Euler"}
        assert all(0 <= v <= 1 for row in run["samplers"].values() for v in row.values())
    assert runs["longer"]["steps"] == 2 * gen.TRAIN_STEPS
    assert set(runs["mix"]) == {"0.25", "0.5", "0.75"}
    assert all(set(by_seed) == {"0", "1", "2"} for by_seed in runs["mix"].values())
