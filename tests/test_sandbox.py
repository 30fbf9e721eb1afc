"""The code sandbox, tried as an adversary would, in every mode this machine can create.

Modes: as root with bubblewrap (`root-bwrap`), with the launcher's own namespaces (`root-ns`) and
uncontained (`root-none`); as an unprivileged user (SSD_TEST_USER, default `ssdtest`, created by .ci/run)
with bubblewrap (`user-bwrap`) and uncontained (`user-none`); without root, the user modes run as the
current user. The candidates are in tests/adversary.py (over 40: forgeries, the answer key, leaks,
fork bombs, daemons, memory, disk, signals, ptrace, network, IPC). Under `none` only the controls and the
forgeries run: that mode contains nothing, so the harmful ones would hit this machine.

Every driver runs under a hard cap of this test's own, set before anything starts, so that a
containment regression fails a test instead of exhausting the machine: as root, a cgroup (pids.max,
memory limit; the sandbox's groups nest inside it); for the unprivileged user, also RLIMIT_NPROC on its
dedicated uid; without root, RLIMIT_NPROC of the current user (its processes now + a margin).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from ssd.benchmarks import cgroups, sandbox, wire
from ssd.benchmarks.sandbox import Job, Limits, grade, mechanism
from ssd.errors import SSDError

sys.path.insert(0, str(Path(__file__).resolve().parent))
import adversary  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
ADVERSARY = Path(adversary.__file__).resolve()
USER = os.environ.get("SSD_TEST_USER", "ssdtest")
ROOT = os.geteuid() == 0
SYSTEM_PYTHON = "/usr/bin/python3"
CAP_PIDS, CAP_MEMORY, CAP_NPROC = 600, 4 << 30, 400
MODES = {  # name: (runs as USER, isolation, only the harmless cases)
    "root-bwrap": (False, "bwrap", False),
    "root-ns": (False, "ns", False),
    "root-none": (False, "none", True),
    "user-bwrap": (True, "bwrap", False),
    "user-none": (True, "none", True),
}
CATALOGUE = adversary.cases({"canary": "/c", "key": "/k", "port": "1", "harness": "1"})
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
        if not _user_can_import():
            return f"user {USER} cannot import ssd from {REPO} with {SYSTEM_PYTHON} (folder permissions?)"
    if ROOT and not as_user:
        probe = cgroups.create(f"ssd-test-probe-{os.getpid()}-{time.monotonic_ns()}", 8, 1 << 30)
        if probe is None:
            return "no writable cgroup to cap the suite with"
        probe.remove()
    return None


@functools.cache
def _user_can_import() -> bool:
    probe = ["setpriv", "--reuid", USER, "--regid", USER, "--clear-groups", "--", "env", "-i"]
    probe += [f"PYTHONPATH={REPO}", SYSTEM_PYTHON, "-c", "import ssd.benchmarks.sandbox"]
    return subprocess.run(probe, capture_output=True, timeout=60).returncode == 0


class Cap:
    """This test's own hard cap around one driver (see the module doc); what was left in it afterwards."""

    def __init__(self, name: str, as_user: bool) -> None:
        self.uid = pwd.getpwnam(USER).pw_uid if (as_user and ROOT) else None
        self.group = cgroups.create(f"ssd-test-{name}-{os.getpid()}", CAP_PIDS, CAP_MEMORY) if ROOT else None
        if ROOT and self.group is None and self.uid is None:
            raise RuntimeError("no cap available")  # unavailable() skips these modes first
        nproc = CAP_NPROC if self.uid is not None else _own_processes() + 256
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
        self.prefix.append(json.dumps([nproc, CAP_MEMORY]))
        if self.uid is not None:
            self.prefix += ["setpriv", "--reuid", USER, "--regid", USER, "--clear-groups", "--"]

    def left(self) -> list[int]:
        """Live processes of the driver's tree (its cgroup) or of the dedicated uid, once the driver ended."""
        found = set(self.group.members()) if self.group else set()
        if self.uid is not None:
            found.update(sandbox_uid_members(self.uid))
        return sorted(found)

    def close(self) -> None:
        if self.group is not None:
            self.group.kill()
            self.group.empty()
            self.group.remove()
        if self.uid is not None:
            for pid in sandbox_uid_members(self.uid):
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)


WRAP = (
    "import json, os, resource, sys\n"
    "for p in json.loads(sys.argv[1]):\n    open(p, 'w').write(str(os.getpid()))\n"
    "nproc, mem = json.loads(sys.argv[2])\n"
    "if nproc is not None:\n    resource.setrlimit(resource.RLIMIT_NPROC, (nproc, nproc))\n"
    "resource.setrlimit(resource.RLIMIT_AS, (mem, mem))\n"
    "os.execvp(sys.argv[3], sys.argv[3:])\n"
)


