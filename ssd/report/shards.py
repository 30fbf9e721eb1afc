"""One result per setting from the run folders of its shards (`shard=i/n`).

A sharded setting runs as n jobs, each on a deterministic slice of the benchmark, each with its own run
folder. Reports merge them back: the samples of every shard, summarised exactly as one unsharded job's
would be. Merging refuses what would silently mislead: shards of different configs, shards produced by
different code (git commit or a dirty tree), and an incomplete set (it names the missing shards).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ssd.config import parse_shard
from ssd.errors import SSDError
from ssd.results.runfolder import SAMPLES, RunFolder, config_hash, hashed_part
from ssd.results.summary import recorded_aggregate


def setting_key(config: dict[str, Any]) -> str:
    """What the shards of one setting share: the result-determining config, shard aside."""
    return json.dumps({k: v for k, v in hashed_part(config).items() if k != "shard"}, sort_keys=True)


def _code(summary: dict[str, Any]) -> tuple[Any, Any]:
    git = (summary.get("environment") or {}).get("git") or {}
    return git.get("commit"), git.get("dirty")


def merge(shards: list[tuple[Path, dict[str, Any], dict[str, Any] | None]]) -> tuple[Path, dict, dict]:
    """(folder, config, summary or None) of every shard folder found for one setting -> the merged
    (folder of shard 0, config without the shard, summary over all samples)."""
    n_values = {parse_shard(c.get("shard"))[1] for _, c, _ in shards}
    first = min(shards, key=lambda s: parse_shard(s[1].get("shard")))
    name = f"{first[1]['model']['name']}/{first[1]['benchmark']['name']}/{first[1]['decoder']['name']}"
    if len(n_values) != 1:
        raise SSDError(
            f"{name}: shards of different splits ({sorted(n_values)} shards) in one setting: "
            f"keep the run folders of one split only"
        )
    n = n_values.pop()
    done = {parse_shard(c.get("shard"))[0]: (f, c, s) for f, c, s in shards if s is not None}
    missing = [f"{i}/{n}" for i in range(n) if i not in done]
    if missing:
        raise SSDError(
            f"{name}: shard(s) {', '.join(missing)} missing or unfinished (setting of "
            f"{first[0].name}): run them before merging"
        )
    versions = {_code(s) for _, _, s in done.values()}
    if len(versions) != 1:
        raise SSDError(
            f"{name}: shards were produced by different code {sorted(map(str, versions))}: rerun "
            f"the stale shards with the current code"
        )
    samples = []
    for i in range(n):
        samples += RunFolder(done[i][0]).read_samples()
    ids = [s["id"] for s in samples]
    if len(set(ids)) != len(ids):
        raise SSDError(f"{name}: a sample appears in two shards ({SAMPLES}): the shards overlap")
    config = {k: v for k, v in first[1].items() if k != "shard"}
    head = done[0][2]
    summary = {
        "run": first[0].name,
        "config_hash": config_hash(config),
        "sweep": head.get("sweep"),
        **recorded_aggregate(samples, head),
        "environment": head.get("environment"),
        "shards": n,
    }
    peaks = [
        s.get("peak_memory_bytes") for _, _, s in done.values() if s.get("peak_memory_bytes") is not None
    ]
    if peaks:
        summary |= {"peak_memory_bytes": max(peaks), "peak_memory_kind": head.get("peak_memory_kind")}
    return first[0], config, summary
