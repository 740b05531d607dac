"""Run the lesson source's code cells in one namespace (stopping at the exercises), printing each
cell's index, time and output - a fast loop while writing. Figures are not shown."""
import sys, time, io, contextlib
import matplotlib
matplotlib.use("Agg")
src = open(".authoring/ch10/lesson.py").read()
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
stop_at = int(sys.argv[2]) if len(sys.argv) > 2 else 10**6
only = [int(x) for x in sys.argv[3].split(",")] if len(sys.argv) > 3 else None
for i, code in enumerate(cells):
    if only is not None and i not in only:
        continue
    if i >= stop_at:
        break
    t = time.perf_counter()
    if code.lstrip("\n").startswith("# Setup: the same"):
        code = "from utils import runtime\ndevice = runtime.setup(chapter=10, seed=0)"
    import os.path
    if not os.path.exists("utils/exercises/ch10.py"):
        code = code.replace("from utils.exercises import ch10", "pass")
    if not os.path.exists("utils/serving.py"):
        code = code.replace("from utils import serving", "pass")
    if i < start_at and "def " not in code and "import" not in code and i > 3:
        pass
    exec(compile(code, f"cell{i}", "exec"), ns)
    print(f"----- cell {i} ({time.perf_counter() - t:.1f} s)", flush=True)
