"""Tables of finished runs (`make tables`, `python -m ssd.report.tables [--runs DIR ...] [--out DIR]`).

Built from run folders only (ssd/report/runs.py), written as Markdown, LaTeX and CSV under
`results/tables/runs.{md,tex,csv}`; the Markdown and LaTeX end with each decoder family's AUP per setting
(ssd/report/aup.py), also written as `aup.csv`. The same run folders always give the same bytes: rows are
in a fixed order, numbers are formatted from the summaries alone, and nothing about the time or place of
the rendering enters the files.

Δaccuracy and speedup compare a run with its *baseline*: the stepwise run (target_greedy for DiffuSpec,
whose reference is the autoregressive target) with the same `PAIRING_KEY`: the same sweep, device, model,
benchmark settings and samples, cache, block, gen length and temperature. A run without such a baseline
shows n/a; with several (e.g. the same stepwise setting with and without check_lossless), the first in
row order is used.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from ssd.cost import CostTable
from ssd.errors import SSDError, fail
from ssd.report import aup, projection
from ssd.report.runs import DEFAULT_RUNS, REFERENCES, Runs, load_runs, missing, with_baselines

DEFAULT_OUT = Path("results/tables")
NA = "n/a"


# --- formatting ----------------------------------------------------------------------------------------


def fmt(value: Any, spec: str, suffix: str = "") -> str:
    return NA if missing(value) else f"{value:{spec}}{suffix}"


def fmt_bytes(value: Any) -> str:
    if missing(value):
        return NA
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if value >= size:
            return f"{value / size:.1f} {unit}"
    return f"{int(value)} B"


def _identical(r: dict[str, Any]) -> str:
    if r["decoder"] in REFERENCES:
        return "ref"
    return fmt(None if missing(r["identical_rate"]) else 100 * r["identical_rate"], ".1f")


def _peak_memory(r: dict[str, Any]) -> str:
    text = fmt_bytes(r["peak_memory_bytes"])
    return f"{text} RSS" if r["peak_memory_kind"] == "cpu" and text != NA else text


def _dagger(r: dict[str, Any]) -> str:
    """† on a speed timed while the machine was oversubscribed (summary.json timing.contended)."""
    return "†" if r.get("contended") is True else ""


def _accuracy(r: dict[str, Any]) -> str:
    """In percent; ‡ on a pass@1 graded uncontained (sandbox none): the graded code could have forged it."""
    uncontained = "none" in str(r.get("sandbox") or "").split("+")
    return fmt(None if missing(r["accuracy"]) else 100 * r["accuracy"], ".1f") + "‡" * uncontained


def _paired(r: dict[str, Any]) -> str:
    if missing(r.get("paired_speedup")):
        return NA
    lo, hi = r["paired_ci_lo"], r["paired_ci_hi"]
    ci = "" if missing(lo) or missing(hi) else f" ({lo:.2f}–{hi:.2f})"
    return f"{r['paired_speedup']:.2f}×{ci}"


def _int(value: Any) -> str:
    return "" if missing(value) else str(int(value))


# (header, right-aligned, value of a row)
DISPLAY: tuple[tuple[str, bool, Any], ...] = (
    ("model", False, lambda r: r["model"]),
    ("benchmark", False, lambda r: r["benchmark"] + ("" if missing(r["sandbox"]) else f" [{r['sandbox']}]")),
    ("decoder", False, lambda r: r["decoder_label"]),
    ("N", True, lambda r: _int(r["draft_length"])),
    ("block", True, lambda r: str(r["block_length"])),
    ("gen", True, lambda r: str(r["gen_length"])),
    ("cache", False, lambda r: r["cache"]),
    ("n", True, lambda r: _int(r["n_samples"])),
    ("accuracy %", True, _accuracy),
    ("Δacc", True, lambda r: fmt(r["delta_accuracy"], "+.1f")),
    ("identical %", True, _identical),
    ("NFE", True, lambda r: fmt(r["mean_nfe"], ".1f")),
    ("TPF", True, lambda r: fmt(r["tokens_per_forward"], ".2f")),
    ("tokens/s", True, lambda r: fmt(r["throughput_tokens_per_s"], ".1f") + _dagger(r)),
    ("speedup", True, lambda r: fmt(r["speedup"], ".2f", "×") + ("†" if r.get("speed_suspect") else "")),
    ("paired speedup", True, _paired),
    ("projected speedup", True, lambda r: fmt(r["projected_speedup"], ".2f", "×")),
    ("peak memory", True, _peak_memory),
    ("device", False, lambda r: r["device"]),
    ("sweep", False, lambda r: r["sweep"]),
)

# The CSV: raw numbers (fractions, not percent), one column per field, machine-readable names.
CSV_COLUMNS = (
    "model",
    "benchmark_name",
    "benchmark_variant",
    "shots",
    "chat",
    "decoder",
    "policy",  # SSD's: whose steps it speculates (stepwise, or fast_dllm with the rule beside it)
    "knob",
    "rule",
    "threshold",
    "factor",
    "draft_length",
    "block_length",
    "gen_length",
    "cache",
    "temperature",
    "limit",
    "seed",
    "n_samples",
    "accuracy",
    "delta_accuracy",
    "identical_rate",
    "mean_nfe",
    "tokens_per_forward",
    "throughput_tokens_per_s",
    "speedup",
    "paired_speedup",
    "paired_ci_lo",
    "paired_ci_hi",
    "contended",
    "threads",
    "projected_speedup",
    "projection",
    "family",
    "family_aup",
    "aup_kept",
    "mean_accepted",
    "peak_memory_bytes",
    "peak_memory_kind",
    "device",
    "sweep",
    "run",
    "baseline_run",
    "model_path",
    "config_hash",
    "sandbox",
)

LEGEND = (
    "Δacc: accuracy points over the baseline; speedup: tokens/s over the baseline's. The baseline is the "
    "stepwise run (target_greedy for diffuspec) of the same sweep, device, model, benchmark, samples, cache, "
    "block, gen length and temperature. identical %: samples token-identical to the reference decoder "
    "(stepwise with the same cache; for SSD over Fast-dLLM, Fast-dLLM with the same rule; diffuspec: its "
    "target's greedy run; ref = is a reference). NFE: forwards per sample; TPF: generated tokens "
    "per forward. peak memory: the GPU allocator's peak, or the process's peak RSS on a CPU (n/a: not "
    "recorded). paired speedup: median per-sample speedup over the reference decoder timed on the same "
    "sample right beside it (timing.paired=true), with its 95% bootstrap interval, on CPU time for a "
    "single-threaded CPU job (it leaves out waiting for a core), on wall time otherwise; robust to load. "
    "†: timed while the machine was oversubscribed (summary.json timing.contended_why), or its baseline "
    "was: that tokens/s or speedup is not to be trusted."
)


SANDBOX_NOTE = (
    "[bwrap], [ns], [none]: the isolation a code benchmark's programs ran under (README, \"Running generated "
    'code"); none means uncontained. ‡: a pass@1 graded uncontained: the graded code could have read the '
    "answers or forged its verdict, so it is not to be trusted."
)


def display_rows(frame: pd.DataFrame) -> list[list[str]]:
    return [[get(r) for _, _, get in DISPLAY] for r in frame.to_dict("records")]


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown(headers: Sequence[str], right: Sequence[bool], rows: Sequence[Sequence[str]]) -> str:
    """A GitHub Markdown table, columns padded for reading as plain text too."""
    cells = [[_md_cell(h) for h in headers], *[[_md_cell(c) for c in row] for row in rows]]
    widths = [max(3, *(len(row[i]) for row in cells)) for i in range(len(headers))]

    def line(row: Sequence[str]) -> str:
        padded = (c.rjust(w) if r else c.ljust(w) for c, w, r in zip(row, widths, right, strict=True))
        return "| " + " | ".join(padded) + " |"

    dashes = ("-" * (w + 1) + ":" if r else ":" + "-" * (w + 1) for w, r in zip(widths, right, strict=True))
    return "\n".join([line(cells[0]), "|" + "|".join(dashes) + "|", *map(line, cells[1:])]) + "\n"


LATEX_SPECIAL = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "τ": r"$\tau$",
    "Δ": r"$\Delta$",
    "×": r"$\times$",
}


def latex_escape(text: str) -> str:
    return "".join(LATEX_SPECIAL.get(ch, ch) for ch in text)


def latex(headers: Sequence[str], right: Sequence[bool], rows: Sequence[Sequence[str]]) -> str:
    """A booktabs tabular (needs `\\usepackage{booktabs}`), every cell escaped."""
    spec = "".join("r" if r else "l" for r in right)
    lines = [f"\\begin{{tabular}}{{{spec}}}", "\\toprule", " & ".join(map(latex_escape, headers)) + r" \\"]
    lines.append("\\midrule")
    lines += [" & ".join(map(latex_escape, row)) + r" \\" for row in rows]
    lines += ["\\bottomrule", "\\end{tabular}"]
    return "\n".join(lines) + "\n"


def csv_text(frame: pd.DataFrame) -> str:
    return frame.loc[:, list(CSV_COLUMNS)].to_csv(index=False, lineterminator="\n")


def render(runs: Runs, cost: CostTable | None = None, scope: str = "") -> dict[str, str]:
    """File name → content of each table file (projected speedups priced with `cost`, default: the
    recorded H100 table; `scope`: which runs these are, said under the title)."""
    by_arch = projection.default_tables() if cost is None else {}  # by default each run its own table
    cost = cost if cost is not None else projection.default_table()
    frame = aup.with_families(projection.with_projection(with_baselines(runs.frame), cost, by_arch))
    # A speedup is as suspect as either of its two timings.
    contended = set(frame.loc[frame["contended"].astype(bool), "run"])
    frame["speed_suspect"] = frame["contended"].astype(bool) | frame["baseline_run"].isin(contended)
    headers = [projection.header(cost) if h == "projected speedup" else h for h, _, _ in DISPLAY]
    right = [r for _, r, _ in DISPLAY]
    rows = display_rows(frame)
    notes = [LEGEND, projection.legend(cost, projection.tables_used(frame, cost, by_arch))]
    if frame["sandbox"].notna().any():
        notes.append(SANDBOX_NOTE)
    if runs.incomplete:
        n = runs.n_incomplete
        notes.append(f"{n} incomplete run folder{'s' * (n != 1)} (no summary.json yet) skipped.")
    title = "# Runs\n\n" + (f"Runs of {scope}.\n\n" if scope else "")
    md = title + markdown(headers, right, rows) + "\n" + "\n\n".join(notes) + "\n"
    families = aup.families(frame)
    aup_rows = aup.display_rows(families)
    md += (
        "\n## AUP by decoder family\n\n"
        + markdown(aup.HEADERS, aup.RIGHT, aup_rows)
        + "\n"
        + aup.LEGEND
        + "\n"
    )
    tex = "% Generated by python -m ssd.report.tables from run folders; do not edit.\n" + latex(
        headers, right, rows
    )
    tex += "\n% AUP by decoder family (ssd/report/aup.py)\n" + latex(aup.HEADERS, aup.RIGHT, aup_rows)
    aup_csv = families.drop(columns=["setting", "curve", "own"]).to_csv(index=False, lineterminator="\n")
    return {"runs.md": md, "runs.tex": tex, "runs.csv": csv_text(frame), "aup.csv": aup_csv}


def write_files(out_dir: str | Path, contents: dict[str, str | bytes]) -> list[Path]:
    """Write each file whole (a temporary file renamed over it), so a reader never sees half of one."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, content in contents.items():
        path = out / name
        tmp = path.with_name(f".{name}.tmp-{os.getpid()}")
        tmp.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
        os.replace(tmp, path)
        paths.append(path)
    return paths


