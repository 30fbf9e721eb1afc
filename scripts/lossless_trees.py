"""Measure losslessness of SSD's speculation at scale on tiny random models (fp32, CPU), over both
policies: stepwise (the paper's SSD) and Fast-dLLM's threshold and factor rules (decoder.policy=fast_dllm).

Both architectures, every cache mode, both verification layouts, the bit-exact mode and, in every cache
mode and layout (bit-exact too, with a cache), the next block seeded by the state filling the block. Each
sample decodes one random prompt with the policy's own decoder (the reference: stepwise, or Fast-dLLM with
the same rule) and with one speculation setting (chain, fixed shapes, adaptive budgets, draft graphs with
the arith calibration, taken in turn), greedy and at temperature 0.7 (the policy's *sampling*, same
per-sample seed). Reports samples, identical counts, first divergences and NFE per group. Writes
Markdown + JSON.
Usage: OMP_NUM_THREADS=1 python scripts/lossless_trees.py [--prompts 80] [--out results/lossless_trees]
"""

from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict
from pathlib import Path

import torch
from lossless_tiny import prompt, record  # the same prompts and tally (scripts/ is on sys.path)

from ssd.config import CacheMode, SSDConfig
from ssd.decoders import DECODERS
from ssd.decoders.ssd import SelfSpeculative
from ssd.models.tiny import tiny_model

GEN, BLOCK = 32, 8
FAST_DLLM = {"policy": "fast_dllm"}
CALIBRATION = "ssd/assets/arith-llada/draft_graph.json"
SETTINGS: tuple[tuple[str, dict], ...] = (
    ("chain N=4", {"draft_length": 4}),
    ("fast_dllm tau 0.9, chain N=3", FAST_DLLM | {"threshold": 0.9, "draft_length": 3}),
    ("tree mix depth 6", {"tree": "0-1-00-01-000-001-0000-0001-00000-00001"}),
    ("tree mix+tokens depth 4", {"tree": "0-1-0b-00-01-00b-000-001-000b"}),
    ("tree binary depth 3", {"tree": "0-1-00-01-10-11"}),
    ("adaptive budget 4", {"tree_budget": 4}),
    ("adaptive budget 8", {"tree_budget": 8}),
    ("fast_dllm tau 0.7, adaptive budget 8", FAST_DLLM | {"threshold": 0.7, "tree_budget": 8}),
    ("adaptive budget 16", {"tree_budget": 16}),
    ("fast_dllm tau 0.5, adaptive budget 16", FAST_DLLM | {"threshold": 0.5, "tree_budget": 16}),
    ("fast_dllm factor 1.0, adaptive budget 8", FAST_DLLM | {"rule": "factor", "tree_budget": 8}),
    # the arith model's calibration on models it was not fitted to: rows spent badly, tokens unchanged
    ("calibrated graph budget 8", {"tree_budget": 8, "tree_calibration": CALIBRATION}),
    ("calibrated graph budget 16", {"tree_budget": 16, "tree_calibration": CALIBRATION}),
)
# (cache, layout, bit_exact, seed_next_block): the layouts only differ with a cache
MODES = (
    (CacheMode.none, "batch", False, False),
    (CacheMode.none, "batch", False, True),
    (CacheMode.prefix, "batch", False, False),
    (CacheMode.prefix, "tree", False, False),
    (CacheMode.prefix, "tree", True, False),
    (CacheMode.dual, "batch", False, False),
    (CacheMode.dual, "tree", False, False),
    (CacheMode.dual, "tree", True, False),
    (CacheMode.prefix, "batch", False, True),
    (CacheMode.prefix, "tree", False, True),
    (CacheMode.dual, "batch", False, True),
    (CacheMode.dual, "tree", False, True),
    (CacheMode.prefix, "tree", True, True),
    (CacheMode.dual, "tree", True, True),
)


