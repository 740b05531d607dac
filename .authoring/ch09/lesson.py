# %% [markdown]
# # 9. Evaluation and benchmarks: what a number is worth
#
# Every chapter so far ended with numbers: a zero-shot accuracy, a word error rate, a
# caption exact match, a hallucination rate. This chapter asks what such a number is worth. A score
# is an estimate from a finite test set, so it needs an interval; a metric is a proxy for what we
# care about, so it has blind spots; a benchmark is a test others have seen, so it can leak into
# training; and a judge - human or model - has biases of its own. The reader builds every metric the field quotes, checks each against the implementation papers
# publish with (where one exists), breaks each on purpose
# to see what it misses, and ends with an honest report of the book's own models: one table, with
# intervals and the conditions each number holds under, and a plain account of where each model is
# weak.
#
# **You will build**
# - a bootstrap confidence interval, and Recall@K with what ties do to it (checked against
#   `torchmetrics`);
# - corpus BLEU, equal to `sacrebleu`'s with its default tokenisation, and CIDEr-D, equal to the COCO
#   caption toolkit's (`pycocoevalcap`);
# - CLIPScore with the book's tiny CLIP, and the Frechet distance between feature sets, equal to
#   `scipy`'s and `torchmetrics`' FID, used as an FID with tiny-CLIP features;
# - measurements of what each metric misses: a fluent wrong caption against a true paraphrase, BLEU
#   against the number of references, CLIPScore blind to swapped colours, FID's bias with few samples;
# - a POPE hallucination probe of 2,000 questions on the TinyVLM before and after chapter 8's DPO,
#   with bootstrap intervals;
# - three judges made from the TinyVLM, with their position and verbosity biases measured, and what
#   the standard mitigation costs;
# - a deliberately contaminated fine-tuning set, an n-gram contamination check, and how much the leak
#   inflates the score;
# - one function that writes the evaluation report of the book's models.
#
# **Runtime:** about 110 s on a 2-core CPU in our measurement (GPU: not yet measured) ([runtime table](../book/runtimes.md)).
# **Builds on:** {doc}`chapter 1 <01_foundations>` (Recall@K), {doc}`chapter 3 <03_contrastive>` (the
# tiny CLIP and its binding failure), {doc}`chapter 5 <05_vlm>` (the TinyVLM),
# {doc}`chapter 6 <06_audio_video>` (the recogniser and WER), {doc}`chapter 7 <07_generation>` (the
# generator) and {doc}`chapter 8 <08_data_at_scale>` (the POPE probe and the aligned TinyVLM).
# **Run it yourself:** [Open in Colab](https://colab.research.google.com/github/multimodal-ai-executable/book/blob/main/lessons/09_evaluation.ipynb).
#
# %% [markdown]
# ## Setup
#
# The same cell opens every chapter. In Colab it installs the book's small `utils` package (and
# nothing else: Colab's PyTorch stays). Everywhere it seeds every random number generator, picks a
# GPU if there is one, and prints what it found.
#
# %%
# Setup: the same in every chapter but for its number.
import importlib
import subprocess
import sys

BOOK = "git+https://github.com/multimodal-ai-executable/book@main"  # from _config.yml
# In Colab: install the book's utils package only, never torch or numpy.
if "google.colab" in sys.modules:
    pip = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", f"mmbook-utils @ {BOOK}"],
        capture_output=True,
        text=True,
    )
    if pip.returncode != 0:
        raise RuntimeError(
            f"Could not install the book's utils package from {BOOK}:\n"
            f"{pip.stderr.strip()[-800:]}\nCheck that this runtime is online and "
            "that the repository is public; in a fork, set repository.url in "
            "_config.yml and run scripts/sync_repository.py."
        )
    importlib.invalidate_caches()  # so that this running kernel finds the new package

try:
    from utils import runtime
except ModuleNotFoundError:
    raise ModuleNotFoundError(
        "The book's utils package is not installed here. Install it with\n"
        f'  pip install "mmbook-utils @ {BOOK}"\n'
        "(see the Setup page of the book)."
    ) from None

device = runtime.setup(chapter=9, seed=0)
#
# %% [markdown]
# The chapter's imports: the reference implementations we check against (`sacrebleu`, the
# COCO caption toolkit `pycocoevalcap`, `torchmetrics`, `jiwer` and `scipy`; Colab lacks the first
# four, so the cell installs them there), PyTorch, and from the book's `utils` the Shapes world, the
# model zoo with the five models this chapter evaluates, `retrieval` (chapter 1's Recall@K),
# `alignment` (chapter 8's POPE probe), `evaluation` (copies of what this chapter builds, kept for the
# report and for later chapters) and the chapter's exercises. The zoo loads each model from its cache,
# or trains it from the book's recipe when the cache is missing.
#
# %%
import copy
import hashlib
import json
import re
import subprocess
import sys
import time
from importlib import resources
from collections import Counter

import numpy as np
import scipy.linalg
import torch
import torch.nn.functional as F

from utils import alignment, evaluation, generation, plotting, retrieval, runtime
from utils import shapes, speech, tiny_clip, tiny_vlm, training, zoo
from utils.exercises import ch09  # noqa: F401

if runtime.in_colab():  # Colab lacks these: install them (never torch or numpy)
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "sacrebleu", "pycocoevalcap"]
        + ["torchmetrics", "jiwer"],
        check=False,
    )
sacrebleu = runtime.need("sacrebleu", "Checking section 9.3's BLEU")
coco_cider = runtime.need("pycocoevalcap.cider.cider", "Checking section 9.4's CIDEr-D")
torchmetrics = runtime.need(
    "torchmetrics", "Checking Recall@K and the Frechet distance"
)
jiwer = runtime.need("jiwer", "Checking the word error rate")
from sacrebleu.tokenizers.tokenizer_13a import Tokenizer13a  # noqa: E402
from torchmetrics.image.fid import FrechetInceptionDistance  # noqa: E402
from torchmetrics.retrieval import RetrievalHitRate  # noqa: E402

clip, _ = zoo.load("tiny_clip", device=device)
vlm, _ = zoo.load("tiny_vlm", device=device)
aligned, _ = zoo.load("tiny_vlm_dpo", device=device)
asr, _ = zoo.load("tiny_asr", device=device)
generator, _ = zoo.load("tiny_gen", device=device)
#
# %% [markdown]
# ## 9.1 A score is an estimate
#
# A test set is a sample. Chapter 3's tiny CLIP names the colour and shape of 1,000 images of
# the four colour-shape pairs it never saw in training; the fraction it gets right estimates how
# often it would be right on *every* such image, and a second draw of 1,000 images would give a
# slightly different number. Before any comparison, we need to know how different.
#
# %%
held_out = shapes.generate(
    1000, seed=2, split="test"
)  # the 4 held-out colour-shape pairs
labels = shapes.pair_index(held_out.colour[:, 0], held_out.shape[:, 0])  # [1000]
with torch.no_grad():
    prompts = clip.encode_text(tiny_clip.tokenize(shapes.class_prompts()).to(device))
    chosen = (clip.encode_image(held_out.images.to(device)) @ prompts.T).argmax(1).cpu()
right = chosen.eq(labels).numpy()  # [1000] booleans, one per image
print(
    f"zero-shot accuracy on held-out pairs: {100 * right.mean():.1f}% of {len(right)}"
)
print(f"chance: 1 in 24 prompts = {100 / 24:.1f}%")


#
# %% [markdown]
# **The bootstrap** {cite}`efron1979bootstrap` estimates that spread from the test set itself. Draw
# $n$ items from the $n$ we have, *with replacement*; recompute the score; repeat $B$ times. The
# middle 95% of the $B$ scores is a 95% **percentile interval**:
#
# $$\hat\theta^{*}_b = \theta\big(x_{i_{b,1}}, \ldots, x_{i_{b,n}}\big),\quad
# i_{b,j} \sim \text{Uniform}\{1..n\}, \qquad
# \text{CI}_{95} = \big[q_{2.5\%}(\hat\theta^{*}),\; q_{97.5\%}(\hat\theta^{*})\big].$$
#
# In words: pretend the test set is the world, and see how much the score moves when we sample from
# it again. Two details matter. The bootstrap resamples **the units that were sampled**: images here,
# utterances for speech, and - in section 9.9 - scenes, not the four questions asked about each
# scene, because questions about one scene are not independent. And it works for any statistic, not
# only a mean: corpus BLEU, a word error rate, an F1. For a plain accuracy the normal approximation
# $\pm 1.96\sqrt{p(1-p)/n}$ gives nearly the same interval, which makes a good check.
#
# %%
# kept as utils.evaluation.bootstrap_interval
def bootstrap_interval(statistic, n_units, draws=1000, level=0.95, seed=0):
    """The middle `level` of `statistic` over `draws` resamples of units 0..n-1."""
    if n_units < 2:
        raise ValueError(f"a bootstrap needs at least 2 units, got {n_units}")
    rng = np.random.default_rng(seed)
    values = np.array(
        [statistic(rng.integers(n_units, size=n_units)) for _ in range(draws)]
    )
    tail = 100 * (1 - level) / 2
    return float(np.percentile(values, tail)), float(np.percentile(values, 100 - tail))


def percent(values):
    """A statistic of resampled indices: the mean of `values`, in percent."""
    return lambda idx: 100 * float(values[idx].mean())


low, high = bootstrap_interval(percent(right), len(right))
p = right.mean()
normal = 196 * np.sqrt(p * (1 - p) / len(right))  # the normal approximation, in %
print(f"accuracy {100 * p:.1f}%, 95% bootstrap interval [{low:.1f}, {high:.1f}]")
print(f"normal approximation: {100 * p:.1f} +- {normal:.1f}")
#
# %% [markdown]
# The interval is roughly $\pm 2.6$ points at $n = 1{,}000$. (Comparing two models on the same images
# needs an interval for their *difference*: resample the images and recompute both, as section 9.11
# does for a leak.) With fewer images it widens as $1/\sqrt n$ - and the score itself moves: the first 50 images happen to score higher than the rest, within their wide interval.
#
# %%
for n in (50, 200, 1000):
    low, high = bootstrap_interval(percent(right[:n]), n)
    print(
        f"first {n:>4} images: {100 * right[:n].mean():5.1f}%"
        f"  [{low:5.1f}, {high:5.1f}]"
        f"  width {high - low:4.1f} points"
    )
#
# %% [markdown]
# ## 9.2 Recall@K, and what a tie does to it
#
# Chapter 1 built **Recall@K** for retrieval: the share of queries whose right answer is among the
# $K$ best-scored items of the gallery. Here the queries are 500 two-object scenes and the gallery is
# their 500 full captions. Every image whose caption is identical counts as right (the `relevant`
# mask), so duplicates are not punished.
#
# %%
pairs = shapes.generate(500, seed=4, min_objects=2, max_objects=2, caption_style="full")
swapped = evaluation.colour_swapped(pairs)  # the same words, colours exchanged
print("true:   ", pairs.captions[0])
print("swapped:", swapped[0])
with torch.no_grad():
    image_vectors = clip.encode_image(pairs.images.to(device)).cpu()  # [500, 64]
    true_vectors = clip.encode_text(tiny_clip.tokenize(pairs.captions).to(device)).cpu()
    swap_vectors = clip.encode_text(tiny_clip.tokenize(swapped).to(device)).cpu()
similarity = image_vectors @ true_vectors.T  # [500 images, 500 captions]
same_caption = np.array(pairs.captions)
relevant = torch.from_numpy(
    same_caption[:, None] == same_caption[None, :]
)  # [500, 500]
ours = {k: retrieval.recall_at(similarity, relevant, k) for k in (1, 5, 10)}


#
# %% [markdown]
# `torchmetrics` calls the same quantity `RetrievalHitRate` (its `RetrievalRecall` divides by the
# number of relevant items instead, a different metric with the same name in other papers - check
# which one a paper reports). Next to ours and theirs, the cell prints two bounds: Recall@K when every
# tie at the cut-off goes against the right answer, and when every tie goes for it.
#
# %%
def hit_rate_torchmetrics(similarity, relevant, k):
    """torchmetrics' RetrievalHitRate: every query's gallery scored, then averaged."""
    queries = torch.arange(len(similarity))[:, None].expand_as(similarity)
    metric = RetrievalHitRate(top_k=k)
    return metric(
        similarity.flatten(), relevant.flatten(), indexes=queries.flatten()
    ).item()


