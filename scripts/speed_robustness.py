"""Do the default sweep's speedups survive a busy machine? Plain and paired speedups, quiet and loaded.

Runs a representative part of the default sweep (`conf/experiment/default.yaml`: the arith model, every
decoder family) twice through the ordinary command line, in fresh run folders: once as the machine is, once
beside CPU burners this script starts itself (busy loops, one per usable core by default). The burners are
bounded three ways: each stops at its own deadline, each has an RLIMIT_CPU hard cap set before it starts
(so they end even if this script is killed), and this script kills them by pid when the loaded pass ends.

Plain speedup: a run's tokens/s over its stepwise run's (timed separately, in another job). Paired
speedup (`timing.paired=true`, ssd/results/timing.py): the median per-sample speedup over the reference
decoded on the same sample right beside it. Target: paired speedups under load within 15% of the quiet
ones. This machine may be shared: `uptime` is recorded before and after each pass, and so is each run's
contention flag. Writes results/speed_robustness.{md,json}.

    .venv/bin/python scripts/speed_robustness.py [--limit 200] [--burners N] [--arms a,b,...]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from ssd.report import load_runs, with_baselines  # noqa: E402
from ssd.report.runs import missing  # noqa: E402
from ssd.report.tables import fmt, markdown  # noqa: E402
from ssd.results.timing import usable_cores  # noqa: E402

ARMS = "stepwise,fast_dllm_t09,fast_dllm_t05,ssd_n2,ssd_n8,psd,diffuspec"
TARGET = 0.15
SELF = "python scripts/speed_robustness.py"
BURN = "import sys, time\nend = time.monotonic() + float(sys.argv[1])\nwhile time.monotonic() < end: pass\n"


def uptime() -> str:
    done = subprocess.run(["uptime"], capture_output=True, text=True, check=False)
    return done.stdout.strip()


def start_burners(count: int, seconds: float) -> list[subprocess.Popen]:
    """`count` single-threaded busy loops, each ending by itself after `seconds` (RLIMIT_CPU as a cap)."""

    def cap() -> None:
        limit = int(seconds) + 5
        resource.setrlimit(resource.RLIMIT_CPU, (limit, limit))

    command = [sys.executable, "-c", BURN, str(seconds)]
    return [subprocess.Popen(command, preexec_fn=cap, stdout=subprocess.DEVNULL) for _ in range(count)]


def stop(burners: list[subprocess.Popen]) -> None:
    for p in burners:
        if p.poll() is None:
            p.kill()
    for p in burners:
        p.wait(timeout=10)


def sweep(label: str, runs: Path, arms: str, limit: int, timeout: float) -> float:
    """One pass through the runner; returns its wall seconds."""
    command = [
        sys.executable,
        "-m",
        "ssd.run",
        "-m",
        "+experiment=default",
        f"+experiment/arith={arms}",
        f"limit={limit}",
        f"sweep={label}",
        f"output_dir={runs}",
        f"hydra.sweep.dir={runs.parent / 'hydra' / label}",
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    start = time.monotonic()
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    if done.returncode:
        sys.exit(f"error: the {label} pass failed (exit {done.returncode}): {done.stderr.strip()[-500:]}")
    return time.monotonic() - start


def rows(runs: Path) -> dict[tuple[str, str], dict[str, Any]]:
    frame = with_baselines(load_runs(runs).frame)
    out = {}
    for r in frame.to_dict("records"):
        out[r["sweep"], r["decoder_label"]] = {
            "plain": None if missing(r["speedup"]) else round(float(r["speedup"]), 3),
            "paired": r["paired_speedup"],
            "paired_basis": r["paired_basis"],
            "paired_wall": r["paired_wall_speedup"],
            "paired_ci": [r["paired_ci_lo"], r["paired_ci_hi"]],
            "tokens_per_s": round(float(r["throughput_tokens_per_s"]), 1),
            "contended": bool(r["contended"]),
        }
    return out


def change(a: float | None, b: float | None) -> float | None:
    return None if missing(a) or missing(b) else b / a - 1


def pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:+.0f}%"


def num(x: float | None) -> str:
    return fmt(x, ".2f", "×")


def report(data: dict[str, Any]) -> str:
    headers = ["decoder", "plain quiet", "plain loaded", "Δ", "paired quiet", "paired loaded", "Δ", "≤15%"]
    headers += ["paired wall quiet", "paired wall loaded", "Δ"]
    body = []
    for r in data["rows"]:
        ok = "n/a" if r["paired_change"] is None else ("yes" if abs(r["paired_change"]) <= TARGET else "NO")
        flags = [" †" if r["quiet"]["contended"] else "", " †" if r["loaded"]["contended"] else ""]
        body.append(
            [
                r["decoder"],
                num(r["quiet"]["plain"]) + flags[0],
                num(r["loaded"]["plain"]) + flags[1],
                pct(r["plain_change"]),
                num(r["quiet"]["paired"]),
                num(r["loaded"]["paired"]),
                pct(r["paired_change"]),
                ok,
                num(r["quiet"].get("paired_wall")),
                num(r["loaded"].get("paired_wall")),
                pct(r["paired_wall_change"]),
            ]
        )
    right = [False, True, True, True, True, True, True, False, True, True, True]
    lines = [
        "# Speedups, quiet and loaded",
        "",
        f"`{data['command']}` on {data['usable_cores']} usable cores, {data['limit']} arith problems per "
        f"job, one torch thread per job; loaded = beside {data['burners']} CPU-burning processes.",
        "",
        markdown(headers, right, body),
        "plain: tokens/s over the stepwise run's (timed in a separate job); paired: median per-sample "
        "speedup over the reference decoded right beside each sample (timing.paired=true), on CPU time "
        "(one thread on a CPU; `paired wall`: the same pairs on wall time). Δ: loaded over quiet. †: the "
        "run flagged itself contended (summary.json timing.contended). Target: paired Δ within ±15%.",
        "",
        f"- quiet pass: {data['quiet_seconds']:.0f}s; uptime before: `{data['uptime']['quiet_before']}`, "
        f"after: `{data['uptime']['quiet_after']}`",
        f"- loaded pass: {data['loaded_seconds']:.0f}s; uptime before: `{data['uptime']['loaded_before']}`, "
        f"after: `{data['uptime']['loaded_after']}`",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--arms", default=ARMS, help=f"arms of conf/experiment/arith (default {ARMS})")
    p.add_argument("--limit", type=int, default=200, help="problems per job (default: all 200)")
    p.add_argument("--burners", type=int, default=usable_cores(), help="CPU burners (default: usable cores)")
    p.add_argument("--timeout", type=float, default=900, help="seconds per pass before giving up")
    p.add_argument("--out", type=Path, default=REPO / "results", help="folder for speed_robustness.{md,json}")
    args = p.parse_args(argv)
    if not 0 < args.burners <= 4 * usable_cores():
        sys.exit(f"error: --burners {args.burners}: pass 1..{4 * usable_cores()}")
    work = Path(tempfile.mkdtemp(prefix="speed_robustness-"))
    runs = work / "runs"
    times, stamps = {}, {}
    try:
        stamps["quiet_before"] = uptime()
        print(f"quiet pass ({stamps['quiet_before']})", flush=True)
        times["quiet"] = sweep("robust-quiet", runs, args.arms, args.limit, args.timeout)
        stamps["quiet_after"] = uptime()
        burners = start_burners(args.burners, args.timeout + 30)
        try:
            time.sleep(5)  # let the load average see them
            stamps["loaded_before"] = uptime()
            print(f"loaded pass, {args.burners} burners ({stamps['loaded_before']})", flush=True)
            times["loaded"] = sweep("robust-loaded", runs, args.arms, args.limit, args.timeout)
            stamps["loaded_after"] = uptime()
        finally:
            stop(burners)
        found = rows(runs)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    decoders = [d for s, d in found if s == "robust-quiet"]
    table = []
    for d in decoders:
        quiet, loaded = found["robust-quiet", d], found.get(("robust-loaded", d), {})
        table.append(
            {
                "decoder": d,
                "quiet": quiet,
                "loaded": loaded,
                "plain_change": change(quiet.get("plain"), loaded.get("plain")),
                "paired_change": change(quiet.get("paired"), loaded.get("paired")),
                "paired_wall_change": change(quiet.get("paired_wall"), loaded.get("paired_wall")),
            }
        )
    data = {
        "command": " ".join([SELF, *(sys.argv[1:] if argv is None else argv)]),
        "arms": args.arms,
        "limit": args.limit,
        "burners": args.burners,
        "usable_cores": usable_cores(),
        "quiet_seconds": times["quiet"],
        "loaded_seconds": times["loaded"],
        "uptime": stamps,
        "rows": table,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "speed_robustness.json").write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    text = report(data)
    (args.out / "speed_robustness.md").write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
