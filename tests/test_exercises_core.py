"""The self-grading framework: every outcome, every kind of explanation, hints, solutions, progress."""

from __future__ import annotations

import re

import nbformat
import numpy as np
import pytest
import torch

from utils.exercises import core
from utils.exercises import progress as registry
from utils.exercises.core import Case, Exercise, Mistake


@pytest.fixture(autouse=True)
def fresh_registry(monkeypatch):
    """Each test sees an empty registry, so the real chapters' exercises never interfere."""
    monkeypatch.setattr(registry, "EXERCISES", {})
    monkeypatch.setattr(registry, "STATUS", {})


def reference(a, b):
    return torch.nn.functional.normalize(a, dim=-1) @ torch.nn.functional.normalize(b, dim=-1).T


A = torch.tensor([[1.0, 2.0, 2.0, 0.0], [0.0, 3.0, 4.0, 0.0], [1.0, 0.0, 0.0, 0.0]])
B = torch.tensor([[2.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 5.0]])


def make_exercise(key: str = "99.1", **overrides) -> Exercise:
    def cases():
        c, d = torch.ones(5, 8), torch.arange(56.0).reshape(7, 8)
        return [
            Case(inputs=(A, B), expected=reference(A, B), label="3 image vectors vs 2 caption vectors"),
            Case(inputs=(c, d), expected=reference(c, d), label="5 vs 7 vectors"),
        ]

    settings = dict(
        key=key,
        title="Cosine similarity between two batches of vectors",
        cases=cases,
        hints=["Normalise each row to unit length first.", "`x / x.norm(dim=-1, keepdim=True)`",
               "Then a matrix product: a_unit @ b_unit.T"],
        mistakes=[Mistake(name="forgot to normalise",
                          explanation="You returned raw dot products; divide each vector by its norm first.",
                          simulate=lambda a, b: a @ b.T)],
        atol=1e-5,
    )
    settings.update(overrides)
    return Exercise(**settings)


def stub(a, b):
    raise NotImplementedError("Exercise 99.1: your code here")


# -- outcomes ----------------------------------------------------------------------------------


@pytest.mark.parametrize("answer", [stub, None, ...])
def test_not_attempted(answer):
    result = make_exercise().check(answer)
    assert result.status == "not attempted"
    assert str(result).startswith("[not attempted] 99.1 Cosine similarity")
    assert "replace the NotImplementedError" in str(result)


def test_correct_answer_and_both_reprs():
    result = make_exercise().check(reference)
    assert result.status == "correct" and result.correct
    assert str(result) == "[correct] 99.1 Cosine similarity between two batches of vectors - all 2 cases pass"
    assert repr(result) == str(result)
    page = result._repr_html_()
    assert "correct" in page and core.COLOURS["correct"] in page and "99.1" in page


def test_wrong_shape_names_both_shapes_and_the_case():
    result = make_exercise().check(lambda a, b: reference(a, b).T)
    assert result.status == "incorrect"
    text = str(result)
    assert 'case "3 image vectors vs 2 caption vectors" (1 of 2)' in text
    assert "wrong shape: expected (3, 2), got (2, 3) (the axes look swapped)" in text
    assert "[incorrect]" in text and "incorrect" in result._repr_html_()


def test_wrong_type_list_instead_of_tensor():
    result = make_exercise().check(lambda a, b: reference(a, b).tolist())
    assert "wrong type: expected a tensor of shape (3, 2), got a list of 3 items" in result.message


def test_missing_return_says_so():
    result = make_exercise().check(lambda a, b: None)
    assert "got None (did you forget to return?)" in result.message


def test_wrong_values_report_max_difference_and_first_index():
    result = make_exercise().check(lambda a, b: reference(a, b) + torch.tensor([0.0, 0.25]))
    text = result.message
    assert "3 of 6 elements differ" in text
    assert "The first differs at index (0, 1)" in text
    assert "Max abs difference 0.25" in text
    assert "expected:" in text and "got:" in text and "inputs:" in text


def test_learner_exception_names_type_message_input_and_line():
    def answer(image_vectors, text_vectors):
        unit = image_vectors / image_vectors.norm(dim=-1, keepdim=True)
        return unit @ text_vectors  # wrong: text_vectors is not transposed

    result = make_exercise().check(answer)
    assert result.status == "incorrect"
    text = result.message
    assert "your function raised RuntimeError" in text
    assert "image_vectors = tensor of shape (3, 4), float32" in text
    assert "text_vectors = tensor of shape (2, 4), float32" in text
    assert "return unit @ text_vectors" in text  # the learner's own line