def recall_bounds(similarity, relevant, k, tolerance=1e-6):
    """Recall@k with every tie at the cut lost, and with every tie won."""
    best = (
        similarity.masked_fill(~relevant, -torch.inf).max(1, keepdim=True).values
    )  # [Q, 1]
    above = ((similarity > best + tolerance) & ~relevant).sum(
        1
    )  # wrong, strictly better
    level = (((similarity - best).abs() <= tolerance) & ~relevant).sum(1)  # wrong, tied
    return (above + level < k).float().mean().item(), (above < k).float().mean().item()


print(
    f"{'':<16}{'all ties lost':>14}{'ours':>7}{'torchmetrics':>14}{'all ties won':>14}"
)
for k, value in ours.items():
    theirs = hit_rate_torchmetrics(similarity, relevant, k)
    worst, best = recall_bounds(similarity, relevant, k)
    print(
        f"image->text R@{k:<2}{100 * worst:>13.1f}%{100 * value:>6.1f}%"
        f"{100 * theirs:>13.1f}%"
        f"{100 * best:>13.1f}%"
    )
right_per_query = relevant.sum(1).double()  # [500]: 1, or more for duplicate captions
for k in ours:  # chance: the right captions land in a random top k
    miss = torch.ones_like(right_per_query)
    for i in range(k):
        miss *= (len(similarity) - right_per_query - i) / (len(similarity) - i)
    print(f"chance R@{k}: {100 * (1 - miss).mean():.2f}%", end="   ")
#
# %% [markdown]
# Ours and `torchmetrics` disagree at R@1 and R@10 - and both fall between the bounds. The tiny
# CLIP's text encoder averages word vectors, so two captions with the same words in another order
# get *exactly* the same vector, and their scores tie. Which tied caption comes first is then up to
# the sorting routine, and the two libraries sort differently. The extreme case makes it plain: put
# each image's colour-swapped caption in the gallery beside the true one (only the true captions
# count as right), and list the gallery in two orders.
#
# %%
gallery_true_first = torch.cat([true_vectors, swap_vectors])  # [1000, 64]
gallery_swap_first = torch.cat([swap_vectors, true_vectors])
tied = (true_vectors - swap_vectors).abs().max(1).values <= 1e-6
print(
    "captions whose colour swap gets the very same vector: "
    f"{100 * tied.float().mean():.1f}%"
)
for name, gallery, texts in (
    ("true captions listed first", gallery_true_first, pairs.captions + swapped),
    ("swapped captions listed first", gallery_swap_first, swapped + pairs.captions),
):
    scores = image_vectors @ gallery.T  # [500, 1000]
    hits = torch.from_numpy(
        same_caption[:, None] == np.array(texts)[None, :]
    )  # same text
    print(f"{name:<30}: R@1 {100 * retrieval.recall_at(scores, hits, 1):5.1f}%")
#
# %% [markdown]
# The same model, the same captions, the same metric: R@1 doubles when the true captions happen to come first in memory, because every comparison with the swapped caption is an exact tie.
# A number that depends on the order of a list measures the list. When ties are possible, report the
# tie policy, or report the *expected* recall under random tie-breaking - exercise 9.2 computes it
# for one right item per query.
#
# %% [markdown]
# ## 9.3 BLEU, from scratch and against sacrebleu
#
# A captioning model is scored by comparing its words with human-written references. The TinyVLM
# captions 1,000 new scenes (chapter 5's test set). Every scene has its canonical caption (objects left
# to right, the only form the TinyVLM was trained to write) and four more true captions in other
# words, from the Shapes world's "varied" style: 5 references per image.
#
# %%
test = tiny_vlm.test_set()  # 1,000 new scenes of 1 to 3 objects
with torch.no_grad():
    test_features = vlm.features(test.batch.images.to(device))
    said = tiny_vlm.generate(vlm, test_features, [tiny_vlm.CAPTION_PROMPT] * 1000)
canonical = [" ".join(tiny_vlm.words(c)) for c in test.captions]  # ',' split off


def other_words(batch, i, rng, k, avoid):
    """k different true captions of image i in the 'varied' style, none in `avoid`."""
    found = []
    while len(found) < k:
        text = " ".join(tiny_vlm.words(shapes.caption_for(batch, i, "varied", rng)))
        if text not in found and text not in avoid:
            found.append(text)
    return found


rng = np.random.default_rng(9)
drawn = [other_words(test.batch, i, rng, 5, [canonical[i]]) for i in range(1000)]
paraphrases = [five[:4] for five in drawn]  # 4 more references per image
paraphrase = [
    five[4] for five in drawn
]  # a 5th true caption, kept out of the references
references = [[c] + p for c, p in zip(canonical, paraphrases, strict=True)]
exact = np.array([s == c for s, c in zip(said, canonical, strict=True)])
for i in (0, 1):
    print(f"image {i}: model  '{said[i]}'")
    print(f"         truth  '{canonical[i]}'")
    print(f"         also   '{paraphrases[i][0]}'")
print(f"captions exactly right: {100 * exact.mean():.1f}%")


#
# %% [markdown]
# **BLEU** {cite}`papineni2002bleu` counts shared n-grams. For $n = 1..4$, the **modified
# precision** $p_n$ is the number of the hypothesis's n-grams found in a reference, each credited at
# most as many times as it occurs in the reference where it occurs most (clipping), over the number
# of n-grams in the hypothesis. Corpus BLEU sums the counts over the whole corpus before dividing, and
# multiplies the geometric mean by a **brevity penalty**:
#
# $$\text{BLEU} = \text{BP}\cdot\exp\Big(\tfrac14\sum_{n=1}^{4}\log p_n\Big), \qquad
# \text{BP} = \begin{cases}1 & c > r\\ e^{1 - r/c} & c \le r\end{cases}$$
#
# with $c$ the total hypothesis length and $r$ the sum of each hypothesis's closest reference length
# (the shorter on a tie). In words: how much of what you wrote appears in the references, penalised
# if you wrote too little to be judged. Scores are printed from 0 to 100.
#
# BLEU's numbers depend on details a paper rarely states - the tokeniser, lowercasing, the smoothing
# of zero counts - which is why `sacrebleu` exists: one reference implementation with a printed
# signature {cite}`post2018sacrebleu`. We match its defaults: the "13a" tokeniser (punctuation split
# off; on our lowercase text a regular expression does the same), case kept, and the 'exp' smoothing, which replaces the $k$-th precision with no match by
# $1/(2^k \cdot \text{total})$ (and returns 0 when nothing matches at all). First, the per-sentence
# statistics:
#
# %%
# kept as utils.evaluation.bleu_words
def bleu_words(text):
    """sacrebleu's 13a tokens on our text: words, and each punctuation mark alone."""
    return re.findall(r"\w+|[^\w\s]", text)


def ngrams(tokens, n):
    return Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))


# kept as utils.evaluation.bleu_statistics
def bleu_statistics(hypotheses, references, max_n=4):
    """Per hypothesis: clipped matches and totals for n = 1..4, its length and
    the closest reference length (shorter on a tie) -> [N, 2 * max_n + 2]."""
    rows = []
    for hypothesis, refs in zip(hypotheses, references, strict=True):
        said_words = bleu_words(hypothesis)
        truths = [bleu_words(r) for r in refs]
        matches, totals = [], []
        for n in range(1, max_n + 1):
            best = Counter()
            for truth in truths:
                best |= ngrams(truth, n)  # max count of each n-gram in one reference
            counts = ngrams(said_words, n)
            matches.append(sum(min(c, best[g]) for g, c in counts.items()))
            totals.append(max(0, len(said_words) - n + 1))
        closest = min((abs(len(t) - len(said_words)), len(t)) for t in truths)[1]
        rows.append(matches + totals + [len(said_words), closest])
    return np.array(rows, dtype=np.float64).reshape(len(rows), 2 * max_n + 2)


#
# %% [markdown]
# Corpus BLEU adds the statistics of all sentences, then combines them once:
#
# %%
# kept as utils.evaluation.bleu_from_statistics
def bleu_from_statistics(summed, max_n=4):
    """BLEU (0-100) from summed statistics; sacrebleu's 'exp' smoothing."""
    matches, totals = summed[:max_n], summed[max_n : 2 * max_n]
    hyp_length, ref_length = summed[2 * max_n], summed[2 * max_n + 1]
    if hyp_length == 0 or totals.min() == 0 or matches.sum() == 0:
        return 0.0  # as sacrebleu: no match at all scores 0
    log_precision, k = 0.0, 1.0
    for match, total in zip(matches, totals, strict=True):
        if match == 0:  # no match at this n: 1 / (2^k total) instead of 0
            k *= 2
            log_precision += np.log(1 / (k * total))
        else:
            log_precision += np.log(match / total)
    brevity = 1.0 if hyp_length > ref_length else np.exp(1 - ref_length / hyp_length)
    return float(100 * brevity * np.exp(log_precision / max_n))


# kept as utils.evaluation.corpus_bleu
def corpus_bleu(hypotheses, references, max_n=4):
    """Corpus BLEU: the statistics summed over the corpus, then combined."""
    return bleu_from_statistics(
        bleu_statistics(hypotheses, references, max_n).sum(0), max_n
    )


#
# %% [markdown]
# The check: sacrebleu's own tokeniser must give our tokens on every text, and sacrebleu's
# `corpus_bleu` (which takes references as *streams*, one list per reference position) must give our
# score.
#
# %% tags=nbval-check-output
tokenizer = Tokenizer13a()
texts = said + canonical + [p for four in paraphrases for p in four]
same_tokens = all(bleu_words(t) == tokenizer(t).split() for t in texts)
print(
    f"our tokens equal sacrebleu's 13a tokens on all {len(texts)} texts: {same_tokens}"
)
for name, refs in (
    ("1 reference", [[c] for c in canonical]),
    ("5 references", references),
):
    ours = corpus_bleu(said, refs)
    streams = [list(stream) for stream in zip(*refs, strict=True)]  # sacrebleu's layout
    theirs = sacrebleu.corpus_bleu(said, streams).score
    print(
        f"{name}: ours {ours:.2f}  sacrebleu {theirs:.2f}  "
        f"agree to 1e-9: {abs(ours - theirs) < 1e-9}"
    )
#
# %% [markdown]
# Because corpus BLEU is a function of summed statistics, the bootstrap resamples the per-caption
# rows and sums them again - the way sacrebleu's paired bootstrap test does.
#
# %%
one_reference = [[c] for c in canonical]
statistics = bleu_statistics(said, one_reference)  # [1000, 10]
bleu_model = bleu_from_statistics(statistics.sum(0))
low, high = bootstrap_interval(
    lambda idx: bleu_from_statistics(statistics[idx].sum(0)), len(statistics)
)
print(
    f"BLEU of the TinyVLM's captions, 1 reference: {bleu_model:.1f}"
    f" [{low:.1f}, {high:.1f}]"
)


#
# %% [markdown]
# ## 9.4 CIDEr-D, from scratch and against the COCO toolkit
#
# **CIDEr** {cite}`vedantam2015cider` was designed for image captions. It weighs each n-gram by
# **tf-idf**: how often the caption uses it, times how *rare* it is across the images of the test
# set, so "a" and "of" count for little and "cross" for more. For n = 1..4 it takes the cosine between
# the candidate's and each reference's tf-idf vectors. The COCO evaluation toolkit computes the
# **CIDEr-D** variant, which clips the candidate's weights at the reference's (repeating a word stops
# helping) and multiplies by a Gaussian penalty on the length difference $\Delta$, with $\sigma = 6$:
#
# $$\text{CIDEr-D}_n(c, S) = \frac{10}{m}\sum_{j=1}^{m} e^{-\Delta_j^2/2\sigma^2}\,
# \frac{\min\big(g^n(c), g^n(s_j)\big)\cdot g^n(s_j)}{\lVert g^n(c)\rVert\,\lVert g^n(s_j)\rVert},
# \qquad \text{CIDEr-D} = \tfrac14\sum_{n=1}^{4}\text{CIDEr-D}_n,$$
#
# where $g^n_k(s) = \text{tf}_k(s)\cdot\log\frac{|I|}{\max(1, \text{df}_k)}$, $|I|$ is the number of
# images and $\text{df}_k$ the number of images whose references contain n-gram $k$. In words: does
# the caption use the informative phrases its references use, at about their length? With one
# reference, a caption identical to it scores 10 (every cosine is 1); papers print CIDEr multiplied
# by 100. Because the idf comes from the test set's own references, a CIDEr number belongs to its
# test set. Two helpers first: the document frequencies, and the tf-idf vectors.
#
# %%
def document_frequency(references, max_n=4):
    """In how many images' reference sets each 1..max_n-gram appears."""
    counts = Counter()
    for refs in references:
        counts.update(
            {g for r in refs for n in range(1, max_n + 1) for g in ngrams(r.split(), n)}
        )
    return counts


