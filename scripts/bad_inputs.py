"""Try bad inputs as a user would and record what the harness answers: results/bad_inputs.md.

Each case runs `python -m ssd.run` (or a report) in a fresh process on the tiny LLaDA and the synthetic arith
benchmark (a few seconds each), and records its exit status, how many lines it wrote to stderr, and its
last stderr line (paths below the scratch folder shown as $TMP). Some cases first damage something: a
checkpoint copy, a data copy, a finished run folder. Usage: `python scripts/bad_inputs.py [--out FILE]`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BASE = ["model=tiny_llada", "benchmark=arith", "limit=2", "decoder.gen_length=16", "decoder.block_length=8"]
TINY = REPO / "data" / "checkpoints" / "tiny-llada"


@dataclass(frozen=True)
class Case:
    group: str
    label: str  # what the user did, as shown in the table
    args: tuple[str, ...] = ()  # runner overrides after BASE (and output_dir)
    setup: Callable[[Path], list[str]] | None = None  # prepares $TMP, returns the full command line
    note: str = ""


def given(group: str, *args: str, note: str = "") -> Case:
    """A case that is only runner overrides; the table shows them as typed (and `note`, in brackets)."""
    return Case(group, " ".join(args) + (f" ({note})" if note else ""), args)


def run_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "ssd.run", *args]


def finished_run(tmp: Path) -> Path:
    """A finished job under $TMP/runs (the same one for every case that damages one)."""
    subprocess.run(
        run_cmd(*BASE, f"output_dir={tmp}/runs"), cwd=REPO, env=ENV, capture_output=True, check=True
    )
    (folder,) = (tmp / "runs").iterdir()
    return folder


def edited_accuracy(tmp: Path) -> Path:
    folder = finished_run(tmp)
    summary = json.loads((folder / "summary.json").read_text())
    (folder / "summary.json").write_text(json.dumps(summary | {"accuracy": 0.123}, indent=2))
    return folder


def corrupt_middle_line(tmp: Path) -> Path:
    folder = finished_run(tmp)
    lines = (folder / "samples.jsonl").read_text().splitlines()
    record = json.loads(lines[0])
    lines[0] = json.dumps(record | {"correct": not record["correct"]})
    (folder / "samples.jsonl").write_text("\n".join(lines) + "\n")
    return folder


def half_line(tmp: Path) -> Path:
    folder = finished_run(tmp)
    lines = (folder / "samples.jsonl").read_text().splitlines()
    lines[0] = lines[0][: len(lines[0]) // 2]
    (folder / "samples.jsonl").write_text("\n".join(lines) + "\n")
    return folder


def rerun(damage: Callable[[Path], Path]) -> Callable[[Path], list[str]]:
    def setup(tmp: Path) -> list[str]:
        damage(tmp)
        return run_cmd(*BASE, f"output_dir={tmp}/runs")

    return setup


def report(module: str, damage: Callable[[Path], Path]) -> Callable[[Path], list[str]]:
    def setup(tmp: Path) -> list[str]:
        damage(tmp)
        return [sys.executable, "-m", module, "--runs", f"{tmp}/runs", "--out", f"{tmp}/out"]

    return setup


def checkpoint(damage: Callable[[Path], None]) -> Callable[[Path], list[str]]:
    def setup(tmp: Path) -> list[str]:
        shutil.copytree(TINY, tmp / "ckpt")
        damage(tmp / "ckpt")
        return run_cmd(*BASE, f"model.path={tmp}/ckpt", f"output_dir={tmp}/runs")

    return setup


def truncate_shard(folder: Path) -> None:
    shard = sorted(folder.glob("*.safetensors"))[-1]
    shard.write_bytes(shard.read_bytes()[:1000])


def edited_data(tmp: Path) -> list[str]:
    """The GSM8K test set copied and one gold answer changed: the same row count."""
    (tmp / "data" / "gsm8k").mkdir(parents=True)
    rows = (REPO / "data" / "gsm8k" / "test.jsonl").read_text(encoding="utf-8").splitlines(keepends=True)
    row = json.loads(rows[3])
    rows[3] = json.dumps(row | {"answer": row["answer"] + "0"}, ensure_ascii=False) + "\n"
    (tmp / "data" / "gsm8k" / "test.jsonl").write_text("".join(rows), encoding="utf-8")
    return run_cmd(*BASE, "benchmark=gsm8k", f"benchmark.data_dir={tmp}/data", f"output_dir={tmp}/runs")


def file_in_the_way(tmp: Path) -> list[str]:
    (tmp / "runs").write_text("a file where the runs go")
    return run_cmd(*BASE, f"output_dir={tmp}/runs")


def full_disk(tmp: Path) -> list[str]:
    """samples.jsonl is /dev/full: every write to it fails with ENOSPC, as on a full disk."""
    folder = finished_run(tmp)
    for name in ("summary.json", "samples.jsonl"):
        (folder / name).unlink()
    (folder / "samples.jsonl").symlink_to("/dev/full")
    return run_cmd(*BASE, f"output_dir={tmp}/runs")


def stale_temp(tmp: Path) -> list[str]:
    """What a kill during the summary's atomic write leaves: no summary, a .summary.json.tmp-<pid>."""
    folder = finished_run(tmp)
    (folder / "summary.json").rename(folder / ".summary.json.tmp-999999")
    return [
        "bash",
        "-c",
        f"{sys.executable} -m ssd.run {' '.join(BASE)} output_dir={tmp}/runs >/dev/null && "
        f"echo probe: left in the run folder: $(ls -A {folder} | tr '\\n' ' ')",
    ]


