"""Chapter 8 prototype: the filtering pipeline on the web corpus, every step's precision/recall,
then the tiny CLIP trained on raw, filtered and recaptioned data.

Usage: [CLIP_STEPS=400] pipeline.py SEED [SEED ...]   (about 30 s per seed at 400 steps)"""
import io, math, time, sys
import numpy as np, torch, torch.nn.functional as F
from PIL import Image
import imagehash
from utils import web_corpus, zoo, tiny_clip, tiny_vlm, shapes

t0 = time.time()
corpus = web_corpus.web_corpus(5000, seed=0, max_objects=1)
kind = np.array(corpus.kind)
print("corpus", round(time.time() - t0, 1), "s", corpus.counts())

def pr(removed, target):
    removed, target = np.asarray(removed), np.asarray(target)
    tp = (removed & target).sum()
    return f"removed {removed.sum()}, precision {tp / max(1, removed.sum()):.3f}, recall {tp / max(1, target.sum()):.3f}"

group = np.array([o if o >= 0 else i for i, o in enumerate(corpus.duplicate_of)])
first = {}
for i, g in enumerate(group):
    first.setdefault(g, i)
later_copy = np.array([first[g] != i for i, g in enumerate(group)])  # what dedup should remove
# 1 exact
seen, exact = {}, np.zeros(len(corpus), bool)
for i, b in enumerate(corpus.image_bytes):
    key = web_corpus.sha256(b)
    exact[i] = key in seen
    seen.setdefault(key, i)
print("exact:", pr(exact, later_copy))
# 2 url
seen, url = set(), np.zeros(len(corpus), bool)
for i, u in enumerate(corpus.url):
    url[i] = u in seen; seen.add(u)
print("url:", pr(url & ~exact, later_copy & ~exact))

# 3 phash from scratch
def dct_matrix(n):
    k = torch.arange(n)[:, None].double(); x = torch.arange(n)[None, :].double()
    return 2 * torch.cos(math.pi * (2 * x + 1) * k / (2 * n))  # scipy.fftpack.dct type II, norm=None

def grey(images):  # [N,3,H,W] float -> PIL's "L" conversion, uint8 values as float
    rgb = (images * 255).round()
    return torch.floor((rgb[:, 0] * 299 + rgb[:, 1] * 587 + rgb[:, 2] * 114) / 1000 + 0.5)

D = dct_matrix(32)
def phash_bits(images):
    g = grey(images).double()
    coeffs = D @ g @ D.T  # [N,32,32]
    low = coeffs[:, :8, :8].flatten(1)
    return low > low.median(dim=1, keepdim=True).values if False else low > torch.quantile(low, 0.5, dim=1, keepdim=True)

square = np.array([im.shape[1:] == (32, 32) for im in corpus.images])
imgs32 = torch.stack([im if im.shape[1:] == (32, 32) else F.interpolate(im[None], size=(32, 32), mode="bilinear", align_corners=False)[0] for im in corpus.images])
bits = phash_bits(imgs32)
agree = 0
for i in range(300):
    ref = imagehash.phash(Image.open(io.BytesIO(corpus.image_bytes[i]))).hash.flatten()
    agree += (ref == bits[i].numpy()).all() if square[i] else 0
print("phash agreement on first 300 square:", agree, square[:300].sum())
b = bits.float()
ham = b @ (1 - b).T + (1 - b) @ b.T  # [N,N]
alive = ~(exact | url)
for t in (0, 2, 4, 6, 8, 10, 12, 14):
    near = np.zeros(len(corpus), bool)
    close = (ham <= t).numpy()
    for i in range(len(corpus)):
        if alive[i]:
            earlier = np.nonzero(close[i, :i] & alive[:i])[0]
            near[i] = len(earlier) > 0
    print(f"phash t={t}:", pr(near, later_copy & alive), "| also caught:", {k: int((near & (kind == k)).sum()) for k in ("clean","generic","wrong","flagged") if (near & (kind == k)).sum()})
print("t", round(time.time() - t0, 1))

# 4 safety: a linear probe on the zoo tiny CLIP's image embeddings, trained on 500 labelled items
clip, _ = zoo.load("tiny_clip", quiet=True)
with torch.no_grad():
    emb = clip.encode_image(imgs32)  # [N, 64], unit length
flag = torch.tensor(kind == "flagged").float()
review = torch.arange(500)  # the items a human reviewed
torch.manual_seed(0)
probe = torch.nn.Linear(emb.shape[1], 1)
opt = torch.optim.Adam(probe.parameters(), lr=0.05)
for _ in range(300):
    loss = F.binary_cross_entropy_with_logits(probe(emb[review])[:, 0], flag[review])
    opt.zero_grad(); loss.backward(); opt.step()
