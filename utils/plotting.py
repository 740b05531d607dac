"""One plotting style for the whole book, and the handful of figures every chapter draws.

Each function sets a title and axis labels (with units where there are any) and returns the
matplotlib Figure. Figures are not kept by pyplot, so nothing accumulates and nothing is shown
twice: a figure appears when it is the value of a cell (make the call the last line) or is passed
to ``display(fig)``; ``fig.savefig(path)`` writes it to a file. Every figure is at least
``MIN_WIDTH_INCHES`` wide at ``DPI``: 780 pixels, a little more than the book's text column at a
1280-pixel window, so the page scales figures down (crisp), never up (blurred); tests/site
checks it. Works with any backend, including the headless Agg.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from utils.runtime import to_numpy

# Okabe-Ito: a colour cycle that colour-blind readers can tell apart (yellow last: weak on white).
BOOK_COLOURS = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#000000", "#F0E442"]
DPI = 130
MIN_WIDTH_INCHES = 6.0  # x DPI = 780 px >= the 764-px text column


def use_book_style() -> None:
    """Set the book's matplotlib defaults: small figures, readable fonts, light grid, colour cycle."""
    matplotlib.rcParams.update(
        {
            "figure.dpi": DPI,
            "savefig.dpi": DPI,
            "figure.figsize": (MIN_WIDTH_INCHES, 3.6),
            "figure.facecolor": "white",  # readable on the book's dark theme too
            "savefig.facecolor": "white",
            "figure.constrained_layout.use": True,
            "font.size": 10,
            "axes.titlesize": 11,
            "axes.labelsize": 10,
            "xtick.labelsize": 9,
            "ytick.labelsize": 9,
            "legend.fontsize": 9,
            "legend.frameon": False,
            "axes.grid": True,
            "grid.alpha": 0.3,
            "grid.linewidth": 0.6,
            "axes.spines.top": False,
            "axes.spines.right": False,
            "axes.prop_cycle": matplotlib.cycler(color=BOOK_COLOURS),
            "lines.linewidth": 1.6,
            "image.cmap": "viridis",
        }
    )


def _keep_whole_canvas() -> None:
    """Notebooks crop a figure to its ink before showing it (``bbox_inches="tight"``), which can
    leave it narrower than the text column; show the whole canvas instead."""
    try:
        from IPython import get_ipython
        from matplotlib_inline.backend_inline import InlineBackend, set_matplotlib_formats
    except ImportError:  # plain Python: nothing is shown inline
        return
    config = InlineBackend.instance()
    config.print_figure_kwargs["bbox_inches"] = None  # read when the inline backend starts
    if get_ipython() is not None:  # already started: apply it now
        set_matplotlib_formats(*config.figure_formats)


use_book_style()
_keep_whole_canvas()


def new_figure(nrows: int = 1, ncols: int = 1,
               figsize: tuple[float, float] | None = None) -> tuple[Figure, Any]:
    """A new Figure with its axes (one Axes, or an array of them), already let go by pyplot.

    For the figures a lesson composes itself (several panels); the book's style applies. A width
    below ``MIN_WIDTH_INCHES`` is widened to it, so the figure fills the text column. Creating it
    through pyplot loads the notebook's backend, which teaches IPython to draw Figure objects;
    closing it at once means pyplot will not show it again at the end of the cell.
    """
    width, height = figsize if figsize is not None else matplotlib.rcParams["figure.figsize"]
    figure, axes = plt.subplots(nrows, ncols, figsize=(max(width, MIN_WIDTH_INCHES), height),
                                squeeze=(nrows == 1 and ncols == 1), layout="constrained")
    plt.close(figure)
    return figure, axes


def _label(ax: Axes, title: str, xlabel: str, ylabel: str) -> None:
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)


# ----------------------------------------------------------------------------------------------
# Images
# ----------------------------------------------------------------------------------------------


