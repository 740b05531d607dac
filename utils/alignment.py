"""Alignment against object hallucination (chapter 8), kept for chapter 9 and the model zoo.

Chapter 8 writes each of these out; this module keeps the same names and signatures (a test checks
that the lesson's and these agree):

- `pope_questions` builds a POPE-style probe (Li et al., 2023): for every image one "is there ...?"
  question about an object it shows (answer "yes") and one about an object it does not show (answer
  "no") for each of three kinds of negative - random, popular (one of the absent pairs most
  frequent in the training scenes) and adversarial (sharing a colour or a shape with an object in the picture);
- `pope_scores` gives accuracy, precision, recall, F1, false-"yes" rate and yes-ratio per kind;
- `preference_pairs`, `sequence_logprob`, `dpo_loss` and `align`: Direct Preference Optimisation
  (Rafailov et al., 2023) on the TinyVLM, with a likelihood term on the chosen answers;
- `train_aligned`: the zoo's recipe for "tiny_vlm_dpo" (the zoo's TinyVLM, aligned).

    from utils import alignment, zoo
    aligned, meta = zoo.load("tiny_vlm_dpo")
"""

from __future__ import annotations

import copy
from collections import Counter
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from utils import runtime, shapes, tiny_vlm

NEGATIVES: tuple[str, ...] = ("random", "popular", "adversarial")
POPULAR_TOP = 6  # a popular negative is drawn from the 6 most frequent absent pairs
ANCHOR_KINDS: tuple[str, ...] = ("colour", "shape", "count", "where")
# The recipe of the zoo's aligned model (chapter 8, section 8.11).
PAIR_SCENES, PAIR_SEED = 4000, 31
STEPS, BETA, LEARNING_RATE, BATCH_SIZE, SFT_WEIGHT = 600, 0.1, 1e-3, 64, 1.0

Pair = tuple[int, int]  # (colour index, shape index)


def present_pairs(batch: shapes.ShapesBatch, i: int) -> set[Pair]:
    """The (colour, shape) pairs of the objects in image i."""
    return {(shapes.colour_index(o["colour"]), shapes.shape_index(o["shape"])) for o in batch.objects(i)}


def pair_frequency(batch: shapes.ShapesBatch) -> list[Pair]:
    """Every (colour, shape) pair, most frequent in `batch`'s objects first (ties: pair order)."""
    counts = Counter(pair for i in range(len(batch)) for pair in present_pairs(batch, i))
    every = list(np.ndindex(len(shapes.COLOURS), len(shapes.SHAPES)))
    return sorted(every, key=lambda pair: -counts[pair])


def _question(pair: Pair) -> str:
    return f"is there {shapes.describe(pair[0], pair[1])}?"


def pope_questions(batch: shapes.ShapesBatch, popular: Sequence[Pair], seed: int = 0) -> list[dict]:
    """Per image: one "yes" question (an object shown) and one "no" question per kind of negative.

    random: any absent pair; popular: one of the POPULAR_TOP absent pairs that come first in `popular`
    (most frequent in training); adversarial: an absent pair sharing a colour or a shape with a shown object.
    Each dict: question, answer, image_index, negative ("none" for the "yes" question)."""
    rng = np.random.default_rng([seed, 8])
    every = list(np.ndindex(len(shapes.COLOURS), len(shapes.SHAPES)))
    asked = []
    for i in range(len(batch)):
        present = sorted(present_pairs(batch, i))
        absent = [pair for pair in every if pair not in present]
        near = [p for p in absent if any(p[0] == q[0] or p[1] == q[1] for q in present)]
        top = [pair for pair in popular if pair not in present][:POPULAR_TOP]
        chosen = {
            "none": present[int(rng.integers(len(present)))],
            "random": absent[int(rng.integers(len(absent)))],
            "popular": top[int(rng.integers(len(top)))],
            "adversarial": (near or absent)[int(rng.integers(len(near or absent)))],
        }
        for negative, pair in chosen.items():
            asked.append({"question": _question(pair), "answer": "yes" if negative == "none" else "no",
                          "image_index": i, "negative": negative})
    return asked


