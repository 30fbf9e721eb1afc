"""`hydra/launcher=submitit_slurm` on a real single-node Slurm cluster (scripts/slurm_local.sh).

A small grid (tests/test_resume.py) goes through submitit as one job array on partition `debug` (CPU only:
`gpus_per_node=null`). One job is preempted part-way (SIGUSR2, as Slurm signals it before a preemption or
its time limit): submitit requeues it, and the requeued job continues its run folder. The run folders must
then hold what the basic launcher writes for the same grid: the same samples, tokens, grades and
summaries (timings and provenance aside).

Starting the cluster needs root (slurmd runs as root; missing Debian packages are installed): elsewhere
the test skips. CI runs as root (.ci/run), so there it runs.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import HydraException
from omegaconf.errors import OmegaConfBaseException

from ssd.config import register
from ssd.run import CONF_DIR
from tests.test_resume import LIMIT, assert_same_results, basic_sweep, lines, sweep_command, sweep_env

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "scripts" / "slurm_local.sh"
SBIN = "/usr/sbin:/sbin:" + os.environ.get("PATH", "")
LAUNCHER = [
    "hydra/launcher=submitit_slurm",
    "hydra.launcher.partition=debug",
    "hydra.launcher.gpus_per_node=null",  # the default (1) is for GPU clusters: this one has no GPU gres
    "hydra.launcher.cpus_per_task=1",
    "hydra.launcher.mem_gb=1",
    "hydra.launcher.timeout_min=15",
]


def launcher(*overrides: str) -> dict:
    register()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(
            "config", overrides=["hydra/launcher=submitit_slurm", *overrides], return_hydra_config=True
        )
    return cfg.hydra.launcher


# The launcher config shadows the plugin's of the same name on purpose (ssd/run.py silences this for users).
@pytest.mark.filterwarnings("ignore:(?s).*validated against ConfigStore schema:UserWarning")
def test_launcher_defaults_suit_a_gpu_cluster_and_yield_to_the_command_line() -> None:
    cfg = launcher()
    assert cfg._target_.endswith("SlurmLauncher")
    assert (cfg.gpus_per_node, cfg.tasks_per_node, cfg.nodes) == (1, 1, 1)
    assert cfg.timeout_min > 0 and cfg.array_parallelism > 0 and cfg.cpus_per_task > 0 and cfg.mem_gb > 0
    assert cfg.max_num_timeout > 0  # a timed-out job is requeued, and resumes its run folder
    cfg = launcher(
        "hydra.launcher.gpus_per_node=null", "hydra.launcher.partition=gpu", "hydra.launcher.mem_gb=8"
    )
    assert (cfg.gpus_per_node, cfg.partition, cfg.mem_gb) == (None, "gpu", 8)
    with pytest.raises((HydraException, OmegaConfBaseException)):
        launcher("hydra.launcher.gpus_per_nod=2")  # the plugin's schema still checks every key


def skip_reason() -> str | None:
    if not sys.platform.startswith("linux"):
        return "a local Slurm cluster needs Linux"
    if os.geteuid() != 0:
        return "starting a local Slurm cluster needs root (slurmd, munged, apt-get); CI runs this as root"
    if shutil.which("slurmd", path=SBIN) is None and shutil.which("apt-get") is None:
        return "Slurm is not installed and there is no apt-get to install it"
    return None


def free_port_base(count: int = 4) -> int:
    """The first of `count` consecutive free TCP ports (slurmctld, slurmd, slurmdbd, MariaDB)."""
    for base in range(21000 + os.getpid() % 2000 * 4, 60000, 97):
        try:
            for port in range(base, base + count):
                with socket.socket() as s:
                    s.bind(("0.0.0.0", port))
        except OSError:
            continue
        return base
    raise RuntimeError("no free ports")


def slurm(env: dict[str, str], *args: str) -> str:
    """A client command's output. On a loaded machine slurmctld can take a minute to answer one RPC (CI
    saw scancel take over 60 s), so the wait is long, and a command that still gets no answer fails with
    the controller's own account of that time."""
    try:
        done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=240, check=True)
    except subprocess.TimeoutExpired:
        log = Path(env["SLURM_LOCAL_DIR"]) / "log" / "slurmctld.log"
        tail = log.read_text(errors="replace")[-3000:] if log.exists() else "(no log)"
        raise AssertionError(f"{' '.join(args)}: no answer in 240 s; slurmctld.log ends:\n{tail}") from None
    except subprocess.CalledProcessError as e:
        raise AssertionError(f"{' '.join(args)}: exit {e.returncode}: {e.stderr.strip()}") from None
    return done.stdout


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A private cluster (own state folder and ports, so concurrent test sessions do not meet): the
    environment its clients need (SLURM_CONF)."""
    reason = skip_reason()
    if reason:
        pytest.skip(reason)
    state = tmp_path_factory.mktemp("slurm")
    env = {
        **os.environ,
        "PATH": SBIN,
        "SLURM_LOCAL_DIR": str(state),
        "SLURM_LOCAL_PORT": str(free_port_base()),
    }
    started = time.monotonic()
    start = subprocess.run([str(SCRIPT), "start"], env=env, capture_output=True, text=True, timeout=600)
    try:
        assert start.returncode == 0, f"{start.stderr}\n" + "\n".join(
            f"--- {log.name}\n{log.read_text(errors='replace')[-1500:]}" for log in (state / "log").glob("*")
        )
        export = start.stdout.strip().splitlines()[-1]
        assert export == f"export SLURM_CONF={state / 'etc' / 'slurm.conf'}"
        print(f"local Slurm cluster up in {time.monotonic() - started:.1f}s")
        yield {**env, "SLURM_CONF": export.split("=", 1)[1]}
    finally:
        subprocess.run([str(SCRIPT), "stop"], env=env, capture_output=True, timeout=300)
        shutil.rmtree(state, ignore_errors=True)  # the database alone is tens of MB


def accounting(env: dict[str, str], array: str) -> list[str]:
    """`<array>_<task>|<state>` of each task of a job array, as sacct reports it."""
    return sorted(slurm(env, "sacct", "-n", "-X", "-P", "-j", array, "-o", "JobID,State").splitlines())


def job_of(sweep: Path, folder: Path) -> str | None:
    """The array job (`<array>_<task>`) whose log says it runs `folder`."""
    for log in sorted(sweep.glob(".submitit/*_*/*_log.out")):
        if f"run: {folder} " in log.read_text(errors="replace"):
            return log.parent.name
    return None


def test_slurm_sweep_with_a_preempted_job_matches_the_basic_launcher(
    cluster: dict[str, str], data_dir: Path, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    # 128 tokens a sample: each job stays part-written for seconds, not a fraction of one, so a loaded
    # machine's slow scancel still finds it running
    ckpt, reference = basic_sweep(data_dir, tmp_path_factory, gen=128)
    command = sweep_command(ckpt, data_dir, tmp_path, *LAUNCHER, gen=128)
    env = sweep_env(**{k: cluster[k] for k in ("PATH", "SLURM_CONF")})
    runs, sweep = tmp_path / "runs", tmp_path / "sweep"
    log = (tmp_path / "sweep.log").open("wb")
    proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    preempted: tuple[Path, str] | None = None
    refused = ""  # what scancel said if it reported a failure (its signal may have arrived all the same)
    try:
        # Preempt the first job seen part-written, as Slurm would: submitit catches the signal, requeues
        # the job, and exits. One signal only: a second, after one scancel reported refused but delivered
        # late, would preempt the job again, or kill its requeued run as it ends.
        deadline = time.monotonic() + 600
        while preempted is None and time.monotonic() < deadline and proc.poll() is None:
            for folder in sorted(runs.iterdir()) if runs.is_dir() else []:
                if lines(folder / "samples.jsonl") >= 1 and not (folder / "summary.json").exists():
                    job = job_of(sweep, folder)
                    if job:
                        cancel = subprocess.run(
                            ("scancel", "--signal=USR2", job),
                            env=env,
                            capture_output=True,
                            text=True,
                            timeout=240,
                        )
                        refused = (
                            f"exit {cancel.returncode}: {cancel.stderr.strip()}" if cancel.returncode else ""
                        )
                        preempted = (folder, job)
                        break
            time.sleep(0.01)
        assert preempted is not None, "no job was seen part-written"
        folder, job = preempted
        # Slurm holds a requeued job back for two minutes; let it start again at once.
        while time.monotonic() < deadline and proc.poll() is None:
            state = slurm(env, "squeue", "-h", "-j", job, "-o", "%T %r").split()
            if state and state[0] == "PENDING":
                slurm(env, "scontrol", "update", f"JobId={job}", "StartTime=now")
                break
            time.sleep(0.1)
        proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        log.close()
    output = (tmp_path / "sweep.log").read_text(errors="replace")
    assert proc.returncode == 0, output[-4000:]

    assert_same_results(runs, reference)
    array = job.split("_")[0]
    preemptions = {}
    for run in runs.iterdir():
        task = job_of(sweep, run)
        assert task is not None and task.startswith(f"{array}_"), run.name
        job_log = (sweep / ".submitit" / task / f"{task}_0_log.out").read_text(errors="replace")
        starts = re.findall(rf"run: {re.escape(str(run))} \((\d+) of {LIMIT} samples already done\)", job_log)
        # Each preemption requeues the job, which continues after the samples already written. (A signal
        # scancel said it could not deliver may still have arrived: a job can be preempted twice.)
        n = preemptions[run] = len(starts) - 1
        assert starts[0] == "0" and (n == 0 or "this job is preempted" in job_log), job_log[-3000:]
        later = [int(k) for k in starts[1:]]
        assert later == sorted(later) and all(1 <= k < LIMIT for k in later), starts
        environment = json.loads((run / "summary.json").read_text())["environment"]
        assert environment["slurm_job"] == task
        assert environment["slurm"]["SLURM_JOB_PARTITION"] == "debug"
        assert environment["slurm"].get("SLURM_RESTART_COUNT", "0") == str(n), run.name
    assert preemptions[folder] >= 1, (
        f"the job signalled ({job}) was not preempted (scancel: {refused or 'ok'})"
    )
    # Accounting sees every task of the array finish (without it, a lost job leaves submitit waiting
    # forever). submitit returns once each result is written, a moment before Slurm records the end.
    want, deadline = [f"{array}_{i}|COMPLETED" for i in range(3)], time.monotonic() + 60
    while (states := accounting(env, array)) != want:
        assert time.monotonic() < deadline, states
        time.sleep(0.5)


TABLE_COLUMNS = [
    "model",
    "benchmark",
    "decoder_label",
    "cache",
    "block_length",
    "gen_length",
    "n_samples",
    "accuracy",
    "identical_rate",
    "mean_nfe",
    "tokens_per_forward",
    "mean_accepted",
]


def test_a_sweep_sharded_four_ways_on_slurm_merges_into_the_unsharded_table(
    cluster: dict[str, str], data_dir: Path, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    from ssd.report.runs import load_runs

    ckpt, reference = basic_sweep(data_dir, tmp_path_factory)
    command = sweep_command(ckpt, data_dir, tmp_path, *LAUNCHER, "shard=0/4,1/4,2/4,3/4")
    env = sweep_env(**{k: cluster[k] for k in ("PATH", "SLURM_CONF")})
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert len(list((tmp_path / "runs").iterdir())) == 12  # 3 settings x 4 shards, one folder each
    sharded = load_runs(tmp_path / "runs").frame[TABLE_COLUMNS]
    unsharded = load_runs(reference).frame[TABLE_COLUMNS]
    assert len(sharded) == 3
    assert sharded.reset_index(drop=True).equals(unsharded.reset_index(drop=True))
