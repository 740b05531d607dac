"""Chapter 8's repeated runs, which a CPU budget cannot fit inside the lesson (the lesson runs each
experiment once, under seed 0, and prints these results beside its own):

- "data": the tiny CLIP trained on the four training sets of section 8.9 (raw, image-filtered,
  filtered and recaptioned), seeds 0 to 4 at the lesson's 400 steps and seeds 0 to 2 at 800 steps
  (its code is taken from the lesson's own cells);
- "mix": the TinyVLM's whole recipe with four shares of questions in stage 2 (section 8.10), three
  seeds each (share 0.75 under seed 0 is the zoo's model);
- "alignment": DPO with the likelihood term, the SFT control without DPO, and DPO without the
  likelihood term (section 8.11), three seeds each, scored by the POPE-style probe and the VQA
  questions.

    .venv/bin/python scripts/ch08_runs.py                     # every part, about 35 minutes on 2 cores
    .venv/bin/python scripts/ch08_runs.py --part alignment    # one part; the others are kept

Writes utils/data/ch08_runs.json.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

import notebook_code  # noqa: E402
from runs_file import run_parts  # noqa: E402

from utils import alignment, tiny_vlm, zoo  # noqa: E402

OUT = ROOT / "utils" / "data" / "ch08_runs.json"
LESSON = ROOT / "lessons" / "08_data_at_scale.ipynb"
SHARES = (0.25, 0.5, 0.75, 1.0)


def data_part() -> dict:
    """The four training sets of section 8.9, built by the lesson's own cells (run in order up to
    the one that defines `train_clip_on`, the widget left out); the tiny CLIP on each."""
    import matplotlib

    matplotlib.use("Agg")
    namespace: dict = {}
    for source in notebook_code.code_cells(LESSON):
        if "ipywidgets" in source:
            continue
        exec(compile(source, str(LESSON), "exec"), namespace)  # noqa: S102 - the book's own code
        if "def train_clip_on" in source:
            break
    runs: dict = {}
    for steps, seeds in ((400, range(5)), (800, range(3))):
        runs[str(steps)] = {}
        for seed in seeds:
            row = {name: namespace["train_clip_on"](*data, seed=seed, steps=steps)
                   for name, data in namespace["training_sets"].items()}
            runs[str(steps)][str(seed)] = row
            print(f"  {steps} steps, seed {seed}:", {k: round(v["held_out"], 3) for k, v in row.items()}, flush=True)
    return runs


def mix_part() -> dict:
    """The TinyVLM's recipe (chapter 5) with each share of questions in stage 2."""
    runs: dict = {}
    for share in SHARES:
        runs[str(share)] = {}
        for seed in (0, 1, 2):
            model = tiny_vlm.build_tiny_vlm(seed)
            scores = tiny_vlm.train(model, seed=seed, question_share=share)
            runs[str(share)][str(seed)] = scores
            print(f"  share {share} seed {seed}: caption {scores['caption_exact_match']:.1f}, "
                  f"VQA {scores['vqa_all']:.1f}", flush=True)
    return runs


def alignment_part() -> dict:
    """DPO plus the likelihood term, the SFT control and DPO alone, three seeds each, on the zoo's TinyVLM."""
    base, _ = zoo.load("tiny_vlm", device="cpu", quiet=True)
    popular = alignment.pair_frequency(tiny_vlm.scenes(tiny_vlm.TRAIN_IMAGES, tiny_vlm.TRAIN_SEED))
    runs: dict = {"before": alignment.probe(base, popular)}
    train_scenes = tiny_vlm.scenes(alignment.PAIR_SCENES, alignment.PAIR_SEED)
    features = base.features(train_scenes.images)
    for arm, dpo_weight, sft_weight in (("dpo", 1.0, 1.0), ("sft", 0.0, 1.0), ("dpo_only", 1.0, 0.0)):
        runs[arm] = {}
        for seed in (0, 1, 2):
            pairs = alignment.preference_pairs(train_scenes, popular, seed)
            model = alignment.align(base, features, pairs, seed=seed, dpo_weight=dpo_weight,
                                    sft_weight=sft_weight)
            runs[arm][str(seed)] = alignment.probe(model, popular)
            print(f"  {arm} seed {seed}: false yes (adversarial) "
                  f"{runs[arm][str(seed)]['pope_adversarial_false_yes']:.3f}", flush=True)
    return runs


PARTS = {"data": data_part, "mix": mix_part, "alignment": alignment_part}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=sorted(PARTS), action="append",
                        help="run only these parts (default: all); the file keeps the others")
    args = parser.parse_args()
    torch.set_num_threads(2)
    run_parts(PARTS, args.part, OUT, "scripts/ch08_runs.py")


if __name__ == "__main__":
    main()
