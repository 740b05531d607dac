"""Writing a chapter's runs file (utils/data/chNN_runs.json): run the chosen parts, keep the others,
and save after each part, so that a long run interrupted part-way keeps what it finished."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import torch


def run_parts(parts: dict[str, Callable[[], dict]], chosen: Iterable[str] | None, out: Path,
              script: str) -> None:
    """Run `chosen` (default: every part) of `parts`, storing each result under its name in `out`."""
    stored = json.loads(out.read_text()) if out.exists() else {}
    for part in chosen or list(parts):
        start = time.time()
        stored[part] = parts[part]()
        print(f"{part}: {time.time() - start:.0f} s", flush=True)
        stored.update(script=script, torch=torch.__version__)
        out.write_text(json.dumps(stored, indent=1) + "\n")
    print(f"wrote {out.name}")
