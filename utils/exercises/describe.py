"""Describing values in words, deterministically: the vocabulary every check message is written in.

Nothing here depends on the exercise being graded. Every function returns the same text for the same
value (no memory addresses, no timings), so that stored notebook outputs stay stable.
"""

from __future__ import annotations

import math
import os
import re
import traceback
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from utils.runtime import to_numpy

SMALL_TENSOR = 16  # tensors with at most this many elements are shown value by value in messages
PACKAGE_DIR = Path(__file__).resolve().parents[1]


# -- what kind of value is it --------------------------------------------------------------------


def is_array(x: Any) -> bool:
    """A torch tensor or a NumPy array."""
    return isinstance(x, (torch.Tensor, np.ndarray))


def ndim(x: Any) -> int:
    return x.dim() if isinstance(x, torch.Tensor) else x.ndim


def numel(x: Any) -> int:
    return x.numel() if isinstance(x, torch.Tensor) else x.size


def is_bool_dtype(x: Any) -> bool:
    return x.dtype == torch.bool if isinstance(x, torch.Tensor) else x.dtype == np.bool_


def is_scalar(x: Any) -> bool:
    """A Python or NumPy number, or a 0-dimensional array."""
    if isinstance(x, (bool, int, float, np.number, np.bool_)):
        return True
    return is_array(x) and ndim(x) == 0


def is_boolish(x: Any) -> bool:
    return isinstance(x, (bool, np.bool_)) or (is_array(x) and is_bool_dtype(x))


def scalar(x: Any) -> Any:
    """The Python number inside a scalar of any kind."""
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().item()
    if isinstance(x, np.ndarray):
        return x.item()
    return x


# -- numbers -------------------------------------------------------------------------------------


def fmt(x: Any, digits: int = 4) -> str:
    """A number in `digits` significant digits; whole numbers without a decimal point."""
    if isinstance(x, (complex, np.complexfloating)):
        return f"{complex(x):.{digits}g}"
    value = float(x)
    if math.isfinite(value) and value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.{digits}g}"


def fmt_pair(want: Any, have: Any) -> tuple[str, str]:
    """Both numbers with just enough digits that two different values never print the same."""
    for digits in range(4, 18):
        shown = fmt(want, digits), fmt(have, digits)
        if shown[0] != shown[1] or complex(want) == complex(have):
            return shown
    return fmt(want, 17), fmt(have, 17)


# -- values --------------------------------------------------------------------------------------


def describe_type(x: Any) -> str:
    """What kind of thing `x` is, in words: 'a tensor of shape (3, 2)', 'a number (0.5)', ..."""
    if x is None:
        return "None (did you forget to return?)"
    if x is Ellipsis:
        return "... (not answered yet)"
    if isinstance(x, torch.Tensor):
        return f"a tensor of shape {tuple(x.shape)}"
    if isinstance(x, np.ndarray):
        return f"a NumPy array of shape {x.shape}"
    if isinstance(x, (bool, np.bool_)):
        return f"a bool ({bool(x)})"
    if isinstance(x, int):
        return f"an int ({x})"
    if isinstance(x, float):
        return f"a float ({x!r})" if x.is_integer() else f"a float ({fmt(x)})"
    if isinstance(x, np.number):
        return f"a NumPy {type(x).__name__} ({fmt(x)})"
    if isinstance(x, str):
        return f"a string ({short(x)})"
    if isinstance(x, (list, tuple, dict)):
        return f"a {type(x).__name__} of {len(x)} items"
    return f"a {type(x).__name__}"