def _to_hwc(image: Any, value_range: tuple[float, float] | None) -> np.ndarray:
    """One image (CHW or HWC tensor/array, HW grey, or PIL) -> HWC or HW float array in [0, 1]."""
    is_tensor = isinstance(image, torch.Tensor)
    array = to_numpy(image)
    if array.ndim == 3:
        channels_first = array.shape[0] in (1, 3, 4) and (is_tensor or array.shape[-1] not in (1, 3, 4))
        if channels_first:
            array = np.moveaxis(array, 0, -1)
        if array.shape[-1] == 1:
            array = array[..., 0]
    elif array.ndim != 2:
        raise ValueError(f"an image must be [C, H, W], [H, W, C] or [H, W]; got shape {array.shape}")
    if array.dtype == np.uint8:
        return array.astype(np.float32) / 255.0
    array = array.astype(np.float32)
    if value_range is None:
        low, high = float(array.min()), float(array.max())
    else:
        low, high = value_range
    return np.clip((array - low) / max(high - low, 1e-12), 0.0, 1.0)


def _image_list(images: Any) -> list[Any]:
    if isinstance(images, (torch.Tensor, np.ndarray)):
        if images.ndim not in (3, 4):
            shape = tuple(images.shape)
            raise ValueError(f"images must be [N, C, H, W], [N, H, W, C] or [N, H, W]; got {shape}")
        return list(images)
    return list(images)


def _shorten(text: str, limit: int) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: max(limit - 3, 1)] + "..."


def _caption(text: str, limit: int, per_line: int = 17) -> str:
    """A caption cut to `limit` characters and wrapped to lines of `per_line` characters."""
    return "\n".join(textwrap.wrap(_shorten(text, limit), per_line, break_long_words=True))


def image_grid(
    images: Any,
    captions: Sequence[str] | None = None,
    ncols: int = 8,
    title: str = "",
    max_caption_chars: int = 30,
    value_range: tuple[float, float] | None = (0.0, 1.0),
    max_images: int = 64,
) -> Figure:
    """A grid of images with optional captions.

    `images` is a tensor [N, 3, H, W] (or [N, 1, H, W], [N, H, W]), an array [N, H, W, 3], or a list
    of single images (tensors, arrays, PIL images). Floats are mapped from `value_range` to [0, 1]
    (use (-1, 1) for diffusion models; None rescales each image to its own min and max); uint8 is
    divided by 255. At most `max_images` are drawn. Captions are cut at `max_caption_chars` and
    wrapped to the width of a cell.
    """
    pictures = _image_list(images)[:max_images]
    if not pictures:
        raise ValueError("image_grid needs at least one image")
    if captions is not None:
        captions = list(captions)[: len(pictures)]
    ncols = max(1, min(ncols, len(pictures)))
    nrows = math.ceil(len(pictures) / ncols)
    cell = 1.25
    # 17 characters of 8-point text fit a 1.25-inch cell; wider cells (few columns) take more.
    per_line = max(17, int(17 * max(cell * ncols, MIN_WIDTH_INCHES) / ncols / cell))
    wrapped = [_caption(c, max_caption_chars, per_line) for c in captions or []]
    caption_lines = max((len(text.splitlines()) for text in wrapped), default=0)
    height = nrows * (cell + 0.14 * caption_lines) + (0.35 if title else 0.0)
    figure, axes = new_figure(nrows, ncols, figsize=(cell * ncols, height))
    for index, ax in enumerate(np.atleast_1d(axes).flat):  # one image gives a bare Axes
        ax.axis("off")
        if index >= len(pictures):
            continue
        picture = _to_hwc(pictures[index], value_range)
        grey = picture.ndim == 2
        ax.imshow(picture, cmap="gray" if grey else None, vmin=0.0, vmax=1.0, interpolation="nearest")
        if index < len(wrapped):
            ax.set_title(wrapped[index], fontsize=8, linespacing=1.0)
    if title:
        figure.suptitle(title)
    return figure


