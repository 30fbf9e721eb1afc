"""The run folder: one job's resolved config, its per-sample records and its summary.

It is the source of truth that reports read, and what makes a job idempotent and resumable:
- the folder name carries a hash of the resolved config, so one setting always maps to one folder;
- `samples.jsonl` gets one line per finished sample, fsynced, so a kill loses at most the sample in flight
  (a torn last line is dropped on the next start);
- `summary.json` is written last and atomically, so its presence means the job is complete; it records
  the count and sha256 of the samples it was computed from, so a later change is detected
  (ssd/results/verify.py);
- a job that fails before its first sample leaves no folder, and no temporary file outlives the next run.

This module is the folder's files only: names, locks, writes and reads. What summary.json says is
computed from the samples by ssd/results/summary.py, and checked against them by ssd/results/verify.py.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ssd.errors import SSDError
from ssd.results.storage import writing

CONFIG = "config.yaml"
SAMPLES = "samples.jsonl"
SUMMARY = "summary.json"
STAMP = "computed_from"  # in summary.json: the samples.jsonl it was computed from (ssd/results/verify.py)
TEMPS = ".*.tmp-*"  # atomic_write_text's temporary files
# Where results go and where they are mirrored do not change what is computed. The sweep label does not
# either, but it is hashed: a run is timed within its sweep, so a new label makes new run folders (and a
# second sweep to compare with the first), while the jobs of one sweep still share their reference runs.
UNHASHED = ("output_dir", "wandb")


def hashed_part(resolved: dict[str, Any]) -> dict[str, Any]:
    """The part of a resolved config that determines the results."""
    return {k: v for k, v in resolved.items() if k not in UNHASHED}


def config_hash(resolved: dict[str, Any]) -> str:
    """sha256 (hex) of the canonical JSON of the config's result-determining part."""
    canonical = json.dumps(hashed_part(resolved), sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


def run_name(resolved: dict[str, Any]) -> str:
    """`<model>-<benchmark>-<decoder>-<hash8>`: readable, and unique per setting."""
    parts = (resolved["model"]["name"], resolved["benchmark"]["name"], resolved["decoder"]["name"])
    return "-".join([*map(str, parts), config_hash(resolved)[:8]])


def fsync_dir(folder: Path) -> None:
    """Make a rename or a new file in `folder` durable (best effort where directories cannot be opened)."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write_text(path: Path, text: str) -> None:
    """Write via a temporary file and os.replace, so readers see the old file or the new one, never half."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    fsync_dir(path.parent)


def write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2) + "\n")


def write_yaml(path: Path, data: Any) -> None:
    atomic_write_text(path, yaml.safe_dump(data, sort_keys=False, allow_unicode=True))


def samples_stamp(path: Path, data: bytes | None = None) -> dict[str, Any]:
    """What a summary is computed from: the record count and sha256 of a samples file as it is on disk
    (`data`: its bytes, where the caller has read them already)."""
    if data is None:
        data = path.read_bytes() if path.is_file() else b""
    return {"file": path.name, "records": data.count(b"\n"), "sha256": hashlib.sha256(data).hexdigest()}


def read_summary(path: Path) -> dict[str, Any]:
    """A run's summary.json (at `path`); SSDError, one line naming it and what to do, where it cannot be
    read or holds no summary object. The runner's check of a finished run and every report read it so."""
    fix = (
        f"delete it and rerun the same job (python -m ssd.run with the overrides in {path.parent / CONFIG}), "
        f"which rewrites it from {SAMPLES} without decoding again"
    )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise SSDError(f"{path} cannot be read ({type(e).__name__}): {fix}") from None
    except UnicodeDecodeError:
        raise SSDError(f"{path} is not UTF-8 text: {fix}") from None
    except json.JSONDecodeError as e:
        raise SSDError(f"{path} is not valid JSON ({e.msg} at line {e.lineno}): {fix}") from None
    if not isinstance(data, dict):
        raise SSDError(f"{path} holds a JSON {type(data).__name__}, not a summary object: {fix}")
    return data