def length_check(tmp: Path) -> list[str]:
    return [
        "bash",
        "-c",
        f"{sys.executable} -m ssd.run {' '.join(BASE)} decoder.gen_length=16384 output_dir={tmp}/runs; "
        f"rc=$?; echo probe: run folders left: $(ls -A {tmp}/runs 2>/dev/null | wc -l); exit $rc",
    ]


CASES = [
    # Values outside their meaning (silently accepted before)
    given("range", "decoder.temperature=-1"),
    given("range", "decoder=fast_dllm", "decoder.threshold=5"),
    given("range", "decoder=fast_dllm", "decoder.threshold=1.5"),
    given("range", "decoder=fast_dllm", "decoder.threshold=0"),
    given("range", "decoder=fast_dllm", "decoder.rule=factor", "decoder.factor=0"),
    given("range", "decoder=ssd", "decoder.draft_length=1000000"),
    given("range", "decoder=ssd", "decoder.draft_length=0"),
    given("range", "decoder=psd", "decoder.draft_length=-1"),
    given("range", "decoder=diffuspec", "decoder.k_min=40"),
    given("range", "decoder=diffuspec", "decoder.beam=0"),
    given("range", "decoder=diffuspec", "decoder.mix=1.5"),
    given("range", "decoder=diffuspec", "decoder.mass=0"),
    given("range", "decoder=diffuspec", "decoder.rho=-0.1"),
    given("range", "decoder.pad_rows=0"),
    given("range", "decoder.gen_length=0"),
    given("range", "decoder.block_length=5", note="does not divide gen_length 16"),
    given("range", "decoder.temperature=nan"),
    given("range", "limit=0"),
    given("range", "limit=-3"),
    given("range", "batch_size=0"),
    given("range", "shard=3/2"),
    given("range", "benchmark.num_fewshot=-1"),
    given("range", "benchmark.size=0"),
    given("range", "benchmark.size=100000000", note="limit=2: only 2 are drawn"),
    given("range", "shard=5/8", note="limit=2: more shards than samples"),
    given("range", "limit=null", "benchmark.size=3", "shard=5/8", note="known once the samples are"),
    given("range", "benchmark=math", "benchmark.grade_timeout=0"),
    given("range", "benchmark=humaneval", "benchmark.timeout=-1"),
    # Keys outside the schema, enums, types, grammar (Hydra's multi-line messages before)
    given("key", "decoder=ssd", "decoder.draft_lenght=4"),
    given("key", "decoder=ssd", "+decoder.draft_lenght=4"),
    given("key", "decoder=ssd", "++decoder.draft_lenght=4"),
    given("key", "+limt=3"),
    given("key", "decoder.threshold=0.5", note="stepwise has none"),
    given("key", "~decoder.cache"),
    given("enum", "decoder.cache=full"),
    given("enum", "decoder.verify_layout=fast"),
    given("enum", "decoder=fast_dllm", "decoder.rule=maybe"),
    given("enum", "wandb.mode=yes"),
    given("enum", "model.dtype=fp16"),
    given("enum", "model.device=gpu"),
    given("enum", "benchmark=gsm8k", "benchmark.variant=gsm8k_cott"),
    given("enum", "benchmark=math", "benchmark.subset=math5000"),
    given("enum", "benchmark=humaneval", "benchmark.sandbox=docker"),
    given("type", "limit=abc"),
    given("type", "limit=1.5"),
    given("type", "decoder.temperature=abc"),
    given("type", "decoder.bit_exact=maybe"),
    given("type", "seed=abc"),
    given("grammar", "limit=["),
    given("option", "decoder=sdd"),
    given("option", "benchmark=gsm8"),
    given("option", "+experiment=defualt"),
    # The environment: devices, checkpoints, data, the output location (tracebacks before)
    given("env", "model.device=cuda", note="this machine has no GPU"),
    given("env", "model.device=cuda:7"),
    given("env", "model.path=/nonexistent"),
    Case(
        "env",
        "checkpoint with a corrupt config.json",
        setup=checkpoint(lambda f: (f / "config.json").write_text("{")),
    ),
    Case("env", "checkpoint with a truncated safetensors shard", setup=checkpoint(truncate_shard)),
    Case(
        "env",
        "checkpoint without its index",
        setup=checkpoint(lambda f: (f / "model.safetensors.index.json").unlink()),
    ),
    Case("env", "GSM8K data edited in place (same row count)", setup=edited_data),
    given("env", "benchmark=gsm8k", "benchmark.data_dir=/nonexistent"),
    Case("env", "output_dir under a file", setup=file_in_the_way),
    given("env", "output_dir=/sys/ssd-runs", note="not writable"),
    Case("env", "full disk while writing samples (samples.jsonl -> /dev/full)", setup=full_disk),
    Case("env", "decoder.gen_length=16384 (prompt + gen_length > max_length)", setup=length_check),
    # Damaged finished run folders: the rerun and the reports refuse them
    Case("runs", "rerun after summary.json's accuracy was edited", setup=rerun(edited_accuracy)),
    Case("runs", "rerun after a middle sample line was edited", setup=rerun(corrupt_middle_line)),
    Case("runs", "rerun after a middle sample line was cut in half", setup=rerun(half_line)),
    Case(
        "runs",
        "tables over a run with an edited accuracy",
        setup=report("ssd.report.tables", edited_accuracy),
    ),
    Case(
        "runs",
        "plots over a run with an edited sample",
        setup=report("ssd.report.plots", corrupt_middle_line),
    ),
    Case(
        "runs",
        "paper tables over a run with an edited accuracy",
        setup=report("ssd.report.paper", edited_accuracy),
    ),
    Case("runs", "rerun after a kill mid-write of summary.json (stale temp)", setup=stale_temp),
]
ENV = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}