def _own_processes() -> int:
    uid = os.getuid()
    return sum(1 for p in Path("/proc").iterdir() if p.name.isdigit() and _owner(p) == uid)


def _owner(p: Path) -> int | None:
    try:
        return p.stat().st_uid
    except OSError:
        return None


def sandbox_uid_members(uid: int) -> list[int]:
    from ssd.benchmarks.cage import uid_members

    return uid_members(uid)


def driver_argv(as_user: bool, args: list[str]) -> tuple[list[str], dict[str, str]]:
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "PYTHONPATH": str(REPO), "LANG": "C.UTF-8"}
    env["SSD_ADVERSARY_SECRET"] = adversary.SECRET  # what the leak probes look for
    python = SYSTEM_PYTHON if (as_user and ROOT) else sys.executable
    return ["env", "-i", *(f"{k}={v}" for k, v in env.items()), python, str(ADVERSARY), *args], env


@pytest.fixture(scope="module")
def reports():
    return run_all_modes()


def run_all_modes() -> dict:
    """Every available mode's driver, all at once, each under its own cap; mode -> report or skip reason."""
    out = Path(tempfile.mkdtemp(prefix="ssd-adversary-out-"))
    out.chmod(0o777)
    key = str(KEY.resolve()) if KEY.exists() else str(ADVERSARY)
    found: dict = {}
    # The two user modes share one uid (its processes are what is checked), so they run one after the other.
    for wave in ([m for m in MODES if m != "user-none"], ["user-none"]):
        running = {}
        for mode in wave:
            as_user, isolation, harmless = MODES[mode]
            why = unavailable(mode)
            if why:
                found[mode] = why
                continue
            cap = Cap(mode, as_user)
            argv, _ = driver_argv(as_user, [isolation, str(out / f"{mode}.json"), key])
            argv += ["--only-harmless"] if harmless else []
            proc = subprocess.Popen([*cap.prefix, *argv], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            running[mode] = (proc, cap)
        for mode, (proc, cap) in running.items():
            try:
                log, _ = proc.communicate(timeout=300)
            except subprocess.TimeoutExpired:
                proc.kill()
                log, _ = proc.communicate()
            time.sleep(0.2)  # the kernel finishes tearing namespaces down
            left = cap.left()
            cap.close()
            path = out / f"{mode}.json"
            report = json.loads(path.read_text()) if path.exists() else {}
            found[mode] = {**report, "returncode": proc.returncode, "log": log.decode()[-3000:], "left": left}
    shutil.rmtree(out, ignore_errors=True)
    return found


def report_of(reports, mode: str) -> dict:
    if isinstance(reports[mode], str):
        pytest.skip(f"mode {mode} unavailable here: {reports[mode]}")
    return reports[mode]


@pytest.mark.parametrize("mode", MODES)
def test_the_driver_survives_and_nothing_is_left(reports, mode):
    report = report_of(reports, mode)
    assert report["returncode"] == 0, report["log"]
    assert report["left"] == [], "processes outlived the driver"
    assert report["canary"] == "alive" and report["new_files"] == []
    assert report["accepted"] == 0, "a candidate connected to the harness's localhost listener"
    assert report["sysv"] == [] and report["shared_files"] == []
    isolations = {c["details"]["isolation"] for c in report["cases"].values()}
    assert isolations == {MODES[mode][1]}


def violations(case: str, result: dict) -> list[str]:
    """What went wrong with one graded case: a wrong verdict, a marker of an escape, a broken cap."""
    spec, found = CATALOGUE[case], []
    status, details, stdout = result["status"], result["details"], result["stdout"]
    if (status == "passed") != (spec.expect == "pass"):
        found.append(
            f"graded {status}, expected {spec.expect}: {details.get('reason')} {result['stderr'][-300:]}"
        )
    found += [f"marker {m} in stdout: {stdout[-300:]}" for m in adversary.MARKERS if m in stdout]
    if details["survivors"] != 0:
        found.append(f"{details['survivors']} processes survived")
    for line in stdout.splitlines():
        if line.startswith("WRITTEN ") and int(line.split()[1]) > (16 << 20):
            found.append(f"wrote {line.split()[1]} bytes past the 16 MiB tmpfs")
    for peak, cap in (("memory_peak", "memory_max"), ("pids_peak", "pids_max")):
        if cap in details and peak in details and details[peak] > details[cap]:
            found.append(f"{peak} {details[peak]} > {cap} {details[cap]}")
    return found


@pytest.mark.parametrize("case", CATALOGUE)
@pytest.mark.parametrize("mode", MODES)
def test_case(reports, mode, case):
    report = report_of(reports, mode)
    if MODES[mode][2] and CATALOGUE[case].harmful:
        pytest.skip(f"isolation none contains nothing: {case} is not run there")
    assert violations(case, report["cases"][case]) == []


def test_the_catalogue_covers_the_issue():
    categories = {c.category for c in CATALOGUE.values()}
    assert len(CATALOGUE) >= 40
    assert {
        "control",
        "forgery",
        "answer key",
        "leak",
        "processes",
        "memory",
        "disk",
        "signals",
    } <= categories
    assert {"network", "files", "ipc", "escape"} <= categories


@pytest.mark.parametrize("mode", ["root-bwrap", "root-ns", "user-bwrap"])
def test_a_killed_harness_leaves_nothing(mode):
    """The harness dies (SIGKILL) mid-run: its sandboxes die with it (bwrap --die-with-parent, the
    launcher's and the namespace init's PR_SET_PDEATHSIG)."""
    why = unavailable(mode)
    if why:
        pytest.skip(f"mode {mode} unavailable here: {why}")
    as_user, isolation, _ = MODES[mode]
    cap = Cap(f"kill-{mode}", as_user)
    try:
        argv, _ = driver_argv(as_user, ["--hang", isolation])
        proc = subprocess.Popen([*cap.prefix, *argv], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        assert proc.stdout is not None and proc.stdout.readline().strip() == b"started"
        deadline = time.monotonic() + 30
        while len(cap.left()) < 4 and time.monotonic() < deadline:  # driver, launcher, candidate, daemon
            time.sleep(0.1)
        time.sleep(0.5)
        assert len(cap.left()) >= 4
        proc.kill()
        proc.wait()
        deadline = time.monotonic() + 5
        while cap.left() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert cap.left() == []
    finally:
        cap.close()


def test_without_bwrap_and_root_the_harness_refuses():
    """Non-root, no bubblewrap on PATH, no SSD_SANDBOX: one line naming the fix, exit status 2."""
    if ROOT and unavailable("user-none"):
        pytest.skip(str(unavailable("user-none")))
    cap = Cap("refuse", as_user=True)
    try:
        argv, _ = driver_argv(True, ["default", "/nonexistent/out.json", "/k"])
        argv = [a if not a.startswith("PATH=") else "PATH=/nonexistent" for a in argv]
        run = subprocess.run([*cap.prefix, *argv], capture_output=True, text=True, timeout=60)
    finally:
        cap.close()
    assert run.returncode == 2, run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        "error: code benchmarks run generated code only in a sandbox"
    )
    assert "apt-get install bubblewrap" in lines[0] and "SSD_SANDBOX=none" in lines[0]


# --- the plain-data wire and the grading API -------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [None, True, 0, -(10**400), 2.5, float("inf"), -0.0, 1 - 2j, "é", b"\x00\xff", [1, (2, "x")], {1: {2}}],
)
def test_plain_values_cross_unchanged(value):
    back = wire.decode(json.loads(wire.dumps({"v": wire.encode(value)}))["v"])
    assert back == value and type(back) is type(value)


