"""Copies MathJax (from the pinned django-static-mathjax wheel) into _vendor/ so the site needs no CDN."""

import shutil
from pathlib import Path

import mathjax  # the package django-static-mathjax installs

ROOT = Path(__file__).resolve().parents[1]
SOURCE = Path(mathjax.__file__).parent / "static" / "mathjax" / "es5"
TARGET = ROOT / "_vendor" / "mathjax"  # Sphinx copies it to _build/html/_static/mathjax

if not (SOURCE / "tex-chtml.js").is_file():
    raise SystemExit(f"MathJax not found at {SOURCE}; run `make setup` to reinstall the environment.")
if not (TARGET / "tex-chtml.js").is_file():
    shutil.copytree(SOURCE, TARGET, dirs_exist_ok=True)
