"""Shared helpers of the book *Multimodal AI, executable*.

One module per concern:

- `runtime`: seeds, device, versions, Colab, optional packages; the setup cell of every lesson.
- The book's generated data: `shapes` (the Shapes world: images, captions, questions, boxes),
  `sound` (the Sound world and the spoken-word set), `motion` (video clips, chapter 6) and
  `web_corpus` (a noisy web-like corpus, chapter 8); `batches` is their common container, and
  `convert` turns them into PIL images and Hugging Face datasets.
- `photos`: real photos bundled with scikit-image and scikit-learn.
- `plotting`, `training`, `retrieval` (Recall@K): what several lessons draw, train and measure.
- `tiny_clip` (the chapter 3 model) and `zoo` (the book's trained tiny models, cached).
- `hub`: pretrained models for "the real thing" sections, with offline stand-ins.
- `exercises`: self-grading, one module per chapter.

Import the module you need: `from utils import shapes`.
"""

__version__ = "0.1.0"