def test_matching_mistake_is_named():
    result = make_exercise().check(lambda a, b: a @ b.T)
    expected = "This looks like a common mistake: forgot to normalise. You returned raw dot products"
    assert expected in result.message


def test_no_mistake_named_for_unrelated_errors():
    result = make_exercise().check(lambda a, b: reference(a, b) * 2)
    assert "common mistake" not in result.message


def test_system_exit_is_caught_but_keyboard_interrupt_goes_through():
    def leaves(a, b):
        raise SystemExit(3)

    assert "SystemExit" in make_exercise().check(leaves).message

    def interrupted(a, b):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        make_exercise().check(interrupted)


def test_not_implemented_in_a_later_case_is_incorrect():
    def half_done(a, b):
        if a.shape[0] == 5:
            raise NotImplementedError
        return reference(a, b)

    result = make_exercise().check(half_done)
    assert result.status == "incorrect" and "still unfinished" in result.message


def test_learner_cannot_change_the_cases_inputs():
    a, b = A.clone(), B.clone()
    cases = [Case((a, b), reference(a, b), "fixed")]
    exercise = Exercise(key="99.5", title="t", cases=lambda: cases, hints=[])

    def vandal(x, y):
        x.zero_()
        y.mul_(2)
        return reference(x, y)

    assert exercise.check(vandal).status == "incorrect"
    assert torch.equal(a, A) and torch.equal(b, B)
    assert exercise.check(reference).status == "correct"


def test_learner_randomness_is_seeded_and_leaves_the_notebook_generators_alone():
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    expected = torch.Generator().manual_seed(0)
    exercise = Exercise(key="99.6", title="noise", hints=[],
                        cases=lambda: [Case((), torch.randn(3, generator=expected), "three draws")])
    assert exercise.check(lambda: torch.randn(3)).status == "correct"
    assert torch.equal(torch.random.get_rng_state(), before)


def test_output_is_deterministic_text():
    first = str(make_exercise().check(lambda a, b: a @ b.T))
    second = str(make_exercise().check(lambda a, b: a @ b.T))
    assert first == second
    assert not re.search(r"0x[0-9a-f]{6,}", first)


def test_a_broken_case_builder_is_an_error_not_a_crash():
    def broken():
        raise ValueError("bad fixture")

    result = Exercise(key="99.7", title="t", cases=broken, hints=[]).check(reference)
    assert result.status == "error" and "please report" in result.message


# -- comparisons -------------------------------------------------------------------------------


@pytest.mark.parametrize("got", [0.5, torch.tensor(0.5), np.float32(0.5), np.array(0.5), 0.5 + 1e-9])
def test_scalars_are_interchangeable(got):
    assert core.compare_values(0.5, got) is None


def test_one_element_tensor_is_not_a_number():
    message = core.compare_values(0.5, torch.tensor([0.5]))
    assert "expected a single number" in message and ".item()" in message


def test_numpy_and_torch_arrays_are_interchangeable():
    assert core.compare_values(torch.arange(4.0), np.arange(4.0)) is None
    assert core.compare_values(np.arange(4.0), torch.arange(4)) is None


def test_nan_and_inf_are_reported():
    assert "contains nan" in core.compare_values(torch.zeros(3), torch.tensor([0.0, float("nan"), 0.0]))
    assert "got inf" in core.compare_values(1.0, float("inf"))


def test_dicts_compare_keys_then_values_per_key():
    expected = {"loss": 0.25, "shape": (3, 2)}
    assert "missing keys: ['shape']" in core.compare_values(expected, {"loss": 0.25})
    assert "unexpected keys: ['extra']" in core.compare_values(expected, {**expected, "extra": 1})
    assert "at output['loss']" in core.compare_values(expected, {"loss": 0.5, "shape": (3, 2)})
    assert "at output['shape'][1]" in core.compare_values(expected, {"loss": 0.25, "shape": (3, 1)})
    assert "wrong type" in core.compare_values(expected, [0.25, (3, 2)])


def test_strings_bools_and_lists():
    assert core.compare_values("b", "b") is None
    assert "only case or spaces differ" in core.compare_values("b", " B")
    assert "expected True or False" in core.compare_values(True, 1)
    assert core.compare_values(True, torch.tensor(True)) is None
    assert "wrong length" in core.compare_values([1, 2], [1, 2, 3])


