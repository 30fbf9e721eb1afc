"""User-facing errors: one line that says what is wrong and how to fix it."""

from __future__ import annotations

import sys
from typing import NoReturn


class SSDError(Exception):
    """Bad input or environment. The runner prints it as a single line, without a traceback."""


def fail(error: SSDError) -> NoReturn:
    """The one way a user error ends a program (runner, reports): one line on stderr, exit status 2."""
    print("error: " + " ".join(str(error).split()), file=sys.stderr, flush=True)
    sys.exit(2)
