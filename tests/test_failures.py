"""Failures a user can cause outside the config: each one line (SSDError), nothing left behind, nothing lost.

Checkpoint files damaged or truncated, benchmark data edited in place, an output location that is a file,
read-only or full; a job failing its length check; a temporary file left by a kill."""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from ssd.benchmarks import data
from ssd.errors import SSDError
from ssd.models.llada import LLaDA
from ssd.results.runfolder import RunFolder
from ssd.results.storage import storage_error
from ssd.run import run_job
from tests.helpers import real_data, tiny_job


def job(ckpt: Path, out: Path, **extra: Any) -> Any:
    return tiny_job(ckpt, out, **{"decoder": "stepwise", **extra})


# --- checkpoints ----------------------------------------------------------------------------------------


@pytest.fixture
def checkpoint(tiny_checkpoints: dict[str, Path], tmp_path: Path) -> Path:
    folder = tmp_path / "ckpt"
    shutil.copytree(tiny_checkpoints["llada"], folder)
    return folder


def test_a_corrupt_config_json_is_named(checkpoint: Path) -> None:
    (checkpoint / "config.json").write_text("{not json")
    with pytest.raises(SSDError, match=rf"^checkpoint file {checkpoint / 'config.json'} is damaged"):
        LLaDA.from_pretrained(checkpoint)


def test_a_config_json_of_the_wrong_kind_is_named(checkpoint: Path) -> None:
    (checkpoint / "config.json").write_text("[1, 2]")
    with pytest.raises(SSDError, match=r"config.json is damaged or truncated \(ValueError: a JSON list"):
        LLaDA.from_pretrained(checkpoint)


def test_a_truncated_shard_is_named(checkpoint: Path) -> None:
    shard = sorted(checkpoint.glob("*.safetensors"))[-1]
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])
    with pytest.raises(SSDError) as info:
        LLaDA.from_pretrained(checkpoint)
    assert str(info.value).startswith(f"checkpoint file {shard} is damaged or truncated")


def test_a_corrupt_shard_index_is_named(checkpoint: Path) -> None:
    index = checkpoint / "model.safetensors.index.json"
    index.write_text(index.read_text()[:40])
    with pytest.raises(SSDError, match=rf"^checkpoint file {index} is damaged"):
        LLaDA.from_pretrained(checkpoint)


# --- benchmark data -------------------------------------------------------------------------------------


def test_data_edited_in_place_is_refused_when_loaded(tmp_path: Path) -> None:
    source = data.path_for("gsm8k", real_data("gsm8k"))
    path = data.path_for("gsm8k", tmp_path)
    path.parent.mkdir()
    path.write_bytes(source.read_bytes())
    assert data.ensure("gsm8k", tmp_path) == path
    rows = source.read_text(encoding="utf-8").splitlines(keepends=True)
    row = json.loads(rows[5])
    rows[5] = json.dumps(row | {"answer": row["answer"] + "0"}, ensure_ascii=False) + "\n"
    path.write_text("".join(rows), encoding="utf-8")  # the same row count, one row changed
    with pytest.raises(
        SSDError, match=r"^data for gsm8k at .* has sha256 .*\(edited or damaged\): delete it"
    ):
        data.ensure("gsm8k", tmp_path)


def test_data_is_hashed_once_per_process_and_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = data.path_for("gsm8k", real_data("gsm8k"))
    path = data.path_for("gsm8k", tmp_path)
    path.parent.mkdir()
    shutil.copyfile(source, path)
    reads = []
    original = Path.read_bytes

    def counted(self: Path) -> bytes:
        reads.append(self)
        return original(self)

    monkeypatch.setattr(Path, "read_bytes", counted)
    for _ in range(3):
        data.ensure("gsm8k", tmp_path)
    assert reads == [path]


