"""Exercises of chapter 7, Generating images. Checks compare with references written independently
of the solutions (products and square roots taken one step at a time, the two guidance conventions
written as weighted sums, a loop over codewords, the DDIM step as interpolation between the clean
guess and the noise), never with a copy of the solution."""

from __future__ import annotations

import math

import torch

from utils.exercises.core import Case, Exercise, Mistake, chapter_progress

# ---------------------------------------------------------------- 7.1 the forward process from betas


def _abar_by_loop(betas, t):
    """prod_{s <= t} (1 - beta_s) for each entry of t, one factor at a time."""
    values = []
    for step in t.tolist():
        product = 1.0
        for s in range(step + 1):
            product *= 1.0 - float(betas[s])
        values.append(product)
    return torch.tensor(values, dtype=betas.dtype)


def _noisy_reference(x0, t, noise, betas):
    abar = _abar_by_loop(betas, t).view(-1, *([1] * (x0.dim() - 1)))
    return abar.sqrt() * x0 + (1 - abar).sqrt() * noise


def _noisy_cases() -> list[Case]:
    generator = torch.Generator().manual_seed(71)
    cases = []
    linear = torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64)
    short = torch.linspace(0.05, 0.4, 10, dtype=torch.float64)
    for betas, shape, t, label in (
        (linear, (4, 3, 2, 2), [0, 10, 500, 999], "DDPM's linear schedule, 4 tiny images"),
        (short, (5, 6), [0, 1, 4, 8, 9], "a 10-step schedule with large betas, 5 vectors"),
        (short, (3, 2, 3, 3), [9, 9, 2], "the same step twice in a batch"),
    ):
        x0 = torch.randn(*shape, generator=generator, dtype=torch.float64)
        noise = torch.randn(*shape, generator=generator, dtype=torch.float64)
        steps = torch.tensor(t)
        cases.append(Case(inputs=(x0, steps, noise, betas),
                          expected=_noisy_reference(x0, steps, noise, betas), label=label))
    return cases


def _noisy_with(abar_of):
    def simulate(x0, t, noise, betas):
        abar = abar_of(betas)[t].view(-1, *([1] * (x0.dim() - 1)))
        return abar.sqrt() * x0 + (1 - abar).sqrt() * noise
    return simulate


def _noisy_no_sqrt(x0, t, noise, betas):
    abar = torch.cumprod(1 - betas, 0)[t].view(-1, *([1] * (x0.dim() - 1)))
    return abar * x0 + (1 - abar) * noise


def _noisy_one_step(x0, t, noise, betas):
    beta = betas[t].view(-1, *([1] * (x0.dim() - 1)))
    return (1 - beta).sqrt() * x0 + beta.sqrt() * noise


def _noisy_exploding(x0, t, noise, betas):
    abar = torch.cumprod(1 - betas, 0)[t].view(-1, *([1] * (x0.dim() - 1)))
    return x0 + (1 - abar).sqrt() * noise


def _exclusive_product(betas):
    return torch.cat([torch.ones(1, dtype=betas.dtype), torch.cumprod(1 - betas, 0)[:-1]])


noisy_from_betas = Exercise(
    key="7.1",
    title="The forward process in closed form, from the betas",
    cases=_noisy_cases,
    hints=[
        "Step s multiplies the image by sqrt(1 - beta_s) and adds noise of variance beta_s. After "
        "steps 0..t the image's factor is the product of the sqrt(1 - beta_s), so its square, abar_t, "
        "is the product of (1 - beta_s) over s = 0..t - including s = t.",
        "torch.cumprod(1 - betas, dim=0)[t] gives abar for every image at once; reshape it to "
        "[B, 1, 1, ...] (as many ones as x0 has dimensions after the first) so that it broadcasts.",
        "Return sqrt(abar) * x0 + sqrt(1 - abar) * noise. At t = 0 with a tiny beta the result is "
        "almost x0; the two coefficients' squares always add up to 1.",
    ],
    mistakes=[
        Mistake("summed the betas", "abar_t is a product of (1 - beta_s), not 1 minus their sum: "
                "use torch.cumprod, not torch.cumsum.",
                _noisy_with(lambda betas: 1 - torch.cumsum(betas, 0))),
        Mistake("stopped one step early", "abar_t includes step t itself: the product runs over s = 0 "
                "to t, so at t = 0 it is 1 - beta_0, not 1.", _noisy_with(_exclusive_product)),
        Mistake("forgot the square roots", "The coefficients are sqrt(abar_t) and sqrt(1 - abar_t): "
                "abar_t is the share of the *variance* the image keeps.", _noisy_no_sqrt),
        Mistake("used only step t's beta", "One step of noise is not the closed form: the image has "
                "been through all the steps 0..t, so use their product abar_t.", _noisy_one_step),
        Mistake("did not shrink the image", "In DDPM the image is scaled down by sqrt(abar_t) as the "
                "noise grows (the variance stays 1); you kept x0 at full strength.", _noisy_exploding),
    ],
    atol=1e-7,
    rtol=1e-6,
)

