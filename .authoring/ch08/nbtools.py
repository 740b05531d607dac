"""Small in-place notebook editing helpers for the chapter 8 lesson (outputs kept)."""
import json
import nbformat

class NB:
    def __init__(self, path):
        self.path = path
        self.nb = json.load(open(path))

    def _set(self, cell, text):
        lines = text.split("\n")
        cell["source"] = [l + "\n" for l in lines[:-1]] + [lines[-1]]

    def rep(self, old, new):
        hits = [c for c in self.nb["cells"] if old in "".join(c["source"])]
        n = sum("".join(c["source"]).count(old) for c in hits)
        if n != 1:
            raise SystemExit(f"{n} matches for {old[:80]!r}")
        self._set(hits[0], "".join(hits[0]["source"]).replace(old, new))

    def split(self, marker, at_line, markdown):
        """Split the code cell containing `marker` before the line starting with `at_line`,
        with a markdown cell `markdown` between the halves (the outputs go with the second)."""
        for i, c in enumerate(self.nb["cells"]):
            src = "".join(c["source"])
            if c["cell_type"] == "code" and marker in src:
                head, sep, tail = src.partition("\n" + at_line)
                assert sep, at_line
                first = nbformat.v4.new_code_cell(head.rstrip("\n"))
                if "tags" in c.get("metadata", {}):
                    first["metadata"]["tags"] = list(c["metadata"]["tags"])
                first = json.loads(json.dumps(first))
                self._set(first, head.rstrip("\n"))
                md = json.loads(json.dumps(nbformat.v4.new_markdown_cell(markdown)))
                self._set(md, markdown)
                self._set(c, at_line + tail)
                self.nb["cells"][i:i] = [first, md]
                return
        raise SystemExit(f"no code cell with {marker!r}")

    def save(self):
        with open(self.path, "w") as f:
            json.dump(self.nb, f, indent=1, ensure_ascii=False, sort_keys=True)
            f.write("\n")


def replace_cell(n, starts, text):
    """Replace the whole source of the one markdown cell that starts with `starts`."""
    hits = [c for c in n.nb["cells"] if "".join(c["source"]).startswith(starts)]
    if len(hits) != 1:
        raise SystemExit(f"{len(hits)} cells start with {starts!r}")
    n._set(hits[0], text.strip("\n"))
