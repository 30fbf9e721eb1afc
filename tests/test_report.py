"""Reports from run folders alone: tables, Pareto plots, published tables; pairing, determinism, errors."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from ssd.errors import SSDError
from ssd.report import load_runs, with_baselines
from ssd.report.tables import main as tables_main
from ssd.report.tables import write_tables
from ssd.results.runfolder import run_name

REPO = Path(__file__).resolve().parent.parent
ALGORITHMS = REPO / "docs" / "algorithms.md"
H100 = ("cuda:0", "NVIDIA H100 80GB HBM3")
CPU = ("cpu", "x86_64")
KNOBS = {
    "stepwise": {},
    "target_greedy": {"target_path": "tiny-qwen", "target_dtype": "auto"},
    "diffuspec": {"target_path": "tiny-qwen", "target_dtype": "auto", "beam": 3, "mix": 0.5},
    "fast_dllm": {"rule": "threshold", "threshold": 0.9, "factor": 1.0},
    "ssd": {"draft_length": 4},
    "psd": {"rule": "threshold", "threshold": 0.9, "factor": 1.0, "draft_length": 4},
}


def write_run(
    root: Path,
    decoder: str = "stepwise",
    *,
    model: str = "data/checkpoints/tiny-llada",
    arch: str = "llada",
    benchmark: str = "gsm8k",
    shots: int = 0,
    cache: str = "none",
    block: int = 8,
    gen: int = 32,
    sweep: str = "s1",
    device: tuple[str, str] = CPU,
    accuracy: float = 0.5,
    tps: float = 100.0,
    tpf: float = 1.0,
    identical: float | None = None,
    limit: int = 4,
    peak: int | None = None,
    peak_kind: str | None = None,
    complete: bool = True,
    bench: dict[str, Any] | None = None,
    **knobs: Any,
) -> Path:
    """A plausible run folder written by hand (config.yaml, samples.jsonl, summary.json) like the runner's."""
    config = {
        "model": {"name": arch, "path": model, "dtype": "auto", "device": "auto"},
        "decoder": {
            "name": decoder,
            "gen_length": gen,
            "block_length": block,
            "cache": cache,
            "temperature": 0.0,
            **KNOBS[decoder],
            **knobs,
        },
        "benchmark": {
            "name": benchmark,
            "num_fewshot": shots,
            "chat": True,
            "data_dir": "data",
            **(bench or {}),
        },
        "limit": limit,
        "check_lossless": None,
        "seed": 0,
        "output_dir": str(root),
        "sweep": sweep,
    }
    folder = root / run_name(config)
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    nfe = gen / tpf
    samples = [
        {"id": str(i), "correct": i < accuracy * limit, "generated_tokens": gen, "nfe": round(nfe)}
        for i in range(limit)
    ]
    (folder / "samples.jsonl").write_text("".join(json.dumps(s) + "\n" for s in samples), encoding="utf-8")
    if not complete:
        return folder
    summary: dict[str, Any] = {
        "run": folder.name,
        "config_hash": "0" * 64,
        "sweep": sweep,
        "n_samples": limit,
        "accuracy": accuracy,
        "throughput_tokens_per_s": tps,
        "tokens_per_forward": tpf,
        "mean_nfe": nfe,
        "mean_accepted": tpf,
        "accepted_histogram": {"1": 3, "2": 5},
    }
    if identical is None:
        summary["lossless_checked"] = False
    else:
        summary.update({"lossless_checked": True, "identical_rate": identical})
    if peak is not None:
        summary.update({"peak_memory_bytes": peak, "peak_memory_kind": peak_kind})
    summary["environment"] = {
        "hardware": {"device": device[0], "device_name": device[1]},
        "timestamp": "2026-01-01T00:00:00+00:00",
    }
    (folder / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return folder


def sweep_runs(root: Path) -> None:
    """A small realistic sweep: references, lossless and lossy decoders, two caches, one incomplete job."""
    write_run(root, "stepwise", tps=20.0, accuracy=0.5)
    write_run(root, "ssd", tps=50.0, tpf=2.4, identical=1.0, accuracy=0.5, draft_length=2)
    write_run(root, "ssd", tps=61.0, tpf=3.1, identical=1.0, accuracy=0.5, draft_length=4, peak=3 * 2**30)
    write_run(root, "fast_dllm", tps=80.0, tpf=3.5, identical=0.5, accuracy=0.25, threshold=0.7)
    write_run(root, "fast_dllm", tps=70.0, tpf=2.9, identical=0.75, accuracy=0.5)
    write_run(root, "fast_dllm", tps=75.0, tpf=3.0, identical=0.75, accuracy=0.5, rule="factor", factor=1.0)
    write_run(root, "psd", tps=90.0, tpf=4.0, identical=0.25, accuracy=0.25)
    write_run(root, "stepwise", cache="dual", tps=40.0, accuracy=0.75)
    write_run(
        root,
        "ssd",
        cache="dual",
        tps=100.0,
        tpf=2.5,
        identical=1.0,
        accuracy=0.75,
        peak=2**29,
        peak_kind="cpu",
    )
    write_run(root, "stepwise", model="data/checkpoints/tiny-dream", arch="dream", tps=25.0, accuracy=0.25)
    write_run(
        root, "ssd", model="data/checkpoints/tiny-dream", arch="dream", tps=80.0, tpf=3.3, identical=1.0
    )
    write_run(root, "target_greedy", block=32, tps=30.0, accuracy=0.5)
    write_run(root, "diffuspec", block=32, tps=60.0, tpf=5.0, identical=1.0, accuracy=0.5)
    write_run(root, "ssd", cache="prefix", complete=False)


def files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def row(frame: Any, **where: Any) -> dict[str, Any]:
    rows = [r for r in frame.to_dict("records") if all(r[k] == v for k, v in where.items())]
    assert len(rows) == 1, (where, len(rows))
    return rows[0]


# --- tables ------------------------------------------------------------------------------------------


def test_tables_regenerate_byte_identically_from_the_run_folders_alone(tmp_path: Path) -> None:
    sweep_runs(tmp_path / "runs")
    first = write_tables(load_runs(tmp_path / "runs"), tmp_path / "a")
    assert [p.name for p in first] == ["runs.md", "runs.tex", "runs.csv", "aup.csv"]
    write_tables(load_runs(tmp_path / "runs"), tmp_path / "b")
    shutil.copytree(tmp_path / "runs", tmp_path / "elsewhere" / "copy")  # another place, another listing
    write_tables(load_runs(tmp_path / "elsewhere" / "copy"), tmp_path / "c")
    assert files(tmp_path / "a") == files(tmp_path / "b") == files(tmp_path / "c")
    md = (tmp_path / "a" / "runs.md").read_text(encoding="utf-8")
    assert str(tmp_path) not in md and "2026" not in md
    assert "1 incomplete run folder (no summary.json yet) skipped." in md


def test_table_columns_rows_and_order(tmp_path: Path) -> None:
    sweep_runs(tmp_path)
    runs = load_runs(tmp_path)
    assert len(runs.frame) == 13 and runs.n_incomplete == 1
    write_tables(runs, tmp_path / "out")
    lines = (tmp_path / "out" / "runs.md").read_text(encoding="utf-8").splitlines()
    header = [c.strip() for c in lines[2].strip("|").split("|")]
    assert header == [
        "model",
        "benchmark",
        "decoder",
        "N",
        "block",
        "gen",
        "cache",
        "n",
        "accuracy %",
        "Δacc",
        "identical %",
        "NFE",
        "TPF",
        "tokens/s",
        "speedup",
        "paired speedup",
        "projected speedup on H100",
        "peak memory",
        "device",
        "sweep",
    ]
    runs_table = lines[4 : lines.index("", 4)]  # the AUP table follows it
    table = [[c.strip() for c in line.strip("|").split("|")] for line in runs_table if line.startswith("|")]
    decoders = [(r[0], r[2], r[6]) for r in table]
    assert decoders == [
        ("tiny-dream", "stepwise", "none"),
        ("tiny-dream", "ssd N=4", "none"),
        ("tiny-llada", "stepwise", "none"),
        ("tiny-llada", "fast_dllm τ=0.7", "none"),
        ("tiny-llada", "fast_dllm τ=0.9", "none"),
        ("tiny-llada", "fast_dllm f=1", "none"),
        ("tiny-llada", "ssd N=2", "none"),
        ("tiny-llada", "ssd N=4", "none"),
        ("tiny-llada", "psd τ=0.9 N=4", "none"),
        ("tiny-llada", "stepwise", "dual"),
        ("tiny-llada", "ssd N=4", "dual"),
        ("tiny-llada", "target_greedy", "none"),  # block 32: a setting of its own, reference first
        ("tiny-llada", "diffuspec", "none"),
    ]
    ssd4 = table[7]
    assert ssd4[1] == "gsm8k 0-shot" and ssd4[3] == "4" and ssd4[4:6] == ["8", "32"]
    assert ssd4[8:] == [
        "50.0",
        "+0.0",
        "100.0",
        "10.3",
        "3.10",
        "61.0",
        "3.05×",
        "n/a",  # paired speedup: not timed paired
        "n/a",  # these synthetic summaries record no rows per forward: nothing to project
        "3.0 GiB",
        "cpu (x86_64)",
        "s1",
    ]
    assert table[2][10] == "ref" and table[2][17] == "n/a"  # stepwise is the reference; no peak memory
    assert table[3][9] == "-25.0" and table[3][10] == "50.0"
    assert table[12][14] == "2.00×"  # diffuspec against target_greedy
    assert table[10][17] == "512.0 MiB RSS"  # a CPU's peak is the process's resident set
    tex = (tmp_path / "out" / "runs.tex").read_text(encoding="utf-8")
    assert r"fast\_dllm $\tau$=0.7" in tex and r"3.05$\times$" in tex and r"\bottomrule" in tex
    csv = (tmp_path / "out" / "runs.csv").read_text(encoding="utf-8").splitlines()
    assert len(csv) == 14 and csv[0].startswith("model,benchmark_name,benchmark_variant,shots,")
    assert ",ssd,N=4,,,,4,8,32,none," in csv[8]


def test_baselines_pair_within_sweep_device_and_setting(tmp_path: Path) -> None:
    """Each wrong pairing (other sweep, other device, other cache, other block) gives another number."""
    a, b, gpu = tmp_path / "a", tmp_path / "b", tmp_path / "gpu"
    write_run(a, "stepwise", sweep="a", tps=100.0, accuracy=0.5)
    write_run(a, "ssd", sweep="a", tps=300.0, accuracy=0.5, identical=1.0)
    write_run(a, "stepwise", sweep="a", cache="dual", tps=200.0, accuracy=0.75)
    write_run(a, "ssd", sweep="a", cache="dual", tps=400.0, accuracy=0.75, identical=1.0)
    write_run(a, "stepwise", sweep="a", block=16, tps=120.0, accuracy=0.25)
    write_run(a, "ssd", sweep="a", block=16, tps=480.0, accuracy=0.5, identical=0.75)
    write_run(b, "stepwise", sweep="b", tps=50.0, accuracy=0.25)  # the same configs, another sweep
    write_run(b, "ssd", sweep="b", tps=300.0, accuracy=0.5, identical=1.0)
    write_run(gpu, "stepwise", sweep="a", device=H100, tps=1000.0, accuracy=0.5)  # same sweep, a GPU
    write_run(gpu, "ssd", sweep="a", device=H100, tps=2500.0, accuracy=0.5, identical=1.0)
    write_run(gpu, "fast_dllm", sweep="a", device=H100, cache="prefix", tps=900.0)  # no stepwise prefix
    frame = with_baselines(load_runs([a, b, gpu]).frame)
    got = {
        (r["sweep"], r["device"], r["cache"], r["block_length"]): (r["speedup"], r["delta_accuracy"])
        for r in frame.to_dict("records")
        if r["decoder"] == "ssd"
    }
    assert got == {
        ("a", "cpu (x86_64)", "none", 8): (3.0, 0.0),
        ("a", "cpu (x86_64)", "dual", 8): (2.0, 0.0),
        ("a", "cpu (x86_64)", "none", 16): (4.0, 25.0),
        ("b", "cpu (x86_64)", "none", 8): (6.0, 25.0),
        ("a", "NVIDIA H100 80GB HBM3", "none", 8): (2.5, 0.0),
    }
    orphan = row(frame, decoder="fast_dllm")
    assert orphan["baseline_run"] is None
    assert orphan["speedup"] != orphan["speedup"] and orphan["delta_accuracy"] != orphan["delta_accuracy"]
    assert row(frame, decoder="stepwise", sweep="b")["speedup"] == 1.0
    write_tables(load_runs([a, b, gpu]), tmp_path / "out")
    md = (tmp_path / "out" / "runs.md").read_text(encoding="utf-8")
    assert "6.00×" in md and "+25.0" in md and "NVIDIA H100 80GB HBM3" in md
    assert re.search(r"fast_dllm τ=0.9 .*\| +n/a \| +n/a \| ", md)


def test_corrupt_summary_is_one_line_error_naming_the_file(tmp_path: Path, capsys: Any) -> None:
    write_run(tmp_path, "stepwise")
    broken = write_run(tmp_path, "ssd") / "summary.json"
    broken.write_text('{"accuracy": 0.5,', encoding="utf-8")
    with pytest.raises(SSDError) as e:
        load_runs(tmp_path)
    message = str(e.value)
    assert "\n" not in message and str(broken) in message
    assert "not valid JSON" in message and "delete it and rerun the same job" in message
    broken.write_text("[1, 2]", encoding="utf-8")
    with pytest.raises(SSDError, match="not a summary object"):
        load_runs(tmp_path)
    with pytest.raises(SystemExit) as exit_:
        tables_main(["--runs", str(tmp_path), "--out", str(tmp_path / "out")])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and str(broken) in err
    assert not (tmp_path / "out").exists()


def test_damaged_config_and_missing_runs_folder_are_one_line_errors(tmp_path: Path) -> None:
    folder = write_run(tmp_path, "stepwise")
    (folder / "config.yaml").write_text("model: [unclosed", encoding="utf-8")
    with pytest.raises(SSDError, match="config.yaml is not valid YAML"):
        load_runs(tmp_path)
    with pytest.raises(SSDError, match="is not a folder: run some jobs first"):
        load_runs(tmp_path / "nowhere")


def test_incomplete_folders_are_skipped_and_counted(tmp_path: Path, capsys: Any) -> None:
    write_run(tmp_path, "stepwise")
    write_run(tmp_path, "ssd", complete=False)
    write_run(tmp_path, "fast_dllm", complete=False)
    (tmp_path / "not-a-run").mkdir()  # no run files at all: not counted
    runs = load_runs(tmp_path)
    assert len(runs.frame) == 1 and runs.n_incomplete == 2
    assert runs.note() == "1 finished run, 2 incomplete run folders skipped (no summary.json yet)"
    tables_main(["--runs", str(tmp_path), "--out", str(tmp_path / "out")])
    assert "2 incomplete run folders skipped" in capsys.readouterr().out
    with pytest.raises(SSDError, match="no finished run folders"):
        write_tables(load_runs(tmp_path / "not-a-run"), tmp_path / "none")


def test_benchmark_labels_name_the_test_set_and_an_unusual_chat_setting(tmp_path: Path) -> None:
    write_run(tmp_path, "stepwise", benchmark="math", shots=4, bench={"subset": "math500"})
    write_run(tmp_path, "stepwise", benchmark="math", shots=4, bench={"subset": "full"})
    write_run(tmp_path, "stepwise", shots=5, bench={"variant": "gsm8k_cot", "chat": False})
    labels = sorted(load_runs(tmp_path).frame["benchmark"])
    assert labels == ["gsm8k_cot 5-shot, no chat", "math 4-shot", "math500 4-shot"]


def test_a_single_run_folder_can_be_read(tmp_path: Path) -> None:
    folder = write_run(tmp_path, "ssd", identical=1.0)
    assert list(load_runs(folder).frame["run"]) == [folder.name]


# --- real tiny runs ----------------------------------------------------------------------------------


def test_tables_from_real_tiny_runs(
    tiny_checkpoints: dict[str, Path], data_dir: Path, tmp_path: Path
) -> None:
    from ssd.config import GSM8KConfig, ModelConfig, RunConfig, SSDConfig
    from ssd.run import run_job

    cfg = RunConfig(
        model=ModelConfig(name="llada", path=str(tiny_checkpoints["llada"]), device="cpu"),
        decoder=SSDConfig(gen_length=16, block_length=8, cache="dual", draft_length=3),
        benchmark=GSM8KConfig(num_fewshot=0, data_dir=str(data_dir)),
        limit=2,
        output_dir=str(tmp_path / "runs"),
        sweep="tiny",
    )
    run_job(cfg)  # runs its stepwise reference first, into the same folder
    frame = with_baselines(load_runs(tmp_path / "runs").frame)
    assert list(frame["decoder_label"]) == ["stepwise", "ssd N=3"]
    ssd = row(frame, decoder="ssd")
    assert ssd["identical_rate"] == 1.0 and ssd["tokens_per_forward"] > 1
    assert ssd["baseline_run"] == row(frame, decoder="stepwise")["run"] and ssd["speedup"] > 0
    assert ssd["device"] == "cpu (" + ssd["device"].split("(", 1)[1]
    write_tables(load_runs(tmp_path / "runs"), tmp_path / "a")
    write_tables(load_runs(tmp_path / "runs"), tmp_path / "b")
    assert files(tmp_path / "a") == files(tmp_path / "b")
