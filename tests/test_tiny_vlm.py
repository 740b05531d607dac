"""The TinyVLM's pieces: tokenizer, splice, answer-only labels, boxes as text, and a training step."""

from __future__ import annotations

import pytest
import torch

from utils import shapes, tiny_vlm, zoo


@pytest.fixture(scope="module")
def corpus() -> tiny_vlm.Corpus:
    return tiny_vlm.Corpus(tiny_vlm.scenes(60, seed=5), seed=5)


def test_every_word_of_the_world_is_in_the_vocabulary(corpus):
    texts = corpus.captions + [qa["question"] + " " + qa["answer"] for qa in corpus.questions]
    every_kind = shapes.questions(corpus.batch, seed=1, kinds=shapes.QUESTION_KINDS)
    texts += [qa["question"] + " " + qa["answer"] for qa in every_kind] + [tiny_vlm.CAPTION_PROMPT]
    unknown = {w for text in texts for w in tiny_vlm.words(text) if w not in tiny_vlm.TOKEN_ID}
    assert not unknown
    assert len(set(tiny_vlm.VOCAB)) == len(tiny_vlm.VOCAB)


def test_encode_scores_the_answer_and_eos_only():
    tokens, labels = tiny_vlm.encode(["what colour is the circle?"], ["red"], length=12)
    said = tiny_vlm.decode(tokens[0].tolist())
    assert said == "<bos> <image> what colour is the circle ? <sep> red"
    scored = labels[0][labels[0] != tiny_vlm.IGNORE].tolist()
    assert scored == [tiny_vlm.TOKEN_ID["red"], tiny_vlm.EOS]
    where = (labels[0] != tiny_vlm.IGNORE).nonzero().flatten().tolist()
    assert where == [9, 10] and tokens[0, 9] == tiny_vlm.TOKEN_ID["red"]
    with pytest.raises(ValueError, match="more than length"):
        tiny_vlm.encode(["what colour is the circle?"], ["red"], length=5)


def reference_splice(text, image, tokens):
    rows = []
    for row in range(len(tokens)):
        place = int((tokens[row] == tiny_vlm.IMAGE).nonzero())
        rows.append(torch.cat([text[row, :place], image[row], text[row, place + 1 :]]))
    return torch.stack(rows)


def test_splice_puts_the_image_at_each_rows_placeholder():
    generator = torch.Generator().manual_seed(0)
    tokens = torch.randint(10, 40, (5, 9), generator=generator)
    for row, place in enumerate([0, 1, 4, 8, 3]):
        tokens[row, place] = tiny_vlm.IMAGE
    text = torch.randn(5, 9, 6, generator=generator)
    image = torch.randn(5, 4, 6, generator=generator)
    assert torch.equal(tiny_vlm.splice(text, image, tokens), reference_splice(text, image, tokens))
    labels = torch.randint(0, 50, (5, 9), generator=generator)
    blanks = torch.full((5, 4), tiny_vlm.IGNORE)
    assert torch.equal(tiny_vlm.splice(labels, blanks, tokens), reference_splice(labels, blanks, tokens))
    tokens[0, 2] = tiny_vlm.IMAGE
    with pytest.raises(ValueError, match="exactly one <image>"):
        tiny_vlm.splice(text, image, tokens)


def test_only_answer_logits_move_the_loss():
    tokens, labels = tiny_vlm.encode(["how many objects are there?"], ["2"])
    spliced = tiny_vlm.label_positions(labels, tokens, image_count=16)
    assert spliced.shape[1] == tokens.shape[1] - 1 + 16
    assert (spliced[0, 1:17] == tiny_vlm.IGNORE).all()
    logits = torch.randn(1, spliced.shape[1], len(tiny_vlm.VOCAB))
    before = tiny_vlm.next_token_loss(logits, spliced)
    answer_at = int((spliced[0] != tiny_vlm.IGNORE).nonzero()[0])
    changed = logits.clone()
    changed[0, : answer_at - 1] += 5 * torch.randn(answer_at - 1, len(tiny_vlm.VOCAB))
    assert torch.equal(tiny_vlm.next_token_loss(changed, spliced), before)
    changed[0, answer_at - 1] += 1.0 + torch.arange(len(tiny_vlm.VOCAB)).float()
    assert not torch.equal(tiny_vlm.next_token_loss(changed, spliced), before)


