"""Comparing a learner's output with the expected one: type, then shape, then values, in words.

`compare_values(expected, got)` returns None when they agree, otherwise one message that says what
differs. The tolerance is the exercise's, widened to what the learner's number type can hold: an
answer computed in float32 is not rejected for a difference float32 cannot represent.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from utils.exercises.describe import (
    describe_type,
    fmt,
    fmt_pair,
    is_array,
    is_bool_dtype,
    is_boolish,
    is_scalar,
    ndim,
    numel,
    scalar,
    short,
)
from utils.runtime import to_numpy

# The smallest (atol, rtol) that is fair to a result held in float32. Half-precision results are not
# graded: float16 and bfloat16 hold 3 or 4 significant digits, too few to tell many slips apart.
FLOAT32_FLOOR = (1e-6, 1e-5)
FLOAT32 = (torch.float32, np.dtype(np.float32))
HALF = (torch.float16, torch.bfloat16, np.dtype(np.float16))

_NON_FINITE_ADVICE = " - look for a division by zero, a log of 0 or an overflow"


def tolerance_for(got: Any, atol: float, rtol: float) -> tuple[float, float]:
    """(atol, rtol) widened to float32's precision when `got` is held in float32."""
    if _dtype(got) in FLOAT32:
        return max(atol, FLOAT32_FLOOR[0]), max(rtol, FLOAT32_FLOOR[1])
    return atol, rtol


def _dtype(x: Any) -> Any:
    if isinstance(x, np.generic):
        return np.dtype(type(x))
    return getattr(x, "dtype", None)


def _precision_problem(expected: Any, got: Any, at: str) -> str | None:
    """A message when `got` is in half precision but `expected` is not, else None."""
    if _dtype(got) in HALF and _dtype(expected) not in HALF:
        name = str(_dtype(got)).replace("torch.", "")
        return (f"wrong dtype{at}: your output is {name}, which holds only 3 or 4 significant digits - too few "
                "to check. Compute in float32 or float64 (drop the .half() / .bfloat16()).")
    return None


def _is_integer(x: Any) -> bool:
    if isinstance(x, (bool, np.bool_)):
        return False
    if isinstance(x, (int, np.integer)):
        return True
    dtype = _dtype(x)
    if isinstance(dtype, torch.dtype):
        return not dtype.is_floating_point and not dtype.is_complex and dtype != torch.bool
    return isinstance(dtype, np.dtype) and dtype.kind in "iu"


def compare_values(
    expected: Any, got: Any, atol: float = 1e-6, rtol: float = 1e-5, where: str = ""
) -> str | None:
    """Compare a learner's output with the expected one: type, then shape, then values.

    Returns None when they agree (within `atol` + `rtol` * |expected| for numbers, widened to the
    precision of the learner's dtype), otherwise a message in words. Scalars may be int, float, NumPy
    or 0-d arrays, except that a 0-d torch tensor (a loss) must come back as a tensor; arrays of one
    or more dimensions may be torch or NumPy.
    """
    at = f" at output{where}" if where else ""
    if is_array(expected) and ndim(expected) > 0:
        return _compare_arrays(expected, got, atol, rtol, at)
    if isinstance(expected, (bool, np.bool_)) or (is_array(expected) and is_bool_dtype(expected)):
        if not is_scalar(got) or not is_boolish(got):
            return f"wrong type{at}: expected True or False, got {describe_type(got)}."
        if bool(scalar(got)) != bool(scalar(expected)):
            return f"wrong value{at}: expected {bool(scalar(expected))}, got {bool(scalar(got))}."
        return None
    if is_scalar(expected):
        return _compare_scalars(expected, got, atol, rtol, at)
    if isinstance(expected, str):
        if not isinstance(got, str):
            return f"wrong type{at}: expected a string, got {describe_type(got)}."
        if got == expected:
            return None
        if got.strip().lower() == expected.strip().lower():
            return f"wrong value{at}: expected {expected!r}, got {got!r} (only case or spaces differ)."
        return f"wrong value{at}: expected {short(expected)}, got {short(got)}."
    if isinstance(expected, Mapping):
        return _compare_dicts(expected, got, atol, rtol, where)
    if isinstance(expected, (list, tuple)):
        return _compare_sequences(expected, got, atol, rtol, where)
    if expected is None:
        return None if got is None else f"expected None{at}, got {describe_type(got)}."
    try:
        equal = bool(expected == got)
    except Exception:
        equal = False
    return None if equal else f"wrong value{at}: expected {short(expected)}, got {short(got)}."


def _compare_scalars(expected: Any, got: Any, atol: float, rtol: float, at: str) -> str | None:
    wants_tensor = isinstance(expected, torch.Tensor)
    problem = _precision_problem(expected, got, at)
    if problem:
        return problem
    if is_array(got) and ndim(got) > 0:
        if numel(got) != 1:
            extra = " - did you forget to reduce (mean or sum) over an axis?" if wants_tensor else ""
            return f"wrong type{at}: expected a single number, got {describe_type(got)}{extra}."
        extra = (" - make it 0-dimensional with .squeeze() (keep it a tensor)" if wants_tensor
                 else " - use .item() to get the number")
        return f"wrong type{at}: expected a single number, got {describe_type(got)}{extra}."
    if not is_scalar(got):
        return f"wrong type{at}: expected a number, got {describe_type(got)}."
    if wants_tensor and not isinstance(got, torch.Tensor):
        return (
            f"wrong type{at}: expected a 0-dimensional tensor, got {describe_type(got)}. Keep the result a "
            "tensor: .item(), float() and NumPy turn it into a number that autograd cannot differentiate."
        )
    if _is_integer(expected) and not _is_integer(got):
        return (f"wrong type{at}: expected a whole number (an int), got {describe_type(got)}. Counts are "
                "integers: use // rather than /, or int(...).")
    atol, rtol = tolerance_for(got, atol, rtol)
    want, have = float(scalar(expected)), float(scalar(got))
    if math.isnan(want) and math.isnan(have):
        return None
    if math.isnan(have) or (math.isinf(have) and not math.isinf(want)):
        return f"wrong value{at}: expected {fmt(want)}, got {fmt(have)}{_NON_FINITE_ADVICE}."
    if want == have or abs(want - have) <= atol + rtol * abs(want):
        return None
    shown_want, shown_have = fmt_pair(want, have)
    return f"wrong value{at}: expected {shown_want}, got {shown_have} (difference {fmt(abs(want - have))})."


