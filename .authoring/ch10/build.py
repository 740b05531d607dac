"""Build lessons/10_frontier.ipynb (or solutions) from a percent-format source (no outputs).
    .venv/bin/python .authoring/ch10/build.py .authoring/ch10/lesson.py lessons/10_frontier.ipynb
Cells: '# %% [markdown]' (each line starts with '# ') or '# %%' with optional ' tags=a,b'."""
import sys
import nbformat

source, target = sys.argv[1], sys.argv[2]
cells, kind, tags, lines = [], None, [], []


def flush():
    if kind is None:
        return
    text = "\n".join(lines).strip("\n")
    if kind == "markdown":
        text = "\n".join(l[2:] if l.startswith("# ") else l.lstrip("#") for l in text.split("\n"))
        cell = nbformat.v4.new_markdown_cell(text)
    else:
        while text.endswith("\n#") or text == "#":
            text = text[:-1].rstrip("\n")
        cell = nbformat.v4.new_code_cell(text.strip("\n"))
    if tags:
        cell.metadata["tags"] = tags
    cells.append(cell)


for line in open(source).read().split("\n"):
    if line.startswith("# %%"):
        flush()
        rest = line[4:].strip()
        kind = "markdown" if rest.startswith("[markdown]") else "code"
        tags = rest.split("tags=", 1)[1].split(",") if "tags=" in rest else []
        lines = []
    else:
        lines.append(line)
flush()
template = nbformat.read("lessons/08_data_at_scale.ipynb", as_version=4)
nb = nbformat.v4.new_notebook(metadata=template.metadata)
nb.cells = cells
# the setup cell must equal every other lesson's (but for the number): take chapter 8's
setup = "".join(template.cells[2].source).replace("chapter=8", "chapter=10")
for c in nb.cells:
    if c.cell_type == "code" and c.source.startswith("# Setup: the same"):
        c.source = setup
for c in nb.cells:
    pass
nbformat.write(nb, target)
print(f"wrote {target}: {len(cells)} cells")
