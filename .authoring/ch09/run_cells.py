"""Run the lesson source's code cells in one namespace (stopping at the exercises), printing each
cell's index, time and output - a fast loop while writing. Figures are not shown."""
import sys, time, io, contextlib
import matplotlib
matplotlib.use("Agg")
src = open(".authoring/ch09/lesson.py").read()
cells = []
for block in src.split("\n# %%")[1:]:
    head, _, body = block.partition("\n")
    if head.strip().startswith("[markdown]"):
        if body.startswith("# ## Exercises"):
            break
        continue
    cells.append(body)
start_at = int(sys.argv[1]) if len(sys.argv) > 1 else 0
ns = {"__name__": "__main__"}
for i, code in enumerate(cells):
    t = time.perf_counter()
    exec(compile(code, f"cell{i}", "exec"), ns)
    print(f"----- cell {i} ({time.perf_counter() - t:.1f} s)", flush=True)
