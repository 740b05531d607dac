"""The book's tiny CLIP: a small CNN image encoder and a bag-of-words text encoder for the
Shapes world, trained with the symmetric contrastive loss of chapter 3.

Chapter 3 writes the loss and the training loop out; this module keeps the architecture and the
recipe so that chapters 4-10 can reuse the trained model from the zoo::

    from utils import tiny_clip, zoo
    model, meta = zoo.load("tiny_clip")
    image_vectors = model.encode_image(images)            # [N, 64], unit length
    text_vectors = model.encode_text(tiny_clip.tokenize(captions))

Words are tokens: the Shapes world's captions use a small closed vocabulary, so a word-level
tokenizer over `VOCAB` is exact (unknown words map to `<unk>`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from utils import runtime, shapes

PAD, UNK = "<pad>", "<unk>"
_EXTRA_WORDS = (
    "a an the of and with on in is this there photo image picture showing drawing rendering "
    "dark background object shape to left right above below over under beneath higher than "
    "small large thing"
)
VOCAB: tuple[str, ...] = (PAD, UNK, *dict.fromkeys(
    [*_EXTRA_WORDS.split(), *shapes.COLOURS, *shapes.SHAPES, *shapes.SIZES]))
WORD_INDEX: dict[str, int] = {word: i for i, word in enumerate(VOCAB)}
PAD_ID, UNK_ID = WORD_INDEX[PAD], WORD_INDEX[UNK]  # 0 and 1
MAX_TOKENS = 16
EMBED_DIM = 64
INIT_LOGIT_SCALE = math.log(1 / 0.07)  # CLIP's initial temperature, 0.07
MAX_LOGIT_SCALE = math.log(100.0)  # CLIP clamps the scale at 100


def tokenize(texts: Sequence[str], max_tokens: int = MAX_TOKENS) -> torch.Tensor:
    """Captions -> word indices, long [N, max_tokens], padded with PAD_ID, truncated if longer;
    unknown words become UNK_ID."""
    ids = torch.full((len(texts), max_tokens), PAD_ID, dtype=torch.long)
    for row, text in enumerate(texts):
        words = re.findall(r"[a-z]+", text.lower())[:max_tokens]
        ids[row, : len(words)] = torch.tensor([WORD_INDEX.get(w, UNK_ID) for w in words], dtype=torch.long)
    return ids


class ImageEncoder(nn.Module):
    """A small CNN (chapter 2's, wider): [N, 3, 32, 32] -> [N, dim]."""

    def __init__(self, dim: int = EMBED_DIM, width: int = 16) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # [N, w, 16, 16]
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # [N, 2w, 8, 8]
            nn.Conv2d(2 * width, 2 * width, 3, padding=1), nn.ReLU(),  # [N, 2w, 8, 8]
        )
        self.project = nn.Linear(4 * width, dim)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        maps = self.body(images)  # [N, 2w, 8, 8]
        pooled = torch.cat([maps.amax(dim=(2, 3)), maps.mean(dim=(2, 3))], dim=1)  # [N, 4w]
        return self.project(pooled)  # [N, dim]


class TextEncoder(nn.Module):
    """A bag of words: word embeddings, a per-word MLP, the mean over words: [N, L] -> [N, dim].

    Word order is ignored on purpose (fast, and it composes unseen colour x shape pairs well);
    chapter 3 measures what that costs on captions that differ only in attribute binding.
    """

    def __init__(self, dim: int = EMBED_DIM, vocab_size: int = len(VOCAB)) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, dim, padding_idx=0)
        self.norm, self.norm_out = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))
        self.project = nn.Linear(dim, dim)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.embed(tokens)  # [N, L, dim]
        x = x + self.mlp(self.norm(x))  # [N, L, dim], each word on its own
        keep = (tokens != PAD_ID).float()[..., None]  # [N, L, 1]: real words, not padding
        pooled = (x * keep).sum(1) / keep.sum(1).clamp(min=1.0)  # [N, dim]
        return self.project(self.norm_out(pooled))


