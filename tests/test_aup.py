"""AUP (d3LLM's accuracy under parallelism): the definition on hand-computed cases, the decoder families,
the tables and plots that carry it, and the published leaderboard's transcription and rendering."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ssd.report import load_runs
from ssd.report.aup import aup, families, family, kept, weight, with_families
from ssd.report.leaderboard import render_leaderboard
from ssd.report.published import LEADERBOARD
from ssd.report.tables import render
from tests.test_report import ALGORITHMS, H100, write_run

# --- the definition, by hand ----------------------------------------------------------------------------


def test_a_single_point_scores_tpf_times_accuracy_unweighted() -> None:
    assert aup([(2.0, 80.0)], y_max=90.0) == pytest.approx(160.0)  # ρ₁·y₁: no W on the first term


def test_points_at_the_best_accuracy_are_the_plain_area() -> None:
    # 1·80 + ½·2·(80 + 80), W = 1 at y_max
    assert aup([(3.0, 80.0), (1.0, 80.0)], y_max=80.0) == pytest.approx(240.0)


def test_accuracy_below_the_best_is_discounted() -> None:
    # W(70) = exp(−3·(1 − 70/80)) = exp(−0.375) = 0.687289; W(76) = exp(−0.15) = 0.860708
    assert weight(70.0, 80.0) == pytest.approx(0.687289, abs=1e-6)
    assert weight(80.0, 80.0) == 1.0 and weight(85.0, 80.0) == 1.0  # capped at 1
    # 80 + ½·1·(76·0.860708 + 80·1) = 152.7069
    assert aup([(1.0, 80.0), (2.0, 76.0)], y_max=80.0) == pytest.approx(152.7069, abs=1e-4)
    # y_max 90: both weighted, the first term still not: 80 + ½·(76·W(76) + 80·W(80)), W(76) = exp(−0.4667)
    # = 0.627089, W(80) = exp(−1/3) = 0.716531: 80 + ½·(47.6588 + 57.3225) = 132.4907
    assert aup([(1.0, 80.0), (2.0, 76.0)], y_max=90.0) == pytest.approx(132.4907, abs=1e-4)


def test_points_more_than_five_below_the_first_are_cut_wherever_they_are() -> None:
    points = [(4.0, 78.0), (3.0, 74.0), (1.0, 80.0), (2.0, 76.0)]
    assert kept(points) == [(1.0, 80.0), (2.0, 76.0), (4.0, 78.0)]  # 74 < 80 − 5; 78 after it stays
    assert kept([(1.0, 80.0), (2.0, 75.0)]) == [(1.0, 80.0), (2.0, 75.0)]  # exactly y₁ − 5 is kept
    # W(76) = exp(−0.15) = 0.860708, W(78) = exp(−0.075) = 0.927743:
    # 80 + ½·1·(76·0.860708 + 80) + ½·2·(78·0.927743 + 76·0.860708) = 290.4847
    assert aup(points, y_max=80.0) == pytest.approx(290.4847, abs=1e-4)


def test_y1_is_the_accuracy_at_the_smallest_tpf_not_the_best() -> None:
    # y₁ = 60 at ρ 1, so 90 at ρ 2 is kept and 54 at ρ 3 is cut (< 55)
    assert kept([(2.0, 90.0), (1.0, 60.0), (3.0, 54.0)]) == [(1.0, 60.0), (2.0, 90.0)]


def test_a_published_method_by_hand() -> None:
    # d3LLM-LLaDA on GSM8K-CoT, y_max 74.98 (D2F): W(74.02) = 0.962318, W(73.09) = 0.927169;
    # 74.02 + ½·8.11·(73.09·0.927169 + 74.02·0.962318) = 637.655
    task = next(t for t in LEADERBOARD if (t.family, t.task) == ("llada", "GSM8K-CoT"))
    y_max = max(y for points in task.methods.values() for _, y in points)
    assert y_max == 74.98
    assert aup(task.methods["d3LLM-LLaDA"], y_max) == pytest.approx(637.655, abs=0.01)


# --- families ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("run", "name"),
    [
        ({"decoder": "stepwise"}, "stepwise"),
        ({"decoder": "fast_dllm", "rule": "threshold"}, "Fast-dLLM"),
        ({"decoder": "fast_dllm", "rule": "factor"}, "Fast-dLLM (factor)"),
        ({"decoder": "ssd", "policy": None}, "SSD"),
        ({"decoder": "ssd", "policy": "stepwise"}, "SSD"),
        ({"decoder": "ssd", "policy": "fast_dllm", "rule": "threshold"}, "speculative Fast-dLLM"),
        ({"decoder": "ssd", "policy": "fast_dllm", "rule": "factor"}, "speculative Fast-dLLM (factor)"),
        ({"decoder": "psd", "rule": "threshold"}, "PSD"),
        ({"decoder": "diffuspec"}, "DiffuSpec"),
        ({"decoder": "target_greedy"}, "target_greedy (AR)"),
        ({"decoder": "newdec"}, "newdec"),
    ],
)
def test_family_rule(run: dict, name: str) -> None:
    assert family(run) == name


def test_runs_group_into_families_per_setting(tmp_path: Path) -> None:
    for tau, acc, tpf in ((0.9, 0.95, 3.0), (0.7, 0.85, 3.3), (0.5, 0.70, 3.5)):
        write_run(tmp_path, "fast_dllm", threshold=tau, accuracy=acc, tpf=tpf, limit=20)
    write_run(tmp_path, "stepwise", accuracy=1.0, tpf=1.0, limit=20)
    write_run(tmp_path, "ssd", draft_length=2, accuracy=1.0, tpf=1.5, limit=20)
    write_run(tmp_path, "ssd", draft_length=4, accuracy=1.0, tpf=2.0, limit=20)
    spec = {"policy": "fast_dllm", "rule": "threshold", "threshold": 0.9, "factor": 1.0}
    write_run(tmp_path, "ssd", accuracy=0.95, tpf=4.5, limit=20, **spec)
    write_run(tmp_path, "ssd", cache="dual", draft_length=4, accuracy=0.5, tpf=2.0, limit=20)  # other setting
    frame = load_runs(tmp_path).frame
    table = families(frame)
    got = {(r["cache"], r["family"]): r for r in table.to_dict("records")}
    assert set(got) == {
        ("none", "stepwise"),
        ("none", "Fast-dLLM"),
        ("none", "SSD"),
        ("none", "speculative Fast-dLLM"),
        ("dual", "SSD"),
    }
    # every family starts at the setting's stepwise run, (1.0, 100): y₁ = 100, so a point below 95 is cut
    fast = got["none", "Fast-dLLM"]
    assert (fast["runs"], fast["anchor"], fast["points"], fast["kept"]) == (3, "stepwise", 4, 2)
    assert (fast["y1"], fast["y_max"], fast["tpf_lo"], fast["tpf_hi"]) == (100.0, 100.0, 1.0, 3.0)
    # τ 0.7 (85) and 0.5 (70) cut; 100 + ½·2·(95·W(95) + 100), W(95) = exp(−0.15) = 0.860708: 281.7673
    assert fast["aup"] == pytest.approx(281.7673, abs=1e-4)
    ssd = got["none", "SSD"]  # 1·100 + ½·0.5·(100 + 100) + ½·0.5·(100 + 100) = 100 + 50 + 50
    assert (ssd["runs"], ssd["points"], ssd["aup"]) == (2, 3, pytest.approx(200.0))
    spec = got["none", "speculative Fast-dLLM"]  # 100 + ½·3.5·(95·0.860708 + 100) = 418.0927
    assert spec["aup"] == pytest.approx(418.0927, abs=1e-4)
    step = got["none", "stepwise"]
    assert (step["anchor"], step["points"], step["aup"]) == ("itself", 1, pytest.approx(100.0))
    dual = got["dual", "SSD"]  # no stepwise run in that setting: its own point alone, 2·50
    assert (dual["anchor"], dual["y_max"], dual["aup"]) == ("none", 50.0, pytest.approx(100.0))
    rows = with_families(frame)
    fast_rows = rows[rows["family"] == "Fast-dLLM"]
    assert sorted(fast_rows["aup_kept"]) == [False, False, True]
    assert list(fast_rows["family_aup"]) == [pytest.approx(281.7673, abs=1e-4)] * 3
    spec_row = rows[rows["family"] == "speculative Fast-dLLM"].iloc[0]
    assert (spec_row["policy"], spec_row["rule"], spec_row["threshold"]) == ("fast_dllm", "threshold", 0.9)
    assert "τ=0.9" in spec_row["decoder_label"]


def test_tables_carry_each_familys_aup(tmp_path: Path) -> None:
    write_run(tmp_path / "runs", "stepwise", accuracy=1.0, tpf=1.0, limit=20)
    write_run(tmp_path / "runs", "fast_dllm", accuracy=0.95, tpf=3.0, limit=20)
    files = render(load_runs(tmp_path / "runs"))
    md = files["runs.md"]
    section = md[md.index("## AUP by decoder family") :]
    fast = next(line for line in section.splitlines() if "| Fast-dLLM" in line)
    assert re.search(r"\| +281\.8 \|$", fast)  # from stepwise's (1, 100): 100 + ½·2·(95·W(95) + 100)
    assert "% AUP by decoder family" in files["runs.tex"] and "Fast-dLLM" in files["runs.tex"]
    header = files["runs.csv"].splitlines()[0].split(",")
    at = header.index("family")
    assert header[at - 2 : at + 3] == ["projected_speedup", "projection", "family", "family_aup", "aup_kept"]
    aup_csv = files["aup.csv"].splitlines()
    assert aup_csv[0].endswith("family,runs,anchor,points,kept,tpf_lo,tpf_hi,y1,y_max,aup")
    fast_csv = next(line for line in aup_csv if ",Fast-dLLM," in line)
    assert (
        fast_csv.startswith("tiny-llada,")
        and ",Fast-dLLM,1,stepwise,2,2,1.0,3.0,100.0,100.0,281.76" in fast_csv
    )


# --- the published leaderboard ----------------------------------------------------------------------------


def documented_points() -> dict[tuple[str, str], dict[str, tuple[tuple[float, float], ...]]]:
    """docs/algorithms.md's leaderboard lines: `- LLaDA, GSM8K-CoT: Method (1.0, 74.1) (…); Method …`."""
    text = ALGORITHMS.read_text(encoding="utf-8")
    out = {}
    for fam, task, body in re.findall(r"^- (LLaDA|Dream), ([\w-]+): (.*)$", text, re.M):
        methods = {}
        for entry in body.rstrip(".").split("; "):
            name, points = re.match(r"(\S+) (.*)$", entry).groups()
            methods[name] = tuple(tuple(map(float, p)) for p in re.findall(r"\(([\d.]+), ([\d.]+)\)", points))
        out[fam.lower(), task] = methods
    return out


