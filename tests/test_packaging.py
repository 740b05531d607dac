"""The `utils` wheel carries what Colab needs when only the installed package is present:
the solutions notebooks (for `solution()`) and the data assets."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation",
                    "--quiet", "-w", str(out)], check=True, capture_output=True)
    (built,) = out.glob("mmbook_utils-*.whl")
    return built


def test_wheel_carries_solutions_and_assets(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    for notebook in sorted((ROOT / "solutions").glob("[0-9][0-9]_*.ipynb")):
        assert f"utils/_solutions/{notebook.name}" in names
    assert "utils/data/spoken_words.npz" in names
    assert not any(name.startswith(("tests/", "lessons/", "scripts/")) for name in names)


def test_solution_is_found_from_the_installed_package_alone(wheel, tmp_path):
    zipfile.ZipFile(wheel).extractall(tmp_path / "site")
    code = "from utils.exercises import ch01; print(ch01.cosine_similarity.solution())"
    run = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                         env={"PYTHONPATH": str(tmp_path / "site"), "PATH": "/usr/bin:/bin"}, check=True)
    assert "def cosine_similarity" in run.stdout, run.stdout + run.stderr