def short(x: Any, depth: int = 0, digits: int = 4) -> str:
    """A short description of a value for messages: small tensors value by value, big ones by range."""
    if x is Ellipsis:
        return "... (not answered yet)"
    if isinstance(x, torch.Tensor):
        dtype = str(x.dtype).replace("torch.", "")
        return _array_text(f"tensor of shape {tuple(x.shape)}, {dtype}", x, digits)
    if isinstance(x, np.ndarray):
        return _array_text(f"array of shape {x.shape}, {x.dtype}", x, digits)
    if isinstance(x, (bool, np.bool_)):
        return str(bool(x))
    if isinstance(x, (int, float, np.number)):
        return fmt(x, digits)
    if isinstance(x, str):
        return repr(x) if len(x) <= 60 else repr(x[:57]) + "..."
    if isinstance(x, Mapping):
        if depth > 1:
            return f"dict of {len(x)} items"
        items = [f"{k!r}: {short(v, depth + 1)}" for k, v in list(x.items())[:6]]
        return "{" + ", ".join(items) + (", ..." if len(x) > 6 else "") + "}"
    if isinstance(x, (list, tuple)):
        if depth > 1 or len(x) > 8:
            inner = ", ".join(short(v, 2) for v in list(x)[:3])
            return f"{type(x).__name__} of {len(x)} items [{inner}, ...]" if len(x) > 3 else f"[{inner}]"
        inner = ", ".join(short(v, depth + 1) for v in x)
        return f"({inner}{',' if len(x) == 1 else ''})" if isinstance(x, tuple) else f"[{inner}]"
    if isinstance(x, torch.nn.Module):
        count = sum(p.numel() for p in x.parameters())
        return f"{type(x).__name__} module ({count:,} parameters)"
    if callable(x):
        return f"function {getattr(x, '__name__', type(x).__name__)}"
    try:
        text = repr(x)
    except Exception:
        text = f"a {type(x).__name__}"
    return re.sub(r" at 0x[0-9a-fA-F]+", "", text)[:80]


def short_pair(expected: Any, got: Any) -> tuple[str, str]:
    """`short` of both values, with just enough digits that different values never print the same."""
    shown = short(expected), short(got)
    if shown[0] != shown[1] or not (is_array(expected) or is_scalar(expected)):
        return shown
    for digits in range(5, 13):
        finer = short(expected, digits=digits), short(got, digits=digits)
        if finer[0] != finer[1]:
            return finer
    return shown


def _array_text(head: str, x: Any, digits: int = 4) -> str:
    values = to_numpy(x)
    if values.size == 0:
        return head
    if values.size <= SMALL_TENSOR:
        text = np.array2string(values, precision=digits, separator=", ", suppress_small=digits <= 4,
                               max_line_width=90)
        return f"{head}\n{text}" if "\n" in text else f"{head}: {text}"
    if values.dtype.kind in "biuf":
        finite = values[np.isfinite(values)] if values.dtype.kind == "f" else values
        if finite.size:
            low, high = fmt(finite.min(), digits), fmt(finite.max(), digits)
            return f"{head}, values from {low} to {high}"
    return head


# -- layout --------------------------------------------------------------------------------------


def labelled(label: str, text: str) -> str:
    """'  expected: ...' with continuation lines aligned under the text."""
    prefix = f"  {label + ':':<10}"
    return indent(text, " " * len(prefix), first=prefix)


def indent(text: str, pad: str, first: str | None = None) -> str:
    lines = text.splitlines() or [""]
    head = (pad if first is None else first) + lines[0]
    return "\n".join([head] + [pad + line for line in lines[1:]])


# -- errors --------------------------------------------------------------------------------------


def learner_line(error: BaseException) -> str:
    """'line 3 of your code: return a @ b' for the deepest frame of the learner's own code, or ''."""
    library_roots = (str(PACKAGE_DIR), "site-packages", "dist-packages", os.path.dirname(os.__file__))
    frames = [
        frame for frame in traceback.extract_tb(error.__traceback__)
        if not any(root in frame.filename for root in library_roots)
    ]
    if not frames:
        return ""
    frame = frames[-1]
    code = (frame.line or "").strip()
    return f"line {frame.lineno} of your code: {code}" if code else f"line {frame.lineno} of your code"


IN_PLACE_ON_LEAF = "a leaf Variable that requires grad is being used in an in-place operation"


def error_advice(error: BaseException) -> str:
    """A sentence on a common cause of `error`, or '' when none applies."""
    text = str(error)
    if IN_PLACE_ON_LEAF in text or "modified by an inplace operation" in text:
        return ("An operation changed a tensor in place (a method ending in _ such as div_, or x /= ...). "
                "Autograd needs the original values: write x = x / ... instead.")
    if isinstance(error, RuntimeError) and "does not require grad and does not have a grad_fn" in text:
        return ("Your result is not connected to the inputs through autograd: .item(), float(), "
                "torch.tensor(...), NumPy or .detach() cut the graph. Keep every step a torch operation.")
    return ""
