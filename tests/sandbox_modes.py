"""The sandbox's modes for the adversarial suite: which this machine can create, a hard cap of the test's
own around each driver, and the table of outcomes (`python tests/sandbox_modes.py`).

Modes: as root with bubblewrap (`root-bwrap`), with the launcher's own namespaces (`root-ns`) and
uncontained (`root-none`); as an unprivileged user (SSD_TEST_USER, default `ssdtest`, created by .ci/run)
with bubblewrap (`user-bwrap`) and uncontained (`user-none`); without root, the user modes run as the
current user. Under `none` only the controls and the forgeries run: that mode contains nothing, so the
harmful ones would hit this machine.

Every driver runs from a copy of the sandbox package and of the HumanEval answer key (written as `make
data` writes it), owned by the user it runs as, as a user owns their checkout: what a program under
`none` changes or reads is that copy, never this checkout.

Every driver (tests/adversary.py) runs under a hard cap set before anything starts, so that a
containment regression fails a test instead of exhausting the machine: as root, a cgroup (pids.max,
memory limit; the sandbox's groups nest inside it); for the unprivileged user, also RLIMIT_NPROC on its
dedicated uid; without root, RLIMIT_NPROC of the current user (its tasks, threads included, now + a
margin). A root mode runs only where the cgroup sets both pids.max and a memory limit. Without a cgroup
(not root) the user modes' memory is capped per process (RLIMIT_AS), not in total. In every mode no file
written grows past 256 MiB (RLIMIT_FSIZE), whatever the sandbox's own limit does.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import adversary_cases  # noqa: E402

from ssd.sandbox import cgroups  # noqa: E402
from ssd.sandbox.cage import _kill_all, uid_members  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
TESTS = Path(__file__).resolve().parent
# What a driver runs from (tests/adversary.py, its cases, and what they import of ssd)
CODE = ["ssd/__init__.py", "ssd/errors.py", "ssd/sandbox", "tests/adversary.py", "tests/adversary_cases.py"]
CODE.append("tests/adversary_forgeries.py")
USER = os.environ.get("SSD_TEST_USER", "ssdtest")
ROOT = os.geteuid() == 0
SYSTEM_PYTHON = "/usr/bin/python3"
CAP_PIDS, CAP_MEMORY, CAP_NPROC = 600, 4 << 30, 400
# RLIMIT_FSIZE: the largest legitimate files are the driver's report (a few MiB at most: 5000 characters
# of output per case) and a candidate's captured output (the sandbox stops it at 8 MiB, Limits.file_bytes)
CAP_FILE = 256 << 20
CAP_LIMITS = {"pids_max", "memory_max"}  # what a root mode's cgroup must set to count as a cap
MODES = {  # name: (runs as USER, isolation, only the harmless cases)
    "root-bwrap": (False, "bwrap", False),
    "root-ns": (False, "ns", False),
    "root-none": (False, "none", True),
    "user-bwrap": (True, "bwrap", False),
    "user-none": (True, "none", True),
}
CATALOGUE = adversary_cases.cases({"canary": "/c", "key": "/k", "port": "1", "harness": "1", "checker": "/x"})
KEY = REPO / "data" / "humaneval" / "test.jsonl"


def unavailable(mode: str) -> str | None:
    as_user, isolation, _ = MODES[mode]
    if not as_user and not ROOT:
        return "needs root"
    if isolation == "bwrap" and shutil.which("bwrap") is None:
        return "bubblewrap is not installed (apt-get install bubblewrap)"
    if as_user and ROOT:
        try:
            pwd.getpwnam(USER)
        except KeyError:
            return f"no user {USER!r} to run the unprivileged modes as (useradd --system {USER})"
        if not os.path.exists(SYSTEM_PYTHON):
            return f"{SYSTEM_PYTHON} is missing"
    if ROOT and not as_user:
        probe = cgroups.create(f"ssd-test-probe-{os.getpid()}-{time.monotonic_ns()}", 8, 1 << 30)
        if probe is None:
            return "no writable cgroup to cap the suite with"
        probe.remove()
        if not probe.limits.keys() >= CAP_LIMITS:
            return f"the writable cgroup cannot set {', '.join(sorted(CAP_LIMITS - probe.limits.keys()))}"
    return None


@contextlib.contextmanager
def copied(as_user: bool) -> Iterator[Path]:
    """A folder holding what a driver runs from (CODE) and data/humaneval/test.jsonl, written by the
    project's own writer (so with the permissions `make data` gives it), owned by the driver's user."""
    from ssd.benchmarks.data import write_atomic

    root = Path(tempfile.mkdtemp(prefix="ssd-adversary-code-"))
    try:
        root.chmod(0o755)  # as a checkout's folder usually is
        for rel in CODE:
            copy = shutil.copytree if (REPO / rel).is_dir() else shutil.copy2
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            copy(REPO / rel, root / rel)
        key = KEY.read_bytes() if KEY.exists() else b'{"canonical_solution": "    return a + b"}\n'
        write_atomic(root / "data" / "humaneval" / "test.jsonl", key)
        if as_user and ROOT:
            for folder, _, files in os.walk(root):
                for path in [folder, *(os.path.join(folder, f) for f in files)]:
                    shutil.chown(path, USER, USER)
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


class Cap:
    """This test's own hard cap around one driver (see the module doc); what was left in it afterwards."""

    def __init__(self, name: str, as_user: bool) -> None:
        self.uid = pwd.getpwnam(USER).pw_uid if (as_user and ROOT) else None
        self.group = cgroups.create(f"ssd-test-{name}-{os.getpid()}", CAP_PIDS, CAP_MEMORY) if ROOT else None
        capped = self.group is not None and self.group.limits.keys() >= CAP_LIMITS
        if ROOT and self.uid is None and not capped:
            raise RuntimeError("no cap available")  # unavailable() skips these modes first
        nproc = CAP_NPROC if self.uid is not None else _own_tasks() + 256
        if ROOT and self.uid is None:
            nproc = None  # root ignores RLIMIT_NPROC: the cgroup is the cap
        self.prefix = [
            sys.executable,
            "-I",
            "-S",
            "-c",
            WRAP,
            json.dumps(self.group.procs if self.group else []),
        ]
        self.prefix.append(json.dumps([nproc, CAP_MEMORY, CAP_FILE]))
        if self.uid is not None:
            self.prefix += ["setpriv", "--reuid", USER, "--regid", USER, "--clear-groups", "--"]

    def left(self) -> list[int]:
        """Live processes of the driver's tree (its cgroup) or of the dedicated uid, once the driver ended."""
        found = set(self.group.members()) if self.group else set()
        if self.uid is not None:
            found.update(uid_members(self.uid))
        return sorted(found)

    def close(self) -> None:
        if self.group is not None:
            self.group.kill()
            self.group.empty()
            self.group.remove()
        if self.uid is not None:
            uid = self.uid
            _kill_all(lambda: uid_members(uid))  # repeated until none is left (a bomb forks on)