def run(prompts: int, temperatures: tuple[float, ...]) -> list[dict]:
    rows: dict[tuple, dict] = defaultdict(
        lambda: {"n": 0, "identical": 0, "nfe": 0, "tokens": 0, "ref_nfe": 0, "divergences": []}
    )
    for arch in ("llada", "dream"):
        # Fast-dLLM commits several positions per step only on peaked models (init_std >= 5 here): its
        # settings run on those, so that its steps are sets
        models = {
            policy: [tiny_model(arch, seed=s, init_std=stds[s % 2]) for s in range(4)]
            for policy, stds in (("stepwise", (0.5, 1.5)), ("fast_dllm", (5.0, 8.0)))
        }
        for cache, layout, bit_exact, seed_next in MODES:
            for temperature in temperatures:
                for i in range(prompts):
                    name, knobs = SETTINGS[i % len(SETTINGS)]
                    model = models[knobs.get("policy", "stepwise")][i % 4]
                    common = dict(gen_length=GEN, block_length=BLOCK, cache=cache, temperature=temperature)
                    mode = dict(verify_layout=layout, bit_exact=bit_exact, seed_next_block=seed_next)
                    dec = SelfSpeculative(SSDConfig(**common, **mode, **knobs))
                    p, seed = prompt(len(model.tokenizer), 1000 * i + 7), 17 * i + 3
                    reference = dec.reference_config()
                    ref = DECODERS.get(reference.name)(reference).generate(model, p, seed)
                    out = dec.generate(model, p, seed)
                    label = f"{cache.value}/{layout}" + ("/bit-exact" if bit_exact else "")
                    label += "/seed-next-block" if seed_next else ""
                    record(rows, (temperature, arch, label, name), out, ref)
                    rows[(temperature, arch, label, name)]["ref_nfe"] += ref.nfe
    return [
        {"temperature": t, "arch": a, "mode": m, "setting": s, **r}
        for (t, a, m, s), r in sorted(rows.items(), key=lambda kv: tuple(map(str, kv[0])))
    ]


def markdown(rows: list[dict], command: str, seconds: float) -> str:
    lines = [
        "# SSD's speculation against its policy's decoder on tiny random models (fp32, CPU)",
        "",
        f"Command: `{command}` ({seconds:.0f} s). gen {GEN}, block {BLOCK}; each sample: one random prompt, "
        "one speculation setting (taken in turn), its reference (stepwise, or Fast-dLLM with the same rule) "
        "with the same cache, layout, temperature and seed. NFE: the reference's in the next column. The "
        "Fast-dLLM settings run on peaked random models (init_std 5 and 8), where its steps commit several "
        "positions; the stepwise ones on init_std 0.5 and 1.5.",
        "",
        "| temperature | samples | identical | identical % |",
        "|--:|--:|--:|--:|",
    ]
    for t in sorted({r["temperature"] for r in rows}):
        n = sum(r["n"] for r in rows if r["temperature"] == t)
        ok = sum(r["identical"] for r in rows if r["temperature"] == t)
        lines.append(f"| {t} | {n} | {ok} | {100 * ok / n:.1f} |")
    for keys, title in ((("arch", "mode"), "architecture and cache/layout"), (("setting",), "tree setting")):
        lines += ["", f"By {title}:", ""]
        lines.append("| T | " + " | ".join(keys) + " | n | identical | NFE | reference NFE | diverging at |")
        lines.append("|--:|" + ":--|" * len(keys) + "--:|--:|--:|--:|:--|")
        groups: dict[tuple, list[dict]] = defaultdict(list)
        for r in rows:
            groups[(r["temperature"], *(r[k] for k in keys))].append(r)
        for key, rs in sorted(groups.items(), key=lambda kv: tuple(map(str, kv[0]))):
            n = sum(r["n"] for r in rs)
            div = ", ".join(str(d) for r in rs for d in r["divergences"][:5]) or "-"
            lines.append(
                f"| {key[0]} | " + " | ".join(key[1:]) + f" | {n} | {sum(r['identical'] for r in rs)} | "
                f"{sum(r['nfe'] for r in rs) / n:.2f} | {sum(r['ref_nfe'] for r in rs) / n:.2f} | {div} |"
            )
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--prompts", type=int, default=80, help="per architecture, mode and temperature")
    ap.add_argument("--out", default="results/lossless_trees")
    args = ap.parse_args()
    torch.set_num_threads(1)
    t0 = time.time()
    rows = run(args.prompts, (0.0, 0.7))
    seconds = time.time() - t0
    command = f"OMP_NUM_THREADS=1 python scripts/lossless_trees.py --prompts {args.prompts}"
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(
        json.dumps({"command": command, "seconds": seconds, "rows": rows}) + "\n"
    )
    out.with_suffix(".md").write_text(markdown(rows, command, seconds))
    print(markdown(rows, command, seconds)[:1500])


if __name__ == "__main__":
    main()