class TinyCLIP(nn.Module):
    """Two encoders into one `dim`-dimensional space and a learned logit scale (1 / temperature)."""

    def __init__(self, dim: int = EMBED_DIM, width: int = 16) -> None:
        super().__init__()
        self.image_encoder = ImageEncoder(dim, width)
        self.text_encoder = TextEncoder(dim)
        self.logit_scale = nn.Parameter(torch.tensor(INIT_LOGIT_SCALE))

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """Unit-length image vectors [N, dim]."""
        return F.normalize(self.image_encoder(images), dim=-1)

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        """Unit-length text vectors [N, dim] from `tokenize` output."""
        return F.normalize(self.text_encoder(tokens), dim=-1)

    def scale(self) -> torch.Tensor:
        """exp(logit_scale), with the log clamped at ln(100) as in CLIP."""
        return self.logit_scale.clamp(max=MAX_LOGIT_SCALE).exp()

    def forward(self, images: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Logits [N_images, N_texts]: scaled cosine similarities."""
        return self.scale() * self.encode_image(images) @ self.encode_text(tokens).T


def clip_loss(logits: torch.Tensor) -> torch.Tensor:
    """The symmetric InfoNCE loss of a square logit matrix whose diagonal holds the true pairs."""
    targets = torch.arange(logits.shape[0], device=logits.device)
    return (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets)) / 2


def training_data(n: int = 8000, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """(images [n, 3, 32, 32], tokens [n, MAX_TOKENS]): train-split scenes of one object, varied captions."""
    batch = shapes.generate(n, seed=seed, split="train", min_objects=1, max_objects=1,
                            caption_style="varied")
    return batch.images, tokenize(batch.captions)


@torch.no_grad()
def held_out_accuracy(model: TinyCLIP, n: int = 1000, seed: int = 2,
                      template: str = "a photo of a {colour} {shape}") -> float:
    """Zero-shot accuracy as a fraction (0-1): 24-way prompt classification of `n` fresh images of the
    held-out colour x shape pairs. (Chapter 3's `zero_shot_accuracy` scores a given batch, in percent.)"""
    test = shapes.generate(n, seed=seed, split="test")
    device = runtime.device_of(model)
    labels = shapes.pair_index(test.colour[:, 0], test.shape[:, 0]).to(device)
    was_training = model.training
    model.eval()
    text_vectors = model.encode_text(tokenize(shapes.class_prompts(template)).to(device))  # [24, D]
    image_vectors = model.encode_image(test.images.to(device))  # [n, D]
    model.train(was_training)
    return (image_vectors @ text_vectors.T).argmax(1).eq(labels).float().mean().item()


def train(model: TinyCLIP, steps: int = 400, batch_size: int = 128, lr: float = 3e-3,
          seed: int = 0, data: tuple[torch.Tensor, torch.Tensor] | None = None) -> dict[str, float]:
    """Chapter 3's recipe: AdamW on the symmetric loss, random batches of `training_data()`:
    400 steps of 128 pairs, seed 0 (chapter 3 trains seeds 0, 1 and 2 and keeps seed 0 by a
    rule fixed before training; it reports where seed 0 falls among the three). `data` (images,
    tokens) trains the same recipe on other pairs (chapter 8's cleaned web corpora).

    Returns the last step's loss and the zero-shot accuracy on held-out compositions.
    """
    images, tokens = data if data is not None else training_data()
    device = runtime.device_of(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(seed)
    loss = torch.tensor(float("nan"))
    for _ in range(steps):
        batch = torch.randint(len(images), (batch_size,), generator=generator)
        logits = model(images[batch].to(device), tokens[batch].to(device))  # [B, B]
        loss = clip_loss(logits)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return {"final_loss": loss.item(), "zero_shot_accuracy": held_out_accuracy(model)}