WRAP = (
    "import json, os, resource, sys\n"
    "for p in json.loads(sys.argv[1]):\n    open(p, 'w').write(str(os.getpid()))\n"
    "nproc, mem, fsize = json.loads(sys.argv[2])\n"
    "if nproc is not None:\n    resource.setrlimit(resource.RLIMIT_NPROC, (nproc, nproc))\n"
    "resource.setrlimit(resource.RLIMIT_AS, (mem, mem))\n"
    "resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))\n"
    "os.execvp(sys.argv[3], sys.argv[3:])\n"
)


def _own_tasks() -> int:
    """What RLIMIT_NPROC counts for this user now: the tasks (threads) whose real uid is this one's.

    Not cage.uid_members: that leaves out zombies (counted until reaped) and goes by /proc's owner (the
    effective uid, or root for a process that is not dumpable); /proc/PID/status has the real uid and the
    thread count. A process that exits meanwhile counts 0.
    """
    uid, tasks = str(os.getuid()), 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/status", "rb") as f:
                fields = dict(line.split(b":", 1) for line in f.read().splitlines() if b":" in line)
            if fields[b"Uid"].split()[0].decode() == uid:
                tasks += int(fields[b"Threads"])
        except (OSError, KeyError, ValueError, IndexError):
            continue
    return tasks


