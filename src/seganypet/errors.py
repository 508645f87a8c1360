"""The one exception type that means "the user gave us something we cannot use"."""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable


class InputError(Exception):
    """A bad input: the message says what is wrong and what to do about it.

    The command line prints the message on one line and exits non-zero, with no traceback.
    """


def plain(value: object) -> str:
    """A number, or a sequence or array of them, as a person writes it: ``10``, ``-44.5``,
    ``[0, 2.5, nan]``; never ``np.float64(10.0)``."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        number = float(value)
        if math.isfinite(number) and number == int(number) and abs(number) < 1e15:
            return str(int(number))
        return f"{number:.6g}"
    if isinstance(value, str):
        return value
    if hasattr(value, "tolist"):
        return plain(value.tolist())
    if isinstance(value, Iterable):
        inner = ", ".join(plain(item) for item in value)
        return f"({inner})" if isinstance(value, tuple) else f"[{inner}]"
    return str(value)
