"""What values a schema field accepts beyond its type: declared next to the field (ssd/config.py), checked
when a job's config is composed (ssd/validate.py), so a value outside its meaning never runs silently.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Bounds:
    """An interval (open or closed at each end) a finite number must lie in; `null` where `nullable`."""

    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False
    nullable: bool = False

    def holds(self, value: Any) -> bool:
        if value is None:
            return self.nullable
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return False
        if self.lo is not None and (value <= self.lo if self.lo_open else value < self.lo):
            return False
        return self.hi is None or (value < self.hi if self.hi_open else value <= self.hi)

    def describe(self) -> str:
        if self.lo is None and self.hi is None:
            text = "any number"
        elif self.hi is None:
            text = f"{'>' if self.lo_open else '>='} {self.lo:g}"
        elif self.lo is None:
            text = f"{'<' if self.hi_open else '<='} {self.hi:g}"
        else:
            text = f"in {'(' if self.lo_open else '['}{self.lo:g}, {self.hi:g}{')' if self.hi_open else ']'}"
        return text + (" or null" if self.nullable else "")


@dataclass(frozen=True)
class Choices:
    """A string field with a fixed set of values, or values matching `pattern` (e.g. `cuda:N`)."""

    values: tuple[str, ...]
    pattern: str | None = None  # a regular expression, with `hint` saying it in words
    hint: str = ""

    def holds(self, value: Any) -> bool:
        if value in self.values:
            return True
        if self.pattern is None or not isinstance(value, str):
            return False
        return re.fullmatch(self.pattern, value) is not None

    def describe(self) -> str:
        return "one of " + ", ".join([*self.values, *([self.hint] if self.hint else [])])


@dataclass(frozen=True)
class Free:
    """A field whose every value of its type has a meaning (declared, so no field is left unchecked)."""

    why: str

    def holds(self, value: Any) -> bool:
        return True

    def describe(self) -> str:
        return f"any value ({self.why})"


Check = Bounds | Choices | Free

# The common ones, by meaning.
POSITIVE_INT = Bounds(lo=1)
NON_NEGATIVE = Bounds(lo=0)
POSITIVE = Bounds(lo=0, lo_open=True)
PROBABILITY = Bounds(lo=0, hi=1)
FRACTION = Bounds(lo=0, hi=1, lo_open=True)  # (0, 1]
DTYPES = Choices(("auto", "float32", "bfloat16", "float16"))


def knob(default: Any, check: Check) -> Any:
    """A dataclass field with its default and what values it accepts (read by `check_of`)."""
    return dataclasses.field(default=default, metadata={"check": check})


def check_of(f: dataclasses.Field) -> Check | None:
    return f.metadata.get("check")