def test_anything_else_is_not_plain():
    class Sneaky:
        def __eq__(self, other):
            return True

    for value in (Sneaky(), len, (x for x in ()), [Sneaky()], {1: object()}):
        with pytest.raises(wire.NotPlain):
            wire.encode(value)
    for data in ({"tuple": 1}, {"pickle": "x"}, {"a": 1, "b": 2}, {"set": [[1]]}, {"int": "zz"}):
        with pytest.raises(wire.NotPlain):
            wire.decode(data)


def test_a_subclass_travels_as_its_base_without_its_methods():
    class Always(int):
        def __eq__(self, other):
            return True

        __hash__ = int.__hash__

    back = wire.decode(wire.encode(Always(3)))
    assert type(back) is int and back == 3 and back != 4


def test_results_are_ordered_and_deterministic():
    code = "import time\ndef f():\n    time.sleep({})\n    return {}"
    jobs = [Job(code.format(0.2 * (i % 3), i), "assert f() % 4 != 0", ("f",)) for i in range(8)]
    first = [r.passed for r in grade(jobs, 10.0, workers=4)]
    assert first == [i % 4 != 0 for i in range(8)]
    assert [r.passed for r in grade(jobs, 10.0, workers=3)] == first
    assert grade([], 1.0) == []


def test_unknown_isolation_is_an_error():
    with pytest.raises(SSDError, match="unknown sandbox isolation 'docker'"):
        mechanism("docker")


def test_the_mechanism_is_recorded():
    [result] = grade([Job("def f():\n    return 1", "assert f() == 1", ("f",))], 10.0)
    for key in (
        "isolation",
        "own_uid",
        "python",
        "python_version",
        "status",
        "survivors",
        "kill",
        "nproc_cap",
    ):
        assert key in result.details
    if shutil.which("bwrap"):
        assert result.details["isolation"] == "bwrap"


