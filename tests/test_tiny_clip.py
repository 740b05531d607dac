"""The tiny CLIP of chapter 3 (utils.tiny_clip): tokenizer, shapes, the loss, the zoo entry. Fast."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from utils import tiny_clip, zoo


def test_tokenize_is_word_level_and_padded():
    ids = tiny_clip.tokenize(["A small red circle", "a zebra"], max_tokens=6)
    assert ids.shape == (2, 6) and ids.dtype == torch.long
    words = [tiny_clip.VOCAB[i] for i in ids[0, :4].tolist()]
    assert words == ["a", "small", "red", "circle"]
    assert ids[0, 4:].eq(0).all()
    assert ids[1, 1].item() == tiny_clip.WORD_INDEX[tiny_clip.UNK]


def test_every_caption_word_is_in_the_vocabulary():
    from utils import shapes

    captions = shapes.generate(200, seed=0, max_objects=2, caption_style="varied").captions
    assert not tiny_clip.tokenize(captions).eq(tiny_clip.WORD_INDEX[tiny_clip.UNK]).any()


def test_encoders_give_unit_vectors_of_the_shared_width():
    torch.manual_seed(0)
    model = tiny_clip.TinyCLIP()
    images = torch.rand(3, 3, 32, 32)
    tokens = tiny_clip.tokenize(["a red circle", "a blue square", "a photo of a green cross"])
    image_vectors, text_vectors = model.encode_image(images), model.encode_text(tokens)
    assert image_vectors.shape == text_vectors.shape == (3, tiny_clip.EMBED_DIM)
    assert torch.allclose(image_vectors.norm(dim=-1), torch.ones(3), atol=1e-5)
    assert model(images, tokens).shape == (3, 3)


def test_text_vector_ignores_padding_length():
    torch.manual_seed(0)
    model = tiny_clip.TinyCLIP().eval()
    short = tiny_clip.tokenize(["a red circle"], max_tokens=4)
    long = tiny_clip.tokenize(["a red circle"], max_tokens=16)
    assert torch.allclose(model.encode_text(short), model.encode_text(long), atol=1e-5)


def test_logit_scale_starts_at_clip_init_and_is_clamped():
    model = tiny_clip.TinyCLIP()
    assert math.isclose(model.scale().item(), 1 / 0.07, rel_tol=1e-5)
    with torch.no_grad():
        model.logit_scale.fill_(10.0)
    assert math.isclose(model.scale().item(), 100.0, rel_tol=1e-5)


def test_clip_loss_matches_hand_value():
    # Perfectly separated 2 x 2 logits [[1, 0], [0, 1]]: each direction log(1 + e^-1).
    loss = tiny_clip.clip_loss(torch.eye(2))
    assert math.isclose(loss.item(), math.log(1 + math.exp(-1)), rel_tol=1e-6)
    logits = torch.randn(4, 4, generator=torch.Generator().manual_seed(1))
    targets = torch.arange(4)
    both = (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets)) / 2
    assert torch.allclose(tiny_clip.clip_loss(logits), both)


def test_listed_in_the_zoo_and_resolved_lazily():
    entry = zoo.BOOK_MODELS["tiny_clip"]
    assert isinstance(entry.build, str), "the book's table names the class; importing registers nothing"
    resolved = zoo._entry("tiny_clip")
    assert resolved.build is tiny_clip.TinyCLIP and resolved.train is tiny_clip.train
    assert "tiny_clip" not in zoo.REGISTRY


def test_a_few_training_steps_lower_the_loss():
    torch.manual_seed(0)
    model = tiny_clip.TinyCLIP()
    images, tokens = tiny_clip.training_data(n=256, seed=3)
    before = tiny_clip.clip_loss(model(images[:64], tokens[:64])).item()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(15):
        optimizer.zero_grad()
        tiny_clip.clip_loss(model(images[:64], tokens[:64])).backward()
        optimizer.step()
    assert tiny_clip.clip_loss(model(images[:64], tokens[:64])).item() < before


def test_text_encoder_is_a_bag_of_words():
    torch.manual_seed(0)
    model = tiny_clip.TinyCLIP().eval()
    a = tiny_clip.tokenize(["a red circle left of a blue square"])
    b = tiny_clip.tokenize(["a blue circle left of a red square"])
    assert torch.allclose(model.encode_text(a), model.encode_text(b), atol=1e-6)


def test_the_zoo_finds_tiny_clip_without_an_import_and_caches_a_trained_copy(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(zoo.CACHE_ENV, str(tmp_path))
    monkeypatch.setattr(zoo, "REGISTRY", {})
    torch.manual_seed(3)
    trained_here = tiny_clip.TinyCLIP()
    zoo.save("tiny_clip", trained_here, metrics={"zero_shot_accuracy": 0.5})
    loaded, meta = zoo.load("tiny_clip", device="cpu")
    assert meta["source"] == "cache" and meta["metrics"] == {"zero_shot_accuracy": 0.5}
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(),
                                                   trained_here.state_dict().values(), strict=True))
    assert "loaded from cache" in capsys.readouterr().out


def test_token_ids_are_named():
    ids = tiny_clip.tokenize(["a red zebra"], max_tokens=5)
    assert ids[0, 2].item() == tiny_clip.UNK_ID and ids[0, 3:].eq(tiny_clip.PAD_ID).all()
    assert tiny_clip.VOCAB[tiny_clip.PAD_ID] == tiny_clip.PAD and tiny_clip.VOCAB[tiny_clip.UNK_ID] == tiny_clip.UNK
