"""Inside the sandbox: run the candidate program, then answer calls to its functions with plain data.

Stdlib only, run as `python -I serve.py REQUEST_FD REPLY_FD NPROC` next to wire.py and candidate.py.
The protocol has its own pipes (not stdin/stdout, which the candidate may close or print to). Everything
here runs in the candidate's process and may be rewritten by it: that is fine, because all it can send
is JSON that the grader decodes to plain data (ssd/sandbox/wire.py); the tests and expected values
never come here, only the arguments of each call.

Messages: first {"ready": true} (or {"error": ...} if the program failed), then per request
{"name": N, "args": [...], "kwargs": {...}} a reply {"ok": value} or {"error": "...", "type": "..."}.
An argument {"ref": N} stands for the candidate's own global N (an object built by the test setup code).
"""

from __future__ import annotations

import builtins
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


def _argument(value: Any, namespace: dict[str, Any]) -> Any:
    if type(value) is dict and set(value) == {"ref"}:
        return namespace[value["ref"]]
    return decode(value)


def _error(e: BaseException) -> dict[str, Any]:
    return {"error": f"{type(e).__name__}: {str(e)[:1000]}", "type": type(e).__name__}


def _answer(request: dict[str, Any], namespace: dict[str, Any]) -> dict[str, Any]:
    try:
        function = namespace[request["name"]]
        args = [_argument(a, namespace) for a in request["args"]]
        kwargs = {k: _argument(v, namespace) for k, v in request["kwargs"].items()}
        result = function(*args, **kwargs)
        return {"ok": encode(result)}
    except BaseException as e:  # noqa: BLE001 - SystemExit and KeyboardInterrupt are answers too
        return _error(e)


def main() -> None:
    request_fd, reply_fd, nproc = (int(a) for a in sys.argv[1:4])
    if nproc > 0:  # counted per user namespace (Linux >= 5.14): binds even when this uid is the harness's
        import resource

        resource.setrlimit(resource.RLIMIT_NPROC, (nproc, nproc))
    requests = os.fdopen(request_fd, "rb")
    replies = os.fdopen(reply_fd, "wb", buffering=0)
    os.set_inheritable(request_fd, False)
    os.set_inheritable(reply_fd, False)
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "candidate.py")
    with open(path, encoding="utf-8") as f:
        source = f.read()
    namespace: dict[str, Any] = {"__name__": "__main__", "__builtins__": builtins}
    try:
        exec(compile(source, "main.py", "exec"), namespace)
    except BaseException as e:  # noqa: BLE001
        replies.write(dumps(_error(e)))
        return
    replies.write(dumps({"ready": True}))
    while True:
        try:
            request = read_message(requests)
        except (EOFError, NotPlain):
            return
        replies.write(dumps(_answer(request, namespace)))


if __name__ == "__main__":
    main()