def driver_argv(
    as_user: bool, code: Path, args: list[str], **extra_env: str
) -> tuple[list[str], dict[str, str]]:
    """The driver's command line, run from `code` (a folder from `copied`)."""
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "PYTHONPATH": str(code), "LANG": "C.UTF-8", **extra_env}
    env["SSD_ADVERSARY_SECRET"] = adversary_cases.SECRET  # what the leak probes look for
    python = SYSTEM_PYTHON if (as_user and ROOT) else sys.executable
    driver = str(code / "tests" / "adversary.py")
    return ["env", "-i", *(f"{k}={v}" for k, v in env.items()), python, driver, *args], env


def run_all_modes() -> dict:
    """Every available mode's driver, all at once, each under its own cap; mode -> report or skip reason."""
    out = Path(tempfile.mkdtemp(prefix="ssd-adversary-out-"))
    out.chmod(0o777)
    found: dict = {}
    drivers: list[subprocess.Popen] = []  # every driver started
    caps: list[Cap] = []  # every cap not yet closed
    copies = contextlib.ExitStack()
    try:
        # The two user modes share one uid (its processes are what is checked): one after the other.
        for wave in ([m for m in MODES if m != "user-none"], ["user-none"]):
            running = {}
            for mode in wave:
                as_user, isolation, harmless = MODES[mode]
                why = unavailable(mode)
                if why:
                    found[mode] = why
                    continue
                cap = Cap(mode, as_user)
                caps.append(cap)
                code = copies.enter_context(copied(as_user))
                key = str(code / "data" / "humaneval" / "test.jsonl")
                argv, _ = driver_argv(as_user, code, [isolation, str(out / f"{mode}.json"), key])
                argv += ["--only-harmless"] if harmless else []
                proc = subprocess.Popen(
                    [*cap.prefix, *argv],
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # a process group of its own, to kill on an error below
                )
                drivers.append(proc)
                running[mode] = (proc, cap)
            for mode, (proc, cap) in running.items():
                try:
                    log, _ = proc.communicate(timeout=300)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    log, _ = proc.communicate()
                deadline = (
                    time.monotonic() + 3
                )  # the kernel finishes tearing namespaces down (slow under load)
                while cap.left() and time.monotonic() < deadline:
                    time.sleep(0.1)
                left = cap.left()
                what = {pid: _cmdline(pid) for pid in left}  # to say what it was, should it fail
                cap.close()
                caps.remove(cap)
                path = out / f"{mode}.json"
                report = json.loads(path.read_text()) if path.exists() else {}
                found[mode] = {
                    **report,
                    "returncode": proc.returncode,
                    "log": log.decode()[-3000:],
                    "left": left,
                    "left_cmdlines": what,
                }
    except BaseException:
        _abandon(drivers, caps)
        raise
    finally:
        copies.close()
        shutil.rmtree(out, ignore_errors=True)
    return found


def _cmdline(pid: int) -> str:
    with suppress(OSError):
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:300]
    return "?"


