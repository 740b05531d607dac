"""Chapter 7's repeated runs, which a CPU budget cannot fit inside the lesson (the lesson trains
each model once, under seed 0, and prints these results beside its own):

- "seeds": the DDPM and the flow-matching generator trained under seeds 0, 1, 2 at the lesson's
  budget, with the guidance table (section 7.7) and the sampler table (section 7.8) of each;
- "longer": both trained for twice the steps, three seeds: what the adherence target takes;
- "mix": the unified transformer of section 7.11 trained with three shares of drawing sequences,
  three seeds each (its code is taken from the lesson's own cells).

    .venv/bin/python scripts/ch07_runs.py                  # every part, about 15 minutes on 2 cores
    .venv/bin/python scripts/ch07_runs.py --part mix       # one part; the others are kept
    .venv/bin/python scripts/ch07_runs.py --check          # seed 0 of "seeds" again, compared

Writes utils/data/ch07_runs.json.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

import notebook_code  # noqa: E402
from runs_file import run_parts  # noqa: E402

from utils import generation, zoo  # noqa: E402

OUT = ROOT / "utils" / "data" / "ch07_runs.json"
LESSON = ROOT / "lessons" / "07_generation.ipynb"
SEEDS = (0, 1, 2)
SCALES = (0, 1, 3, 7)
STEP_COUNTS = (4, 8, 16, 32)
SHARES = (0.25, 0.5, 0.75)


def images01(raw: torch.Tensor) -> torch.Tensor:
    return (raw.cpu().clamp(-1, 1) + 1) / 2


def guidance_rows(clip, model) -> dict:
    """Section 7.7's table for one model: 240 samples (10 a class), 16 Euler steps, per scale."""
    asked = torch.arange(240) % 24
    rows = {}
    for w in SCALES:
        raw = generation.euler_sample(model, asked, steps=16, w=w, seed=0).cpu()
        rows[str(w)] = {**generation.adherence(clip, images01(raw), asked),
                        **generation.diversity(images01(raw), asked), **generation.burn(raw)}
    return rows


def sampler_rows(clip, ddpm, flow) -> dict:
    """Section 7.8's table: adherence of 96 samples at w = 3 by sampler and network calls."""
    asked = torch.arange(96) % 24
    abar = generation.linear_alphas_cumprod()
    samplers = {
        "DDPM ancestral": lambda n: generation.ddpm_sample(ddpm, asked, abar, steps=n, eta=1.0),
        "DDIM": lambda n: generation.ddpm_sample(ddpm, asked, abar, steps=n, eta=0.0),
        "flow matching, Euler": lambda n: generation.euler_sample(flow, asked, steps=n),
    }
    return {name: {str(n): generation.adherence(clip, images01(sample(n)), asked)["accuracy"]
                   for n in STEP_COUNTS} for name, sample in samplers.items()}


def trained_pair(seed: int, steps: int) -> dict:
    images, labels = generation.training_data()
    models = {}
    for name, loss in (("ddpm", generation.ddpm_loss), ("flow", generation.flow_matching_loss)):
        torch.manual_seed(seed)
        models[name], _ = generation.train_denoiser(generation.TinyUNet(), loss, images, labels,
                                                    steps=steps, seed=seed)
    return models


def seeds_part(clip, seeds=SEEDS) -> dict:
    runs = {}
    for seed in seeds:
        models = trained_pair(seed, generation.TRAIN_STEPS)
        runs[str(seed)] = {"guidance": guidance_rows(clip, models["flow"]),
                           "samplers": sampler_rows(clip, models["ddpm"], models["flow"])}
    return runs


