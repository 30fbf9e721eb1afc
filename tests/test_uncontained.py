"""Grading where the candidate may reach the harness (issue 21), outside the adversarial suite
(tests/test_sandbox.py): the sandbox's scripts run from memory and a change on disk stops grading; the
checker's interpreter and spec are sealed; stale sandbox folders are swept; the isolation is part of a
code run's identity, and a run graded under `none` says so (its first line, its last, the tables)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ssd.benchmarks.base import Sample
from ssd.benchmarks.humaneval import HumanEval
from ssd.config import HumanEvalConfig
from ssd.errors import SSDError
from ssd.sandbox import grader, seal
from ssd.sandbox.grader import Job, grade, mechanism

ADD = Job("def f(a, b):\n    return a + b\n", "assert f(2, 3) == 5", ("f",))
SAMPLE = Sample(
    "x/0", "def f(a, b):\n", "", {"test": "def check(c):\n    assert c(2, 3) == 5\n", "entry_point": "f"}
)


def test_a_sandbox_script_changed_on_disk_stops_grading(monkeypatch):
    """Before a program (it is not run) and after one (it changed them: its verdict is kept, from the
    copy in memory, but the harness stops): one line, naming the file."""
    mechanism(None)  # the probe, before the change (a harness that starts after it refuses at once)
    monkeypatch.setitem(seal._DIGESTS, "checker.py", b"not the file's digest")
    [refused] = grade([ADD], 10.0)
    assert refused.status == "sandbox_error" and refused.details["tampered"] == ["ssd/sandbox/checker.py"]
    assert refused.wall_seconds == 0.0 and "changed on disk" in refused.details["reason"]
    with pytest.raises(
        SSDError, match=r"^ssd/sandbox/checker.py changed on disk while grading: .* bubblewrap$"
    ):
        HumanEval(HumanEvalConfig(chat=False)).score(SAMPLE, "    return a + b\n")
    with pytest.raises(SSDError, match=r"^ssd/sandbox/checker.py changed on disk while grading"):
        grader._mechanism.__wrapped__(None)  # a harness that starts now refuses before any program
    monkeypatch.undo()
    calls = iter([[], ["ssd/sandbox/launcher.py"], ["ssd/sandbox/launcher.py"]])
    monkeypatch.setattr(seal, "tampered", lambda: next(calls))
    [result] = grade([ADD], 10.0)
    assert result.passed and result.details["tampered"] == ["ssd/sandbox/launcher.py"]


def test_the_checker_reads_a_sealed_spec_and_runs_a_sealed_execute_only_interpreter():
    spec = seal.sealed(b'{"spec": 1}')
    with pytest.raises(PermissionError):
        os.write(spec, b"x")
    with open(f"/proc/self/fd/{spec}", "rb") as f:
        assert f.read() == b'{"spec": 1}'
    with pytest.raises(PermissionError):
        os.ftruncate(spec, 0)
    os.close(spec)
    python = os.path.realpath(sys.executable)
    fd = seal.interpreter(python)
    assert os.fstat(fd).st_mode & 0o777 == 0o111
    with pytest.raises(PermissionError):
        os.write(fd, b"x")
    home = str(Path(python).parent.parent)
    argv = [f"/proc/self/fd/{fd}", "-s", "-S", "-c", "print(6 * 7)"]
    run = subprocess.run(argv, pass_fds=(fd,), env={"PYTHONHOME": home}, capture_output=True, text=True)
    assert (run.returncode, run.stdout) == (0, "42\n"), run.stderr


def test_the_next_harness_removes_the_sandbox_folders_of_dead_ones(tmp_path):
    dead = subprocess.Popen(["true"])
    dead.wait()
    names = [f"ssd-sandbox-{dead.pid}-x", f"ssd-sandbox-{os.getpid()}-x", "ssd-sandbox-old", "other"]
    for name in names:
        (tmp_path / name).mkdir()
        (tmp_path / name / "candidate.py").write_text("x")
    assert seal.sweep(str(tmp_path)) == [str(tmp_path / names[0])]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names[1:])


def _job(tmp_path: Path, ckpt: Path, **extra: object):
    from tests.helpers import real_data, tiny_job

    code = {"benchmark": "humaneval", "benchmark.data_dir": real_data("humaneval"), "benchmark.chat": False}
    return tiny_job(ckpt, tmp_path, **code, limit=1, **extra)


def test_the_isolation_is_part_of_a_code_runs_identity(tmp_path, tiny_checkpoints, capsys):
    """A job graded under none and the same job graded contained are two runs (two folders), and the
    uncontained one says so on its first line and its last, also when it is found done."""
    from ssd.run import run_job

    ckpt = tiny_checkpoints["llada"]
    contained = run_job(_job(tmp_path, ckpt))
    assert "UNCONTAINED" not in capsys.readouterr().out
    config = yaml.safe_load((contained / "config.yaml").read_text())
    assert config["benchmark"]["sandbox"] == mechanism().isolation != "none"
    uncontained = run_job(_job(tmp_path, ckpt, **{"benchmark.sandbox": "none"}))
    lines = capsys.readouterr().out.strip().splitlines()
    assert uncontained != contained
    assert lines[0].startswith("UNCONTAINED (sandbox none): generated code runs with your user's rights")
    assert lines[-1].startswith(f"summary: {uncontained}") and "UNCONTAINED (sandbox none)" in lines[-1]
    assert json.loads((uncontained / "summary.json").read_text())["sandbox"] == "none"
    run_job(_job(tmp_path, ckpt, **{"benchmark.sandbox": "none"}))
    lines = capsys.readouterr().out.strip().splitlines()
    assert (
        lines[0].startswith("UNCONTAINED")
        and lines[-1] == f"done: {uncontained} (UNCONTAINED (sandbox none))"
    )


def test_the_tables_flag_an_uncontained_pass_at_1(tmp_path):
    from ssd.report import load_runs
    from ssd.report.tables import render
    from tests.test_report import write_run

    for sandbox, limit in (("none", 2), ("bwrap", 3)):
        folder = write_run(tmp_path, benchmark="humaneval", limit=limit)
        summary = json.loads((folder / "summary.json").read_text())
        (folder / "summary.json").write_text(json.dumps({**summary, "sandbox": sandbox}))
    table = render(load_runs(tmp_path))["runs.md"]
    runs_table = table.split("## AUP by decoder family")[0]  # the AUP table below names the benchmark too
    rows = [line for line in runs_table.splitlines() if "humaneval" in line]
    assert len(rows) == 2 and ["‡" in row for row in rows] == ["[none]" in row for row in rows]
    assert "‡: a pass@1 graded uncontained" in table
