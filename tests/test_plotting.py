"""Every plotting function returns a titled, labelled Figure, headless, without touching pyplot's list."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from utils import plotting  # noqa: E402
from utils.training import History  # noqa: E402


@pytest.fixture(autouse=True)
def no_pyplot_figures():
    """The functions' figures are not tracked by pyplot: nothing to close, nothing accumulates."""
    plt.close("all")
    yield
    assert plt.get_fignums() == []


def labels(figure: Figure) -> tuple[str, str, str]:
    ax = figure.axes[0]
    return ax.get_title(), ax.get_xlabel(), ax.get_ylabel()


def test_book_style_is_applied():
    plotting.use_book_style()
    assert matplotlib.rcParams["figure.dpi"] == plotting.DPI
    assert matplotlib.rcParams["axes.grid"]


def test_image_grid_from_a_batch_tensor(tmp_path):
    images = torch.rand(10, 3, 8, 8)
    figure = plotting.image_grid(images, [f"a long caption number {i} for an image" for i in range(10)],
                                 ncols=4, title="Ten images")
    assert isinstance(figure, Figure)
    assert figure.get_suptitle() == "Ten images"
    assert len(figure.axes) == 12  # 3 rows of 4, two left empty
    caption = figure.axes[0].get_title()
    assert caption.replace("\n", " ").endswith("...") and len(caption.replace("\n", "")) <= 30
    figure.savefig(tmp_path / "grid.png")


def test_image_grid_from_a_mixed_list():
    pictures = [np.random.rand(8, 8, 3), torch.rand(1, 8, 8), (np.random.rand(8, 8) * 255).astype(np.uint8)]
    figure = plotting.image_grid(pictures, ["rgb", "grey", "uint8"], title="mixed", value_range=None)
    assert [ax.get_title() for ax in figure.axes] == ["rgb", "grey", "uint8"]
    with pytest.raises(ValueError):
        plotting.image_grid([])


def test_similarity_heatmap_labels_and_annotations():
    matrix = torch.tensor([[0.9, 0.1, 0.2], [0.0, 0.8, 0.3]])
    figure = plotting.similarity_heatmap(matrix, ["img 0", "img 1"], ["cat", "dog", "car"],
                                         title="Similarity", xlabel="caption", ylabel="image",
                                         mark_row_max=True)
    assert labels(figure) == ("Similarity", "caption", "image")
    ax = figure.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["cat", "dog", "car"]
    assert "0.90" in [t.get_text() for t in ax.texts]  # annotated: small matrix
    assert figure.axes[1].get_ylabel() == "similarity"  # the colour bar
    big = plotting.similarity_heatmap(np.random.rand(20, 20), title="big")
    assert len(big.axes[0].texts) == 0


def test_embedding_scatter_pca_pairs_and_centroids():
    generator = torch.Generator().manual_seed(0)
    groups = {"image": torch.randn(30, 16, generator=generator) + 3,
              "text": torch.randn(30, 16, generator=generator)}
    figure = plotting.embedding_scatter(groups, title="Modality gap", pairs=("image", "text"))
    title, xlabel, ylabel = labels(figure)
    assert title == "Modality gap" and xlabel.startswith("PC 1 (") and "% of variance" in ylabel
    legend = [t.get_text() for t in figure.axes[0].get_legend().get_texts()]
    assert legend == ["image (30)", "text (30)"]
    flat = plotting.embedding_scatter({"a": np.random.rand(5, 2)}, title="2-D", xlabel="x (m)",
                                      ylabel="y (m)", pca=False)
    assert labels(flat) == ("2-D", "x (m)", "y (m)")
    with pytest.raises(ValueError):
        plotting.embedding_scatter({"a": np.random.rand(5, 3)}, pca=False)


def test_pca_2d_is_deterministic_and_explains_variance():
    points = torch.randn(50, 6) * torch.tensor([5.0, 1, 1, 1, 1, 0.1])
    first, explained = plotting.pca_2d(points)
    second, _ = plotting.pca_2d(points.clone())
    assert first.shape == (50, 2) and np.array_equal(first, second)
    assert explained[0] > 0.5 and explained[0] >= explained[1]


def test_loss_curves_accepts_lists_pairs_and_histories():
    history = History(losses=[1.0, 0.5, 0.25], steps=30, seconds=1.0, samples_per_second=10.0,
                      logged_steps=[10, 20, 30])
    figure = plotting.loss_curves({"train": [1.0, 0.7, 0.4, 0.3], "validation": ([0, 3], [1.0, 0.5]),
                                   "run": history}, title="Loss", logy=True, smooth=2)
    assert labels(figure) == ("Loss", "step", "loss")
    assert figure.axes[0].get_yscale() == "log"
    run_line = [line for line in figure.axes[0].lines if line.get_label() == "run"][0]
    assert list(run_line.get_xdata()) == [10, 20, 30]


def test_spectrogram_axes_in_seconds():
    figure = plotting.spectrogram(torch.rand(40, 100), sample_rate=16000, hop_length=160, title="Mel")
    assert labels(figure) == ("Mel", "time (s)", "mel bin")
    assert figure.axes[0].get_xlim() == pytest.approx((0.0, 1.0))
    assert figure.axes[1].get_ylabel() == "power (dB)"


def test_line_sweep_and_bar_chart():
    sweep = {"zero-shot": [0.2, 0.5, 0.4], "probe": [0.6, 0.7, 0.7]}
    figure = plotting.line_sweep([0.01, 0.1, 1.0], sweep, title="Temperature sweep", xlabel="temperature",
                                 ylabel="accuracy", logx=True, reference={"chance": 0.1})
    assert labels(figure) == ("Temperature sweep", "temperature", "accuracy")
    assert figure.axes[0].get_xscale() == "log"
    bars = plotting.bar_chart({"probe": 0.81, "zero-shot": 0.62}, title="Accuracy", ylabel="accuracy")
    assert labels(bars) == ("Accuracy", "", "accuracy")
    assert [t.get_text() for t in bars.axes[0].texts] == ["0.81", "0.62"]


def test_image_grid_draws_a_single_image():
    figure = plotting.image_grid(torch.rand(1, 3, 8, 8), ["one"], title="one image")
    assert len(figure.axes) == 1


def test_every_figure_fills_the_text_column():
    """Narrow figures are widened: at DPI they must be at least as wide as the 764-px column."""
    assert plotting.MIN_WIDTH_INCHES * plotting.DPI >= 764
    figures = [
        plotting.image_grid(torch.rand(1, 3, 8, 8)),
        plotting.embedding_scatter({"images": torch.randn(6, 4), "texts": torch.randn(6, 4)}),
        plotting.new_figure(1, 2, figsize=(3.0, 2.0))[0],
    ]
    for figure in figures:
        assert figure.get_size_inches()[0] >= plotting.MIN_WIDTH_INCHES


def test_image_grid_keeps_whole_captions_in_wide_cells():
    caption = "true: a large green triangle below a large blue cross / chosen: another caption"
    figure = plotting.image_grid(torch.rand(2, 3, 8, 8), [caption, "short"], ncols=2,
                                 max_caption_chars=120)
    shown = figure.axes[0].get_title()
    assert " ".join(shown.split()) == caption   # wrapped, nothing cut
    assert max(len(line) for line in shown.splitlines()) > 17   # a 3-inch cell takes long lines
