"""Write the repository URL and branch of _config.yml into every place that repeats them.

    python scripts/sync_repository.py           # rewrite the copies (make execute runs this first)
    python scripts/sync_repository.py --check   # list the copies that differ; exit 1 if any does

The copies: each lesson's "Open in Colab" link (title cell) and `BOOK = ...` line (setup cell, what
Colab installs `utils` from), any Colab link in a solutions notebook, and the README's Colab link and
install line. A fork edits
`repository:` in _config.yml, runs this script, and every lesson installs the fork's `utils`.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
COLAB_LINK = re.compile(r"https://colab\.research\.google\.com/github/[^)\s`]+?/lessons/([0-9][0-9]_[\w-]+\.ipynb)")
BOOK_LINE = re.compile(r'^BOOK = "[^"]*"', re.MULTILINE)
README_INSTALL = re.compile(r'"mmbook-utils @ git\+[^"]*"')
GITHUB_REPOSITORY = re.compile(r"https://github\.com/[\w.-]+/[\w.-]+")


@dataclass(frozen=True)
class Repository:
    url: str  # https://github.com/owner/name
    branch: str

    @property
    def owner_and_name(self) -> str:
        return self.url.removeprefix("https://github.com/").strip("/")

    def colab_link(self, notebook: str) -> str:
        return f"https://colab.research.google.com/github/{self.owner_and_name}/blob/{self.branch}/lessons/{notebook}"

    @property
    def pip_source(self) -> str:
        """What the setup cell installs: the repository at the branch the Colab links open."""
        return f"git+{self.url}@{self.branch}"


def repository(root: Path = ROOT) -> Repository:
    """The repository named in _config.yml."""
    config = yaml.safe_load((root / "_config.yml").read_text())["repository"]
    url = str(config["url"]).strip().rstrip("/").removesuffix(".git")
    if not GITHUB_REPOSITORY.fullmatch(url):
        raise SystemExit(f"_config.yml: repository.url must look like https://github.com/owner/name, not {url!r}")
    return Repository(url, str(config.get("branch") or "main"))


def _rewrite_lesson(path: Path, repo: Repository) -> tuple[str, str]:
    """(old text, new text) of the lesson's JSON with its link and setup cell made to agree."""
    old = path.read_text(encoding="utf-8")
    notebook = json.loads(old)
    for cell in notebook["cells"]:
        source = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        new = COLAB_LINK.sub(lambda m: repo.colab_link(m.group(1)), source)
        if cell["cell_type"] == "code" and source.lstrip().startswith("# Setup"):
            new = BOOK_LINE.sub(f'BOOK = "{repo.pip_source}"', new)
        if new != source:
            lines = new.split("\n")
            cell["source"] = [line + "\n" for line in lines[:-1]] + ([lines[-1]] if lines[-1] else [])
    return old, json.dumps(notebook, sort_keys=True, indent=1, ensure_ascii=False) + "\n"


def _rewrite_readme(path: Path, repo: Repository) -> tuple[str, str]:
    old = path.read_text(encoding="utf-8")
    new = COLAB_LINK.sub(lambda m: repo.colab_link(m.group(1)), old)
    new = README_INSTALL.sub(f'"mmbook-utils @ {repo.pip_source}"', new)
    return old, new


def sync(root: Path = ROOT, check: bool = False) -> list[Path]:
    """Rewrite (or, with `check`, only find) every copy that differs from _config.yml; return them."""
    repo = repository(root)
    changed = []
    notebooks = [p for folder in ("lessons", "solutions") for p in sorted((root / folder).glob("[0-9][0-9]_*.ipynb"))]
    targets = [(p, _rewrite_lesson) for p in notebooks]
    targets.append((root / "README.md", _rewrite_readme))
    for path, rewrite in targets:
        old, new = rewrite(path, repo)
        if old != new:
            changed.append(path)
            if not check:
                path.write_text(new, encoding="utf-8")
    return changed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="only list the copies that differ")
    args = parser.parse_args()
    changed = sync(check=args.check)
    repo = repository()
    if args.check and changed:
        names = ", ".join(str(p.relative_to(ROOT)) for p in changed)
        sys.exit(f"These files disagree with _config.yml ({repo.url} @ {repo.branch}): {names}. "
                 "Run: python scripts/sync_repository.py")
    verb = "would update" if args.check else "updated"
    print(f"{repo.url} @ {repo.branch}: {verb} {len(changed)} file(s)")


if __name__ == "__main__":
    main()
