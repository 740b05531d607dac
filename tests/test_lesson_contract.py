"""The lesson/package contract: what a lesson writes out and `utils` keeps a copy of agree.

A lesson teaches by writing an idea out; later chapters call the copy in `utils`. Each pair below is
run on the same inputs: the lesson's definition (taken from the notebook's own cells, with the
imports and helpers it needs) against the package's. A lesson cell that `utils` mirrors says so in a
comment line `# kept as utils.<module>.<name>`, and every such comment is listed here.
"""

from __future__ import annotations

import importlib
import importlib.util
import re
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("notebook_code", ROOT / "scripts" / "notebook_code.py")
notebook_code = importlib.util.module_from_spec(spec)
sys.modules["notebook_code"] = notebook_code
spec.loader.exec_module(notebook_code)

KEPT_AS = re.compile(r"#\s*kept as (utils(?:\.\w+)+)")


def lesson_definitions(lesson: str, *names: str) -> dict:
    """A namespace holding the lesson's own definitions of `names` (and what they need), on the CPU."""
    sources = notebook_code.code_cells(ROOT / "lessons" / f"{lesson}.ipynb")
    program = notebook_code.prelude(sources, set(names))
    namespace: dict = {"device": torch.device("cpu")}
    exec(compile(program, f"lessons/{lesson}.ipynb", "exec"), namespace)  # noqa: S102 - the book's own code
    missing = [name for name in names if name not in namespace]
    assert not missing, f"lessons/{lesson}.ipynb does not define {missing}"
    return namespace


def package_object(dotted: str):
    module, _, name = dotted.rpartition(".")
    return getattr(importlib.import_module(module), name)


def check_recall_at(lesson, package) -> None:
    generator = torch.Generator().manual_seed(0)
    for queries, gallery in ((30, 7), (5, 40)):
        similarity = torch.randn(queries, gallery, generator=generator)
        relevant = torch.rand(queries, gallery, generator=generator) < 0.2
        for k in (1, 2, 5):
            assert lesson(similarity, relevant, k) == package(similarity, relevant, k)


def check_clip_loss(lesson, package) -> None:
    generator = torch.Generator().manual_seed(1)
    for size in (2, 5, 16):
        logits = 10 * torch.randn(size, size, generator=generator, dtype=torch.float64)
        ours, theirs = logits.clone().requires_grad_(True), logits.clone().requires_grad_(True)
        value, reference = lesson(ours), package(theirs)
        assert torch.equal(value, reference)
        value.backward()
        reference.backward()
        assert torch.equal(ours.grad, theirs.grad)


def check_training_recipe(namespace: dict, package) -> None:
    """The lesson's train_clip with its softmax loss and the zoo's train give the same weights."""
    from utils import tiny_clip

    steps, batch_size = 3, 32
    lesson_model = namespace["train_clip"](namespace["softmax_loss"], steps=steps, batch_size=batch_size,
                                           data=tiny_clip.training_data(), seed=0)
    torch.manual_seed(0)
    package_model = tiny_clip.TinyCLIP()
    package(package_model, steps=steps, batch_size=batch_size, seed=0)
    for (name, ours), theirs in zip(lesson_model.state_dict().items(), package_model.state_dict().values(),
                                    strict=True):
        assert torch.equal(ours, theirs), f"after {steps} steps the weights {name} differ"


def check_vlm_encode(lesson, package) -> None:
    prompts, answers = ["what colour is the circle?", "describe the image"], ["red", "a small red circle"]
    for length, image in ((None, True), (20, True), (None, False)):
        for ours, theirs in zip(lesson(prompts, answers, length, image), package(prompts, answers, length, image),
                                strict=True):
            assert torch.equal(ours, theirs)


def check_image_features(lesson, package) -> None:
    from utils import tiny_clip

    torch.manual_seed(0)
    encoder = tiny_clip.ImageEncoder().eval()
    images = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    for grid in (1, 2, 4):
        assert torch.equal(lesson(encoder, images, grid), package(encoder, images, grid))


