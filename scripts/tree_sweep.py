"""TPF against rows per verification forward on the arith model (the default sweep's setting: gen 24,
block 8, dual cache, 200 problems): SSD's chain, fixed tree shapes, adaptive trees and calibrated draft
graphs (decoder.tree_calibration, the shipped arith calibration), each checked token for token against
stepwise by the runner.

Every setting is an ordinary job (`run_job`), run folders under --runs (a scratch folder by default);
the table (Markdown + JSON) goes to --out. Rows: rows of the verification forwards (the block refreshes
excluded); "max rows" is the largest verification forward of the run; "whole": of a verification forward's
rows, those that ran the whole sequence (seeded settings: the states filling the block, each the next
block's refresh if reached); "refreshes": block refreshes per sample (3 unless a seed stood in).
Usage: OMP_NUM_THREADS=1 python scripts/tree_sweep.py [--limit 200] [--out results/tree_sweep]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import yaml
from hydra import compose, initialize_config_dir

from ssd.config import register
from ssd.cost import CostTable
from ssd.report.projection import shapes_seconds
from ssd.run import run_job

CONF = Path(__file__).resolve().parent.parent / "conf"
COST = "results/forward_cost/h100_llada8b.json"
CALIBRATION = "ssd/assets/arith-llada/draft_graph.json"
BLOCK = 8  # the default sweep's block (gen 24, dual cache)  # scripts/tree_calibrate.py, arith's train split
H100 = CostTable.load(COST)


def mix(depth: int) -> str:
    """The chain to `depth` nodes, plus a mix-order sibling (next-but-one position) at every depth where a
    block of BLOCK leaves two positions to choose from (decoder.tree refuses the others)."""
    paths = ["0" * d for d in range(1, depth)]
    paths += ["0" * (d - 1) + "1" for d in range(1, depth) if d + 1 < BLOCK]
    return "-".join(sorted(paths, key=len))


def mix_tokens(depth: int) -> str:
    """`mix`, plus a runner-up-token sibling at every depth."""
    extra = ["0" * (d - 1) + "0b" for d in range(1, depth)]
    return "-".join(sorted(mix(depth).split("-") + extra, key=len))


def binary(depth: int) -> str:
    """Every path of position ranks 0/1 up to `depth` nodes (a full binary tree, 2^depth - 1 nodes)."""
    paths = [""]
    out = []
    for _ in range(depth - 1):
        paths = [p + c for p in paths for c in "01"]
        out += paths
    return "-".join(out)


def settings() -> list[tuple[str, list[str]]]:
    out: list[tuple[str, list[str]]] = [("stepwise", ["decoder=stepwise"])]
    for n in (2, 4, 8):
        out.append((f"chain N={n}", ["decoder=ssd", f"decoder.draft_length={n}"]))
    for name, spec in (
        ("mix depth 4", mix(4)),
        ("mix depth 6", mix(6)),
        ("mix depth 8", mix(8)),
        ("mix+tokens depth 6", mix_tokens(6)),
        ("binary depth 3", binary(3)),
        ("binary depth 4", binary(4)),
    ):
        out.append((f"tree {name}", ["decoder=ssd", f"decoder.tree='{spec}'"]))
    for b in (2, 4, 6, 8, 12, 16, 24, 32):
        out.append((f"adaptive budget {b}", ["decoder=ssd", f"decoder.tree_budget={b}"]))
    for b in (16, 32):
        cost = f"decoder.tree_cost={COST}"
        out.append((f"adaptive budget {b}, H100 cost", ["decoder=ssd", f"decoder.tree_budget={b}", cost]))
    seed = "decoder.seed_next_block=true"
    for n in (4, 8):
        out.append((f"seeded chain N={n}", ["decoder=ssd", f"decoder.draft_length={n}", seed]))
    out.append(("seeded tree mix depth 8", ["decoder=ssd", f"decoder.tree='{mix(8)}'", seed]))
    for b in (4, 8, 12, 16, 24, 32):
        out.append((f"seeded adaptive budget {b}", ["decoder=ssd", f"decoder.tree_budget={b}", seed]))
    for r in (1, 2, 4):
        over = ["decoder=ssd", "decoder.tree_budget=16", seed, f"decoder.seed_rows={r}"]
        out.append((f"seeded adaptive budget 16, <= {r} whole", over))
    graph = f"decoder.tree_calibration={CALIBRATION}"
    for b in (4, 8, 12, 16, 24, 32):
        out.append((f"calibrated graph budget {b}", ["decoder=ssd", f"decoder.tree_budget={b}", graph]))
    out.append(("seeded calibrated graph budget 16", ["decoder=ssd", "decoder.tree_budget=16", graph, seed]))
    return out


def row(name: str, folder: Path, table: CostTable = H100) -> dict:
    """A run folder's figures; its forwards priced with `table` (by default the LLaDA-8B H100 table)."""
    s = json.loads((folder / "summary.json").read_text())
    block = yaml.safe_load((folder / "config.yaml").read_text())["decoder"]["block_length"]
    shapes = {tuple(map(int, k.split("/"))): n for k, n in s["forward_shape_histogram"].items()}
    verify = {shape: n for shape, n in shapes.items() if shape != (1, 1)}  # a 1-row whole forward: a refresh
    forwards = sum(verify.values())
    return {
        "setting": name,
        "run": folder.name,
        "n": s["n_samples"],
        "accuracy": s["accuracy"],
        "identical_rate": s.get("identical_rate"),
        "mean_nfe": s["mean_nfe"],
        "tpf": s["tokens_per_forward"],
        "mean_rows": sum(r * n for (r, _), n in verify.items()) / forwards if forwards else 0.0,
        "max_rows": max((r for r, _ in verify), default=0),
        "mean_whole": sum(f * n for (_, f), n in verify.items()) / forwards if forwards else 0.0,
        "refreshes": shapes.get((1, 1), 0) / s["n_samples"],
        "projected_tokens_per_s": s["total_generated_tokens"]
        / shapes_seconds(s["forward_shape_histogram"], table, block),
        "environment": s.get("environment", {}),
    }


