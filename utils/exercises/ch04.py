"""Exercises of chapter 4, Fusion architectures. Checks compare with independent references
(the formula written with torch's own softmax, parameter counts of modules torch builds on the
meta device), never with a copy of the solution."""

from __future__ import annotations

import math

import torch
from torch import nn

from utils.exercises.core import Case, Exercise, Mistake, chapter_progress
from utils.exercises.declare import dict_answer_problem

# ---------------------------------------------------------------- 4.1 gated cross-attention


def _random_inputs(seed: int):
    """draw(*shape): float64 normal values; weight(n_in, n_out): a matrix scaled as nn.Linear
    initialises (1/sqrt(n_in)), so that the attention softmax is not saturated."""
    generator = torch.Generator().manual_seed(seed)

    def draw(*shape):
        return torch.randn(*shape, generator=generator, dtype=torch.float64)

    def weight(n_in, n_out):
        return draw(n_in, n_out) / math.sqrt(n_in)

    return draw, weight


def _attend(queries, keys, values, dim=-1):
    """softmax(Q K^T / sqrt(d)) V over the keys (dim=-1), the scale from the key width."""
    weights = torch.softmax(queries @ keys.transpose(-1, -2) / math.sqrt(keys.shape[-1]), dim=dim)
    return weights @ values


def _gated_reference(text, image, w_q, w_k, w_v, w_o, gate):
    return text + torch.tanh(gate) * (_attend(text @ w_q, image @ w_k, image @ w_v) @ w_o)


def _gated_cases() -> list[Case]:
    draw, weight = _random_inputs(41)

    cases = []
    for batch, text_len, image_len, d_text, d_image, d_attn, gate, label in (
        (2, 3, 5, 4, 6, 4, 0.0, "gate 0: the output must equal the text tokens exactly"),
        (2, 3, 5, 4, 6, 4, 0.8, "the same inputs, gate 0.8"),
        (1, 4, 9, 6, 3, 2, -1.5, "one example, 4 text and 9 image tokens, a negative gate -1.5"),
    ):
        inputs = (draw(batch, text_len, d_text), draw(batch, image_len, d_image), weight(d_text, d_attn),
                  weight(d_image, d_attn), weight(d_image, d_attn), weight(d_attn, d_text),
                  torch.tensor(gate, dtype=torch.float64))
        cases.append(Case(inputs=inputs, expected=_gated_reference(*inputs), label=label))
    return cases


def _gated_without_tanh(text, image, w_q, w_k, w_v, w_o, gate):
    return text + gate * (_attend(text @ w_q, image @ w_k, image @ w_v) @ w_o)


def _gated_sigmoid(text, image, w_q, w_k, w_v, w_o, gate):
    return text + torch.sigmoid(gate) * (_attend(text @ w_q, image @ w_k, image @ w_v) @ w_o)


def _gated_no_residual(text, image, w_q, w_k, w_v, w_o, gate):
    return torch.tanh(gate) * (_attend(text @ w_q, image @ w_k, image @ w_v) @ w_o)


def _gated_whole(text, image, w_q, w_k, w_v, w_o, gate):
    return torch.tanh(gate) * (text + _attend(text @ w_q, image @ w_k, image @ w_v) @ w_o)


def _gated_unscaled(text, image, w_q, w_k, w_v, w_o, gate):
    weights = torch.softmax((text @ w_q) @ (image @ w_k).transpose(-1, -2), dim=-1)
    return text + torch.tanh(gate) * (weights @ (image @ w_v) @ w_o)


def _gated_wrong_axis(text, image, w_q, w_k, w_v, w_o, gate):
    return text + torch.tanh(gate) * (_attend(text @ w_q, image @ w_k, image @ w_v, dim=-2) @ w_o)


