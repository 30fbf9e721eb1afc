"""The trusted grader: runs a benchmark's tests against a candidate that lives in another process.

Stdlib only, run as `python -I checker.py REPLY_FD REQUEST_FD VERDICT_FD` with a JSON spec on stdin:
{"prelude": code, "remote": [names], "tests": code}. The prelude (HumanEval: the prompt's helpers and
`check`; MBPP: nothing) runs here; then each name in `remote` is bound to a proxy for the candidate's
object of that name, and `tests` run. The verdict, one JSON line on VERDICT_FD, is {"passed": true} if the
tests ran to their end, else {"passed": false, "reason": ...}. Calls cross as plain data only
(ssd/sandbox/wire.py), so the candidate cannot see the expected values nor return anything but
built-in values to compare them with.
"""

from __future__ import annotations

import builtins
import json
import os
import sys
from typing import Any


def _wire() -> Any:
    """wire.py from next to this file, without putting this folder on sys.path (where it would shadow
    modules of the standard library, or of the code run here, by name)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "ssd_wire", os.path.join(os.path.dirname(__file__), "wire.py")
    )
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


_w = _wire()
NotPlain, decode, dumps, encode, read_message = _w.NotPlain, _w.decode, _w.dumps, _w.encode, _w.read_message


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
    reply_fd, request_fd, verdict_fd = (int(a) for a in sys.argv[1:4])
    spec = json.load(sys.stdin)
    replies = os.fdopen(reply_fd, "rb")
    requests = os.fdopen(request_fd, "wb", buffering=0)
    result = verdict(spec, replies, requests)
    os.write(verdict_fd, json.dumps(result).encode() + b"\n")


if __name__ == "__main__":
    main()