def test_boxes_round_trip_through_text_within_a_bin():
    box = (3.2, 10.0, 17.9, 31.5)
    text = tiny_vlm.box_text(box)
    assert text == "<box> <loc1> <loc5> <loc8> <loc15> </box>"
    back = tiny_vlm.parse_box(text)
    assert all(abs(a - b) <= 32 / tiny_vlm.BINS for a, b in zip(back, box, strict=True))
    assert tiny_vlm.parse_box("<box> <loc1> <loc5> <loc8> </box>") is None
    assert tiny_vlm.parse_box("red") is None


def test_box_iou_on_hand_worked_boxes():
    a = torch.tensor([[0.0, 0.0, 2.0, 2.0], [0.0, 0.0, 2.0, 2.0], [0.0, 0.0, 1.0, 1.0]])
    b = torch.tensor([[0.0, 0.0, 2.0, 2.0], [1.0, 0.0, 3.0, 2.0], [2.0, 2.0, 3.0, 3.0]])
    assert torch.allclose(tiny_vlm.box_iou(a, b), torch.tensor([1.0, 2.0 / 6.0, 0.0]))


def test_canonical_captions_name_objects_left_to_right(corpus):
    batch = corpus.batch
    for i in range(len(batch)):
        if int(batch.count[i]) == 2:
            left = int(batch.centre[i, :2, 0].argmin())
            first = shapes.describe(int(batch.colour[i, left]), int(batch.shape[i, left]), int(batch.size[i, left]))
            assert corpus.captions[i].startswith(first)


def test_the_model_is_causal_and_the_tower_frozen():
    torch.manual_seed(0)
    model = tiny_vlm.build_tiny_vlm().eval()
    features = torch.randn(2, 16, 64)
    tokens, _ = tiny_vlm.encode(["what colour is the circle?", "what colour is the square?"], ["red", "red"])
    logits = model(features, tokens)
    assert logits.shape == (2, tokens.shape[1] - 1 + 16, len(tiny_vlm.VOCAB))
    # The two prompts differ only at "circle"/"square": earlier positions (and the image) cannot see it.
    differ = int((tokens[0] != tokens[1]).nonzero()[0]) - 1 + 16
    same_features = features[:1].expand(2, -1, -1)
    logits = model(same_features, tokens)
    assert torch.allclose(logits[0, :differ], logits[1, :differ], atol=1e-5)
    assert not torch.allclose(logits[0, differ], logits[1, differ])
    assert not any(p.requires_grad for p in model.tower.parameters())


def test_a_few_steps_lower_the_answer_loss_and_first_token_matches_generate(corpus):
    torch.manual_seed(0)
    model = tiny_vlm.build_tiny_vlm()
    raw = tiny_vlm.grid_features(model.tower, corpus.batch.images)
    tiny_vlm.set_feature_stats(model, raw)
    features = (raw - model.feature_mean) / model.feature_std
    draw = tiny_vlm.mixed_batches(corpus, features, batch_size=32)
    generator = torch.Generator().manual_seed(0)
    batch = draw(generator)
    before = tiny_vlm.vlm_loss(model, *batch).item()
    trainable = [p for p in model.parameters() if p.requires_grad]
    tiny_vlm.train_steps(model, trainable, lambda g: batch, tiny_vlm.vlm_loss, 20, 3e-3)
    assert tiny_vlm.vlm_loss(model, *batch).item() < before
    questions = [qa["question"] for qa in corpus.questions[:12]]
    image_of = torch.tensor([qa["image_index"] for qa in corpus.questions[:12]])
    first = tiny_vlm.first_token_answers(model, features, questions, image_of)
    generated = [tiny_vlm.generate(model, features[image_of[i : i + 1]], [q], max_new=1)[0]
                 for i, q in enumerate(questions)]
    assert first == [g.split(" ")[0] if g else "<eos>" for g in generated]


def test_listed_in_the_zoo():
    entry = zoo.BOOK_MODELS["tiny_vlm"]
    resolved = zoo._entry("tiny_vlm")
    assert isinstance(entry.build, str)
    assert resolved.build is tiny_vlm.build_tiny_vlm and resolved.train is tiny_vlm.train