gated_cross_attention = Exercise(
    key="4.1",
    title="Flamingo's gated cross-attention, identity at initialisation",
    cases=_gated_cases,
    gradient_reference=_gated_reference,
    hints=[
        "The text tokens ask (queries), the image tokens answer (keys and values). The attention "
        "output is added to the text tokens through a gate, so that a closed gate leaves them unchanged.",
        "Three projections come first: queries from the text, keys and values from the image. The "
        "scores compare every text token with every image token, so they are [B, text_len, "
        "image_len]; normalise them over the image tokens after dividing by sqrt(d), where d is the "
        "width of the queries and keys. The gated branch is the weighted values, brought back to "
        "the text's width by w_o.",
        "With gate = 0 the output is the text tensor itself, to the last bit; the output has the text's "
        "shape [B, text_len, d_text]; and d output / d gate is not zero at gate = 0 (tanh'(0) = 1), which "
        "is why a closed gate can still learn to open.",
    ],
    mistakes=[
        Mistake("forgot the tanh", "Flamingo squashes the gate with tanh: the update is tanh(gate) * "
                "attention, which stays in [-1, 1] however far the gate parameter moves.", _gated_without_tanh),
        Mistake("used a sigmoid gate", "sigmoid(0) = 0.5, so a sigmoid gate is half open at "
                "initialisation and the model no longer equals the text-only model. Use tanh, which is 0 at 0.",
                _gated_sigmoid),
        Mistake("forgot the residual", "Add the gated attention to the text tokens; without the "
                "residual a closed gate erases the text instead of keeping it.", _gated_no_residual),
        Mistake("gated the residual too", "Only the attention branch is gated: text + tanh(gate) * "
                "attention, not tanh(gate) * (text + attention).", _gated_whole),
        Mistake("forgot the 1/sqrt(d) scale", "Divide the scores Q K^T by the square root of the "
                "query/key width before the softmax.", _gated_unscaled),
        Mistake("normalised over the text tokens", "Each text token's weights over the image tokens must "
                "sum to 1: softmax over the last axis (the image tokens), not over the text tokens.",
                _gated_wrong_axis),
    ],
    atol=1e-10,
    rtol=1e-8,
)

# ---------------------------------------------------------------- 4.2 Q-Former's learned queries


def _qformer_reference(queries, image, w_q, w_k, w_v):
    return queries + _attend(queries @ w_q, image @ w_k, image @ w_v)


def _qformer_cases() -> list[Case]:
    draw, weight = _random_inputs(42)

    cases = []
    for n_queries, batch, image_len, dim, d_attn, label in (
        (4, 2, 16, 8, 4, "4 queries, 2 images of 16 tokens, width 8"),
        (4, 2, 64, 8, 4, "the same 4 queries, 64 image tokens: still 4 tokens out"),
        (1, 3, 5, 6, 3, "a single query, 3 images of 5 tokens"),
    ):
        inputs = (draw(n_queries, dim), draw(batch, image_len, dim), weight(dim, d_attn), weight(dim, d_attn),
                  weight(dim, dim))
        cases.append(Case(inputs=inputs, expected=_qformer_reference(*inputs), label=label))
    return cases


def _qformer_swapped(queries, image, w_q, w_k, w_v):
    keys = (queries @ w_k).expand(image.shape[0], -1, -1)
    values = (queries @ w_v).expand(image.shape[0], -1, -1)
    return image + _attend(image @ w_q, keys, values)


def _qformer_no_residual(queries, image, w_q, w_k, w_v):
    return _attend(queries @ w_q, image @ w_k, image @ w_v)


def _qformer_wrong_axis(queries, image, w_q, w_k, w_v):
    return queries + _attend(queries @ w_q, image @ w_k, image @ w_v, dim=-2)


def _qformer_unscaled(queries, image, w_q, w_k, w_v):
    weights = torch.softmax((queries @ w_q) @ (image @ w_k).transpose(-1, -2), dim=-1)
    return queries + weights @ (image @ w_v)


