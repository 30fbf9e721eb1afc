"""Grade model-written code so that it can neither fool the verdict nor escape onto the machine.

Two processes per candidate, neither of them the harness:
- the candidate program runs sandboxed (ssd/sandbox/serve.py): it executes the model's code and then
  answers calls to its functions over two dedicated pipes, with plain data only (ssd/sandbox/wire.py);
- the benchmark's tests run in a second, trusted process (ssd/sandbox/checker.py), where the names
  under test are proxies that call the candidate. The verdict is the checker's, so no nonce to print,
  no `check` to rebind, and nothing but built-in values to compare: the expected values and the answer
  key never enter the sandbox.

Isolation of the candidate (SSD_SANDBOX or `isolation` picks one; by default the best that works here):
- `bwrap`: bubblewrap: new user, pid, network, ipc, uts and mount namespaces; it sees /usr, /etc, /lib*
  (read-only), its own files at /srv (read-only), size-limited tmpfs /work, /tmp and /dev/shm.
- `ns` (root only): the same namespaces and file system built by ssd/sandbox/launcher.py itself.
- `none`: no isolation at all; only when asked for explicitly (see README "Running generated code").
As root the program also runs under a uid of its own (RLIMIT_NPROC binds) and in a cgroup of its own
where writable (pids.max, a memory cap on all its processes and tmpfs, cgroup.kill). Without root under
bwrap, the process cap is RLIMIT_NPROC set inside the user namespace, where the kernel counts it apart.
After every program, everything it started is killed (ssd/sandbox/cage.py) and the count of survivors
is recorded with the isolation in each result's details: 0 unless containment failed, or null under
`none` without root when the program took its processes out of the harness's sight (`survivors_unseen`).
The checker's code, spec and verdict channel are kept out of a candidate's reach where the OS allows
(ssd/sandbox/seal.py); a program that changed the sandbox's scripts on disk leaves `tampered` in its
details, and the next one is not run.
"""

from __future__ import annotations

import json
import math
import os
import secrets
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass, field, replace
from functools import cache
from pathlib import Path
from typing import Any

from ssd.errors import SSDError
from ssd.sandbox import cgroups, seal
from ssd.sandbox.cage import MIN_ENV, Cage

ISOLATIONS = ("bwrap", "ns", "none")
UID_BASE = 1 << 30  # sandbox uids: UID_BASE + (harness pid % 2**22) * MAX_SLOTS + slot
MAX_SLOTS = 64
HERE = Path(__file__).resolve().parent
REFUSAL = (
    "install bubblewrap (apt-get install bubblewrap) to grade code benchmarks: they run generated code only "
    "in a sandbox, and without bubblewrap none works here unless run as root. SSD_SANDBOX=none would run it "
    "uncontained, with your user's rights: the code could read and change your files (this harness's and "
    "its results included), use the network, kill or trace your processes and forge its own verdict"
)

# The sandbox's own scripts changed on disk (a program graded under `none`, as the harness's user): stop.
TAMPERED = (
    "{} changed on disk while grading: a program graded without a sandbox (benchmark.sandbox or "
    "SSD_SANDBOX none) can change your files, this harness's code and results included; restore them "
    "(git checkout ssd/sandbox, and check the rest of the checkout) and grade under bubblewrap"
)


@dataclass(frozen=True)
class Limits:
    timeout: float = 10.0  # wall-clock seconds for the whole candidate (load and every call)
    memory_bytes: int = 2 << 30  # RLIMIT_AS per process; the cgroup's cap on all of them (+ tmpfs)
    nproc: int = 32  # processes (and threads) of the whole program: cgroup pids.max / RLIMIT_NPROC
    file_bytes: int = 16 << 20  # RLIMIT_FSIZE: any file the program writes, its stdout/stderr included
    tmpfs_bytes: int = 64 << 20  # each of /work, /tmp, /dev/shm in the sandbox
    output_bytes: int = 64 << 10  # kept of each of stdout and stderr
    open_files: int = 256  # RLIMIT_NOFILE

    @property
    def cpu_seconds(self) -> int:
        return max(1, math.ceil(self.timeout))