def markdown(rows: list[dict], command: str) -> str:
    lines = [
        "# TPF against rows per verification forward (arith model, gen 24, block 8, dual cache)",
        "",
        f"Command: `{command}`. identical %: samples token-identical to stepwise (the runner's check).",
        "rows: mean rows of the verification forwards (block refreshes excluded); max: the largest; whole: "
        "of those rows, the mean that ran the whole sequence (seeded: the states filling the block, the next "
        "block's refresh if reached); refreshes: block refreshes per sample (3 blocks).",
        "",
        f"projected H100: the run's forwards priced with {COST} (ssd/report/projection.py), tokens per "
        "projected second over stepwise's: a projection, not a measurement.",
        "",
        "| setting | n | accuracy % | identical % | NFE | TPF | mean rows | max rows | whole | refreshes | "
        "projected H100 |",
        "|:--|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    base = next((r["projected_tokens_per_s"] for r in rows if r["setting"] == "stepwise"), None)
    for r in rows:
        ident = "ref" if r["identical_rate"] is None else f"{100 * r['identical_rate']:.1f}"
        projected = f"{r['projected_tokens_per_s'] / base:.2f}×" if base else "n/a"
        lines.append(
            f"| {r['setting']} | {r['n']} | {100 * r['accuracy']:.1f} | {ident} | {r['mean_nfe']:.2f} | "
            f"{r['tpf']:.2f} | {r['mean_rows']:.2f} | {r['max_rows']} | {r['mean_whole']:.2f} | "
            f"{r['refreshes']:.2f} | {projected} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--limit", type=int, default=200)
    ap.add_argument("--out", default="results/tree_sweep")
    ap.add_argument("--runs", default="", help="run folders (default: a scratch folder)")
    ap.add_argument("--only", default="", help="run only settings whose name contains this")
    args = ap.parse_args()
    register()
    runs = args.runs or tempfile.mkdtemp(prefix="tree_sweep_")
    models: dict = {}
    rows = []
    t0, load_before = time.time(), os.getloadavg()
    for name, overrides in settings():
        if args.only and args.only not in name and name != "stepwise":
            continue
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            cfg = compose(
                "config",
                overrides=[
                    "+experiment=default",
                    *overrides,
                    "decoder.gen_length=24",
                    f"decoder.block_length={BLOCK}",
                    "decoder.cache=dual",
                    f"limit={args.limit}",
                    f"output_dir={runs}",
                    "sweep=tree_sweep",
                ],
            )
        folder = run_job(cfg, models)
        rows.append(row(name, folder))
        print(f"{name}: TPF {rows[-1]['tpf']:.2f}, rows {rows[-1]['mean_rows']:.2f}", flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    command = f"OMP_NUM_THREADS=1 python scripts/tree_sweep.py --limit {args.limit}"
    load = {"before": load_before, "after": os.getloadavg(), "cpus": os.cpu_count()}
    (out / "tpf_vs_rows.json").write_text(
        json.dumps({"command": command, "seconds": time.time() - t0, "load": load, "rows": rows}, indent=1)
        + "\n"
    )
    note = (
        f"\nLoad average (1/5/15 min) before: {' / '.join(f'{x:.2f}' for x in load_before)}, after: "
        f"{' / '.join(f'{x:.2f}' for x in load['after'])}, on {load['cpus']} CPUs, one thread per job. "
        "NFE, TPF, rows and identity do not depend on load.\n"
    )
    (out / "tpf_vs_rows.md").write_text(markdown(rows, command) + note)
    print(markdown(rows, command))


if __name__ == "__main__":
    main()
