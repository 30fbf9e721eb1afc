"""Record SSD's outputs on the embedded arith model (tokens, NFE, rows and whole rows per forward, tokens
per iteration) for the default sweep's SSD settings, as a regression fixture: a refactor of the decoders
must reproduce them exactly (tests/test_speculation.py).

The adaptive trees learn from every sequence they decode, so a setting's records are those of its first
`--limit` problems decoded in order, as a sweep job decodes them. Recorded once, before the speculation
engine replaced SSD's own loop (the commit is in the fixture's "recorded_at").
Usage: OMP_NUM_THREADS=1 python scripts/ssd_arith_record.py [--limit 24] [--out FIXTURE]
"""

from __future__ import annotations

import argparse
import json
import subprocess
from pathlib import Path

import torch

from ssd.benchmarks.arith import problems
from ssd.config import ASSETS, CacheMode, SSDConfig
from ssd.decoders import DECODERS
from ssd.models import MODELS

FRAME = dict(gen_length=24, block_length=8, cache=CacheMode.dual)  # the default sweep's frame
SETTINGS = {  # the default sweep's SSD arms (conf/experiment/arith/ssd_*.yaml) and a few more shapes
    "ssd_n2": dict(draft_length=2),
    "ssd_n4": dict(draft_length=4),
    "ssd_n8": dict(draft_length=8),
    "ssd_tree16": dict(tree_budget=16),
    "ssd_tree16_seeded": dict(tree_budget=16, seed_next_block=True),
    "ssd_tree_h100": dict(tree_budget=32, tree_cost="results/forward_cost/h100_llada8b.json"),
    "tree_mix": dict(tree="0-1-00-0b-000-001"),
    "tree16_t07": dict(tree_budget=16, temperature=0.7),
    "chain4_t07_prefix": dict(draft_length=4, temperature=0.7, cache=CacheMode.prefix),
    "tree16_nocache_seeded": dict(tree_budget=16, cache=CacheMode.none, seed_next_block=True),
}


def prompts(model, limit: int) -> list[list[int]]:
    """The first `limit` arith test problems (benchmark.seed 0), as the runner tokenizes them (plain text)."""
    return [list(model.tokenizer(p.prompt)["input_ids"]) for p in problems("test", limit, 0)]


def load_model():
    return MODELS.get("llada").from_pretrained(str(ASSETS / "arith-llada"), dtype="float32", device="cpu")


def run_setting(name: str, limit: int, model=None) -> list[dict]:
    """The setting's records on the first `limit` test problems, decoded one at a time in order."""
    model = model or load_model()
    cfg = SSDConfig(**(FRAME | SETTINGS[name]))
    decoder = DECODERS.get("ssd")(cfg)
    out = []
    for i, p in enumerate(prompts(model, limit)):
        g = decoder.generate(model, p, seed=i)
        out.append(
            dict(
                tokens=g.tokens,
                nfe=g.nfe,
                rows=g.forward_batch_sizes,
                full=g.forward_full_rows,
                accepted=g.accepted,
            )
        )
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--limit", type=int, default=24)
    ap.add_argument("--out", default="tests/fixtures/ssd_arith_reference.json")
    args = ap.parse_args()
    torch.set_num_threads(1)
    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    model = load_model()
    records = {name: run_setting(name, args.limit, model) for name in SETTINGS}
    Path(args.out).write_text(
        json.dumps({"recorded_at": commit, "limit": args.limit, "settings": records}) + "\n"
    )
    print(f"{len(records)} settings x {args.limit} problems -> {args.out}")


if __name__ == "__main__":
    main()
