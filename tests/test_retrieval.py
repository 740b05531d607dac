"""utils.retrieval: Recall@K both ways, with several right answers per query."""

from __future__ import annotations

import pytest
import torch

from utils import retrieval


def test_recall_by_hand():
    similarity = torch.tensor([[0.9, 0.1, 0.5], [0.2, 0.3, 0.8], [0.7, 0.6, 0.1]])
    relevant = torch.eye(3, dtype=torch.bool)
    # row 0 ranks 0 first (hit); row 1 ranks 2, 1 (hit at k=2); row 2 ranks 0, 1, 2 (hit only at k=3)
    assert retrieval.recall_at(similarity, relevant, 1) == pytest.approx(1 / 3)
    assert retrieval.recall_at(similarity, relevant, 2) == pytest.approx(2 / 3)
    assert retrieval.recall_at(similarity, relevant, 3) == pytest.approx(1.0)


def test_report_reads_both_directions_and_counts_shared_captions():
    # images 0 and 1 share caption A; image 2 has caption B. Texts: A, A, B.
    caption = torch.tensor([0, 0, 1])
    relevant = caption[:, None] == caption[None]
    similarity = torch.tensor([[0.2, 0.9, 0.1], [0.8, 0.1, 0.0], [0.1, 0.0, 0.3]])
    got = retrieval.report(similarity, relevant, ks=(1,))
    assert got == {"image->text R@1": 100.0, "text->image R@1": 100.0}
    swapped = retrieval.report(similarity, torch.eye(3, dtype=torch.bool), ks=(1,))
    assert swapped["image->text R@1"] == pytest.approx(33.3)


def test_bad_shapes_and_k_are_explained():
    with pytest.raises(ValueError, match="same shape"):
        retrieval.recall_at(torch.zeros(2, 3), torch.zeros(3, 2, dtype=torch.bool), 1)
    with pytest.raises(ValueError, match="between 1 and the gallery size 3"):
        retrieval.recall_at(torch.zeros(2, 3), torch.zeros(2, 3, dtype=torch.bool), 4)