def write_tables(
    runs: Runs, out_dir: str | Path = DEFAULT_OUT, cost: CostTable | None = None, scope: str = ""
) -> list[Path]:
    if runs.frame.empty:
        raise SSDError(
            f"no finished run folders ({runs.note()}): run some jobs first (make sweep), or pass --runs "
            f"with the folder that holds them"
        )
    return write_files(out_dir, render(runs, cost, scope=scope))


def parser(description: str, default_out: Path) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument(
        "--runs",
        action="append",
        type=Path,
        help=f"a folder of run folders, or one run folder (repeatable; default {DEFAULT_RUNS})",
    )
    p.add_argument(
        "--sweep", action="append", help="only the runs of this sweep label (repeatable; default: the latest)"
    )
    p.add_argument("--all-sweeps", action="store_true", help="every sweep's runs together")
    p.add_argument("--out", type=Path, default=default_out, help=f"output folder (default {default_out})")
    return p


def main(argv: Sequence[str] | None = None) -> None:
    from ssd.report.select import choose

    p = parser("Tables of finished runs, from run folders only.", DEFAULT_OUT)
    p.add_argument(
        "--cost",
        type=Path,
        help="one forward-cost JSON for every run (default: each architecture's recorded H100 table)",
    )
    args = p.parse_args(argv)
    try:
        runs, scope = choose(load_runs(args.runs or [DEFAULT_RUNS]), args.sweep, args.all_sweeps)
        paths = write_tables(runs, args.out, CostTable.load(args.cost) if args.cost else None, scope=scope)
    except SSDError as e:
        fail(e)
    print(f"tables: {scope}: {runs.note()} -> {', '.join(map(str, paths))}")


if __name__ == "__main__":
    main()
