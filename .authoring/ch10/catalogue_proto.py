import os, time, numpy as np, torch, torch.nn.functional as F
os.environ["OMP_THREAD_LIMIT"] = "1"
from PIL import Image, ImageDraw, ImageFont
import pytesseract
from rank_bm25 import BM25Okapi
from utils import shapes, tiny_clip, zoo
clip, _ = zoo.load("tiny_clip", quiet=True)
P, K = 40, 6   # pages, items per page
batch = shapes.generate(P * K, seed=7, max_objects=1, split="train")
rng = np.random.default_rng(0)
items = rng.permutation(900)[: P * K] + 100
prices = rng.integers(5, 99, P * K)
font = ImageFont.truetype("DejaVuSans.ttf", 12)
pages = []
for p in range(P):
    page = Image.new("RGB", (3 * 110, 2 * 90), "white"); d = ImageDraw.Draw(page)
    for k in range(K):
        i = p * K + k; x, y = 10 + 110 * (k % 3), 5 + 90 * (k // 3)
        thumb = Image.fromarray((batch.images[i].permute(1, 2, 0).numpy() * 255).astype("uint8")).resize((64, 64), Image.NEAREST)
        page.paste(thumb, (x, y)); d.text((x, y + 66), f"item {items[i]} {prices[i]} EUR", fill="black", font=font)
    pages.append(page)
t = time.perf_counter(); texts = [pytesseract.image_to_string(pg, config="--psm 6") for pg in pages]
print(f"OCR {P} pages: {(time.perf_counter()-t)/P:.2f} s/page; page 0: {texts[0]!r}")
found = np.mean([str(items[i]) in texts[i // K] for i in range(P * K)]); print("item numbers OCR'd:", found)
bm25 = BM25Okapi([t.lower().split() for t in texts])
text_q = [f"item {items[i]}" for i in range(P * K)]
vis_q = [shapes.describe(int(batch.colour[i, 0]), int(batch.shape[i, 0]), int(batch.size[i, 0])) for i in range(P * K)]
truth = np.arange(P * K) // K
with torch.no_grad():
    patches = clip.encode_image(batch.images)  # [P*K, 64] one vector per thumbnail
    pv = patches.view(P, K, -1)
    page_mean = F.normalize(pv.mean(1), dim=-1)
    q = clip.encode_text(tiny_clip.tokenize(vis_q)); qt = clip.encode_text(tiny_clip.tokenize(text_q))
def r_at(scores, k): return float(np.mean([t in np.argsort(-s)[:k] for s, t in zip(scores, truth)]))
for name, qv in (("visual", q), ("textual", qt)):
    maxsim = torch.einsum("qd,pkd->qpk", qv, pv).max(-1).values.numpy()
    single = (qv @ page_mean.T).numpy()
    qs = vis_q if name == "visual" else text_q
    b = np.array([bm25.get_scores(x.lower().split()) for x in qs])
    print(name, "R@1 maxsim", r_at(maxsim, 1), "single", r_at(single, 1), "bm25", r_at(b, 1), "| R@5", r_at(maxsim, 5), r_at(single, 5), r_at(b, 5), "chance", 1 / P)
