"""Replace text in the cells of a notebook, in place (code or markdown), keeping outputs.
Usage: edit.py NOTEBOOK OLD NEW   (fails unless OLD occurs exactly once in the notebook)"""
import sys, json
path, old, new = sys.argv[1:4]
nb = json.load(open(path))
found = [c for c in nb["cells"] if old in "".join(c["source"])]
total = sum("".join(c["source"]).count(old) for c in found)
if total != 1:
    raise SystemExit(f"{total} matches for {old!r}")
c = found[0]
src = "".join(c["source"]).replace(old, new)
lines = src.split("\n")
c["source"] = [l + "\n" for l in lines[:-1]] + [lines[-1]]
with open(path, "w") as f:
    json.dump(nb, f, indent=1, ensure_ascii=False, sort_keys=True); f.write("\n")
print("ok")