def _abandon(drivers: list[subprocess.Popen], caps: list[Cap]) -> None:
    """After an error: kill every driver still running (its own process group) and close every cap."""
    for proc in drivers:
        if proc.returncode is None:  # not reaped yet, so its pid and process group are still this one's
            with suppress(OSError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
    for cap in caps:
        with suppress(Exception):  # the error being raised is the one to report
            cap.close()


def violations(case: str, result: dict, mode: str) -> tuple[list[str], list[str]]:
    """What went wrong with one graded case in `mode`: (violations, what the mode documents it cannot
    stop) — a wrong verdict, a marker of an escape, survivors, a broken cap."""
    spec, found = CATALOGUE[case], []
    status, details, stdout = result["status"], result["details"], result["stdout"]
    if (status == "passed") != (spec.expect == "pass"):
        found.append(
            f"graded {status}, expected {spec.expect}: {details.get('reason')} {result['stderr'][-300:]}"
        )
    escapes = [f"marker {m} in stdout: {stdout[-300:]}" for m in adversary_cases.MARKERS if m in stdout]
    if details["survivors"] is None:  # not counted: the harness lost sight of the program's processes
        escapes.append(f"survivors not seen: {details.get('survivors_unseen')}")
    elif details["survivors"] != 0:
        found.append(f"{details['survivors']} processes survived")
    for line in stdout.splitlines():
        if line.startswith("WRITTEN ") and int(line.split()[1]) > (16 << 20):
            found.append(f"wrote {line.split()[1]} bytes past the 16 MiB tmpfs")
    for peak, cap in (("memory_peak", "memory_max"), ("pids_peak", "pids_max")):
        if cap in details and peak in details and details[peak] > details[cap]:
            found.append(f"{peak} {details[peak]} > {cap} {details[cap]}")
    if mode == "user-none" and spec.user_none:
        return found, escapes
    return found + escapes, []


def counts(mode: str, report: dict) -> dict[str, int]:
    """One mode's outcomes: verdicts forged (a case expected to fail passed), correct programs failed,
    escapes (a probe's marker, or a program's processes out of sight), survivors, processes left."""
    out = {"forged": 0, "failed correct": 0, "escapes": 0, "survivors": 0, "left": len(report["left"])}
    for case, result in report["cases"].items():
        expect = CATALOGUE[case].expect
        out["forged"] += expect == "fail" and result["status"] == "passed"
        out["failed correct"] += expect == "pass" and result["status"] != "passed"
        out["escapes"] += any(m in result["stdout"] for m in adversary_cases.MARKERS)
        out["escapes"] += result["details"]["survivors"] is None
        out["survivors"] += result["details"]["survivors"] or 0
    return out


def table(found: dict) -> str:
    """The suite as a Markdown table, case x mode -> status (and what went wrong, if anything), then
    each mode's counts and what its driver saw."""
    modes = list(MODES)
    lines = ["| case | category | expect | " + " | ".join(modes) + " |", "|---" * (3 + len(modes)) + "|"]
    for case, spec in CATALOGUE.items():
        cells = []
        for mode in modes:
            report = found[mode]
            if isinstance(report, str):
                cells.append("unavailable")
            elif case not in report.get("cases", {}):
                cells.append("not run")
            else:
                result = report["cases"][case]
                bad, documented = violations(case, result, mode)
                cell = result["status"] + (" **VIOLATION: " + "; ".join(bad)[:120] + "**" if bad else "")
                cells.append(cell + (f" (documented: {spec.user_none})" if documented else ""))
        lines.append(f"| {case} | {spec.category} | {spec.expect} | " + " | ".join(cells) + " |")
    keys = ("forged", "failed correct", "escapes", "survivors", "left")
    lines += ["", "| mode | " + " | ".join(keys) + " |", "|---" * (1 + len(keys)) + "|"]
    batch = []
    for mode in modes:
        report = found[mode]
        if not isinstance(report, str):
            lines.append(f"| {mode} | " + " | ".join(str(v) for v in counts(mode, report).values()) + " |")
            keys = ("returncode", "left", "canary", "new_files", "accepted", "sysv", "shared_files")
            batch.append(f"- {mode}: " + ", ".join(f"{k}={report.get(k)!r}" for k in keys))
    return (
        "\n".join(lines)
        + "\n\nAfter each driver (harness unharmed, nothing left, nothing reached):\n"
        + "\n".join(batch)
    )


if __name__ == "__main__":  # python tests/sandbox_modes.py: the suite's table, for the record
    print(table(run_all_modes()))