@dataclass(frozen=True)
class Job:
    """One candidate and its tests: `code` runs sandboxed; `prelude`, then `tests`, run in the checker
    with each name of `remote` bound to the candidate's object of that name."""

    code: str
    tests: str
    remote: tuple[str, ...]
    prelude: str = ""


@dataclass(frozen=True)
class Result:
    passed: bool
    status: str  # passed | failed | timeout | output_limit | sandbox_error
    stdout: str  # the candidate's
    stderr: str
    wall_seconds: float
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Mechanism:
    """How candidates are contained on this machine."""

    isolation: str  # bwrap | ns | none
    drop_uid: bool  # runs under its own uid (harness is root)
    python: str  # the interpreter of candidate and checker
    python_version: str
    bwrap: str = "bwrap"
    sealed: bool = False  # the checker runs an execute-only copy of python: undumpable from its start

    def describe(self) -> dict[str, Any]:
        return {
            "isolation": self.isolation,
            "own_uid": self.drop_uid,
            "python": self.python,
            "python_version": self.python_version,
            "checker_undumpable": "from exec" if self.sealed else "once started",
        }


class _Slots:
    """Concurrent slot numbers of this process (each slot has its own sandbox uid)."""

    def __init__(self) -> None:
        self._free = list(range(MAX_SLOTS))
        self._ready = threading.Condition(threading.Lock())

    def acquire(self) -> int:
        with self._ready:
            while not self._free:
                self._ready.wait()
            return self._free.pop(0)

    def release(self, slot: int) -> None:
        with self._ready:
            self._free.append(slot)
            self._free.sort()
            self._ready.notify()


_SLOTS = _Slots()


def slot_uid(slot: int) -> int:
    return UID_BASE + (os.getpid() % (1 << 22)) * MAX_SLOTS + slot


def _refused(changed: list[str], mech: Mechanism) -> Result:
    reason = f"not run: {', '.join(changed)} changed on disk since this process started"
    details = {**mech.describe(), "status": "sandbox_error", "reason": reason, "tampered": changed}
    return Result(False, "sandbox_error", "", "", 0.0, details | {"survivors": 0})


def _run_one(job: Job, limits: Limits, mech: Mechanism) -> Result:
    changed = seal.tampered()  # checked before and after every program (ssd/sandbox/seal.py)
    if changed:
        return _refused(changed, mech)
    slot = _SLOTS.acquire()
    uid = slot_uid(slot) if mech.drop_uid else None
    hostdir = tempfile.mkdtemp(prefix=f"{seal.PREFIX}{os.getpid()}-")  # the pid: see seal.sweep
    cage = Cage(mech, limits, hostdir, uid, f"ssd-sandbox-{os.getpid()}-{slot}-{secrets.token_hex(4)}")
    try:
        os.chmod(hostdir, 0o755)
        for name, text in (("candidate.py", job.code), ("wire.py", seal.source("wire.py"))):
            Path(hostdir, name).write_text(text, encoding="utf-8")
        Path(hostdir, "serve.py").write_text(seal.source("serve.py"), encoding="utf-8")
        temp = tempfile.TemporaryFile
        with temp() as out, temp() as err, temp() as cerr:
            start = time.perf_counter()
            try:
                verdict, timed_out = _exchange(job, limits, mech, cage, (out, err, cerr))
            except OSError as e:  # an interpreter or bwrap that cannot be started
                verdict, timed_out = {"passed": False, "reason": f"sandbox could not start: {e}"}, False
                err.write(f"ssd-sandbox: launch failed: {e}\n".encode())
            wall = time.perf_counter() - start
            contained = cage.stop()
            stdout, stdout_size = _read(out, limits.output_bytes)
            stderr, stderr_size = _read(err, limits.output_bytes)
        status = _status(verdict, timed_out, stderr, max(stdout_size, stderr_size), limits)
        details = {**mech.describe(), **cage.describe(), **contained, "status": status}
        if not verdict.get("passed"):
            details["reason"] = str(verdict.get("reason", ""))[:1000]
        if seal.tampered():
            details["tampered"] = seal.tampered()
        return Result(status == "passed", status, stdout, stderr, wall, details)
    finally:
        cage.stop()  # a second stop does nothing; a first one here means an exception above
        shutil.rmtree(hostdir, ignore_errors=True)
        _SLOTS.release(slot)


