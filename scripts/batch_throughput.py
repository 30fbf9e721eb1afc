"""Throughput by batch size: do batches above 1 work, hold accuracy and pay? (the embedded model, 1 thread)

Every (arm, batch size) is an ordinary job (`run_job`, `batch_size=B`: B prompts decoded together,
left-padded) on the base config, the embedded arith model with its frame (gen 24, block 8, dual cache),
run folders under --runs (a scratch folder by default). For each it records tokens/s (the runner's:
generated tokens over decoding wall time), tokens per CPU second (the same tokens over the process's CPU
time: one thread, so it leaves out waiting for a core and holds on a shared machine), TPF (generated
tokens per forward *of a sequence*: the same at every batch size, except under SSD's adaptive tree, whose
shapes follow the acceptance statistics of the samples decoded before), tokens per *batched* forward (all
B sequences' tokens over the forward calls the batch made: what batching shares), the rows of those calls,
and identity to the same arm at batch size 1, token for token per sample.

Projected H100: at batch size 1 the run's forwards priced with the recorded cost table
(results/forward_cost/h100_llada8b.json, ssd/report/projection.py), over stepwise's at batch size 1.
At B > 1 the table cannot price them, and the file says so: it holds k candidate rows over ONE
sequence's cache (the shared-cache tree layout), while a batch of B prompts reads B caches, which it
never measured (the plain batch of 6 over LLaDA-8B's cache costs ~1.96x one forward, against ~1.10x
for 6 rows over one cache).

Usage: OMP_NUM_THREADS=1 python scripts/batch_throughput.py [--limit 200] [--out results] [--runs DIR]
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before torch: one thread, as every timed job here

import argparse  # noqa: E402
import json  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections import Counter  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from contextlib import contextmanager  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

from hydra import compose, initialize_config_dir  # noqa: E402

from ssd.config import register  # noqa: E402
from ssd.cost import CostTable  # noqa: E402
from ssd.models.cache import BlockForward  # noqa: E402
from ssd.report.projection import shapes_seconds  # noqa: E402
from ssd.report.tables import markdown  # noqa: E402
from ssd.results.runfolder import RunFolder  # noqa: E402
from ssd.run import CONF_DIR, resolve, run_job  # noqa: E402

# The arms, one plain table: (label, Hydra overrides of the decoder). Add an arm by adding a line.
ARMS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("stepwise", ("decoder=stepwise",)),
    ("Fast-dLLM τ 0.9", ("decoder=fast_dllm", "decoder.threshold=0.9")),
    ("SSD chain N=4", ("decoder=ssd", "decoder.draft_length=4")),
    ("SSD adaptive tree 16", ("decoder=ssd", "decoder.tree_budget=16")),
    ("PSD τ 0.9 N=4", ("decoder=psd", "decoder.threshold=0.9", "decoder.draft_length=4")),
)
BATCH_SIZES = (1, 2, 4, 8, 16)
COST = "results/forward_cost/h100_llada8b.json"
SELF = "OMP_NUM_THREADS=1 python scripts/batch_throughput.py"


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()


@contextmanager
def batched_forwards() -> Iterator[Counter]:
    """Rows of every forward call made meanwhile (rows: forwards), counted where BlockForward counts
    its NFE, so a batch of B sequences' shared call is one entry of all their rows."""
    rows: Counter = Counter()
    original = BlockForward._count

    def count(self: BlockForward, batch: int) -> None:
        rows[batch] += 1
        original(self, batch)

    BlockForward._count = count
    try:
        yield rows
    finally:
        BlockForward._count = original


def job(
    overrides: tuple[str, ...], batch: int, limit: int | None, runs: str, models: dict
) -> tuple[Path, Counter]:
    extra = [f"batch_size={batch}", f"output_dir={runs}", "sweep=batch_throughput", "check_lossless=false"]
    extra += [] if limit is None else [f"limit={limit}"]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=[*overrides, *extra])
    folder = RunFolder.for_config(resolve(cfg))
    if (folder.path / "summary.json").is_file():
        raise SystemExit(f"error: {folder.path} is already done: pass a fresh --runs folder")
    with batched_forwards() as rows:
        path = run_job(cfg, models)
    return path, rows


def record(label: str, batch: int, path: Path, rows: Counter, base: dict | None, cost: CostTable) -> dict:
    summary = json.loads((path / "summary.json").read_text())
    samples = {s["id"]: s for s in RunFolder(path).read_samples()}
    calls = sum(rows.values())
    tokens = summary["total_generated_tokens"]
    out = {
        "arm": label,
        "batch_size": batch,
        "run": path.name,
        "n": summary["n_samples"],
        "accuracy": summary["accuracy"],
        "tokens_per_s": summary["throughput_tokens_per_s"],
        "tokens_per_cpu_s": tokens / sum(s["timing"]["cpu_seconds"] for s in samples.values()),
        "contended": bool(summary.get("timing", {}).get("contended")),
        "contended_why": summary.get("timing", {}).get("contended_why"),
        "tpf": summary["tokens_per_forward"],
        "batched_forwards": calls,
        "tokens_per_batched_forward": tokens / calls if calls else None,
        "mean_rows": sum(r * n for r, n in rows.items()) / calls if calls else None,
        "max_rows": max(rows, default=0),
        "identical_to_bs1": None,
        "projected_tokens_per_s": None,
    }
    if base is not None:
        same = sum(samples[i]["tokens"] == t for i, t in base["tokens"].items() if i in samples)
        out["identical_to_bs1"] = same / len(base["tokens"])
    if batch == 1:
        out["projected_tokens_per_s"] = tokens / shapes_seconds(summary["forward_shape_histogram"], cost)
    out["tokens"] = {i: s["tokens"] for i, s in samples.items()}
    return out