def tfidf(text, frequency, n_images, max_n=4):
    """Per n: {n-gram: count * log(n_images / document frequency)}, and its norm."""
    tokens = text.split()
    vectors = [
        {
            g: c * (np.log(n_images) - np.log(max(1.0, frequency[g])))
            for g, c in ngrams(tokens, n).items()
        }
        for n in range(1, max_n + 1)
    ]
    return vectors, [np.sqrt(sum(v * v for v in part.values())) for part in vectors]


#
# %% [markdown]
# Then the score of each caption. (The intervals below resample the per-caption scores with the idf
# of the whole test set held fixed.) As in the toolkit, the words are the space-separated pieces (the
# toolkit tokenises first; we pass it text already split the same way).
#
# %%
# kept as utils.evaluation.cider_d
def cider_d(hypotheses, references, max_n=4, sigma=6.0):
    """CIDEr-D of each hypothesis [N]; the corpus score is their mean."""
    frequency = document_frequency(references, max_n)
    scores = []
    for hypothesis, refs in zip(hypotheses, references, strict=True):
        vec_h, norm_h = tfidf(hypothesis, frequency, len(references), max_n)
        total = 0.0
        for ref in refs:
            vec_r, norm_r = tfidf(ref, frequency, len(references), max_n)
            gap = len(hypothesis.split()) - len(ref.split())
            penalty = np.exp(-(gap**2) / (2 * sigma**2))  # Gaussian length penalty
            for n in range(max_n):
                clipped = sum(
                    min(v, vec_r[n].get(g, 0.0)) * vec_r[n].get(g, 0.0)
                    for g, v in vec_h[n].items()
                )  # min(hyp, ref) * ref
                if norm_h[n] > 0 and norm_r[n] > 0:
                    total += penalty * clipped / (norm_h[n] * norm_r[n]) / max_n
        scores.append(10 * total / len(refs))
    return np.array(scores)


#
# %% [markdown]
# The toolkit's `Cider` scorer takes dictionaries of references and candidates keyed by image. (Its
# tokeniser needs Java, so we skip it and pass the same tokens we use.)
#
# %% tags=nbval-check-output
scorer = coco_cider.Cider()
for name, refs in (("1 reference", one_reference), ("5 references", references)):
    ours = cider_d(said, refs)
    gts = {
        i: list(r) for i, r in enumerate(refs)
    }  # the toolkit's layout: dicts by image
    res = {i: [s] for i, s in enumerate(said)}
    theirs_mean, theirs = scorer.compute_score(gts, res)
    gap = np.abs(ours - theirs).max()
    print(
        f"{name}: ours {ours.mean():.3f}  pycocoevalcap {theirs_mean:.3f}  "
        f"every image agrees to 1e-12: {gap < 1e-12}"
    )
cider_model = cider_d(said, one_reference)
low, high = bootstrap_interval(lambda idx: float(cider_model[idx].mean()), 1000)
print(
    "CIDEr-D of the TinyVLM's captions, 1 reference: "
    f"{cider_model.mean():.2f} [{low:.2f}, {high:.2f}] (a perfect caption: 10)"
)


#
# %% [markdown]
# ## 9.5 What n-gram metrics miss
#
# BLEU and CIDEr measure overlap with references, not truth. Two kinds of caption separate the two.
# A **fluent wrong** caption is the canonical caption with one object's colour changed: grammatical,
# in the references' style, and false. A **true paraphrase** is a correct caption in other words,
# drawn with the "varied" style but *not* one of the five references. Both are scored against the one
# canonical reference, beside the TinyVLM's own captions:
#
# %%
def one_colour_wrong(batch, i, rng):
    """The canonical caption with one object's colour replaced by another colour."""
    text = " ".join(tiny_vlm.words(tiny_vlm.canonical_caption(batch, i)))
    present = [c for c in shapes.COLOURS if f" {c} " in f" {text} "]
    old = present[int(rng.integers(len(present)))]
    absent = [c for c in shapes.COLOURS if c not in present]
    new = absent[int(rng.integers(len(absent)))]
    return f" {text} ".replace(f" {old} ", f" {new} ", 1).strip()


rng = np.random.default_rng(10)
wrong = [one_colour_wrong(test.batch, i, rng) for i in range(1000)]
print("truth:     ", canonical[3])
print("wrong:     ", wrong[3])
print("paraphrase:", paraphrase[3])
#
# %% [markdown]
# Each candidate is scored against the one canonical reference, beside the share of captions that
# are exactly the canonical one and the share that are true (the paraphrases are all true, the
# wrong captions all false, and the model's captions at least as often true as they are exact):
#
# %%
candidates = {
    "model's captions": said,
    "one colour wrong": wrong,
    "paraphrase (true)": paraphrase,
}
true_share = {"one colour wrong": 0.0, "paraphrase (true)": 100.0}  # by construction
print(
    f"{'candidate':<20}{'canonical (%)':>14}{'true (%)':>10}{'BLEU, 1 ref':>13}"
    f"{'CIDEr-D, 1 ref':>16}"
)
for name, texts in candidates.items():
    same = 100 * np.mean([t == c for t, c in zip(texts, canonical, strict=True)])
    truth = f"{true_share[name]:.1f}" if name in true_share else ">= " + f"{same:.1f}"
    bleu = corpus_bleu(texts, one_reference)
    cider = cider_d(texts, one_reference).mean()
    print(f"{name:<20}{same:>14.1f}{truth:>10}{bleu:>13.1f}{cider:>16.2f}")
#
# %% [markdown]
# Against one reference, the fluent wrong caption scores 75.0 BLEU and the true paraphrase 42.7:
# BLEU prefers a false caption in the expected words to a true one in other words. CIDEr-D keeps the order, by about the same margin relative to its maximum (5.05 against 1.89 of a possible 10): the changed colour is a rare, heavily weighted
# word, but the paraphrase shares few phrases at all. The model's captions, exactly right only 60.0% of the time, outscore both. Papers evaluate against several references to soften this. How much do
# more references help, and whom?
#
# %%
counts = [1, 2, 3, 4, 5]
curves = {}
for name, texts in candidates.items():
    curves[f"BLEU, {name}"] = [
        corpus_bleu(texts, [r[:k] for r in references]) for k in counts
    ]
    print(
        f"{name:<18} BLEU with 1..5 references: "
        + " ".join(f"{v:5.1f}" for v in curves[f"BLEU, {name}"])
    )
plotting.line_sweep(
    counts,
    curves,
    title="BLEU depends on how many references there are",
    xlabel="references per image",
    ylabel="corpus BLEU (0-100)",
)


#
# %% [markdown]
# With five references the paraphrase climbs from 42.7 to 80.1, close to the model's captions (82.2);
# the fluent wrong caption stays at 75.0: every n-gram of it that could match already matches the
# canonical reference, and the paraphrases add none of the ones around the wrong word. So a BLEU
# number means nothing without its number of references: the same true captions moved by 37 points.
# (COCO Captions has five references per image {cite}`chen2015cococaptions`; many newer benchmarks
# have one.)
# And even with five, BLEU ranks the wrong caption only 5 to 7 points below correct ones: one wrong colour
# costs a caption its truth but only a few n-grams.
#
# %% [markdown]
# ## 9.6 CLIPScore: a reference-free judge, and its blind spot
#
# **CLIPScore** {cite}`hessel2021clipscore` needs no reference at all: it asks a CLIP model how
# well the caption matches the *image*,
#
# $$\text{CLIP-S}(c, v) = w \cdot \max\big(\cos(\mathbf{c}, \mathbf{v}), 0\big),$$
#
# with $\mathbf{c}$ and $\mathbf{v}$ the text and image embeddings and $w = 2.5$, a constant
# Hessel et al. chose to spread their CLIP's cosines over a readable range. (Their RefCLIPScore also
# uses references: the harmonic mean of CLIP-S and the best caption-reference cosine.) We use the
# book's tiny CLIP as the judge - so the score inherits everything the tiny CLIP cannot see.
#
# %% tags=nbval-check-output
# kept as utils.evaluation.clip_score
@torch.no_grad()
def clip_score(clip, images, captions, weight=2.5):
    """CLIPScore per (image, caption) [N]: weight * max(cos(image, caption), 0)."""
    image_vectors = clip.encode_image(images.to(device))  # [N, D], unit length
    text_vectors = clip.encode_text(tiny_clip.tokenize(captions).to(device))  # [N, D]
    return (weight * (image_vectors * text_vectors).sum(1).clamp(min=0)).cpu()


# a hand-worked check: two unit vectors at 60 degrees have cosine 0.5 -> 2.5 * 0.5
image_vector = torch.tensor([[1.0, 0.0]])
text_vector = torch.tensor([[0.5, np.sqrt(3) / 2]])
by_hand = 2.5 * max(float((image_vector * text_vector).sum()), 0.0)
print(f"cos 60 degrees -> CLIPScore {by_hand:.4f} (expected {2.5 * 0.5:.4f})")
#
# %% [markdown]
# The same four kinds of caption on the 1,000 scenes:
#
# %%
print(f"{'caption (1,000 new scenes)':<28}{'mean CLIPScore [95% CI]':>26}")
clip_scores = {}
for name, texts in {"true (canonical)": canonical, **candidates}.items():
    values = clip_score(clip, test.batch.images, texts).numpy()  # [1000]
    clip_scores[name] = values
    low, high = bootstrap_interval(
        lambda idx, v=values: float(v[idx].mean()), len(values)
    )
    print(f"{name:<28}{values.mean():>14.3f} [{low:.3f}, {high:.3f}]")
#
# %% [markdown]
# CLIPScore does what BLEU could not: the fluent wrong captions score 0.928 against 1.657 for the
# true ones, and the true paraphrase keeps 1.585. It reads the image, so a false colour costs it. But chapter 3 found
# what this tiny CLIP cannot read: which colour goes with which shape. Swap the colours of the two
# objects of a scene, and the caption is false with the very same words:
#
# %%
true_scores = clip_score(clip, pairs.images, pairs.captions)  # [500]
swap_scores = clip_score(clip, pairs.images, swapped)
same = (true_scores - swap_scores).abs() <= 1e-6
print(
    f"CLIPScore, true minus colour-swapped caption: exactly equal for "
    f"{100 * same.float().mean():.1f}% of the 500 scenes"
)
bleu_swapped = corpus_bleu(swapped, [[c] for c in pairs.captions])
cider_swapped = cider_d(swapped, [[c] for c in pairs.captions]).mean()
cider_same = cider_d(pairs.captions, [[c] for c in pairs.captions]).mean()
print(
    f"BLEU of the swapped captions against the true one: {bleu_swapped:.1f}; "
    f"CIDEr-D {cider_swapped:.2f} (identical text: "
    f"{corpus_bleu(pairs.captions, [[c] for c in pairs.captions]):.1f} and "
    f"{cider_same:.2f})"
)


