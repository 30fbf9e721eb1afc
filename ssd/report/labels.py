"""How a run is named in the reports: its model, device, decoder (with the knobs that tell its arms
apart) and benchmark, from its resolved config and summary alone."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any


def number(value: Any) -> float | None:
    """A finite float, or None (absent, null, or not a number)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def model_label(path: str | None, name: str | None) -> str:
    """The checkpoint's name: the last part of its folder or hub id (`GSAI-ML/LLaDA-8B-Instruct` →
    `LLaDA-8B-Instruct`), or the architecture when there is no path."""
    if path:
        tail = str(path).rstrip("/").replace("\\", "/").rsplit("/", 1)[-1]
        if tail:
            return tail
    return str(name)


def device_label(environment: Any) -> str:
    """The kind of device a run was timed on: the GPU's name, or `cpu (<processor>)`."""
    if not isinstance(environment, dict):
        return "n/a"
    hardware = environment.get("hardware") if isinstance(environment.get("hardware"), dict) else {}
    device = environment.get("device") if isinstance(environment.get("device"), str) else None
    device = device or hardware.get("device")
    name = hardware.get("device_name")
    if device is None and name is None:
        return "n/a"
    kind = str(device or "").split(":")[0]
    if kind == "cuda":
        return str(name or device)
    if name and kind:
        return f"{kind} ({name})"
    return str(name or kind)


def _fmt_knob(value: float) -> str:
    return f"{value:g}"


def decoder_label(decoder: dict[str, Any]) -> tuple[str, str]:
    """(label, knob) of a decoder config: `ssd N=4`, `fast_dllm τ=0.9`, `fast_dllm f=1`, `psd τ=0.9 N=4`,
    and speculation over Fast-dLLM: `ssd[fast_dllm τ=0.9] budget=16`."""
    name = str(decoder.get("name"))
    knobs = []
    if rule(decoder):
        if decoder.get("rule", "threshold") == "factor":
            knobs.append(f"f={_fmt_knob(decoder.get('factor', 1.0))}")
        else:
            knobs.append(f"τ={_fmt_knob(decoder.get('threshold', 0.9))}")
    if is_tree(decoder):
        knobs.append(f"tree={decoder['tree']}" if decoder.get("tree") else f"budget={decoder['tree_budget']}")
        if decoder.get("tree_budget") and decoder.get("tree_cost"):
            knobs.append(f"cost={Path(str(decoder['tree_cost'])).stem}")
        if decoder.get("tree_budget") and decoder.get("tree_calibration"):
            knobs.append(f"graph={Path(str(decoder['tree_calibration'])).stem}")
    elif name in ("ssd", "psd") and decoder.get("draft_length") is not None:
        knobs.append(f"N={decoder['draft_length']}")
    if name == "ssd" and decoder.get("seed_next_block"):
        knobs.append("seeded")
    temperature = number(decoder.get("temperature")) or 0.0
    if temperature > 0:
        knobs.append(f"T={_fmt_knob(temperature)}")
    if name == "ssd" and rule(decoder):  # the policy it speculates over, then the speculation's knobs
        name, knobs = f"ssd[fast_dllm {knobs[0]}]", knobs[1:]
    knob = " ".join(knobs)
    return (f"{name} {knob}" if knob else name), knob


def rule(decoder: dict[str, Any]) -> str | None:
    """Fast-dLLM's rule where it decides the steps: fast_dllm, psd, and SSD over Fast-dLLM."""
    name = decoder.get("name")
    if name in ("fast_dllm", "psd") or (name == "ssd" and decoder.get("policy") == "fast_dllm"):
        return str(decoder.get("rule", "threshold"))
    return None


def is_tree(decoder: dict[str, Any]) -> bool:
    """An SSD run with a verification tree (its draft_length plays no part)."""
    return decoder.get("name") == "ssd" and bool(decoder.get("tree") or decoder.get("tree_budget"))


def benchmark_variant(benchmark: dict[str, Any]) -> str:
    """Which test set: the variant (`gsm8k_cot`) or subset (`math500`) where the benchmark has one."""
    subset = benchmark.get("subset")
    if subset and subset != "full":
        return str(subset)
    return str(benchmark.get("variant") or benchmark.get("name"))


def _default_chat(name: str) -> bool:
    from ssd.config import SCHEMAS

    schema = SCHEMAS["benchmark"].get(f"_schema_{name}")
    return bool(getattr(schema, "chat", True))


def benchmark_label(benchmark: dict[str, Any]) -> str:
    """`gsm8k 5-shot`, `math500 4-shot`; `, chat` / `, no chat` where the chat template is not the
    benchmark's default."""
    label = f"{benchmark_variant(benchmark)} {benchmark.get('num_fewshot', 0)}-shot"
    chat = bool(benchmark.get("chat", True))
    if chat != _default_chat(str(benchmark.get("name"))):
        label += ", chat" if chat else ", no chat"
    return label
