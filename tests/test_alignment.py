"""utils.alignment: the POPE-style probe, the preference pairs, the DPO loss and the aligned model's
recipe (chapter 8 writes them out; the contract test checks that the lesson's copies agree)."""

from __future__ import annotations

import math

import pytest
import torch

from utils import alignment, shapes, tiny_vlm


@pytest.fixture(scope="module")
def scenes():
    return tiny_vlm.scenes(60, seed=5)


@pytest.fixture(scope="module")
def popular(scenes):
    return alignment.pair_frequency(scenes)


def test_pair_frequency_orders_every_pair_by_its_count(scenes, popular):
    assert sorted(popular) == sorted((c, s) for c in range(6) for s in range(4))
    counts = [sum(pair in alignment.present_pairs(scenes, i) for i in range(len(scenes))) for pair in popular]
    assert counts == sorted(counts, reverse=True)


def test_pope_questions_are_balanced_and_their_negatives_are_absent(scenes, popular):
    asked = alignment.pope_questions(scenes, popular, seed=1)
    assert len(asked) == 4 * len(scenes)
    for i in range(len(scenes)):
        rows = asked[4 * i : 4 * i + 4]
        assert [q["negative"] for q in rows] == ["none", *alignment.NEGATIVES]
        present = alignment.present_pairs(scenes, i)
        for q in rows:
            assert q["image_index"] == i
            named = {(c, s) for c in range(6) for s in range(4)
                     if q["question"] == f"is there {shapes.describe(c, s)}?"}
            assert len(named) == 1
            pair = named.pop()
            assert (pair in present) == (q["answer"] == "yes") == (q["negative"] == "none")
            if q["negative"] == "popular":
                assert pair in [p for p in popular if p not in present][: alignment.POPULAR_TOP]
            if q["negative"] == "adversarial":
                assert any(pair[0] == p[0] or pair[1] == p[1] for p in present)
    assert alignment.pope_questions(scenes, popular, seed=1) == asked  # deterministic


def test_pope_scores_on_a_hand_worked_probe():
    asked = [{"answer": "yes", "negative": "none"}, {"answer": "yes", "negative": "none"},
             {"answer": "no", "negative": "random"}, {"answer": "no", "negative": "random"},
             {"answer": "no", "negative": "popular"}, {"answer": "no", "negative": "popular"},
             {"answer": "no", "negative": "adversarial"}, {"answer": "no", "negative": "adversarial"}]
    said = ["yes", "no", "no", "no", "yes", "no", "yes", "yes"]
    scores = alignment.pope_scores(said, asked)
    assert scores["random"] == {"accuracy": 0.75, "precision": 1.0, "recall": 0.5, "f1": pytest.approx(2 / 3),
                                "false_yes": 0.0, "yes_ratio": 0.25}
    assert scores["popular"]["precision"] == 0.5 and scores["popular"]["false_yes"] == 0.5
    assert scores["adversarial"]["accuracy"] == 0.25 and scores["adversarial"]["yes_ratio"] == 0.75


def test_preference_pairs_are_balanced_and_prefer_the_truth(scenes, popular):
    pairs = alignment.preference_pairs(scenes, popular, seed=0)
    existence = [p for p in pairs if p["kind"] == "exists"]
    assert len(existence) == 2 * len(scenes)
    assert sum(p["chosen"] == "yes" for p in existence) == len(scenes)
    truth = {(qa["question"], qa["image_index"]): qa["answer"]
             for qa in shapes.questions(scenes, seed=0, kinds=alignment.ANCHOR_KINDS)}
    for p in pairs:
        assert p["chosen"] != p["rejected"]
        if p["kind"] != "exists":
            assert truth[(p["prompt"], p["image_index"])] == p["chosen"]
    assert {p["kind"] for p in pairs} == {"exists", *alignment.ANCHOR_KINDS}


def test_dpo_loss_follows_the_paper():
    zero = torch.zeros(4)
    assert alignment.dpo_loss(zero, zero, zero, zero, 0.1).item() == pytest.approx(math.log(2))
    pc, pr, rc, rr = (torch.tensor([v]) for v in (-1.0, -3.0, -2.0, -2.5))
    margin = (-1.0 + 2.0) - (-3.0 + 2.5)
    expected = math.log1p(math.exp(-0.5 * margin))
    assert alignment.dpo_loss(pc, pr, rc, rr, 0.5).item() == pytest.approx(expected)
    # raising the chosen answer's likelihood lowers the loss; raising the rejected one's raises it
    assert alignment.dpo_loss(pc + 1, pr, rc, rr, 0.5) < alignment.dpo_loss(pc, pr, rc, rr, 0.5)
    assert alignment.dpo_loss(pc, pr + 1, rc, rr, 0.5) > alignment.dpo_loss(pc, pr, rc, rr, 0.5)


@pytest.fixture(scope="module")
def small_vlm():
    torch.manual_seed(0)
    return tiny_vlm.TinyVLM(tiny_vlm.TinyLM(dim=32, layers=1, heads=2)).eval()


def test_sequence_logprob_sums_the_answer_tokens(small_vlm, scenes):
    features = small_vlm.features(scenes.images[:3])
    tokens, labels = tiny_vlm.encode(["describe the image"] * 3, ["a red circle", "two", "a small blue square"], 24)
    got = alignment.sequence_logprob(small_vlm, features, tokens, labels)
    logits = small_vlm(features, tokens)
    spliced = tiny_vlm.label_positions(labels, tokens, features.shape[1])
    for b in range(3):
        expected = sum(logits[b, t - 1].log_softmax(-1)[spliced[b, t]].item()
                       for t in range(1, spliced.shape[1]) if spliced[b, t] != tiny_vlm.IGNORE)
        assert got[b].item() == pytest.approx(expected, abs=1e-4)


def test_align_trains_a_copy_and_zero_weights_change_nothing(small_vlm, scenes, popular):
    pairs = alignment.preference_pairs(scenes, popular, seed=0)
    features = small_vlm.features(scenes.images)
    before = {k: v.clone() for k, v in small_vlm.state_dict().items()}
    still = alignment.align(small_vlm, features, pairs, steps=3, sft_weight=0.0, dpo_weight=0.0)
    moved = alignment.align(small_vlm, features, pairs, steps=3, lr=1e-2)
    for key, value in small_vlm.state_dict().items():
        assert torch.equal(value, before[key]), key  # the input model is untouched
        assert torch.equal(still.state_dict()[key], value), key
    changed = [k for k, v in moved.state_dict().items() if not torch.equal(v, before[k])]
    assert changed and not any(k.startswith("tower.") for k in changed)


def test_listed_in_the_zoo():
    from utils import zoo

    resolved = zoo._entry("tiny_vlm_dpo")
    assert resolved.build is tiny_vlm.build_tiny_vlm and resolved.train is alignment.train_aligned
