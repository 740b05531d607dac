import time, io
import numpy as np
from PIL import Image, ImageDraw, ImageFont
import pytesseract
# 1. OCR a rendered page
img = Image.new("RGB", (600, 800), "white"); d = ImageDraw.Draw(img)
try:
    font = ImageFont.truetype("DejaVuSans.ttf", 18)
except OSError:
    font = ImageFont.load_default()
lines = [f"Product {i}: a large red circle costs {10+i} euros, stock {i*3}" for i in range(25)]
for k, l in enumerate(lines): d.text((20, 20 + 30 * k), l, fill="black", font=font)
t = time.perf_counter(); txt = pytesseract.image_to_string(img); dt = time.perf_counter() - t
words = set(" ".join(lines).lower().split()); got = set(txt.lower().split())
print(f"OCR one 600x800 page: {dt:.2f} s, word recall {len(words & got) / len(words):.3f}")
# 2. minigrid / BabyAI
import gymnasium as gym
import minigrid  # noqa: F401  registers envs
from minigrid.utils.baby_ai_bot import BabyAIBot
ids = [e for e in gym.envs.registry if "BabyAI-GoToLocal" in e or "BabyAI-GoToObj" in e]
print("envs:", ids[:6])
env = gym.make("BabyAI-GoToLocal-v0")
obs, _ = env.reset(seed=0)
print("obs keys", obs.keys(), obs["image"].shape, obs["mission"])
t = time.perf_counter(); steps = 0; succ = 0
for ep in range(50):
    obs, _ = env.reset(seed=ep); bot = BabyAIBot(env.unwrapped)
    for _ in range(64):
        a = bot.replan(); obs, r, term, trunc, _ = env.step(a); steps += 1
        if term or trunc: succ += r > 0; break
print(f"expert: {succ}/50 success, {steps} steps in {time.perf_counter()-t:.2f} s")
# 3. faiss
import faiss
x = np.random.rand(1000, 64).astype("float32"); faiss.normalize_L2(x)
index = faiss.IndexFlatIP(64); index.add(x); D, I = index.search(x[:5], 3); print("faiss ok", I[:, 0])
