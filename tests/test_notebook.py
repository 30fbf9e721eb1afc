"""notebooks/compare_sweeps.ipynb executes against run folders picked by environment variables."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ssd.errors import SSDError
from ssd.report import load_runs, with_baselines
from ssd.report.compare import compare_sweeps, pick_sweeps
from tests.helpers import NOTEBOOK, execute_notebook
from tests.test_report import H100, write_run

nbformat = pytest.importorskip("nbformat")
pytest.importorskip("nbclient")  # what execute_notebook runs the notebook with


def two_sweeps(root: Path) -> tuple[Path, Path]:
    """Sweep "cpu" on a CPU and sweep "gpu" on an H100, the same settings, in two folders."""
    cpu, gpu = root / "cpu", root / "gpu"
    for folder, label, device, scale in ((cpu, "cpu", ("cpu", "x86_64"), 1.0), (gpu, "gpu", H100, 20.0)):
        write_run(folder, "stepwise", sweep=label, device=device, tps=10.0 * scale, accuracy=0.5)
        write_run(folder, "ssd", sweep=label, device=device, tps=25.0 * scale, tpf=2.5, identical=1.0)
        write_run(folder, "fast_dllm", sweep=label, device=device, tps=30.0 * scale, tpf=3.0, accuracy=0.25)
    write_run(gpu, "ssd", sweep="gpu", device=H100, tps=600.0, tpf=3.0, identical=1.0, draft_length=6)
    return cpu, gpu


def cell_output(nb: Any, source_start: str) -> str:
    """The text/html or text/plain result of the code cell whose source starts so."""
    (cell,) = [c for c in nb.cells if c.cell_type == "code" and c.source.startswith(source_start)]
    data = next(o for o in cell.outputs if o.output_type == "execute_result")["data"]
    return str(data.get("text/html") if "Styler" in data["text/plain"] else data["text/plain"])


def outputs(nb: Any) -> str:
    texts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            texts.append(out.get("text", ""))
            texts.append(str(out.get("data", {}).get("text/plain", "")))
            texts.append(str(out.get("data", {}).get("text/html", "")))
    return "\n".join(texts)


def test_notebook_is_stored_without_outputs() -> None:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    assert all(
        not c.get("outputs") and c.get("execution_count") is None for c in nb.cells if c.cell_type == "code"
    )


def test_notebook_compares_two_sweeps_of_one_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    everything = tmp_path / "all"
    everything.mkdir()
    for folder in two_sweeps(tmp_path):  # one folder holding both sweeps, as results/runs would
        for run in folder.iterdir():
            run.rename(everything / f"{folder.name}-{run.name}")
    nb = execute_notebook(monkeypatch, SSD_RUNS=str(everything), SSD_SWEEP_A="cpu", SSD_SWEEP_B="gpu")
    text = outputs(nb)
    assert "comparing cpu (3 runs) with gpu (4 runs)" in text
    table = cell_output(nb, "table = compare_sweeps")
    assert "ssd N=4" in table and "ssd N=6" not in table  # only the settings run in both
    per_decoder = cell_output(nb, "per_decoder = ").splitlines()
    assert per_decoder[0].split() == ["tokens/s", "ratio", "Δaccuracy", "(points)"]
    ratios = {line.split()[0]: line.split()[1:] for line in per_decoder[2:]}
    assert ratios == {"fast_dllm": ["20.0", "0.0"], "ssd": ["20.0", "0.0"], "stepwise": ["20.0", "0.0"]}
    pngs = [o for c in nb.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(pngs) == 2


def test_notebook_compares_two_folders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cpu, gpu = two_sweeps(tmp_path)
    nb = execute_notebook(monkeypatch, SSD_RUNS_A=str(cpu), SSD_RUNS_B=str(gpu))
    assert "comparing cpu (3 runs) with gpu (4 runs)" in outputs(nb)


def test_compare_sweeps_pairs_settings_and_keeps_each_sides_speedup(tmp_path: Path) -> None:
    cpu, gpu = two_sweeps(tmp_path)
    frame = with_baselines(load_runs([cpu, gpu]).frame)
    assert pick_sweeps(frame) == ("cpu", "gpu")
    assert pick_sweeps(frame, b="cpu") == ("gpu", "cpu")
    with pytest.raises(SSDError, match="did you mean 'gpu'"):
        pick_sweeps(frame, "gpx")
    with pytest.raises(SSDError, match="need two different sweeps"):
        pick_sweeps(frame[frame["sweep"] == "cpu"])
    a, b = frame[frame["sweep"] == "cpu"], frame[frame["sweep"] == "gpu"]
    table = compare_sweeps(a, b, ("cpu", "gpu"))
    assert list(table["decoder"]) == ["stepwise", "fast_dllm τ=0.9", "ssd N=4"]
    assert list(table["tokens/s ratio"]) == [20.0, 20.0, 20.0]
    assert list(table["speedup [cpu]"]) == list(table["speedup [gpu]"]) == [1.0, 3.0, 2.5]
    assert list(table["device [gpu]"]) == ["NVIDIA H100 80GB HBM3"] * 3


def test_notebook_shows_one_sweep_and_leaves_adhoc_runs_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cpu, _ = two_sweeps(tmp_path)
    write_run(cpu, "stepwise", sweep="adhoc", model="elsewhere/other", tps=1.0)  # an unrelated ad-hoc run
    nb = execute_notebook(monkeypatch, SSD_RUNS=str(cpu))
    text = outputs(nb)
    assert "one sweep, cpu (3 runs)" in text and "not shown: sweeps adhoc" in text
    assert "other" not in cell_output(nb, "table = compare_sweeps")
    speedups = {
        line.split()[0]: line.split()[1] for line in cell_output(nb, "per_decoder = ").splitlines()[2:]
    }
    assert speedups == {"fast_dllm": "3.0", "ssd": "2.5", "stepwise": "1.0"}


def test_notebook_says_when_two_sweeps_share_no_setting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_run(tmp_path, "stepwise", sweep="a", tps=10.0)
    write_run(tmp_path, "stepwise", sweep="b", tps=10.0, model="elsewhere/other")
    nb = execute_notebook(monkeypatch, SSD_RUNS=str(tmp_path))
    assert "a and b share no setting" in outputs(nb)


def test_notebook_runs_right_after_a_fresh_sweep(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The default sweep's model and benchmark, a few arms and samples, through the real command line."""
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parent.parent
    runs = tmp_path / "runs"
    command = [
        sys.executable,
        "-m",
        "ssd.run",
        "-m",
        "+experiment=default",
        "+experiment/arith=stepwise,ssd_n4,fast_dllm_t07",
        "model=arith_llada",  # one of the sweep's two models (the command line narrows its grid)
        "limit=3",
        f"output_dir={runs}",
        f"hydra.sweep.dir={tmp_path / 'hydra'}",
    ]
    env = {**os.environ, "PYTHONPATH": str(root), "OMP_NUM_THREADS": "1"}
    subprocess.run(command, cwd=root, env=env, check=True, capture_output=True, timeout=300)
    nb = execute_notebook(monkeypatch, SSD_RUNS=str(runs))
    assert "one sweep, default (3 runs)" in outputs(nb)
    assert "ssd N=4" in cell_output(nb, "table = compare_sweeps")