def pope_scores(said: Sequence[str], asked: Sequence[dict]) -> dict[str, dict[str, float]]:
    """Per kind of negative (each with all the "yes" questions): accuracy, precision, recall and F1
    of answering "yes", the false-"yes" rate on the negatives, and the share of "yes" answers."""
    scores = {}
    for negative in NEGATIVES:
        rows = [(s, q["answer"]) for s, q in zip(said, asked, strict=True) if q["negative"] in ("none", negative)]
        yes = np.array([s == "yes" for s, _ in rows])
        truth = np.array([a == "yes" for _, a in rows])
        hits = int((yes & truth).sum())
        precision = hits / max(1, int(yes.sum()))
        recall = hits / max(1, int(truth.sum()))
        scores[negative] = {
            "accuracy": float((yes == truth).mean()), "precision": precision, "recall": recall,
            "f1": 2 * precision * recall / max(1e-12, precision + recall),
            "false_yes": float(yes[~truth].mean()), "yes_ratio": float(yes.mean()),
        }
    return scores


def preference_pairs(batch: shapes.ShapesBatch, popular: Sequence[Pair], seed: int = 0) -> list[dict]:
    """Preference pairs from the ground truth: existence questions (the true answer chosen, the other
    rejected) and anchor questions of the other kinds (the true answer chosen, a wrong one of the same
    kind rejected). Each dict: prompt, chosen, rejected, image_index, kind ("exists" or an anchor kind)."""
    rng = np.random.default_rng([seed, 9])
    asked = pope_questions(batch, popular, seed)  # 4 per image: "yes", then the 3 negatives
    kept = [q for q in asked if q["negative"] == "none"]  # balanced: each "yes" and one negative
    kept += [asked[4 * i + 1 + int(k)] for i, k in enumerate(rng.integers(3, size=len(batch)))]
    pairs = [{"prompt": q["question"], "chosen": q["answer"], "rejected": "no" if q["answer"] == "yes" else "yes",
              "image_index": q["image_index"], "kind": "exists"} for q in kept]
    pool = {"colour": shapes.COLOURS, "shape": shapes.SHAPES, "where": shapes.WHERE_ANSWERS,
            "count": tuple(str(n) for n in range(1, shapes.MAX_OBJECTS + 1))}
    for qa in shapes.questions(batch, seed=seed, kinds=ANCHOR_KINDS):
        wrong = [word for word in pool[qa["kind"]] if word != qa["answer"]]
        rejected = wrong[int(rng.integers(len(wrong)))]
        pairs.append({"prompt": qa["question"], "chosen": qa["answer"], "rejected": rejected,
                      "image_index": qa["image_index"], "kind": qa["kind"]})
    return pairs


def sequence_logprob(model: tiny_vlm.TinyVLM, features: torch.Tensor, tokens: torch.Tensor,
                     labels: torch.Tensor) -> torch.Tensor:
    """log p(answer | image, prompt) [B]: the sum of the log-probabilities of the scored tokens."""
    logits = model(features, tokens)  # [B, L - 1 + K, V]
    targets = tiny_vlm.label_positions(labels, tokens, features.shape[1])[:, 1:]  # [B, L - 2 + K]
    log_probs = logits[:, :-1].log_softmax(-1)
    scored = targets != tiny_vlm.IGNORE
    picked = log_probs.gather(-1, targets.clamp(min=0)[..., None])[..., 0]
    return (picked * scored).sum(1)


def dpo_loss(policy_chosen: torch.Tensor, policy_rejected: torch.Tensor, reference_chosen: torch.Tensor,
             reference_rejected: torch.Tensor, beta: float) -> torch.Tensor:
    """Rafailov et al. (2023), eq. 7: -log sigmoid(beta * (log-ratio of chosen - log-ratio of
    rejected)), averaged over the batch; each argument [B] is a sequence log-probability."""
    margin = (policy_chosen - reference_chosen) - (policy_rejected - reference_rejected)
    return -F.logsigmoid(beta * margin).mean()


