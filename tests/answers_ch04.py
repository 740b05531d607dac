"""Chapter 4: hand-written answers a learner might give, for the checks and the mutation harness.

WRONG[key]: (answer, words its rejection must contain); CORRECT[key]: answers written differently
from the reference solution that must pass."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def gated(text, image, w_q, w_k, w_v, w_o, gate):
    scores = (text @ w_q) @ (image @ w_k).transpose(1, 2) / math.sqrt(w_q.shape[1])
    return text + torch.tanh(gate) * (scores.softmax(dim=-1) @ (image @ w_v) @ w_o)


def _gated_sdpa_float32(text, image, w_q, w_k, w_v, w_o, gate):
    attended = F.scaled_dot_product_attention((text @ w_q).float(), (image @ w_k).float(),
                                              (image @ w_v).float())
    return text.float() + gate.tanh().float() * (attended @ w_o.float())


def _gated_einsum(text, image, w_q, w_k, w_v, w_o, gate):
    q, k, v = text @ w_q, image @ w_k, image @ w_v
    weights = torch.einsum("bqd,bkd->bqk", q, k).div(k.shape[-1] ** 0.5).softmax(-1)
    return text + gate.tanh() * torch.einsum("bqk,bkd->bqd", weights, v) @ w_o


def qformer(queries, image, w_q, w_k, w_v):
    q = (queries @ w_q).unsqueeze(0).expand(image.shape[0], -1, -1)
    weights = (q @ (image @ w_k).transpose(1, 2) / math.sqrt(w_k.shape[1])).softmax(-1)
    return queries.unsqueeze(0) + weights @ (image @ w_v)


def _qformer_sdpa(queries, image, w_q, w_k, w_v):
    q = (queries @ w_q).expand(image.shape[0], -1, -1)
    return queries + F.scaled_dot_product_attention(q, image @ w_k, image @ w_v)


def _qformer_one_image_only(queries, image, w_q, w_k, w_v):
    return qformer(queries, image[:1], w_q, w_k, w_v)


def parameters(d_text, d_image, n_queries):
    linear = d_image * d_text + d_text
    attention = 2 * (d_text * d_text + d_text) + 2 * (d_image * d_text + d_text)
    return {"linear_projector": linear, "mlp_projector": linear + d_text * d_text + d_text,
            "cross_attention": attention, "gated_cross_attention": attention + 1,
            "q_former_queries": n_queries * d_text}


def _parameters_floats(d_text, d_image, n_queries):
    return {key: float(value) for key, value in parameters(d_text, d_image, n_queries).items()}


def _parameters_mlp_wide(d_text, d_image, n_queries):
    # hidden layer as wide as the image features
    return {**parameters(d_text, d_image, n_queries),
            "mlp_projector": d_image * d_image + d_image + d_image * d_text + d_text}


def _parameters_missing_key(d_text, d_image, n_queries):
    counts = parameters(d_text, d_image, n_queries)
    del counts["q_former_queries"]
    return counts


RIGHT_CHOICES = {"frozen_llm": "gated_cross_attention", "long_video": "q_former", "small_data": "projector",
                 "retrieval": "late"}

WRONG = {
    "4.1": [
        (lambda t, i, q, k, v, o, g: t, "no gradient reaches"),  # the gate never opens
        (lambda t, i, q, k, v, o, g: gated(t, i, q, k, v, o, g).mean(1), "shape"),  # pooled the text
        (lambda t, i, q, k, v, o, g: gated(t, i, q, k, v, o, g.detach()), "gradient"),
        (lambda t, i, q, k, v, o, g: gated(t, i, q, k, v, o, 0.5 * g), "expected"),
    ],
    "4.2": [
        (lambda qu, i, q, k, v: qformer(qu, i, q, k, v)[0], "shape"),  # first image only, batch dropped
        (_qformer_one_image_only, "shape"),
        (lambda qu, i, q, k, v: qformer(qu, i, q, k, v).mean(1), "shape"),
        (lambda qu, i, q, k, v: qformer(qu, i.detach(), q, k, v), "gradient"),
    ],
    "4.3": [
        (_parameters_floats, "int"),
        (_parameters_mlp_wide, "mlp_projector"),
        (_parameters_missing_key, "q_former_queries"),
    ],
    "4.4": [
        (lambda: {**RIGHT_CHOICES, "long_video": "projector"}, "long_video"),
        (lambda: {**RIGHT_CHOICES, "frozen_llm": "cross_attention"}, "frozen_llm"),
        (lambda: {**RIGHT_CHOICES, "retrieval": "telepathy"}, "not one of the choices"),
        (lambda: {key: value for key, value in RIGHT_CHOICES.items() if key != "small_data"}, "missing"),
        (lambda: list(RIGHT_CHOICES.values()), "dict"),
    ],
}

CORRECT = {
    "4.1": [gated, _gated_sdpa_float32, _gated_einsum],
    "4.2": [qformer, _qformer_sdpa],
    "4.3": [parameters],
    "4.4": [lambda: dict(RIGHT_CHOICES),
            lambda: {"frozen_llm": "Gated cross-attention", "long_video": "Q-Former", "small_data": " projector",
                     "retrieval": "LATE"}],
}
