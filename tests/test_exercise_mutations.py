"""The mutation harness on every exercise: each automatic mutant that changes the mathematics, each
known mistake and each hand-written wrong answer is rejected with a message that names the case and
what came back; every correct variant passes; every number parameter varies across the cases.
The kill table is printed at the end of the test run (see conftest.py)."""

from __future__ import annotations

import importlib

import pytest
from mutation_harness import CORRECT_VARIANT, run

from utils.exercises import CHAPTERS, all_exercises

EXERCISES = all_exercises()
REPORTS: list = []  # filled as the tests run; conftest prints the table


def answers(chapter: int):
    try:
        return importlib.import_module(f"answers_ch{chapter:02d}")
    except ModuleNotFoundError:
        pytest.fail(f"tests/answers_ch{chapter:02d}.py is missing: every chapter lists hand-written answers")


def test_every_chapter_lists_hand_written_answers():
    for chapter in CHAPTERS:
        module = answers(chapter)
        keys = {e.key for e in EXERCISES if e.chapter == chapter}
        assert keys <= set(module.WRONG), f"chapter {chapter}: no wrong answers for {keys - set(module.WRONG)}"
        assert keys <= set(module.CORRECT), f"chapter {chapter}: no correct variants for {keys - set(module.CORRECT)}"


@pytest.mark.parametrize("exercise", EXERCISES, ids=lambda e: e.key)
def test_checker_kills_every_mutant(exercise):
    module = answers(exercise.chapter)
    report = run(exercise, module.WRONG.get(exercise.key, []), module.CORRECT.get(exercise.key, []))
    REPORTS.append(report)
    failures = [f"{o.mutant.name}: {'rejected' if o.mutant.kind == CORRECT_VARIANT else 'passed'} "
                f"({o.verdict})\n{o.message}" for o in report.outcomes if not o.ok]
    assert not report.problems, "\n".join(report.problems)
    assert not failures, "\n\n".join(failures)