def longer_part(clip) -> dict:
    """Adherence at w = 3, 16 steps (240 samples) after twice the lesson's training steps."""
    steps, asked, abar = 2 * generation.TRAIN_STEPS, torch.arange(240) % 24, generation.linear_alphas_cumprod()
    runs = {"steps": steps}
    for seed in SEEDS:
        models = trained_pair(seed, steps)
        flow = generation.euler_sample(models["flow"], asked, steps=16, w=3)
        ddpm = generation.ddpm_sample(models["ddpm"], asked, abar, steps=16, w=3, eta=1.0)
        runs[str(seed)] = {"flow matching, Euler": generation.adherence(clip, images01(flow), asked),
                           "DDPM ancestral": generation.adherence(clip, images01(ddpm), asked)}
    return runs


def mix_part(clip) -> dict:
    """Section 7.11's unified model, by share of drawing sequences and seed (lesson code)."""
    names = {"VQVAE", "train_autoencoder", "vq_loss", "restart_dead_codes", "sequences",
             "unified_batches", "caption_images", "draw_images", "train_unified", "CODES"}
    program = notebook_code.prelude(notebook_code.code_cells(LESSON), names)
    ns: dict = {"device": torch.device("cpu")}
    exec(compile(program, str(LESSON), "exec"), ns)  # noqa: S102 - the book's own code
    images32, labels32 = generation.large_objects(8_000, seed=11, image_size=32)
    pool, pool_labels = generation.large_objects(1200, seed=99, image_size=32)
    keep = torch.cat([(pool_labels == c).nonzero()[:10, 0] for c in range(24)])
    test32, test_labels32 = pool[keep], pool_labels[keep]  # 10 of each class, as the lesson
    ns.update(images32=images32, labels32=labels32, dead_counts=[])
    torch.manual_seed(0)  # the lesson's VQ-VAE, as the lesson makes it
    vqvae = ns["VQVAE"]()
    with torch.no_grad():
        z = vqvae.encoder(images32[:64]).permute(0, 2, 3, 1).flatten(0, 2)
        vqvae.codebook.copy_(z[torch.randperm(len(z))[:ns["CODES"]]])
    vqvae = ns["train_autoencoder"](vqvae, ns["vq_loss"], images32, steps=500,
                                    every_100=ns["restart_dead_codes"])
    with torch.no_grad():
        ns["train_tokens"] = torch.cat([vqvae.tokens(chunk) for chunk in images32.split(1000)])
        test_tokens = vqvae.tokens(test32)
    ns["vqvae"] = vqvae
    asked = torch.arange(240) % 24
    runs = {}
    for share in SHARES:
        runs[str(share)] = {}
        for seed in SEEDS:
            model = ns["train_unified"](share, seed=seed)
            exact = ns["caption_images"](model, test_tokens).eq(test_labels32).float().mean().item()
            drawn = generation.adherence(clip, ns["draw_images"](model, asked), asked)["accuracy"]
            runs[str(share)][str(seed)] = {"caption exact match": exact, "drawing adherence": drawn}
            print(f"  mix {share} seed {seed}: caption {exact:.2f}, drawing {drawn:.2f}", flush=True)
    return runs


PARTS = {"seeds": seeds_part, "longer": longer_part, "mix": mix_part}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=sorted(PARTS), action="append",
                        help="run only these parts (default: all); the file keeps the others")
    parser.add_argument("--check", action="store_true", help="re-run seed 0 of 'seeds' and compare")
    args = parser.parse_args()
    torch.set_num_threads(2)
    clip, _ = zoo.load("tiny_clip", device="cpu")
    stored = json.loads(OUT.read_text()) if OUT.exists() else {}
    if args.check:
        fresh = seeds_part(clip, seeds=(0,))["0"]["guidance"]
        kept = stored["seeds"]["0"]["guidance"]
        worst = max(abs(fresh[w]["accuracy"] - kept[w]["accuracy"]) for w in kept)
        print(f"seed 0: largest adherence difference from the stored file {worst:.3f}")
        sys.exit(0 if worst <= 0.05 else 1)
    parts = {name: functools.partial(part, clip) for name, part in PARTS.items()}
    run_parts(parts, args.part, OUT, "scripts/ch07_runs.py")


if __name__ == "__main__":
    main()
