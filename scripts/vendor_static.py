"""Prepares the static files the site needs without any CDN:

- MathJax, copied from the pinned django-static-mathjax wheel into _vendor/ (Sphinx then copies it
  to _build/html/_static/mathjax);
- favicon.ico at the site's root, drawn here to match _assets/favicon.svg, because browsers ask
  for /favicon.ico on pages that name no icon (Jupyter Book's redirecting index.html).
"""

import shutil
from pathlib import Path

import mathjax  # the package django-static-mathjax installs
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[1]
SOURCE = Path(mathjax.__file__).parent / "static" / "mathjax" / "es5"
TARGET = ROOT / "_vendor" / "mathjax"
SITE_ROOT = ROOT / "_vendor_root"


def vendor_mathjax() -> None:
    if not (SOURCE / "tex-chtml.js").is_file():
        raise SystemExit(f"MathJax not found at {SOURCE}; run `make setup` to reinstall the environment.")
    if not (TARGET / "tex-chtml.js").is_file():
        shutil.copytree(SOURCE, TARGET, dirs_exist_ok=True)


def draw_favicon() -> None:
    icon = Image.new("RGBA", (32, 32), (0, 0, 0, 0))
    draw = ImageDraw.Draw(icon)
    draw.rounded_rectangle((0, 0, 31, 31), radius=6, fill="#1f2937")
    draw.ellipse((5, 7, 17, 19), fill="#e4572e")
    draw.rectangle((16, 15, 27, 26), fill="#2e86ab")
    SITE_ROOT.mkdir(exist_ok=True)
    icon.save(SITE_ROOT / "favicon.ico", sizes=[(32, 32), (16, 16)])


if __name__ == "__main__":
    vendor_mathjax()
    draw_favicon()
