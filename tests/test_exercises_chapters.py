"""Every exercise of every chapter: the reference solution (from solutions/NN_*.ipynb) passes, the
stub reads as not attempted, known mistakes are named, and each chapter's hand-written wrong answers
(tests/answers_chNN.py) fail with a message that holds the words listed with them. The mutation
harness (test_exercise_mutations.py) goes further with answers derived automatically."""

from __future__ import annotations

import importlib

import pytest
from mutation_harness import reference_function

from utils.exercises import CHAPTERS, all_exercises, load_chapter
from utils.exercises.core import CORRECT, INCORRECT, NOT_ATTEMPTED, Exercise

EXERCISES = all_exercises()


def test_every_chapter_has_at_least_four_exercises():
    for chapter in CHAPTERS:
        count = sum(isinstance(v, Exercise) for v in vars(load_chapter(chapter)).values())
        assert count >= 4, f"chapter {chapter} has {count} exercises"


@pytest.mark.parametrize("exercise", EXERCISES, ids=lambda e: e.key)
def test_reference_solution_passes(exercise):
    result = exercise.check(reference_function(exercise))
    assert result.status == CORRECT, str(result)


@pytest.mark.parametrize("exercise", EXERCISES, ids=lambda e: e.key)
def test_stub_reads_as_not_attempted(exercise):
    def stub(*args, **kwargs):
        raise NotImplementedError("your code here")

    result = exercise.check(stub)
    assert result.status == NOT_ATTEMPTED
    assert "NotImplementedError" in str(result)


@pytest.mark.parametrize("exercise", [e for e in EXERCISES if e.mistakes], ids=lambda e: e.key)
def test_each_known_mistake_is_named(exercise):
    for mistake in exercise.mistakes:
        result = exercise.check(mistake.simulate)
        assert result.status == INCORRECT
        assert mistake.name in str(result), f"{exercise.key}: '{mistake.name}' not named in:\n{result}"


@pytest.mark.parametrize("exercise", EXERCISES, ids=lambda e: e.key)
def test_hand_written_answers(exercise, wrong_answers_fail):
    answers = importlib.import_module(f"answers_ch{exercise.chapter:02d}")
    messages = wrong_answers_fail(exercise, answers.WRONG.get(exercise.key, []))
    if exercise.key == "1.3":
        assert all("('middle', 'generative')" not in m for m in messages), "a wrong answer must not reveal the key"
    for variant in answers.CORRECT.get(exercise.key, []):
        result = exercise.check(variant)
        assert result.status == CORRECT, str(result)