# ---------------------------------------------------------------- 7.2 classifier-free guidance


def _guide_reference(conditional, unconditional, w, convention):
    if convention == "ours":  # w = 1: conditional
        weight_c, weight_u = w, 1 - w
    elif convention == "paper":  # Ho & Salimans: w = 0 conditional
        weight_c, weight_u = 1 + w, -w
    else:
        raise ValueError(convention)
    return weight_c * conditional + weight_u * unconditional


def _guide_cases() -> list[Case]:
    generator = torch.Generator().manual_seed(72)
    c = torch.randn(3, 2, 4, 4, generator=generator, dtype=torch.float64)
    u = torch.randn(3, 2, 4, 4, generator=generator, dtype=torch.float64)
    cases = []
    for w, convention, label in ((3.0, "ours", "w = 3, ours"), (1.0, "ours", "w = 1, ours: plain conditional"),
                                 (0.0, "ours", "w = 0, ours: no caption"), (7.5, "ours", "w = 7.5, ours"),
                                 (0.0, "paper", "w = 0, the paper's: plain conditional"),
                                 (2.0, "paper", "w = 2, the paper's: ours at 3"),
                                 (0.5, "paper", "w = 0.5, the paper's")):
        cases.append(Case(inputs=(c, u, w, convention),
                          expected=_guide_reference(c, u, w, convention), label=label))
    return cases


def _guide_both_ours(conditional, unconditional, w, convention):
    return unconditional + w * (conditional - unconditional)


def _guide_both_paper(conditional, unconditional, w, convention):
    return conditional + w * (conditional - unconditional)


def _guide_swapped(conditional, unconditional, w, convention):
    return _guide_reference(unconditional, conditional, w, convention)


def _guide_conventions_swapped(conditional, unconditional, w, convention):
    return _guide_reference(conditional, unconditional, w, "paper" if convention == "ours" else "ours")


def _guide_no_base(conditional, unconditional, w, convention):
    shift = 1 if convention == "paper" else 0
    return (w + shift) * (conditional - unconditional)


guide = Exercise(
    key="7.2",
    title="Classifier-free guidance in both conventions",
    cases=_guide_cases,
    hints=[
        "Guidance starts from the unconditional prediction and moves w times the difference "
        "(conditional - unconditional) towards the caption. In the book's convention (and diffusers' "
        "guidance_scale) w = 1 gives exactly the conditional prediction.",
        "The paper (Ho & Salimans) writes (1 + w) * conditional - w * unconditional, so its w = 0 is "
        "plain conditional: paper w equals ours minus 1. Branch on `convention`.",
        "Check both at their 'plain' setting: ours at w = 1 and the paper's at w = 0 must return "
        "`conditional` unchanged; ours at w = 0 returns `unconditional`.",
    ],
    mistakes=[
        Mistake("used the book's formula for both", "With convention='paper' the scale is shifted by "
                "one: (1 + w) c - w u.", _guide_both_ours),
        Mistake("used the paper's formula for both", "In the book's convention w = 1 is plain "
                "conditional: u + w (c - u).", _guide_both_paper),
        Mistake("swapped the two conventions", "'ours' is u + w (c - u), where w = 1 gives c; "
                "'paper' is (1 + w) c - w u, where w = 0 gives c.", _guide_conventions_swapped),
        Mistake("swapped the two predictions", "Guidance moves away from the unconditional "
                "prediction, towards the conditional one.", _guide_swapped),
        Mistake("left out the starting point", "w times the difference is only the step; add it to "
                "the unconditional prediction.", _guide_no_base),
    ],
    atol=1e-7,
    rtol=1e-6,
)

