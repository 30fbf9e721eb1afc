"""Time the code graders on gold answers: seconds per sample, serially and in parallel.

Grading a completion costs process starts (sandbox, checker) that the model's decoding does not; this
measures them. Works on any checkout whose code benchmarks have `score_many(samples, completions,
workers)`, so the same command times two versions of the grader (PYTHONPATH picks the checkout).
Usage: `python scripts/grading_time.py [--limit N] [--workers 1 2] [--out results/sandbox/x.json]`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from gold_check import build  # scripts/ is on sys.path when a script runs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("names", nargs="*", default=["humaneval", "mbpp"])
    parser.add_argument("--data-dir", default="data")
    parser.add_argument("--limit", type=int, default=None, help="first N samples of each (default: all)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--out", default=None, help="also write the numbers as JSON here")
    args = parser.parse_args(argv)
    rows = []
    for name in args.names:
        bench = build(name, args.data_dir)
        samples = bench.samples()[: args.limit]
        completions = [bench.gold_completion(s) for s in samples]
        bench.score_many(samples[:1], completions[:1])  # the sandbox's one-time probe, not timed
        for workers in args.workers:
            start = time.perf_counter()
            scores = bench.score_many(samples, completions, workers=workers)
            took = time.perf_counter() - start
            row = {"benchmark": name, "workers": workers, "samples": len(samples), "seconds": round(took, 2)}
            row |= {
                "per_sample_ms": round(1000 * took / len(samples), 1),
                "correct": sum(s.correct for s in scores),
            }
            row["isolation"] = scores[0].details.get("isolation")
            failed = [
                (s.id, c.details.get("status"), c.details.get("reason"))
                for s, c in zip(samples, scores, strict=True)
                if not c.correct
            ]
            if failed:
                row["failed"] = failed
            rows.append(row)
            print(json.dumps(row), flush=True)
    if args.out:
        record = {
            "command": " ".join(sys.argv),
            "loadavg": os.getloadavg(),
            "cpus": os.cpu_count(),
            "rows": rows,
        }
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(record, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