def _compare_arrays(expected: Any, got: Any, atol: float, rtol: float, at: str) -> str | None:
    kind = "tensor" if isinstance(expected, torch.Tensor) else "array"
    if not is_array(got):
        return f"wrong type{at}: expected a {kind} of shape {tuple(expected.shape)}, got {describe_type(got)}."
    want_shape, got_shape = tuple(expected.shape), tuple(got.shape)
    if want_shape != got_shape:
        advice = _shape_advice(want_shape, got_shape)
        return f"wrong shape{at}: expected {want_shape}, got {got_shape}{advice}."
    problem = _precision_problem(expected, got, at)
    if problem:
        return problem
    if _is_integer(expected) and not _is_integer(got) and not is_bool_dtype(got):
        name = str(_dtype(got)).replace("torch.", "")
        return (f"wrong dtype{at}: expected integers (indices or counts, int64), got {name} values. Keep the "
                "integer result of argmax, topk or //; do not convert it to float.")
    atol, rtol = tolerance_for(got, atol, rtol)
    want, have = to_numpy(expected), to_numpy(got)
    if want.size == 0:
        return None
    if have.dtype.kind in "c" or want.dtype.kind in "c":
        want, have = want.astype(complex), have.astype(complex)
    else:
        want, have = want.astype(np.float64), have.astype(np.float64)
    bad_values = ~np.isfinite(have) & np.isfinite(want)
    if bad_values.any():
        index = _index(np.argwhere(bad_values)[0])
        word = "nan" if np.isnan(have[index]) else "inf"
        return (
            f"wrong values{at}: your output contains {word} ({int(bad_values.sum())} of {have.size} "
            f"elements, the first at index {index}){_NON_FINITE_ADVICE}."
        )
    close = np.isclose(have, want, atol=atol, rtol=rtol, equal_nan=True)
    if close.all():
        return None
    diff = np.where(close, 0.0, np.abs(have - want))
    diff = np.nan_to_num(diff, nan=np.inf)
    first = _index(np.argwhere(~close)[0])
    worst = _index(np.unravel_index(int(np.argmax(diff)), diff.shape))
    shown_want, shown_have = fmt_pair(want[first], have[first])
    return (
        f"wrong values{at}: {int((~close).sum())} of {have.size} elements differ "
        f"(tolerance atol={atol:g}, rtol={rtol:g}).\n"
        f"The first differs at index {first}: expected {shown_want}, got {shown_have}.\n"
        f"Max abs difference {fmt(float(diff[worst]))}, at index {worst}."
    )


def _compare_dicts(expected: Mapping, got: Any, atol: float, rtol: float, where: str) -> str | None:
    at = f" at output{where}" if where else ""
    if not isinstance(got, Mapping):
        return f"wrong type{at}: expected a dict with keys {_keys(expected)}, got {describe_type(got)}."
    missing = [k for k in expected if k not in got]
    extra = [k for k in got if k not in expected]
    if missing:
        return f"missing keys{at}: {_keys(missing)} (expected keys {_keys(expected)})."
    if extra:
        return f"unexpected keys{at}: {_keys(extra)} (expected keys {_keys(expected)})."
    for key in expected:
        problem = compare_values(expected[key], got[key], atol, rtol, f"{where}[{key!r}]")
        if problem:
            return problem
    return None


def _compare_sequences(expected: Sequence, got: Any, atol: float, rtol: float, where: str) -> str | None:
    at = f" at output{where}" if where else ""
    kind = type(expected).__name__
    if not isinstance(got, (list, tuple)):
        return f"wrong type{at}: expected a {kind} of {len(expected)} items, got {describe_type(got)}."
    if len(got) != len(expected):
        return f"wrong length{at}: expected {len(expected)} items, got {len(got)}."
    for i, (want, have) in enumerate(zip(expected, got, strict=True)):
        problem = compare_values(want, have, atol, rtol, f"{where}[{i}]")
        if problem:
            return problem
    return None


def _shape_advice(want: tuple, got: tuple) -> str:
    if len(want) == len(got) and tuple(reversed(got)) == want:
        return " (the axes look swapped)"
    if math.prod(want) == math.prod(got):
        squeezed_want = tuple(d for d in want if d != 1)
        squeezed_got = tuple(d for d in got if d != 1)
        if squeezed_want == squeezed_got:
            return " (an axis of size 1 too many or too few: keepdim, squeeze or unsqueeze?)"
        return " (same number of elements, arranged differently)"
    if len(got) == len(want) - 1:
        return " (one axis too few: did you reduce over an axis you should keep?)"
    return ""


def _index(index: Any) -> tuple[int, ...]:
    return tuple(int(i) for i in index)


def _keys(keys: Any) -> str:
    return "[" + ", ".join(repr(k) for k in keys) + "]"