def test_a_sandbox_that_cannot_start_is_reported_not_passed():
    broken = sandbox.Mechanism(
        mechanism().isolation, ROOT, "/nonexistent/python3", "", shutil.which("bwrap") or ""
    )
    result = sandbox._run_one(
        Job("def f():\n    return 1", "assert f() == 1", ("f",)), Limits(timeout=5.0), broken
    )
    assert not result.passed and result.status in ("sandbox_error", "failed")
    assert result.details["survivors"] == 0


# --- where the isolation is shown: summary.json and the tables ------------------------------------


def test_the_isolation_reaches_the_summary_and_the_tables(tmp_path):
    from ssd.benchmarks.sandbox import isolation_used
    from ssd.report import load_runs
    from ssd.report.tables import render
    from tests.test_report import write_run

    records = [{"details": {"isolation": "bwrap"}}, {"details": {"isolation": "bwrap"}}]
    assert isolation_used(records) == {"sandbox": "bwrap"}
    assert isolation_used([*records, {"details": {"isolation": "ns"}}]) == {"sandbox": "bwrap+ns"}
    assert isolation_used([{"details": {"strict_correct": True}}]) == {}
    folder = write_run(tmp_path, benchmark="humaneval", limit=2)
    summary = json.loads((folder / "summary.json").read_text())
    (folder / "summary.json").write_text(json.dumps({**summary, **isolation_used(records)}))
    write_run(tmp_path, benchmark="gsm8k", limit=2)
    tables = render(load_runs(tmp_path))
    assert "humaneval 0-shot [bwrap]" in tables["runs.md"] and "gsm8k 0-shot [" not in tables["runs.md"]
    assert "[bwrap], [ns], [none]" in tables["runs.md"]
    assert tables["runs.csv"].splitlines()[0].endswith(",sandbox")


def _job(tmp_path: Path, ckpt: Path, **extra: object):
    from hydra import compose, initialize_config_dir

    from ssd.config import register
    from ssd.run import CONF_DIR
    from tests.helpers import real_data

    settings = {
        "model": "tiny_llada",
        "model.path": ckpt,
        "benchmark": "humaneval",
        "benchmark.data_dir": real_data("humaneval"),
        "benchmark.chat": False,
        "decoder": "stepwise",
        "decoder.gen_length": 16,
        "decoder.block_length": 8,
        "limit": 1,
        "output_dir": tmp_path,
        **extra,
    }
    register()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("config", overrides=[f"{k}={v}" for k, v in settings.items()])


def test_a_code_run_records_its_isolation_in_summary_json(tmp_path, tiny_checkpoints):
    from ssd.run import run_job

    folder = run_job(_job(tmp_path, tiny_checkpoints["llada"]))
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["sandbox"] == mechanism().isolation


def test_a_code_run_refuses_before_the_model_loads(tmp_path, monkeypatch):
    from ssd.benchmarks import humaneval
    from ssd.run import run_job

    def refuse(isolation=None):
        raise SSDError(sandbox.REFUSAL)

    monkeypatch.setattr(humaneval, "mechanism", refuse)
    with pytest.raises(SSDError, match="install bubblewrap"):  # not the missing checkpoint's error
        run_job(_job(tmp_path, tmp_path / "no-such-checkpoint"))


def test_one_uid_serves_many_programs_in_a_row():
    """bubblewrap's outer process may exit before its init: the launcher reaps that orphan, else it
    lingers as a zombie of the machine's init, counted against the slot uid's RLIMIT_NPROC (and, where
    init reaps lazily, makes later programs fail to start)."""
    jobs = [Job("def f():\n    return 1", "assert f() == 1", ("f",))] * 40
    results = grade(jobs, 10.0, workers=1, limits=Limits(nproc=6))
    assert [r.status for r in results] == ["passed"] * 40, [r.stderr for r in results if not r.passed][:1]


def table(found: dict) -> str:
    """The suite as a Markdown table, case x mode -> status (and what went wrong, if anything)."""
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
                bad = violations(case, result)
                cells.append(
                    result["status"] + (" **VIOLATION: " + "; ".join(bad)[:120] + "**" if bad else "")
                )
        lines.append(f"| {case} | {spec.category} | {spec.expect} | " + " | ".join(cells) + " |")
    batch = []
    for mode in modes:
        report = found[mode]
        if not isinstance(report, str):
            keys = ("returncode", "left", "canary", "new_files", "accepted", "sysv", "shared_files")
            batch.append(f"- {mode}: " + ", ".join(f"{k}={report.get(k)!r}" for k in keys))
    return (
        "\n".join(lines)
        + "\n\nAfter each driver (harness unharmed, nothing left, nothing reached):\n"
        + "\n".join(batch)
    )


if __name__ == "__main__":  # python tests/test_sandbox.py: the suite's table, for the record
    print(table(run_all_modes()))
