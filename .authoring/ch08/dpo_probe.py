"""Chapter 8 prototype: DPO on the zoo TinyVLM against a POPE-style probe.

Usage: dpo_probe.py ARM STEPS BETA LR SEED SFT_WEIGHT DPO_WEIGHT, e.g. `yesno+vqa 300 0.1 1e-3 0 1.0 1`.
ARM: yesno (existence pairs only), caption (hallucinated-object captions), both, yesno+vqa
(existence pairs plus anchor pairs for colour/shape/count/where; half of each batch existence)."""
import time, copy, sys, torch, numpy as np
import torch.nn.functional as F
from utils import zoo, tiny_vlm, shapes
ARM = sys.argv[1]; STEPS=int(sys.argv[2]); BETA=float(sys.argv[3]); LR=float(sys.argv[4]); SEED=int(sys.argv[5]); ALPHA=float(sys.argv[6]); DPOW=float(sys.argv[7])
base,_ = zoo.load("tiny_vlm", quiet=True)
def pope(scenes, seed):
    rng=np.random.default_rng([seed, 8])
    qs, ans, img, kind = [], [], [], []
    for i in range(len(scenes)):
        objs=scenes.objects(i)
        present={(shapes.colour_index(o["colour"]), shapes.shape_index(o["shape"])) for o in objs}
        t=objs[rng.integers(len(objs))]
        absent=[p for p in np.ndindex(6,4) if p not in present]
        adv=[p for p in absent if any(p[0]==q[0] or p[1]==q[1] for q in present)] or absent
        if rng.random()<0.5:
            qs.append(f"is there {shapes.describe(t['colour'], t['shape'])}?"); ans.append("yes"); kind.append("pos")
        else:
            neg = "random" if rng.random()<0.5 else "adversarial"
            c,s = (absent if neg=="random" else adv)[rng.integers(len(absent if neg=="random" else adv))]
            qs.append(f"is there {shapes.describe(c,s)}?"); ans.append("no"); kind.append(neg)
        img.append(i)
    return qs, ans, torch.tensor(img), kind
def probe(model, scenes, feats, seed=5):
    qs, ans, img, kind = pope(scenes, seed)
    a = tiny_vlm.first_token_answers(model, feats, qs, img)
    a=np.array(a); ans=np.array(ans); kind=np.array(kind)
    yes=(a=="yes"); neg=(ans=="no")
    return dict(acc=(a==ans).mean(), false_yes=yes[neg].mean(), recall=yes[~neg].mean(), yes_ratio=yes.mean())
test = tiny_vlm.scenes(1000, 12)
tfeat = base.features(test.images)
print("before", probe(base, test, tfeat), flush=True)
ev0 = tiny_vlm.evaluate(base, boxes=False, captions=False); print({k: round(v,1) for k,v in ev0.items()})
# preference pairs from training scenes
train = tiny_vlm.scenes(4000, 31)
feats = base.features(train.images)
prompts, chosen, rejected, img = [], [], [], []
rng=np.random.default_rng(1)
if ARM in ("yesno","both"):
    qs, ans, im, _ = pope(train, 77)
    for q,a,i in zip(qs,ans,im.tolist()):
        prompts.append(q); chosen.append(a); rejected.append("no" if a=="yes" else "yes"); img.append(i)
if ARM in ("yesno+vqa",):
    qs, ans, im, _ = pope(train, 77)
    for q,a,i in zip(qs,ans,im.tolist()):
        prompts.append(q); chosen.append(a); rejected.append("no" if a=="yes" else "yes"); img.append(i)
    for qa in shapes.questions(train, seed=78, kinds=("colour","shape","count","where")):
        pool = {"colour": shapes.COLOURS, "shape": shapes.SHAPES, "count": ("1","2","3"), "where": shapes.WHERE_ANSWERS}[qa["kind"]]
        wrong=[w for w in pool if w!=qa["answer"]]
        prompts.append(qa["question"]); chosen.append(qa["answer"]); rejected.append(wrong[rng.integers(len(wrong))]); img.append(qa["image_index"])
if ARM in ("caption","both"):
    for i in range(len(train)):
        cap = tiny_vlm.canonical_caption(train, i)
        objs = train.objects(i)
        present={(shapes.colour_index(o["colour"]), shapes.shape_index(o["shape"])) for o in objs}
        # hallucinate: swap one object's colour or shape to an absent pair
        k = rng.integers(len(objs)); o=objs[k]
        for _ in range(20):
            c = shapes.COLOURS[rng.integers(6)] if rng.random()<0.5 else o["colour"]
            s = shapes.SHAPES[rng.integers(4)] if c==o["colour"] else o["shape"]
            if (shapes.colour_index(c), shapes.shape_index(s)) not in present: break
        bad = cap.replace(f"{o['colour']} {o['shape']}", f"{c} {s}", 1) if f"{o['colour']} {o['shape']}" in cap else None
        if bad and bad!=cap:
            prompts.append(tiny_vlm.CAPTION_PROMPT); chosen.append(cap); rejected.append(bad); img.append(i)
print(len(prompts), "pairs", flush=True)
ct, cl = tiny_vlm.encode(prompts, chosen, 24); rt, rl = tiny_vlm.encode(prompts, rejected, 24)
img=torch.tensor(img)
def seq_logp(model, f, t, l):
    logits = model(f, t)
    lab = tiny_vlm.label_positions(l, t, f.shape[1])[:, 1:]
    lp = logits[:, :-1].log_softmax(-1)
    mask = lab != tiny_vlm.IGNORE
    tok = lp.gather(-1, lab.clamp(min=0)[..., None])[..., 0]
    return (tok*mask).sum(1)
ref = copy.deepcopy(base).eval().requires_grad_(False)
with torch.no_grad():
    ref_c = torch.cat([seq_logp(ref, feats[img[s:s+2000]], ct[s:s+2000], cl[s:s+2000]) for s in range(0,len(img),2000)])
    ref_r = torch.cat([seq_logp(ref, feats[img[s:s+2000]], rt[s:s+2000], rl[s:s+2000]) for s in range(0,len(img),2000)])
torch.manual_seed(SEED)
policy = copy.deepcopy(base); policy.train()
params=[p for n,p in policy.named_parameters() if not n.startswith("tower.")]
opt=torch.optim.AdamW(params, lr=LR, weight_decay=0.0)
g=torch.Generator().manual_seed(SEED)
t0=time.time()
for step in range(STEPS):
    b=torch.cat([torch.randint(4000,(32,),generator=g), torch.randint(4000, len(img),(32,),generator=g)]) if len(img)>4000 else torch.randint(len(img),(64,),generator=g)
    pc=seq_logp(policy, feats[img[b]], ct[b], cl[b]); pr=seq_logp(policy, feats[img[b]], rt[b], rl[b])
    margin = BETA*((pc-ref_c[b])-(pr-ref_r[b]))
    ntok=(cl[b]!=tiny_vlm.IGNORE).sum(1)
    loss=DPOW*(-F.logsigmoid(margin).mean()) + ALPHA*(-pc/ntok).mean()
    opt.zero_grad(); loss.backward(); opt.step()
    if step%50==0: print(step, round(loss.item(),3), round((margin>0).float().mean().item(),2), flush=True)
print("train s", time.time()-t0)
print("after", probe(policy, test, tfeat))
ev1 = tiny_vlm.evaluate(policy, boxes=False, captions=False); print({k: round(v,1) for k,v in ev1.items()})
