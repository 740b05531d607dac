"""A small Sphinx extension for the book's pages.

sphinx-thebe and sphinx-togglebutton register their inline configuration scripts again each time
Sphinx re-reads documents, so notebook pages received two `const THEBE_JS_URL = ...` blocks and the
second one raised "Identifier has already been declared" in the browser. This removes exact
duplicate scripts from each page before it is written.
"""

from __future__ import annotations


def _script_key(script) -> tuple:
    attributes = getattr(script, "attributes", {}) or {}
    return getattr(script, "filename", None) or None, attributes.get("body")  # None and "" both mean inline


def drop_duplicate_scripts(app, pagename, templatename, context, doctree) -> None:
    scripts = context.get("script_files")
    if not scripts:
        return
    seen, unique = set(), []
    for script in scripts:
        key = _script_key(script)
        if key not in seen:
            seen.add(key)
            unique.append(script)
    scripts[:] = unique


def setup(app):
    # Priority 1: run first; html-page-context stops at the first handler that returns a template name.
    app.connect("html-page-context", drop_duplicate_scripts, priority=1)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
