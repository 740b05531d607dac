"""Shared helpers of the book *Multimodal AI, executable*.

One module per concern: `runtime` (seeds, device), `shapes` and `sound` (the book's generated
worlds), `photos` (bundled real photos), `plotting`, `training`, `exercises` (self-grading),
`hub` (pretrained models, with offline stand-ins) and `zoo` (the book's own tiny models).
Import the module you need: `from utils import shapes`.
"""

__version__ = "0.1.0"