qformer_tokens = Exercise(
    key="4.2",
    title="A Q-Former step: k learned queries read the image",
    cases=_qformer_cases,
    gradient_reference=_qformer_reference,
    hints=[
        "The learned queries ask, the image tokens answer. Whatever the number of image tokens, the "
        "output has one token per query, for every image in the batch.",
        "Q = queries @ w_q is [k, d] and the same for every image; K = image @ w_k and V = image @ w_v "
        "are [B, T, ...]. Broadcasting Q against K^T gives scores [B, k, T]; softmax over T; add the "
        "result to the queries (a residual).",
        "The output is [B, k, D]: doubling the number of image tokens T leaves its shape unchanged. Each "
        "row of the attention weights sums to 1 over the T image tokens.",
    ],
    mistakes=[
        Mistake("swapped queries and image", "Here the learned queries attend to the image (queries "
                "give Q; the image gives K and V), so that k tokens come out. Attending from the image to "
                "the queries returns one token per image patch.", _qformer_swapped),
        Mistake("forgot the residual", "Add the attention output to the queries (queries + attention).",
                _qformer_no_residual),
        Mistake("normalised over the queries", "Each query's weights over the image tokens must sum to "
                "1: softmax over the last axis (T), not over the queries.", _qformer_wrong_axis),
        Mistake("forgot the 1/sqrt(d) scale", "Divide the scores by the square root of the query/key "
                "width before the softmax.", _qformer_unscaled),
    ],
    atol=1e-10,
    rtol=1e-8,
)

# ---------------------------------------------------------------- 4.3 counting parameters

PARAMETER_KEYS = ("linear_projector", "mlp_projector", "cross_attention", "gated_cross_attention",
                  "q_former_queries")


def _count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _parameters_reference(d_text: int, d_image: int, n_queries: int) -> dict[str, int]:
    """Counted on modules torch builds on the meta device (no memory), not by formula."""
    meta = torch.device("meta")
    linear = nn.Linear(d_image, d_text, device=meta)
    mlp = nn.Sequential(nn.Linear(d_image, d_text, device=meta), nn.GELU(),
                        nn.Linear(d_text, d_text, device=meta))
    attention = nn.ModuleDict({
        "query": nn.Linear(d_text, d_text, device=meta), "key": nn.Linear(d_image, d_text, device=meta),
        "value": nn.Linear(d_image, d_text, device=meta), "out": nn.Linear(d_text, d_text, device=meta)})
    gates = nn.ParameterList([nn.Parameter(torch.zeros((), device=meta))])
    queries = nn.Parameter(torch.zeros(n_queries, d_text, device=meta))
    return {"linear_projector": _count(linear), "mlp_projector": _count(mlp),
            "cross_attention": _count(attention), "gated_cross_attention": _count(attention) + _count(gates),
            "q_former_queries": queries.numel()}


def _parameters_cases() -> list[Case]:
    return [Case(inputs=sizes, expected=_parameters_reference(*sizes), label=label) for sizes, label in (
        ((32, 32, 8), "this chapter's sizes: d_text 32, d_image 32, 8 queries"),
        ((64, 32, 8), "d_text 64, d_image 32, 8 queries"),
        ((4096, 1024, 32), "LLaVA-1.5 / BLIP-2 scale: d_text 4096, d_image 1024, 32 queries"),
        ((5, 3, 2), "tiny: d_text 5, d_image 3, 2 queries"),
    )]


def _parameters_no_bias(d_text, d_image, n_queries):
    return {"linear_projector": d_image * d_text, "mlp_projector": d_image * d_text + d_text * d_text,
            "cross_attention": 2 * d_text * d_text + 2 * d_image * d_text,
            "gated_cross_attention": 2 * d_text * d_text + 2 * d_image * d_text + 1,
            "q_former_queries": n_queries * d_text}


def _parameters_square(d_text, d_image, n_queries):
    counts = _parameters_reference(d_text, d_image, n_queries)
    attention = 4 * (d_text * d_text + d_text)
    return {**counts, "cross_attention": attention, "gated_cross_attention": attention + 1}


