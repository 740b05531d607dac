"""Chapter 9's repeated runs, which the lesson's CPU budget cannot fit (the lesson runs each
experiment once, under seed 0, and prints these results beside its own):

- "judges": the three judges of section 9.10 (the position and the answer judge on balanced pairs,
  the position judge on length-biased pairs), seeds 0 to 2, at the lesson's 300 steps and at 1,500,
  with their accuracy on their own training pairs and on new ones, their flips, the two protocols
  and the verbosity tests;
- "aligned_captions": chapter 8's alignment recipe under seeds 0 to 2, with the captions it leaves
  (the lesson's report measures the zoo's model, seed 0, only);
- "contamination": section 9.11's fine-tuning on the leaked set, seeds 0 to 2 (the leak itself is
  the same; the seed draws the batches), with exact match on the leaked and the clean halves.

The judges and the contamination run the lesson's own cells (in order, up to the cell that defines
what the part needs), so seed 0 here equals the lesson's run.

    .venv/bin/python scripts/ch09_runs.py                        # every part, about 20 minutes on 2 cores
    .venv/bin/python scripts/ch09_runs.py --part contamination   # one part; the other is kept

Writes utils/data/ch09_runs.json.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

import notebook_code  # noqa: E402
from runs_file import run_parts  # noqa: E402

OUT = ROOT / "utils" / "data" / "ch09_runs.json"
LESSON = ROOT / "lessons" / "09_evaluation.ipynb"
SEEDS = (0, 1, 2)
STEPS = (300, 1500)  # the lesson's budget, and five times it
CHOSEN_LESSON = [LESSON]


def lesson_until(marker: str, lesson: Path | None = None) -> dict:
    """The lesson's namespace after running its code cells in order, up to the one holding `marker`
    (the setup cell and the real-thing section are never reached: the parts stop before them)."""
    import matplotlib

    matplotlib.use("Agg")
    from utils import runtime

    lesson = lesson or CHOSEN_LESSON[0]
    namespace: dict = {"device": runtime.setup(chapter=9, seed=0, quiet=True)}
    for source in notebook_code.code_cells(lesson)[1:]:  # the setup cell is replaced above
        if "ch09_runs" in source or "seed_runs" in source:
            continue  # the cells that print this script's own results
        exec(compile(source, str(lesson), "exec"), namespace)  # noqa: S102 - the book's own code
        if marker in source:
            return namespace
    raise SystemExit(f"{lesson.name}: no code cell holds {marker!r}")


def _share(values: np.ndarray, label: str) -> float:
    return float(100 * (values == label).mean())


def judges_part() -> dict:
    """Section 9.10's judges under three seeds, at the lesson's 300 steps and at 1,500."""
    ns = lesson_until("length_biased = answer_pairs")
    train_judge, verdicts, answer_pairs = ns["train_judge"], ns["verdicts"], ns["answer_pairs"]
    short, kinds, scenes = ns["short"], ns["kinds"], ns["judged_scenes"]
    features, judged = ns["judge_features"], ns["judged_features"]
    tests = {"both short": short, "wrong answer padded": answer_pairs(scenes, 5, 0.0, 1.0),
             "right answer padded": answer_pairs(scenes, 5, 1.0, 0.0)}
    coin = np.random.default_rng(6).random(len(short)) < 0.5
    runs: dict = {}
    for steps in STEPS:
        runs[str(steps)] = {}
        for seed in SEEDS:
            row: dict = {}
            for name, data, verdict in (("position", ns["balanced"], "position"),
                                        ("answer", ns["balanced"], "answer"),
                                        ("length-biased position", ns["length_biased"], "position")):
                judge = train_judge(data, features, verdict, steps=steps, seed=seed)
                first = verdicts(judge, judged, short, True, verdict)
                second = verdicts(judge, judged, short, False, verdict)
                seen = data[:1500]  # its own training pairs, both orders
                trained = [verdicts(judge, features, seen, o, verdict) for o in (True, False)]
                once = np.where(coin, first, second)
                agree = (first == second) & (first != "neither")
                row[name] = {
                    "flips": {kind: float(100 * (first[kinds == kind] != second[kinds == kind]).mean())
                              for kind in ("colour", "shape", "count")}
                    | {"all": float(100 * (first != second).mean())},
                    "right_first": _share(first, "right"), "right_second": _share(second, "right"),
                    "train_right": float(np.mean([_share(v, "right") for v in trained])),
                    "test_right": float(np.mean([_share(first, "right"), _share(second, "right")])),
                    "once_right": float(100 * (once[once != "neither"] == "right").mean()),
                    "tie_decided": float(100 * agree.mean()),
                    "tie_right": float(100 * (first[agree] == "right").mean()) if agree.any() else float("nan"),
                    "verbosity": {test: float(np.mean([_share(verdicts(judge, judged, pairs, o, verdict), "right")
                                                       for o in (True, False)]))
                                  for test, pairs in tests.items()},
                }
            runs[str(steps)][str(seed)] = row
            print(f"  {steps} steps, seed {seed}: " + ", ".join(
                f"{k} flips {v['flips']['all']:.1f} train {v['train_right']:.1f}" for k, v in row.items()), flush=True)
    return runs


def aligned_captions_part() -> dict:
    """Chapter 8's alignment recipe (the zoo's "tiny_vlm_dpo", `alignment.train_aligned`) under three
    seeds, scored on what chapter 8 did not measure: captions (CIDEr-D against the canonical caption)."""
    from utils import alignment, evaluation, tiny_vlm, zoo

    base, _ = zoo.load("tiny_vlm", device="cpu", quiet=True)
    test = tiny_vlm.test_set()
    truths = [[" ".join(tiny_vlm.words(c))] for c in test.captions]

    def cider(model) -> float:
        features = model.features(test.batch.images)
        said = tiny_vlm.generate(model, features, [tiny_vlm.CAPTION_PROMPT] * len(truths))
        return float(evaluation.cider_d(said, truths).mean())

    runs: dict = {"before": cider(base)}
    for seed in SEEDS:
        model = tiny_vlm.build_tiny_vlm(seed)
        scores = alignment.train_aligned(model, seed=seed)
        runs[str(seed)] = {"cider_d": cider(model), "vqa_count": scores["vqa_count"],
                           "pope_adversarial_f1": scores["pope_adversarial_f1"]}
        print(f"  seed {seed}: caption CIDEr-D {runs[str(seed)]['cider_d']:.2f}", flush=True)
    return runs


def contamination_part() -> dict:
    """Section 9.11's leak, fine-tuned under three seeds."""
    ns = lesson_until("def fine_tune")
    leaked, before = ns["leaked"], ns["exact"]
    runs: dict = {}
    for seed in SEEDS:
        after = ns["caption_exact"](ns["fine_tune"](ns["leak_images"], ns["leak_captions"], seed=seed))
        change = {name: float(100 * (after[rows].mean() - before[rows].mean()))
                  for name, rows in (("leaked", leaked), ("clean", ~leaked))}
        runs[str(seed)] = {"after_leaked": float(100 * after[leaked].mean()),
                           "after_clean": float(100 * after[~leaked].mean()),
                           "change": change, "inflation": change["leaked"] - change["clean"]}
        print(f"  seed {seed}: inflation {runs[str(seed)]['inflation']:+.1f} points", flush=True)
    return runs


PARTS = {"judges": judges_part, "contamination": contamination_part, "aligned_captions": aligned_captions_part}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=sorted(PARTS), action="append",
                        help="run only these parts (default: all); the file keeps the others")
    parser.add_argument("--lesson", type=Path, help="the lesson notebook whose cells to run (default: "
                        "lessons/09_evaluation.ipynb)")
    args = parser.parse_args()
    if args.lesson:
        CHOSEN_LESSON[0] = args.lesson
    torch.set_num_threads(2)
    run_parts(PARTS, args.part, OUT, "scripts/ch09_runs.py")


if __name__ == "__main__":
    main()
