"""Execute the book's notebooks and store their outputs, or time them for the runtime table.

    python scripts/notebooks.py execute [NN]   # re-run lessons (and solutions) and save outputs
    python scripts/notebooks.py bench [NN]     # time each lesson in a fresh kernel -> book/runtimes.md

A notebook that fails is not saved; the message names the notebook, the cell and the error.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError, CellTimeoutError

ROOT = Path(__file__).resolve().parents[1]
RUNTIMES_JSON = ROOT / "book" / "runtimes.json"
RUNTIMES_MD = ROOT / "book" / "runtimes.md"
CELL_TIMEOUT_S = 300  # a lesson must run in 180 s in all; a stuck cell fails with its index


def find(folder: str, chapter: str | None) -> list[Path]:
    pattern = f"{int(chapter):02d}_*.ipynb" if chapter else "[0-9][0-9]_*.ipynb"
    return sorted((ROOT / folder).glob(pattern))


def first_line(cell) -> str:
    lines = [line for line in cell.source.splitlines() if line.strip() and not line.startswith("#")]
    return (lines[0] if lines else cell.source.splitlines()[0] if cell.source else "")[:60]


def run(path: Path) -> tuple[nbformat.NotebookNode, float, list[tuple[float, int, str]]]:
    """Execute one notebook in a fresh kernel; return it, its wall seconds and per-cell seconds."""
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(
        notebook, kernel_name="python3", timeout=CELL_TIMEOUT_S, record_timing=True,
        resources={"metadata": {"path": str(path.parent)}},
    )
    start = time.perf_counter()
    try:
        client.execute()
    except (CellExecutionError, CellTimeoutError) as error:
        index = next((i for i, c in enumerate(notebook.cells) if _has_error(c)), None)
        where = f"cell {index}" if index is not None else "a cell"
        summary = str(error).strip().splitlines()[-1] if str(error).strip() else type(error).__name__
        raise SystemExit(f"{path.relative_to(ROOT)}: {where} failed: {summary}") from None
    seconds = time.perf_counter() - start
    cell_times = []
    for index, cell in enumerate(notebook.cells):
        timing = cell.get("metadata", {}).pop("execution", None)
        if cell.cell_type == "code" and timing:
            began = dt.datetime.fromisoformat(timing["iopub.execute_input"].replace("Z", "+00:00"))
            ended = dt.datetime.fromisoformat(timing["shell.execute_reply"].replace("Z", "+00:00"))
            cell_times.append(((ended - began).total_seconds(), index, first_line(cell)))
    notebook.metadata.pop("widgets", None)  # the static site never needs live widget state
    return notebook, seconds, sorted(cell_times, reverse=True)


def _has_error(cell) -> bool:
    return any(out.get("output_type") == "error" for out in cell.get("outputs", []))


def execute(chapter: str | None) -> None:
    paths = find("lessons", chapter) + find("solutions", chapter)
    if not paths:
        raise SystemExit(f"No notebooks found for chapter {chapter!r}.")
    for path in paths:
        notebook, seconds, _ = run(path)
        nbformat.write(notebook, path)
        print(f"executed {path.relative_to(ROOT)} in {seconds:.0f} s")


def device_name() -> tuple[str, str]:
    import torch

    if torch.cuda.is_available():
        return "gpu", torch.cuda.get_device_name(0)
    return "cpu", f"{platform.processor() or platform.machine()} CPU, {os.cpu_count()} cores"


def bench(chapter: str | None) -> None:
    table = json.loads(RUNTIMES_JSON.read_text()) if RUNTIMES_JSON.exists() else {}
    kind, name = device_name()
    for path in find("lessons", chapter):
        _, seconds, cell_times = run(path)
        row = table.setdefault(path.stem, {})
        row[kind] = {
            "seconds": round(seconds, 1), "device": name, "date": dt.date.today().isoformat(),
            "top_cells": [[round(s, 1), i, text] for s, i, text in cell_times[:3]],
        }
        print(f"{path.stem}: {seconds:.1f} s on {name}")
    RUNTIMES_JSON.write_text(json.dumps(table, indent=1, sort_keys=True) + "\n")
    RUNTIMES_MD.write_text(render_table(table))
    print(f"wrote {RUNTIMES_MD.relative_to(ROOT)}")


def render_table(table: dict) -> str:
    lines = [
        "# Lesson runtimes", "",
        "Wall-clock seconds to run each lesson top to bottom in a fresh kernel, measured by",
        "`make bench` (`scripts/notebooks.py`). The target is at most 180 s on a 2-core CPU.", "",
        "| Lesson | CPU seconds | GPU seconds | Slowest cells (CPU) | Measured |",
        "| --- | --- | --- | --- | --- |",
    ]
    devices = set()
    for lesson, row in sorted(table.items()):
        cpu, gpu = row.get("cpu"), row.get("gpu")
        slow = "; ".join(f"cell {i} ({s} s): `{t}`" for s, i, t in (cpu or gpu)["top_cells"])
        dates = ", ".join(sorted({r["date"] for r in (cpu, gpu) if r}))
        lines.append(
            f"| {lesson} | {cpu['seconds'] if cpu else '-'} | {gpu['seconds'] if gpu else '-'} "
            f"| {slow.replace('|', '/')} | {dates} |"
        )
        devices.update(r["device"] for r in (cpu, gpu) if r)
    lines += ["", "Devices: " + "; ".join(sorted(devices)) + ".", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["execute", "bench"])
    parser.add_argument("chapter", nargs="?", default=None, help="chapter number, e.g. 01 (default: all)")
    args = parser.parse_args()
    os.environ["MMBOOK_EXECUTE"] = "1"
    {"execute": execute, "bench": bench}[args.command](args.chapter or None)


if __name__ == "__main__":
    sys.exit(main())