def check_log_mel(lesson, package) -> None:
    """Chapter 2's log-mel and utils.speech's: the same numbers on waveforms of several lengths."""
    # chapter 2 builds its filterbank once, in a lower-case global the contract's prelude leaves out
    lesson.__globals__.setdefault("filterbank", lesson.__globals__["mel_filters"]())
    generator = torch.Generator().manual_seed(6)
    for batch, samples in ((1, 16_000), (3, 4_801), (2, 1_000)):
        waveforms = 0.3 * torch.randn(batch, samples, generator=generator)
        ours, theirs = lesson(waveforms), package(waveforms)
        assert ours.shape == theirs.shape == (batch, 40, 1 + samples // 160)
        assert torch.allclose(ours, theirs, atol=1e-4, rtol=1e-5)


def check_asr_module(lesson, package) -> None:
    """Built under the same seed, the lesson's and the package's recogniser (or block) are the same."""
    arguments = (96, 2) if package.__name__ == "ConvBlock" else ()
    torch.manual_seed(0)
    ours = lesson(*arguments)
    torch.manual_seed(0)
    theirs = package(*arguments)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    for a, b in zip(ours.state_dict().values(), theirs.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    shape = (2, 96, 30) if arguments else (2, 40, 61)
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(3))
    assert torch.equal(ours.eval()(x), theirs.eval()(x))
    if not arguments:  # the recogniser, with each row's length: padding masked the same way
        frames = torch.tensor([61, 37])
        assert torch.equal(ours(x, frames), theirs(x, frames))
        assert torch.equal(ours.encode(x, frames), theirs.encode(x, frames))


def check_greedy_decode(lesson, package) -> None:
    generator = torch.Generator().manual_seed(7)
    for batch, frames in ((1, 5), (4, 40)):
        log_probs = torch.randn(batch, frames, 28, generator=generator).log_softmax(-1)
        log_probs[..., 0] += 1.5  # blanks common, as in a trained model
        lengths = torch.randint(1, frames + 1, (batch,), generator=generator)
        assert lesson(log_probs, lengths) == package(log_probs, lengths)


def check_corpus_wer(lesson, package) -> None:
    said = ["two red circle", "nine", "zero zero square", "blue"]
    for heard in (said, ["two red circles", "nine blue green", "zero square", ""],
                  ["", "", "", ""], ["red two circle", "nine", "square zero zero", "blue blue"]):
        assert lesson(said, heard) == package(said, heard)


def _vlm_inputs():
    from utils import tiny_vlm

    generator = torch.Generator().manual_seed(3)
    tokens, labels = tiny_vlm.encode(["what colour is the circle?", "how many objects are there?"], ["red", "2"])
    return torch.randn(2, 16, 64, generator=generator), tokens, labels


def check_same_module(lesson, package) -> None:
    """Built under the same seed, the two classes hold the same weights and compute the same outputs."""
    torch.manual_seed(0)
    ours = lesson() if lesson.__name__ != "DecoderBlock" else lesson(64, 4)
    torch.manual_seed(0)
    theirs = package() if package.__name__ != "DecoderBlock" else package(64, 4)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    for a, b in zip(ours.state_dict().values(), theirs.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    features, tokens, _ = _vlm_inputs()
    arguments = (features, tokens) if package.__name__ == "TinyVLM" else (torch.randn(2, 7, 64),)
    assert torch.equal(ours.eval()(*arguments), theirs.eval()(*arguments))


def check_vlm_losses(namespace: dict, package) -> None:
    """next_token_loss, text_loss, splice (same place in every row) and vlm_loss on the same inputs."""
    from utils import tiny_vlm

    torch.manual_seed(0)
    model = tiny_vlm.build_tiny_vlm().eval()
    features, tokens, labels = _vlm_inputs()
    assert torch.equal(namespace["vlm_loss"](model, features, tokens, labels),
                       tiny_vlm.vlm_loss(model, features, tokens, labels))
    logits = torch.randn(2, tokens.shape[1], len(tiny_vlm.VOCAB))
    assert torch.equal(namespace["next_token_loss"](logits, labels), tiny_vlm.next_token_loss(logits, labels))
    text = tokens.clone()
    text[text == tiny_vlm.IMAGE] = tiny_vlm.TOKEN_ID["the"]
    assert torch.equal(namespace["text_loss"](model.lm, text, labels), tiny_vlm.text_loss(model.lm, text, labels))
    embedded = torch.randn(2, tokens.shape[1], 5)
    image = torch.randn(2, 16, 5)
    assert torch.equal(namespace["splice"](embedded, image, tokens), tiny_vlm.splice(embedded, image, tokens))


def check_text_batches(lesson, package) -> None:
    """The same generator draws the same expanded texts and labels."""
    from utils import tiny_vlm

    tokens, labels = tiny_vlm.Corpus(tiny_vlm.scenes(20, seed=4), seed=4).text_only()
    ours, theirs = lesson(tokens, labels, batch_size=6), package(tokens, labels, batch_size=6)
    first, second = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    for _ in range(5):
        for a, b in zip(ours(first), theirs(second), strict=True):
            assert torch.equal(a, b)


# (lesson, lesson name, package object, check); a check that takes the namespace gets all of it.
def _generation_inputs():
    generator = torch.Generator().manual_seed(7)
    images = torch.rand(6, 3, 16, 16, generator=generator) * 2 - 1
    return images, torch.tensor([0, 3, 7, 11, 23, 24]), generator


def check_generation_function(namespace: dict, package) -> None:
    """q_sample, timestep_embedding, trailing_timesteps, guided, drop_captions, both losses and the
    EMA update: the same values on the same inputs (and the same random draws)."""
    from utils import generation

    images, labels, generator = _generation_inputs()
    abar = generation.linear_alphas_cumprod()
    assert torch.equal(namespace["ALPHAS_CUMPROD"], abar)
    t, noise = torch.tensor([0, 10, 200, 500, 900, 999]), torch.randn(images.shape, generator=generator)
    assert torch.equal(namespace["q_sample"](images, t, noise, abar), generation.q_sample(images, t, noise, abar))
    assert torch.equal(namespace["timestep_embedding"](t, 32), generation.timestep_embedding(t, 32))
    for n in (4, 8, 16, 32):
        assert namespace["trailing_timesteps"](n) == generation.trailing_timesteps(n)
    torch.manual_seed(0)
    model = generation.TinyUNet(width=16, cond_dim=32).eval()
    for w in (0, 1, 3, 7.5):
        assert torch.equal(namespace["guided"](model, images, t, labels, w),
                           generation.guided(model, images, t, labels, w))
    for name in ("drop_captions",):
        assert torch.equal(namespace[name](labels, torch.Generator().manual_seed(1)),
                           getattr(generation, name)(labels, torch.Generator().manual_seed(1)))
    for name in ("ddpm_loss", "flow_matching_loss"):
        ours = namespace[name](model, images, labels, torch.Generator().manual_seed(2))
        theirs = getattr(generation, name)(model, images, labels, torch.Generator().manual_seed(2))
        assert torch.equal(ours, theirs), name
    average, other = generation.TinyUNet(width=16, cond_dim=32), generation.TinyUNet(width=16, cond_dim=32)
    copy_a, copy_b = [generation.TinyUNet(width=16, cond_dim=32) for _ in range(2)]
    copy_a.load_state_dict(average.state_dict())
    copy_b.load_state_dict(average.state_dict())
    namespace["update_ema"](copy_a, other, 40)
    generation.update_ema(copy_b, other, 40)
    for a, b in zip(copy_a.state_dict().values(), copy_b.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def check_generation_module(lesson, package) -> None:
    """ResBlock and TinyUNet: the same weights under the same seed and the same outputs."""
    images, labels, _ = _generation_inputs()
    arguments = (16, 32, 24) if package.__name__ == "ResBlock" else ()
    torch.manual_seed(0)
    ours = lesson(*arguments).eval()
    torch.manual_seed(0)
    theirs = package(*arguments).eval()
    assert list(ours.state_dict()) == list(theirs.state_dict())
    for a, b in zip(ours.state_dict().values(), theirs.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    if package.__name__ == "ResBlock":
        x, cond = torch.randn(2, 16, 8, 8), torch.randn(2, 24)
        assert torch.equal(ours(x, cond), theirs(x, cond))
    else:
        t = torch.tensor([0, 100, 400, 700, 900, 999])
        assert torch.equal(ours(images, t, labels), theirs(images, t, labels))


def check_generation_samplers(namespace: dict, package) -> None:
    """ddpm_sample (both etas) and euler_sample: the same samples from the same small model, and
    train_denoiser: the same weights and losses after three steps."""
    from utils import generation

    torch.manual_seed(0)
    model = generation.TinyUNet(width=16, cond_dim=32).eval()
    labels, abar = torch.tensor([0, 5, 24]), generation.linear_alphas_cumprod()
    for eta in (0.0, 1.0):
        ours = namespace["ddpm_sample"](model, labels, abar, steps=4, w=3, eta=eta, seed=1)
        assert torch.equal(ours, generation.ddpm_sample(model, labels, abar, steps=4, w=3, eta=eta, seed=1))
    ours = namespace["euler_sample"](model, labels, steps=4, w=3, seed=1)
    assert torch.equal(ours, generation.euler_sample(model, labels, steps=4, w=3, seed=1))
    images, labels, _ = _generation_inputs()
    results = []
    for train in (namespace["train_denoiser"], generation.train_denoiser):
        torch.manual_seed(0)
        network = generation.TinyUNet(width=16, cond_dim=32)
        results.append(train(network, generation.flow_matching_loss, images, labels, steps=3, seed=0))
    (ours_model, ours_losses), (their_model, their_losses) = results
    assert ours_losses == their_losses
    for a, b in zip(ours_model.state_dict().values(), their_model.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def check_alignment(namespace: dict, package) -> None:
    """The POPE probe, its scores, the sequence log-probability, the DPO loss and `align`: the same
    results on the same inputs."""
    from utils import alignment, tiny_vlm

    scenes = tiny_vlm.scenes(40, seed=7)
    popular = alignment.pair_frequency(scenes)
    for seed in (0, 3):
        assert namespace["pope_questions"](scenes, popular, seed) == alignment.pope_questions(scenes, popular, seed)
    asked = alignment.pope_questions(scenes, popular, 0)
    said = ["yes" if (i * 7) % 3 else "no" for i in range(len(asked))]
    assert namespace["pope_scores"](said, asked) == alignment.pope_scores(said, asked)
    generator = torch.Generator().manual_seed(3)
    values = [torch.randn(6, generator=generator) for _ in range(4)]
    for beta in (0.1, 1.0):
        assert torch.equal(namespace["dpo_loss"](*values, beta), alignment.dpo_loss(*values, beta))
    torch.manual_seed(0)
    model = tiny_vlm.TinyVLM(tiny_vlm.TinyLM(dim=32, layers=1, heads=2)).eval()
    features = model.features(scenes.images)
    pairs = alignment.preference_pairs(scenes, popular, seed=0)
    tokens, labels = tiny_vlm.encode([p["prompt"] for p in pairs[:8]], [p["chosen"] for p in pairs[:8]], 24)
    image = features[torch.tensor([p["image_index"] for p in pairs[:8]])]
    assert torch.equal(namespace["sequence_logprob"](model, image, tokens, labels),
                       alignment.sequence_logprob(model, image, tokens, labels))
    for dpo_weight in (1.0, 0.0):
        ours = namespace["align"](model, features, pairs, steps=3, dpo_weight=dpo_weight, seed=1)
        theirs = alignment.align(model, features, pairs, steps=3, dpo_weight=dpo_weight, seed=1)
        for key, value in ours.state_dict().items():
            assert torch.equal(value, theirs.state_dict()[key]), key


EVALUATION_FUNCTIONS = ("bootstrap_interval", "bleu_words", "bleu_statistics", "bleu_from_statistics",
                        "corpus_bleu", "cider_d", "pope_from_counts", "clip_score", "frechet_distance",
                        "clip_features")


def check_evaluation(namespace: dict, package) -> None:
    """Chapter 9's metrics: the same numbers on the same inputs (captions, features, a small CLIP)."""
    import numpy as np

    from utils import evaluation, shapes, tiny_clip

    values = np.random.default_rng(0).random(40)
    for seed in (0, 3):
        statistic = lambda idx: float(values[idx].mean())  # noqa: E731
        assert namespace["bootstrap_interval"](statistic, 40, draws=50, seed=seed) == \
            evaluation.bootstrap_interval(statistic, 40, draws=50, seed=seed)
    scenes = shapes.generate(30, seed=5, caption_style="varied")
    hypotheses = shapes.generate(30, seed=5, caption_style="full").captions
    references = [[c, c.replace("a ", "the ")] for c in scenes.captions]
    hypotheses[0] = "x y z w v"  # a caption with no word in common with its references
    for text in hypotheses[:5] + ["a, b? c"]:
        assert namespace["bleu_words"](text) == evaluation.bleu_words(text)
    ours = namespace["bleu_statistics"](hypotheses, references)
    assert np.array_equal(ours, evaluation.bleu_statistics(hypotheses, references))
    assert namespace["bleu_from_statistics"](ours.sum(0)) == evaluation.bleu_from_statistics(ours.sum(0))
    assert namespace["corpus_bleu"](hypotheses, references) == evaluation.corpus_bleu(hypotheses, references)
    nothing = (["x y z w v"], [["a b c d e"]])  # no match at all: both give 0, as sacrebleu
    assert namespace["corpus_bleu"](*nothing) == evaluation.corpus_bleu(*nothing) == 0.0
    assert np.allclose(namespace["cider_d"](hypotheses, references), evaluation.cider_d(hypotheses, references),
                       rtol=1e-12, atol=1e-12)
    answers = np.random.default_rng(1).random((2, 80)) < [[0.7], [0.3]]  # yes to present, to absent
    for present, invented in (answers, (answers[0], answers[0]), (answers[0] & False, answers[1] & False)):
        assert namespace["pope_from_counts"](present, invented) == evaluation.pope_from_counts(present, invented)
    generator = torch.Generator().manual_seed(2)
    a, b = torch.randn(50, 6, generator=generator), 1.5 * torch.randn(40, 6, generator=generator) + 0.3
    assert abs(namespace["frechet_distance"](a, b) - evaluation.frechet_distance(a, b)) < 1e-12
    torch.manual_seed(0)
    clip = tiny_clip.TinyCLIP().eval()
    images = torch.rand(6, 3, 32, 32, generator=generator)
    captions = ["a red circle", "a blue square", "a large green cross", "a photo", "", "a small circle"]
    assert torch.equal(namespace["clip_score"](clip, images, captions), evaluation.clip_score(clip, images, captions))
    small = torch.rand(4, 3, 16, 16, generator=generator)
    for pictures in (images, small):
        assert torch.equal(namespace["clip_features"](clip, pictures), evaluation.clip_features(clip, pictures))


def check_batcher(lesson, package) -> None:
    """Both batchers, on one stream of requests: the same results, batches and failures."""
    import asyncio

    async def run(batcher_class, fail_at=None):
        calls = []

        def double(items):
            calls.append(list(items))
            if fail_at is not None and fail_at in items:
                raise ValueError(f"item {fail_at} is bad")
            return [2 * item for item in items]

        batcher = batcher_class(double, max_batch=8, max_wait_ms=50.0)
        await batcher.start()
        try:
            results = await asyncio.gather(*(batcher.submit(i) for i in range(20)), return_exceptions=True)
            alone = await batcher.submit(100)  # a lone request is released after max_wait_ms
        finally:
            await batcher.stop()
        return [r if isinstance(r, int) else repr(r) for r in results], alone, calls, batcher.batch_sizes

    for fail_at in (None, 11):
        ours, theirs = asyncio.run(run(lesson, fail_at)), asyncio.run(run(package, fail_at))
        assert ours == theirs
        assert ours[3] == [8, 8, 4, 1], ours[3]


CONTRACT = [
    ("01_foundations", "recall_at", "utils.retrieval.recall_at", check_recall_at),
    ("02_encoders", "log_mel", "utils.speech.log_mel", check_log_mel),
    ("06_audio_video", "ConvBlock", "utils.speech.ConvBlock", check_asr_module),
    ("06_audio_video", "TinyASR", "utils.speech.TinyASR", check_asr_module),
    ("06_audio_video", "greedy_decode", "utils.speech.greedy_decode", check_greedy_decode),
    ("06_audio_video", "corpus_wer", "utils.speech.corpus_wer", check_corpus_wer),
    ("03_contrastive", "clip_loss", "utils.tiny_clip.clip_loss", check_clip_loss),
    ("03_contrastive", "train_clip", "utils.tiny_clip.train", check_training_recipe),
    ("05_vlm", "encode", "utils.tiny_vlm.encode", check_vlm_encode),
    ("05_vlm", "grid_features", "utils.tiny_vlm.grid_features", check_image_features),
    ("05_vlm", "DecoderBlock", "utils.tiny_vlm.DecoderBlock", check_same_module),
    ("05_vlm", "TinyLM", "utils.tiny_vlm.TinyLM", check_same_module),
    ("05_vlm", "TinyVLM", "utils.tiny_vlm.TinyVLM", check_same_module),
    ("05_vlm", "vlm_loss", "utils.tiny_vlm.vlm_loss", check_vlm_losses),
    ("05_vlm", "next_token_loss", "utils.tiny_vlm.next_token_loss", check_vlm_losses),
    ("05_vlm", "text_loss", "utils.tiny_vlm.text_loss", check_vlm_losses),
    ("05_vlm", "splice", "utils.tiny_vlm.splice", check_vlm_losses),
    ("05_vlm", "text_batches", "utils.tiny_vlm.text_batches", check_text_batches),
    ("07_generation", "q_sample", "utils.generation.q_sample", check_generation_function),
    ("07_generation", "timestep_embedding", "utils.generation.timestep_embedding", check_generation_function),
    ("07_generation", "trailing_timesteps", "utils.generation.trailing_timesteps", check_generation_function),
    ("07_generation", "guided", "utils.generation.guided", check_generation_function),
    ("07_generation", "drop_captions", "utils.generation.drop_captions", check_generation_function),
    ("07_generation", "ddpm_loss", "utils.generation.ddpm_loss", check_generation_function),
    ("07_generation", "flow_matching_loss", "utils.generation.flow_matching_loss", check_generation_function),
    ("07_generation", "update_ema", "utils.generation.update_ema", check_generation_function),
    ("07_generation", "ResBlock", "utils.generation.ResBlock", check_generation_module),
    ("07_generation", "TinyUNet", "utils.generation.TinyUNet", check_generation_module),
    ("07_generation", "ddpm_sample", "utils.generation.ddpm_sample", check_generation_samplers),
    ("07_generation", "euler_sample", "utils.generation.euler_sample", check_generation_samplers),
    ("07_generation", "train_denoiser", "utils.generation.train_denoiser", check_generation_samplers),
    ("08_data_at_scale", "pope_questions", "utils.alignment.pope_questions", check_alignment),
    ("08_data_at_scale", "pope_scores", "utils.alignment.pope_scores", check_alignment),
    ("08_data_at_scale", "sequence_logprob", "utils.alignment.sequence_logprob", check_alignment),
    ("08_data_at_scale", "dpo_loss", "utils.alignment.dpo_loss", check_alignment),
    ("08_data_at_scale", "align", "utils.alignment.align", check_alignment),
    ("09_evaluation", "bootstrap_interval", "utils.evaluation.bootstrap_interval", check_evaluation),
    ("09_evaluation", "bleu_words", "utils.evaluation.bleu_words", check_evaluation),
    ("09_evaluation", "bleu_statistics", "utils.evaluation.bleu_statistics", check_evaluation),
    ("09_evaluation", "bleu_from_statistics", "utils.evaluation.bleu_from_statistics", check_evaluation),
    ("09_evaluation", "corpus_bleu", "utils.evaluation.corpus_bleu", check_evaluation),
    ("09_evaluation", "cider_d", "utils.evaluation.cider_d", check_evaluation),
    ("09_evaluation", "pope_from_counts", "utils.evaluation.pope_from_counts", check_evaluation),
    ("09_evaluation", "clip_score", "utils.evaluation.clip_score", check_evaluation),
    ("09_evaluation", "frechet_distance", "utils.evaluation.frechet_distance", check_evaluation),
    ("09_evaluation", "clip_features", "utils.evaluation.clip_features", check_evaluation),
    ("10_frontier", "DynamicBatcher", "utils.serving.DynamicBatcher", check_batcher),
]
ALIGNMENT_FUNCTIONS = ("pope_questions", "pope_scores", "sequence_logprob", "dpo_loss", "align")

GENERATION_FUNCTIONS = ("ALPHAS_CUMPROD", "q_sample", "timestep_embedding", "trailing_timesteps", "guided",
                        "drop_captions", "ddpm_loss", "flow_matching_loss", "update_ema")
NAMESPACE_CHECKS = (check_training_recipe, check_vlm_losses, check_generation_function,
                    check_generation_samplers, check_alignment, check_evaluation)


@pytest.mark.parametrize(("lesson", "name", "dotted", "check"), CONTRACT,
                         ids=[f"{lesson}:{name}" for lesson, name, _, _ in CONTRACT])
def test_lesson_and_package_agree(lesson, name, dotted, check):
    extra = {check_training_recipe: ("softmax_loss",), check_log_mel: ("mel_filters",),
             check_vlm_losses: ("vlm_loss", "next_token_loss", "text_loss", "splice"),
             check_generation_function: GENERATION_FUNCTIONS,
             check_generation_samplers: ("ddpm_sample", "euler_sample", "train_denoiser"),
             check_alignment: ALIGNMENT_FUNCTIONS,
             check_evaluation: EVALUATION_FUNCTIONS}.get(check, ())
    namespace = lesson_definitions(lesson, name, *extra)
    package = package_object(dotted)
    if check in NAMESPACE_CHECKS:
        check(namespace, package)
    else:
        check(namespace[name], package)


def test_every_kept_as_comment_is_in_the_contract():
    listed = {(lesson, dotted) for lesson, _, dotted, _ in CONTRACT}
    found = set()
    for path in sorted((ROOT / "lessons").glob("[0-9][0-9]_*.ipynb")):
        for source in notebook_code.code_cells(path):
            for dotted in KEPT_AS.findall(source):
                found.add((path.stem, dotted))
                package_object(dotted)  # the named copy exists
    assert found == listed, f"comments without a test: {found - listed}; tests without a comment: {listed - found}"


def test_a_lesson_never_redefines_a_package_name_silently():
    """A lesson function named like a public function of utils must be that function's kept copy."""
    import ast

    public = {}
    for module_path in sorted((ROOT / "utils").glob("*.py")):
        tree = ast.parse(module_path.read_text())
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and not node.name.startswith("_"):
                public.setdefault(node.name, []).append(f"utils.{module_path.stem}.{node.name}")
    listed = {(lesson, name) for lesson, name, _, _ in CONTRACT}
    clashes = []
    for path in sorted((ROOT / "lessons").glob("[0-9][0-9]_*.ipynb")):
        for source in notebook_code.code_cells(path):
            for defined, _, text in notebook_code.statements(source):
                if text.startswith(("import ", "from ")):
                    continue  # importing a utils module (`from utils import web_corpus`) defines nothing new
                for name in defined & set(public):
                    if (path.stem, name) not in listed:
                        clashes.append(f"{path.name}: {name} (utils has {public[name]})")
    assert not clashes, "same name, different idea - rename one, or keep it as the copy:\n" + "\n".join(clashes)
