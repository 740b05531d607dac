"""Every number a lesson's prose states is measured above it, set above it, or cited.

The test reads each lesson's markdown and finds the numbers it quotes: percentages ("97.7%"),
decimals ("0.59") and ratios ("8.5 times"). Each must appear, allowing the rounding the prose uses,
in a stored output of a code cell above it (a measurement; a fraction printed there may be quoted as
a percentage), or in the source of a code cell above it (a setting such as a temperature), or sit
in a sentence that cites a paper, or be listed below with the reason. Section and exercise numbers
("section 2.3") are not quantities and are skipped, as is the title cell.
"""

from __future__ import annotations

import json
import re
from decimal import Decimal, InvalidOperation
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LESSONS = sorted((ROOT / "lessons").glob("[0-9][0-9]_*.ipynb"))

# Numbers a lesson may state without measuring them above, with the reason. Keep this list short.
ALLOWED: dict[str, dict[str, str]] = {
    "01_foundations.ipynb": {
        "99.9%": "a forward reference: section 1.5 measures it further down",
        "8.5 times": "the ratio of the two caption lengths printed above, 4.24 / 0.5",
        "0.1": "the temperature of the training run below",
    },
    "02_encoders.ipynb": {
        "25%": "chance of the 4-way shape guess, 1/4",
        "50%": "chance of a balanced yes/no, 1/2",
    },
    "03_contrastive.ipynb": {
        "4.2%": "chance of the 24-way zero-shot choice, 1/24",
        "5.5": "the smallest logit lead of the worked example above, 8 - 2.5",
    },
    "07_generation.ipynb": {
        "0.55": "the adherence target the chapter sets itself (its issue and CURRICULUM.md), not a measurement",
        "7.5": "diffusers' default guidance_scale for Stable Diffusion, used in the code cell right below",
    },
    "09_evaluation.ipynb": {
        "95%": "the confidence level the chapter chooses for its intervals (level=0.95 in the code below)",
    },
    "10_frontier.ipynb": {
        "38.7%": "chapter 9's measured accuracy of the zoo TinyVLM on 'where' questions (its report, section 9.13)",
        "127.0": "the loopback address 127.0.0.1 the server listens on, not a measurement",
        "95%": "the confidence level of the chapter's Wilson intervals (z=1.96 in the code below)",
    },
    "05_vlm.ipynb": {
        "85.8%": "chapter 3's held-out zero-shot accuracy of seed 0 (its cell 28), the zoo's tiny CLIP",
        "72.1%": "chapter 3's held-out zero-shot accuracy over three seeds (its cell 28)",
    },
}

QUANTITY = re.compile(
    r"(?<![\w.\\/-])(\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+\.\d+|\d+)(\s?%|\s?(?:times|x|×)(?![\w]))?"
)
REFERENCE = re.compile(
    r"(?:[Ss]ections?|[Ee]xercises?|[Cc]hapters?|§)\s+\d+\.\d+(?:(?:\s*,\s*|\s+(?:and|or|to)\s+)\d+\.\d+)*"
)
CITATION = re.compile(r"\{cite[:a-z]*\}|et al\.|\bpaper\b")
SENTENCE_END = re.compile(r"(?<=[.;!?])\s+(?=[A-Z(*])")


def _text(value) -> str:
    return "".join(value) if isinstance(value, list) else str(value or "")


def _numbers(text: str) -> list[Decimal]:
    found = []
    for raw in re.findall(r"-?\d+(?:,\d{3})*(?:\.\d+)?(?:e[-+]?\d+)?", text):
        try:
            found.append(Decimal(raw.replace(",", "")))
        except InvalidOperation:
            continue
    return found


def _outputs(cell: dict) -> str:
    parts = []
    for output in cell.get("outputs", []):
        parts.append(_text(output.get("text")))
        parts.append(_text(output.get("data", {}).get("text/plain")))
    return "\n".join(parts)


def _prose(source: str) -> str:
    """The sentences of a markdown cell, without math, code, links' targets, headings and references."""
    text = re.sub(r"\$\$.*?\$\$|\$[^$\n]*\$|`[^`]*`|\]\([^)]*\)", " ", source, flags=re.S)
    text = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    text = re.sub(r"\|\s*\d+\.\d+(?:\s*[-–]\s*\d+\.\d+)?\s*(?=\|)", "| ", text)  # a column of section numbers
    return REFERENCE.sub(" ", text)


def _agrees(stated: Decimal, decimals: int, percent: bool, measured: list[Decimal]) -> bool:
    step = Decimal(1).scaleb(-decimals)
    for value in measured:
        for candidate in (value, value * 100) if percent else (value,):
            try:
                if candidate.quantize(step) == stated or candidate == stated:
                    return True
            except InvalidOperation:
                continue
    return False


def unmatched_numbers(path: Path) -> list[tuple[int, str, str]]:
    """(cell index, number as written, sentence) for each number the prose states without support."""
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    allowed = ALLOWED.get(path.name, {})
    measured: list[Decimal] = []
    problems = []
    for index, cell in enumerate(cells):
        source = _text(cell["source"])
        if cell["cell_type"] == "code":
            measured += _numbers(_outputs(cell)) + _numbers(source)
            continue
        if index == 0:
            continue
        for sentence in SENTENCE_END.split(_prose(source)):
            if CITATION.search(sentence):
                continue
            for match in QUANTITY.finditer(sentence):
                raw, unit = match.group(1), (match.group(2) or "").strip()
                if "." not in raw and not unit:
                    continue  # a plain count ("24 classes", "400 steps") is a setting, not a result
                written = raw + ("%" if unit == "%" else f" {unit}" if unit else "")
                decimals = len(raw.split(".")[1]) if "." in raw else 0
                stated = Decimal(raw.replace(",", ""))
                if written in allowed or _agrees(stated, decimals, unit == "%", measured):
                    continue
                problems.append((index, written, " ".join(sentence.split())[:140]))
    return problems


@pytest.mark.parametrize("path", LESSONS, ids=lambda p: p.name)
def test_every_number_in_the_prose_is_measured_above_or_cited(path):
    problems = unmatched_numbers(path)
    listing = "\n".join(f"  cell {i}: {number!r} in: {sentence}" for i, number, sentence in problems)
    assert not problems, (
        f"{path.name}: numbers in the prose that no output or code above shows (rerun and quote the output, "
        f"cite the paper, or add them to ALLOWED with the reason):\n{listing}"
    )


def test_the_checker_catches_an_invented_number(tmp_path):
    notebook = {"cells": [
        {"cell_type": "markdown", "source": "# 9. Title", "metadata": {}},
        {"cell_type": "code", "source": "print(0.9731)", "metadata": {},
         "outputs": [{"output_type": "stream", "name": "stdout", "text": "accuracy 0.9731\n"}]},
        {"cell_type": "markdown", "metadata": {}, "source":
            "It reaches 97.3% (section 9.2). The loss falls 8.5 times. Lin et al. report 91.2%."},
    ]}
    path = tmp_path / "09_test.ipynb"
    path.write_text(json.dumps(notebook))
    assert [number for _, number, _ in unmatched_numbers(path)] == ["8.5 times"]
