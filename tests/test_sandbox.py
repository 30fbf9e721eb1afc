"""The code sandbox, tried as an adversary would, in every mode this machine can create
(tests/sandbox_modes.py: the modes and the test's own caps; tests/adversary_cases.py: over 40 programs —
forgeries, the answer key, leaks, fork bombs, daemons, memory, disk, signals, ptrace, network, IPC);
then the plain-data wire, the grading API, and where the isolation is recorded.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from ssd.errors import SSDError
from ssd.sandbox import grader as sandbox
from ssd.sandbox import wire
from ssd.sandbox.grader import Job, Limits, grade, mechanism

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sandbox_modes import (  # noqa: E402
    CATALOGUE,
    MODES,
    ROOT,
    Cap,
    copied,
    driver_argv,
    run_all_modes,
    unavailable,
    violations,
)


@pytest.fixture(scope="module")
def reports():
    return run_all_modes()


def report_of(reports, mode: str) -> dict:
    if isinstance(reports[mode], str):
        pytest.skip(f"mode {mode} unavailable here: {reports[mode]}")
    return reports[mode]


@pytest.mark.parametrize("mode", MODES)
def test_the_driver_survives_and_nothing_is_left(reports, mode):
    report = report_of(reports, mode)
    assert report["returncode"] == 0, report["log"]
    # Only where a program was reported out of sight (survivors null: `none` without root, documented)
    unseen = [c for c, r in report["cases"].items() if r["details"]["survivors"] is None]
    assert len(report["left"]) <= len(unseen), f"outlived the driver: {report['left_cmdlines']} ({unseen})"
    assert all(CATALOGUE[c].user_none for c in unseen) and (not unseen or mode == "user-none")
    assert report["canary"] == "alive" and report["new_files"] == []
    assert report["accepted"] == 0, "a candidate connected to the harness's localhost listener"
    assert report["sysv"] == [] and report["shared_files"] == []
    isolations = {c["details"]["isolation"] for c in report["cases"].values()}
    assert isolations == {MODES[mode][1]}


@pytest.mark.parametrize("case", CATALOGUE)
@pytest.mark.parametrize("mode", MODES)
def test_case(reports, mode, case):
    report = report_of(reports, mode)
    if MODES[mode][2] and CATALOGUE[case].harmful:
        pytest.skip(f"isolation none contains nothing: {case} is not run there")
    bad, documented = violations(case, report["cases"][case], mode)
    assert bad == []
    assert not documented or mode == "user-none"


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


@pytest.mark.parametrize("mode", MODES)
def test_a_killed_harness_leaves_nothing(mode):
    """The harness dies (SIGKILL) mid-run: its sandboxes die with it (bwrap --die-with-parent, the
    launcher's and the namespace init's PR_SET_PDEATHSIG; under none the launcher kills what is below it
    first), and so does its checker (PR_SET_PDEATHSIG); the next harness to start removes the sandbox
    folder it left."""
    why = unavailable(mode) or (
        None if ROOT else "without root no cgroup or uid shows the driver's processes"
    )
    if why:
        pytest.skip(f"mode {mode} unavailable here: {why}")
    as_user, isolation, _ = MODES[mode]
    cap = Cap(f"kill-{mode}", as_user)
    tmp = Path(tempfile.mkdtemp(prefix="ssd-test-killed-"))  # the killed driver's sandbox folder lands here
    tmp.chmod(0o777)
    try:
        with copied(as_user) as code:
            argv, _ = driver_argv(as_user, code, ["--hang", isolation], TMPDIR=str(tmp))
            proc = subprocess.Popen([*cap.prefix, *argv], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            assert proc.stdout is not None and proc.stdout.readline().strip() == b"started"
            deadline = time.monotonic() + 30
            # driver, launcher, candidate, daemon, checker
            while len(cap.left()) < 5 and time.monotonic() < deadline:
                time.sleep(0.1)
            time.sleep(0.5)
            assert len(cap.left()) >= 5
            proc.kill()
            proc.wait()
            deadline = time.monotonic() + 5
            while cap.left() and time.monotonic() < deadline:
                time.sleep(0.05)
            assert cap.left() == []
            left = [p.name for p in tmp.iterdir()]
            assert [n for n in left if n.startswith(f"ssd-sandbox-{proc.pid}-")] == left != []
            argv, _ = driver_argv(as_user, code, ["--start", isolation], TMPDIR=str(tmp))
            run = subprocess.run([*cap.prefix, *argv], capture_output=True, text=True, timeout=120)
            assert run.returncode == 0, run.stdout + run.stderr
            assert list(tmp.iterdir()) == []
    finally:
        cap.close()
        shutil.rmtree(tmp, ignore_errors=True)


def test_without_bwrap_and_root_the_harness_refuses():
    """Non-root, no bubblewrap on PATH, no SSD_SANDBOX: one line, leading with the fix and naming what
    `none` gives up, exit status 2."""
    if ROOT and unavailable("user-none"):
        pytest.skip(str(unavailable("user-none")))
    cap = Cap("refuse", as_user=True)
    try:
        with copied(True) as code:
            # only the harmless cases: should the refusal regress, the driver would run them uncontained
            args = ["default", "/nonexistent/out.json", "/k", "--only-harmless"]
            argv, _ = driver_argv(True, code, args)
            argv = [a if not a.startswith("PATH=") else "PATH=/nonexistent" for a in argv]
            run = subprocess.run([*cap.prefix, *argv], capture_output=True, text=True, timeout=60)
    finally:
        cap.close()
    assert run.returncode == 2, run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: install bubblewrap (apt-get install bubblewrap)")
    assert "SSD_SANDBOX=none" in lines[0] and "forge its own verdict" in lines[0]
    assert "read and change your files" in lines[0]


# --- the plain-data wire and the grading API -------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        None,
        True,
        0,
        -(10**400),
        2.5,
        float("inf"),
        -0.0,
        1 - 2j,
        "é",
        b"\x00\xff",
        [1, (2, "x")],
        {1: {2}},
        range(3),
    ],
)
def test_plain_values_cross_unchanged(value):
    back = wire.decode(json.loads(wire.dumps({"v": wire.encode(value)}))["v"])
    assert back == value and type(back) is type(value)


def test_anything_else_is_not_plain():
    class Sneaky:
        def __eq__(self, other):
            return True

    for value in (Sneaky(), len, sys, [Sneaky()], {1: object()}, (Sneaky() for _ in range(1))):
        with pytest.raises(wire.NotPlain):
            wire.encode(value)
    for data in ({"tuple": 1}, {"pickle": "x"}, {"a": 1, "b": 2}, {"set": [[1]]}, {"int": "zz"}):
        with pytest.raises(wire.NotPlain):
            wire.decode(data)


def test_an_iterator_arrives_as_an_iterator_over_its_items():
    back = wire.decode(wire.encode(map(str, [1, 2])))
    assert back != ["1", "2"] and tuple(back) == ("1", "2")  # as the generator itself compared
    assert wire.decode(wire.encode(range(1, 9, 3))) == range(1, 9, 3)


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
        "survivors_scope",
        "checker_undumpable",
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
    from ssd.report import load_runs
    from ssd.report.tables import render
    from ssd.results.summary import isolation_used
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
    from tests.helpers import real_data, tiny_job

    code = {"benchmark": "humaneval", "benchmark.data_dir": real_data("humaneval"), "benchmark.chat": False}
    return tiny_job(ckpt, tmp_path, **code, limit=1, **extra)


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
