"""The trusted grader: runs a benchmark's tests against a candidate that lives in another process.

Stdlib only, run from the harness's in-memory copy of this file (ssd/sandbox/seal.py) as
`python -I -S -c <this file> REPLY_FD REQUEST_FD VERDICT_FD HARNESS_PID`, with a sealed memfd on stdin
holding {"wire": <wire.py>, "spec": {"prelude": code, "remote": [names], "tests": code}}. The prelude
(HumanEval: the prompt's helpers and `check`; MBPP: nothing) runs here; then each name in `remote` is
bound to a proxy for the candidate's object of that name, and `tests` run. The verdict, one JSON line on
VERDICT_FD (a socket), is {"passed": true} if the tests ran to their end, else {"passed": false,
"reason": ...}. Calls cross as plain data only (ssd/sandbox/wire.py), so the candidate cannot see the
expected values nor return anything but built-in values to compare them with. First of all the checker
makes itself undumpable (out of reach of the candidate's user, ssd/sandbox/seal.py) and dies with the
harness.
"""

from __future__ import annotations

import builtins
import json
import os
import sys
from typing import Any


def _guard(harness: int) -> None:
    """Undumpable (PR_SET_DUMPABLE 0), and killed with the harness (PR_SET_PDEATHSIG SIGKILL; if the
    harness died already, end now)."""
    import ctypes
    import signal

    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(4, 0, 0, 0, 0)
    libc.prctl(1, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != harness:
        os._exit(1)


# The wire module's names (NotPlain, decode, dumps, encode, read_message) are set by _load_wire.


def _load_wire(source: str) -> None:
    """The wire module from the harness's copy of wire.py (never from a file a candidate could change)."""
    import types

    module = types.ModuleType("ssd_wire")
    exec(compile(source, "wire.py", "exec"), module.__dict__)
    global NotPlain, decode, dumps, encode, read_message
    NotPlain, decode, dumps = module.NotPlain, module.decode, module.dumps
    encode, read_message = module.encode, module.read_message


class CandidateError(Exception):
    """The candidate raised an exception of a type that is not a built-in one (or its process ended)."""


class Remote:
    """The candidate's global `name`: calling it calls the candidate; passing it passes a reference."""

    __slots__ = ("_name", "_replies", "_requests")

    def __init__(self, name: str, replies: Any, requests: Any) -> None:
        self._name, self._replies, self._requests = name, replies, requests

    def __repr__(self) -> str:
        return f"<candidate's {self._name}>"

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        message = {
            "name": self._name,
            "args": [_argument(a) for a in args],
            "kwargs": {k: _argument(v) for k, v in kwargs.items()},
        }
        self._requests.write(dumps(message))
        try:
            reply = read_message(self._replies)
        except EOFError:
            raise CandidateError("the candidate's process ended during a call") from None
        if set(reply) == {"ok"}:
            return decode(reply["ok"])
        raise _exception(reply)


def _argument(value: Any) -> Any:
    return {"ref": value._name} if type(value) is Remote else encode(value)


def _exception(reply: dict[str, Any]) -> Exception:
    """The candidate's exception as one the tests can catch: the built-in type of that name, if any."""
    text = str(reply.get("error", "malformed reply"))[:1000]
    kind = getattr(builtins, str(reply.get("type", "")), None)
    if isinstance(kind, type) and issubclass(kind, Exception) and kind.__module__ == "builtins":
        try:
            return kind(text)
        except Exception:  # noqa: BLE001 - a built-in that wants other arguments
            pass
    return CandidateError(text)


def verdict(spec: dict[str, Any], replies: Any, requests: Any) -> dict[str, Any]:
    try:
        hello = read_message(replies)
    except (EOFError, NotPlain) as e:
        return {"passed": False, "reason": f"candidate did not start: {e}"}
    if hello != {"ready": True}:
        return {"passed": False, "reason": f"candidate program failed: {str(hello.get('error'))[:1000]}"}
    namespace: dict[str, Any] = {"__name__": "__main__"}
    try:
        exec(compile(spec["prelude"], "prelude.py", "exec"), namespace)
        for name in spec["remote"]:
            namespace[name] = Remote(name, replies, requests)
        exec(compile(spec["tests"], "tests.py", "exec"), namespace)
    except BaseException as e:  # noqa: BLE001 - any way the tests end early is a failure
        return {"passed": False, "reason": f"{type(e).__name__}: {str(e)[:1000]}"}
    return {"passed": True}


def main() -> None:
    reply_fd, request_fd, verdict_fd, harness = (int(a) for a in sys.argv[1:5])
    _guard(harness)
    bundle = json.loads(sys.stdin.buffer.read())
    _load_wire(bundle["wire"])
    replies = os.fdopen(reply_fd, "rb")
    requests = os.fdopen(request_fd, "wb", buffering=0)
    result = verdict(bundle["spec"], replies, requests)
    os.write(verdict_fd, json.dumps(result).encode() + b"\n")


if __name__ == "__main__":
    main()
