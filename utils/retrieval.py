"""Recall@K for cross-modal retrieval, as chapter 1 builds it, for the chapters after it.

Chapter 1 writes `recall_at` out and explains it; later chapters call this copy, so that every
retrieval number in the book is computed the same way::

    similarity = image_vectors @ text_vectors.T                     # [N_images, N_texts]
    relevant = image_caption_id[:, None] == text_caption_id[None]   # bool, same shape
    retrieval.report(similarity, relevant)  # {"image->text R@1": 96.0, ..., "text->image R@5": 100.0}

`relevant` marks every right answer, so several images that share a caption all count as hits.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def recall_at(similarity: torch.Tensor, relevant: torch.Tensor, k: int) -> float:
    """Fraction (0-1) of queries (rows of `similarity`, [Q, G]) with a relevant item among their top k."""
    if similarity.shape != relevant.shape:
        raise ValueError(f"similarity {tuple(similarity.shape)} and relevant {tuple(relevant.shape)} "
                         "must have the same shape: [queries, gallery]")
    if not 1 <= k <= similarity.shape[1]:
        raise ValueError(f"k must be between 1 and the gallery size {similarity.shape[1]}, got {k}")
    top_k = similarity.topk(k, dim=1).indices  # [Q, k]
    return relevant.to(similarity.device).gather(1, top_k).any(dim=1).float().mean().item()


def report(similarity: torch.Tensor, relevant: torch.Tensor, ks: Sequence[int] = (1, 5)) -> dict[str, float]:
    """Recall@k in percent (one decimal), image->text over the rows and text->image over the columns.

    similarity: [N_images, N_texts]; relevant: bool, same shape, True where text j describes image i.
    """
    result = {}
    for name, scores, hits in (("image->text", similarity, relevant), ("text->image", similarity.T, relevant.T)):
        for k in ks:
            result[f"{name} R@{k}"] = round(100 * recall_at(scores, hits, k), 1)
    return result
