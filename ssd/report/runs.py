"""Read run folders into one pandas frame: the only input of every report (tables, plots, paper tables).

A run folder is complete when its `summary.json` exists (ssd/results/runfolder.py writes it last and
atomically); folders without one are skipped and counted, never half-read. Nothing here depends on where
the folders live or on the order the file system lists them in, so the same folders always give the same
frame.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from ssd.config import parse_shard
from ssd.errors import SSDError
from ssd.registry import did_you_mean
from ssd.report.labels import benchmark_label, benchmark_variant, decoder_label, device_label, model_label
from ssd.report.labels import is_tree as _is_tree
from ssd.report.labels import number as _number
from ssd.report.labels import rule as _rule
from ssd.report.shards import merge, setting_key
from ssd.results.runfolder import CONFIG, SAMPLES, SUMMARY, read_summary
from ssd.results.verify import verify

DEFAULT_RUNS = Path("results/runs")

# Decoders whose output is the yardstick of others (they have no reference of their own).
REFERENCES = ("stepwise", "target_greedy")
# The decoder whose runs a decoder's accuracy and speed are compared with in the tables.
BASELINE = {"diffuspec": "target_greedy", "target_greedy": "target_greedy"}
# Row order within one setting: the references first, then the decoders roughly by how much they change.
DECODER_ORDER = ("target_greedy", "stepwise", "fast_dllm", "ssd", "psd", "diffuspec")
CACHE_ORDER = ("none", "prefix", "dual")

# What must be equal for two runs to be compared (Δaccuracy, speedup): the same sweep (timed in the same
# session), the same device, the same model and benchmark settings and samples, and the same frame
# (cache, block, gen length, temperature). The decoder and its knobs are what differ.
PAIRING_KEY = (
    "sweep",
    "device",
    "model_name",
    "model_path",
    "dtype",
    "benchmark_key",
    "limit",
    "seed",
    "cache",
    "block_length",
    "gen_length",
    "temperature",
)


@dataclass(frozen=True)
class Runs:
    """The finished runs (one row each) and the folders that were skipped for lack of a summary."""

    frame: pd.DataFrame
    incomplete: tuple[Path, ...]

    @property
    def n_incomplete(self) -> int:
        return len(self.incomplete)

    def only(self, sweeps: Iterable[str] | None) -> Runs:
        """The runs of these sweeps (all of them when None or empty)."""
        sweeps = list(sweeps or [])
        if not sweeps:
            return self
        known = sorted(set(self.frame["sweep"]))
        for sweep in sweeps:
            if sweep not in known:
                raise SSDError(f"no finished run of sweep '{sweep}': {did_you_mean(sweep, known)}")
        frame = self.frame[self.frame["sweep"].isin(sweeps)].reset_index(drop=True)
        return Runs(frame=frame, incomplete=self.incomplete)

    def note(self) -> str:
        """One line for the user: how many runs were read, how many skipped."""
        text = f"{len(self.frame)} finished run{'s' * (len(self.frame) != 1)}"
        if self.incomplete:
            n = len(self.incomplete)
            text += f", {n} incomplete run folder{'s' * (n != 1)} skipped (no {SUMMARY} yet)"
        return text


def _is_run_folder(path: Path) -> bool:
    return path.is_dir() and any((path / name).is_file() for name in (CONFIG, SAMPLES, SUMMARY))


def run_folders(roots: Iterable[str | Path]) -> list[Path]:
    """Every run folder directly below each root (or the root itself, when it is one), sorted by name."""
    found: dict[str, Path] = {}
    for root in map(Path, roots):
        if not root.is_dir():
            raise SSDError(
                f"{root} is not a folder: run some jobs first (make sweep), or pass --runs with the folder "
                f"that holds the run folders"
            )
        folders = [root] if _is_run_folder(root) else [p for p in root.iterdir() if _is_run_folder(p)]
        for folder in folders:
            found.setdefault(str(folder.resolve()), folder)
    return sorted(found.values(), key=lambda p: (p.name, str(p)))


def _read_config(path: Path) -> dict[str, Any]:
    fix = f"the run folder {path.parent} is damaged: delete it and rerun the job"
    if not path.is_file():
        raise SSDError(f"{path} is missing although {SUMMARY} is there: {fix}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, yaml.YAMLError) as e:
        raise SSDError(f"{path} is not valid YAML ({type(e).__name__}): {fix}") from None
    sections = ("model", "decoder", "benchmark")
    if not isinstance(data, dict) or not all(isinstance(data.get(k), dict) for k in sections):
        raise SSDError(f"{path} is not a resolved run config (no model/decoder/benchmark sections): {fix}")
    return data


def report_fields(summary: dict[str, Any]) -> dict[str, Any]:
    """The timing columns of a run's report row (threads, contention, paired speedup) and when it finished
    (`finished`), from its summary. Summaries written before the runner recorded timing have none: then
    the run is not known to be contended and has no paired speedup."""
    timing = summary.get("timing") if isinstance(summary.get("timing"), dict) else {}
    paired = summary.get("paired_speedup") if isinstance(summary.get("paired_speedup"), dict) else {}
    ci = paired.get("ci95") if isinstance(paired.get("ci95"), list) else []
    ci = ci if len(ci) == 2 else [None, None]
    environment = summary.get("environment") if isinstance(summary.get("environment"), dict) else {}
    return {
        "threads": timing.get("threads"),
        "contended": bool(timing.get("contended")),
        "contended_why": timing.get("contended_why"),
        "paired_speedup": _number(paired.get("median_speedup")),
        "paired_ci_lo": _number(ci[0]),
        "paired_ci_hi": _number(ci[1]),
        "paired_basis": paired.get("basis"),
        "paired_wall_speedup": _number(paired.get("median_wall_speedup")),
        "finished": str(environment.get("timestamp") or ""),
    }


def _row(folder: Path, config: dict[str, Any], summary: dict[str, Any]) -> dict[str, Any]:
    model, decoder, benchmark = config["model"], config["decoder"], config["benchmark"]
    label, knob = decoder_label(decoder)
    rule = _rule(decoder)
    checked = bool(summary.get("lossless_checked"))
    bench_key = {k: v for k, v in benchmark.items() if k != "data_dir"}
    return {
        "run": folder.name,
        "sweep": str(summary.get("sweep", config.get("sweep", "adhoc"))),
        "model": model_label(model.get("path"), model.get("name")),
        "model_name": str(model.get("name")),
        "model_path": str(model.get("path")),
        "dtype": str(model.get("dtype", "auto")),
        "benchmark": benchmark_label(benchmark),
        "benchmark_name": str(benchmark.get("name")),
        "benchmark_variant": benchmark_variant(benchmark),
        "shots": int(benchmark.get("num_fewshot", 0)),
        "chat": bool(benchmark.get("chat", True)),
        "benchmark_key": json.dumps(bench_key, sort_keys=True),
        "decoder": str(decoder.get("name")),
        "decoder_label": label,
        "knob": knob,
        "policy": decoder.get("policy"),  # what SSD speculates over (absent: stepwise)
        "rule": rule,
        "threshold": _number(decoder.get("threshold")) if rule == "threshold" else None,
        "factor": _number(decoder.get("factor")) if rule == "factor" else None,
        "draft_length": None if _is_tree(decoder) else decoder.get("draft_length"),
        "block_length": int(decoder.get("block_length", 0)),
        "gen_length": int(decoder.get("gen_length", 0)),
        "cache": str(decoder.get("cache", "none")),
        "temperature": _number(decoder.get("temperature")) or 0.0,
        "limit": config.get("limit"),
        "seed": config.get("seed", 0),
        "n_samples": summary.get("n_samples"),
        "accuracy": _number(summary.get("accuracy")),
        "identical_rate": _number(summary.get("identical_rate")) if checked else None,
        "lossless_checked": checked,
        "mean_nfe": _number(summary.get("mean_nfe")),
        "tokens_per_forward": _number(summary.get("tokens_per_forward")),
        "throughput_tokens_per_s": _number(summary.get("throughput_tokens_per_s")),
        "mean_accepted": _number(summary.get("mean_accepted")),
        "total_generated_tokens": _number(summary.get("total_generated_tokens")),
        "forward_rows_histogram": json.dumps(summary.get("forward_batch_size_histogram") or {}),
        "forward_shapes": json.dumps(summary.get("forward_shape_histogram") or {}),
        "peak_memory_bytes": _number(summary.get("peak_memory_bytes")),
        "peak_memory_kind": summary.get("peak_memory_kind"),  # cuda (allocator peak) | cpu (process RSS)
        "device": device_label(summary.get("environment")),
        "config_hash": str(summary.get("config_hash", "")),
        **report_fields(summary),
        "sandbox": summary.get("sandbox"),  # code benchmarks: the isolation their programs ran under
    }


def _order(value: str, order: tuple[str, ...]) -> tuple[int, str]:
    return (order.index(value) if value in order else len(order), value)


def _none_last(value: Any) -> tuple[bool, Any]:
    return (value is None or (isinstance(value, float) and math.isnan(value)), 0 if value is None else value)


def sort_key(row: dict[str, Any]) -> tuple:
    """Settings together, references first within a setting, knobs ascending, the run name last."""
    return (
        row["model"],
        row["model_path"],
        row["benchmark"],
        row["benchmark_key"],
        row["gen_length"],
        row["block_length"],
        _order(row["cache"], CACHE_ORDER),
        row["sweep"],
        row["device"],
        _none_last(row["limit"]),
        _none_last(row["seed"]),
        row["temperature"],
        _order(row["decoder"], DECODER_ORDER),
        _order(str(row["rule"]), ("threshold", "factor")),
        _none_last(row["threshold"]),
        _none_last(row["factor"]),
        _none_last(row["draft_length"]),
        row["run"],
    )


INTEGERS = ("draft_length", "limit", "seed", "n_samples")
COLUMNS = tuple(_row(Path("x"), {"model": {}, "decoder": {}, "benchmark": {}}, {}))


def load_runs(roots: str | Path | Iterable[str | Path] = DEFAULT_RUNS) -> Runs:
    """Every finished run below `roots`, one row each, in a fixed order (`sort_key`).

    Folders without `summary.json` are counted in `Runs.incomplete`; a summary or config that cannot be
    read, or a summary its samples do not give (ssd/results/verify.py), raises SSDError naming the file
    and what to do about it.
    """
    if isinstance(roots, (str, Path)):
        roots = [roots]
    rows, incomplete = [], []
    sharded: dict[str, list] = {}
    for folder in run_folders(roots):
        summary_file = folder / SUMMARY
        config = _read_config(folder / CONFIG) if (folder / CONFIG).is_file() else None
        summary = read_summary(summary_file) if summary_file.is_file() else None
        if summary is not None:
            verify(folder, summary)  # a summary its samples do not give is refused, never tabulated
        if config is not None and parse_shard(config.get("shard")) is not None:
            sharded.setdefault(setting_key(config), []).append((folder, config, summary))
        elif summary is None:
            incomplete.append(folder)
        else:
            rows.append(
                _row(folder, config if config is not None else _read_config(folder / CONFIG), summary)
            )
    for key in sorted(sharded):
        rows.append(_row(*merge(sharded[key])))
    rows.sort(key=sort_key)
    frame = pd.DataFrame(rows, columns=list(COLUMNS))
    for column in INTEGERS:  # nullable integers: 4, not 4.0, and NA where a decoder has no such knob
        frame[column] = frame[column].astype("Int64")
    return Runs(frame=frame, incomplete=tuple(incomplete))


def missing(value: Any) -> bool:
    """None, NaN or pandas' NA."""
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


