"""Shards: deterministic slices of a benchmark, merged back into one result; batch_size in the runner."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from ssd.config import CacheMode, GSM8KConfig, ModelConfig, RunConfig, SSDConfig, parse_shard
from ssd.errors import SSDError
from ssd.report.runs import load_runs
from ssd.run import run_job

COLUMNS = ["accuracy", "identical_rate", "mean_nfe", "tokens_per_forward", "n_samples"]


def job(ckpt: Path, data: Path, out: Path, **extra) -> RunConfig:
    return RunConfig(
        model=ModelConfig(name="llada", path=str(ckpt)),
        decoder=SSDConfig(gen_length=8, block_length=4, cache=CacheMode.dual, draft_length=3),
        benchmark=GSM8KConfig(num_fewshot=0, data_dir=str(data)),
        limit=4,  # the first 4 GSM8K prompts fit the tiny checkpoints' 512 positions
        output_dir=str(out),
        **extra,
    )


def records(folder: Path) -> dict[str, dict]:
    lines = (folder / "samples.jsonl").read_text().splitlines()
    return {r["id"]: r for r in map(json.loads, lines)}


def test_parse_shard() -> None:
    assert parse_shard(None) is None and parse_shard("2/4") == (2, 4)
    for bad in ("4/4", "a/b", "-1/3", "1"):
        with pytest.raises(SSDError, match="is not 'i/n'"):
            parse_shard(bad)


def test_four_shards_merge_into_the_unsharded_result(
    tiny_checkpoints: dict[str, Path], data_dir: Path, tmp_path: Path
) -> None:
    whole = run_job(job(tiny_checkpoints["llada"], data_dir, tmp_path / "whole"))
    shards = [
        run_job(job(tiny_checkpoints["llada"], data_dir, tmp_path / "sharded", shard=f"{i}/4"))
        for i in range(4)
    ]
    ids = [set(records(s)) for s in shards]
    assert set().union(*ids) == set(records(whole)) and sum(map(len, ids)) == 4  # disjoint and complete
    by_id = records(whole)
    for s in shards:  # each sample decoded in a shard gives what it gives in the whole job
        for sample_id, r in records(s).items():
            assert r["tokens"] == by_id[sample_id]["tokens"] and r["seed"] == by_id[sample_id]["seed"]
    merged = load_runs(tmp_path / "sharded").frame
    alone = load_runs(tmp_path / "whole").frame
    ssd_rows = lambda f: f[f["decoder"] == "ssd"][COLUMNS].reset_index(drop=True)  # noqa: E731
    assert len(ssd_rows(merged)) == 1
    assert ssd_rows(merged).equals(ssd_rows(alone))

    # an incomplete set is refused, naming what is missing
    broken = tmp_path / "broken"
    shutil.copytree(tmp_path / "sharded", broken)
    shutil.rmtree(
        next(
            p
            for p in broken.iterdir()
            if yaml.safe_load((p / "config.yaml").read_text())["shard"] == "2/4" and "-ssd-" in p.name
        )
    )
    with pytest.raises(SSDError, match=r"shard\(s\) 2/4 missing"):
        load_runs(broken)
    # shards from different code are refused
    stale = next(p for p in (tmp_path / "sharded").iterdir() if "-ssd-" in p.name)
    summary = json.loads((stale / "summary.json").read_text())
    summary["environment"]["git"]["commit"] = "0" * 40
    (stale / "summary.json").write_text(json.dumps(summary))
    with pytest.raises(SSDError, match="different code"):
        load_runs(tmp_path / "sharded")


def test_batch_size_gives_the_same_records(
    tiny_checkpoints: dict[str, Path], data_dir: Path, tmp_path: Path
) -> None:
    one = records(run_job(job(tiny_checkpoints["llada"], data_dir, tmp_path)))
    three = records(run_job(job(tiny_checkpoints["llada"], data_dir, tmp_path, batch_size=3)))
    assert one.keys() == three.keys()
    for sample_id in one:
        assert three[sample_id]["tokens"] == one[sample_id]["tokens"]
        assert three[sample_id]["nfe"] == one[sample_id]["nfe"]
        assert three[sample_id]["identical"]
    assert sorted(r["extra"].get("batch_size", 1) for r in three.values()) == [1, 3, 3, 3]


def test_a_shard_without_samples_is_refused_in_one_line(
    tiny_checkpoints: dict[str, Path], tmp_path: Path
) -> None:
    """More shards than samples: refused, not a finished run whose accuracy is null; no folder is left."""
    from tests.helpers import tiny_job

    ckpt = tiny_checkpoints["llada"]
    with pytest.raises(SSDError, match=r"^shard=5/8 selects none of the job's limit=3 samples: split them"):
        run_job(tiny_job(ckpt, tmp_path, shard="5/8", limit=3))  # known from the config alone
    with pytest.raises(SSDError, match=r"^shard=5/8 selects none of the job's 3 samples of arith: split"):
        run_job(tiny_job(ckpt, tmp_path, shard="5/8", limit="null", **{"benchmark.size": 3}))
    assert list(tmp_path.iterdir()) == []
    folder = run_job(tiny_job(ckpt, tmp_path, shard="2/3", limit="null", **{"benchmark.size": 3}))
    assert [r["index"] for r in records(folder).values()] == [2]
