"""utils.evaluation: each metric against the reference implementation papers publish with (sacrebleu,
the COCO caption toolkit, scipy, torchmetrics), the bootstrap's behaviour, and the report's rows."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from utils import evaluation, shapes, tiny_clip

sacrebleu = pytest.importorskip("sacrebleu")


def _captions(n: int = 200):
    full = shapes.generate(n, seed=9, caption_style="full").captions
    varied = shapes.generate(n, seed=9, caption_style="varied").captions
    partial = shapes.generate(n, seed=9, caption_style="partial").captions
    return list(varied), [[f, p] for f, p in zip(full, partial, strict=True)]


def test_bleu_words_are_sacrebleu_13a_tokens():
    from sacrebleu.tokenizers.tokenizer_13a import Tokenizer13a

    tokenizer = Tokenizer13a()
    hypotheses, references = _captions(100)
    for text in hypotheses + [r for pair in references for r in pair] + ["a red circle, with a cross?"]:
        assert evaluation.bleu_words(text) == tokenizer(text).split()


def test_corpus_bleu_equals_sacrebleu():
    hypotheses, references = _captions()
    streams = [list(s) for s in zip(*references, strict=True)]
    assert abs(evaluation.corpus_bleu(hypotheses, references) - sacrebleu.corpus_bleu(hypotheses, streams).score) < 1e-9
    shuffled = [" ".join(reversed(h.split())) for h in hypotheses]  # few 3- and 4-gram matches: smoothing
    theirs = sacrebleu.corpus_bleu(shuffled, streams).score
    assert abs(evaluation.corpus_bleu(shuffled, references) - theirs) < 1e-9
    assert evaluation.corpus_bleu(hypotheses, [[h] for h in hypotheses]) == pytest.approx(100.0)


def test_bleu_statistics_add_up_to_the_corpus_score():
    hypotheses, references = _captions(50)
    rows = evaluation.bleu_statistics(hypotheses, references)
    assert rows.shape == (50, 10)
    assert evaluation.bleu_from_statistics(rows.sum(0)) == evaluation.corpus_bleu(hypotheses, references)


def test_cider_d_equals_pycocoevalcap():
    cider = pytest.importorskip("pycocoevalcap.cider.cider")
    hypotheses, references = _captions()
    hypotheses = [" ".join(evaluation.bleu_words(h)) for h in hypotheses]
    references = [[" ".join(evaluation.bleu_words(r)) for r in refs] for refs in references]
    ours = evaluation.cider_d(hypotheses, references)
    mean, theirs = cider.Cider().compute_score(dict(enumerate(references)), {i: [h] for i, h in enumerate(hypotheses)})
    assert np.abs(ours - theirs).max() < 1e-12
    assert ours.mean() == pytest.approx(mean, abs=1e-12)


def test_frechet_distance_equals_scipy_and_torchmetrics():
    import scipy.linalg
    from torchmetrics.image.fid import _compute_fid

    generator = torch.Generator().manual_seed(0)
    a = torch.randn(300, 12, generator=generator)
    b = 1.3 * torch.randn(250, 12, generator=generator) @ torch.randn(12, 12, generator=generator) / 4 + 0.5
    an, bn = a.double().numpy(), b.double().numpy()
    ca, cb = np.cov(an, rowvar=False), np.cov(bn, rowvar=False)
    reference = ((an.mean(0) - bn.mean(0)) ** 2).sum() + np.trace(ca) + np.trace(cb) \
        - 2 * np.trace(scipy.linalg.sqrtm(ca @ cb).real)
    ours = evaluation.frechet_distance(a, b)
    assert ours == pytest.approx(reference, rel=1e-9)
    theirs = _compute_fid(a.double().mean(0), torch.cov(a.double().T), b.double().mean(0), torch.cov(b.double().T))
    assert ours == pytest.approx(float(theirs), rel=1e-9)
    assert evaluation.frechet_distance(a, a) == pytest.approx(0.0, abs=1e-9)


def test_clip_score_is_the_clipped_weighted_cosine():
    torch.manual_seed(0)
    clip = tiny_clip.TinyCLIP().eval()
    images = torch.rand(5, 3, 32, 32)
    captions = ["a red circle", "a blue square", "a green cross", "a photo of a thing", "a small circle"]
    scores = evaluation.clip_score(clip, images, captions)
    with torch.no_grad():
        cosine = (clip.encode_image(images) * clip.encode_text(tiny_clip.tokenize(captions))).sum(1)
    assert torch.allclose(scores, 2.5 * cosine.clamp(min=0))
    assert torch.allclose(evaluation.clip_score(clip, images, captions, weight=1.0), cosine.clamp(min=0))


def test_bootstrap_interval_covers_the_mean_and_narrows_with_n():
    values = np.random.default_rng(1).random(2000) < 0.7
    wide = evaluation.bootstrap_interval(lambda idx: values[:100][idx].mean(), 100)
    narrow = evaluation.bootstrap_interval(lambda idx: values[idx].mean(), 2000)
    assert wide[0] < values[:100].mean() < wide[1]
    assert narrow[1] - narrow[0] < (wide[1] - wide[0]) / 2  # about 1 / sqrt(20) as wide
    assert evaluation.bootstrap_interval(lambda idx: values[idx].mean(), 2000) == narrow  # seeded
    with pytest.raises(ValueError, match="at least 2"):
        evaluation.bootstrap_interval(lambda idx: 0.0, 1)


def test_colour_swapped_captions_exchange_the_colours():
    pairs = shapes.generate(20, seed=4, min_objects=2, max_objects=2, caption_style="full")
    for caption, swapped, colours in zip(pairs.captions, evaluation.colour_swapped(pairs), pairs.colour.tolist(),
                                         strict=True):
        first, second = shapes.COLOURS[colours[0]], shapes.COLOURS[colours[1]]
        assert sorted(caption.split()) == sorted(swapped.split())
        assert caption.index(first) < caption.index(second) and swapped.index(second) < swapped.index(first)


def test_report_rows_for_a_clip_model():
    torch.manual_seed(0)
    clip = tiny_clip.TinyCLIP().eval()
    rows = evaluation.evaluation_report(clip=clip, draws=50)
    assert [r.metric for r in rows] == ["zero-shot accuracy (%)", "true above colour-swapped (%)"]
    for row in rows:
        assert row.low <= row.value <= row.high and row.n > 0
    assert rows[1].value == 50.0  # a bag-of-words text encoder ties every colour swap
    table = evaluation.report_table(rows)
    assert "tiny CLIP" in table and "held-out pairs" in table
    with pytest.raises(ValueError, match="clip="):
        evaluation.evaluation_report(generator=torch.nn.Linear(1, 1))


def test_runs_file_has_three_seeds_of_each_part():
    """utils/data/ch09_runs.json (scripts/ch09_runs.py): the judges at two budgets, the contamination
    runs and the aligned model's captions, three seeds each."""
    import json
    from importlib import resources

    runs = json.loads(resources.files("utils.data").joinpath("ch09_runs.json").read_text())
    assert runs["script"] == "scripts/ch09_runs.py"
    assert sorted(runs["judges"]) == ["1500", "300"]
    for by_seed in runs["judges"].values():
        assert sorted(by_seed) == ["0", "1", "2"]
        for run in by_seed.values():
            assert set(run) == {"position", "answer", "length-biased position"}
            for judge in run.values():
                assert 0 <= judge["flips"]["all"] <= 100 and 0 <= judge["train_right"] <= 100
                assert set(judge["verbosity"]) == {"both short", "wrong answer padded", "right answer padded"}
    assert sorted(runs["contamination"]) == ["0", "1", "2"]
    for run in runs["contamination"].values():
        assert run["inflation"] == pytest.approx(run["change"]["leaked"] - run["change"]["clean"])
    captions = runs["aligned_captions"]
    assert sorted(captions) == ["0", "1", "2", "before"]
    assert all(0 <= captions[seed]["cider_d"] <= 10 for seed in ("0", "1", "2"))


def test_bleu_is_zero_when_nothing_matches():
    assert evaluation.corpus_bleu(["x y z w v"], [["a b c d e"]]) == 0.0
    assert sacrebleu.corpus_bleu(["x y z w v"], [["a b c d e"]]).score == 0.0
