"""TPF against rows per verification forward on the arith model (the default sweep's setting: gen 24,
block 8, dual cache, 200 problems): SSD's chain, fixed tree shapes and adaptive trees, each checked token
for token against stepwise by the runner.

Every setting is an ordinary job (`run_job`), run folders under --runs (a scratch folder by default);
the table (Markdown + JSON) goes to --out. Rows: rows of the verification forwards (the block refreshes,
one per block, excluded); "max rows" is the largest verification forward of the run.
Usage: OMP_NUM_THREADS=1 python scripts/tree_sweep.py [--limit 200] [--out results/tree_sweep]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from hydra import compose, initialize_config_dir

from ssd.config import register
from ssd.run import run_job

CONF = Path(__file__).resolve().parent.parent / "conf"
COST = "results/forward_cost/h100_llada8b.json"


def mix(depth: int) -> str:
    """The chain to `depth` nodes, plus a mix-order sibling (next-but-one position) at every depth."""
    paths = ["0" * d for d in range(1, depth)] + ["0" * (d - 1) + "1" for d in range(1, depth)]
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
    return out


def row(name: str, folder: Path, blocks: int) -> dict:
    s = json.loads((folder / "summary.json").read_text())
    samples = [json.loads(line) for line in (folder / "samples.jsonl").read_text().splitlines()]
    verify = [b for r in samples for b in r["forward_batch_sizes"][:]]
    refreshes = blocks * len(samples)
    verify_rows = sum(verify) - refreshes
    verify_forwards = len(verify) - refreshes
    config = json.loads(json.dumps(s.get("environment", {})))  # provenance kept as recorded
    return {
        "setting": name,
        "run": folder.name,
        "n": s["n_samples"],
        "accuracy": s["accuracy"],
        "identical_rate": s.get("identical_rate"),
        "mean_nfe": s["mean_nfe"],
        "tpf": s["tokens_per_forward"],
        "mean_rows": verify_rows / verify_forwards if verify_forwards else 0.0,
        "max_rows": max(verify) if verify else 0,
        "environment": config,
    }


def markdown(rows: list[dict], command: str) -> str:
    lines = [
        "# TPF against rows per verification forward (arith model, gen 24, block 8, dual cache)",
        "",
        f"Command: `{command}`. identical %: samples token-identical to stepwise (the runner's check).",
        "rows: mean rows of the verification forwards (block refreshes excluded); max: the largest.",
        "",
        "| setting | n | accuracy % | identical % | NFE | TPF | mean rows | max rows |",
        "|:--|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for r in rows:
        ident = "ref" if r["identical_rate"] is None else f"{100 * r['identical_rate']:.1f}"
        lines.append(
            f"| {r['setting']} | {r['n']} | {100 * r['accuracy']:.1f} | {ident} | {r['mean_nfe']:.2f} | "
            f"{r['tpf']:.2f} | {r['mean_rows']:.2f} | {r['max_rows']} |"
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
    t0 = time.time()
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
                    "decoder.block_length=8",
                    "decoder.cache=dual",
                    f"limit={args.limit}",
                    f"output_dir={runs}",
                    "sweep=tree_sweep",
                ],
            )
        folder = run_job(cfg, models)
        rows.append(row(name, folder, 24 // 8))
        print(f"{name}: TPF {rows[-1]['tpf']:.2f}, rows {rows[-1]['mean_rows']:.2f}", flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    command = f"OMP_NUM_THREADS=1 python scripts/tree_sweep.py --limit {args.limit}"
    (out / "tpf_vs_rows.json").write_text(
        json.dumps({"command": command, "seconds": time.time() - t0, "rows": rows}, indent=1) + "\n"
    )
    (out / "tpf_vs_rows.md").write_text(markdown(rows, command))
    print(markdown(rows, command))


if __name__ == "__main__":
    main()
