"""Published numbers, transcribed exactly from the papers (as gathered in docs/algorithms.md).

Data only: ssd/report/paper.py renders it beside our runs. Every accuracy is in percent, every throughput
in generated tokens per second on the authors' A100, and a table's numbers are kept in the paper's order.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Setting:
    """One published column, as our decoder settings (what a run must have to be matched to it)."""

    label: str
    decoder: str  # stepwise | fast_dllm
    cache: str  # none | prefix | dual
    threshold: float | None = None  # fast_dllm's tau (rule threshold)


@dataclass(frozen=True)
class PublishedTable:
    key: str  # output file: results/tables/paper_<key>.md
    title: str
    source: str
    model: str  # the checkpoint's name (the last part of its hub id)
    block_length: int
    settings: tuple[Setting, ...]
    # (benchmark, shots, gen_length) -> one (accuracy %, tokens/s) per setting, in the settings' order
    rows: dict[tuple[str, int, int], tuple[tuple[float, float], ...]]
    notes: str = ""


LLADA = Setting("LLaDA", "stepwise", "none")
CACHE = Setting("+Cache", "stepwise", "prefix")
PARALLEL = Setting("+Parallel", "fast_dllm", "none", 0.9)
FAST_DLLM = Setting("Fast-dLLM", "fast_dllm", "prefix", 0.9)

FAST_DLLM_TABLE1 = PublishedTable(
    key="fast_dllm_table1",
    title="Fast-dLLM Table 1: LLaDA-8B-Instruct",
    source="Fast-dLLM paper, Table 1 (A100; prefix cache, block 32, τ 0.9)",
    model="LLaDA-8B-Instruct",
    block_length=32,
    settings=(LLADA, CACHE, PARALLEL, FAST_DLLM),
    rows={
        ("gsm8k", 5, 256): ((79.3, 6.7), (79.5, 21.2), (79.2, 16.5), (78.5, 54.4)),
        ("gsm8k", 5, 512): ((77.5, 3.2), (77.0, 10.4), (77.6, 18.6), (77.2, 35.3)),
        ("math", 4, 256): ((33.5, 9.1), (33.3, 23.7), (33.4, 24.8), (33.2, 51.7)),
        ("math", 4, 512): ((37.2, 8.0), (36.2, 19.7), (36.8, 23.8), (36.0, 47.1)),
        ("humaneval", 0, 256): ((41.5, 30.5), (42.7, 40.7), (43.9, 101.5), (43.3, 114.1)),
        ("humaneval", 0, 512): ((43.9, 18.4), (45.7, 29.3), (43.3, 57.1), (44.5, 73.7)),
        ("mbpp", 3, 256): ((29.4, 6.0), (29.6, 17.0), (28.4, 24.8), (28.2, 44.8)),
        ("mbpp", 3, 512): ((14.8, 4.3), (13.4, 10.1), (15.0, 22.3), (13.8, 39.5)),
    },
)

FAST_DLLM_TABLE2 = PublishedTable(
    key="fast_dllm_table2",
    title="Fast-dLLM Table 2: Dream-v0-Base-7B",
    source="Fast-dLLM paper, Table 2 (A100; base → Fast-dLLM)",
    model="Dream-v0-Base-7B",
    block_length=32,
    settings=(Setting("Dream (base)", "stepwise", "none"), FAST_DLLM),
    rows={
        ("gsm8k", 5, 256): ((75.0, 9.1), (74.8, 48.2)),
        ("gsm8k", 5, 512): ((76.0, 7.7), (74.0, 42.9)),
        ("math", 4, 256): ((38.4, 11.4), (37.6, 66.8)),
        ("math", 4, 512): ((39.8, 9.6), (39.3, 63.3)),
        ("humaneval", 0, 256): ((49.4, 23.3), (54.3, 62.0)),
        ("humaneval", 0, 512): ((54.3, 16.3), (54.3, 52.8)),
        ("mbpp", 3, 256): ((56.6, 11.2), (56.4, 76.0)),
        ("mbpp", 3, 512): ((55.6, 9.4), (55.2, 73.6)),
    },
    notes=(
        "The shots and the block length of Table 2 are not in algorithms.md; Table 1's (GSM8K 5, MATH 4, "
        "HumanEval 0, MBPP 3 shots; block 32) are assumed, and Fast-dLLM's column as in Table 1 (prefix "
        "cache, τ 0.9)."
    ),
)

TABLES = (FAST_DLLM_TABLE1, FAST_DLLM_TABLE2)


@dataclass(frozen=True)
class Headline:
    key: str
    claim: str
    source: str
    model: str  # the checkpoint's name
    decoder: str
    speedup: float | None  # over stepwise; None where the paper gives no number
    paper_settings: str


SSD_HEADLINES = (
    Headline(
        key="dream",
        claim="up to 3.46× over stepwise",
        source="SSD (arXiv 2510.04147)",
        model="Dream-v0-Instruct-7B",
        decoder="ssd",
        speedup=3.46,
        paper_settings="block 8, refresh 8, N 3–5 per model",
    ),
    Headline(
        key="llada",
        claim="less than Dream (“Dream benefits more than LLaDA”; no number)",
        source="SSD (arXiv 2510.04147)",
        model="LLaDA-8B-Instruct",
        decoder="ssd",
        speedup=None,
        paper_settings="block 8, refresh 8, N 3–5 per model",
    ),
)
