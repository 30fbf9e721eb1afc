"""The runner's lossless check: references as run folders, per-sample identity, a forced mismatch."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from ssd.config import CacheMode, GSM8KConfig, ModelConfig, PSDConfig, RunConfig, SSDConfig, StepwiseConfig
from ssd.models.cache import BlockForward
from ssd.results.summary import first_difference
from ssd.run import run_job


def job(ckpt: Path, data: Path, out: Path, decoder, **extra) -> RunConfig:
    return RunConfig(
        model=ModelConfig(name="llada", path=str(ckpt)),
        decoder=decoder,
        benchmark=GSM8KConfig(num_fewshot=0, data_dir=str(data)),
        limit=4,
        output_dir=str(out),
        **extra,
    )


def samples(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "samples.jsonl").read_text().splitlines()]


def test_first_difference() -> None:
    assert first_difference([1, 2, 3], [1, 2, 3]) is None
    assert first_difference([1, 2, 3], [1, 5, 3]) == 1
    assert first_difference([1, 2], [1, 2, 3]) == 2


def test_ssd_is_checked_against_the_stepwise_run_folder(
    tiny_checkpoints: dict[str, Path], data_dir: Path, tmp_path: Path
) -> None:
    common = dict(gen_length=16, block_length=4, cache=CacheMode.dual)
    folder = run_job(job(tiny_checkpoints["llada"], data_dir, tmp_path, SSDConfig(**common, draft_length=3)))
    records = samples(folder)
    assert all(r["identical"] and r["first_diverging_position"] is None for r in records)
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["lossless_checked"] and summary["identical_rate"] == 1.0
    assert sum(int(k) * v for k, v in summary["accepted_histogram"].items()) == 16 * 4
    # the reference is an ordinary stepwise job: running it by name finds it done and reuses it
    runs = sorted(p.name for p in tmp_path.iterdir())
    assert len(runs) == 2 and any("-stepwise-" in r for r in runs)
    ref_folder = run_job(job(tiny_checkpoints["llada"], data_dir, tmp_path, StepwiseConfig(**common)))
    assert ref_folder.name in runs
    ref = {r["id"]: r for r in samples(ref_folder)}
    assert all(r["tokens"] == ref[r["id"]]["tokens"] for r in records)
    assert "lossless_checked" in json.loads((ref_folder / "summary.json").read_text())


def test_a_forced_verification_mismatch_is_caught_where_it_happens(
    tiny_checkpoints: dict[str, Path], data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Perturb the second candidate of every verification batch: SSD then accepts drafts stepwise would
    not have chosen, and the check must say so at the right position."""
    original = BlockForward.__call__

    def perturbed(self, states, rows=None):
        logits = original(self, states, rows)
        if states.shape[0] > 1:
            logits = logits.clone()
            logits[1] = torch.roll(logits[1], shifts=1, dims=-1)
        return logits

    monkeypatch.setattr(BlockForward, "__call__", perturbed)
    cfg = SSDConfig(gen_length=16, block_length=8, cache=CacheMode.none, draft_length=4)
    folder = run_job(job(tiny_checkpoints["llada"], data_dir, tmp_path, cfg))
    ref_folder = next(p for p in tmp_path.iterdir() if "-stepwise-" in p.name)
    ref = {r["id"]: r["tokens"] for r in samples(ref_folder)}
    records = samples(folder)
    for r in records:
        expected = next(
            (i for i, (a, b) in enumerate(zip(r["tokens"], ref[r["id"]], strict=True)) if a != b), None
        )
        assert r["first_diverging_position"] == expected
        assert r["identical"] == (expected is None)
    assert not all(r["identical"] for r in records), "the perturbation must change some output"
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["identical_rate"] == sum(r["identical"] for r in records) / len(records) < 1


def test_lossy_decoders_report_identity_too_and_the_check_can_be_turned_off(
    tiny_checkpoints: dict[str, Path], data_dir: Path, tmp_path: Path
) -> None:
    cfg = PSDConfig(gen_length=16, block_length=8, cache=CacheMode.dual, threshold=0.5, draft_length=3)
    summary = json.loads(
        (run_job(job(tiny_checkpoints["llada"], data_dir, tmp_path / "a", cfg)) / "summary.json").read_text()
    )
    assert summary["lossless_checked"] and 0 <= summary["identical_rate"] <= 1
    off = run_job(job(tiny_checkpoints["llada"], data_dir, tmp_path / "b", cfg, check_lossless=False))
    assert not json.loads((off / "summary.json").read_text())["lossless_checked"]
    assert len(list((tmp_path / "b").iterdir())) == 1  # no reference job was run


def test_diffuspec_is_checked_against_the_target_greedy_run(
    tiny_checkpoints: dict[str, Path], data_dir: Path, tmp_path: Path
) -> None:
    from ssd.config import DiffuSpecConfig
    from ssd.models.tiny import make_tiny_target

    target = make_tiny_target(tmp_path / "qwen2", seed=1)
    cfg = DiffuSpecConfig(gen_length=16, block_length=16, target_path=str(target), k_min=2, k_init=4, k_max=6)
    run = job(tiny_checkpoints["dream"], data_dir, tmp_path / "runs", cfg)
    run.model.name = "dream"
    folder = run_job(run)
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["lossless_checked"] and summary["identical_rate"] == 1.0
    assert any("-target_greedy-" in p.name for p in (tmp_path / "runs").iterdir())
    assert all("draft_lengths" in r["extra"] for r in samples(folder))
