"""Evaluation (chapter 9): the metrics the field quotes, confidence intervals, and the report of the
book's own models.

Chapter 9 writes each metric out and checks it against the implementation people publish with
(sacrebleu, pycocoevalcap, scipy, torchmetrics, jiwer); this module keeps the same names and
signatures for later chapters and for a reader's own models (a test checks that the lesson's and
these agree):

- `bootstrap_interval`: a percentile bootstrap over the units that were sampled (images,
  utterances), for any statistic of them;
- `bleu_words` (sacrebleu's default 13a tokenisation, on the book's lowercase text), `bleu_statistics`,
  `bleu_from_statistics` and `corpus_bleu` (sacrebleu's defaults: exponential smoothing, closest
  reference length);
- `cider_d`: CIDEr-D per hypothesis, as the COCO caption toolkit computes it;
- `pope_from_counts`: POPE's metrics from per-scene answers, so that a bootstrap can resample scenes;
- `clip_score`: CLIPScore (Hessel et al., 2021), w * max(cos, 0) with w = 2.5;
- `frechet_distance`: the distance between two Gaussians fitted to feature sets (FID with
  Inception features; the book uses the tiny CLIP's image features);
- `evaluation_report` and `report_table`: one table of every book model's metrics with 95%
  intervals and the held-out condition each was measured on.

    from utils import evaluation, zoo
    clip, _ = zoo.load("tiny_clip")
    print(evaluation.report_table(evaluation.evaluation_report(clip=clip)))
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections import Counter
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from utils import alignment, generation, runtime, shapes, speech, tiny_clip, tiny_vlm

# ---------------------------------------------------------------------------------------- intervals


def bootstrap_interval(statistic: Callable[[np.ndarray], float], n_units: int, draws: int = 1000,
                       level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """A percentile bootstrap interval: `statistic` of `draws` resamples (with replacement) of the
    indices 0..n_units-1 of the units that were sampled, and the middle `level` of its values."""
    if n_units < 2:
        raise ValueError(f"a bootstrap needs at least 2 units, got {n_units}")
    rng = np.random.default_rng(seed)
    values = np.array([statistic(rng.integers(n_units, size=n_units)) for _ in range(draws)])
    tail = 100 * (1 - level) / 2
    return float(np.percentile(values, tail)), float(np.percentile(values, 100 - tail))


# --------------------------------------------------------------------------------------------- BLEU

_WORD = re.compile(r"\w+|[^\w\s]")


def bleu_words(text: str) -> list[str]:
    """sacrebleu's 13a tokenisation on the book's text (lowercase words, ',' and '?'): words and
    punctuation marks, each a token. Case is kept, as sacrebleu's default keeps it."""
    return _WORD.findall(text)


def _ngrams(tokens: Sequence[str], n: int) -> Counter:
    return Counter(tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1))


def bleu_statistics(hypotheses: Sequence[str], references: Sequence[Sequence[str]],
                    max_n: int = 4) -> np.ndarray:
    """Per hypothesis [N, 2 * max_n + 2]: clipped n-gram matches (n = 1..max_n), n-gram totals, the
    hypothesis length and the closest reference length (the shorter on a tie). references[i] holds
    the references of hypothesis i. Corpus BLEU sums these rows before combining them."""
    rows = []
    for hypothesis, refs in zip(hypotheses, references, strict=True):
        said = bleu_words(hypothesis)
        truths = [bleu_words(r) for r in refs]
        matches, totals = [], []
        for n in range(1, max_n + 1):
            best: Counter = Counter()
            for truth in truths:
                best |= _ngrams(truth, n)  # each n-gram's count in the reference using it most
            counts = _ngrams(said, n)
            matches.append(sum(min(c, best[gram]) for gram, c in counts.items()))
            totals.append(max(0, len(said) - n + 1))
        closest = min((abs(len(t) - len(said)), len(t)) for t in truths)[1]
        rows.append(matches + totals + [len(said), closest])
    return np.array(rows, dtype=np.float64).reshape(len(rows), 2 * max_n + 2)