def _parameters_two_gates(d_text, d_image, n_queries):
    counts = _parameters_reference(d_text, d_image, n_queries)
    return {**counts, "gated_cross_attention": counts["cross_attention"] + 2}


parameter_count = Exercise(
    key="4.3",
    title="Count the parameters each fusion adds",
    cases=_parameters_cases,
    hints=[
        "Every piece here is made of nn.Linear layers, and a Linear(n_in, n_out) holds a weight "
        "[n_out, n_in] and a bias [n_out].",
        "In cross-attention the text gives the queries and the image gives the keys and values: the key "
        "and value layers read d_image numbers, the query and output layers read d_text numbers, and all "
        "four write d_text numbers.",
        "Return plain Python ints in a dict with exactly the five keys. At d_text 5, d_image 3, 2 queries "
        "the linear projector has 20 parameters; the gated version adds the gates to the cross-attention "
        "count.",
    ],
    mistakes=[
        Mistake("forgot the biases", "Each nn.Linear(n_in, n_out) also has n_out bias parameters.",
                _parameters_no_bias),
        Mistake("sized keys and values by the text", "The keys and values are computed from the image "
                "tokens, so their layers read d_image numbers, not d_text.", _parameters_square),
        Mistake("counted two gates", "The statement's gated layer has one tanh gate, a single number.",
                _parameters_two_gates),
    ],
)

# ---------------------------------------------------------------- 4.4 fusion-choice quiz

FUSION_CHOICES = ("late", "cross_attention", "gated_cross_attention", "q_former", "projector")
_CHOICE_KEY = {  # scenario -> the choices accepted, and what to think about when the answer is off
    "frozen_llm": ({"gated_cross_attention"},
                   "with an image present, the output must still equal the LM's on the prompt alone: "
                   "image tokens placed in the input change what the LM computes, so which fusion "
                   "adds the image through a branch that starts at exactly zero?"),
    "long_video": ({"q_former"},
                   "the LM's layers are off limits, so the image must come in as input tokens, and "
                   "64 x 256 patches are far more than 2,048: which fusion hands the LM a fixed, "
                   "small number of tokens however many patches come in?"),
    "small_data": ({"projector"},
                   "with strong pretrained towers and short inputs, which connector has the fewest new "
                   "parameters and keeps every patch visible to the LM?"),
    "retrieval": ({"late"},
                  "a hundred million images cannot each be re-read with every new query: which fusion "
                  "lets you compute the image side once, offline, and compare with a dot product?"),
}


def _choice_feedback(got) -> str | None:
    problem = dict_answer_problem(got, list(_CHOICE_KEY), f"scenario to one of {FUSION_CHOICES}",
                                  "scenarios", "the four scenarios")
    if problem:
        return problem
    wrong = []
    for scenario, (accepted, question) in _CHOICE_KEY.items():
        given = str(got[scenario]).strip().lower().replace("-", "_").replace(" ", "_")
        if given not in FUSION_CHOICES:
            return f"{scenario}: {got[scenario]!r} is not one of the choices {FUSION_CHOICES}"
        if given not in accepted:
            wrong.append(f"{scenario}: reconsider - {question}")
    if wrong:
        return f"{len(wrong)} of {len(_CHOICE_KEY)} choices are off:\n  " + "\n  ".join(wrong)
    return None


fusion_choice = Exercise(
    key="4.4",
    title="Pick a fusion for four constraints",
    cases=lambda: [Case(inputs=(), expected=_choice_feedback, label="the four scenarios")],
    hints=[
        "For each scenario find the one constraint that rules out the others: what must stay frozen, "
        "how many tokens the LM can take, how much data there is, or what must be precomputed.",
        "Count, for each fusion, the image tokens that enter the LM's context (all patches, k, or none) "
        "and whether the LM's weights change.",
        "Each scenario has one best answer among the five choices, and the four answers are all "
        "different.",
    ],
)


def progress():
    """This session's results for the chapter's exercises, as a table."""
    return chapter_progress(4)