def similarity_heatmap(
    matrix: Any,
    row_labels: Sequence[str] | None = None,
    col_labels: Sequence[str] | None = None,
    title: str = "",
    xlabel: str = "",
    ylabel: str = "",
    annotate: bool | None = None,
    cmap: str = "viridis",
    vmin: float | None = None,
    vmax: float | None = None,
    value_label: str = "similarity",
    fmt: str = ".2f",
    mark_row_max: bool = False,
    max_label_chars: int = 24,
) -> Figure:
    """A heatmap of a [rows, cols] matrix (e.g. image-text similarities), with a colour bar.

    `annotate` writes each value in its cell (default: when both sides have at most 12 entries);
    `mark_row_max` outlines the largest value of each row (the retrieved item).
    """
    values = to_numpy(matrix).astype(np.float64)
    if values.ndim != 2:
        raise ValueError(f"similarity_heatmap needs a 2-D matrix; got shape {values.shape}")
    rows, cols = values.shape
    if annotate is None:
        annotate = rows <= 12 and cols <= 12
    label_room = 0.07 * max((len(str(label)) for label in row_labels), default=0) if row_labels else 0.0
    width = min(10.0, 2.2 + label_room + 0.55 * cols)
    height = min(8.0, 1.4 + 0.4 * rows + (0.06 * max_label_chars if col_labels else 0.0))
    figure, ax = new_figure(figsize=(max(width, 3.5), max(height, 2.5)))
    image = ax.imshow(values, cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto", interpolation="nearest")
    ax.grid(False)
    if row_labels is not None:
        ax.set_yticks(range(rows), [_shorten(label, max_label_chars) for label in row_labels])
    if col_labels is not None:
        ax.set_xticks(
            range(cols), [_shorten(label, max_label_chars) for label in col_labels], rotation=40, ha="right"
        )
    if annotate:
        _annotate_cells(ax, values, image, fmt)
    if mark_row_max:
        for row, col in enumerate(values.argmax(axis=1)):
            ax.add_patch(
                matplotlib.patches.Rectangle((col - 0.5, row - 0.5), 1, 1, fill=False, edgecolor="red", lw=2)
            )
    figure.colorbar(image, ax=ax, label=value_label, shrink=0.9)
    _label(ax, title, xlabel, ylabel)
    return figure


def _annotate_cells(ax: Axes, values: np.ndarray, image: Any, fmt: str) -> None:
    """Write each value in its cell, white on dark colours and black on light ones."""
    for (row, col), value in np.ndenumerate(values):
        red, green, blue, _ = image.cmap(image.norm(value))
        light = 0.299 * red + 0.587 * green + 0.114 * blue > 0.5
        ax.text(col, row, format(value, fmt), ha="center", va="center", fontsize=8,
                color="black" if light else "white")


# ----------------------------------------------------------------------------------------------
# Embeddings
# ----------------------------------------------------------------------------------------------


def pca_2d(points: Any) -> tuple[np.ndarray, np.ndarray]:
    """Project [n, d] points on their first two principal components (exact SVD, signs fixed).

    Returns (coordinates [n, 2], fraction of variance of each of the two components).
    """
    data = torch.as_tensor(to_numpy(points), dtype=torch.float64)
    if data.ndim != 2 or data.shape[1] < 2:
        raise ValueError(f"PCA needs points of shape [n, d] with d >= 2; got {tuple(data.shape)}")
    centred = data - data.mean(dim=0, keepdim=True)
    _, singular, components = torch.linalg.svd(centred, full_matrices=False)
    components = components[:2]
    # An SVD's signs are arbitrary: make the largest loading of each component positive.
    signs = torch.sign(components.gather(1, components.abs().argmax(dim=1, keepdim=True)))
    components = components * torch.where(signs == 0, torch.ones_like(signs), signs)
    variance = singular**2
    explained = (variance[:2] / variance.sum().clamp_min(1e-300)).numpy()
    return (centred @ components.T).numpy(), explained


def embedding_scatter(
    groups: Mapping[str, Any],
    title: str = "",
    xlabel: str = "PC 1",
    ylabel: str = "PC 2",
    pca: bool = True,
    pairs: tuple[str, str] | Sequence[tuple[str, str]] | None = None,
    centroids: bool = True,
    max_pairs: int = 64,
    point_size: float = 14.0,
) -> Figure:
    """Scatter several groups of embeddings (e.g. {"image": [n, d], "text": [n, d]}) in one plane.

    With `pca` the groups are projected jointly onto the first two principal components of all
    points together (the axis labels then give the share of variance); without it each group
    must already be [n, 2]. Centroids are drawn as large crosses; `pairs=("image", "text")` draws
    arrows from each image point to its paired text point (the first `max_pairs`).
    """
    names = list(groups)
    arrays = [to_numpy(groups[name]).astype(np.float64) for name in names]
    if not arrays:
        raise ValueError("embedding_scatter needs at least one group")
    if pca:
        coordinates, explained = pca_2d(np.concatenate(arrays, axis=0))
        if xlabel == "PC 1":
            xlabel = f"PC 1 ({100 * explained[0]:.0f}% of variance)"
        if ylabel == "PC 2":
            ylabel = f"PC 2 ({100 * explained[1]:.0f}% of variance)"
    else:
        if any(a.ndim != 2 or a.shape[1] != 2 for a in arrays):
            raise ValueError("with pca=False every group must be [n, 2]")
        coordinates = np.concatenate(arrays, axis=0)
    bounds = np.cumsum([0] + [len(a) for a in arrays])
    projected = {name: coordinates[bounds[i] : bounds[i + 1]] for i, name in enumerate(names)}
    figure, ax = new_figure(figsize=(5.2, 4.2))
    colours = {name: BOOK_COLOURS[i % len(BOOK_COLOURS)] for i, name in enumerate(names)}
    for pair in _pair_list(pairs):
        _draw_pair_arrows(ax, projected, pair, max_pairs)
    for name in names:
        points = projected[name]
        ax.scatter(points[:, 0], points[:, 1], s=point_size, alpha=0.7, color=colours[name],
                   label=f"{name} ({len(points)})", edgecolors="none")
        if centroids and len(points):
            centre = points.mean(axis=0)
            ax.scatter([centre[0]], [centre[1]], s=160, marker="X", color=colours[name], edgecolors="black",
                       linewidths=1.0, zorder=5)
    ax.set_aspect("equal", adjustable="datalim")
    ax.legend(loc="best", markerscale=1.5)
    _label(ax, title, xlabel, ylabel)
    return figure


def _pair_list(pairs: Any) -> list[tuple[str, str]]:
    if not pairs:
        return []
    if isinstance(pairs[0], str):
        return [tuple(pairs)]
    return [tuple(pair) for pair in pairs]


def _draw_pair_arrows(ax: Axes, projected: dict[str, np.ndarray], pair: tuple[str, str], limit: int) -> None:
    start_name, end_name = pair
    if start_name not in projected or end_name not in projected:
        raise KeyError(f"pairs names unknown groups: {pair}; groups are {list(projected)}")
    start, end = projected[start_name], projected[end_name]
    count = min(len(start), len(end), limit)
    delta = end[:count] - start[:count]
    ax.quiver(start[:count, 0], start[:count, 1], delta[:, 0], delta[:, 1], angles="xy", scale_units="xy",
              scale=1.0, width=0.003, color="#555555", alpha=0.35, zorder=1)


# ----------------------------------------------------------------------------------------------
# Curves, sweeps, bars, spectrograms
# ----------------------------------------------------------------------------------------------


def _curve_xy(curve: Any) -> tuple[np.ndarray, np.ndarray]:
    """A curve given as values, as (x, values), or as a training History (losses at logged steps)."""
    if hasattr(curve, "losses") and hasattr(curve, "logged_steps"):
        return np.asarray(curve.logged_steps, dtype=float), np.asarray(curve.losses, dtype=float)
    if isinstance(curve, tuple) and len(curve) == 2:
        return to_numpy(curve[0]).astype(float), to_numpy(curve[1]).astype(float)
    values = to_numpy(curve).astype(float).reshape(-1)
    return np.arange(len(values), dtype=float), values


def _moving_average(values: np.ndarray, window: int) -> np.ndarray:
    if window <= 1 or len(values) < window:
        return values
    kernel = np.ones(window) / window
    head = np.cumsum(values[: window - 1]) / np.arange(1, window)
    return np.concatenate([head, np.convolve(values, kernel, mode="valid")])


def loss_curves(
    curves: Mapping[str, Any],
    title: str = "",
    xlabel: str = "step",
    ylabel: str = "loss",
    logy: bool = False,
    smooth: int = 1,
) -> Figure:
    """Training curves: {"train": losses, "validation": (steps, losses), "run 2": history}.

    Each curve is a list/array/tensor of values (x = 0, 1, ...), a pair (x, values), or a
    `utils.training.History` (x = the logged steps). `smooth` > 1 draws a moving average over the
    faint raw curve.
    """
    figure, ax = new_figure()
    for index, (name, curve) in enumerate(curves.items()):
        x, y = _curve_xy(curve)
        colour = BOOK_COLOURS[index % len(BOOK_COLOURS)]
        if smooth > 1:
            ax.plot(x, y, color=colour, alpha=0.25, linewidth=1.0)
            ax.plot(x, _moving_average(y, smooth), color=colour, label=name)
        else:
            ax.plot(x, y, color=colour, label=name)
    if logy:
        ax.set_yscale("log")
    if len(curves) > 1 or any(curves):
        ax.legend()
    _label(ax, title, xlabel, ylabel)
    return figure


def line_sweep(
    x: Sequence[float] | Any,
    ys: Mapping[str, Sequence[float] | Any],
    title: str = "",
    xlabel: str = "",
    ylabel: str = "",
    logx: bool = False,
    logy: bool = False,
    reference: Mapping[str, float] | None = None,
) -> Figure:
    """An ablation sweep: one line with markers per setting, over the swept values `x`.

    `reference` draws labelled horizontal dashed lines, e.g. {"chance": 0.1}.
    """
    figure, ax = new_figure()
    x_values = to_numpy(x).astype(float)
    for name, values in ys.items():
        ax.plot(x_values, to_numpy(values).astype(float), marker="o", markersize=4, label=name)
    for index, (name, level) in enumerate((reference or {}).items()):
        ax.axhline(level, linestyle="--", linewidth=1.0, color="#777777" if index == 0 else None, label=name)
    if logx:
        ax.set_xscale("log")
    if logy:
        ax.set_yscale("log")
    if len(x_values) <= 12:  # label exactly the swept values, in plain numbers
        ax.set_xticks(x_values, [format(v, "g") for v in x_values])
        ax.minorticks_off()
    if len(ys) > 1 or reference:
        ax.legend()
    _label(ax, title, xlabel, ylabel)
    return figure


def bar_chart(
    values: Mapping[str, float],
    title: str = "",
    xlabel: str = "",
    ylabel: str = "",
    annotate: bool = True,
    fmt: str = ".2f",
    horizontal: bool = False,
) -> Figure:
    """A simple bar chart of named numbers (e.g. accuracy per model), each bar labelled with its value."""
    names = [str(name) for name in values]
    heights = [float(to_numpy(v)) for v in values.values()]
    figure, ax = new_figure(figsize=(6.0, max(2.4, 0.35 * len(names) + 1.0)) if horizontal else None)
    colours = [BOOK_COLOURS[i % len(BOOK_COLOURS)] for i in range(len(names))]
    bars = ax.barh(names, heights, color=colours) if horizontal else ax.bar(names, heights, color=colours)
    if horizontal:
        ax.invert_yaxis()  # first item on top, as in a table
    if annotate:
        ax.bar_label(bars, labels=[format(h, fmt) for h in heights], padding=2, fontsize=8)
    if not horizontal and max((len(n) for n in names), default=0) > 8:
        ax.tick_params(axis="x", labelrotation=30)
    ax.grid(axis="y" if horizontal else "x", visible=False)
    _label(ax, title, xlabel, ylabel)
    return figure


def spectrogram(
    spec: Any,
    sample_rate: int,
    hop_length: int,
    title: str = "",
    y_label: str = "mel bin",
    db: bool = True,
    top_db: float = 80.0,
    cmap: str = "magma",
) -> Figure:
    """A [freq, time] spectrogram with time in seconds on x.

    With `db` the values are powers, shown in decibels (10 log10, floored `top_db` below the max);
    without it they are shown as given.
    """
    values = to_numpy(spec).astype(np.float64)
    values = values.reshape(values.shape[-2:]) if values.ndim == 3 and values.shape[0] == 1 else values
    if values.ndim != 2:
        raise ValueError(f"spectrogram needs [freq, time]; got shape {values.shape}")
    if db:
        values = 10.0 * np.log10(np.maximum(values, 1e-10))
        values = np.maximum(values, values.max() - top_db)
    bins, frames = values.shape
    seconds = frames * hop_length / sample_rate
    figure, ax = new_figure(figsize=(6.0, 3.0))
    image = ax.imshow(values, origin="lower", aspect="auto", cmap=cmap, extent=(0.0, seconds, 0.0, bins),
                      interpolation="nearest")
    ax.grid(False)
    figure.colorbar(image, ax=ax, label="power (dB)" if db else "value")
    _label(ax, title, "time (s)", y_label)
    return figure