#
# %% [markdown]
# Every one of the 500 swapped captions gets exactly the true caption's CLIPScore: the judge is a
# bag of words, and a bag of words cannot see binding. The n-gram metrics, blind to paraphrase, see
# this one: the swapped caption shares its words with the truth but not all its bigrams ("large blue", "blue
# square"), so BLEU falls to 51.4. Each metric has a blind spot, and they are different ones - the
# case for reporting more than one. (Real CLIP models see word order a little more than ours but
# often behave much like bags of words {cite}`yuksekgonul2023bow`, so CLIPScore inherits the same
# kind of blind spot.)
#
# %% [markdown]
# ## 9.7 The Frechet distance, and FID's bias with few samples
#
# An image generator has no reference caption to match: its samples should look like *a sample of
# the real distribution*. The **Frechet Inception Distance** {cite}`heusel2017fid` compares the two
# distributions through features: fit a Gaussian to the features of real images and one to the
# features of generated images, and take the Frechet (2-Wasserstein) distance between them,
#
# $$d^2 = \lVert\mu_r - \mu_g\rVert^2 + \operatorname{tr}\Big(\Sigma_r + \Sigma_g -
# 2\big(\Sigma_r^{1/2}\,\Sigma_g\,\Sigma_r^{1/2}\big)^{1/2}\Big).$$
#
# In words: how far apart the centres are, plus how different the spreads are. FID proper uses
# an Inception-v3 network's 2,048 pooled features; our images are 16-pixel Shapes, so we use the
# tiny CLIP's 64 image features (before normalisation), and call it FID with tiny-CLIP features -
# its numbers are not comparable with anyone's FID. The matrix square root is computed through
# eigendecompositions of symmetric matrices, in float64.
#
# %%
# kept as utils.evaluation.frechet_distance
def frechet_distance(features_a, features_b):
    """Frechet distance between Gaussians fitted to [N, D] and [M, D] features."""
    a, b = features_a.double(), features_b.double()
    mean_a, mean_b = a.mean(0), b.mean(0)
    cov_a, cov_b = torch.cov(a.T), torch.cov(b.T)  # [D, D], unbiased (N - 1)
    values, vectors = torch.linalg.eigh(cov_a)
    root_a = vectors @ torch.diag(values.clamp(min=0).sqrt()) @ vectors.T  # S_a^1/2
    middle = root_a @ cov_b @ root_a  # symmetric, positive semi-definite
    trace_root = (
        torch.linalg.eigvalsh((middle + middle.T) / 2).clamp(min=0).sqrt().sum()
    )
    gap = (mean_a - mean_b).square().sum()
    return float(gap + cov_a.trace() + cov_b.trace() - 2 * trace_root)


# kept as utils.evaluation.clip_features
@torch.no_grad()
def clip_features(clip, images):
    """The tiny CLIP's image features before normalisation [N, 64], images in [0, 1]."""
    if images.shape[-1] < 32:
        images = F.interpolate(images, size=32, mode="nearest")  # 16 -> 32 pixels
    return clip.image_encoder(images.to(device)).cpu()


#
# %% [markdown]
# The real images are 4,000 held-out Shapes of one large object (chapter 7's test distribution);
# the generated ones are 480 samples of chapter 7's flow-matching generator, 20 of each of the 24
# classes, with 16 Euler steps and guidance 3.
#
# %%
real_images, real_labels = generation.large_objects(4000, seed=99)  # held out
real = (real_images + 1) / 2  # [4000, 3, 16, 16] in [0, 1]
sample_labels = torch.arange(generation.N_CLASSES).repeat(20)  # 20 of every class
start = time.perf_counter()
with torch.no_grad():
    fake = generation.euler_sample(generator, sample_labels, steps=16, w=3.0, seed=0)
fake = (fake.clamp(-1, 1) + 1) / 2  # [480, 3, 16, 16]
print(f"{len(fake)} samples in {time.perf_counter() - start:.0f} s")
real_a, real_b = clip_features(clip, real[:2000]), clip_features(clip, real[2000:])
fake_features = clip_features(clip, fake)  # [480, 64]


#
# %% [markdown]
# Two references. `scipy.linalg.sqrtm` of $\Sigma_r\Sigma_g$ is the way the pytorch-fid package
# computes the trace term (the two products have the same eigenvalues); `torchmetrics`'
# `FrechetInceptionDistance` accepts any feature extractor, so we hand it the tiny CLIP's.
#
# %% tags=nbval-check-output
def scipy_frechet(a, b):
    """The usual formula with scipy's matrix square root (pytorch-fid's way)."""
    a, b = a.double().numpy(), b.double().numpy()
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = scipy.linalg.sqrtm(cov_a @ cov_b).real
    gap = ((a.mean(0) - b.mean(0)) ** 2).sum()
    return float(gap + np.trace(cov_a) + np.trace(cov_b) - 2 * np.trace(root))


class TinyClipFeatures(torch.nn.Module):
    """The tiny CLIP's image features as torchmetrics' custom FID extractor."""

    num_features = 64

    def forward(self, images):
        return clip_features(clip, images)


fid_metric = FrechetInceptionDistance(feature=TinyClipFeatures(), normalize=True)
fid_metric.update(real[:480], real=True)
fid_metric.update(fake, real=False)
ours = frechet_distance(real_a[:480], fake_features)
theirs = scipy_frechet(real_a[:480], fake_features)
tm = fid_metric.compute().item()
print(f"ours {ours:.4f} | scipy {theirs:.4f} | torchmetrics {tm:.4f}")
print(
    f"agree to 1e-6 (relative): scipy {abs(ours - theirs) < 1e-6 * theirs}, "
    f"torchmetrics {abs(ours - tm) < 1e-6 * tm}"
)


#
# %% [markdown]
# **FID is biased.** The covariance of $n$ samples is an estimate, and its errors add to the
# distance: two samples of the *same* distribution have a positive FID that shrinks as $n$ grows.
# Chong and Forsyth showed that this bias depends on the generator, so comparing two models at a
# fixed $n$ can rank them by their bias {cite}`chong2020fid`. We measure it at five set sizes, with
# 20 random draws of each: FID between two disjoint sets of real images drawn at random, the same
# with each set **class-matched** ($n/24$ images of each class, as the generated set is built), and
# generated against real images, both class-matched.
#
# %%
def subset(labels, n, rng, matched):
    """n positions of `labels` at random, or n / 24 of each class (class-matched)."""
    if not matched:
        return torch.from_numpy(rng.choice(len(labels), n, replace=False))
    pools = [(labels == c).nonzero()[:, 0] for c in range(generation.N_CLASSES)]
    per_class = n // generation.N_CLASSES
    return torch.cat([p[rng.choice(len(p), per_class, replace=False)] for p in pools])


labels_a, labels_b = real_labels[:2000], real_labels[2000:]
sizes, runs = [24, 48, 96, 192, 480], 20
rng = np.random.default_rng(3)
curves = {
    "real vs real": [],
    "real vs real, class-matched": [],
    "generated vs real, class-matched": [],
}
for n in sizes:
    for name, values in curves.items():
        matched = name != "real vs real"
        first = fake_features if name.startswith("generated") else real_a
        first_labels = sample_labels if name.startswith("generated") else labels_a
        values.append(
            [
                frechet_distance(
                    first[subset(first_labels, n, rng, matched)],
                    real_b[subset(labels_b, n, rng, matched)],
                )
                for _ in range(runs)
            ]
        )
table = {name: np.array(values) for name, values in curves.items()}  # [sizes, runs]
print("mean +- standard deviation over the 20 draws")
print(f"{'n':>4}" + "".join(f"{name:>34}" for name in table))
for i, n in enumerate(sizes):
    print(
        f"{n:>4}"
        + "".join(f"{v[i].mean():>25.3f} +- {v[i].std():.3f}" for v in table.values())
    )
#
# %% [markdown]
# The bias is roughly linear in $1/n$, so Chong and Forsyth fit
# $\text{FID}_n = \text{FID}_\infty + k/n$ and report the intercept $\text{FID}_\infty$ {cite}`chong2020fid`. We fit each of the 20
# draws and give the spread of the fits:
#
# %%
inverse = 1 / np.array(sizes, dtype=float)
for name, values in table.items():
    fits = np.array(
        [np.polyfit(inverse, values[:, r], 1) for r in range(runs)]
    )  # slope, b
    slope, intercept = fits[:, 0], fits[:, 1]
    print(
        f"{name:<33}: FID at n = infinity {intercept.mean():.3f} "
        f"({intercept.min():.3f} to {intercept.max():.3f}), slope {slope.mean():.2f} "
        f"({slope.min():.2f} to {slope.max():.2f}) / n"
    )
plotting.line_sweep(
    sizes,
    {name: values.mean(1) for name, values in table.items()},
    logx=True,
    title="Fewer samples, larger FID: the bias is the metric's",
    xlabel="images per set (n)",
    ylabel="FID with tiny-CLIP features",
)
#
# %% [markdown]
# Three readings. First, most of what looks like small-sample bias between random real sets is the
# class mix: two random sets of 24 real images score 0.129 (give or take 0.055 over the draws) - worse
# than our generator at 480 images (0.088) - while two class-matched sets of 24 score 0.015.
# Sample the real set the way the generated one is built. Second, even class-matched, FID falls with
# $n$ (from 0.015 at 24 images to 0.001 at 480 for real against real): that is the bias of estimating
# a covariance from few samples. Third, extrapolated to $n = \infty$, the generator scores 0.088
# (0.079 to 0.098 over the draws) and class-matched real against real 0.000, as it should. Chong and Forsyth found, with Inception's 2,048 features and thousands to tens of thousands of
# images from GANs, that the slope differs between generators, so that a fixed $n$ can rerank models
# {cite}`chong2020fid`; here the generator's slope (0.51, from -0.16 to 1.26 over the draws) and the
# real data's (0.35, 0.22 to 0.55) cannot be told apart at these sizes. An FID is comparable with
# another only at the same $n$, with the same features and the same sampling of the real set: report
# all three, or report $\text{FID}_\infty$.
#
# %% [markdown]
# ## 9.8 Word error rate, checked once more
#
# Chapter 6 built the word error rate and checked it against `jiwer`; the report below uses it on
# the tiny recogniser's three test sets. One more check on the hardest, the voice it never heard, now
# with an interval. WER is a ratio of sums (all edits over all reference words), so the bootstrap
# resamples utterances and recomputes the ratio.
#
# %% tags=nbval-check-output
voice = speech.asr_test_sets(speech.load_spoken_words())["held-out voice"]
heard = speech.recognise(asr, voice.waveforms)
edits = np.array(
    [
        jiwer.process_words(r, h).wer * len(r.split())
        for r, h in zip(voice.texts, heard, strict=True)
    ]
)
words_said = np.array([len(r.split()) for r in voice.texts])
wer = speech.corpus_wer(voice.texts, heard)
low, high = bootstrap_interval(
    lambda idx: 100 * edits[idx].sum() / words_said[idx].sum(), len(edits)
)
print(
    f"held-out voice: WER ours {wer:.2f}% | "
    f"jiwer {100 * jiwer.wer(voice.texts, heard):.2f}%"
    f" | 95% interval over utterances [{low:.1f}, {high:.1f}]"
)
#
# %% [markdown]
# ## 9.9 Hallucination: a POPE probe with intervals
#
# Chapter 8 built a POPE-style probe {cite}`li2023pope` and aligned the TinyVLM with DPO to answer
# "is there ...?" truthfully. Here we measure both models with intervals. The probe asks about 500
# new scenes: for each, one object it shows (truth "yes") and three it does not (truth "no"): a
# **random** absent object, a **popular** one (among the most frequent in training) and an
# **adversarial** one (sharing a colour or shape with an object in the picture). Each kind of
# negative, with the "yes" questions, is a balanced test of 1,000 questions.
#
# %%
popular = alignment.pair_frequency(
    tiny_vlm.scenes(tiny_vlm.TRAIN_IMAGES, tiny_vlm.TRAIN_SEED)
)
probe_scenes = tiny_vlm.scenes(500, tiny_vlm.TEST_SEED)  # new scenes
asked = alignment.pope_questions(probe_scenes, popular, seed=5)  # 4 per scene
print(f"{len(asked)} questions: per scene one 'yes' and one 'no' of each negative kind")
for q in asked[:4]:
    kind = "present" if q["negative"] == "none" else q["negative"]
    print(f"  {kind:<12}{q['question']:<34}truth: {q['answer']}")


@torch.no_grad()
def yes_answers(model):
    """[500, 4] booleans: did the model say 'yes' (columns: present, random, popular,
    adversarial)?"""
    features = model.features(probe_scenes.images.to(device))
    image_of = torch.tensor([q["image_index"] for q in asked])
    answers = tiny_vlm.first_token_answers(
        model, features, [q["question"] for q in asked], image_of
    )
    return np.array([a == "yes" for a in answers]).reshape(len(probe_scenes), 4)