def _key_value(value: Any) -> Any:
    return None if missing(value) else value


def with_baselines(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame plus `baseline_run`, `delta_accuracy` (points) and `speedup` (× the baseline's tokens/s).

    A run's baseline is the run of decoder `BASELINE.get(decoder, "stepwise")` with the same `PAIRING_KEY`
    (the baseline of a stepwise run is itself: Δ 0, speedup 1). Without one, both are NaN; with several,
    the first in the frame's order wins.
    """
    records = frame.to_dict("records")
    baselines: dict[tuple, dict[str, Any]] = {}
    for r in records:  # rows are in a fixed order: the first baseline of a key wins
        key = (r["decoder"], *(_key_value(r[k]) for k in PAIRING_KEY))
        baselines.setdefault(key, r)
    runs, deltas, speedups = [], [], []
    for r in records:
        key = (BASELINE.get(r["decoder"], "stepwise"), *(_key_value(r[k]) for k in PAIRING_KEY))
        base = baselines.get(key)
        base = base or {"run": None, "accuracy": None, "throughput_tokens_per_s": None}
        runs.append(base["run"])
        acc, base_acc = r["accuracy"], base["accuracy"]
        deltas.append(None if missing(acc) or missing(base_acc) else 100 * (acc - base_acc))
        tps, base_tps = r["throughput_tokens_per_s"], base["throughput_tokens_per_s"]
        ok = not (missing(tps) or missing(base_tps)) and base_tps > 0
        speedups.append(tps / base_tps if ok else None)
    out = frame.copy()
    out["baseline_run"] = pd.Series(runs, index=frame.index, dtype=object)
    out["delta_accuracy"] = pd.Series(deltas, index=frame.index, dtype=float)
    out["speedup"] = pd.Series(speedups, index=frame.index, dtype=float)
    return out
