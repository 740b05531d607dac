"""Chapter 9 prototype: corpus BLEU from scratch against sacrebleu's corpus_bleu with its defaults
(13a tokenisation, smooth_method='exp', closest reference length with the shorter on ties).
Measured 2026-12-02: 61.324536 both, difference 7e-15, on 400 Shapes captions (half shuffled) and
two reference streams. Usage: .venv/bin/python .authoring/ch09/bleu_check.py"""
import math
from collections import Counter
import numpy as np
import sacrebleu
from sacrebleu.tokenizers.tokenizer_13a import Tokenizer13a
from utils import shapes

tok = Tokenizer13a()


def ngrams(words, n):
    return Counter(tuple(words[i:i + n]) for i in range(len(words) - n + 1))


def corpus_bleu(hypotheses, references, max_n=4):
    """references: list of reference streams (each a list aligned with hypotheses), as sacrebleu."""
    matches, totals = [0] * max_n, [0] * max_n
    hyp_len = ref_len = 0
    for i, hyp in enumerate(hypotheses):
        h = tok(hyp).split()
        refs = [tok(stream[i]).split() for stream in references]
        hyp_len += len(h)
        ref_len += min((abs(len(r) - len(h)), len(r)) for r in refs)[1]  # closest, shorter on ties
        for n in range(1, max_n + 1):
            counts = ngrams(h, n)
            best = Counter()
            for r in refs:
                best |= ngrams(r, n)
            matches[n - 1] += sum(min(c, best[g]) for g, c in counts.items())
            totals[n - 1] += max(0, len(h) - n + 1)
    # sacrebleu's default smoothing 'exp': for n with zero matches, use 1 / (2^k * total)
    log_p, k = 0.0, 1
    for m, t in zip(matches, totals):
        if t == 0:
            return 0.0
        if m == 0:
            k *= 2
            log_p += math.log(1 / (k * t))
        else:
            log_p += math.log(m / t)
    bp = 1.0 if hyp_len > ref_len else math.exp(1 - ref_len / max(hyp_len, 1))
    return 100 * bp * math.exp(log_p / max_n)


batch = shapes.generate(400, seed=9, caption_style="varied")
rng = np.random.default_rng(0)
hyps = [c if rng.random() < 0.5 else " ".join(rng.permutation(c.split())) for c in batch.captions]
refs = [list(batch.captions), [c.upper().lower() for c in batch.captions]]
ours = corpus_bleu(hyps, refs)
theirs = sacrebleu.corpus_bleu(hyps, refs).score
print(f"ours {ours:.6f} sacrebleu {theirs:.6f} diff {abs(ours - theirs):.2e}")
