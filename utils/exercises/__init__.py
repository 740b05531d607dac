"""Self-grading exercises: one module per chapter (`ch01`, ...), built on `core`.

A chapter module declares `Exercise(key=..., cases=..., hints=..., mistakes=...)` objects and
`progress = core.chapter_progress(N)`; lessons call `.check(fn)`, `.hint()`, `.solution()`, `progress()`.
"""
