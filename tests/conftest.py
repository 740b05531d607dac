"""Helpers shared by the test modules."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pytest

from utils.exercises.core import INCORRECT, Exercise


def check_wrong_answers(exercise: Exercise, wrong_answers: Sequence[tuple[Callable, str]]) -> list[str]:
    """Run realistic wrong answers through an exercise's check: each must fail, and its message must
    hold the given words. Returns the messages, for further assertions."""
    messages = []
    for wrong, words in wrong_answers:
        result = exercise.check(wrong)
        assert result.status == INCORRECT, f"{exercise.key}: a wrong answer passed"
        assert words.lower() in str(result).lower(), f"{exercise.key}: expected '{words}' in:\n{result}"
        messages.append(str(result))
    return messages


@pytest.fixture
def wrong_answers_fail() -> Callable[[Exercise, Sequence[tuple[Callable, str]]], list[str]]:
    """`check_wrong_answers`, as a fixture for the chapters' exercise tests."""
    return check_wrong_answers


def pytest_terminal_summary(terminalreporter) -> None:
    """Print the mutation harness's kill table when its tests ran."""
    import sys

    module = sys.modules.get("test_exercise_mutations")
    reports = getattr(module, "REPORTS", None)
    if reports:
        from mutation_harness import table

        terminalreporter.write_sep("-", "exercise checkers: mutation kill table")
        terminalreporter.write_line(table(sorted(reports, key=lambda r: [int(p) for p in r.key.split(".")])))
