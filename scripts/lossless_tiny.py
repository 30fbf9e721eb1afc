"""Measure losslessness at scale on tiny random models: every SSD and DiffuSpec output against its reference.

Decodes random prompts with random tiny models of both architectures, under every cache mode, and
reports per decoder and knob: samples, identical-to-reference rate, first divergences, mean NFE and
TPF (= gen_length / NFE here: random weights never stop early). Writes Markdown + JSON.
Usage: python scripts/lossless_tiny.py [--prompts 40] [--out results/lossless_tiny]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import torch

from ssd.config import (
    CacheMode,
    DiffuSpecConfig,
    FastDLLMConfig,
    PSDConfig,
    SSDConfig,
    StepwiseConfig,
    TargetGreedyConfig,
)
from ssd.decoders.diffuspec import DiffuSpec, TargetGreedy
from ssd.decoders.fast_dllm import FastDLLM
from ssd.decoders.psd import PSD
from ssd.decoders.ssd import SelfSpeculative
from ssd.decoders.stepwise import Stepwise
from ssd.models.tiny import make_tiny_target, tiny_model
from ssd.results.summary import first_difference

GEN, BLOCK = 32, 8


def prompt(vocab: int, seed: int) -> list[int]:
    g = torch.Generator().manual_seed(seed)
    length = int(torch.randint(1, 24, (1,), generator=g))
    return torch.randint(8, vocab, (length,), generator=g).tolist()


def record(rows: dict, key: tuple, out, ref) -> None:
    diverges = first_difference(out.tokens, ref.tokens)
    r = rows[key]
    r["n"] += 1
    r["identical"] += diverges is None
    r["nfe"] += out.nfe
    r["tokens"] += len(out.tokens)
    if diverges is not None:
        r["divergences"].append(diverges)


def masked_decoders(rows: dict, prompts: int) -> None:
    for arch in ("llada", "dream"):
        models = [tiny_model(arch, seed=s) for s in range(5)]
        for cache in CacheMode:
            for i in range(prompts):
                model = models[i % len(models)]
                p = prompt(len(model.tokenizer), 1000 * i + 7)
                common = dict(gen_length=GEN, block_length=BLOCK, cache=cache)
                ref = Stepwise(StepwiseConfig(**common)).generate(model, p)
                record(rows, ("stepwise", arch, cache.value, "-"), ref, ref)
                for n in range(2, 7):
                    out = SelfSpeculative(SSDConfig(**common, draft_length=n)).generate(model, p)
                    record(rows, ("ssd", arch, cache.value, f"N={n}"), out, ref)
                for tau in (0.5, 0.7, 0.9):
                    out = FastDLLM(FastDLLMConfig(**common, threshold=tau)).generate(model, p)
                    record(rows, ("fast_dllm", arch, cache.value, f"tau={tau}"), out, ref)
                for n in (2, 4):
                    out = PSD(PSDConfig(**common, threshold=0.9, draft_length=n)).generate(model, p)
                    record(rows, ("psd", arch, cache.value, f"tau=0.9 N={n}"), out, ref)


def diffuspec(rows: dict, samples: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        targets = [str(make_tiny_target(Path(tmp) / f"t{s}", seed=s)) for s in range(4)]
        drafters = [tiny_model(a, seed=s) for a in ("dream", "llada") for s in range(3)]
        for i in range(samples):
            model, target = drafters[i % len(drafters)], targets[i % len(targets)]
            p = prompt(len(model.tokenizer), 7919 * i + 3)
            mix = (0.5, 1.0)[i % 2]
            ref = TargetGreedy(TargetGreedyConfig(gen_length=GEN, block_length=GEN, target_path=target))
            out = DiffuSpec(
                DiffuSpecConfig(
                    gen_length=GEN,
                    block_length=GEN,
                    target_path=target,
                    mix=mix,
                    k_min=2,
                    k_init=6,
                    k_max=8,
                    delta=2,
                )
            )
            ref_gen = ref.generate(model, p)
            record(rows, ("target_greedy", "qwen2", "-", "-"), ref_gen, ref_gen)
            record(rows, ("diffuspec", "dream/llada", "-", f"mix={mix}"), out.generate(model, p), ref_gen)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--prompts", type=int, default=40, help="prompts per architecture and cache mode")
    parser.add_argument("--diffuspec-samples", type=int, default=1000)
    parser.add_argument("--out", default="results/lossless_tiny")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows: dict = defaultdict(lambda: {"n": 0, "identical": 0, "nfe": 0, "tokens": 0, "divergences": []})
    start = time.perf_counter()
    masked_decoders(rows, args.prompts)
    diffuspec(rows, args.diffuspec_samples)
    seconds = time.perf_counter() - start
    lines = [
        "| decoder | model | cache | knob | samples | identical | mean NFE | TPF | first divergences |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for (dec, arch, cache, knob), r in sorted(rows.items()):
        div = ", ".join(map(str, sorted(r["divergences"])[:5])) or "-"
        lines.append(
            f"| {dec} | {arch} | {cache} | {knob} | {r['n']} | {100 * r['identical'] / r['n']:.1f}% "
            f"| {r['nfe'] / r['n']:.1f} | {r['tokens'] / r['nfe']:.2f} | {div} |"
        )
    totals = {
        d: [sum(r[k] for (dd, *_), r in rows.items() if dd == d) for k in ("n", "identical")]
        for d in ("ssd", "diffuspec")
    }
    head = [
        f"# Lossless check on tiny random models (fp32, CPU, gen {GEN}, block {BLOCK})",
        "",
        f"`python scripts/lossless_tiny.py --prompts {args.prompts} --diffuspec-samples "
        f"{args.diffuspec_samples}` ({seconds:.0f} s). TPF = generated positions / NFE.",
        "",
    ]
    head += [f"- {d}: {i}/{n} samples identical to the reference" for d, (n, i) in totals.items()] + [""]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".md").write_text("\n".join(head + lines) + "\n")
    out.with_suffix(".json").write_text(
        json.dumps({"|".join(k): v for k, v in sorted(rows.items())}, indent=1)
    )
    print("\n".join(head + lines))


if __name__ == "__main__":
    main()