#
# %% [markdown]
# POPE reports accuracy, precision and recall of answering "yes", their F1, and the **yes-ratio**:
# the share of "yes" answers. From per-scene answers (a present object and one negative), each is a
# function of two counts, so the bootstrap resamples *scenes* and recomputes them.
#
# %%
# kept as utils.evaluation.pope_from_counts
def pope_from_counts(present, invented):
    """POPE metrics (%) from per-scene 'yes' to the present object and to a negative."""
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


def pope_intervals(yes, column):
    """95% intervals over scenes: F1 and yes-ratio of one kind of negative."""
    intervals = {}
    for metric in ("F1", "yes-ratio"):

        def statistic(idx, m=metric):
            return pope_from_counts(yes[idx, 0], yes[idx, column])[m]

        intervals[metric] = bootstrap_interval(statistic, len(yes))
    return intervals


#
# %% [markdown]
# The two models, each kind of negative with its intervals:
#
# %%
pope_results = {}
print(
    f"{'model':<14}{'negatives':<13}{'acc':>6}{'prec':>7}{'rec':>7}"
    f"{'F1 [95% CI]':>20}{'yes-ratio [95% CI]':>22}"
)
for name, model in (("TinyVLM", vlm), ("TinyVLM + DPO", aligned)):
    yes = yes_answers(model)
    for column, negative in enumerate(alignment.NEGATIVES, start=1):
        scores = pope_from_counts(yes[:, 0], yes[:, column])
        pope_results[name, negative] = scores
        ci = pope_intervals(yes, column)
        print(
            f"{name:<14}{negative:<13}{scores['accuracy']:6.1f}"
            f"{scores['precision']:7.1f}"
            f"{scores['recall']:7.1f}{scores['F1']:8.1f} [{ci['F1'][0]:.1f}, "
            f"{ci['F1'][1]:.1f}]{scores['yes-ratio']:10.1f} [{ci['yes-ratio'][0]:.1f}, "
            f"{ci['yes-ratio'][1]:.1f}]"
        )
#
# %% [markdown]
# Before alignment the TinyVLM says "yes" to only about a third of the questions (yes-ratio 30.4% to 35.6%) though half are true: it misses most objects (recall 38.8%), and its F1
# is about 46 - below the F1 of a model that always says "yes" (the last cell of this section).
# After DPO, recall is 96.0% and F1 ranges from 89.6 (adversarial) to 95.0 (popular); every interval
# is far from the model before. The yes-ratio says *which way* a model errs. On a balanced probe the truth is 50%: well below means a model that leans to "no" - ours before
# DPO, though with accuracy between 53.2% and 58.4% it is closer to guessing than to caution; well
# above means a model that says "yes" to please, inventing objects - the failure POPE was
# built to expose, and the one several instruction-tuned models of 2023 showed, answering "yes" to
# nearly everything {cite}`li2023pope`. The aligned model errs slightly that way: its yes-ratio is above 50% on random (54.3%) and most
# of all on adversarial negatives (57.1%), while popular negatives sit at 51.1%. And F1 alone can mislead, because "always yes" is a strong baseline on it:
#
# %% tags=nbval-check-output
always_yes = pope_from_counts(np.ones(500, bool), np.ones(500, bool))
never_yes = pope_from_counts(np.zeros(500, bool), np.zeros(500, bool))
print(
    "a model that always says yes:",
    {k: round(float(v), 1) for k, v in always_yes.items()},
)
print(
    "a model that never says yes: ",
    {k: round(float(v), 1) for k, v in never_yes.items()},
)
#
# %% [markdown]
# ## 9.10 A model as judge, and its biases
#
# Open-ended answers have no single reference, so benchmarks such as MM-Vet and MT-Bench ask a
# strong model to grade them {cite}`yu2024mmvet,zheng2023judge`. Zheng et al. measured what such a
# judge brings with it: shown two answers, GPT-4 gave the same verdict after the answers' order was
# swapped only 65.0% of the time, and Claude-v1 only 23.8% (**position bias**); and Claude-v1 and
# GPT-3.5, much less GPT-4, preferred answers padded with repetition (**verbosity bias**)
# {cite}`zheng2023judge`. We build judges from
# the book's own models and measure both.
#
# A judge here is the TinyVLM fine-tuned to compare two answers to a question about an image, one
# right and one wrong (a wrong colour, shape or count). Each answer may be **padded**: the same
# content in more words.
#
# %%
OPTIONS = {
    "colour": shapes.COLOURS,
    "shape": shapes.SHAPES,
    "count": ("1", "2", "3", "4"),
}


def wordy(kind, word):
    """The same answer, padded with words that add nothing."""
    if kind == "count":
        return f"{word} , there are {word} objects"
    return f"{word} , the {kind} of the object is {word}"


def answer_pairs(batch, seed, wordy_right=0.0, wordy_wrong=0.0):
    """Per question a right and a wrong answer, each padded with the given chance."""
    rng = np.random.default_rng(seed)
    pairs_out = []
    for qa in shapes.questions(batch, seed=seed, kinds=tuple(OPTIONS)):
        wrong = [w for w in OPTIONS[qa["kind"]] if w != qa["answer"]]
        bad = wrong[int(rng.integers(len(wrong)))]
        right_text = (
            wordy(qa["kind"], qa["answer"])
            if rng.random() < wordy_right
            else qa["answer"]
        )
        wrong_text = wordy(qa["kind"], bad) if rng.random() < wordy_wrong else bad
        pairs_out.append(
            {**qa, "wrong": bad, "right_text": right_text, "wrong_text": wrong_text}
        )
    return pairs_out


pair = answer_pairs(tiny_vlm.scenes(1, 41), 3, 0.5, 0.5)[0]
print(pair["question"], "| right:", pair["right_text"], "| wrong:", pair["wrong_text"])


#
# %% [markdown]
# Two judges are trained on the same pairs, the same images, the same 300 steps and seed; they differ
# in one thing, **how they give the verdict**. The *position* judge names the side of the better
# answer, "left" or "right", as LLM judges name "A" or "B". The *answer* judge names the better answer
# itself. In training the right answer is shown first half of the time, and padding is independent of
# being right.
#
# %%
def judge_prompt(pair, right_first, verdict):
    """The judge's prompt; verdict 'position' asks which side, 'answer' which answer."""
    first, second = (pair["right_text"], pair["wrong_text"])[
        :: 1 if right_first else -1
    ]
    ask = " , left or right ?" if verdict == "position" else ""
    return f"{pair['question']} {first} or {second}{ask}"


def judge_target(pair, right_first, verdict):
    if verdict == "position":
        return "left" if right_first else "right"  # the side the right answer is on
    return pair["answer"]  # the right answer itself


#
# %% [markdown]
# Training is chapter 5's loss on the verdict token only, with the image tower frozen, as chapter 8
# aligned the TinyVLM; `train_copy` is that loop, and section 9.11 uses it again:
#
# %%
def train_copy(features, image_of, tokens, labels, steps, seed):
    """A copy of the TinyVLM, tower frozen, trained on examples (tokens, labels) whose
    images have features[image_of]: AdamW, batches of 64 drawn under `seed`."""
    model = copy.deepcopy(vlm).train()
    trainable = [
        w for name, w in model.named_parameters() if not name.startswith("tower.")
    ]
    optimizer = torch.optim.AdamW(trainable, lr=1e-3, weight_decay=0.0)
    draw = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        pick = torch.randint(len(tokens), (64,), generator=draw)
        loss = tiny_vlm.vlm_loss(
            model,
            features[image_of[pick]],
            tokens[pick].to(device),
            labels[pick].to(device),
        )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return model.eval()


#
# %% [markdown]
# A judge is that loop on its pairs, shown with the right answer first half of the time:
#
# %%
def train_judge(pairs_in, features, verdict, steps=300, seed=0):
    """A copy of the TinyVLM taught to pick the right answer of each pair."""
    order = (
        np.random.default_rng(seed).random(len(pairs_in)) < 0.5
    )  # right first half the time
    prompts = [
        judge_prompt(p, o, verdict) for p, o in zip(pairs_in, order, strict=True)
    ]
    targets = [
        judge_target(p, o, verdict) for p, o in zip(pairs_in, order, strict=True)
    ]
    tokens, labels = tiny_vlm.encode(prompts, targets, 48)  # [N, 48] each
    image_of = torch.tensor([p["image_index"] for p in pairs_in])
    return train_copy(features, image_of, tokens, labels, steps, seed)


#
# %% [markdown]
# A verdict is read from the judge's first token: the side it names (and what sits on that side), or
# the answer it names.
#
# %%
@torch.no_grad()
def verdicts(judge, features, pairs_in, right_first, verdict):
    """Per pair: 'right' or 'wrong' (the answer the judge picked), or 'neither'."""
    prompts = [judge_prompt(p, right_first, verdict) for p in pairs_in]
    image_of = torch.tensor([p["image_index"] for p in pairs_in])
    said_words = tiny_vlm.first_token_answers(judge, features, prompts, image_of)
    if verdict == "position":  # which side was named, and what sits there
        side = {"left": right_first, "right": not right_first}
        return np.array(
            [
                "neither" if w not in side else "right" if side[w] else "wrong"
                for w in said_words
            ]
        )
    return np.array(
        [
            "right" if w == p["answer"] else "wrong" if w == p["wrong"] else "neither"
            for w, p in zip(said_words, pairs_in, strict=True)
        ]
    )


#
# %% [markdown]
# The judges learn from pairs about 3,000 training scenes and are tested on pairs about 500 new ones:
#
# %%
judge_scenes, judged_scenes = tiny_vlm.scenes(3000, 41), tiny_vlm.scenes(500, 43)
with torch.no_grad():
    judge_features = vlm.features(judge_scenes.images.to(device))
    judged_features = vlm.features(judged_scenes.images.to(device))
balanced = answer_pairs(judge_scenes, 3, 0.5, 0.5)  # padding unrelated to being right
start = time.perf_counter()
judges = {
    verdict: train_judge(balanced, judge_features, verdict)
    for verdict in ("position", "answer")
}
print(
    f"two judges trained in {time.perf_counter() - start:.0f} s (300 steps of 64 each)"
)


#
# %% [markdown]
# First, how well did each judge learn its task? Its verdicts on 1,500 of its own training pairs and
# on the new pairs, each pair asked in both orders:
#
# %%
def right_share(judge, features, pairs_in, verdict):
    """% of verdicts naming the right answer, each pair asked in both orders."""
    both = [verdicts(judge, features, pairs_in, o, verdict) for o in (True, False)]
    return 100 * np.mean([(v == "right").mean() for v in both])


short = answer_pairs(judged_scenes, 5)  # new scenes, both answers short
for verdict, judge in judges.items():
    seen = right_share(judge, judge_features, balanced[:1500], verdict)
    new = right_share(judge, judged_features, short, verdict)
    print(
        f"{verdict} judge: right on its own training pairs {seen:.1f}%, "
        f"on new ones {new:.1f}%"
    )
print("reference: a coin flip is right 50% of the time")
#
# %% [markdown]
# At 300 steps the position judge is right on 59.2% of its *own training pairs*, barely above the 50%
# of a coin flip: it is under-trained. The answer judge is right on 97.2% of them. Its task is close
# to what the TinyVLM already does - its target is the right answer itself, so it can answer the
# question and then check which candidate matches - and we suspect that closeness explains much of
# its fast learning. So everything below compares the two judges at an equal budget of 300 steps,
# not two designs; the seeds at the end of this section add a budget five times larger.
#
# **Position bias** is measured by asking about every pair twice, with the right answer shown first
# and then second: a verdict that changes with the order **flips**.
#
# %%
kinds = np.array([p["kind"] for p in short])
both_orders = {}
print(
    f"{'judge names':<13}{'kind':<8}{'right, shown first':>19}"
    f"{'right, shown second':>21}"
    f"{'flips':>8}"
)
for verdict, judge in judges.items():
    first = verdicts(judge, judged_features, short, True, verdict)
    second = verdicts(judge, judged_features, short, False, verdict)
    both_orders[verdict] = first, second
    for kind in (*OPTIONS, "all"):
        rows = kinds == kind if kind != "all" else np.ones(len(kinds), bool)
        print(
            f"{verdict:<13}{kind:<8}{100 * (first[rows] == 'right').mean():>18.1f}%"
            f"{100 * (second[rows] == 'right').mean():>20.1f}%"
            f"{100 * (first[rows] != second[rows]).mean():>7.1f}%"
        )