def bleu_from_statistics(summed: np.ndarray, max_n: int = 4) -> float:
    """BLEU (0-100) from summed statistics: the brevity penalty times the geometric mean of the
    n-gram precisions, a precision with no match replaced by 1 / (2^k * total) (sacrebleu's 'exp')."""
    matches, totals = summed[:max_n], summed[max_n:2 * max_n]
    hyp_length, ref_length = summed[2 * max_n], summed[2 * max_n + 1]
    if hyp_length == 0 or totals.min() == 0 or matches.sum() == 0:
        return 0.0  # sacrebleu returns 0 when nothing matches at all
    log_precision, k = 0.0, 1.0
    for match, total in zip(matches, totals, strict=True):
        if match == 0:
            k *= 2
            log_precision += math.log(1 / (k * total))
        else:
            log_precision += math.log(match / total)
    brevity = 1.0 if hyp_length > ref_length else math.exp(1 - ref_length / hyp_length)
    return 100 * brevity * math.exp(log_precision / max_n)


def corpus_bleu(hypotheses: Sequence[str], references: Sequence[Sequence[str]], max_n: int = 4) -> float:
    """Corpus BLEU (0-100) as sacrebleu.corpus_bleu computes it with its defaults."""
    return bleu_from_statistics(bleu_statistics(hypotheses, references, max_n).sum(0), max_n)


# -------------------------------------------------------------------------------------------- CIDEr


def _document_frequency(references: Sequence[Sequence[str]], max_n: int) -> Counter:
    counts: Counter = Counter()
    for refs in references:
        counts.update({g for r in refs for n in range(1, max_n + 1) for g in _ngrams(r.split(), n)})
    return counts


def _tfidf(text: str, frequency: Counter, n_images: int, max_n: int) -> tuple[list[dict], list[float]]:
    vectors = [{g: c * (math.log(n_images) - math.log(max(1.0, frequency[g])))
                for g, c in _ngrams(text.split(), n).items()} for n in range(1, max_n + 1)]
    return vectors, [math.sqrt(sum(v * v for v in part.values())) for part in vectors]


def cider_d(hypotheses: Sequence[str], references: Sequence[Sequence[str]], max_n: int = 4,
            sigma: float = 6.0) -> np.ndarray:
    """CIDEr-D of each hypothesis [N] (the corpus score is the mean), as pycocoevalcap's Cider:
    tf-idf vectors of 1..4-grams, idf from the references of these N images, the clipped cosine with
    each reference times a Gaussian length penalty, averaged over n and the references, times 10."""
    frequency = _document_frequency(references, max_n)
    scores = []
    for hypothesis, refs in zip(hypotheses, references, strict=True):
        vec_h, norm_h = _tfidf(hypothesis, frequency, len(references), max_n)
        total = 0.0
        for ref in refs:
            vec_r, norm_r = _tfidf(ref, frequency, len(references), max_n)
            gap = len(hypothesis.split()) - len(ref.split())
            penalty = math.exp(-(gap**2) / (2 * sigma**2))
            for n in range(max_n):
                clipped = sum(min(v, vec_r[n].get(g, 0.0)) * vec_r[n].get(g, 0.0) for g, v in vec_h[n].items())
                if norm_h[n] > 0 and norm_r[n] > 0:
                    total += penalty * clipped / (norm_h[n] * norm_r[n]) / max_n
        scores.append(10 * total / len(refs))
    return np.array(scores)


# --------------------------------------------------------------------------------------------- POPE


def pope_from_counts(present: np.ndarray, invented: np.ndarray) -> dict[str, float]:
    """POPE's metrics (%) from per-scene booleans [n]: "yes" to the object shown, and "yes" to one
    absent object (a negative). Balanced: n questions with truth "yes", n with truth "no"."""
    hits, false_yes, n = present.sum(), invented.sum(), len(present)
    precision = hits / max(1, hits + false_yes)
    recall = hits / n
    return {
        "accuracy": 100 * (hits + n - false_yes) / (2 * n),
        "precision": 100 * precision,
        "recall": 100 * recall,
        "F1": 100 * 2 * precision * recall / max(1e-12, precision + recall),
        "yes-ratio": 100 * (hits + false_yes) / (2 * n),
    }


