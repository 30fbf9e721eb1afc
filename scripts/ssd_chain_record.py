"""Record the SSD chain's outputs (tokens, NFE, rows per forward, tokens per iteration) on random tiny
models, as a regression fixture: the tree decoder's chain shape must reproduce them exactly.

Recorded once, before the tree decoder replaced the chain code (commit in the fixture's "recorded_at").
Usage: python scripts/ssd_chain_record.py [--out tests/fixtures/ssd_chain_reference.json]
"""

from __future__ import annotations

import argparse
import json
import subprocess
from pathlib import Path

from ssd.config import CacheMode, SSDConfig
from ssd.decoders.ssd import SelfSpeculative
from ssd.models.tiny import tiny_model

GEN = 16


def cases() -> list[dict]:
    """The grid: both architectures, every cache mode and layout, bit-exact, several N and blocks."""
    out = []
    for arch in ("llada", "dream"):
        for cache in CacheMode:
            for layout in ("batch", "tree"):
                for bit_exact in (False, True):
                    if cache is CacheMode.none and (bit_exact or layout == "tree"):
                        continue
                    for n, block, seed in ((1, 8, 0), (2, 4, 1), (3, 8, 2), (4, 16, 3), (8, 8, 4)):
                        out.append(
                            dict(
                                arch=arch,
                                model_seed=seed % 3,
                                init_std=1.5 if seed % 2 else 0.5,
                                prompt_seed=100 + seed,
                                cache=cache.value,
                                verify_layout=layout,
                                bit_exact=bit_exact,
                                draft_length=n,
                                block_length=block,
                            )
                        )
    return out


def run_case(c: dict) -> dict:
    import torch

    model = tiny_model(c["arch"], seed=c["model_seed"], init_std=c["init_std"])
    g = torch.Generator().manual_seed(c["prompt_seed"])
    prompt = torch.randint(8, len(model.tokenizer), (1 + c["prompt_seed"] % 13,), generator=g).tolist()
    cfg = SSDConfig(
        gen_length=GEN,
        block_length=c["block_length"],
        cache=CacheMode(c["cache"]),
        verify_layout=c["verify_layout"],
        bit_exact=c["bit_exact"],
        draft_length=c["draft_length"],
    )
    out = SelfSpeculative(cfg).generate(model, prompt)
    return dict(
        prompt=prompt, tokens=out.tokens, nfe=out.nfe, rows=out.forward_batch_sizes, accepted=out.accepted
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="tests/fixtures/ssd_chain_reference.json")
    args = ap.parse_args()
    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    records = [dict(case=c, **run_case(c)) for c in cases()]
    Path(args.out).write_text(
        json.dumps({"recorded_at": commit, "gen_length": GEN, "records": records}) + "\n"
    )
    print(f"{len(records)} cases -> {args.out}")


if __name__ == "__main__":
    main()