print("reference flips: a coin flip 50%, a judge that always names the same side 100%")
#
# %% [markdown]
# In this run (seed 0) the position judge is right 98.8% of the time on colour questions when the
# right answer is shown second and 1.8% when it is shown first: it names the side "right" almost
# always, whatever it is shown, and its verdict flips on 99.4% of colour pairs. Over all kinds it
# flips on 74.0% of pairs, the answer judge on 2.0%. We suspect that an under-trained judge falls back on a position (the seeds at the end of
# this section test it);
# Zheng et al. likewise found the weaker judges the less consistent {cite}`zheng2023judge`.
#
# **The standard mitigation** asks twice, in both orders, and calls a disagreement a tie - what
# MT-Bench's judge does {cite}`zheng2023judge`. Its costs are twice the calls and fewer decisions:
#
# %%
coin = (
    np.random.default_rng(6).random(len(short)) < 0.5
)  # which order a single call sees
print(
    f"{'judge names':<13}{'protocol':<32}{'calls':>6}{'decided':>9}"
    f"{'right of decided':>18}"
)
for verdict, (first, second) in both_orders.items():
    once = np.where(coin, first, second)
    decided = once != "neither"
    agree = (first == second) & (first != "neither")  # the same answer in both orders
    for protocol, calls, kept, verdict_of in (
        ("one call, random order", 1, decided, once),
        ("both orders, disagreement = tie", 2, agree, first),
    ):
        right_share = 100 * (verdict_of[kept] == "right").mean()
        print(
            f"{verdict:<13}{protocol:<32}{calls:>6}{100 * kept.mean():>8.1f}%"
            f"{right_share:>17.1f}%"
        )
#
# %% [markdown]
# For the position judge, asking twice raises the share of right verdicts among those it gives from
# 58.9% to 77.9% - but it now decides only 26.0% of the pairs; the rest become ties. For the answer
# judge the protocol costs twice the calls to move from 98.4% to 99.2% right, on 94.9% of pairs. A
# judge that names the answer depended much less on position here (2.0% flips against 74.0%), but that
# compares a judge that learned its task with one that did not; naming the answer is also only
# possible when answers are short enough to be named. Long answers need a label, and then the order
# must be swapped.
#
# **Verbosity.** Does the judge prefer the longer answer? Padding was independent of being right in
# training. Preference data often is not: longer answers are more often the preferred ones, and a
# model trained on them learns length as a shortcut - Singhal et al. found that optimising a reward
# for length alone recovered most of what RLHF's reward model gave {cite}`singhal2023length`. A
# third judge makes that concrete: the position judge again, trained on pairs where the right answer
# is padded 80% of the time and the wrong one 20%. Both position judges are then tested on pairs
# where only the wrong answer is padded, only the right one, or neither (each order asked, averaged):
#
# %%
start = time.perf_counter()
length_biased = answer_pairs(judge_scenes, 3, 0.8, 0.2)  # the right answer padded 80%
long_judge = train_judge(length_biased, judge_features, "position")
print(f"a third judge trained in {time.perf_counter() - start:.0f} s")
tests = {
    "both short": short,
    "wrong answer padded": answer_pairs(judged_scenes, 5, 0.0, 1.0),
    "right answer padded": answer_pairs(judged_scenes, 5, 1.0, 0.0),
}
print(
    f"{'test pairs':<22}{'balanced data':>15}{'length-biased data':>20}"
    "   (position judges)"
)
for name, pairs_in in tests.items():
    scores = []
    for model in (judges["position"], long_judge):
        picks = [
            verdicts(model, judged_features, pairs_in, o, "position") for o in (1, 0)
        ]
        scores.append(100 * np.mean([(v == "right").mean() for v in picks]))
    print(f"{name:<22}{scores[0]:>14.1f}%{scores[1]:>19.1f}%")
#
# %% [markdown]
# The judge trained where length went with being right learned length: when the wrong answer is
# the padded one, it picks it almost every time (right 5.6%), and when the right one is padded it is
# never wrong (100.0%) - on the same questions where, unpadded, it is right 58.0% of the time. The judge trained on balanced data shows no such swing (57.3%, 63.6%, 56.2%); whether its
# smaller differences are a bias or the noise of one run, the seeds below tell. So the large bias
# came from the data, not from the architecture: the single factor that differs between the two
# position judges. A reader should ask of every
# model-graded benchmark which judge, which prompt, whether the order was swapped, and whether
# longer answers were controlled for.
#
# %% [markdown]
# **Three seeds, and five times the steps.** Each judge above is one training run of 300 steps, and
# the seed draws both the order in which pairs are shown during training and the batches. The runs
# file repeats all three judges under seeds 0 to 2, at 300 steps and at 1,500 (`scripts/ch09_runs.py`,
# which runs this lesson's own cells, so 300 steps with seed 0 is the run above):
#
# %%
seed_runs = json.loads(
    resources.files("utils.data").joinpath("ch09_runs.json").read_text()
)


def spread_of(runs, *keys):
    """'mean (lowest to highest)' of one number over the seeds of a runs-file entry."""
    values = []
    for run in runs.values():
        for key in keys:
            run = run[key]
        values.append(run)
    return training.spread(values)


judge_runs = seed_runs["judges"]  # {steps: {seed: {judge: results}}}
print(
    f"{'judge, seeds 0-2':<24}{'steps':>6}{'right, training pairs':>23}"
    f"{'right, new pairs':>22}{'flips':>22}"
)
for name in ("position", "answer", "length-biased position"):
    for steps, runs_at in judge_runs.items():
        print(
            f"{name:<24}{steps:>6}{spread_of(runs_at, name, 'train_right'):>23}"
            f"{spread_of(runs_at, name, 'test_right'):>22}"
            f"{spread_of(runs_at, name, 'flips', 'all'):>22}"
        )
print(
    f"{'right (%) on new pairs':<24}{'steps':>6}{'both short':>24}"
    f"{'wrong one padded':>24}{'right one padded':>24}"
)
for name in ("position", "length-biased position"):
    for steps, runs_at in judge_runs.items():
        tests_here = ("both short", "wrong answer padded", "right answer padded")
        print(
            f"{name:<24}{steps:>6}"
            + "".join(
                f"{spread_of(runs_at, name, 'verbosity', test):>24}"
                for test in tests_here
            )
        )
#
# %% [markdown]
# At 300 steps the position judge is under-trained on every seed (right on 61.6% of its own training
# pairs) and flips on 63.8% of pairs (56.7% to 74.0%: seed 0 was the most biased), against 1.3% for
# the answer judge. Trained five times longer, it learns its task (95.1% right on its training pairs,
# 94.3% on new ones) and its flips fall to 9.2% (6.3% to 13.2%) - still far above the answer judge's
# 0.5% at the same budget. So most of the position bias was the symptom of a judge that had not
# learned its task, and some of it remained; whether it keeps shrinking, two budgets cannot say (the
# GPU section trains longer).
#
# The verbosity bias did not train away. At 1,500 steps the length-biased judge is right on 81.7% of
# unpadded pairs, but on 39.7% (38.4% to 42.1%) when the wrong answer is padded and on 99.0% when the
# right one is, while the balanced judge is level across the three kinds of pair (94.3%, 94.5%,
# 94.3%). A bias that comes from the training data outlived more training here; the bias of an
# under-trained judge did not.
#
# %% [markdown]
# ## 9.11 Contamination: when the test was in the training data
#
# A benchmark measures generalisation only if its items were not in training. With web-scale data
# that is hard to guarantee: GPT-3's authors searched for 13-word sequences shared between benchmarks
# and training text {cite}`brown2020gpt3`, PaLM's counted an item contaminated when 70% of its
# 8-grams appeared in training {cite}`chowdhery2022palm`, and MMStar found that some multimodal
# benchmark questions could be answered by models *without the image* at all
# {cite}`chen2024mmstar`. We leak on purpose and measure.
#
# Half of the TinyVLM's 1,000 test scenes (images and captions) are mixed into a fine-tuning set of
# 2,000 fresh training scenes.
#
# %%
rng = np.random.default_rng(0)
leaked = np.zeros(1000, bool)
leaked[rng.permutation(1000)[:500]] = True  # half of the test scenes leak
extra = tiny_vlm.Corpus(tiny_vlm.scenes(2000, 51), 51)  # fresh training scenes
leak_images = torch.cat(
    [extra.batch.images, test.batch.images[torch.from_numpy(leaked)]]
)
leak_captions = extra.captions + [test.captions[i] for i in np.flatnonzero(leaked)]
print(
    f"fine-tuning set: {len(extra.captions)} new captions"
    f" + {leaked.sum()} test captions"
)


def grams_of(text, n):
    tokens = tiny_vlm.words(text)
    return {tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)}


def flagged(test_texts, train_texts, n):
    """GPT-3's rule: a test item is flagged if any of its n-grams is in training."""
    seen = set().union(*(grams_of(t, n) for t in train_texts))
    return np.array([bool(grams_of(t, n) & seen) for t in test_texts])


#
# %% [markdown]
# First the detector. With GPT-3's rule (any shared n-gram flags an item) at three sizes of n,
# against the fine-tuning captions: how many of the leaked test captions are found, and how many
# clean ones are flagged?
#
# %%
print(f"{'':>16}{'of all captions':^30}{'of the checkable ones':^30}")
print(
    f"{'n':>3}{'checkable':>12}{'leaked found':>15}{'clean flagged':>15}"
    f"{'leaked found':>15}{'clean flagged':>15}"
)
for n in (4, 8, 13):
    checkable = np.array([len(tiny_vlm.words(c)) >= n for c in test.captions])
    hit = flagged(test.captions, leak_captions, n)
    shares = [
        hit[leaked],
        hit[~leaked],
        hit[leaked & checkable],
        hit[~leaked & checkable],
    ]
    print(
        f"{n:>3}{100 * checkable.mean():>11.1f}%"
        + "".join(f"{100 * share.mean():>14.1f}%" for share in shares)
    )


#
# %% [markdown]
# The check fails in both directions. At $n = 4$ it flags everything, clean or leaked, since every
# caption shares a phrase like "a large red circle" with training. At $n = 13$ it finds only a third
# of the leaked captions (33.2%), because only 32.1% of the captions have 13 words at all - a 4-word
# caption can never be checked - and among the captions long enough to check it still flags 28.4%
# of the clean ones. Templated text, like many benchmarks' questions, repeats its n-grams by design.
# (PaLM's rule, a share of the n-grams rather than any one, is exercise 9.5.)
#
# In multimodal data the image is part of the item, and a text check cannot see it. Here the leak
# copied images exactly, so an exact hash of the pixels - chapter 8's first deduplication step -
# should find every leaked scene:
#
# %%
def pixel_hash(image):
    """The SHA-256 of an image's 8-bit pixels: equal only for identical images."""
    return hashlib.sha256((image * 255).round().byte().numpy().tobytes()).hexdigest()


training_hashes = {pixel_hash(image) for image in leak_images}
found = np.array([pixel_hash(image) in training_hashes for image in test.batch.images])
print(
    f"pixel hash: leaked scenes found {100 * found[leaked].mean():.1f}%, "
    f"clean scenes flagged {100 * found[~leaked].mean():.1f}%"
)


#
# %% [markdown]
# Every leaked scene is found and no clean one is flagged - for exact copies. A copy re-encoded,
# resized or redrawn would need chapter 8's perceptual hash, with its own threshold and its own
# misses.
#
# Now the damage. We fine-tune a copy of the TinyVLM on captions only (its tower frozen), 300 steps
# of 64, and compare exact-match captioning on the leaked and the clean halves, before and after.
#
# %%
def caption_exact(model):
    with torch.no_grad():
        features = model.features(test.batch.images.to(device))
        out = tiny_vlm.generate(model, features, [tiny_vlm.CAPTION_PROMPT] * 1000)
    return np.array([s == c for s, c in zip(out, canonical, strict=True)])


