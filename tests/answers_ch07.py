"""Chapter 7: hand-written answers a learner might give, for the checks and the mutation harness.

WRONG[key]: (answer, words its rejection must contain); CORRECT[key]: answers written differently
from the reference solution that must pass."""

from __future__ import annotations

import torch


def noisy(x0, t, noise, betas):
    abar = torch.cumprod(1 - betas, dim=0)[t]
    abar = abar.reshape(-1, *([1] * (x0.dim() - 1)))
    return abar.sqrt() * x0 + (1 - abar).sqrt() * noise


def _noisy_logs(x0, t, noise, betas):
    log_abar = torch.log1p(-betas).cumsum(0)[t]  # a sum of logs is the log of the product
    shape = (len(t),) + (1,) * (x0.dim() - 1)
    abar = log_abar.exp().view(shape)
    return torch.sqrt(abar) * x0 + torch.sqrt(1 - abar) * noise


def guide(conditional, unconditional, w, convention):
    if convention == "paper":
        w = w + 1
    return unconditional + w * (conditional - unconditional)


def _guide_weights(conditional, unconditional, w, convention):
    scale = w if convention == "ours" else w + 1
    return scale * conditional + (1 - scale) * unconditional


def quantise(z, codebook):
    codes = torch.cdist(z, codebook).argmin(dim=1)
    q = codebook[codes]
    return z + (q - z).detach()


def _quantise_expanded(z, codebook):
    distances = ((z[:, None, :] - codebook[None, :, :]) ** 2).sum(-1)  # [N, K]
    q = codebook.detach()[distances.argmin(1)]
    return q + z - z.detach()


def ddim(x_t, eps, abar_t, abar_prev):
    x0 = (x_t - (1 - abar_t) ** 0.5 * eps) / abar_t**0.5
    return abar_prev**0.5 * x0 + (1 - abar_prev) ** 0.5 * eps


def _ddim_coefficients(x_t, eps, abar_t, abar_prev):
    import math

    ratio = math.sqrt(abar_prev / abar_t)
    eps_scale = math.sqrt(1 - abar_prev) - ratio * math.sqrt(1 - abar_t)
    return ratio * x_t + eps_scale * eps


WRONG = {
    "7.1": [
        (lambda x0, t, n, b: noisy(x0, t, n, b.flip(0)), "expected"),
        (lambda x0, t, n, b: noisy(x0, t, n, b)[0], "shape"),
        (lambda x0, t, n, b: noisy(x0, t, n, b) + 1e-3, "expected"),
    ],
    "7.2": [
        (lambda c, u, w, conv: guide(c, u, w, "ours"), "expected"),
        (lambda c, u, w, conv: guide(c, u, w, conv).sum(), "shape"),
        (lambda c, u, w, conv: [guide(c, u, w, conv)], "list"),
    ],
    "7.3": [
        (lambda z, c: torch.cdist(z, c).argmin(1), "expected"),
        (lambda z, c: c[torch.cdist(z, c).argmin(1)], "gradient"),
        (lambda z, c: quantise(z, c)[:-1], "shape"),
        (lambda z, c: c[torch.cdist(z, c).argmin(1)] + z - z.detach(), "sends a gradient"),
    ],
    "7.4": [
        (lambda x, e, a, p: ddim(x, e, a, p).sum(), "shape"),
        (lambda x, e, a, p: ddim(x, e, p, a), "expected"),
        (lambda x, e, a, p: x, "expected"),
    ],
}

CORRECT = {
    "7.1": [noisy, _noisy_logs],
    "7.2": [guide, _guide_weights],
    "7.3": [quantise, _quantise_expanded],
    "7.4": [ddim, _ddim_coefficients],
}
