"""Chapter 8 prototype: the zoo tiny CLIP and a 64-bit pHash on Shapes images with and without a
faint texture. Usage: texture_check.py STRENGTH (0.1 is what web_corpus uses)."""
import math, numpy as np, torch, torch.nn.functional as F, sys
from utils import shapes, zoo, tiny_clip
amp=float(sys.argv[1])
clip,_=zoo.load("tiny_clip", quiet=True)
b=shapes.generate(3000, seed=2, split="all")
g=torch.Generator().manual_seed(0)
tex=F.interpolate(torch.randn(len(b),3,6,6,generator=g), size=(32,32), mode="bicubic", align_corners=False)
X=(b.images+amp*tex).clamp(0,1)
labels=shapes.pair_index(b.colour[:,0], b.shape[:,0])
with torch.no_grad():
    T=clip.encode_text(tiny_clip.tokenize(shapes.class_prompts()))
    for name,imgs in (("plain",b.images),("tex",X)):
        acc=(clip.encode_image(imgs)@T.T).argmax(1).eq(labels).float().mean().item()
        print(name, "zero-shot (all pairs)", round(acc,3))
def D(n):
    k=torch.arange(n)[:,None].double(); x=torch.arange(n)[None,:].double()
    return 2*torch.cos(math.pi*(2*x+1)*k/(2*n))
for name,imgs in (("plain",b.images),("tex",X)):
    grey=(imgs*255).round(); grey=torch.floor((grey[:,0]*299+grey[:,1]*587+grey[:,2]*114)/1000+0.5).double()
    d=D(32); co=d@grey@d.T; low=co[:,:8,:8].flatten(1); bits=(low>low.median(1,keepdim=True).values).float()
    ham=bits@(1-bits).T+(1-bits)@bits.T; ham.fill_diagonal_(99)
    print(name, "nearest distinct 64-bit pct 1/5/50", np.percentile(ham.min(1).values.numpy(),[1,5,50]))
