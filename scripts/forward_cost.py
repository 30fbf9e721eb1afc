"""What a forward costs, and what decoding costs end to end, at the real shapes (GPU) or tiny ones (CPU).

    python scripts/forward_cost.py                      # on a GPU: LLaDA-8B and Dream-7B shapes, bf16
    python scripts/forward_cost.py --shapes tiny-llada tiny-dream   # what a CPU runs (and the tests)

Random weights of the given shape. Reports, per shape and context:
- ms per forward: the full sequence (no cache) and the cached block (dual cache, one state);
- verification of B = 1..max candidate states of one sequence in both layouts (batch, tree), as a
  multiple of the cached block forward;
- the weight-read floor (weight bytes / measured copy bandwidth) and the achieved bandwidth;
and end-to-end tokens/s of stepwise, Fast-dLLM and SSD (N = 2..6, both layouts, and the bit-exact
mode) over the same prompts. Random weights accept nothing, so the speculative decoders replay the
acceptance pattern of recorded runs: the accepted lengths per iteration of the harness's own runs of
the same decoder on the trained arith model (`ssd/assets`, recorded on demand under `--records`),
streamed in order and clipped to what each iteration allows. Everything else (drafting, the
verification forward, the acceptance check and its host sync) is the decoders' own code.

Writes `<out>/<tag>.json` (every number) and `<out>/<tag>.md` (the tables and where each target stands).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from ssd.config import (  # noqa: E402
    ArithConfig,
    CacheMode,
    DecoderConfig,
    FastDLLMConfig,
    ModelConfig,
    RunConfig,
    SSDConfig,
    StepwiseConfig,
    VerifyLayout,
    asset,
)
from ssd.decoders.replay import ReplayFastDLLM, ReplaySSD, accepted_lengths  # noqa: E402
from ssd.decoders.ssd import SelfSpeculative  # noqa: E402
from ssd.decoders.stepwise import Stepwise  # noqa: E402
from ssd.models import MODELS  # noqa: E402
from ssd.models.base import DiffusionLM  # noqa: E402
from ssd.models.cache import BlockForward  # noqa: E402
from ssd.models.tiny import tiny_config  # noqa: E402

# The published configurations (docs/algorithms.md).
SHAPES: dict[str, tuple[str, dict[str, Any]]] = {
    "llada-8b": (
        "llada",
        dict(
            d_model=4096, n_heads=32, n_kv_heads=32, n_layers=32, mlp_hidden_size=12288,
            vocab_size=126464, embedding_size=126464, rope_theta=500000.0, max_sequence_length=4096,
        ),
    ),
    "dream-7b": (
        "dream",
        dict(
            hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28,
            num_key_value_heads=4, vocab_size=152064, rope_theta=1e6, max_position_embeddings=4096,
        ),
    ),
    "tiny-llada": ("llada", tiny_config("llada", 96)),
    "tiny-dream": ("dream", tiny_config("dream", 96)),
}  # fmt: skip
LAYOUTS = (VerifyLayout.batch, VerifyLayout.tree)
# The verification forwards measured: (name, layout, bit-exact); the bit-exact tree pads to B rows.
VARIANTS = (
    ("batch", VerifyLayout.batch, False),
    ("tree", VerifyLayout.tree, False),
    ("tree_exact", VerifyLayout.tree, True),
)
TARGET_VERIFY, TARGET_FLOOR = 1.15, 1.25  # issue 7: N=5 verification / cached forward; cached / floor


def build(shape: str, device: torch.device, dtype: torch.dtype) -> DiffusionLM:
    """A model of the shape, random weights, built on the device in the dtype (no fp32 detour)."""
    arch, config = SHAPES[shape]
    torch.manual_seed(0)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model = MODELS.get(arch).from_config(config)
    finally:
        torch.set_default_dtype(previous)
    return model.eval()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


STATISTIC = {"median": statistics.median, "min": min}


def timed(fn: Callable[[], object], device: torch.device, repeats: int, statistic: str = "median") -> float:
    """Wall milliseconds of fn() (the median, or with --statistic min the fastest, of `repeats` calls),
    the device synchronised around each call."""
    for _ in range(2):  # warm-up
        fn()
    times = []
    for _ in range(repeats):
        sync(device)
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append((time.perf_counter() - t0) * 1e3)
    return STATISTIC[statistic](times)


def copy_bandwidth(device: torch.device, mib: int, repeats: int, statistic: str) -> float:
    """Bytes per second of a device-to-device copy (read + write counted)."""
    src = torch.empty(mib << 20, dtype=torch.uint8, device=device).fill_(1)
    dst = torch.empty_like(src)
    ms = timed(lambda: dst.copy_(src), device, repeats, statistic)
    return 2 * src.numel() / (ms / 1e3)


def weight_bytes_read(model: DiffusionLM) -> int:
    """Bytes of the weights a forward reads: all parameters but an untied input embedding (gathered)."""
    total = sum(p.numel() * p.element_size() for p in model.parameters())
    emb = next(m for m in model.modules() if isinstance(m, torch.nn.Embedding)).weight
    tied = any(p is emb for n, p in model.named_parameters() if "embed" not in n and "wte" not in n)
    return total if tied else total - emb.numel() * emb.element_size()


def cache_bytes(fwd: BlockForward) -> int:
    assert fwd.cache is not None
    return sum(k[:, :, : fwd.cache.total].numel() * k.element_size() * 2 for k in fwd.cache.keys)


def forward_costs(model: DiffusionLM, ctx: int, args: argparse.Namespace, floor_bw: float) -> dict[str, Any]:
    """Full, cached and verification forwards at context `ctx` (the block at its end)."""
    device, block = model.device, args.block

    def time(fn: Callable[[], object]) -> float:
        return timed(fn, device, args.repeats, args.statistic)

    gen = torch.Generator().manual_seed(ctx)
    x = torch.randint(0, model.mask_id, (1, ctx), generator=gen).to(device)
    start, end = ctx - block, ctx
    x[0, start:] = model.mask_id
    out: dict[str, Any] = {"ctx": ctx, "block": block}
    with torch.inference_mode():
        out["full_ms"] = time(lambda: model(x, span=(start, end)))
        for name, layout, exact in VARIANTS:
            for b in range(1, args.max_candidates + 1):
                fwd = BlockForward(model, CacheMode.dual, layout=layout, max_rows=b, bit_exact=exact)
                fwd.refresh(x, start, end)
                if "cached_ms" not in out:  # one state: the in-place path, whatever the layout
                    out["cached_ms"] = time(lambda fwd=fwd: fwd(x))
                states = x.repeat(b, 1)
                states[:, start] = torch.arange(b, device=device)  # candidates differ inside the block
                out[f"verify_{name}_{b}_ms"] = time(lambda s=states, f=fwd, b=b: f(s, [0] * b))
        weights, kv = weight_bytes_read(model), cache_bytes(fwd)
    out["weight_bytes"], out["cache_bytes"] = weights, kv
    out["floor_ms"] = weights / floor_bw * 1e3
    out["achieved_bw"] = (weights + kv) / (out["cached_ms"] / 1e3)
    return out


# --- end to end, with recorded acceptance ---------------------------------------------------------
def recorded_pattern(decoder: DecoderConfig, records: Path, limit: int | None) -> list[int]:
    """Accepted lengths per iteration of the harness's run of `decoder` on the trained arith model
    (the default sweep's setting: dual cache, block 8, gen 24, fp32 CPU), run now if not recorded.
    From the repository root the model path is relative, so the records are found on any machine."""
    from omegaconf import OmegaConf

    from ssd.config import register
    from ssd.run import run_job

    register()
    cfg = OmegaConf.structured(
        RunConfig(
            model=ModelConfig(name="llada", path=asset("arith-llada"), dtype="float32", device="cpu"),
            decoder=decoder,
            benchmark=ArithConfig(),
            output_dir=str(records),
            sweep="forward_cost",
            limit=limit,
        )
    )
    cfg.decoder.gen_length, cfg.decoder.block_length, cfg.decoder.cache = 24, 8, "dual"
    return accepted_lengths(run_job(cfg))


def end_to_end(
    model: DiffusionLM, prompts: list[list[int]], gen: int, block: int, args: argparse.Namespace
) -> list[dict[str, Any]]:
    """tokens/s of each decoder over the same prompts, one prompt at a time (batch 1)."""
    common = dict(gen_length=gen, block_length=block, cache=CacheMode.dual)
    arms: list[tuple[str, Any]] = [("stepwise", Stepwise(StepwiseConfig(**common)))]
    fast = FastDLLMConfig(**common, threshold=0.9)
    pattern = recorded_pattern(fast, args.records, args.record_limit)
    arms.append(("fast_dllm τ=0.9", ReplayFastDLLM(fast, pattern)))
    for n in args.ssd_n:
        pattern = recorded_pattern(SSDConfig(draft_length=n), args.records, args.record_limit)
        for layout in LAYOUTS:
            cfg = SSDConfig(**common, draft_length=n, verify_layout=layout)
            arms.append((f"ssd N={n} {layout.value}", ReplaySSD(cfg, pattern)))
            if n == args.exact_n:
                exact = SSDConfig(**common, draft_length=n, verify_layout=layout, bit_exact=True)
                arms.append((f"ssd N={n} {layout.value} bit-exact", ReplaySSD(exact, pattern)))
                reference = Stepwise(SelfSpeculative(exact).reference_config())
                arms.append((f"stepwise {layout.value} bit-exact ({n} rows)", reference))
    rows = []
    for label, decoder in arms:
        decoder.generate(model, prompts[0])  # warm-up
        gens = [decoder.generate(model, p) for p in prompts]
        seconds = sum(g.wall_seconds for g in gens)
        nfe = sum(g.nfe for g in gens)
        tokens = gen * len(prompts)
        rows.append(
            {
                "decoder": label,
                "tokens_per_s": tokens / seconds,
                "nfe": nfe / len(prompts),
                "tpf": tokens / nfe,
                "ms_per_forward": seconds / nfe * 1e3,
            }
        )
    base = rows[0]["tokens_per_s"]
    for row in rows:
        row["speedup"] = row["tokens_per_s"] / base
    return rows


# --- report ---------------------------------------------------------------------------------------
FORWARD_HEAD = "| ctx | full ms | cached ms | floor ms | cached/floor | achieved GB/s | layout |"


def markdown(result: dict[str, Any]) -> str:
    bs = range(1, result["max_candidates"] + 1)
    lines = [
        f"# Forward cost: {result['device']}",
        "",
        f"Command: `{result['command']}`",
        "",
        f"torch {result['torch']}, {result['dtype']}, {result['statistic']} of {result['repeats']} calls; "
        f"copy bandwidth {result['copy_bw'] / 1e9:.1f} GB/s (read + write counted).",
    ]
    for shape, res in result["shapes"].items():
        lines += ["", f"## {shape}", "", FORWARD_HEAD + "".join(f" B={b} |" for b in bs)]
        lines.append("|" + "---|" * (7 + len(bs)))
        for f in res["forwards"]:
            for name, _, _ in VARIANTS:
                ratios = "".join(f" {f[f'verify_{name}_{b}_ms'] / f['cached_ms']:.2f}× |" for b in bs)
                lines.append(
                    f"| {f['ctx']} | {f['full_ms']:.2f} | {f['cached_ms']:.2f} | {f['floor_ms']:.2f} "
                    f"| {f['cached_ms'] / f['floor_ms']:.2f} | {f['achieved_bw'] / 1e9:.1f} "
                    f"| {name.replace('_', ' bit-')} |{ratios}"
                )
        lines += [
            "",
            "B=k: k candidate states of one sequence in one forward over its cache, in ms, as a multiple of "
            "the cached block forward (one state). Floor: weight bytes read / copy bandwidth.",
            "",
            "| decoder | tokens/s | speedup | NFE | TPF | ms/forward |",
            "|---|---|---|---|---|---|",
        ]
        for r in res["end_to_end"]:
            lines.append(
                f"| {r['decoder']} | {r['tokens_per_s']:.1f} | {r['speedup']:.2f}× | {r['nfe']:.1f} "
                f"| {r['tpf']:.2f} | {r['ms_per_forward']:.2f} |"
            )
        lines += ["", "Targets (issue 7):", ""]
        lines += [f"- {t}" for t in targets(res, result["max_candidates"])]
    return "\n".join(lines) + "\n"


def targets(res: dict[str, Any], max_b: int) -> list[str]:
    """Where the issue's targets stand, at context 1024 if measured (else the longest context)."""
    f = max(res["forwards"], key=lambda f: (f["ctx"] == 1024, f["ctx"]))
    out = []
    if max_b >= 5:
        for name, _, _ in VARIANTS:
            ratio, label = f[f"verify_{name}_5_ms"] / f["cached_ms"], name.replace("_", " bit-")
            out.append(
                f"{label} verification of N=5 at ctx {f['ctx']}: {ratio:.2f}× one cached forward "
                f"(target ≤ {TARGET_VERIFY}×: {'met' if ratio <= TARGET_VERIFY else 'not met'})"
            )
    ratio = f["cached_ms"] / f["floor_ms"]
    out.append(
        f"cached block forward at ctx {f['ctx']}: {ratio:.2f}× the weight-read floor "
        f"(target ≤ {TARGET_FLOOR}×: {'met' if ratio <= TARGET_FLOOR else 'not met'})"
    )
    return out


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.machine()}, {torch.get_num_threads()} threads)"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--shapes", nargs="+", default=None, choices=sorted(SHAPES))
    p.add_argument("--dtype", default=None, choices=["bfloat16", "float32"], help="default: bf16 on a GPU")
    p.add_argument("--contexts", nargs="+", type=int, default=None)
    p.add_argument("--block", type=int, default=8, help="the cached block's length")
    p.add_argument("--max-candidates", type=int, default=8)
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument(
        "--statistic", choices=sorted(STATISTIC), default="median", help="min: steadier for sub-ms timings"
    )
    p.add_argument("--gen-length", type=int, default=None)
    p.add_argument("--e2e-block", type=int, default=32)
    p.add_argument("--prompts", type=int, default=2)
    p.add_argument("--prompt-length", type=int, default=None)
    p.add_argument("--copy-mib", type=int, default=None)
    p.add_argument("--ssd-n", nargs="+", type=int, default=[2, 3, 4, 5, 6], help="SSD draft lengths")
    p.add_argument("--exact-n", type=int, default=4, help="the draft length also run in the bit-exact mode")
    p.add_argument("--records", type=Path, default=REPO / "results" / "forward_cost" / "records")
    p.add_argument("--record-limit", type=int, default=None, help="arith problems per recorded run (all)")
    p.add_argument("--out", type=Path, default=REPO / "results" / "forward_cost")
    p.add_argument("--tag", default=None, help="output file name (default: the device kind)")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    gpu = device.type == "cuda"
    shapes = args.shapes or (["llada-8b", "dream-7b"] if gpu else ["tiny-llada", "tiny-dream"])
    contexts = args.contexts or ([512, 1024, 2048] if gpu else [64, 128])
    dtype = getattr(torch, args.dtype or ("bfloat16" if gpu else "float32"))
    gen_length = args.gen_length or (256 if gpu else 32)
    prompt_length = args.prompt_length or (256 if gpu else 16)
    copy_bw = copy_bandwidth(device, args.copy_mib or (1024 if gpu else 256), args.repeats, args.statistic)
    command = " ".join(["python scripts/forward_cost.py", *(sys.argv[1:] if argv is None else argv)])
    result: dict[str, Any] = {
        "device": device_name(device),
        "dtype": str(dtype).removeprefix("torch."),
        "torch": torch.__version__,
        "repeats": args.repeats,
        "statistic": args.statistic,
        "max_candidates": args.max_candidates,
        "copy_bw": copy_bw,
        "command": command,
        "shapes": {},
    }
    for shape in shapes:
        model = build(shape, device, dtype)
        forwards = [forward_costs(model, c, args, copy_bw) for c in contexts]
        gen = torch.Generator().manual_seed(1)
        prompts = [
            torch.randint(0, model.mask_id, (prompt_length,), generator=gen).tolist()
            for _ in range(args.prompts)
        ]
        e2e = end_to_end(model, prompts, gen_length, args.e2e_block, args)
        result["shapes"][shape] = {"forwards": forwards, "end_to_end": e2e}
        print(markdown({**result, "shapes": {shape: result["shapes"][shape]}}), flush=True)
        del model
        if gpu:
            torch.cuda.empty_cache()
    tag = args.tag or ("cpu" if not gpu else torch.cuda.get_device_name(device).replace(" ", "-"))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{tag}.json").write_text(json.dumps(result, indent=1) + "\n")
    (args.out / f"{tag}.md").write_text(markdown(result))
    print(f"wrote {args.out / tag}.md and .json")
    return result


if __name__ == "__main__":
    main()
