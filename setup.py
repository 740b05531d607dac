"""Packs a copy of solutions/*.ipynb into the wheel, so that `solution()` works where only the
installed package is present (Colab). The notebooks in solutions/ stay the one home of the code."""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py


class BuildWithSolutions(build_py):
    def run(self) -> None:
        super().run()
        source = Path(__file__).parent / "solutions"
        target = Path(self.build_lib) / "utils" / "_solutions"
        if source.is_dir():
            target.mkdir(parents=True, exist_ok=True)
            for notebook in source.glob("*.ipynb"):
                shutil.copy2(notebook, target / notebook.name)


setup(cmdclass={"build_py": BuildWithSolutions})