def report(data: dict[str, Any], cost: CostTable) -> str:
    headers = ["arm", "B", "n", "accuracy %", "identical to B=1 %", "tokens/s", "× B=1", "tokens/CPU-s"]
    headers += ["× B=1 (CPU)", "TPF"]
    headers += ["tokens / batched forward", "rows / batched forward (max)", f"projected {cost.device}"]
    right = [False] + [True] * (len(headers) - 1)
    first = {r["arm"]: r for r in data["rows"] if r["batch_size"] == 1}
    base_projected = first.get("stepwise", {}).get("projected_tokens_per_s")
    body = []
    for r in data["rows"]:
        one = first[r["arm"]]
        ident = "ref" if r["identical_to_bs1"] is None else f"{100 * r['identical_to_bs1']:.1f}"
        if r["projected_tokens_per_s"] is not None and base_projected:
            projected = f"{r['projected_tokens_per_s'] / base_projected:.2f}× stepwise"
        else:
            projected = "not priced (B caches)"
        body.append(
            [r["arm"], str(r["batch_size"]), str(r["n"]), f"{100 * r['accuracy']:.1f}", ident]
            + [f"{r['tokens_per_s']:.1f}" + ("†" if r["contended"] else "")]
            + [f"{r['tokens_per_s'] / one['tokens_per_s']:.2f}×", f"{r['tokens_per_cpu_s']:.1f}"]
            + [f"{r['tokens_per_cpu_s'] / one['tokens_per_cpu_s']:.2f}×", f"{r['tpf']:.2f}"]
            + [f"{r['tokens_per_batched_forward']:.2f}", f"{r['mean_rows']:.2f} ({r['max_rows']})", projected]
        )
    contended = sum(r["contended"] for r in data["rows"])
    beyond = sorted(
        {r["arm"] for r in data["rows"] if r["batch_size"] == 1 and r["max_rows"] > cost.max_rows}
    )
    lines = [
        "# Throughput by batch size (embedded arith model, gen 24, block 8, dual cache)",
        "",
        f"Command: `{data['command']}`; one torch thread; {data['cpus']} CPUs. Load (`uptime`) before: "
        f"`{data['uptime_before']}`; after: `{data['uptime_after']}`. {data['seconds']:.0f} s in all.",
        "",
        markdown(headers, right, body),
        (
            f"{contended} of {len(data['rows'])} jobs flagged themselves contended (†): read the ratios "
            "(× B=1), not the absolute speeds, which a busy machine lowers.\n"
            if contended
            else ""
        ),
        "B: prompts decoded together (`batch_size=B`, left-padded). identical to B=1: samples whose tokens "
        "equal the same arm's at B = 1. tokens/s: generated tokens over decoding wall time, on this CPU "
        "(†: the job flagged itself contended: its speed is not to be trusted); × B=1: over the same arm's. "
        "tokens/CPU-s: the same tokens over the process's CPU seconds while decoding: for a one-thread job "
        "it leaves out the time spent waiting for a core (what the runner's paired speedups use; "
        "ssd/results/timing.py), not the slowdown of sharing one, so a busy machine lowers it too, less. "
        "TPF: generated tokens per forward of one sequence (each sequence's own accounting; batching changes "
        "it only under the adaptive tree, whose shapes follow the statistics of the samples before). "
        "tokens / batched forward: all the batch's generated tokens over the forward calls it made; rows / "
        "batched forward: rows per such call, mean (max).",
        "",
        f"projected {cost.device}: at B = 1, each forward priced with `{COST}` (ssd/report/projection.py), "
        "tokens per projected second over stepwise's at B = 1: a projection, not a measurement"
        + (
            f" (beyond the table's {cost.max_rows} measured rows, extrapolated, for: {', '.join(beyond)})"
            if beyond
            else ""
        )
        + ". Not priced at B > 1: the table holds k candidate rows over ONE sequence's cache (the shared-"
        "cache tree layout); a batch of B prompts reads B caches, which it never measured (on LLaDA-8B a "
        "plain batch of 6 rows, each over its own cache copy, costs ~1.96× one forward, against ~1.10× for "
        "6 rows over one cache: docs/algorithms.md).",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--limit", type=int, default=None, help="problems per job (default: all 200)")
    p.add_argument("--out", type=Path, default=Path("results"), help="folder for batch_throughput.{md,json}")
    p.add_argument("--runs", default="", help="run folders (default: a fresh scratch folder)")
    args = p.parse_args(argv)
    register()
    cost = CostTable.load(COST)
    runs = args.runs or tempfile.mkdtemp(prefix="batch_throughput_")
    models: dict = {}
    rows = []
    start, before = time.time(), uptime()
    for label, overrides in ARMS:
        base = None
        for batch in BATCH_SIZES:
            path, counted = job(overrides, batch, args.limit, runs, models)
            rows.append(record(label, batch, path, counted, base, cost))
            base = base or rows[-1]
            print(f"{label} B={batch}: {rows[-1]['tokens_per_s']:.1f} tokens/s", flush=True)
    limit = "" if args.limit is None else f" --limit {args.limit}"
    data = {
        "command": SELF + limit,
        "cpus": os.cpu_count(),
        "threads": os.environ.get("OMP_NUM_THREADS"),
        "uptime_before": before,
        "uptime_after": uptime(),
        "seconds": time.time() - start,
        "cost_table": COST,
        "rows": [{k: v for k, v in r.items() if k != "tokens"} for r in rows],
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "batch_throughput.json").write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    text = report(data, cost)
    (args.out / "batch_throughput.md").write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