# --- the output location --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (errno.ENOSPC, r"^no space left on the device holding .*: free some space, then rerun"),
        (errno.EROFS, r"read-only file system: pass output_dir="),
        (errno.EACCES, r"Permission denied: pass output_dir="),
        (errno.EPERM, r"Operation not permitted: pass output_dir="),
        (errno.EIO, r"^cannot write .*: pass output_dir="),
    ],
)
def test_storage_errors_are_one_line(code: int, expected: str, tmp_path: Path) -> None:
    message = str(storage_error(OSError(code, os.strerror(code), str(tmp_path / "f")), tmp_path))
    assert "\n" not in message
    assert re.search(expected, message)


def test_an_output_dir_that_is_a_file(tiny_checkpoints: dict, tmp_path: Path) -> None:
    blocker = tmp_path / "runs"
    blocker.write_text("not a folder")
    with pytest.raises(SSDError, match=rf"{blocker} is a file, not a folder: move it, or pass output_dir="):
        run_job(job(tiny_checkpoints["llada"], blocker))


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_output_dir(tiny_checkpoints: dict, tmp_path: Path) -> None:
    out = tmp_path / "ro"
    out.mkdir()
    out.chmod(0o555)
    try:
        with pytest.raises(SSDError, match=r"Permission denied: pass output_dir="):
            run_job(job(tiny_checkpoints["llada"], out))
    finally:
        out.chmod(0o755)


def test_a_full_disk_mid_run_is_one_line_and_the_rerun_resumes(
    tiny_checkpoints: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The second sample's fsync hits ENOSPC: one line, the first sample kept, the rerun finishes."""
    original = os.fsync
    synced = []

    def full(fd: int) -> None:
        if os.readlink(f"/proc/self/fd/{fd}").endswith("samples.jsonl"):
            synced.append(fd)
            if len(synced) == 2:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        original(fd)

    cfg = job(tiny_checkpoints["llada"], tmp_path)
    with monkeypatch.context() as patch:
        patch.setattr(os, "fsync", full)
        with pytest.raises(SSDError, match=r"^no space left on the device holding "):
            run_job(cfg)
    (folder,) = tmp_path.iterdir()
    assert not (folder / "summary.json").exists()
    first = (folder / "samples.jsonl").read_text().splitlines()[0]
    assert run_job(cfg) == folder
    lines = (folder / "samples.jsonl").read_text().splitlines()
    assert len(lines) == 3 and lines[0] == first
    assert json.loads((folder / "summary.json").read_text())["n_samples"] == 3


def test_a_full_disk_while_writing_the_summary_leaves_no_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = RunFolder(tmp_path / "run")
    folder.path.mkdir()

    def full(src: Any, dst: Any) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "replace", full)
    with pytest.raises(SSDError, match=r"^no space left"):
        folder.write_summary({"n_samples": 0})
    assert list(folder.path.iterdir()) == []


# --- leftovers ------------------------------------------------------------------------------------------


def test_a_job_failing_its_length_check_leaves_no_folder(
    tiny_checkpoints: dict[str, Path], tmp_path: Path
) -> None:
    cfg = job(tiny_checkpoints["llada"], tmp_path, **{"decoder.gen_length": 8192, "decoder.block_length": 8})
    with pytest.raises(SSDError, match=r"exceeds the model's max_length"):
        run_job(cfg)
    assert list(tmp_path.iterdir()) == []


def test_a_stale_temp_file_is_removed_by_the_next_run(
    tiny_checkpoints: dict[str, Path], tmp_path: Path
) -> None:
    cfg = job(tiny_checkpoints["llada"], tmp_path, limit=1)
    folder = run_job(cfg)
    (folder / "summary.json").unlink()  # as if killed while writing the summary ...
    stale = folder / ".summary.json.tmp-999999"
    stale.write_text("{")  # ... by a process that left its temporary file
    run_job(cfg)
    assert sorted(p.name for p in folder.iterdir()) == ["config.yaml", "samples.jsonl", "summary.json"]
