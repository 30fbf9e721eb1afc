"""Published numbers, transcribed exactly from the papers (as gathered in docs/algorithms.md).

Data only: ssd/report/paper.py renders it beside our runs. Every accuracy is in percent, every throughput
in generated tokens per second on the authors' A100, and a table's numbers are kept in the paper's order.
d3LLM's AUP leaderboard (`LEADERBOARD`) is points (TPF, accuracy %) per method, as its data files give
them; its AUPs are computed here (ssd/report/aup.py), not transcribed.
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


Points = tuple[tuple[float, float], ...]  # (TPF, accuracy %), as published


@dataclass(frozen=True)
class LeaderboardTask:
    """One task of d3LLM's AUP leaderboard: each method's published points."""

    family: str  # the model family (our model.name): llada | dream
    model: str  # the checkpoint our runs must be of (its name), as for the tables above
    task: str  # d3LLM's name of the task
    benchmarks: tuple[str, ...]  # our test sets standing for it (benchmark variants); () where none does
    methods: dict[str, Points]  # in the published order


LEADERBOARD_SOURCE = (
    "d3LLM (ICML 2026), its AUP leaderboard data (hao-ai-lab/d3LLM, AUP_leaderboard/data_llada.yaml and "
    "data_dream.yaml): TPF and accuracy % per method and task, each method's first point its TPF-1 run"
)
LEADERBOARD = (
    LeaderboardTask(
        "llada",
        "LLaDA-8B-Instruct",
        "GSM8K-CoT",
        ("gsm8k_cot", "gsm8k_cot_zeroshot"),
        {
            "Qwen-2.5-7B-it": ((1.0, 74.1),),
            "LLaDA": ((1.0, 72.55),),
            "Fast-dLLM-LLaDA": ((1.0, 74.79), (2.77, 74.68)),
            "D2F": ((1.0, 74.98), (2.88, 74.39)),
            "dParallel-LLaDA": ((1.0, 74.0), (5.14, 72.63)),
            "d3LLM-LLaDA": ((1.0, 74.02), (9.11, 73.09)),
        },
    ),
    LeaderboardTask(
        "llada",
        "LLaDA-8B-Instruct",
        "MATH",
        ("math", "math500"),
        {
            "Qwen-2.5-7B-it": ((1.0, 41.15),),
            "LLaDA": ((1.0, 32.2),),
            "Fast-dLLM-LLaDA": ((1.0, 32.1), (1.97, 30.82)),
            "D2F": ((1.0, 29.1), (2.66, 28.94)),
            "dParallel-LLaDA": ((1.0, 32.0), (3.17, 30.18)),
            "d3LLM-LLaDA": ((1.0, 32.76), (5.74, 30.36)),
        },
    ),
    LeaderboardTask(
        "llada",
        "LLaDA-8B-Instruct",
        "MBPP",
        ("mbpp",),
        {
            "Qwen-2.5-7B-it": ((1.0, 63.6),),
            "LLaDA": ((1.0, 41.72),),
            "Fast-dLLM-LLaDA": ((1.0, 41.58), (2.13, 38.6)),
            "D2F": ((1.0, 39.1), (2.13, 39.0)),
            "dParallel-LLaDA": ((1.0, 41.62), (2.35, 40.0)),
            "d3LLM-LLaDA": ((1.0, 42.0), (4.21, 40.6)),
        },
    ),
    LeaderboardTask(
        "llada",
        "LLaDA-8B-Instruct",
        "HumanEval",
        ("humaneval",),
        {
            "Qwen-2.5-7B-it": ((1.0, 67.73),),
            "LLaDA": ((1.0, 38.28),),
            "Fast-dLLM-LLaDA": ((1.0, 38.16), (2.56, 37.8)),
            "D2F": ((1.0, 41.02), (2.69, 40.64)),
            "dParallel-LLaDA": ((1.0, 39.68), (4.93, 39.02)),
            "d3LLM-LLaDA": ((1.0, 39.8), (5.95, 39.63)),
        },
    ),
    LeaderboardTask(
        "llada",
        "LLaDA-8B-Instruct",
        "Long-GSM8K",
        (),
        {
            "Qwen-2.5-7B-it": ((1.0, 82.56),),
            "LLaDA": ((1.0, 78.58),),
            "Fast-dLLM-LLaDA": ((1.0, 78.45), (2.45, 78.01)),
            "D2F": ((1.0, 76.0), (2.7, 75.66)),
            "dParallel-LLaDA": ((1.0, 79.15), (4.49, 76.65)),
            "d3LLM-LLaDA": ((1.0, 78.32), (6.95, 74.22)),
        },
    ),
    LeaderboardTask(
        "dream",
        "Dream-v0-Instruct-7B",
        "GSM8K-CoT",
        ("gsm8k_cot", "gsm8k_cot_zeroshot"),
        {
            "Qwen-2.5-7B-it": ((1.0, 74.1),),
            "EAGLE-3": ((1.0, 76.57), (5.12, 76.57)),
            "Dream": ((1.0, 83.94),),
            "Fast-dLLM-Dream": ((1.0, 83.68), (1.44, 79.0)),
            "Fast-dLLM-v2-7B": ((1.0, 82.82), (2.21, 81.48)),
            "dParallel-Dream": ((1.0, 83.8), (3.02, 82.12)),
            "d3LLM-Dream": ((1.0, 83.47), (4.94, 81.36)),
        },
    ),
    LeaderboardTask(
        "dream",
        "Dream-v0-Instruct-7B",
        "MATH",
        ("math", "math500"),
        {
            "Qwen-2.5-7B-it": ((1.0, 41.15),),
            "EAGLE-3": ((1.0, 39.8), (5.72, 39.8)),
            "Dream": ((1.0, 39.63),),
            "Fast-dLLM-Dream": ((1.0, 39.53), (1.78, 38.3)),
            "Fast-dLLM-v2-7B": ((1.0, 49.92), (2.61, 48.74)),
            "dParallel-Dream": ((1.0, 39.06), (2.94, 38.72)),
            "d3LLM-Dream": ((1.0, 39.38), (3.92, 38.21)),
        },
    ),
    LeaderboardTask(
        "dream",
        "Dream-v0-Instruct-7B",
        "MBPP-Instruct",
        ("mbpp",),
        {
            "Qwen-2.5-7B-it": ((1.0, 63.8),),
            "EAGLE-3": ((1.0, 60.2), (5.69, 60.2)),
            "Dream": ((1.0, 57.2),),
            "Fast-dLLM-Dream": ((1.0, 56.38), (1.2, 53.2)),
            "Fast-dLLM-v2-7B": ((1.0, 61.23), (2.04, 59.12)),
            "dParallel-Dream": ((1.0, 57.8), (2.24, 55.4)),
            "d3LLM-Dream": ((1.0, 58.8), (2.96, 55.6)),
        },
    ),
    LeaderboardTask(
        "dream",
        "Dream-v0-Instruct-7B",
        "HumanEval-Instruct",
        ("humaneval",),
        {
            "Qwen-2.5-7B-it": ((1.0, 72.25),),
            "EAGLE-3": ((1.0, 67.58), (5.98, 67.58)),
            "Dream": ((1.0, 55.2),),
            "Fast-dLLM-Dream": ((1.0, 54.86), (1.33, 54.27)),
            "Fast-dLLM-v2-7B": ((1.0, 63.2), (2.58, 61.7)),
            "dParallel-Dream": ((1.0, 56.08), (2.57, 54.27)),
            "d3LLM-Dream": ((1.0, 58.86), (3.2, 57.1)),
        },
    ),
    LeaderboardTask(
        "dream",
        "Dream-v0-Instruct-7B",
        "Long-GSM8K",
        (),
        {
            "Qwen-2.5-7B-it": ((1.0, 82.56),),
            "EAGLE-3": ((1.0, 80.52), (5.57, 80.52)),
            "Dream": ((1.0, 78.95),),
            "Fast-dLLM-Dream": ((1.0, 78.83), (1.79, 76.57)),
            "Fast-dLLM-v2-7B": ((1.0, 82.34), (2.58, 80.97)),
            "dParallel-Dream": ((1.0, 81.27), (3.49, 78.56)),
            "d3LLM-Dream": ((1.0, 81.2), (4.8, 77.18)),
        },
    ),
)
