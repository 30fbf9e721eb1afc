"""Speculation over Fast-dLLM: TPF against rows per verification forward, and identity to Fast-dLLM.

For each of Fast-dLLM's settings (threshold 0.9 / 0.7 / 0.5, factor 1) on a workload: Fast-dLLM itself, then
SSD over its policy (`decoder=ssd decoder.policy=fast_dllm`) as chains and adaptive trees of growing size,
each an ordinary job whose lossless check the runner makes against that Fast-dLLM run (same rule, cache,
block, seed): identical %, NFE, TPF, its TPF over Fast-dLLM's, rows per verification forward, and the
projected H100 speedup over stepwise and over Fast-dLLM (every recorded forward priced with the H100
table, rows of another block priced by query tokens: ssd/cost.py). Temperature 0.7 too, for identity.
Run folders under --runs (a scratch folder by default); the table (Markdown + JSON) goes to --out.
Usage: OMP_NUM_THREADS=1 python scripts/spec_sweep.py --workload arith [--limit 200] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from hydra import compose, initialize_config_dir
from tree_sweep import row  # the same row of a run folder (scripts/ is on sys.path)

from ssd.config import register
from ssd.cost import CostTable
from ssd.report.projection import ARCH_COST
from ssd.run import run_job

CONF = Path(__file__).resolve().parent.parent / "conf"
# each workload: the overrides that choose its model, benchmark and decoding frame
WORKLOADS = {
    "arith": ["+experiment=default", "decoder.gen_length=24", "decoder.block_length=8", "decoder.cache=dual"],
    # the same model and problems in one block of 24: the policy commits fewer positions per forward
    "arith_block24": [
        "+experiment=default",
        "decoder.gen_length=24",
        "decoder.block_length=24",
        "decoder.cache=dual",
    ],
    # the second workload: tally's model and problems, gen 96 in blocks of 32 (conf/frame/tally.yaml)
    "tally": ["+experiment=default_tally"],
}
POLICIES = {  # Fast-dLLM's settings, as overrides shared by Fast-dLLM and the speculation over it
    "τ 0.9": ["decoder.rule=threshold", "decoder.threshold=0.9"],
    "τ 0.7": ["decoder.rule=threshold", "decoder.threshold=0.7"],
    "τ 0.5": ["decoder.rule=threshold", "decoder.threshold=0.5"],
    "factor 1": ["decoder.rule=factor", "decoder.factor=1.0"],
}
SPECULATION = {  # how many rows a verification forward may take
    "chain N=2": ["decoder.draft_length=2"],
    "chain N=4": ["decoder.draft_length=4"],
    "budget 4": ["decoder.tree_budget=4"],
    "budget 8": ["decoder.tree_budget=8"],
    "budget 16": ["decoder.tree_budget=16"],
    "budget 16, H100 cost": ["decoder.tree_budget=16", "decoder.tree_cost={cost}"],
    # the states that fill the block also evaluated, as the next block's refresh (skipped when accepted)
    "budget 16, seeded": ["decoder.tree_budget=16", "decoder.seed_next_block=true"],
}


def settings(quick: bool, cost: str) -> list[tuple[str, str, list[str]]]:
    """(policy, setting, overrides): stepwise, then per policy Fast-dLLM and its speculation arms; `cost`
    the H100 table the priced tree reads."""
    out = [("stepwise", "stepwise", ["decoder=stepwise"])]
    for policy, knobs in POLICIES.items():
        out.append((policy, "fast_dllm", ["decoder=fast_dllm", *knobs]))
        for name, arm in SPECULATION.items():
            if quick and policy != "τ 0.9" and name not in ("budget 8", "budget 16"):
                continue
            arm = [a.format(cost=cost) for a in arm]
            out.append((policy, name, ["decoder=ssd", "decoder.policy=fast_dllm", *knobs, *arm]))
    sampled = ["decoder.temperature=0.7"]
    out.append(("τ 0.9, T=0.7", "fast_dllm", ["decoder=fast_dllm", *POLICIES["τ 0.9"], *sampled]))
    for name in ("chain N=4", "budget 16", "budget 16, seeded"):
        arm = ["decoder=ssd", "decoder.policy=fast_dllm", *POLICIES["τ 0.9"], *SPECULATION[name], *sampled]
        out.append(("τ 0.9, T=0.7", name, arm))
    return out


def markdown(rows: list[dict], workload: str, command: str, cost: str) -> str:
    lines = [
        f"# Speculation over Fast-dLLM on {workload}: TPF against rows per verification forward",
        "",
        f"Command: `{command}`. identical %: samples token-identical to the Fast-dLLM run of the same policy "
        "(the runner's lossless check). TPF ×: over that Fast-dLLM run. rows: mean and largest rows of the "
        "verification forwards (block refreshes excluded).",
        "",
        f"projected H100: the run's forwards priced with {cost}, its architecture's table (rows of "
        "another block than the table's priced by query tokens; ssd/cost.py), tokens per projected second "
        "over stepwise's and over its Fast-dLLM run's: a projection, not a measurement.",
        "",
        "| policy | setting | n | accuracy % | identical % | NFE | TPF | TPF × | mean rows | max rows | "
        "projected H100 | over Fast-dLLM |",
        "|:--|:--|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    base = next(r["projected_tokens_per_s"] for r in rows if r["setting"] == "stepwise")
    fast = {r["policy"]: r for r in rows if r["setting"] == "fast_dllm"}
    for r in rows:
        ref = fast.get(r["policy"])
        checked = r["identical_rate"] is not None and r["setting"] != "fast_dllm"
        ident = f"{100 * r['identical_rate']:.1f}" if checked else "ref"
        over = f"{r['projected_tokens_per_s'] / ref['projected_tokens_per_s']:.2f}×" if ref else ""
        ratio = f"{r['tpf'] / ref['tpf']:.2f}" if ref else ""
        lines.append(
            f"| {r['policy']} | {r['setting']} | {r['n']} | {100 * r['accuracy']:.1f} | {ident} | "
            f"{r['mean_nfe']:.2f} | {r['tpf']:.2f} | {ratio} | {r['mean_rows']:.2f} | {r['max_rows']} | "
            f"{r['projected_tokens_per_s'] / base:.2f}× | {over} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workload", default="arith", choices=sorted(WORKLOADS))
    ap.add_argument("--limit", type=int, default=200)
    ap.add_argument("--out", default="results/spec_sweep")
    ap.add_argument("--runs", default="", help="run folders (default: a scratch folder)")
    ap.add_argument("--quick", action="store_true", help="only budgets 8 and 16 beside tau 0.9")
    args = ap.parse_args()
    register()
    runs = args.runs or tempfile.mkdtemp(prefix="spec_sweep_")
    models: dict = {}
    rows = []
    t0, load_before = time.time(), os.getloadavg()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        arch = compose("config", overrides=WORKLOADS[args.workload]).model.name
    cost = f"results/forward_cost/{ARCH_COST[arch].name}"  # the model's architecture's H100 table
    for policy, name, overrides in settings(args.quick, cost):
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            common = [f"limit={args.limit}", f"output_dir={runs}", "sweep=spec_sweep", "timing.paired=false"]
            cfg = compose("config", overrides=[*WORKLOADS[args.workload], *overrides, *common])
        rows.append(row(name, run_job(cfg, models), CostTable.load(cost)) | {"policy": policy})
        print(f"{policy} {name}: TPF {rows[-1]['tpf']:.2f}, rows {rows[-1]['mean_rows']:.2f}", flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    command = (
        f"OMP_NUM_THREADS=1 python scripts/spec_sweep.py --workload {args.workload} --limit {args.limit}"
    )
    command += " --quick" if args.quick else ""
    load = {"before": load_before, "after": os.getloadavg(), "cpus": os.cpu_count()}
    record = {"command": command, "seconds": time.time() - t0, "load": load, "cost": cost, "rows": rows}
    (out / f"{args.workload}.json").write_text(json.dumps(record, indent=1) + "\n")
    note = (
        f"\nLoad average (1/5/15 min) before: {' / '.join(f'{x:.2f}' for x in load_before)}, after: "
        f"{' / '.join(f'{x:.2f}' for x in load['after'])}, on {load['cpus']} CPUs, one thread per job. "
        "NFE, TPF, rows and identity do not depend on load.\n"
    )
    (out / f"{args.workload}.md").write_text(markdown(rows, args.workload, command, cost) + note)
    print(markdown(rows, args.workload, command, cost))


if __name__ == "__main__":
    main()
