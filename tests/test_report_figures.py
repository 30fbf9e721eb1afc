"""Reports derived from run folders: the Pareto plots and the published tables beside ours."""

from __future__ import annotations

import json
import re
from pathlib import Path

import matplotlib
import pytest

from ssd.cost import CostTable
from ssd.report import load_runs
from ssd.report.paper import match, write_paper
from ssd.report.plots import figure, pareto_front, point_labels, write_plots
from ssd.report.published import FAST_DLLM_TABLE1, FAST_DLLM_TABLE2, SSD_HEADLINES
from tests.test_report import ALGORITHMS, H100, files, sweep_runs, write_run

# --- plots -------------------------------------------------------------------------------------------


def test_pareto_front() -> None:
    points = [(1.0, 80.0), (2.0, 79.0), (3.0, 70.0), (2.5, 60.0), (0.5, 80.0), (3.0, 65.0)]
    assert pareto_front(points) == [0, 1, 2]
    assert pareto_front([(1.0, 0.0), (2.0, 0.0)]) == [1]


def test_point_labels_show_the_knob_and_what_varies_in_the_panel(tmp_path: Path) -> None:
    write_run(tmp_path, "stepwise", cache="none")
    write_run(tmp_path, "stepwise", cache="dual")
    write_run(tmp_path, "ssd", cache="dual", draft_length=3)
    labels = point_labels(load_runs(tmp_path).frame)
    assert labels == ["no cache", "dual", "N=3, dual"]


