"""Copy markdown (and tags) edited in the percent source into the executed notebook, keeping outputs.
    .venv/bin/python .authoring/ch10/sync_md.py lesson|solutions [--code]
Code cells must be unchanged (else re-execute); the script says which differ. --code copies code
too, for edits that cannot change an output (a comment, a docstring)."""
import subprocess
import sys
import nbformat

which = sys.argv[1]
src = f".authoring/ch10/{which}.py"
target = "lessons/10_frontier.ipynb" if which == "lesson" else "solutions/10_frontier.ipynb"
subprocess.run([sys.executable, ".authoring/ch10/build.py", src, "/tmp/ch10_built.ipynb"], check=True)
new = nbformat.read("/tmp/ch10_built.ipynb", as_version=4)
old = nbformat.read(target, as_version=4)
assert len(new.cells) == len(old.cells), (len(new.cells), len(old.cells))
changed, stale = 0, []
for i, (a, b) in enumerate(zip(new.cells, old.cells)):
    assert a.cell_type == b.cell_type, i
    if a.cell_type == "code" and a.source != b.source:
        if a.source.startswith("# Setup: the same") or "--code" in sys.argv:
            b.source = a.source  # the shared setup cell: same behaviour, house formatting
        else:
            stale.append(i)
    if a.cell_type == "markdown" and a.source != b.source:
        b.source = a.source
        changed += 1
    b.metadata["tags"] = a.metadata.get("tags", [])
    if not b.metadata["tags"]:
        del b.metadata["tags"]
nbformat.write(old, target)
print(f"{target}: {changed} markdown cells updated; code cells that differ (re-execute): {stale}")