def run_case(case: Case, tmp: Path) -> tuple[int, list[str], list[str], float]:
    command = case.setup(tmp) if case.setup else run_cmd(*BASE, f"output_dir={tmp}/runs", *case.args)
    start = time.perf_counter()
    proc = subprocess.run(command, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=300)
    lines = [line.replace(str(tmp), "$TMP") for line in proc.stderr.strip().splitlines()]
    probes = [line.replace(str(tmp), "$TMP") for line in proc.stdout.splitlines() if line[:7] == "probe: "]
    return proc.returncode, lines, probes, time.perf_counter() - start


def cell(text: str) -> str:
    return text.replace("|", "\\|")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(REPO / "results" / "bad_inputs.md"))
    args = parser.parse_args(argv)
    rows = []
    for number, case in enumerate(CASES, 1):
        with tempfile.TemporaryDirectory(prefix="ssd-bad-") as tmp:
            code, lines, probes, seconds = run_case(case, Path(tmp))
        message = lines[-1] if lines else "(nothing on stderr)"
        message += "".join(f" — afterwards, {p.removeprefix('probe: ')}" for p in probes)
        rows.append(
            f"| {number} | {case.group} | `{cell(case.label)}` | {code} | {len(lines)} | {cell(message)} |"
        )
        print(
            f"{number:2d} exit {code} ({len(lines)} line(s), {seconds:.1f}s) {case.label}: {message}",
            flush=True,
        )
    header = [
        "# Bad inputs and what the harness answers",
        "",
        "Generated by `scripts/bad_inputs.py` (rerun it to regenerate this file): each input is given to a",
        f"fresh `python -m ssd.run {' '.join(BASE)}` (or to the report named), on a machine",
        "without a GPU. *lines*: how many lines it wrote to stderr; *message*: the last of them ($TMP: the",
        "case's scratch folder), and for some cases what the folder held afterwards.",
        "",
        "| # | kind | input | exit | lines | message |",
        "|---|---|---|---|---|---|",
    ]
    Path(args.out).write_text("\n".join([*header, *rows]) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
