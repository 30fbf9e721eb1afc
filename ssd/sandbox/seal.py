"""What keeps the verdict out of a candidate's reach where the OS allows it, above all under `none`
without root, where the candidate runs as the harness's own user: it may then open /proc/PID/fd of,
signal and (without Yama's ptrace restrictions) ptrace every process of that user, and change its files.

- The sandbox's scripts run from copies read into memory when this module is imported, never from their
  files again: a candidate that rewrites ssd/sandbox/checker.py does not change what grades the next one.
  `tampered()` compares the files with those copies around every program, so that the harness stops
  (ssd/benchmarks/humaneval.py) instead of carrying on in a checkout a candidate has changed.
- The checker reads the test spec and the wire module from a sealed memfd (nobody can write, grow or
  shrink it), and writes its verdict to a socket, which no one can open through /proc/PID/fd.
- The checker is not dumpable (it sets PR_SET_DUMPABLE 0 first thing), so the same user can no longer
  open its /proc/PID/fd, mem or environ, nor ptrace it. Under `none` without root it is not dumpable from
  its very first instruction: its interpreter is executed from an execute-only sealed memfd (`interpreter`),
  and Linux never makes a process dumpable that runs a program it may not read. The harness makes itself
  undumpable too (`undumpable`) once it grades under `none` without root.
- Sandbox folders are named `ssd-sandbox-<harness pid>-*`; those of a harness that died (SIGKILL) are
  removed by the next one to start (`sweep`).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil
import tempfile
from contextlib import suppress
from functools import cache
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCRIPTS = {name: (HERE / name).read_bytes() for name in ("launcher.py", "serve.py", "checker.py", "wire.py")}
_DIGESTS = {name: hashlib.sha256(data).digest() for name, data in SCRIPTS.items()}
F_ADD_SEALS, F_SEAL_SEAL, F_SEAL_SHRINK, F_SEAL_GROW, F_SEAL_WRITE, F_SEAL_EXEC = 1033, 1, 2, 4, 8, 0x20
PR_SET_DUMPABLE = 4
PREFIX = "ssd-sandbox-"


def source(name: str) -> str:
    """The in-memory copy of one of the sandbox's scripts."""
    return SCRIPTS[name].decode("utf-8")


def tampered() -> list[str]:
    """The sandbox's scripts whose files no longer hold what this process read at import."""
    changed = []
    for name, digest in _DIGESTS.items():
        try:
            same = hashlib.sha256((HERE / name).read_bytes()).digest() == digest
        except OSError:
            same = False
        if not same:
            changed.append(f"ssd/sandbox/{name}")
    return changed


def sealed(data: bytes, name: str = "ssd-sandbox") -> int:
    """A memfd holding `data` (offset 0) that nobody can change any more: write, grow, shrink sealed."""
    fd = os.memfd_create(name, os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.lseek(fd, 0, os.SEEK_SET)
        fcntl.fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE)
        return fd
    except BaseException:
        os.close(fd)
        raise


@cache
def interpreter(python: str) -> int:
    """An execute-only (mode 0111), sealed copy of `python` in memory, kept for this process's life: a
    process running it is not dumpable from its start, as it may not read its own program."""
    with open(python, "rb") as f:
        fd = sealed(f.read(), "ssd-checker-python")
    os.fchmod(fd, 0o111)
    with suppress(OSError):  # Linux >= 6.3: the mode cannot be changed back either
        fcntl.fcntl(fd, F_ADD_SEALS, F_SEAL_EXEC | F_SEAL_SEAL)
    return fd


def undumpable() -> None:
    """Make this process undumpable: the same user can no longer ptrace it or open its /proc/PID/fd, mem
    and environ (the process loses its own /proc/self/environ and clear_refs with it)."""
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)


def alive(pid: int) -> bool:
    """Whether a process of that pid exists (another user's counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep(folder: str | None = None) -> list[str]:
    """Remove the sandbox folders (this user's) of harnesses that are no longer alive; what was removed."""
    folder = folder or tempfile.gettempdir()
    removed = []
    try:
        entries = os.listdir(folder)
    except OSError:
        return removed
    for entry in entries:
        match = re.fullmatch(re.escape(PREFIX) + r"(\d+)-.+", entry)
        path = os.path.join(folder, entry)
        try:
            owner = os.lstat(path).st_uid if os.path.isdir(path) and not os.path.islink(path) else None
        except OSError:
            continue
        if match and owner == os.geteuid() and not alive(int(match[1])):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed
