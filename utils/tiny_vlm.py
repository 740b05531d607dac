"""The book's TinyVLM: chapter 3's tiny CLIP as a frozen vision tower, an MLP projector, and a small
decoder-only language model, trained LLaVA's way in two stages (chapter 5).

Chapter 5 writes every piece out (the splice at the `<image>` placeholder, answer-only labels, the
two stages); this module keeps the same code so that chapters 8-10 can load the trained model from
the zoo in one line::

    from utils import tiny_vlm, zoo
    vlm, meta = zoo.load("tiny_vlm")
    answers = tiny_vlm.answer(vlm, images, ["what colour is the circle?"] * len(images))

Words are tokens. The Shapes world speaks a small closed language, so the tokenizer is a word list
(`VOCAB`) plus special tokens: `<image>` marks where the image tokens go, `<sep>` ends the prompt,
`<eos>` ends the answer, and `<box>`, `<loc0>`..`<loc15>`, `</box>` write a bounding box as text.
"""

from __future__ import annotations

import contextlib
import re
from collections import Counter
from collections.abc import Callable, Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from utils import runtime, shapes, tiny_clip, training

# ---------------------------------------------------------------------------------------------------
# The tokenizer

SPECIAL: tuple[str, ...] = ("<pad>", "<unk>", "<bos>", "<eos>", "<image>", "<sep>", "<box>", "</box>")
BINS = 16  # a box coordinate is one of 16 bins of 2 pixels (32-pixel images)
LOCATIONS: tuple[str, ...] = tuple(f"<loc{i}>" for i in range(BINS))
_WORDS = (
    "a an the of with and left right above below , ? describe image what colour shape object is "
    "how many objects are there where relative to small or large yes no"
)
VOCAB: tuple[str, ...] = tuple(dict.fromkeys([
    *SPECIAL, *LOCATIONS, *_WORDS.split(), *shapes.COLOURS, *shapes.SHAPES, *shapes.SIZES,
    *shapes.WHERE_ANSWERS, *(str(n) for n in range(1, shapes.MAX_OBJECTS + 1)),
]))
TOKEN_ID: dict[str, int] = {token: i for i, token in enumerate(VOCAB)}
PAD, UNK, BOS, EOS, IMAGE, SEP = (TOKEN_ID[t] for t in SPECIAL[:6])
IGNORE = -100  # the label of a position that is not scored (cross_entropy's ignore_index)
CAPTION_PROMPT = "describe the image"
KINDS: tuple[str, ...] = ("colour", "shape", "count", "where", "exists")
_TOKEN = re.compile(r"<[a-z/]+\d*>|[a-z0-9]+|[?,]")


def words(text: str) -> list[str]:
    """Text -> tokens: special tokens, words, digits, and the punctuation ',' and '?'."""
    return _TOKEN.findall(text.lower())


def token_ids(text: str) -> list[int]:
    """Text -> token ids (unknown words become <unk>)."""
    return [TOKEN_ID.get(word, UNK) for word in words(text)]


def decode(ids: Sequence[int]) -> str:
    """Token ids -> text, stopping at <eos> and leaving out padding."""
    out = []
    for i in ids:
        if i == EOS:
            break
        if i != PAD:
            out.append(VOCAB[i])
    return " ".join(out)