def _exchange(job: Job, limits: Limits, mech: Mechanism, cage: Cage, files: tuple) -> tuple[dict, bool]:
    """Start the candidate and the checker, joined by two pipes (and a socket for the verdict); (verdict,
    timed out)."""
    out, err, cerr = files
    start = time.perf_counter()
    request_r, request_w = os.pipe()
    reply_r, reply_w = os.pipe()
    verdict_r, verdict_w = (s.detach() for s in socket.socketpair())  # not openable via /proc/PID/fd
    spec = {"prelude": job.prelude, "tests": job.tests, "remote": list(job.remote)}
    bundle = seal.sealed(json.dumps({"wire": seal.source("wire.py"), "spec": spec}).encode())
    try:
        nproc = limits.nproc if mech.isolation == "bwrap" and cage.uid is None else 0
        server = [mech.python, "-I", "/srv/serve.py", str(request_r), str(reply_w), str(nproc)]
        cage.start(server, (request_r, reply_w), out, err)
        for fd in (request_r, reply_w):
            os.close(fd)
        request_r = reply_w = -1
        argv, env, fds = _checker(mech, (reply_r, request_w, verdict_w))
        checker = subprocess.Popen(
            argv, stdin=bundle, stdout=subprocess.DEVNULL, stderr=cerr, cwd="/", env=env, pass_fds=fds
        )
        for fd in (reply_r, request_w, verdict_w, bundle):
            os.close(fd)
        reply_r = request_w = verdict_w = bundle = -1
        cage.find_init(wait=limits.timeout)
        left = max(0.01, limits.timeout - (time.perf_counter() - start))
        # Readable once the checker wrote its verdict or ended (polling wait(timeout) would be slower).
        timed_out = not select.select([verdict_r], [], [], left)[0]
        if timed_out:
            checker.kill()
        checker.wait()
        os.set_blocking(verdict_r, False)  # what the checker wrote before it ended, never more
        data = b""
        with suppress(BlockingIOError):
            while chunk := os.read(verdict_r, 1 << 16):
                data += chunk
        return _verdict(data, cerr), timed_out
    finally:
        for fd in (request_r, request_w, reply_r, reply_w, verdict_r, verdict_w, bundle):
            if fd >= 0:
                os.close(fd)


def _checker(mech: Mechanism, fds: tuple[int, ...]) -> tuple[list[str], dict[str, str], tuple[int, ...]]:
    """The checker's command line, environment and inherited fds: its code from this process's memory."""
    code = ["-c", seal.source("checker.py"), *map(str, fds), str(os.getpid())]
    if not mech.sealed:
        return [mech.python, "-I", "-S", *code], MIN_ENV, fds
    python = seal.interpreter(mech.python)  # its home cannot be found from /proc/self/exe: PYTHONHOME
    home = str(Path(mech.python).parent.parent)
    return [f"/proc/self/fd/{python}", "-s", "-S", *code], {**MIN_ENV, "PYTHONHOME": home}, (*fds, python)


def _verdict(data: bytes, checker_stderr: Any) -> dict[str, Any]:
    try:
        verdict = json.loads(data)
        if type(verdict) is dict and type(verdict.get("passed")) is bool:
            return verdict
    except ValueError:
        pass
    text, _ = _read(checker_stderr, 2000)
    return {"passed": False, "reason": f"checker gave no verdict: {text[-1000:]}"}


def _read(f: Any, cap: int) -> tuple[str, int]:
    """(first `cap` bytes decoded, size) of an output file."""
    size = os.fstat(f.fileno()).st_size
    f.seek(0)
    return f.read(cap).decode("utf-8", errors="replace"), size