# --------------------------------------------------------------------------------- CLIPScore and FID


@torch.no_grad()
def clip_score(clip: tiny_clip.TinyCLIP, images: torch.Tensor, captions: Sequence[str],
               weight: float = 2.5) -> torch.Tensor:
    """CLIPScore of each (image, caption) pair [N]: weight * max(cos(image, caption), 0)."""
    device = runtime.device_of(clip)
    image_vectors = clip.encode_image(images.to(device))  # [N, D], unit length
    text_vectors = clip.encode_text(tiny_clip.tokenize(captions).to(device))  # [N, D]
    return (weight * (image_vectors * text_vectors).sum(1).clamp(min=0)).cpu()


def frechet_distance(features_a: torch.Tensor, features_b: torch.Tensor) -> float:
    """The Frechet distance between Gaussians fitted to two feature sets [N, D] and [M, D]:
    |mu_a - mu_b|^2 + tr(S_a) + tr(S_b) - 2 tr((S_a^1/2 S_b S_a^1/2)^1/2), in float64."""
    a, b = features_a.double(), features_b.double()
    mean_a, mean_b = a.mean(0), b.mean(0)
    cov_a, cov_b = torch.cov(a.T), torch.cov(b.T)  # [D, D], unbiased (N - 1)
    values, vectors = torch.linalg.eigh(cov_a)
    root_a = vectors @ torch.diag(values.clamp(min=0).sqrt()) @ vectors.T  # S_a^1/2
    middle = root_a @ cov_b @ root_a  # symmetric, positive semi-definite
    trace_root = torch.linalg.eigvalsh((middle + middle.T) / 2).clamp(min=0).sqrt().sum()
    distance = (mean_a - mean_b).square().sum() + cov_a.trace() + cov_b.trace() - 2 * trace_root
    return float(distance)


@torch.no_grad()
def clip_features(clip: tiny_clip.TinyCLIP, images: torch.Tensor) -> torch.Tensor:
    """The tiny CLIP's image features before normalisation [N, 64], for images [N, 3, H, W] in
    [0, 1] (smaller than 32 pixels: enlarged with nearest neighbours, as chapter 7 scores them)."""
    if images.shape[-1] < 32:
        images = F.interpolate(images, size=32, mode="nearest")
    return clip.image_encoder(images.to(runtime.device_of(clip))).cpu()


# ------------------------------------------------------------------------------------------ report


@dataclasses.dataclass(frozen=True)
class Row:
    """One line of an evaluation report: a metric of a model on one test condition, with its 95%
    bootstrap interval over `n` resampled `unit`s, and a reference level to read it against."""

    model: str
    metric: str
    condition: str
    value: float
    low: float
    high: float
    n: int
    unit: str
    reference: str
    digits: int = 1  # decimals to print


def _row(model: str, metric: str, condition: str, statistic: Callable[[np.ndarray], float], n: int,
         unit: str, reference: str, draws: int, seed: int, digits: int = 1) -> Row:
    low, high = bootstrap_interval(statistic, n, draws=draws, seed=seed)
    return Row(model, metric, condition, statistic(np.arange(n)), low, high, n, unit, reference, digits)


def _mean_of(values: np.ndarray) -> Callable[[np.ndarray], float]:
    return lambda idx: 100 * float(values[idx].mean())


def colour_swapped(pairs: shapes.ShapesBatch) -> list[str]:
    """The 'full' caption of each two-object scene with the two objects' colours exchanged (the same
    words in another arrangement: chapter 3's binding test)."""
    swapped = []
    for i in range(len(pairs)):
        colour, shape, size = pairs.colour[i].tolist(), pairs.shape[i].tolist(), pairs.size[i].tolist()
        first = shapes.describe(colour[1], shape[0], size[0])
        second = shapes.describe(colour[0], shape[1], size[1])
        swapped.append(f"{first} {shapes.RELATIONS[int(pairs.relation[i])]} {second}")
    return swapped


