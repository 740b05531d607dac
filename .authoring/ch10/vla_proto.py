import time, io, contextlib, numpy as np, torch, torch.nn as nn, torch.nn.functional as F
import gymnasium as gym, minigrid  # noqa
from minigrid.utils.baby_ai_bot import BabyAIBot
torch.manual_seed(0); torch.set_num_threads(2)
ENV = "BabyAI-GoToLocal-v0"
VOCAB = {w: i + 1 for i, w in enumerate("go to the a red green blue purple yellow grey ball box key door".split())}
def words(m): return [VOCAB.get(w, 0) for w in m.split()][:8] + [0] * (8 - len(m.split()[:8]))
def collect(seeds):
    env = gym.make(ENV); X, M, A = [], [], []
    for s in seeds:
        with contextlib.redirect_stdout(io.StringIO()):
            obs, _ = env.reset(seed=int(s))
        bot = BabyAIBot(env.unwrapped)
        for _ in range(64):
            a = bot.replan(); X.append(obs["image"]); M.append(words(obs["mission"])); A.append(int(a))
            obs, r, term, trunc, _ = env.step(a)
            if term or trunc: break
    return torch.tensor(np.array(X)).long(), torch.tensor(M), torch.tensor(A)
t = time.perf_counter(); X, M, A = collect(range(3000)); print("data", X.shape, f"{time.perf_counter()-t:.1f} s")
class Policy(nn.Module):
    def __init__(s, d=64):
        super().__init__()
        s.obj, s.col, s.st = nn.Embedding(11, 16), nn.Embedding(6, 16), nn.Embedding(3, 16)
        s.conv = nn.Sequential(nn.Conv2d(48, d, 3, padding=1), nn.ReLU(), nn.Conv2d(d, d, 3, padding=1), nn.ReLU())
        s.word = nn.EmbeddingBag(len(VOCAB) + 1, d, mode="mean", padding_idx=0)
        s.head = nn.Sequential(nn.Linear(d * 49 + d, 128), nn.ReLU(), nn.Linear(128, 7))
    def forward(s, x, m):
        e = torch.cat([s.obj(x[..., 0]), s.col(x[..., 1]), s.st(x[..., 2])], -1).permute(0, 3, 1, 2)
        return s.head(torch.cat([s.conv(e).flatten(1), s.word(m)], 1))
pol = Policy(); opt = torch.optim.AdamW(pol.parameters(), 3e-3); g = torch.Generator().manual_seed(0)
t = time.perf_counter()
for step in range(1500):
    i = torch.randint(len(A), (256,), generator=g); loss = F.cross_entropy(pol(X[i], M[i]), A[i])
    opt.zero_grad(); loss.backward(); opt.step()
print(f"trained {time.perf_counter()-t:.1f} s, loss {loss.item():.3f}")
env = gym.make(ENV); wins = 0
for s in range(10000, 10200):
    with contextlib.redirect_stdout(io.StringIO()):
        obs, _ = env.reset(seed=s)
    for _ in range(64):
        with torch.no_grad(): a = pol(torch.tensor(obs["image"][None]).long(), torch.tensor([words(obs["mission"])])).argmax(1).item()
        obs, r, term, trunc, _ = env.step(a)
        if term or trunc: wins += r > 0; break
print("held-out success", wins / 200)
