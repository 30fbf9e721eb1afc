"""Published tables beside ours (`make paper`, `python -m ssd.report.paper [--runs DIR ...] [--out DIR]`).

Each published table (ssd/report/published.py: Fast-dLLM Tables 1 and 2, the SSD headline) is written to
`results/tables/paper_<key>.md` with the paper's numbers and ours side by side, "not run" where no run
matches; d3LLM's AUP leaderboard with our runs beside it to `paper_aup_leaderboard.md` (its own matching
rule: ssd/report/leaderboard.py).

Matching rule. A run stands for a published cell when all of these hold:
- model: its checkpoint's name (the last part of `model.path`, e.g. `GSAI-ML/LLaDA-8B-Instruct` →
  `LLaDA-8B-Instruct`) equals the table's model, ignoring case; tiny or other checkpoints never match;
- benchmark: its test set (the variant or subset where the benchmark has one, else its name) is the cell's
  (MATH = math | minerva_math | hendrycks_math: the full test split, not math500; GSM8K = gsm8k, not a
  CoT variant), with the same `num_fewshot`;
- decoder: `gen_length` is the cell's, `block_length` the table's, temperature 0 (greedy); the column's
  decoder and cache mode (LLaDA = stepwise without cache, +Cache = stepwise with prefix cache, +Parallel =
  fast_dllm threshold rule τ 0.9 without cache, Fast-dLLM = fast_dllm τ 0.9 with prefix cache).
Chat template, dtype, sweep and device are not part of the rule: the device is shown next to our numbers.
Several matching runs: the one with the most samples, then the first in the tables' row order. Our
speedup is against our run of the table's first column for the same cell when both ran on the same device;
the paper's is computed from its published tokens/s the same way.

SSD headline: the largest speedup over stepwise (paired as in the tables: same sweep, device, settings)
among our ssd runs of the headline's model.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from ssd.errors import SSDError, fail
from ssd.report.leaderboard import render_leaderboard
from ssd.report.published import SSD_HEADLINES, TABLES, PublishedTable, Setting
from ssd.report.runs import DEFAULT_RUNS, Runs, load_runs, missing, with_baselines
from ssd.report.tables import DEFAULT_OUT, fmt, markdown, write_files

NOT_RUN = "not run"
BENCHMARK_ALIASES = {
    "gsm8k": ("gsm8k",),
    "math": ("math", "minerva_math", "hendrycks_math"),
    "humaneval": ("humaneval",),
    "mbpp": ("mbpp",),
}
BENCHMARK_NAMES = {"gsm8k": "GSM8K", "math": "MATH", "humaneval": "HumanEval", "mbpp": "MBPP"}


def _same_model(frame: pd.DataFrame, model: str) -> pd.Series:
    return frame["model"].str.lower() == model.lower()


def match(
    frame: pd.DataFrame, model: str, benchmark: str, shots: int, gen: int, block: int, setting: Setting
) -> dict[str, Any] | None:
    """The run standing for one published cell (the module docstring's rule), or None."""
    ok = (
        _same_model(frame, model)
        & frame["benchmark_variant"].isin(BENCHMARK_ALIASES.get(benchmark, (benchmark,)))
        & (frame["shots"] == shots)
        & (frame["gen_length"] == gen)
        & (frame["block_length"] == block)
        & (frame["temperature"] == 0)
        & (frame["decoder"] == setting.decoder)
        & (frame["cache"] == setting.cache)
    )
    if setting.threshold is not None:
        ok &= (frame["rule"] == "threshold") & (frame["threshold"] == setting.threshold)
    rows = frame[ok].to_dict("records")
    if not rows:
        return None
    most = max(int(r["n_samples"]) if not missing(r["n_samples"]) else 0 for r in rows)
    return next(r for r in rows if (0 if missing(r["n_samples"]) else int(r["n_samples"])) == most)


def _speedup(tps: Any, base_tps: Any) -> str:
    if missing(tps) or missing(base_tps) or base_tps <= 0:
        return ""
    return f"{tps / base_tps:.2f}×"


def render_table(table: PublishedTable, frame: pd.DataFrame) -> str:
    headers = [
        "benchmark",
        "gen",
        "setting",
        "paper acc %",
        "ours acc %",
        "paper tok/s",
        "ours tok/s",
        "paper speedup",
        "ours speedup",
        "ours n",
        "ours device",
    ]
    right = [False, True, False, True, True, True, True, True, True, True, False]
    rows = []
    for (benchmark, shots, gen), published in table.rows.items():
        ours = [
            match(frame, table.model, benchmark, shots, gen, table.block_length, s) for s in table.settings
        ]
        base = ours[0]
        for setting, (acc, tps), run in zip(table.settings, published, ours, strict=True):
            cells = [f"{BENCHMARK_NAMES.get(benchmark, benchmark)} {shots}-shot", str(gen), setting.label]
            cells += [f"{acc:.1f}"]
            if run is None:
                cells += [NOT_RUN, f"{tps:.1f}", NOT_RUN, _speedup(tps, published[0][1]), "", "", ""]
            else:
                same_device = base is not None and base["device"] == run["device"]
                cells += [
                    fmt(None if missing(run["accuracy"]) else 100 * run["accuracy"], ".1f"),
                    f"{tps:.1f}",
                    fmt(run["throughput_tokens_per_s"], ".1f"),
                    _speedup(tps, published[0][1]),
                    _speedup(run["throughput_tokens_per_s"], base["throughput_tokens_per_s"])
                    if same_device
                    else "",
                    "" if missing(run["n_samples"]) else str(int(run["n_samples"])),
                    run["device"],
                ]
            rows.append(cells)
    columns = "; ".join(
        f"{s.label} = {s.decoder}, cache {s.cache}"
        + (f", τ {s.threshold:g}" if s.threshold is not None else "")
        for s in table.settings
    )
    parts = [
        f"# {table.title}",
        f"Paper: {table.source}. Ours: runs of `{table.model}` with block {table.block_length}, greedy; "
        f"columns as decoder settings: {columns}. Speedups are over the first column of the same cell "
        f"(the paper's computed from its tokens/s; ours only when both runs are on one device). "
        f"Matching rule: ssd/report/paper.py.",
        markdown(headers, right, rows).rstrip("\n"),
    ]
    if table.notes:
        parts.append(table.notes)
    return "\n\n".join(parts) + "\n"


def render_headline(frame: pd.DataFrame) -> str:
    paired = with_baselines(frame)
    headers = ["model", "paper", "paper settings", "ours (largest)", "our run", "ours n", "ours device"]
    rows = []
    for h in SSD_HEADLINES:
        runs = paired[_same_model(paired, h.model) & (paired["decoder"] == h.decoder)]
        runs = runs[runs["speedup"].notna()]
        if runs.empty:
            rows.append([h.model, h.claim, h.paper_settings, NOT_RUN, "", "", ""])
            continue
        best = runs.loc[runs["speedup"].idxmax()]  # first of equal maxima in row order
        setting = (
            f"{best['benchmark']}, {best['decoder_label']}, {best['cache']} cache, "
            f"block {best['block_length']}, gen {best['gen_length']}, sweep {best['sweep']}"
        )
        n = "" if missing(best["n_samples"]) else str(int(best["n_samples"]))
        rows.append(
            [h.model, h.claim, h.paper_settings, f"{best['speedup']:.2f}×", setting, n, best["device"]]
        )
    parts = [
        "# SSD headline: speedup over stepwise",
        f"Paper: {SSD_HEADLINES[0].source}. Ours: the largest tokens/s speedup of an ssd run over the "
        "stepwise run of the same sweep, device, model, benchmark, samples, cache, block and gen length "
        "(ssd/report/runs.py, `with_baselines`).",
        markdown(headers, [False, False, False, True, False, True, False], rows).rstrip("\n"),
    ]
    return "\n\n".join(parts) + "\n"


def render(runs: Runs) -> dict[str, str]:
    """File name → content of each paper table."""
    out = {f"paper_{t.key}.md": render_table(t, runs.frame) for t in TABLES}
    out["paper_ssd_headline.md"] = render_headline(runs.frame)
    out["paper_aup_leaderboard.md"] = render_leaderboard(runs.frame)
    return out


def write_paper(runs: Runs, out_dir: str | Path = DEFAULT_OUT) -> list[Path]:
    """The paper tables; with no runs at all, every cell of ours reads "not run"."""
    return write_files(out_dir, render(runs))


def main(argv: Sequence[str] | None = None) -> None:
    from ssd.report.tables import parser

    args = parser("Published tables beside ours, from run folders only.", DEFAULT_OUT).parse_args(argv)
    try:
        runs = load_runs(args.runs or [DEFAULT_RUNS]).only(args.sweep)
        paths = write_paper(runs, args.out)
    except SSDError as e:
        fail(e)
    print(f"paper: {runs.note()} -> {', '.join(map(str, paths))}")


if __name__ == "__main__":
    main()