@torch.no_grad()
def _clip_rows(clip: nn.Module, name: str, draws: int, seed: int) -> list[Row]:
    device = runtime.device_of(clip)
    held = shapes.generate(1000, seed=2, split="test")
    labels = shapes.pair_index(held.colour[:, 0], held.shape[:, 0])
    prompts = clip.encode_text(tiny_clip.tokenize(shapes.class_prompts()).to(device))  # [24, D]
    right = (clip.encode_image(held.images.to(device)) @ prompts.T).argmax(1).cpu().eq(labels).numpy()
    pairs = shapes.generate(500, seed=4, min_objects=2, max_objects=2, caption_style="full")
    swapped = colour_swapped(pairs)
    margin = (clip_score(clip, pairs.images, pairs.captions, 1.0)
              - clip_score(clip, pairs.images, swapped, 1.0)).numpy()
    wins = (margin > 1e-6) + 0.5 * (np.abs(margin) <= 1e-6)  # a tie is half a win
    return [
        _row(name, "zero-shot accuracy (%)", "held-out pairs",
             _mean_of(right), len(right), "images", "chance 4.2", draws, seed),
        _row(name, "true above colour-swapped (%)", "two objects",
             _mean_of(wins), len(wins), "images", "chance 50.0", draws, seed),
    ]


@torch.no_grad()
def _vlm_rows(vlm: nn.Module, name: str, draws: int, seed: int) -> list[Row]:
    device = runtime.device_of(vlm)
    test = tiny_vlm.test_set()  # 1,000 new scenes of the training colour-shape pairs
    features = vlm.features(test.batch.images.to(device))
    asked = [qa for qa in test.questions if qa["kind"] in ("colour", "count", "where")]
    said = tiny_vlm.first_token_answers(vlm, features, [qa["question"] for qa in asked],
                                        torch.tensor([qa["image_index"] for qa in asked]))
    rows = []
    chance = {"colour": "chance 16.7", "count": "chance 33.3", "where": "chance 25.0"}
    for kind in ("colour", "count", "where"):
        right = np.array([s == qa["answer"] for s, qa in zip(said, asked, strict=True) if qa["kind"] == kind])
        rows.append(_row(name, f"VQA {kind} (%)", "new scenes", _mean_of(right), len(right),
                         "questions", chance[kind], draws, seed))
    captions = tiny_vlm.generate(vlm, features, [tiny_vlm.CAPTION_PROMPT] * len(test.captions))
    truths = [[" ".join(tiny_vlm.words(c))] for c in test.captions]
    cider = cider_d(captions, truths)
    rows.append(_row(name, "caption CIDEr-D", "new scenes, 1 ref", lambda idx: float(cider[idx].mean()),
                     len(cider), "images", "all exact 10", draws, seed, digits=2))
    popular = alignment.pair_frequency(tiny_vlm.scenes(tiny_vlm.TRAIN_IMAGES, tiny_vlm.TRAIN_SEED))
    probe_scenes = tiny_vlm.scenes(500, tiny_vlm.TEST_SEED)
    questions = alignment.pope_questions(probe_scenes, popular, seed=5)
    pope_features = vlm.features(probe_scenes.images.to(device))
    answers = tiny_vlm.first_token_answers(vlm, pope_features, [q["question"] for q in questions],
                                           torch.tensor([q["image_index"] for q in questions]))
    said_yes = np.array([a == "yes" for a in answers]).reshape(len(probe_scenes), 4)
    negative = np.array([q["negative"] for q in questions]).reshape(len(probe_scenes), 4)
    present = said_yes[negative == "none"]  # [500]: "yes" to an object that is there
    invented = said_yes[negative == "adversarial"]  # [500]: "yes" to an adversarial absent one

    for metric, reference in (("F1", "all yes 66.7"), ("yes-ratio", "truth 50.0")):
        rows.append(_row(name, f"POPE advers. {metric} (%)", "new scenes",
                         lambda idx, m=metric: pope_from_counts(present[idx], invented[idx])[m],
                         len(probe_scenes), "images", reference, draws, seed))
    return rows