# ---------------------------------------------------------------- 7.3 nearest code, straight through


def _quantise_reference(z, codebook):
    """The nearest codeword of each row by a loop; the value of the codeword, the gradient of z."""
    chosen = []
    for row in z.detach():
        distances = [float(((row - word.detach()) ** 2).sum()) for word in codebook]
        chosen.append(min(range(len(distances)), key=distances.__getitem__))
    words = codebook.detach()[torch.tensor(chosen, dtype=torch.long)]
    return z - z.detach() + words  # value: the codewords; gradient: that of z


def _quantise_cases() -> list[Case]:
    generator = torch.Generator().manual_seed(73)
    cases = []
    for n, k, dim, label in ((6, 4, 2, "6 vectors, 4 codes in 2-D"),
                             (10, 16, 8, "10 vectors, 16 codes in 8-D"),
                             (5, 3, 3, "5 vectors, 3 codes of very different lengths")):
        codebook = torch.randn(k, dim, generator=generator, dtype=torch.float64)
        codebook = codebook * torch.linspace(0.3, 3.0, k, dtype=torch.float64)[:, None]
        z = torch.randn(n, dim, generator=generator, dtype=torch.float64) * 1.5
        cases.append(Case(inputs=(z, codebook), expected=_quantise_reference(z, codebook), label=label))
    return cases


def _nearest(z, codebook):
    return torch.cdist(z.detach(), codebook.detach()).argmin(1)


def _quantise_no_straight_through(z, codebook):
    return codebook[_nearest(z, codebook)]


def _quantise_by_dot(z, codebook):
    codes = (z.detach() @ codebook.detach().T).argmax(1)
    return z + (codebook[codes] - z).detach()


def _quantise_detached(z, codebook):
    return codebook[_nearest(z, codebook)].detach()


def _quantise_undetached(z, codebook):
    return z + (codebook[_nearest(z, codebook)] - z)


straight_through = Exercise(
    key="7.3",
    title="The nearest code, with the straight-through gradient",
    cases=_quantise_cases,
    gradient_reference=_quantise_reference,
    hints=[
        "Two jobs: the value (each row of z replaced by its nearest codeword: smallest squared "
        "Euclidean distance; torch.cdist and argmin) and the gradient (it must reach z as if the "
        "quantiser were the identity).",
        "Indexing codebook[codes] has a gradient only for the codebook. The trick: z + (q - z).detach() "
        "equals q going forward, while the only path back goes to z.",
        "Return one tensor shaped like z. Its gradient with respect to z is the incoming gradient "
        "unchanged, and with respect to the codebook nothing (the codebook loss trains the codes).",
    ],
    mistakes=[
        Mistake("left out the straight-through estimator", "codebook[codes] has the right value, but "
                "no gradient reaches z, so the encoder could never learn. Use z + (q - z).detach().",
                _quantise_no_straight_through),
        Mistake("picked the largest dot product", "The nearest code is the one at the smallest "
                "distance; a large dot product favours long codewords far away.", _quantise_by_dot),
        Mistake("detached everything", "The value is right, but a fully detached result passes no "
                "gradient to z.", _quantise_detached),
        Mistake("forgot the .detach()", "z + (q - z) is just q: the z terms cancel in the gradient "
                "too. Detach the difference (q - z), not nothing.", _quantise_undetached),
    ],
    atol=1e-7,
    rtol=1e-6,
)

# ---------------------------------------------------------------- 7.4 one DDIM step