def test_quiz_with_a_dict_answer():
    quiz = Exercise(key="99.8", title="Quiz", hints=[],
                    cases=lambda: [Case(inputs=(), expected={"q1": "b", "q2": 3}, label="your answers")])
    assert quiz.check(lambda: {"q1": ..., "q2": ...}).status == "not attempted"
    assert quiz.check(lambda: {"q1": "b", "q2": 3}).status == "correct"
    assert quiz.check({"q1": "b", "q2": 3}).status == "correct"  # a value works for a quiz too
    wrong = quiz.check(lambda: {"q1": "b", "q2": 4})
    assert "at output['q2']: expected 3, got 4" in wrong.message


def test_a_result_instead_of_a_function_is_explained():
    result = make_exercise().check(reference(A, B))
    assert result.status == "incorrect" and "takes your function itself" in result.message


def test_property_check_expected():
    def unit_norm(output):
        unit = torch.allclose(output.norm(dim=-1), torch.ones(len(output)))
        return None if unit else "rows must have norm 1"

    exercise = Exercise(key="99.9", title="Any unit vectors", hints=[],
                        cases=lambda: [Case(inputs=(3,), expected=unit_norm, label="3 vectors")])
    assert exercise.check(lambda n: torch.eye(n)).status == "correct"
    result = exercise.check(lambda n: torch.ones(n, n))
    assert result.status == "incorrect" and "rows must have norm 1" in result.message
    assert "expected:" not in result.message


def test_custom_compare_and_kwargs():
    exercise = Exercise(
        key="99.10", title="Top-k", hints=[],
        cases=lambda: [Case(inputs=(torch.tensor([3.0, 1.0, 2.0]),), kwargs={"k": 2}, expected={0, 2},
                            label="k=2")],
        compare=lambda want, got: None if set(got.tolist()) == want else f"expected {sorted(want)}",
    )
    assert exercise.check(lambda x, k: x.topk(k).indices).status == "correct"
    result = exercise.check(lambda x, k: x.topk(k, largest=False).indices)
    assert "expected [0, 2]" in result.message and "k = 2" in result.message


# -- hints, solutions, progress -------------------------------------------------------------------


def test_hint_ladder():
    exercise = make_exercise()
    first = str(exercise.hint())
    assert "Hint 1 of 3: Normalise each row" in first and "Hint 2" not in first
    assert "hint 1 of 3; .hint(2) for more." in first
    second = str(exercise.hint(2))
    assert "Hint 2 of 3" in second and "Hint 3" not in second
    everything = str(exercise.hint(9))
    assert "Hint 3 of 3" in everything and ".solution()" in everything
    assert "<code>x / x.norm(dim=-1, keepdim=True)</code>" in exercise.hint(2)._repr_html_()
    assert "no hints" in str(Exercise(key="99.11", title="t", cases=[], hints=[]).hint())


def write_solutions(folder, cells):
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_markdown_cell("# Solutions of chapter 99")]
    notebook.cells += [nbformat.v4.new_code_cell(source) for source in cells]
    nbformat.write(notebook, folder / "99_testing.ipynb")


def test_solution_found_through_the_environment_variable(tmp_path, monkeypatch):
    write_solutions(tmp_path, [
        "# Solution 99.10\ndef wrong_one():\n    pass",
        "# Solution 99.1\ndef cosine_similarity(a, b):\n    return a @ b.T",
    ])
    monkeypatch.setenv(core.SOLUTIONS_ENV, str(tmp_path))
    shown = make_exercise().solution()
    assert "Reference solution for 99.1" in str(shown) and "99_testing.ipynb" in str(shown)
    assert "def cosine_similarity(a, b):" in str(shown) and "wrong_one" not in str(shown)
    assert "cosine_similarity" in shown._repr_html_()


def test_solution_missing_is_a_friendly_message(tmp_path, monkeypatch):
    monkeypatch.setenv(core.SOLUTIONS_ENV, str(tmp_path))
    assert "Could not find the solutions notebook 99_*.ipynb" in str(make_exercise().solution())
    write_solutions(tmp_path, ["# Solution 99.2\npass"])
    assert "No reference solution for 99.1 yet" in str(make_exercise().solution())


def test_progress_table():
    first = make_exercise("99.1")
    make_exercise("99.2")
    third = make_exercise("99.10", title="A later one")
    make_exercise("98.1")
    first.check(reference)
    third.check(lambda a, b: a @ b.T)
    table = core.progress(99)
    text = str(table)
    assert text.splitlines()[0] == "Chapter 99: 1 of 3 correct (1 incorrect, 1 not checked yet)"
    keys = [line.split()[0] for line in text.splitlines()[2:]]
    assert keys == ["99.1", "99.2", "99.10"]
    assert "not checked yet" in text and "98.1" not in text
    assert "<table>" in table._repr_html_() and "1 of 3 correct" in table._repr_html_()
    assert str(core.chapter_progress(99)) == text
    assert "1 of 4 correct" in str(core.progress())
    live = core.chapter_progress(99)  # the table reads the statuses each time it is shown
    third.check(reference)
    assert "2 of 3 correct" in str(live) and "2 of 3 correct" in str(core.progress(99))
    assert first.status == "correct"
    assert str(core.progress(96)) == "Chapter 96: no exercises loaded."


