"""Measure SSD's identity to its reference per verification layout, dtype and bit-exact mode.

On tiny random models of both architectures (CPU, or a GPU with --device cuda), with the prefix and
dual caches: SSD (N = 2, 4, 6) in the batch and the tree layout, plain and bit-exact, in float32 and
bfloat16, each sample compared token for token with its reference (stepwise; in the bit-exact mode the
bit-exact stepwise). bf16 makes row-dependent rounding visible on a CPU, as it is on a GPU.
Writes Markdown + JSON.
Usage: python scripts/lossless_layouts.py [--prompts 20] [--device cpu] [--out results/lossless_layouts]
"""

from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict
from itertools import product
from pathlib import Path

import torch
from lossless_tiny import prompt, record

from ssd.config import CacheMode, SSDConfig, VerifyLayout
from ssd.decoders.ssd import SelfSpeculative
from ssd.decoders.stepwise import Stepwise
from ssd.models.tiny import tiny_model

GEN, BLOCK = 32, 8


def measure(rows: dict, prompts: int, device: str) -> None:
    knobs = list(product((2, 4, 6), (VerifyLayout.batch, VerifyLayout.tree), (False, True)))
    for dtype, arch in product((torch.float32, torch.bfloat16), ("llada", "dream")):
        models = [tiny_model(arch, seed=s).to(device, dtype) for s in range(5)]
        for cache, i in product((CacheMode.prefix, CacheMode.dual), range(prompts)):
            model = models[i % len(models)]
            p = prompt(len(model.tokenizer), 1000 * i + 11)
            for n, layout, exact in knobs:
                common = dict(gen_length=GEN, block_length=BLOCK, cache=cache, verify_layout=layout)
                decoder = SelfSpeculative(SSDConfig(**common, draft_length=n, bit_exact=exact))
                ref = Stepwise(decoder.reference_config()).generate(model, p)
                mode = "bit-exact" if exact else "plain"
                key = (str(dtype).removeprefix("torch."), arch, cache.value, layout.value, mode)
                record(rows, key, decoder.generate(model, p), ref)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--prompts", type=int, default=20, help="prompts per dtype, architecture and cache")
    parser.add_argument("--device", default="cpu", help="cpu | cuda (on a GPU, write to another --out)")
    parser.add_argument("--out", default="results/lossless_layouts")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows: dict = defaultdict(lambda: {"n": 0, "identical": 0, "nfe": 0, "tokens": 0, "divergences": []})
    start = time.perf_counter()
    measure(rows, args.prompts, args.device)
    seconds = time.perf_counter() - start
    lines = [
        "| dtype | model | cache | layout | mode | samples | identical | TPF | first divergences |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for key, r in sorted(rows.items()):
        div = ", ".join(map(str, sorted(r["divergences"])[:5])) or "-"
        lines.append(
            "| " + " | ".join(key) + f" | {r['n']} | {100 * r['identical'] / r['n']:.1f}% "
            f"| {r['tokens'] / r['nfe']:.2f} | {div} |"
        )
    totals: dict[tuple[str, str, str], list[int]] = defaultdict(lambda: [0, 0])
    for (dtype, _, _, layout, mode), r in rows.items():
        totals[dtype, layout, mode][0] += r["n"]
        totals[dtype, layout, mode][1] += r["identical"]
    head = [
        f"# SSD against its reference per layout, dtype and mode (tiny random models, {args.device}, "
        f"gen {GEN}, block {BLOCK}, N = 2, 4, 6)",
        "",
        f"`python scripts/lossless_layouts.py --prompts {args.prompts} --device {args.device}` "
        f"({seconds:.0f} s).",
        "",
    ]
    head += [f"- {d} {lay} {m}: {i}/{n} identical" for (d, lay, m), (n, i) in sorted(totals.items())] + [""]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".md").write_text("\n".join(head + lines) + "\n")
    data = {"|".join(k): v for k, v in sorted(rows.items())}
    out.with_suffix(".json").write_text(json.dumps(data, indent=1))
    print("\n".join(head + lines))


if __name__ == "__main__":
    main()