def test_plots_regenerate_byte_identically(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    sweep_runs(tmp_path / "runs")
    first = write_plots(load_runs(tmp_path / "runs"), tmp_path / "a")
    # these runs recorded no rows per forward: nothing to price, and the projected plot says so
    assert [p.name for p in first] == ["pareto_throughput.png", "pareto_tpf.png", "aup_tpf.png"]
    assert "pareto_projected_speedup.png not written: no finished run has both" in capsys.readouterr().out
    with matplotlib.rc_context({"font.size": 20, "lines.linewidth": 4, "savefig.dpi": 50}):  # user settings
        write_plots(load_runs(tmp_path / "runs"), tmp_path / "b")
    a, b = files(tmp_path / "a"), files(tmp_path / "b")
    assert a == b
    for png in a.values():
        assert png.startswith(b"\x89PNG") and b"Software" not in png and b"matplotlib" not in png


def test_the_projected_speedup_plot_is_labelled_a_projection_and_names_its_device(tmp_path: Path) -> None:
    cost = {"device": "X1", "model_shape": "m", "block_length": 8, "refresh_ms": 30.0}
    cost["rows_ms"] = {"1": 10.0, "5": 12.0}
    (tmp_path / "x1.json").write_text(json.dumps(cost))
    for decoder, identical in (("stepwise", None), ("ssd", 1.0)):
        write_run(
            tmp_path / "runs", decoder, cache="dual", gen=24, block=8, accuracy=1.0, identical=identical
        )
    frame = load_runs(tmp_path / "runs").frame
    # 4 samples, 3 blocks: 12 refreshes; stepwise 84 one-row forwards more, SSD 12 of 5 rows
    frame["forward_rows_histogram"] = ['{"1": 96}', '{"1": 12, "5": 12}']
    frame["total_generated_tokens"] = 96.0
    fig = figure(frame, "projected_speedup", CostTable.load(tmp_path / "x1.json"))
    title = fig._suptitle.get_text()
    subtitle = " ".join(t.get_text() for t in fig.texts)
    assert title == "Accuracy vs PROJECTED speedup on X1" and "a projection, not a measurement" in subtitle
    assert "results/forward_cost/x1.json" in subtitle
    ax = fig.axes[0]
    assert ax.get_xlabel() == "projected speedup over stepwise on X1 (a projection)"
    points = {tuple(map(float, xy)) for c in ax.collections for xy in c.get_offsets()}
    # stepwise 12·30 + 84·10 = 1200 ms, SSD 12·30 + 12·12 = 504 ms: 2.381×
    assert (1.0, 100.0) in points and any(abs(x - 1200 / 504) < 1e-9 and y == 100.0 for x, y in points)
    written = write_plots(
        load_runs(tmp_path / "runs"), tmp_path / "plots", CostTable.load(tmp_path / "x1.json")
    )
    assert "pareto_projected_speedup.png" not in [p.name for p in written]  # no rows recorded on disk


# --- published tables --------------------------------------------------------------------------------


def published_lines() -> dict[str, str]:
    text = ALGORITHMS.read_text(encoding="utf-8")
    return {m[1]: m[2] for m in re.finditer(r"^- (GSM8K|MATH|HumanEval|MBPP) \d-shot, (.*)$", text, re.M)}


def test_published_numbers_match_the_reference_transcription() -> None:
    names = {"GSM8K": "gsm8k", "MATH": "math", "HumanEval": "humaneval", "MBPP": "mbpp"}
    checked = 0
    for label, line in published_lines().items():
        for gen, cells in re.findall(r"(256|512): ([\d./| ]+?)(?: ;|$)", line):
            checked += 1
            numbers = tuple(tuple(map(float, c.strip().split("/"))) for c in cells.split("|"))
            (key,) = [k for k in FAST_DLLM_TABLE1.rows if k[0] == names[label] and k[2] == int(gen)]
            assert FAST_DLLM_TABLE1.rows[key] == numbers, (label, gen)
    assert checked == len(FAST_DLLM_TABLE1.rows) == 8
    text = ALGORITHMS.read_text(encoding="utf-8")
    table2 = text[text.index("Table 2, Dream-v0-Base-7B") :].split("\nLLaDA EVAL.md")[0]
    found = re.findall(
        r"(GSM8K|MATH|HumanEval|MBPP)? ?(256|512) (\d+\.\d)/(\d+\.\d) → (\d+\.\d)/(\d+\.\d)", table2
    )
    assert len(found) == 8
    bench = None
    for name, gen, *nums in found:
        bench = names[name] if name else bench
        (key,) = [k for k in FAST_DLLM_TABLE2.rows if k[0] == bench and k[2] == int(gen)]
        a, b, c, d = map(float, nums)
        assert FAST_DLLM_TABLE2.rows[key] == ((a, b), (c, d))
    assert "3.46×" in text and SSD_HEADLINES[0].speedup == 3.46


def test_paper_tables_put_matching_runs_beside_the_paper(tmp_path: Path) -> None:
    llada = "GSAI-ML/LLaDA-8B-Instruct"
    common = {"model": llada, "shots": 5, "gen": 256, "block": 32, "device": H100}
    write_run(tmp_path, "stepwise", tps=20.0, accuracy=0.78, limit=8, **common)
    write_run(tmp_path, "stepwise", tps=99.0, accuracy=0.10, limit=2, **common)  # fewer samples: not used
    write_run(tmp_path, "fast_dllm", cache="prefix", tps=160.0, accuracy=0.77, limit=8, **common)
    write_run(tmp_path, "fast_dllm", cache="prefix", tps=1.0, threshold=0.8, **common)  # another tau
    write_run(tmp_path, "stepwise", tps=5.0, accuracy=0.7, **{**common, "shots": 4})  # other shots
    math = {**common, "benchmark": "math", "shots": 4}
    write_run(tmp_path, "stepwise", tps=5.0, accuracy=0.7, bench={"subset": "math500"}, **math)  # a subset
    write_run(tmp_path, "stepwise", model="data/checkpoints/tiny-llada", shots=5, gen=256, block=32)
    write_run(tmp_path, "stepwise", model="Dream-org/Dream-v0-Instruct-7B", arch="dream", tps=10.0)
    write_run(tmp_path, "ssd", model="Dream-org/Dream-v0-Instruct-7B", arch="dream", tps=25.0, identical=1.0)
    frame = load_runs(tmp_path).frame
    setting = FAST_DLLM_TABLE1.settings[3]
    found = match(frame, "LLaDA-8B-Instruct", "gsm8k", 5, 256, 32, setting)
    assert found is not None and found["throughput_tokens_per_s"] == 160.0
    assert match(frame, "LLaDA-8B-Instruct", "gsm8k", 5, 512, 32, setting) is None
    paths = write_paper(load_runs(tmp_path), tmp_path / "out")
    assert [p.name for p in paths] == [
        "paper_fast_dllm_table1.md",
        "paper_fast_dllm_table2.md",
        "paper_ssd_headline.md",
        "paper_aup_leaderboard.md",
    ]
    table1 = paths[0].read_text(encoding="utf-8").splitlines()
    split = [[c.strip() for c in line.strip("|").split("|")] for line in table1 if line.startswith("| ")]
    cells = {tuple(c[:3]): c for c in split[1:]}
    assert cells[("GSM8K 5-shot", "256", "LLaDA")][3:] == [
        "79.3",
        "78.0",
        "6.7",
        "20.0",
        "1.00×",
        "1.00×",
        "8",
        "NVIDIA H100 80GB HBM3",
    ]
    assert cells[("GSM8K 5-shot", "256", "Fast-dLLM")][3:9] == [
        "78.5",
        "77.0",
        "54.4",
        "160.0",
        "8.12×",
        "8.00×",
    ]
    assert cells[("GSM8K 5-shot", "256", "+Cache")][4] == "not run"
    assert cells[("GSM8K 5-shot", "512", "LLaDA")][4] == "not run"
    assert all(c[4] == "not run" for k, c in cells.items() if k[0].startswith("MATH"))  # MATH is 4-shot...
    table2 = paths[1].read_text(encoding="utf-8")
    assert "not run" in table2 and re.search(r"\| +74\.8 \|", table2)
    headline = paths[2].read_text(encoding="utf-8")
    dream = next(line for line in headline.splitlines() if line.startswith("| Dream"))
    assert "up to 3.46× over stepwise" in dream and "2.50×" in dream and "ssd N=4" in dream
    assert "not run" in next(line for line in headline.splitlines() if line.startswith("| LLaDA"))
    again = write_paper(load_runs(tmp_path), tmp_path / "again")
    assert [p.read_bytes() for p in paths] == [p.read_bytes() for p in again]