def test_the_leaderboard_is_transcribed_whole() -> None:
    tasks = {(t.family, t.task): t for t in LEADERBOARD}
    assert len(tasks) == len(LEADERBOARD) == 10
    expected = ["GSM8K-CoT", "MATH", "MBPP", "HumanEval", "Long-GSM8K"]
    assert [t.task for t in LEADERBOARD if t.family == "llada"] == expected
    dream = ["GSM8K-CoT", "MATH", "MBPP-Instruct", "HumanEval-Instruct", "Long-GSM8K"]
    assert [t.task for t in LEADERBOARD if t.family == "dream"] == dream
    assert all(len(t.methods) == (6 if t.family == "llada" else 7) for t in LEADERBOARD)
    assert sum(len(p) for t in LEADERBOARD for p in t.methods.values()) == 110
    # a few entries, as d3LLM's data files give them
    assert tasks["llada", "GSM8K-CoT"].methods["d3LLM-LLaDA"] == ((1.0, 74.02), (9.11, 73.09))
    assert tasks["llada", "HumanEval"].methods["D2F"] == ((1.0, 41.02), (2.69, 40.64))
    assert tasks["dream", "MATH"].methods["Fast-dLLM-v2-7B"] == ((1.0, 49.92), (2.61, 48.74))
    assert tasks["dream", "HumanEval-Instruct"].methods["EAGLE-3"] == ((1.0, 67.58), (5.98, 67.58))
    assert tasks["dream", "Long-GSM8K"].methods["Dream"] == ((1.0, 78.95),)
    assert all(points[0][0] == 1.0 for t in LEADERBOARD for points in t.methods.values())
    assert documented_points() == {key: t.methods for key, t in tasks.items()}  # and the docs say the same


def cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def test_paper_renders_the_leaderboard_with_our_matching_runs(tmp_path: Path) -> None:
    llada = "GSAI-ML/LLaDA-8B-Instruct"
    common = {"model": llada, "benchmark": "gsm8k", "bench": {"variant": "gsm8k_cot"}, "shots": 8}
    common |= {"gen": 256, "block": 32, "device": H100, "limit": 20}
    write_run(tmp_path, "stepwise", accuracy=0.75, tpf=1.0, **common)
    write_run(tmp_path, "fast_dllm", accuracy=0.75, tpf=3.0, **common)
    write_run(tmp_path, "fast_dllm", accuracy=0.95, tpf=2.0, model="data/checkpoints/tiny-llada")  # tiny
    text = render_leaderboard(load_runs(tmp_path).frame)
    llada_part = text[text.index("## LLaDA") : text.index("## Dream")]
    gsm = llada_part[llada_part.index("### GSM8K-CoT") : llada_part.index("### MATH")]
    assert "(y_max 75.00%, set by one of our runs)" in gsm  # 75 > D2F's 74.98
    ours = [line for line in gsm.splitlines() if line.startswith("| ours")]
    assert len(ours) == 2 and all("gsm8k_cot 8-shot, none cache, block 32, gen 256" in line for line in ours)
    fast = next(line for line in ours if "ours: Fast-dLLM" in line)
    # from stepwise's (1, 75): 75 + ½·2·(75 + 75) = 225
    assert (
        "; from stepwise" in fast
        and "(1.00, 75.00) (3.00, 75.00)" in fast
        and re.search(r"\| +225\.0 \|$", fast)
    )
    d3 = next(cells(line) for line in gsm.splitlines() if line.startswith("| d3LLM-LLaDA"))
    assert d3[-1] != "637.7"  # y_max moved to ours: the published weights change
    math = llada_part[llada_part.index("### MATH") : llada_part.index("### MBPP")]
    assert (
        "(y_max 41.15%)" in math and "not run (no greedy run of LLaDA-8B-Instruct on math or math500)" in math
    )
    d3_math = next(cells(line) for line in math.splitlines() if line.startswith("| d3LLM-LLaDA"))
    assert d3_math == ["d3LLM-LLaDA", "published", "(1.00, 32.76) (5.74, 30.36)", "2/2", "107.6"]
    long = text[text.rindex("### Long-GSM8K") :]
    assert "not run (no benchmark here stands for it)" in long
    summary = text[text.index("## Dream") :].split("###")[0]
    assert "| d3LLM-Dream" in summary and "mean" in summary