@dataclass(frozen=True)
class RunFolder:
    """One job's folder (`for_config`: under its output_dir, named by its config) and its three files."""

    path: Path

    @classmethod
    def for_config(cls, resolved: dict[str, Any]) -> RunFolder:
        return cls(Path(resolved["output_dir"]) / run_name(resolved))

    @property
    def config_file(self) -> Path:
        return self.path / CONFIG

    @property
    def samples_file(self) -> Path:
        return self.path / SAMPLES

    @property
    def summary_file(self) -> Path:
        return self.path / SUMMARY

    def is_done(self) -> bool:
        return self.summary_file.is_file()

    def _corrupt(self, line: int, what: str) -> SSDError:
        return SSDError(
            f"{self.samples_file} line {line}: {what}; the run folder is damaged, delete "
            f"{self.path} to start this job over"
        )

    def write_config(self, resolved: dict[str, Any]) -> None:
        """Record the resolved config; an existing, different one means the folder is not this job's."""
        with writing(self.path):
            self.path.mkdir(parents=True, exist_ok=True)
        if self.config_file.is_file():
            try:
                existing = yaml.safe_load(self.config_file.read_text(encoding="utf-8"))
            except yaml.YAMLError as e:
                raise SSDError(
                    f"{self.config_file} is not valid YAML ({type(e).__name__}): delete {self.path} "
                    f"to start this job over"
                ) from None
            if not isinstance(existing, dict) or hashed_part(existing) != hashed_part(resolved):
                raise SSDError(
                    f"{self.config_file} differs from this job's config although the folder name "
                    f"matches (edited by hand?): delete {self.path} to start this job over"
                )
            return
        with writing(self.path):
            write_yaml(self.config_file, resolved)

    def read_samples(self, expected_ids: Iterable[str] | None = None) -> list[dict[str, Any]]:
        """The finished samples, in file order.

        A last line without its newline was torn by a kill mid-write: it is cut off the file (that sample
        runs again). Anything else unreadable, a repeated id, or an id the job does not have is damage.
        """
        if not self.samples_file.is_file():
            return []
        data = self.samples_file.read_bytes()
        records = self.parse_samples(data, expected_ids)
        complete = data.rfind(b"\n") + 1
        if complete < len(data):  # only once the rest is known to be sound
            with open(self.samples_file, "r+b") as f:
                f.truncate(complete)
                f.flush()
                os.fsync(f.fileno())
        return records

    def parse_samples(self, data: bytes, expected_ids: Iterable[str] | None = None) -> list[dict[str, Any]]:
        """The records of the complete lines of `data` (the bytes of this folder's samples file), in order;
        SSDError naming the line for damage (`read_samples`). A last line without its newline is left out."""
        complete = data.rfind(b"\n") + 1
        allowed = set(expected_ids) if expected_ids is not None else None
        records: list[dict[str, Any]] = []
        seen: set[str] = set()
        for number, raw in enumerate(data[:complete].splitlines(), 1):
            try:
                record = json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError):
                raise self._corrupt(number, "not a JSON record") from None
            if not isinstance(record, dict) or not isinstance(record.get("id"), str):
                raise self._corrupt(number, "not a sample record (no string 'id')")
            sample_id = record["id"]
            if sample_id in seen:
                raise self._corrupt(number, f"sample '{sample_id}' appears a second time")
            if allowed is not None and sample_id not in allowed:
                raise self._corrupt(number, f"sample '{sample_id}' is not one of this job's samples")
            seen.add(sample_id)
            records.append(record)
        return records

    def append_sample(self, record: dict[str, Any]) -> None:
        """Append one record as one line and force it to disk before the next sample starts."""
        line = json.dumps(record, ensure_ascii=False) + "\n"
        new = not self.samples_file.exists()
        with writing(self.path), open(self.samples_file, "a", encoding="utf-8") as f:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())
        if new:
            fsync_dir(self.path)

    def write_summary(self, summary: dict[str, Any]) -> None:
        """Write the summary, stamped with the samples it was computed from (`STAMP`)."""
        with writing(self.path):
            write_json(self.summary_file, summary | {STAMP: samples_stamp(self.samples_file)})

    def discard_if_empty(self) -> None:
        """Remove the folder of a job that failed before its first sample: an empty folder is no result."""
        if self.is_done() or (self.samples_file.is_file() and self.samples_file.stat().st_size > 0):
            return
        for path in (self.config_file, self.samples_file, *self.path.glob(TEMPS)):
            with contextlib.suppress(OSError):
                path.unlink()
        with contextlib.suppress(OSError):
            self.path.rmdir()

    @contextlib.contextmanager
    def lock(self, wait: bool = False) -> Iterator[None]:
        """Hold an exclusive lock on the folder, so two processes never append to one samples.jsonl.

        The lock is flock on samples.jsonl itself (created empty if need be), open for writing: Linux maps
        flock onto NFS locks only for a file open for writing, so the lock also holds between the nodes of
        a cluster sharing an NFS file system. The kernel releases it when the holder dies (SIGKILL
        included), so no stale locks. File systems without lock support run unlocked. A folder in use
        is an error, or with `wait` something to wait for: the jobs of a Slurm sweep run at once, and
        several of them may need the same reference run folder (see ssd.run.reference_tokens).
        """
        with writing(self.path):
            self.path.mkdir(parents=True, exist_ok=True)
        try:
            import fcntl
        except ImportError:  # not POSIX
            yield
            return
        new = not self.samples_file.exists()
        with writing(self.path):
            fd = os.open(self.samples_file, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
        if new:
            fsync_dir(self.path)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if not wait:
                    raise SSDError(
                        f"{self.path} is in use by another running job with the same config: wait for "
                        f"it, or stop it"
                    ) from None
                print(f"waiting: {self.path} is in use by another job", flush=True)
                with contextlib.suppress(OSError):
                    fcntl.flock(fd, fcntl.LOCK_EX)
            except OSError:
                pass
            for stale in self.path.glob(TEMPS):  # left by a process killed mid-write; none is writing now
                with contextlib.suppress(OSError):
                    stale.unlink()
            try:
                yield
            except BaseException:
                self.discard_if_empty()  # still holding the lock: nobody else is writing here
                raise
        finally:
            os.close(fd)
