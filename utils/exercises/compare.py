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

# The smallest (atol, rtol) that is fair to a result held in each floating-point width.
PRECISION_FLOOR = {
    torch.float32: (1e-6, 1e-5),
    torch.float16: (1e-3, 1e-2),
    torch.bfloat16: (1e-2, 2e-2),
    np.dtype(np.float32): (1e-6, 1e-5),
    np.dtype(np.float16): (1e-3, 1e-2),
}

_NON_FINITE_ADVICE = " - look for a division by zero, a log of 0 or an overflow"


def tolerance_for(got: Any, atol: float, rtol: float) -> tuple[float, float]:
    """(atol, rtol) widened to the precision of `got`'s number type (float32, float16, bfloat16)."""
    dtype = getattr(got, "dtype", None)
    if isinstance(got, np.floating):
        dtype = np.dtype(type(got))
    floor = PRECISION_FLOOR.get(dtype) if dtype is not None else None
    if floor is None:
        return atol, rtol
    return max(atol, floor[0]), max(rtol, floor[1])


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