def _ddim_reference(x_t, eps, abar_t, abar_prev):
    signal, noise_scale = math.sqrt(abar_t), math.sqrt(1 - abar_t)
    x0 = (x_t - noise_scale * eps) / signal
    # x_prev lies on the path from the clean guess to the same noise at the earlier level
    return math.sqrt(abar_prev) * x0 + math.sqrt(1 - abar_prev) * eps


def _ddim_cases() -> list[Case]:
    generator = torch.Generator().manual_seed(74)
    cases = []
    for abar_t, abar_prev, label in ((0.02, 0.1, "a big jump early in sampling"),
                                     (0.5, 0.7, "the middle of sampling"),
                                     (0.9, 1.0, "the last step: abar_prev = 1 returns the clean guess"),
                                     (0.3, 0.3, "no jump at all: x_t comes back")):
        x_t = torch.randn(2, 3, 4, 4, generator=generator, dtype=torch.float64)
        eps = torch.randn(2, 3, 4, 4, generator=generator, dtype=torch.float64)
        cases.append(Case(inputs=(x_t, eps, abar_t, abar_prev),
                          expected=_ddim_reference(x_t, eps, abar_t, abar_prev), label=label))
    return cases


def _ddim_returns_x0(x_t, eps, abar_t, abar_prev):
    return (x_t - math.sqrt(1 - abar_t) * eps) / math.sqrt(abar_t)


def _ddim_no_sqrt(x_t, eps, abar_t, abar_prev):
    x0 = (x_t - (1 - abar_t) * eps) / abar_t
    return abar_prev * x0 + (1 - abar_prev) * eps


def _ddim_fresh_sign(x_t, eps, abar_t, abar_prev):
    x0 = (x_t + math.sqrt(1 - abar_t) * eps) / math.sqrt(abar_t)
    return math.sqrt(abar_prev) * x0 - math.sqrt(1 - abar_prev) * eps


def _ddim_clipped(x_t, eps, abar_t, abar_prev):
    x0 = ((x_t - math.sqrt(1 - abar_t) * eps) / math.sqrt(abar_t)).clamp(-1, 1)
    return math.sqrt(abar_prev) * x0 + math.sqrt(1 - abar_prev) * eps


def _ddim_ratio(x_t, eps, abar_t, abar_prev):
    return math.sqrt(abar_prev / abar_t) * x_t


ddim_step = Exercise(
    key="7.4",
    title="One DDIM step",
    cases=_ddim_cases,
    hints=[
        "First undo the forward formula with the network's noise estimate: "
        "x0 = (x_t - sqrt(1 - abar_t) * eps) / sqrt(abar_t).",
        "Then put the same noise back at the earlier level: x_prev = sqrt(abar_prev) * x0 + "
        "sqrt(1 - abar_prev) * eps. No fresh noise: this is DDIM with eta = 0 (and no clipping here).",
        "Two checks of your own: with abar_prev = abar_t you must get x_t back, and with "
        "abar_prev = 1 (the last step) you get the clean guess x0.",
    ],
    mistakes=[
        Mistake("returned the clean guess", "x0 is the half-way point: the step goes to the earlier "
                "noise level, sqrt(abar_prev) * x0 + sqrt(1 - abar_prev) * eps.", _ddim_returns_x0),
        Mistake("forgot the square roots", "abar is a share of variance; the scales of signal and "
                "noise are sqrt(abar) and sqrt(1 - abar).", _ddim_no_sqrt),
        Mistake("flipped the noise's sign", "x_t = sqrt(abar) x0 + sqrt(1 - abar) eps: subtract the "
                "noise to get x0, and add it back for x_prev.", _ddim_fresh_sign),
        Mistake("clipped the clean guess", "Section 7.5's sampler clips x0 to [-1, 1]; this exercise "
                "asks for the plain step, without clipping.", _ddim_clipped),
        Mistake("only rescaled x_t", "Scaling x_t by sqrt(abar_prev / abar_t) scales its noise too; "
                "the step must remove noise, so split x_t into x0 and eps first.", _ddim_ratio),
    ],
    atol=1e-7,
    rtol=1e-6,
)


def progress():
    """This session's results for the chapter's exercises, as a table."""
    return chapter_progress(7)
