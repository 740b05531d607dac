"""Self-grading exercises: one module per chapter (`ch01`, ...), built on `core`."""
