"""The run folder: one job's resolved config, its per-sample records and its summary.

It is the source of truth that reports read, and what makes a job idempotent and resumable:
- the folder name carries a hash of the resolved config, so one setting always maps to one folder;
- `samples.jsonl` gets one line per finished sample, fsynced, so a kill loses at most the sample in flight
  (a torn last line is dropped on the next start);
- `summary.json` is written last and atomically, so its presence means the job is complete; it records
  the count and sha256 of the samples it was computed from, so a later change is detected
  (ssd/results/verify.py);
- a job that fails before its first sample leaves no folder, and no temporary file outlives the next run.
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
from ssd.results.timing import contention, paired_summary

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


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _ratio(num: float, den: float) -> float | None:
    return num / den if den > 0 else None


def first_difference(tokens: list[int], reference: list[int]) -> int | None:
    """The first position where two token sequences differ (a length difference counts), or None."""
    for i, (a, b) in enumerate(zip(tokens, reference, strict=False)):
        if a != b:
            return i
    return None if len(tokens) == len(reference) else min(len(tokens), len(reference))


def histogram(values: list[int]) -> dict[str, int]:
    """Counts per value, keyed by the value as a string (JSON object keys), in ascending order."""
    counts: dict[int, int] = {}
    for v in values:
        counts[v] = counts.get(v, 0) + 1
    return {str(k): counts[k] for k in sorted(counts)}


def shape_histogram(samples: list[dict[str, Any]]) -> dict[str, int]:
    """Forwards counted by "rows/full" (rows, of which `full` ran the whole sequence: refreshes, rows
    without a cache, states seeding the next block); {} unless every sample recorded its full rows."""
    shapes: dict[tuple[int, int], int] = {}
    for s in samples:
        full = s.get("forward_full_rows") or []
        if len(full) != len(s["forward_batch_sizes"]) or not full:
            return {}
        for shape in zip(s["forward_batch_sizes"], full, strict=True):
            shapes[shape] = shapes.get(shape, 0) + 1
    return {f"{r}/{f}": shapes[r, f] for r, f in sorted(shapes)}


def summarize(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Aggregate metrics of a job, from its sample records only (algorithms.md, "Metrics")."""
    tokens = sum(s["generated_tokens"] for s in samples)
    nfe = sum(s["nfe"] for s in samples)
    wall = sum(s["wall_seconds"] for s in samples)
    accepted = [a for s in samples for a in s.get("accepted", [])]
    return {
        "n_samples": len(samples),
        "accuracy": _mean([float(bool(s["correct"])) for s in samples]),
        "throughput_tokens_per_s": _ratio(tokens, wall),
        "tokens_per_forward": _ratio(tokens, nfe),
        "mean_nfe": _mean([s["nfe"] for s in samples]),
        "mean_wall_seconds": _mean([s["wall_seconds"] for s in samples]),
        "mean_generated_tokens": _mean([s["generated_tokens"] for s in samples]),
        "mean_accepted": _mean(accepted),
        "total_generated_tokens": tokens,
        "total_nfe": nfe,
        "total_forward_rows": sum(sum(s["forward_batch_sizes"]) for s in samples),
        "total_wall_seconds": wall,
        "accepted_histogram": histogram(accepted),
        "forward_batch_size_histogram": histogram([b for s in samples for b in s["forward_batch_sizes"]]),
        "forward_shape_histogram": shape_histogram(samples),
        "draft_length_histogram": histogram(
            [d for s in samples for d in s.get("extra", {}).get("draft_lengths", [])]
        ),
        **_identity(samples),
    }


def isolation_used(records: list[dict[str, Any]]) -> dict[str, str]:
    """{"sandbox": isolation} of a code benchmark's sample records ("a+b" if a resumed run mixed them); {}
    for other benchmarks."""
    used = sorted({str(r["details"]["isolation"]) for r in records if "isolation" in r.get("details", {})})
    return {"sandbox": "+".join(used)} if used else {}


def aggregate(
    samples: list[dict[str, Any]], device: str, threads: int, cores: int | None = None
) -> dict[str, Any]:
    """Everything summary.json derives from sample records: the metrics, the sandbox of a code benchmark,
    whether the job was oversubscribed while timed and its paired speedup (ssd/results/timing.py). One
    place for a job's summary, its shards merged back and its verification, so none falls behind.
    `cores`: the usable cores of the machine that timed the samples (default: this one's)."""
    return {
        **summarize(samples),
        **isolation_used(samples),
        "timing": contention(samples, threads, device, cores),
        "paired_speedup": paired_summary(samples, device, threads),
    }


def recorded_device(summary: dict[str, Any]) -> str:
    """`cpu` or `cuda`: the kind of device a job ran on, from its summary's recorded environment."""
    hardware = (summary.get("environment") or {}).get("hardware") or {}
    return str(hardware.get("device") or "cpu").split(":")[0]


def recorded_aggregate(samples: list[dict[str, Any]], summary: dict[str, Any]) -> dict[str, Any]:
    """`aggregate` as the job that wrote `summary` computed it: its device, threads and usable cores."""
    timing = summary.get("timing") if isinstance(summary.get("timing"), dict) else {}
    threads, cores = timing.get("threads") or 1, timing.get("usable_cores")
    return aggregate(samples, recorded_device(summary), threads, cores)


def _identity(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Token identity with the reference decoder, where it was checked."""
    checked = [s for s in samples if s.get("identical") is not None]
    if not checked:
        return {"lossless_checked": False}
    diverging = [s["first_diverging_position"] for s in checked if not s["identical"]]
    return {
        "lossless_checked": True,
        "identical_rate": _mean([float(s["identical"]) for s in checked]),
        "n_identical": len(checked) - len(diverging),
        "earliest_divergence": min(diverging) if diverging else None,
    }


@dataclass(frozen=True)
class RunFolder:
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