def _asr_rows(asr: nn.Module, name: str, draws: int, seed: int) -> list[Row]:
    rows = []
    for condition, test in speech.asr_test_sets(speech.load_spoken_words()).items():
        heard = speech.recognise(asr, test.waveforms)
        edits = np.array([speech._edit_distance(r.split(), h.split()) for r, h in zip(test.texts, heard, strict=True)])
        lengths = np.array([len(r.split()) for r in test.texts])
        rows.append(_row(name, "WER (%)", condition, lambda idx, e=edits, w=lengths: 100 * e[idx].sum() / w[idx].sum(),
                         len(edits), "utterances", "perfect 0", draws, seed))
    return rows


@torch.no_grad()
def _generator_rows(generator: nn.Module, clip: nn.Module, name: str, draws: int, seed: int) -> list[Row]:
    labels = torch.arange(generation.N_CLASSES).repeat_interleave(10)  # 10 of every class
    samples = (generation.euler_sample(generator, labels, steps=16, w=3.0, seed=seed).clamp(-1, 1) + 1) / 2
    real_images, real_labels = generation.large_objects(2400, seed=99)
    keep = torch.cat([(real_labels == c).nonzero()[:20, 0] for c in range(generation.N_CLASSES)])
    real = (real_images[keep] + 1) / 2  # 20 held-out real images per class
    prompts = clip.encode_text(tiny_clip.tokenize(shapes.class_prompts()).to(runtime.device_of(clip))).cpu()
    fake_features, real_features = clip_features(clip, samples), clip_features(clip, real)
    right = (F.normalize(fake_features, dim=-1) @ prompts.T).argmax(1).eq(labels).numpy()  # [240]
    judge_on_real = (F.normalize(real_features, dim=-1) @ prompts.T).argmax(1).eq(real_labels[keep])
    # two class-matched real sets of 240 (10 per class each): FID's floor at this n
    first, second = real_features[0::2], real_features[1::2]
    floor = frechet_distance(first, second)
    return [
        _row(name, "adherence (%)", "16 steps, w = 3", _mean_of(right), len(right),
             "samples", f"real {100 * judge_on_real.float().mean():.1f}", draws, seed),
        _row(name, "FID (tiny-CLIP features)", "CI biased up",  # resamples the generated set only
             lambda idx: frechet_distance(fake_features[idx], first), len(labels), "samples",
             f"real {floor:.3f}", draws, seed, digits=3),
    ]


def evaluation_report(clip: nn.Module | None = None, vlm: nn.Module | None = None,
                      aligned: nn.Module | None = None, asr: nn.Module | None = None,
                      generator: nn.Module | None = None, draws: int = 1000, seed: int = 0) -> list[Row]:
    """Every metric of chapter 9's report for the models given (a reader's own model of the same
    kind works too): a TinyCLIP, a TinyVLM before and after alignment, a TinyASR, and a generator
    (judged with `clip`, which the generator rows need). Intervals: 95% bootstrap over `draws`."""
    if generator is not None and clip is None:
        raise ValueError("the generator's rows are judged by a tiny CLIP: pass clip= as well")
    rows: list[Row] = []
    if clip is not None:
        rows += _clip_rows(clip, "tiny CLIP", draws, seed)
    if vlm is not None:
        rows += _vlm_rows(vlm, "TinyVLM", draws, seed)
    if aligned is not None:
        rows += _vlm_rows(aligned, "TinyVLM + DPO", draws, seed)
    if asr is not None:
        rows += _asr_rows(asr, "tiny ASR", draws, seed)
    if generator is not None:
        rows += _generator_rows(generator, clip, "tiny generator", draws, seed)
    return rows


def report_table(rows: Sequence[Row]) -> str:
    """The report as a fixed-width table: model, metric, value [95% interval], n and what was
    resampled, reference, and the test condition."""
    lines = [f"{'model':<15}{'metric':<31}{'value [95% CI]':<22}{'n':<17}{'reference':<14}condition"]
    for r in rows:
        value = f"{r.value:.{r.digits}f} [{r.low:.{r.digits}f}, {r.high:.{r.digits}f}]"
        lines.append(f"{r.model:<15}{r.metric:<31}{value:<22}{f'{r.n} {r.unit}':<17}{r.reference:<14}{r.condition}")
    return "\n".join(lines)