def encode(prompts: Sequence[str], answers: Sequence[str], length: int | None = None,
           image: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Chat sequences `<bos> [<image>] prompt <sep> answer <eos>` and their labels, padded to `length`.

    Returns tokens [N, L] and labels [N, L]: labels hold the answer's tokens and <eos> where they
    sit in `tokens`, and IGNORE everywhere else (the prompt is read, never scored).
    """
    rows, label_rows = [], []
    for prompt, answer in zip(prompts, answers, strict=True):
        asked = [BOS] + ([IMAGE] if image else []) + token_ids(prompt) + [SEP]
        said = token_ids(answer) + [EOS]
        rows.append(asked + said)
        label_rows.append([IGNORE] * len(asked) + said)
    length = length or max(map(len, rows))
    tokens = torch.full((len(rows), length), PAD, dtype=torch.long)
    labels = torch.full((len(rows), length), IGNORE, dtype=torch.long)
    for i, (row, label_row) in enumerate(zip(rows, label_rows, strict=True)):
        if len(row) > length:
            raise ValueError(f"sequence {i} has {len(row)} tokens, more than length={length}")
        tokens[i, : len(row)] = torch.tensor(row)
        labels[i, : len(row)] = torch.tensor(label_row)
    return tokens, labels


# ---------------------------------------------------------------------------------------------------
# The Shapes world as captions, questions and boxes


def canonical_caption(batch: shapes.ShapesBatch, i: int) -> str:
    """The 'full' caption of image i with its objects named left to right, so that one image has
    exactly one correct caption (exact match is then a fair score)."""
    count = int(batch.count[i])
    order = sorted(range(count), key=lambda k: float(batch.centre[i, k, 0]))
    labels = [(int(batch.colour[i, k]), int(batch.shape[i, k]), int(batch.size[i, k])) for k in order]
    relation = -1
    if count >= 2:
        relation = int(shapes._relation_of(batch.centre[i, order[0]], batch.centre[i, order[1]]))
    return shapes._caption_text(labels, relation, "full", None)


def box_text(box: Sequence[float], image_size: int = 32) -> str:
    """(x0, y0, x1, y1) in pixels -> '<box> <locA> <locB> <locC> <locD> </box>' (16 bins per side)."""
    bins = [min(BINS - 1, max(0, int(value / image_size * BINS))) for value in box]
    return "<box> " + " ".join(LOCATIONS[b] for b in bins) + " </box>"


def parse_box(text: str, image_size: int = 32) -> tuple[float, float, float, float] | None:
    """The box written by `box_text` (each coordinate at its bin's centre), or None if malformed."""
    found = re.fullmatch(r"\s*<box>" + r"\s*<loc(\d+)>" * 4 + r"\s*</box>\s*", text)
    if not found or any(int(b) >= BINS for b in found.groups()):
        return None
    x0, y0, x1, y1 = ((int(b) + 0.5) * image_size / BINS for b in found.groups())
    return x0, y0, x1, y1


def box_questions(batch: shapes.ShapesBatch, seed: int = 0) -> list[dict]:
    """One grounding question per image, 'where is the red circle?', answered with a box."""
    generator = torch.Generator().manual_seed(seed)
    asked = []
    for i in range(len(batch)):
        k = int(torch.randint(int(batch.count[i]), (1,), generator=generator))
        colour, shape = shapes.COLOURS[int(batch.colour[i, k])], shapes.SHAPES[int(batch.shape[i, k])]
        box = [round(v, 2) for v in batch.boxes[i, k].tolist()]
        asked.append({"image_index": i, "question": f"where is the {colour} {shape}?",
                      "answer": box_text(box, batch.images.shape[-1]), "kind": "box", "box": box})
    return asked


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Intersection over union of boxes [N, 4] and [N, 4] (x0, y0, x1, y1), row by row -> [N]."""
    width = (torch.minimum(a[:, 2], b[:, 2]) - torch.maximum(a[:, 0], b[:, 0])).clamp(min=0)
    height = (torch.minimum(a[:, 3], b[:, 3]) - torch.maximum(a[:, 1], b[:, 1])).clamp(min=0)
    inter = width * height
    area = (a[:, 2:] - a[:, :2]).clamp(min=0).prod(1) + (b[:, 2:] - b[:, :2]).clamp(min=0).prod(1)
    return inter / (area - inter).clamp(min=1e-9)


# ---------------------------------------------------------------------------------------------------
# The vision tower


@torch.no_grad()
def grid_features(image_encoder: tiny_clip.ImageEncoder, images: torch.Tensor, grid: int = 4) -> torch.Tensor:
    """Local tiny-CLIP embeddings on a grid x grid layout: [N, 3, 32, 32] -> [N, grid * grid, 64].

    The conv body gives an 8x8 map; each grid cell pools its neighbourhood (max and mean, as CLIP
    pools the whole image) and goes through CLIP's own projection, so every image token lives in the
    space where the tiny CLIP matched images to captions.
    """
    maps = image_encoder.body(images)  # [N, 32, 8, 8]
    size = maps.shape[-1]
    stride = size // grid
    # windows one cell wider than the stride, padded by one: they overlap at the seams and cover the
    # whole map (a 1x1 grid pools all of it, exactly as CLIP does)
    kernel, padding = (stride + 1, 1) if stride > 1 else (1, 0)
    pooled = torch.cat([F.max_pool2d(maps, kernel, stride, padding),
                        F.avg_pool2d(maps, kernel, stride, padding, count_include_pad=False)], 1)
    pooled = pooled[..., :grid, :grid]  # [N, 64, grid, grid]
    return image_encoder.project(pooled.flatten(2).transpose(1, 2))  # [N, grid * grid, 64]


# ---------------------------------------------------------------------------------------------------
# The model


class DecoderBlock(nn.Module):
    """A pre-norm causal transformer block: [B, T, D] -> [B, T, D]."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.norm_attention, self.norm_mlp = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv, self.out = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, dim = x.shape
        qkv = self.qkv(self.norm_attention(x)).view(batch, length, 3, self.heads, dim // self.heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each [B, heads, T, D / heads]
        mixed = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # [B, heads, T, D / heads]
        x = x + self.out(mixed.transpose(1, 2).reshape(batch, length, dim))
        return x + self.mlp(self.norm_mlp(x))


class TinyLM(nn.Module):
    """A decoder-only language model over VOCAB: embeddings [B, T, D] -> next-token logits [B, T, V].

    Takes embeddings, not token ids, so that image tokens can be spliced in; `embed` turns ids into
    embeddings. The output layer reuses the embedding matrix (weight tying).
    """

    def __init__(self, dim: int = 64, layers: int = 2, heads: int = 4, max_length: int = 64,
                 vocab_size: int = len(VOCAB)) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, dim)
        self.position = nn.Embedding(max_length, dim)
        self.blocks = nn.ModuleList(DecoderBlock(dim, heads) for _ in range(layers))
        self.norm = nn.LayerNorm(dim)
        for table in (self.embed, self.position):  # small, as in GPT-2: N(0, 1) words start as loud logits
            nn.init.normal_(table.weight, std=0.02)

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        x = embeddings + self.position.weight[: embeddings.shape[1]]  # [B, T, D]
        for block in self.blocks:
            x = block(x)
        return self.norm(x) @ self.embed.weight.T  # [B, T, V]


def splice(text: torch.Tensor, image: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """Put the K image rows where each sequence has its one <image> token.

    text [B, L, ...] (embeddings, or labels), image [B, K, ...], tokens [B, L] with exactly one
    IMAGE per row -> [B, L - 1 + K, ...]: the text before the placeholder, the image, the text after.
    """
    is_image = tokens == IMAGE
    if not bool((is_image.sum(1) == 1).all()):
        raise ValueError("every sequence needs exactly one <image> token")
    place = is_image.long().argmax(1, keepdim=True)  # [B, 1]
    k = image.shape[1]
    j = torch.arange(tokens.shape[1] - 1 + k, device=tokens.device)[None]  # [1, L - 1 + K]
    from_image = (j >= place) & (j < place + k)  # [B, L - 1 + K]
    text_index = torch.where(j < place, j, j - k + 1).clamp(0, tokens.shape[1] - 1)
    image_index = (j - place).clamp(0, k - 1)
    extra = (1,) * (text.dim() - 2)
    take_text = text.gather(1, text_index.view(*text_index.shape, *extra).expand(-1, -1, *text.shape[2:]))
    take_image = image.gather(1, image_index.view(*image_index.shape, *extra).expand(-1, -1, *image.shape[2:]))
    return torch.where(from_image.view(*from_image.shape, *extra), take_image, take_text)


class TinyVLM(nn.Module):
    """Vision tower -> projector -> image tokens spliced at <image> -> TinyLM -> next-token logits.

    `forward` takes the tower's features (computed once per image: the tower is frozen), so training
    never runs the CNN; `features` runs the tower on images.
    """

    def __init__(self, lm: TinyLM | None = None, grid: int = 4, mlp: bool = True,
                 feature_dim: int = tiny_clip.EMBED_DIM) -> None:
        super().__init__()
        self.lm = lm if lm is not None else TinyLM()
        dim = self.lm.embed.embedding_dim
        self.grid = grid
        self.tower = tiny_clip.ImageEncoder().requires_grad_(False)  # frozen: chapter 3's weights
        self.register_buffer("feature_mean", torch.zeros(feature_dim))
        self.register_buffer("feature_std", torch.ones(feature_dim))
        self.projector = (nn.Sequential(nn.Linear(feature_dim, dim), nn.GELU(), nn.Linear(dim, dim))
                          if mlp else nn.Linear(feature_dim, dim))
        self.row = nn.Parameter(torch.zeros(grid, 1, dim))  # 2-D position: one vector per row ...
        self.column = nn.Parameter(torch.zeros(1, grid, dim))  # ... and one per column

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Images [N, 3, 32, 32] -> standardised tower features [N, grid * grid, feature_dim]."""
        was_training = self.tower.training
        self.tower.eval()
        raw = grid_features(self.tower, images, self.grid)
        self.tower.train(was_training)
        return (raw - self.feature_mean) / self.feature_std

    def image_tokens(self, features: torch.Tensor) -> torch.Tensor:
        """[N, grid * grid, feature_dim] -> [N, grid * grid, D]: projected, plus row and column."""
        position = (self.row + self.column).flatten(0, 1)  # [grid * grid, D]
        return self.projector(features) + position

    def forward(self, features: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """features [B, K, F], tokens [B, L] with one <image> each -> logits [B, L - 1 + K, V]."""
        text = self.lm.embed(tokens)  # [B, L, D]
        return self.lm(splice(text, self.image_tokens(features), tokens))


def label_positions(labels: torch.Tensor, tokens: torch.Tensor, image_count: int) -> torch.Tensor:
    """Labels [B, L] -> [B, L - 1 + K] aligned with the spliced sequence (IGNORE on image tokens)."""
    blank = torch.full((len(labels), image_count), IGNORE, dtype=labels.dtype, device=labels.device)
    return splice(labels, blank, tokens)


def next_token_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of position t's logits against the label at t + 1, over scored labels only."""
    return F.cross_entropy(logits[:, :-1].flatten(0, 1), labels[:, 1:].flatten(), ignore_index=IGNORE)


# ---------------------------------------------------------------------------------------------------
# Answering


@contextlib.contextmanager
def _evaluating(model: nn.Module) -> Iterator[torch.device]:
    """Eval mode and no gradients inside; the model's training flag restored after. Yields its device."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield runtime.device_of(model)
    finally:
        model.train(was_training)


def generate(model: TinyVLM, features: torch.Tensor, prompts: Sequence[str], max_new: int = 20,
             batch_size: int = 1000) -> list[str]:
    """Greedy answers to `prompts` (one per image's features), decoded to text.

    Prompts of one length run as a batch; a batch of prompts of different lengths falls back to one
    prompt at a time (correct, but slow: group prompts by length for speed). No KV cache: each new
    token reruns the whole sequence, which is cheap at these lengths."""
    answers: list[str] = []
    with _evaluating(model) as device:
        for start in range(0, len(prompts), batch_size):
            part = list(prompts[start : start + batch_size])
            tokens, _ = encode(part, [""] * len(part))
            seq = tokens[:, :-1].to(device)  # up to <sep> (drop the empty answer's <eos>)
            lengths = (tokens != PAD).sum(1) - 1  # where each prompt ends
            if bool((lengths != lengths[0]).any()):  # ragged prompts: one at a time keeps it simple
                answers += [generate(model, features[start + i : start + i + 1], [p], max_new)[0]
                            for i, p in enumerate(part)]
                continue
            feats = features[start : start + batch_size].to(device)
            for _ in range(max_new):
                next_ids = model(feats, seq)[:, -1].argmax(-1, keepdim=True)  # [b, 1]
                seq = torch.cat([seq, next_ids], 1)
                if bool((seq[:, tokens.shape[1] - 1 :] == EOS).any(1).all()):
                    break
            answers += [decode(row) for row in seq[:, tokens.shape[1] - 1 :].tolist()]
    return answers


def first_token_logits(model: TinyVLM, features: torch.Tensor, questions: Sequence[str],
                       image_of: torch.Tensor | None = None, batch_size: int = 2000) -> torch.Tensor:
    """Logits [N, V] of the first answer token to each question, read at each row's own <sep>.

    `image_of` [N] picks each question's row of `features` (default: row i for question i). Assumes
    the chat template of `encode`, where <image> comes before <sep> (the K image tokens shift <sep>
    by K - 1); a template with the image after the question would need a different offset.
    """
    image_of = torch.arange(len(questions)) if image_of is None else image_of
    rows = []
    with _evaluating(model) as device:
        for start in range(0, len(questions), batch_size):
            part = list(questions[start : start + batch_size])
            tokens = encode(part, [""] * len(part))[0].to(device)
            feats = features[image_of[start : start + batch_size]].to(device)
            logits = model(feats, tokens)  # [b, L - 1 + K, V]
            at_sep = (tokens == SEP).long().argmax(1) + feats.shape[1] - 1  # <sep> after the splice
            rows.append(logits[torch.arange(len(part), device=device), at_sep])
    return torch.cat(rows)


def first_token_answers(model: TinyVLM, features: torch.Tensor, questions: Sequence[str],
                        image_of: torch.Tensor | None = None, batch_size: int = 2000) -> list[str]:
    """The most likely first answer token to each question (one-word answers), decoded."""
    best = first_token_logits(model, features, questions, image_of, batch_size).argmax(-1)
    return [VOCAB[i] for i in best.tolist()]


def answer(model: TinyVLM, images: torch.Tensor, questions: Sequence[str], max_new: int = 20) -> list[str]:
    """Answers to one question per image (any length of answer), from raw images [N, 3, 32, 32]."""
    features = model.features(images.to(runtime.device_of(model)))
    return generate(model, features, questions, max_new)


def score_by_kind(predicted: Sequence[str], asked: Sequence[dict]) -> dict[str, float]:
    """% of answers equal to the truth, per question kind and 'all' (kinds in first-seen order)."""
    right, total = Counter(), Counter()
    for guess, qa in zip(predicted, asked, strict=True):
        total[qa["kind"]] += 1
        right[qa["kind"]] += guess == qa["answer"]
    scores = {kind: 100 * right[kind] / total[kind] for kind in total}
    scores["all"] = 100 * sum(right.values()) / max(1, sum(total.values()))
    return scores


# ---------------------------------------------------------------------------------------------------
# The recipe (chapter 5 trains exactly this; the zoo reruns it on a cache miss)

TRAIN_IMAGES, TRAIN_SEED, TEST_IMAGES, TEST_SEED = 10_000, 11, 1000, 12
PRETRAIN_STEPS, STAGE1_STEPS, STAGE2_STEPS = 150, 150, 900
BATCH_SIZE, QUESTION_SHARE = 128, 0.75


def scenes(n: int, seed: int, split: str = "train") -> shapes.ShapesBatch:
    """The chapter's scenes: 1 to 3 objects, 32x32, no held-out colour x shape pair (split='train')."""
    return shapes.generate(n, seed=seed, min_objects=1, max_objects=3, split=split)


class Corpus:
    """A training set as tensors: captions (one per image) and questions (several per image)."""

    def __init__(self, batch: shapes.ShapesBatch, seed: int, length: int = 24) -> None:
        self.batch = batch
        self.captions = [canonical_caption(batch, i) for i in range(len(batch))]
        self.questions = shapes.questions(batch, seed=seed, kinds=KINDS) + box_questions(batch, seed)
        self.caption_tokens, self.caption_labels = encode([CAPTION_PROMPT] * len(batch), self.captions, length)
        self.question_tokens, self.question_labels = encode(
            [qa["question"] for qa in self.questions], [qa["answer"] for qa in self.questions], length)
        self.question_image = torch.tensor([qa["image_index"] for qa in self.questions])

    def text_only(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Every caption and question/answer in the chat template, every word scored (not `<image>`)."""
        tokens = torch.cat([self.caption_tokens, self.question_tokens])
        return tokens, tokens.masked_fill((tokens == PAD) | (tokens == IMAGE), IGNORE)


def expand_image(tokens: torch.Tensor, count: int) -> torch.Tensor:
    """Token ids [B, L] -> [B, L - 1 + count]: each row's <image> repeated `count` times (the splice
    on ids; SmolVLM's processor expands its image placeholder the same way)."""
    return splice(tokens, torch.full((len(tokens), count), IMAGE, device=tokens.device), tokens)


def text_batches(tokens: torch.Tensor, labels: torch.Tensor, batch_size: int = BATCH_SIZE,
                 max_image_tokens: int = 16) -> Callable:
    """draw(generator) -> (tokens, labels) of `batch_size` random texts with their <image> placeholder
    expanded to k copies, k drawn per batch from 1..max_image_tokens: the language model reads its text
    at every position a VLM with up to that many image tokens will put it."""
    def draw(generator: torch.Generator) -> tuple[torch.Tensor, ...]:
        i = torch.randint(len(tokens), (batch_size,), generator=generator).to(tokens.device)
        k = int(torch.randint(1, max_image_tokens + 1, (), generator=generator))
        return expand_image(tokens[i], k), label_positions(labels[i], tokens[i], k)
    return draw


def train_steps(model: nn.Module, parameters: Sequence[nn.Parameter],
                draw: Callable[[torch.Generator], tuple[torch.Tensor, ...]], loss_of: Callable,
                steps: int, lr: float, seed: int = 0, desc: str = "training") -> float:
    """AdamW with a one-cycle schedule for `steps` batches from `draw(generator)`; returns the last loss."""
    optimizer = torch.optim.AdamW(parameters, lr=lr, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, lr, total_steps=steps, pct_start=0.1)
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model.train()
    loss = torch.tensor(float("nan"))
    for _ in training.progress(range(steps), desc=desc):
        loss = loss_of(model, *draw(generator))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
    return loss.item()


def text_loss(lm: TinyLM, tokens: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Next-token loss of the language model alone on text."""
    return next_token_loss(lm(lm.embed(tokens)), labels)


def vlm_loss(model: TinyVLM, features: torch.Tensor, tokens: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Next-token loss of the VLM, scored on the labelled (answer) tokens only."""
    logits = model(features, tokens)  # [B, L - 1 + K, V]
    return next_token_loss(logits, label_positions(labels, tokens, features.shape[1]))


def caption_batches(corpus: Corpus, features: torch.Tensor, batch_size: int = BATCH_SIZE) -> Callable:
    """draw(generator) -> (features, tokens, labels) of `batch_size` random captions."""
    def draw(generator: torch.Generator) -> tuple[torch.Tensor, ...]:
        i = torch.randint(len(corpus.captions), (batch_size,), generator=generator)
        return features[i], corpus.caption_tokens[i], corpus.caption_labels[i]
    return draw


def mixed_batches(corpus: Corpus, features: torch.Tensor, question_share: float = QUESTION_SHARE,
                  batch_size: int = BATCH_SIZE) -> Callable:
    """draw(generator) -> a batch of `question_share` questions and the rest captions."""
    questions = round(batch_size * question_share)
    captions = caption_batches(corpus, features, batch_size - questions)

    def draw(generator: torch.Generator) -> tuple[torch.Tensor, ...]:
        j = torch.randint(len(corpus.questions), (questions,), generator=generator)
        parts = [(features[corpus.question_image[j]], corpus.question_tokens[j], corpus.question_labels[j])]
        if questions < batch_size:
            parts.append(captions(generator))
        return tuple(torch.cat(column) for column in zip(*parts, strict=True))
    return draw


def set_feature_stats(model: TinyVLM, raw_features: torch.Tensor) -> None:
    """Standardise the tower's output per channel with the training images' mean and spread."""
    model.feature_mean.copy_(raw_features.mean((0, 1)))
    model.feature_std.copy_(raw_features.std((0, 1)) + 1e-5)


def load_tower(model: TinyVLM) -> None:
    """Copy the zoo's tiny CLIP image encoder into the model's (frozen) tower."""
    from utils import zoo

    clip_model, _ = zoo.load("tiny_clip", device=runtime.device_of(model), quiet=True)
    model.tower.load_state_dict(clip_model.image_encoder.state_dict())


def train(model: TinyVLM, seed: int = 0, question_share: float = QUESTION_SHARE) -> dict:
    """The zoo's recipe, chapter 5's main run: pretrain the LM on text, stage 1 (projector only,
    captions), stage 2 (everything but the tower, `question_share` questions - 3/4 in the zoo's
    model - and the rest captions). Returns metrics (chapter 8 sweeps the share)."""
    device = runtime.device_of(model)
    load_tower(model)
    corpus = Corpus(scenes(TRAIN_IMAGES, TRAIN_SEED), TRAIN_SEED)
    raw = grid_features(model.tower.eval(), corpus.batch.images.to(device), model.grid)
    set_feature_stats(model, raw)
    features = (raw - model.feature_mean) / model.feature_std
    tokens, labels = (t.to(device) for t in corpus.text_only())
    for name in ("caption_tokens", "caption_labels", "question_tokens", "question_labels", "question_image"):
        setattr(corpus, name, getattr(corpus, name).to(device))
    train_steps(model.lm, model.lm.parameters(), text_batches(tokens, labels), text_loss, PRETRAIN_STEPS,
                3e-3, seed, "language model on text")
    adapter = [p for name, p in model.named_parameters() if not name.startswith(("lm.", "tower."))]
    model.lm.requires_grad_(False)
    train_steps(model, adapter, caption_batches(corpus, features), vlm_loss, STAGE1_STEPS, 1e-2, seed,
                "stage 1")
    model.lm.requires_grad_(True)
    trainable = [p for p in model.parameters() if p.requires_grad]
    final_loss = train_steps(model, trainable, mixed_batches(corpus, features, question_share), vlm_loss, STAGE2_STEPS,
                             1e-2, seed, "stage 2")
    return {"final_loss": final_loss, **evaluate(model)}


def test_set(seed: int = TEST_SEED, n: int = TEST_IMAGES, split: str = "train") -> Corpus:
    """New images and their captions and questions (split='test': held-out colour x shape pairs)."""
    return Corpus(scenes(n, seed, split), seed)


@torch.no_grad()
def evaluate(model: TinyVLM, test: Corpus | None = None, features: torch.Tensor | None = None,
             boxes: bool = True, captions: bool = True) -> dict:
    """VQA accuracy per kind (%), caption exact match (%; left out when captions=False), and grounding
    (mean IoU, % with IoU > 0.5; left out when boxes=False)."""
    test = test or test_set()
    if features is None:
        features = model.features(test.batch.images.to(runtime.device_of(model)))
    one_word = [qa for qa in test.questions if qa["kind"] != "box"]
    image_of = torch.tensor([qa["image_index"] for qa in one_word])
    guesses = first_token_answers(model, features, [qa["question"] for qa in one_word], image_of)
    scores = {f"vqa_{kind}": value for kind, value in score_by_kind(guesses, one_word).items()}
    if captions:
        said = generate(model, features, [CAPTION_PROMPT] * len(test.captions))
        scores["caption_exact_match"] = 100 * sum(
            one == " ".join(words(truth)) for one, truth in zip(said, test.captions, strict=True)
        ) / len(said)
    if not boxes:
        return scores
    boxed = [qa for qa in test.questions if qa["kind"] == "box"]
    said = generate(model, features[torch.tensor([qa["image_index"] for qa in boxed])],
                    [qa["question"] for qa in boxed], max_new=6)
    iou = box_iou(torch.tensor([parse_box(s) or (0.0, 0.0, 0.0, 0.0) for s in said]),
                  torch.tensor([qa["box"] for qa in boxed]))
    scores["box_mean_iou"] = iou.mean().item()
    scores["box_iou_above_half"] = 100 * (iou > 0.5).float().mean().item()
    return scores


def build_tiny_vlm(seed: int = 0) -> TinyVLM:
    """The zoo's untrained TinyVLM (the architecture `train` trains), initialised as chapter 5 does:
    the language model under `seed`, then the tower and projector under `seed` again."""
    torch.manual_seed(seed)
    lm = TinyLM()
    torch.manual_seed(seed)
    return TinyVLM(lm, grid=4, mlp=True)