def test_strange_outputs_never_crash_the_check():
    class Unprintable:
        def __repr__(self):
            raise RuntimeError("no repr")

        def __eq__(self, other):
            raise RuntimeError("no eq")

    exercise = make_exercise()
    strange = (Unprintable(), iter([1]), {"a": 1}, "text", float("inf"), torch.zeros(3, 2, dtype=torch.bool))
    for output in strange:
        result = exercise.check(lambda a, b, output=output: output)
        assert result.status == "incorrect", output


# -- the weaknesses the self-grading review found, each pinned by a test ---------------------------


def pair_loss(a, b):
    """A loss of two inputs, like CLIP's: both sides must receive their gradient."""
    return (torch.nn.functional.normalize(a, dim=-1) * torch.nn.functional.normalize(b, dim=-1)).sum(-1).mean()


def make_loss_exercise(**overrides) -> Exercise:
    generator = torch.Generator().manual_seed(0)
    a, b = torch.randn(3, 4, generator=generator, dtype=torch.float64), torch.randn(3, 4, generator=generator,
                                                                                    dtype=torch.float64)
    settings = dict(key="99.20", title="A loss of two inputs", hints=[], atol=1e-8, rtol=1e-6,
                    cases=lambda: [Case(inputs=(a, b), expected=pair_loss(a, b), label="3 pairs")],
                    gradient_reference=pair_loss)
    settings.update(overrides)
    return Exercise(**settings)


@pytest.mark.parametrize("side", [0, 1])
def test_gradient_check_covers_every_tensor_input(side):
    def detached(a, b):
        return pair_loss(a.detach(), b) if side == 0 else pair_loss(a, b.detach())

    result = make_loss_exercise().check(detached)
    assert result.status == "incorrect"
    assert f"no gradient reaches the input {'ab'[side]}" in result.message
    assert make_loss_exercise().check(pair_loss).status == "correct"


def test_gradient_check_compares_values_of_the_gradient():
    def wrong_gradient(a, b):  # right value, wrong gradient with respect to a
        return pair_loss(a, b) + 0.1 * (a.sum() - a.sum().detach())

    result = make_loss_exercise().check(wrong_gradient)
    assert result.status == "incorrect" and "its gradient with respect to a" in result.message
    assert "expected:" in result.message and "got:" in result.message


def test_gradient_check_can_be_turned_off_per_case():
    generator = torch.Generator().manual_seed(0)
    a, b = torch.randn(3, 4, generator=generator), torch.randn(3, 4, generator=generator)
    exercise = make_loss_exercise(
        cases=lambda: [Case(inputs=(a, b), expected=pair_loss(a, b), label="value only", gradient=False)])
    assert exercise.check(lambda x, y: pair_loss(x.detach(), y)).status == "correct"


def test_in_place_edit_on_an_input_is_named():
    def in_place(a, b):
        a /= a.norm(dim=-1, keepdim=True)
        return pair_loss(a, b)

    result = make_loss_exercise().check(in_place)
    assert result.status == "incorrect" and "changed its input `a` in place" in result.message
    assert "torch operations only" not in result.message


def test_in_place_on_a_leaf_during_the_gradient_check_is_explained():
    exercise = make_loss_exercise(cases=lambda: [Case(
        inputs=(torch.ones(2, 3, dtype=torch.float64).requires_grad_(True), torch.ones(2, 3, dtype=torch.float64)),
        expected=torch.tensor(1.0, dtype=torch.float64), label="leaves")])

    def in_place(a, b):
        a.mul_(1.0)
        return pair_loss(a, b)

    result = exercise.check(in_place)
    assert result.status == "incorrect" and "changed a tensor in place" in result.message


def test_float32_answers_get_a_float32_tolerance():
    expected = torch.tensor(0.0123456789, dtype=torch.float64)
    assert core.compare_values(expected, expected.float(), atol=1e-8, rtol=1e-6) is None
    assert core.compare_values(expected, expected.float() * 1.001, atol=1e-8, rtol=1e-6) is not None
    assert core.compare_values(expected, expected * (1 + 1e-5), atol=1e-8, rtol=1e-6) is not None  # float64: strict


