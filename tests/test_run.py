"""The runner end to end on tiny checkpoints and the real GSM8K: records, summary, skip, resume, errors."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from ssd.config import GSM8KConfig, ModelConfig, RunConfig, StepwiseConfig, register
from ssd.decoders.stepwise import Stepwise
from ssd.errors import SSDError
from ssd.models.checkpoint import load_tokenizer
from ssd.models.tiny import make_tiny_checkpoint
from ssd.results.runfolder import run_name
from ssd.run import CONF_DIR, completion_and_count, run_job, sample_seed

REPO = Path(__file__).resolve().parent.parent
LIMIT = 3
RECORD_FIELDS = {
    "id",
    "prompt",
    "completion",
    "tokens",
    "correct",
    "extracted",
    "details",
    "nfe",
    "forward_batch_sizes",
    "wall_seconds",
    "generated_tokens",
    "accepted",
}
SUMMARY_FIELDS = {
    "accuracy",
    "n_samples",
    "throughput_tokens_per_s",
    "tokens_per_forward",
    "mean_nfe",
    "mean_wall_seconds",
    "environment",
    "config_hash",
    "run",
}


def overrides(ckpt: Path, data: Path, out: Path, **extra: Any) -> list[str]:
    settings = {
        "model": "tiny_llada",
        "model.path": ckpt,
        "benchmark": "gsm8k",
        "benchmark.data_dir": data,
        "benchmark.num_fewshot": 0,
        "decoder": "stepwise",
        "decoder.gen_length": 16,
        "decoder.block_length": 8,
        "limit": LIMIT,
        "output_dir": out,
        **extra,
    }
    return [f"{k}={v}" for k, v in settings.items()]


def compose_job(*args: Any, **extra: Any) -> DictConfig:
    register()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("config", overrides=overrides(*args, **extra))


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def finished(
    tiny_checkpoints: dict[str, Path], data_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """One uninterrupted job, the reference the other tests compare against."""
    out = tmp_path_factory.mktemp("runs")
    return run_job(compose_job(tiny_checkpoints["llada"], data_dir, out))


def test_completion_and_count_one_definition() -> None:
    chars = "ab Question: c"
    tokens = [ord(c) for c in chars] + [0, ord("z")]

    def decode(ids: list[int]) -> str:
        return "".join(chr(i) for i in ids)

    def cut(s: str) -> str:
        return s.split("Question:")[0]

    assert completion_and_count(tokens, frozenset({0}), decode, cut) == ("ab ", 3)
    assert completion_and_count(tokens, frozenset({ord("a")}), decode, cut) == ("", 0)
    assert completion_and_count([ord("x")] * 5, frozenset({0}), decode, cut) == ("xxxxx", 5)


def test_sample_seed_is_deterministic_and_distinct() -> None:
    assert sample_seed(0, 5) == sample_seed(0, 5)
    assert len({sample_seed(s, i) for s in range(3) for i in range(100)}) == 300
    assert all(0 <= sample_seed(9, i) < 2**31 for i in range(10))


def test_end_to_end_records_and_summary(finished: Path, tiny_checkpoints: dict[str, Path]) -> None:
    assert sorted(p.name for p in finished.iterdir()) == ["config.yaml", "samples.jsonl", "summary.json"]
    records = read_jsonl(finished / "samples.jsonl")
    summary = json.loads((finished / "summary.json").read_text())
    assert [r["id"] for r in records] == ["0", "1", "2"]
    assert set(summary) >= SUMMARY_FIELDS and summary["run"] == finished.name
    assert (
        finished.name.startswith("llada-gsm8k-stepwise-") and summary["config_hash"][:8] == finished.name[-8:]
    )
    tokenizer = load_tokenizer(tiny_checkpoints["llada"])
    stop = {tokenizer.convert_tokens_to_ids(t) for t in ("<|endoftext|>", "<|eot_id|>")}
    for r in records:
        assert set(r) >= RECORD_FIELDS
        assert len(r["tokens"]) == 16 and r["nfe"] == 16 and r["forward_batch_sizes"] == [1] * 16
        assert r["prompt"].startswith("<|start_header_id|>user<|end_header_id|>\n\nQuestion: ")
        assert r["prompt"].endswith("<|start_header_id|>assistant<|end_header_id|>\n\n")
        head = r["tokens"][: next((i for i, t in enumerate(r["tokens"]) if t in stop), 16)]
        assert 0 <= r["generated_tokens"] <= len(head)
        text = tokenizer.decode(head[: r["generated_tokens"]], skip_special_tokens=True)
        assert text.startswith(r["completion"]) and r["completion"].split("Question:")[0] == r["completion"]
    assert summary["n_samples"] == LIMIT
    assert summary["accuracy"] == pytest.approx(sum(r["correct"] for r in records) / LIMIT)
    tokens = sum(r["generated_tokens"] for r in records)
    assert summary["tokens_per_forward"] == pytest.approx(tokens / sum(r["nfe"] for r in records))
    assert summary["throughput_tokens_per_s"] == pytest.approx(
        tokens / sum(r["wall_seconds"] for r in records)
    )
    assert summary["mean_nfe"] == pytest.approx(16.0)
    assert summary["environment"]["hardware"]["device"] == "cpu"


def test_second_run_touches_nothing(
    finished: Path, tiny_checkpoints: dict[str, Path], data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    files = sorted(finished.iterdir())
    before = {p.name: p.stat().st_mtime_ns for p in files}
    capsys.readouterr()
    assert run_job(compose_job(tiny_checkpoints["llada"], data_dir, finished.parent)) == finished
    assert capsys.readouterr().out.strip() == f"done: {finished}"
    # The same setting as a plain RunConfig object maps to the same folder.
    as_object = RunConfig(
        model=ModelConfig(name="llada", path=str(tiny_checkpoints["llada"])),
        decoder=StepwiseConfig(gen_length=16, block_length=8),
        benchmark=GSM8KConfig(num_fewshot=0, data_dir=str(data_dir)),
        limit=LIMIT,
        output_dir=str(finished.parent),
    )
    assert run_job(as_object) == finished
    assert {p.name: p.stat().st_mtime_ns for p in sorted(finished.iterdir())} == before


def test_resume_after_an_interrupt_gives_the_same_tokens(
    finished: Path,
    tiny_checkpoints: dict[str, Path],
    data_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls = []
    original = Stepwise.generate_batch  # what the runner calls (batch_size prompts at a time)

    def interrupted(self: Stepwise, *args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return original(self, *args, **kwargs)

    cfg = compose_job(tiny_checkpoints["llada"], data_dir, tmp_path)
    with monkeypatch.context() as patch:
        patch.setattr(Stepwise, "generate_batch", interrupted)
        with pytest.raises(KeyboardInterrupt):
            run_job(cfg)
    folder = tmp_path / finished.name  # same setting, another output_dir: same folder name
    assert [r["id"] for r in read_jsonl(folder / "samples.jsonl")] == ["0", "1"]
    assert not (folder / "summary.json").exists()
    assert run_job(cfg) == folder
    resumed, reference = read_jsonl(folder / "samples.jsonl"), read_jsonl(finished / "samples.jsonl")
    assert [r["id"] for r in resumed] == ["0", "1", "2"]
    assert [r["tokens"] for r in resumed] == [r["tokens"] for r in reference]
    assert [r["completion"] for r in resumed] == [r["completion"] for r in reference]


def test_corrupt_line_in_the_middle_is_a_one_line_error(
    finished: Path, tmp_path: Path, tiny_checkpoints: dict[str, Path], data_dir: Path
) -> None:
    folder = tmp_path / finished.name
    shutil.copytree(finished, folder)
    (folder / "summary.json").unlink()
    lines = (folder / "samples.jsonl").read_text().splitlines()
    lines[1] = lines[1][: len(lines[1]) // 2]
    (folder / "samples.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(SSDError) as info:
        run_job(compose_job(tiny_checkpoints["llada"], data_dir, tmp_path))
    message = str(info.value)
    assert "samples.jsonl line 2" in message and f"delete {folder}" in message and "\n" not in message


def test_checkpoint_without_weights_is_a_one_line_error(
    tiny_checkpoints: dict[str, Path], data_dir: Path, tmp_path: Path
) -> None:
    ckpt = tmp_path / "no-weights"
    shutil.copytree(tiny_checkpoints["llada"], ckpt)
    for shard in ckpt.glob("model*.safetensors*"):
        shard.unlink()
    with pytest.raises(SSDError, match="has no weights") as info:
        run_job(compose_job(ckpt, data_dir, tmp_path / "runs"))
    assert "\n" not in str(info.value)
    assert not (tmp_path / "runs").exists()  # a job that cannot start leaves no run folder behind


def test_prompt_longer_than_the_model_names_sample_and_numbers(
    tiny_checkpoints: dict[str, Path], data_dir: Path, tmp_path: Path
) -> None:
    with pytest.raises(SSDError) as info:
        run_job(compose_job(tiny_checkpoints["llada"], data_dir, tmp_path, **{"decoder.gen_length": 512}))
    message = str(info.value)
    assert message.startswith("sample 0: prompt of ") and "gen_length 512" in message
    assert "max_length 512" in message and "lower decoder.gen_length" in message


def cli(args: list[str], tmp_path: Path) -> list[str]:
    return [sys.executable, "-m", "ssd.run", *args, f"hydra.run.dir={tmp_path / 'hydra'}"]


def test_cli_error_inside_the_job_is_one_line_exit_2(
    tiny_checkpoints: dict[str, Path], data_dir: Path, tmp_path: Path
) -> None:
    args = overrides(tiny_checkpoints["llada"], data_dir, tmp_path / "runs", **{"decoder.block_length": 5})
    done = subprocess.run(cli(args, tmp_path), cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: block_length 5 does not divide gen_length 16")


def test_cli_killed_mid_run_resumes_to_completion(data_dir: Path, tmp_path: Path) -> None:
    limit = 6
    # Longer than the shared tiny checkpoints allow: some GSM8K prompts alone fill 512 positions.
    ckpt = make_tiny_checkpoint(tmp_path / "tiny-llada-2k", "llada", max_sequence_length=2048)
    args = overrides(
        ckpt,
        data_dir,
        tmp_path / "runs",
        **{"decoder.gen_length": 64, "decoder.block_length": 32, "limit": limit},
    )
    proc = subprocess.Popen(cli(args, tmp_path), cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 240
    samples: Path | None = None
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            found = list((tmp_path / "runs").glob("*/samples.jsonl"))
            if found and found[0].read_bytes().count(b"\n") >= 1:
                samples = found[0]
                break
            time.sleep(0.02)
    finally:
        proc.send_signal(signal.SIGKILL)
        _, stderr = proc.communicate(timeout=60)
    assert samples is not None, f"no sample was recorded before the run ended: {stderr.decode()[-2000:]}"
    folder = samples.parent
    assert not (folder / "summary.json").exists(), "the run finished before it could be killed"
    assert folder.name == run_name(yaml.safe_load((folder / "config.yaml").read_text()))
    kept = samples.read_bytes().count(b"\n")
    with open(samples, "ab") as f:  # as if the kill had landed in the middle of a write
        f.write(b'{"id": "99", "prompt": "tor')
    done = subprocess.run(cli(args, tmp_path), cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert f"({kept} of {limit} samples already done)" in done.stdout
    ids = [r["id"] for r in read_jsonl(samples)]
    assert ids == [str(i) for i in range(limit)]
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["n_samples"] == limit and summary["run"] == folder.name


def test_missing_value_is_a_one_line_error(tmp_path: Path, data_dir: Path) -> None:
    with pytest.raises(
        SSDError, match=r"config value model.path cannot be resolved .*: set it .*model.path="
    ):
        run_job(compose_job("???", data_dir, tmp_path))
