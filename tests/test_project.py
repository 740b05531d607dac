"""The project's own promises: pins agree, notebooks are stored as the house rules say, links agree."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
LESSONS = sorted((ROOT / "lessons").glob("[0-9][0-9]_*.ipynb"))
SOLUTIONS = sorted((ROOT / "solutions").glob("[0-9][0-9]_*.ipynb"))


def read_pins(filename: str) -> dict[str, str]:
    """name -> version of every `name==version` line of a pins file (names lower-case, - for _)."""
    pins = {}
    for line in (ROOT / filename).read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"{filename}: '{line}' is not an exact pin (name==version)"
            pins[name.lower().replace("_", "-")] = version
    return pins


def requirement_pins() -> dict[str, str]:
    return read_pins("requirements.txt")


def test_requirements_pin_the_torch_trio_and_jupyter_book_1():
    pins = requirement_pins()
    assert pins["torch"] == "2.11.0"
    assert pins["torchvision"] == "0.26.0"
    assert pins["torchaudio"] == "2.11.0"
    assert pins["jupyter-book"].startswith("1."), "jupyter-book 2.x ignores _config.yml and _toc.yml"
    for needed in ("nbval", "jupyterlab", "ipywidgets", "transformers", "diffusers", "datasets",
                   "matplotlib", "tqdm", "tokenizers", "pytest", "ruff", "selenium"):
        assert needed in pins, f"requirements.txt lacks {needed}"


def test_environment_yml_installs_requirements_txt_and_repeats_no_pin():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    assert "-r requirements.txt" in pip_section
    pins = requirement_pins()
    for dep in env["dependencies"] + pip_section:
        if not isinstance(dep, str) or dep.startswith("-"):
            continue
        name, _, version = re.split(r"(==|=)", dep, maxsplit=1) if "=" in dep else (dep, "", "")
        if name.lower() in pins:
            assert version.lstrip("=") == pins[name.lower()], (
                f"environment.yml pins {dep} but requirements.txt says {name}=={pins[name.lower()]}"
            )


def test_utils_package_never_pins_torch_or_numpy():
    import tomllib

    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    for dep in deps:
        assert "==" not in dep, f"pyproject dependency {dep} is pinned; Colab's torch/numpy must stay"


def load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def source(cell: dict) -> str:
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


@pytest.mark.parametrize("path", LESSONS + SOLUTIONS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_notebook_is_stored_with_clean_outputs(path):
    cells = load(path)["cells"]
    code = [c for c in cells if c["cell_type"] == "code" and source(c).strip()]
    assert code and all(c.get("execution_count") for c in code), f"{path.name}: run `make execute` to store outputs"
    for index, cell in enumerate(cells):
        for out in cell.get("outputs", []):
            assert out["output_type"] != "error", f"{path.name}: cell {index} stores an error"
            if out["output_type"] == "stream" and out["name"] == "stderr":
                pytest.fail(f"{path.name}: cell {index} stores stderr: {''.join(out['text'])[:200]}")
            text = "".join(out.get("data", {}).get("text/plain", ""))
            assert "Warning" not in text, f"{path.name}: cell {index} stores a warning"
    assert "widgets" not in load(path)["metadata"], f"{path.name}: stores widget state (CDN scripts on the site)"


@pytest.mark.parametrize("path", LESSONS, ids=lambda p: p.name)
def test_lesson_follows_the_chapter_standard(path):
    cells = load(path)["cells"]
    code = [c for c in cells if c["cell_type"] == "code"]
    markdown = [c for c in cells if c["cell_type"] == "markdown"]
    assert len(markdown) >= len(code), "prose carries the chapter: at least as many markdown as code cells"
    assert sum("NotImplementedError" in source(c) for c in code) >= 4, "at least four exercises"
    assert not any("# Solution " in source(c) for c in code), "solutions live in solutions/ only"
    title = source(cells[0])
    number = int(path.name[:2])
    assert title.startswith(f"# {number}. "), f"title cell should start with '# {number}. '"
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    repo = config["repository"]["url"].removeprefix("https://github.com/")
    colab = f"https://colab.research.google.com/github/{repo}/blob/{config['repository']['branch']}/lessons/{path.name}"
    assert colab in title, f"the title cell's Open-in-Colab link should be {colab}"
    assert "runtimes" in title, "the title cell quotes its row of the runtime table"


@pytest.mark.parametrize("path", LESSONS, ids=lambda p: p.name)
def test_every_lesson_has_solutions_and_is_in_the_toc(path):
    toc = (ROOT / "_toc.yml").read_text()
    assert f"lessons/{path.stem}" in toc
    assert (ROOT / "solutions" / path.name).exists(), f"solutions/{path.name} is missing"
    assert f"solutions/{path.stem}" in toc


def colab_pins() -> dict[str, str]:
    return read_pins("colab-versions.txt")


def test_colab_versions_file_records_its_snapshot_and_the_torch_trio():
    text = (ROOT / "colab-versions.txt").read_text()
    assert re.search(r"snapshot of \d{4}-\d{2}-\d{2}", text), "say which Colab snapshot the versions are from"
    pins = colab_pins()
    for name in ("torch", "torchvision", "torchaudio"):
        assert pins[name] == requirement_pins()[name], f"Colab's {name} differs from requirements.txt"


def _release(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", version)[:3])


def test_utils_dependencies_accept_colabs_versions():
    import tomllib

    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    pins = colab_pins()
    for dep in deps:
        name, _, floor = dep.partition(">=")
        name = name.strip().lower()
        assert name in pins, f"pyproject depends on {name}, which colab-versions.txt does not list"
        if floor:
            assert _release(pins[name]) >= _release(floor), f"{dep} would upgrade Colab's {name} {pins[name]}"
    assert not any(dep.startswith(("torchaudio", "torchvision")) for dep in deps), \
        "torchaudio and torchvision must match torch exactly: never a hard dependency of utils"
