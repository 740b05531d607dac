"""Reading a notebook's code as Python: which names each cell defines and uses, and the smallest
program that defines a given set of names (the imports, functions, classes and UPPER_CASE constants
they need, transitively). Used by the Colab check (a lesson's real-thing section without its training
cells) and by the lesson/package contract test (a lesson's definition beside the copy in utils).
"""

from __future__ import annotations

import ast
import json
from pathlib import Path


def code_cells(path: Path) -> list[str]:
    """The sources of a notebook's code cells, in order."""
    cells = json.loads(Path(path).read_text(encoding="utf-8"))["cells"]
    return ["".join(c["source"]) if isinstance(c["source"], list) else c["source"]
            for c in cells if c["cell_type"] == "code"]


def statements(source: str) -> list[tuple[set[str], set[str], str]]:
    """(names defined, names used, source) of each import, def, class and UPPER_CASE constant."""
    try:
        tree = ast.parse(source)
    except SyntaxError:  # IPython syntax (magics): nothing to take
        return []
    found = []
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            defined = {(alias.asname or alias.name).split(".")[0] for alias in node.names}
        elif isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            defined = {node.name}
        elif isinstance(node, ast.Assign) and all(
                isinstance(name, ast.Name) and name.id.isupper()
                for target in node.targets for name in (target.elts if isinstance(target, ast.Tuple) else [target])):
            defined = {n.id for t in node.targets for n in ast.walk(t) if isinstance(n, ast.Name)}
        else:
            continue
        used = {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
        found.append((defined, used - defined, ast.get_source_segment(source, node)))
    return found


def used_names(source: str) -> set[str]:
    """Every name the source reads."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return set()
    return {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}


def prelude(earlier: list[str], needed: set[str]) -> str:
    """From the cells before the section, the definitions the section needs, transitively, in order."""
    found = [statement for source in earlier for statement in statements(source)]
    chosen: set[int] = set()
    queue = set(needed)
    while queue:
        name = queue.pop()
        for index in range(len(found) - 1, -1, -1):  # the last definition of a name wins
            defined, used, _ = found[index]
            if name in defined:
                if index not in chosen:
                    chosen.add(index)
                    queue |= used
                break
    return "\n\n".join(found[i][2] for i in sorted(chosen))