def _status(verdict: dict[str, Any], timed_out: bool, stderr: str, size: int, limits: Limits) -> str:
    if verdict.get("passed"):
        return "passed"
    if stderr.startswith("ssd-sandbox: launch failed"):
        return "sandbox_error"
    if size >= limits.file_bytes:
        return "output_limit"
    if timed_out:
        return "timeout"
    return "failed"


def _candidates() -> list[str]:
    found = [os.path.realpath(sys.executable)]
    for name in ("/usr/bin/python3", "/usr/local/bin/python3"):
        if os.path.exists(name) and os.path.realpath(name) not in found:
            found.append(os.path.realpath(name))
    return found


PROBE = Job(code="def one():\n    return 1", tests="assert one() == 1", remote=("one",))


def _probe(mech: Mechanism) -> str | None:
    """None if a trivial candidate serves a call under `mech`, else why not."""
    result = _run_one(PROBE, Limits(timeout=30.0), mech)
    if result.passed:
        return None
    return f"{result.status}: {result.details.get('reason', '')} {result.stderr[-300:]}".strip()


def mechanism(isolation: str | None = None) -> Mechanism:
    """The containment to use (the best that works, or the one asked for, else SSD_SANDBOX's); SSDError if
    none works. Probed once per process and isolation.

    Without root and without bubblewrap, nothing contains a program: that is refused unless asked for
    with isolation 'none' (or SSD_SANDBOX=none)."""
    return _mechanism(isolation or os.environ.get("SSD_SANDBOX") or None)


@cache
def _mechanism(isolation: str | None) -> Mechanism:
    if isolation is not None and isolation not in ISOLATIONS:
        raise SSDError(f"unknown sandbox isolation {isolation!r}: choose one of {', '.join(ISOLATIONS)}")
    if seal.tampered():
        raise SSDError(TAMPERED.format(", ".join(seal.tampered())))
    root = os.geteuid() == 0
    seal.sweep()  # the sandbox folders and cgroups of harnesses that were killed
    cgroups.sweep(seal.PREFIX, seal.alive)
    wanted = [isolation] if isolation else ["bwrap", "ns"]
    why = []
    for iso in wanted:
        bwrap = shutil.which("bwrap") or ""
        if iso == "bwrap" and not bwrap:
            why.append("bwrap: not installed")
            continue
        if iso == "ns" and not root:
            why.append("ns: needs root")
            continue
        shared = iso == "none" and not root  # the candidate runs as this process's own user
        if shared:
            seal.undumpable()
        seals = (True, False) if shared else (False,)  # an undumpable checker first, where it matters
        variants = [(python, sealed) for python in _candidates() for sealed in seals]
        for python, sealed in variants:
            mech = Mechanism(iso, root, python, python_version(python), bwrap, sealed)
            reason = _probe(mech)
            if reason is None:
                return mech
            why.append(f"{iso} with {python}{' (sealed)' * sealed}: {reason}")
    if isolation is None and not root and not shutil.which("bwrap"):
        raise SSDError(REFUSAL)
    raise SSDError(f"no sandbox works here ({'; '.join(why)[:600]}): {REFUSAL}")


@cache
def python_version(python: str) -> str:
    run = subprocess.run([python, "-I", "-S", "-c", "import sys; print(sys.version.split()[0])"], **_QUIET)
    return run.stdout.strip()


_QUIET: dict[str, Any] = {"capture_output": True, "text": True, "timeout": 30, "env": MIN_ENV}


def grade(
    jobs: list[Job],
    timeout: float = 10.0,
    *,
    workers: int | None = None,
    limits: Limits | None = None,
    isolation: str | None = None,
) -> list[Result]:
    """Grade each job (candidate sandboxed, tests in a checker), `workers` at a time; results in order."""
    limits = replace(limits or Limits(), timeout=timeout)
    mech = mechanism(isolation)
    workers = max(1, min(workers or os.cpu_count() or 1, MAX_SLOTS, len(jobs) or 1))
    if workers == 1:
        return [_run_one(j, limits, mech) for j in jobs]
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sandbox") as pool:
        return list(pool.map(lambda j: _run_one(j, limits, mech), jobs))