def test_text_batches_put_the_text_where_the_vlm_will_and_score_no_placeholder(corpus):
    tokens, labels = corpus.text_only()
    assert bool(((tokens == tiny_vlm.IMAGE).sum(1) == 1).all())
    assert bool((labels[tokens == tiny_vlm.IMAGE] == tiny_vlm.IGNORE).all())
    draw = tiny_vlm.text_batches(tokens, labels, batch_size=8, max_image_tokens=16)
    generator = torch.Generator().manual_seed(0)
    seen = set()
    for _ in range(40):
        batch_tokens, batch_labels = draw(generator)
        k = int((batch_tokens[0] == tiny_vlm.IMAGE).sum())
        seen.add(k)
        assert batch_tokens.shape[1] == tokens.shape[1] - 1 + k
        assert bool(((batch_tokens == tiny_vlm.IMAGE).sum(1) == k).all())  # one k per batch
        assert bool((batch_tokens[:, 1 : 1 + k] == tiny_vlm.IMAGE).all())
        assert bool((batch_labels[batch_tokens == tiny_vlm.IMAGE] == tiny_vlm.IGNORE).all())
        scored = batch_labels != tiny_vlm.IGNORE
        assert torch.equal(batch_labels[scored], batch_tokens[scored])
    assert min(seen) >= 1 and max(seen) <= 16 and len(seen) > 8


def test_build_is_seeded_and_first_token_logits_agree_with_answers(corpus):
    torch.manual_seed(123)
    one = tiny_vlm.build_tiny_vlm()
    torch.manual_seed(456)
    two = tiny_vlm.build_tiny_vlm()
    for a, b in zip(one.state_dict().values(), two.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    features = torch.randn(len(corpus.batch), 16, 64)
    questions = [qa["question"] for qa in corpus.questions[:30]]
    image_of = torch.tensor([qa["image_index"] for qa in corpus.questions[:30]])
    logits = tiny_vlm.first_token_logits(one, features, questions, image_of, batch_size=7)
    assert logits.shape == (30, len(tiny_vlm.VOCAB)) and one.training
    said = tiny_vlm.first_token_answers(one, features, questions, image_of)
    assert said == [tiny_vlm.VOCAB[i] for i in logits.argmax(-1).tolist()]


def test_grid_features_cover_the_map_and_one_cell_is_clips_own_embedding():
    torch.manual_seed(0)
    encoder = tiny_vlm.TinyVLM().tower.eval()
    images = torch.rand(3, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(tiny_vlm.grid_features(encoder, images, grid=1)[:, 0], encoder(images), atol=1e-5)
        for grid in (1, 2, 4):
            assert tiny_vlm.grid_features(encoder, images, grid).shape == (3, grid * grid, 64)
    # every 4x4 patch of the image moves some token, for every grid
    base = torch.rand(1, 3, 32, 32)
    changed = base.repeat(64, 1, 1, 1)
    for patch in range(64):
        row, col = 4 * (patch // 8), 4 * (patch % 8)
        changed[patch, :, row : row + 4, col : col + 4] = 1.0 - changed[patch, :, row : row + 4, col : col + 4]
    for grid in (1, 2, 4):
        before = tiny_vlm.grid_features(encoder, base, grid)
        after = tiny_vlm.grid_features(encoder, changed, grid)
        moved = (after - before).abs().flatten(1).max(1).values > 1e-6
        assert bool(moved.all()), f"grid {grid}: patches {(~moved).nonzero().flatten().tolist()} move no token"


def test_evaluate_leaves_out_what_it_is_told_to(corpus):
    torch.manual_seed(0)
    model = tiny_vlm.build_tiny_vlm()
    features = torch.randn(len(corpus.batch), 16, 64)
    scores = tiny_vlm.evaluate(model, corpus, features, boxes=False, captions=False)
    assert set(scores) == {f"vqa_{kind}" for kind in (*tiny_vlm.KINDS, "all")}
    scores = tiny_vlm.evaluate(model, corpus, features)
    assert {"caption_exact_match", "box_mean_iou", "box_iou_above_half"} <= set(scores)