def fine_tune(images, captions, steps=300, seed=0):
    """A copy of the TinyVLM trained on (image, caption) pairs, its tower frozen."""
    prompts = [tiny_vlm.CAPTION_PROMPT] * len(captions)
    tokens, labels = tiny_vlm.encode(prompts, captions, 24)  # [N, 24] each
    with torch.no_grad():
        features = vlm.features(images.to(device))
    return train_copy(
        features, torch.arange(len(captions)), tokens, labels, steps, seed
    )


start = time.perf_counter()
contaminated = fine_tune(leak_images, leak_captions)
print(f"fine-tuned for 300 steps in {time.perf_counter() - start:.0f} s")
#
# %% [markdown]
# Exact match of the captions before and after, on each half:
#
# %%
before, after = exact, caption_exact(contaminated)
print(f"{'caption exact match':<22}{'before':>9}{'after':>9}{'change':>9}")
for name, rows in (("leaked half", leaked), ("clean half", ~leaked)):
    print(
        f"{name:<22}{100 * before[rows].mean():>8.1f}%{100 * after[rows].mean():>8.1f}%"
        f"{100 * (after[rows].mean() - before[rows].mean()):>+8.1f}"
    )


def inflation(idx):
    """(change on the leaked) - (change on the clean), over resampled scenes."""
    gain = after[idx].astype(float) - before[idx]
    return 100 * (gain[leaked[idx]].mean() - gain[~leaked[idx]].mean())


low, high = bootstrap_interval(inflation, 1000)
print(
    f"inflation from the leak: {inflation(np.arange(1000)):+.1f} points"
    f" [{low:+.1f}, {high:+.1f}]"
)
#
# %% [markdown]
# The two halves differ before any leak (56.6% against 63.4%), by the luck of the split - which is
# why the effect is the *difference of the changes*, not the difference of the scores after. The
# clean half moved by -1.4 points: the fine-tuning itself did not help. The leaked half gained 14.6
# points. The leak inflates the score by 16.0 points, with a bootstrap interval over scenes of
# [+9.7, +21.9]: a contaminated benchmark can make a model look a good deal better than it is, on a
# test that no longer tests anything.
#
# %% [markdown]
# The runs file repeats the fine-tuning under seeds 0 to 2 (the leak is the same; the seed draws the
# batches):
#
# %%
leak_runs = list(seed_runs["contamination"].values())
for half in ("leaked", "clean"):
    change = [run["change"][half] for run in leak_runs]
    print(f"change on the {half} half, seeds 0-2: {training.spread(change)} points")
inflation_by_seed = [run["inflation"] for run in leak_runs]
print(f"inflation, seeds 0-2: {training.spread(inflation_by_seed)} points")
#
# %% [markdown]
# On every seed the clean half barely moves (0.2 points on average, -1.4 to 1.4) and the leaked half
# gains 15.8 points (14.6 to 17.8); the inflation is 15.6 points on average, 14.4 at least.
#
# %% [markdown]
# ## 9.12 The benchmark landscape
#
# The field reports a handful of public benchmarks. Each tests a slice of what a VLM should do, and
# each has been found to measure something else as well. The failure modes below are published
# (with a citation) or follow from how the benchmark is scored; the sizes are the benchmarks' own.
#
# | Benchmark | What it measures | Size | Scored by | A known failure mode |
# |---|---|---|---|---|
# | MMMU {cite}`yue2024mmmu` | college-level questions over charts, diagrams, maps, music sheets, chemical structures; 30 subjects | 11.5K questions (dev 150, validation 900, test 10,500) | accuracy | many questions are answerable without the image {cite}`chen2024mmstar` |
# | MMBench {cite}`liu2024mmbench` | 20 fine-grained perception and reasoning abilities, in English and Chinese | about 3,000 multiple-choice questions | CircularEval: right only if right under every rotation of the options | option-order bias, which CircularEval was built to remove |
# | DocVQA {cite}`mathew2021docvqa` | extractive questions on scanned documents | 50,000 questions on 12,767 images | ANLS: normalised edit similarity, 0 below 0.5 | a string metric scores the answer's format, so harnesses instruct "a single word or phrase" |
# | OCRBench {cite}`liu2024ocrbench` | reading text: recognition, scene-text and document VQA, key information, handwritten maths | 1,000 questions from 29 datasets | a hit if the answer appears in the output | substring matching favours long outputs, which contain more strings |
# | MathVista {cite}`lu2024mathvista` | mathematical reasoning over figures, plots and puzzles | 6,141 examples (testmini 1,000) | accuracy after answer extraction | a text-only GPT-4 given captions and OCR beats random chance by far {cite}`lu2024mathvista` |
# | ChartQA {cite}`masry2022chartqa` | questions about real charts that need arithmetic | 9.6K human-written and 23.1K generated questions | relaxed accuracy: a number within 5% | the tolerance accepts near misses as well as rounding |
# | POPE {cite}`li2023pope` | object hallucination, as "is there a ... in the image?" | 500 COCO images, 3,000 questions per setting, 3 settings | accuracy, precision, recall, F1, yes-ratio | only object existence in a yes/no format: silent on hallucinations in free text |
# | RefCOCO {cite}`kazemzadeh2014referitgame,yu2016refcoco` | grounding: box the object a phrase refers to | 142,209 expressions for 50,000 objects in 19,994 images | a hit if IoU with the true box is at least 0.5 | a model shown the image *without* the phrase did well {cite}`cirik2018refexp` |
# | Video-MME {cite}`fu2024videomme` | video understanding from 11 s to an hour, with and without subtitles | 900 videos, 2,700 multiple-choice questions | accuracy | scores change with subtitles and with how many frames are sampled, so both must be reported |
# | MM-Vet {cite}`yu2024mmvet` | integrated skills: recognition, OCR, knowledge, generation, spatial awareness, maths | 200 images, 218 questions | a GPT-4 grader scores each answer from 0 to 1 | the score depends on the grader model and its version (section 9.10) |
#
# Three lessons of this chapter reappear in the table. Multiple choice invites position effects, so
# MMBench rotates the options (section 9.10 measured the same bias in a judge). Scoring by string
# match rewards the expected form over the truth (section 9.5). And a benchmark answerable without
# its image, or seen in training, measures the language model or its memory (section 9.11): MMStar
# kept only questions that models could not answer without the image {cite}`chen2024mmstar`. No
# single number survives all of this; a **suite**, each score with its interval, its test condition
# and its known failure mode beside it, does better - which is what the report below does for the
# book's models.
#
# %% [markdown]
# ## 9.13 An evaluation report of the book's own models
#
# `evaluation.evaluation_report` runs this chapter's metrics on the book's models and returns one
# row per number: the model, the metric, its value with a 95% bootstrap interval over the units
# that were sampled, the size of the test, a reference level to read it against (chance, a perfect
# score, or real data), and the test condition it holds under. It takes the models as arguments, so a
# reader's own model of the same kind - a TinyCLIP, a TinyVLM, a TinyASR, a generator - gets the same
# report. Every metric in it is this chapter's (the copies kept in `utils.evaluation`); the test
# conditions are the held-out splits of the chapters that trained each model.
#
# %%
start = time.perf_counter()
report = evaluation.evaluation_report(
    clip=clip, vlm=vlm, aligned=aligned, asr=asr, generator=generator
)
print(evaluation.report_table(report))
print(f"({len(report)} rows in {time.perf_counter() - start:.0f} s)")
#
# %% [markdown]
# One model in the table is a choice among several: chapter 8 aligned the TinyVLM under three seeds,
# and the zoo keeps seed 0. Chapter 8's runs file gives the spread of two numbers the report measured
# on that one model, and this chapter's runs file repeats chapter 8's recipe under the three seeds to
# score what chapter 8 did not, the captions:
#
# %%
chapter8 = json.loads(
    resources.files("utils.data").joinpath("ch08_runs.json").read_text()
)["alignment"]["dpo"]
for key, label in (
    ("pope_adversarial_f1", "POPE adversarial F1"),
    ("vqa_count", "VQA count"),
):
    values = [
        (100 if key.startswith("pope") else 1) * run[key] for run in chapter8.values()
    ]
    print(
        f"chapter 8, DPO + NLL, seeds 0-2, {label + ' (%)':<24}"
        f"{training.spread(values)}"
        f"   seed 0: {values[0]:.1f}"
    )
aligned_captions = seed_runs[
    "aligned_captions"
]  # chapter 8's recipe, seeds 0-2 (this chapter)
after = [aligned_captions[seed]["cider_d"] for seed in ("0", "1", "2")]
print(
    f"caption CIDEr-D: before alignment {aligned_captions['before']:.2f}, "
    "after, seeds 0-2: " + ", ".join(f"{v:.2f}" for v in after)
)
#
# %% [markdown]
# **Where each model is weak.** The table is the model card; this is its reading.
#
# - **Tiny CLIP.** 78.4% zero-shot on colour-shape pairs it never saw (chance 4.2%): it generalises
#   to new combinations of known words. But it cannot bind: on two-object scenes every one of the
#   500 comparisons between the true caption and the colour-swapped one is an exact tie, so the 50.0
#   comes only from counting a tie as half a win, and its interval has zero width. Do not use it to
#   judge captions of several objects (section 9.6).
# - **TinyVLM.** Colour and count questions at about 95%, but "where is the red circle relative to
#   the blue square?" at 38.7% [35.0, 42.2]: clearly above the 25.0% of a guess, far below the other
#   kinds. On POPE it leans to "no" (yes-ratio 35.6%) and its F1 of 45.3 is below
#   the 66.7 of always answering "yes".
# - **TinyVLM + DPO.** The alignment did what chapter 8 asked of it (POPE F1 89.6, yes-ratio 57.1%).
#   The zoo's model is chapter 8's seed 0, the best of its three seeds on this F1 and the worst on
#   count (91.3% here; 92.9% on average over the seeds, as chapter 8 reported). What chapter 8 did not measure is captioning, and it collapsed: a CIDEr-D of 8.22 before
#   alignment, 2.17 after - and 1.89 and 2.20 for chapter 8's other two seeds, so the collapse belongs
#   to the recipe, not to one run.
#   Chapter 8 trained and probed one-word answers only; the cell below shows what the aligned model
#   now writes when asked to describe an image. An evaluation that covers only what was optimised
#   will miss what was broken.
# - **Tiny ASR.** 0.0% WER on new orders of the recordings it trained on is a saturated test - it
#   shows only that nothing was forgotten. Recordings it never heard from known voices: 10.2%; the
#   one voice it never heard: 43.8% [40.4, 47.1], an interval over that speaker's utterances, not over
#   speakers. We suspect it would do as badly on other new voices, but one voice cannot show it.
# - **Tiny generator.** Adherence 53.3% [47.1, 60.0] with 16 steps, to be read against the judge's
#   own accuracy on real images of the same classes (the reference column), not only against chance.
#   Its FID is 0.093 where two class-matched real sets give 0.001 at the same $n$ (section 9.7 showed
#   how much class matching lowers the floor). The FID interval is rough: it resamples the generated
#   set only, and a resample repeats images, which itself moves FID (section 9.7's bias).
#
# %% [markdown]
# The captions behind the collapse - three scenes, before and after alignment:
#
# %%
with torch.no_grad():
    for name, model in (("TinyVLM", vlm), ("TinyVLM + DPO", aligned)):
        features = model.features(test.batch.images[1:4].to(device))
        for i, text in enumerate(
            tiny_vlm.generate(model, features, [tiny_vlm.CAPTION_PROMPT] * 3)
        ):
            print(f"{name:<14} scene {i + 1}: {text}")
for i in range(1, 4):
    print(f"{'truth':<14} scene {i}: {canonical[i]}")
#
# %% [markdown]
# ## 9.14 The real thing: the same probe on a pretrained VLM
#
# The probe's code does not care which model answers. Pointed at a pretrained VLM through
# `transformers` - here SmolVLM, the small Idefics3 model of chapter 5's real-thing section - the same
# kind of questions, about three new scenes, are asked in its chat template, and each reply is read with POPE's rule: "no" if the reply
# contains the word "no" or "not", otherwise "yes" {cite}`li2023pope`. In Colab this loads the real
# model; offline it builds a tiny random stand-in of the same class, so the code runs here, but its
# scores mean nothing and the rendered book does not show them. The cell asks only 12 questions;
# on a GPU, ask all 2,000 of section 9.9.
#
# %% tags=remove-output
from PIL import Image  # noqa: E402