def align(model: tiny_vlm.TinyVLM, features: torch.Tensor, pairs: Sequence[dict], steps: int = STEPS,
          beta: float = BETA, lr: float = LEARNING_RATE, sft_weight: float = SFT_WEIGHT,
          dpo_weight: float = 1.0, seed: int = 0) -> tiny_vlm.TinyVLM:
    """A copy of `model` trained on `pairs` (features [N, K, F] of their images): dpo_weight x DPO
    against the frozen `model` plus sft_weight x the per-token NLL of the chosen answers. Every batch
    is half existence pairs, half anchor pairs; the tower stays frozen. dpo_weight=0 is the SFT control."""
    device = runtime.device_of(model)
    prompts = [p["prompt"] for p in pairs]
    chosen_tokens, chosen_labels = tiny_vlm.encode(prompts, [p["chosen"] for p in pairs], 24)
    rejected_tokens, rejected_labels = tiny_vlm.encode(prompts, [p["rejected"] for p in pairs], 24)
    image = torch.tensor([p["image_index"] for p in pairs])
    existence = torch.tensor([p["kind"] == "exists" for p in pairs]).nonzero()[:, 0]
    anchors = torch.tensor([p["kind"] != "exists" for p in pairs]).nonzero()[:, 0]
    reference = copy.deepcopy(model).eval().requires_grad_(False)
    policy = copy.deepcopy(model).train()
    trainable = [p for name, p in policy.named_parameters() if not name.startswith("tower.")]
    optimizer = torch.optim.AdamW(trainable, lr=lr, weight_decay=0.0)
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    half = BATCH_SIZE // 2
    for _ in range(steps):
        pick = torch.cat([existence[torch.randint(len(existence), (half,), generator=generator)],
                          anchors[torch.randint(len(anchors), (half,), generator=generator)]])
        feats = features[image[pick]].to(device)
        good = (chosen_tokens[pick].to(device), chosen_labels[pick].to(device))
        bad = (rejected_tokens[pick].to(device), rejected_labels[pick].to(device))
        policy_good, policy_bad = sequence_logprob(policy, feats, *good), sequence_logprob(policy, feats, *bad)
        with torch.no_grad():
            reference_good = sequence_logprob(reference, feats, *good)
            reference_bad = sequence_logprob(reference, feats, *bad)
        answer_tokens = (good[1] != tiny_vlm.IGNORE).sum(1)
        loss = dpo_weight * dpo_loss(policy_good, policy_bad, reference_good, reference_bad, beta) \
            + sft_weight * (-policy_good / answer_tokens).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return policy.eval()


def train_aligned(model: tiny_vlm.TinyVLM, seed: int = 0) -> dict:
    """The zoo's recipe for "tiny_vlm_dpo": the zoo's TinyVLM, aligned with `align` on preference
    pairs from PAIR_SCENES training scenes. Loads into `model`; returns the POPE and VQA scores."""
    from utils import zoo

    device = runtime.device_of(model)
    base, _ = zoo.load("tiny_vlm", device=device, quiet=True)
    train_scenes = tiny_vlm.scenes(PAIR_SCENES, PAIR_SEED)
    popular = pair_frequency(tiny_vlm.scenes(tiny_vlm.TRAIN_IMAGES, tiny_vlm.TRAIN_SEED))
    features = base.features(train_scenes.images.to(device))
    aligned = align(base, features, preference_pairs(train_scenes, popular, seed), seed=seed)
    model.load_state_dict(aligned.state_dict())
    model.eval()
    return probe(model, popular)


@torch.no_grad()
def probe(model: tiny_vlm.TinyVLM, popular: Sequence[Pair], n: int = 500) -> dict:
    """POPE scores on `n` test images (the TinyVLM's test seed) and the VQA accuracies, flat."""
    test = tiny_vlm.scenes(n, tiny_vlm.TEST_SEED)
    asked = pope_questions(test, popular, seed=5)
    features = model.features(test.images.to(runtime.device_of(model)))
    said = tiny_vlm.first_token_answers(model, features, [q["question"] for q in asked],
                                        torch.tensor([q["image_index"] for q in asked]))
    flat = {f"pope_{negative}_{name}": value
            for negative, scores in pope_scores(said, asked).items() for name, value in scores.items()}
    return {**flat, **tiny_vlm.evaluate(model, boxes=False, captions=False)}
