"""Chapter 8 prototype: Hamming distances of near duplicates to their originals, against each
image's nearest other picture, for 64- and 256-bit grey pHash and a 3x64-bit colour one; per edit.
Usage: phash_spread.py MAX_OBJECTS"""
import math, numpy as np, torch, torch.nn.functional as F
from utils import web_corpus
import sys; c = web_corpus.web_corpus(5000, seed=0, max_objects=int(sys.argv[1]))
kind=np.array(c.kind)
sq=[i for i in range(len(c)) if c.images[i].shape[1:]==(32,32)]
X=torch.stack([c.images[i] for i in sq]); idx=np.array(sq)
def D(n):
    k=torch.arange(n)[:,None].double(); x=torch.arange(n)[None,:].double()
    return 2*torch.cos(math.pi*(2*x+1)*k/(2*n))
def hash_(g, hs, size):
    g=F.interpolate(g[:,None].float(), size=(size,size), mode="bilinear", align_corners=False)[:,0].double() if g.shape[-1]!=size else g.double()
    d=D(size); co=d@g@d.T; low=co[:,:hs,:hs].flatten(1)
    return low>low.median(1,keepdim=True).values
grey=(X*255).round(); grey=torch.floor((grey[:,0]*299+grey[:,1]*587+grey[:,2]*114)/1000+0.5)
variants={"grey64":hash_(grey,8,32),"grey256":hash_(grey,16,32),"rgb192":torch.cat([hash_(X[:,ch]*255,8,32) for ch in range(3)],1)}
pos={i:k for k,i in enumerate(idx)}
pairs=[(pos[i],pos[c.duplicate_of[i]]) for i in idx if kind[i]=="near_duplicate" and c.duplicate_of[i] in pos]
for name,b in variants.items():
    b=b.float(); ham=b@(1-b).T+(1-b)@b.T; ham.fill_diagonal_(1e9)
    dup=np.array([ham[a,o].item() for a,o in pairs])
    # exclude true dup pairs from nearest distinct
    grp=np.array([c.duplicate_of[i] if c.duplicate_of[i]>=0 else i for i in idx])
    same=torch.tensor(grp[:,None]==grp[None,:]); ham[same]=1e9
    nn_=ham.min(1).values.numpy()
    print(name, b.shape[1], "near-dup hamming pct 50/90/max", np.percentile(dup,[50,90,100]), "nearest distinct pct 1/5/50", np.percentile(nn_,[1,5,50]))
# per edit: recover edit type by comparing bytes/format
b=variants["grey256"].float(); ham=b@(1-b).T+(1-b)@b.T
from PIL import Image; import io
for a,o in pairs[:0]: pass
res={}
for (a,o) in pairs:
    i=idx[a]; fmt=Image.open(io.BytesIO(c.image_bytes[i])).format
    orig=c.images[c.duplicate_of[i]]; 
    if fmt=="JPEG": e="jpeg"
    else:
        d=(c.images[i]-orig).abs().mean().item()
        e="resized" if d<0.03 else "shifted"
    res.setdefault(e,[]).append(ham[a,o].item())
for e,v in res.items(): print(e, len(v), np.percentile(v,[50,90,100]))
b=variants["grey64"].float(); ham=b@(1-b).T+(1-b)@b.T
res={}
for (a,o) in pairs:
    i=idx[a]; fmt=Image.open(io.BytesIO(c.image_bytes[i])).format
    d=(c.images[i]-c.images[c.duplicate_of[i]]).abs().mean().item()
    e="jpeg" if fmt=="JPEG" else ("resized" if d<0.03 else "shifted")
    res.setdefault(e,[]).append(ham[a,o].item())
for e,v in res.items(): print("64", e, len(v), np.percentile(v,[50,90,100]))