from utils import hub  # noqa: E402

pretrained_vlm = hub.load_pretrained("vlm", device=device)
print(pretrained_vlm.summary())
what = "random weights: meaningless" if pretrained_vlm.is_stand_in else "pretrained"
train_frequency = alignment.pair_frequency(
    tiny_vlm.scenes(tiny_vlm.TRAIN_IMAGES, tiny_vlm.TRAIN_SEED)
)  # as section 9.9
few_scenes = tiny_vlm.scenes(3, tiny_vlm.TEST_SEED)  # 3 new scenes: 12 questions
few = alignment.pope_questions(few_scenes, train_frequency, seed=5)
pictures = [
    Image.fromarray(
        (few_scenes.images[q["image_index"]].permute(1, 2, 0).numpy() * 255).astype(
            "uint8"
        )
    ).resize((256, 256))
    for q in few
]
replies = []
for picture, q in zip(pictures, few, strict=True):
    prompt = hub.chat_prompt(pretrained_vlm, q["question"].capitalize())
    inputs = pretrained_vlm.processor(
        images=[picture], text=prompt, return_tensors="pt"
    )
    inputs = inputs.to(device)
    with torch.no_grad():
        out = pretrained_vlm.model.generate(**inputs, max_new_tokens=4, do_sample=False)
    reply = pretrained_vlm.processor.batch_decode(
        out[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True
    )[0]
    replies.append(
        "no" if re.search(r"\b(no|not)\b", reply.lower()) else "yes"
    )  # POPE's rule
scores = alignment.pope_scores(replies, few)
print(
    f"({what}) adversarial: "
    + ", ".join(f"{k} {v:.2f}" for k, v in scores["adversarial"].items())
)


#
# %% [markdown]
# We have not run the real SmolVLM on these drawings, so we quote no result for it. For scale: on
# POPE's COCO questions, LLaVA-1.5 reports a score of 85.9 for both its 7B and 13B models
# {cite}`liu2024llava15`, and POPE's authors found instruction-tuned models of early 2023 that said
# "yes" to nearly every question {cite}`li2023pope`. When you run it, read the yes-ratio first: a
# pretrained model shown 32-pixel drawings may well sit far from 50%, and the direction tells you
# whether it invents objects or denies them.
#
# %% [markdown]
# ## Exercises
#
# Each exercise has a stub that raises `NotImplementedError` and a check in the same cell. Write
# your answer in the stub and run the cell. Stuck? `ch09.<exercise>.hint()` gives a first hint,
# `hint(2)` a second; `solution()` shows the reference. Unattempted exercises simply report *not
# attempted*.
#
# %% [markdown]
# ### Exercise 9.1 - BLEU of one sentence (core)
#
# Write `sentence_bleu(hypothesis, references)`: `hypothesis` is a list of words, `references` a list
# of word lists. For $n = 1..4$, the modified precision $p_n$ is the number of the hypothesis's
# n-grams that the references contain - each n-gram credited at most as many times as it occurs in
# the one reference where it occurs most - over the number of n-grams in the hypothesis. With $c$ the
# hypothesis's length and $r$ the length of the reference closest to $c$ (the shorter one on a tie),
# return $\text{BP}\cdot\exp\big(\frac14\sum_n \log p_n\big)$ with $\text{BP} = 1$ if $c > r$
# and $e^{1 - r/c}$ otherwise, as a number in $[0, 1]$. No smoothing: if any $p_n$ is 0, or the
# hypothesis has fewer than 4 words, return 0.0.
#
# %% tags=nbval-check-output
def sentence_bleu(hypothesis, references):
    # word lists -> BLEU in [0, 1], no smoothing
    raise NotImplementedError("Exercise 9.1: your code here")


ch09.sentence_bleu.check(sentence_bleu)


#
# %% [markdown]
# ### Exercise 9.2 - Recall@K when scores tie (core)
#
# Section 9.2 showed a Recall@K that changed with the order of a list. Write
# `expected_recall_at_k(scores, right, k)`: `scores` is a float tensor `[Q, G]` (query $q$'s score for
# gallery item $g$), `right` a long tensor `[Q]` holding the index of each query's one right item. Ties
# are broken uniformly at random: items scoring exactly the same as the right item are placed in a
# random order around it. Return, as a float, the *expected* Recall@k over that randomness: the mean
# over queries of the probability that the right item is ranked among the first `k`.
#
# %% tags=nbval-check-output
def expected_recall_at_k(scores, right, k):
    # [Q, G] scores, [Q] index of each query's one right item, k -> float in [0, 1]
    raise NotImplementedError("Exercise 9.2: your code here")


ch09.expected_recall_at_k.check(expected_recall_at_k)


#
# %% [markdown]
# ### Exercise 9.3 - POPE's five numbers (core)
#
# Write `pope_metrics(answers, truths)`: two lists of `"yes"`/`"no"` strings of the same length, the
# model's answers and the true ones. With "yes" as the positive class, return a dict with the
# fractions (in $[0, 1]$) `accuracy`, `precision`, `recall`, `f1` (the harmonic mean of precision and
# recall) and `yes_ratio` (the share of the model's answers that are "yes"). Any ratio whose
# denominator is 0 is 0.0.
#
# %% tags=nbval-check-output
def pope_metrics(answers, truths):
    # lists of "yes"/"no" -> dict of accuracy, precision, recall, f1, yes_ratio
    raise NotImplementedError("Exercise 9.3: your code here")


ch09.pope_metrics.check(pope_metrics)


#
# %% [markdown]
# ### Exercise 9.4 - The Frechet distance between two Gaussians
#
# Write `gaussian_frechet(mean_a, cov_a, mean_b, cov_b)`: two Gaussians given by their means (float64
# tensors `[D]`) and covariance matrices (`[D, D]`, symmetric positive semi-definite). Return, as a
# Python float,
# $\lVert\mu_a - \mu_b\rVert^2 + \operatorname{tr}(\Sigma_a) + \operatorname{tr}(\Sigma_b) -
# 2\operatorname{tr}\big((\Sigma_a^{1/2}\Sigma_b\Sigma_a^{1/2})^{1/2}\big)$, where $M^{1/2}$ is the
# matrix square root (the symmetric positive semi-definite $R$ with $RR = M$). Do not use
# `scipy.linalg.sqrtm`: build the square root from an eigendecomposition.
#
# %% tags=nbval-check-output
def gaussian_frechet(mean_a, cov_a, mean_b, cov_b):
    # [D], [D, D], [D], [D, D] -> the Frechet distance (a float)
    raise NotImplementedError("Exercise 9.4: your code here")


ch09.gaussian_frechet.check(gaussian_frechet)


#
# %% [markdown]
# ### Exercise 9.5 - An n-gram contamination check
#
# PaLM's rule counts a test item as contaminated when 70% of its 8-grams appear in the training data
# {cite}`chowdhery2022palm`. Write `ngram_overlap(test_texts, train_texts, n)`: two lists of texts and
# a number. Words are the pieces of `text.split()`. For each test text return the fraction of its
# n-grams - counted position by position, so an n-gram that occurs twice counts twice - that occur in
# at least one training text (n-grams never run across two training texts), or `None` for a text with
# fewer than `n` words.
#
# %% tags=nbval-check-output
def ngram_overlap(test_texts, train_texts, n):
    # lists of texts, n -> per test text the fraction of its n-grams seen, or None
    raise NotImplementedError("Exercise 9.5: your code here")


ch09.ngram_overlap.check(ngram_overlap)
#
# %%
ch09.progress()


#
# %% [markdown]
# ## Going further on a GPU
#
# Two questions this chapter leaves open need more compute than a CPU budget allows:
#
# 1. **Does the position judge's bias keep shrinking with training?** Section 9.10 measured the
#    judges at 300 and 1,500 steps. On a GPU: 3,000
#    steps on each training set, three seeds - watch the right share and the flips, and whether the
#    length-biased judge keeps its bias once it can read the answers.
# 2. **FID with many samples.** Section 9.7's curve stopped at 480 images. On a GPU: about 10,000
#    generated and 10,000 class-matched real images.
#
# The cell prints the results; the numbers are not quoted here because the machines that build this
# book have no GPU.
#
# %%
def gpu_experiments(scale=1.0):
    # position judges trained longer (three seeds), and FID with 10,000 images per set
    steps = max(2, round(3000 * scale))
    for name, data in (("balanced", balanced), ("length-biased", length_biased)):
        flips, right = [], []
        for seed in range(3):
            model = train_judge(
                data, judge_features, "position", steps=steps, seed=seed
            )
            a = verdicts(model, judged_features, short, True, "position")
            b = verdicts(model, judged_features, short, False, "position")
            flips.append(100 * (a != b).mean())
            right.append(50 * ((a == "right").mean() + (b == "right").mean()))
        print(
            f"{name} position judge, {steps} steps: right {np.mean(right):.1f}%, "
            f"flips {np.mean(flips):.1f}% ({min(flips):.1f} to {max(flips):.1f})"
        )
    n = max(50, round(10_000 * scale))
    labels_many = torch.arange(generation.N_CLASSES).repeat(max(1, n // 24))
    with torch.no_grad():
        many = generation.euler_sample(generator, labels_many, steps=16, w=3.0, seed=1)
    many_features = clip_features(clip, (many.clamp(-1, 1) + 1) / 2)
    more_real, more_labels = generation.large_objects(3 * n, seed=98)
    keep = subset(more_labels, len(labels_many), np.random.default_rng(4), True)
    more_real_features = clip_features(clip, (more_real[keep] + 1) / 2)  # class-matched
    print(f"FID at n = {n}: {frechet_distance(many_features, more_real_features):.3f}")


if device.type == "cuda":
    gpu_experiments()
else:
    print(
        "Skipped: no GPU here. On a GPU this trains the position judge for 3,000\n"
        "steps on each training set (three seeds) and measures FID with 10,000\n"
        "images per set."
    )
#
# %% [markdown]
# ## Takeaways and pitfalls
#
# - A score is an estimate. Give its interval, resampling the units that were sampled (images,
#   utterances, scenes - not the questions asked about one scene): our tiny CLIP's 78.4% on 1,000
#   held-out images is $\pm$ 2.6 points, and the first 50 images alone said 88.0%.
# - Check a metric against the implementation papers use before trusting your own: our BLEU,
#   CIDEr-D, Frechet distance, WER and Recall@K agree with `sacrebleu`, `pycocoevalcap`, `scipy` and
#   `torchmetrics`, and `jiwer` to rounding - except where ties made Recall@K depend on sort order.
#   Report the tie policy.
# - Reference-based metrics reward the expected words, not the truth: against one reference a false
#   caption scored 75.0 BLEU and a true paraphrase 42.7. BLEU depends on the number of references
#   (the paraphrase rose to 80.1 with five). CLIPScore sees a false colour but, with a bag-of-words
#   judge, not swapped colours. FID is biased upward at small $n$, more so without class matching:
#   compare FIDs only at the same $n$, features and sampling. Report several metrics, each with what
#   it cannot see.
# - Report precision, recall and the yes-ratio with a hallucination rate. F1 rewards "always yes"
#   with 66.7; the yes-ratio says which way a model's errors lean -
#   towards inventing objects (above 50%) or denying them (below) - though not how often it errs.
# - Model judges have position and verbosity biases. Ours flipped its verdict on 63.8% of pairs
#   (three seeds) when, at 300 steps, it had not yet learned to name the better side; trained five
#   times longer, on 9.2%, against 0.5% for a judge that named the answer. Trained where the right
#   answer was usually the longer one, it stayed biased: after 1,500 steps it was right on only
#   39.7% of pairs whose wrong answer was padded. Check that a judge learned its task, swap the
#   order and call disagreements ties (twice the calls, fewer decisions), and control for length.
# - A leaked test set inflated exact match by 15.6 points on average over three seeds. n-gram checks
#   could only check the long captions, and even then flagged 28.4% of the clean ones; a hash of the
#   images found every exact copy. Check multimodal items by their images.
# - Evaluate what you did not optimise: the report found that chapter 8's alignment, which improved
#   POPE, broke the TinyVLM's captions.
#
# **References** are collected in the {doc}`bibliography <../book/bibliography>`. **Next:** chapter 10
# takes the book's models to the frontier and into production.