with torch.no_grad():
    p_unsafe = torch.sigmoid(probe(emb)[:, 0]).numpy()
rest = np.arange(len(corpus)) >= 500
for thr in (0.5, 0.2, 0.1, 0.05):
    print(f"safety p>{thr} (unreviewed):", pr((p_unsafe > thr) & rest, (kind == "flagged") & rest))
# 5 size / aspect
h = np.array([im.shape[1] for im in corpus.images]); w = np.array([im.shape[2] for im in corpus.images])
odd = (np.minimum(h, w) < 16) | (np.maximum(h / w, w / h) > 2)
print("size:", pr(odd, kind == "odd_size"))
# 6 CLIP score
with torch.no_grad():
    temb = clip.encode_text(tiny_clip.tokenize(corpus.alt_text))
score = (emb * temb).sum(1).numpy()
bad_text = np.isin(kind, ["generic", "wrong"])
for q in (0.3, 0.5, 0.7):
    thr = np.quantile(score, 1 - q)
    print(f"CLIP score keep top {q:.0%} (>{thr:.2f}):", pr(score < thr, bad_text))
print("score by kind", {k: round(float(np.median(score[kind == k])), 2) for k in web_corpus.WEB_KINDS})
# 7 recaption with the TinyVLM
vlm, _ = zoo.load("tiny_vlm", quiet=True)
t1 = time.time()
caps = tiny_vlm.answer(vlm, imgs32, [tiny_vlm.CAPTION_PROMPT] * len(corpus))
print("recaption s", round(time.time() - t1, 1), caps[:3])
def names_truth(text, i):
    return f"{shapes.COLOURS[int(corpus.colour[i, 0])]} {shapes.SHAPES[int(corpus.shape[i, 0])]}" in text
good_alt = np.array([names_truth(corpus.alt_text[i], i) for i in range(len(corpus))])
good_cap = np.array([names_truth(caps[i], i) for i in range(len(corpus))])
print("alt text names the object:", good_alt.mean().round(3), "TinyVLM caption:", good_cap.mean().round(3))
print("t", round(time.time() - t0, 1))

# 8 what the data buys: the same tiny CLIP recipe (400 steps of 128) on three training sets
near2 = np.zeros(len(corpus), bool)
close = (ham <= 2).numpy()
for i in range(len(corpus)):
    if alive[i]:
        near2[i] = (close[i, :i] & alive[:i]).any()
image_ok = ~(exact | url | near2 | (p_unsafe > 0.2) | odd)
text_ok = score >= np.quantile(score, 0.3)
raw_idx = np.arange(len(corpus))
filtered_idx = np.nonzero(image_ok & text_ok)[0]
recap_idx = np.nonzero(image_ok)[0]
recap_text = [corpus.alt_text[i] if text_ok[i] else caps[i] for i in range(len(corpus))]
print("sizes raw/filtered/recaptioned", len(raw_idx), len(filtered_idx), len(recap_idx))
print("share of training texts naming the object:",
      good_alt[raw_idx].mean().round(3), good_alt[filtered_idx].mean().round(3),
      np.mean([names_truth(recap_text[i], i) for i in recap_idx]).round(3))

STEPS = int(__import__("os").environ.get("CLIP_STEPS", 400))


def train_clip(idx, texts, seed, steps=STEPS, bs=128):
    torch.manual_seed(seed)
    model = tiny_clip.TinyCLIP()
    X = imgs32[idx]; T = tiny_clip.tokenize([texts[i] for i in idx])
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        b = torch.randint(len(X), (bs,), generator=g)
        loss = tiny_clip.clip_loss(model(X[b], T[b])); opt.zero_grad(); loss.backward(); opt.step()
    held_out = tiny_clip.held_out_accuracy(model)
    seen = shapes.generate(1000, seed=3, split="train")
    with torch.no_grad():
        prompts = model.encode_text(tiny_clip.tokenize(shapes.class_prompts()))
        guess = (model.encode_image(seen.images) @ prompts.T).argmax(1)
    seen_accuracy = guess.eq(shapes.pair_index(seen.colour[:, 0], seen.shape[:, 0])).float().mean().item()
    return f"{held_out:.3f} (seen pairs {seen_accuracy:.3f})"

for seed in [int(s) for s in sys.argv[1:]]:
    t1 = time.time()
    out = {name: train_clip(idx, texts, seed) for name, idx, texts in (
        ("raw", raw_idx, corpus.alt_text), ("filtered", filtered_idx, corpus.alt_text),
        ("recaptioned", recap_idx, recap_text))}
    print("seed", seed, out, round(time.time() - t1, 1), "s", flush=True)