def test_a_python_number_is_not_a_tensor_loss():
    message = core.compare_values(torch.tensor(0.5), 0.5)
    assert "expected a 0-dimensional tensor" in message and ".item()" in message
    assert core.compare_values(0.5, torch.tensor(0.5)) is None  # a number asked for: a 0-d tensor is fine


def test_one_element_tensor_for_a_tensor_loss_is_told_to_squeeze():
    message = core.compare_values(torch.tensor(0.5), torch.tensor([0.5]))
    assert ".squeeze()" in message and ".item()" not in message
    assert message.count("of shape (1,)") == 1


def test_verdicts_print_enough_digits_to_show_the_difference():
    message = core.compare_values(0.31326168, 0.31326170, atol=0, rtol=1e-9)
    expected, got = re.search(r"expected (\S+), got (\S+)", message).groups()
    assert expected != got
    message = core.compare_values(torch.tensor([0.31326168]), torch.tensor([0.31326170], dtype=torch.float64),
                                  atol=0, rtol=1e-9)
    first = re.search(r"expected (\S+), got (\S+)\.", message).groups()
    assert first[0] != first[1]


def test_a_mistake_is_named_only_when_it_matches_every_case():
    def wrong_axis(a, b):
        return (a / a.norm(dim=0, keepdim=True)) @ (b / b.norm(dim=0, keepdim=True)).T

    def unnormalised_but_coinciding_on_the_first_case(a, b):
        return wrong_axis(a, b) if a.shape[0] == 3 else a @ b.T

    coincidence = Mistake("forgot to normalise", "...", simulate=unnormalised_but_coinciding_on_the_first_case)
    real = Mistake("normalised along the wrong axis", "...", simulate=wrong_axis)
    result = make_exercise(mistakes=[coincidence]).check(wrong_axis)
    assert result.status == "incorrect" and "forgot to normalise" not in result.message
    result = make_exercise(mistakes=[coincidence, real]).check(wrong_axis)
    assert "normalised along the wrong axis" in result.message and "forgot to normalise" not in result.message


def test_check_shows_its_verdict_wherever_it_stands_in_the_cell():
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    shown = []
    original = shell.display_pub.publish
    shell.display_pub.publish = lambda data, *args, **kwargs: shown.append(data)
    try:
        shell.user_ns.update(exercise=make_exercise(), reference=reference)
        shell.run_cell("result = exercise.check(reference)\nvalue = 1", store_history=True)
        assert len(shown) == 1 and "correct" in shown[0]["text/plain"]
        shell.run_cell("exercise.check(reference)", store_history=True)  # the last line: shown once only
        assert len(shown) == 2
        shell.run_cell("result", store_history=True)  # a later cell may show it again
        assert len(shown) == 3
    finally:
        shell.display_pub.publish = original
        InteractiveShell.clear_instance()


def test_every_chapter_module_is_registered_and_loads():
    from pathlib import Path

    import utils.exercises as package

    files = sorted(p.stem for p in Path(package.__file__).parent.glob("ch[0-9][0-9].py"))
    assert files == sorted(package.CHAPTERS.values())
    for chapter in package.CHAPTERS:
        module = package.load_chapter(chapter)
        keys = [e.key for e in vars(module).values() if isinstance(e, Exercise)]
        assert keys and all(key.startswith(f"{chapter}.") for key in keys)
        assert isinstance(module.progress(), core.ProgressTable)


def test_a_key_declared_twice_with_another_title_is_an_error():
    make_exercise("99.30")
    with pytest.raises(ValueError, match="declared twice"):
        make_exercise("99.30", title="Something else")


def test_a_forbidden_function_of_a_package_that_is_not_installed_is_skipped():
    """A statement may forbid a library call (jiwer.wer) that a reader's runtime does not have: the
    check still runs, and the functions it can reach are still refused."""
    forbidding = make_exercise(forbidden=["no_such_package_xyz.helper", "torch.nn.functional.normalize",
                                          "torch.no_such_function_xyz"])
    assert forbidding.check(reference).status != "correct"  # normalize is refused, the check ran
    assert "without F.normalize" in str(forbidding.check(reference))
    assert torch.nn.functional.normalize.__name__ == "normalize"  # restored afterwards

    def by_hand(a, b):
        return (a / a.norm(dim=-1, keepdim=True)) @ (b / b.norm(dim=-1, keepdim=True)).T

    assert forbidding.check(by_hand).status == "correct"
