"""The runner: `python -m ssd.run model=… decoder=… benchmark=… [limit=…]` (add `-m` to sweep).

One job = one (model, decoder, benchmark, settings) combination = one run folder (ssd/results/runfolder.py).
What is not named comes from the base config (conf/config.yaml): the embedded model on its task.
Jobs are idempotent: a finished job is skipped, an interrupted one resumes after its last recorded
sample, so a sweep can simply be launched again (Hydra has no sweep resume of its own), and a Slurm job
that is requeued (`hydra/launcher=submitit_slurm`, conf/hydra/launcher/) continues where it stopped.
"""

from __future__ import annotations

import hashlib
import re
import sys
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from ssd.config import RunConfig, parse_shard, register
from ssd.errors import SSDError, fail
from ssd.registry import did_you_mean
from ssd.results.progress import UNCONTAINED, UNCONTAINED_WHY, Progress, headline, heartbeat
from ssd.results.provenance import environment, peak_memory, reset_peak_memory
from ssd.results.runfolder import RunFolder, config_hash
from ssd.results.summary import aggregate, first_difference
from ssd.results.timing import paired_record, set_threads, timed
from ssd.results.verify import verified_done
from ssd.validate import check_config, check_device, hydra_errors

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"
# conf/hydra/launcher/submitit_slurm.yaml takes the place of the plugin's config of that name, and Hydra
# validates it against the plugin's schema (wanted: a misspelt key fails) with a deprecation warning; set
# here at import, so that it holds in a submitit job too (which imports this module to unpickle the task).
warnings.filterwarnings("ignore", message=r"(?s).*is validated against ConfigStore schema with the same name")
GROUPS = ("model", "decoder", "benchmark", "experiment")
RANDOM_MODELS = ("tiny_llada", "tiny_dream")  # conf/model/ options with random weights (`make tiny`)
# `group=a,b` with an optional `+`/`++` prefix; sweep functions and interpolations are left to Hydra.
CHOICE = re.compile(r"^\+{0,2}(?P<group>" + "|".join(GROUPS) + r")=(?P<value>[^()\[\]{}$]*)$")


def options(group: str, conf_dir: Path = CONF_DIR) -> list[str]:
    """The option names of a config group (files starting with `_` are schemas, not options)."""
    return sorted(p.stem for p in (conf_dir / group).glob("*.yaml") if not p.name.startswith("_"))


def check_choices(argv: Sequence[str], conf_dir: Path = CONF_DIR) -> None:
    """Reject an unknown group option before Hydra does, with a one-line did-you-mean."""
    for arg in argv:
        match = CHOICE.match(arg)
        if not match:
            continue
        group = match["group"]
        known = options(group, conf_dir)
        for name in (v.strip().strip("'\"") for v in match["value"].split(",")):
            if name and name not in known:
                raise SSDError(
                    f"unknown {group} '{name}' (no conf/{group}/{name}.yaml): {did_you_mean(name, known)}"
                )


def say_if_random(argv: Sequence[str]) -> None:
    """One line when the command line chooses a random-weight model: its answers are no model's."""
    names = [v.strip() for m in map(CHOICE.match, argv) if m and m[1] == "model" for v in m[2].split(",")]
    if random := [name for name in names if name in RANDOM_MODELS]:
        note = "has random weights (a test fixture: its answers are noise, its accuracy means nothing)"
        print(
            f"note: model={','.join(random)} {note}; the default is the trained model=arith_llada", flush=True
        )


def resolve(cfg: DictConfig) -> dict[str, Any]:
    """The config as plain data, every interpolation resolved and every required value present."""
    try:
        return OmegaConf.to_container(cfg, resolve=True, enum_to_str=True, throw_on_missing=True)
    except OmegaConfBaseException as e:
        key = getattr(e, "full_key", None) or "?"
        raise SSDError(
            f"config value {key} cannot be resolved ({str(e).splitlines()[0]}): set it on the command line, "
            f"e.g. {key}=…"
        ) from None


def sample_seed(seed: int, index: int) -> int:
    """A per-sample seed that depends only on the job's seed and the sample's position."""
    return int.from_bytes(hashlib.sha256(f"{seed}/{index}".encode()).digest()[:4], "big") & 0x7FFFFFFF


def prompt_ids(benchmark: Any, tokenizer: Any, sample: Any) -> tuple[str, list[int]]:
    """The prompt as text (what the tokenizer saw, chat rendering included) and as token ids."""
    prompt = benchmark.prompt(sample)
    if not benchmark.cfg.chat:
        return prompt.text, list(tokenizer(prompt.text)["input_ids"])
    if not getattr(tokenizer, "chat_template", None):
        raise SSDError(
            "the model's tokenizer has no chat template (a base model?): pass benchmark.chat=false"
        )
    text = tokenizer.apply_chat_template(prompt.messages, add_generation_prompt=True, tokenize=False)
    ids = tokenizer.apply_chat_template(prompt.messages, add_generation_prompt=True, tokenize=True)
    return text, list(ids if isinstance(ids, list) else ids["input_ids"])


def completion_and_count(
    tokens: list[int], stop_ids: frozenset[int], decode: Callable[[list[int]], str], cut: Callable[[str], str]
) -> tuple[str, int]:
    """The graded completion, and the number of generated tokens it took (one definition for all decoders).

    Tokens after the first stop id never count; the count then shrinks to the shortest prefix whose
    decoding is at least as long as the completion cut at the benchmark's stop strings.
    """
    end = next((i for i, t in enumerate(tokens) if t in stop_ids), len(tokens))
    head = tokens[:end]
    completion = cut(decode(head))
    lo, hi = 0, len(head)
    while lo < hi:
        mid = (lo + hi) // 2
        if len(decode(head[:mid])) >= len(completion):
            hi = mid
        else:
            lo = mid + 1
    return completion, lo


def _parts(cfg: DictConfig, models: dict[str, Any]) -> tuple[Any, Any, Any]:
    """Benchmark, decoder, model: the cheap, config-checking ones first, the model last (loaded once
    per process and model config: a job and its reference share it)."""
    from ssd.benchmarks import BENCHMARKS
    from ssd.decoders import DECODERS
    from ssd.models import MODELS

    benchmark = BENCHMARKS.get(cfg.benchmark.name)(OmegaConf.to_object(cfg.benchmark))
    if hasattr(benchmark, "isolation"):  # a code benchmark refuses here, before a model loads, if no sandbox
        benchmark.isolation()
    decoder = DECODERS.get(cfg.decoder.name)(OmegaConf.to_object(cfg.decoder))
    m = cfg.model
    key = OmegaConf.to_yaml(m)
    if key not in models:
        models[key] = MODELS.get(m.name).from_pretrained(m.path, dtype=m.dtype, device=m.device)
    return benchmark, decoder, models[key]


def reference_tokens(cfg: DictConfig, decoder: Any, models: dict[str, Any]) -> dict[str, list[int]] | None:
    """Tokens of the decoder's reference per sample id, from the reference's own run folder (run first,
    or reused when done: the stepwise job of the same sweep *is* that folder), or None if unchecked."""
    reference = decoder.reference_config()
    if reference is None or cfg.check_lossless is False:
        return None
    ref_cfg = cfg.copy()
    ref_cfg.decoder = OmegaConf.structured(reference)
    print(
        f"reference: {reference.name}, the yardstick of {cfg.decoder.name}'s lossless check: an ordinary "
        f"job, run first unless done (check_lossless=false skips it)",
        flush=True,
    )
    folder = RunFolder(run_job(ref_cfg, models))
    return {r["id"]: r["tokens"] for r in folder.read_samples()}


def paired_reference(decoder: Any) -> Any:
    """The reference decoder timed beside each sample under `timing.paired` (None: it has none)."""
    reference = decoder.reference_config()
    if reference is None:
        return None
    from ssd.decoders import DECODERS

    return DECODERS.get(reference.name)(reference)


def run_job(cfg: DictConfig | RunConfig, models: dict[str, Any] | None = None) -> Path:
    """Run (or resume, or skip) one job and return its run folder.

    In order: the config resolved and checked (ssd/validate.py); its run folder (ssd/results/runfolder.py),
    skipped if done and its summary still given by its samples (ssd/results/verify.py); the benchmark,
    decoder and model; the reference's tokens (an ordinary job of its own); every remaining sample
    decoded, metered (ssd/results/timing.py), graded and appended; the summary, aggregated from the
    samples as written (ssd/results/summary.py), written last."""
    models = {} if models is None else models
    if not isinstance(cfg, DictConfig):
        cfg = OmegaConf.structured(cfg)
    resolved = resolve(cfg)
    check_config(resolved)
    uncontained = _pin_sandbox(cfg, resolved)
    folder = RunFolder.for_config(resolved)
    if verified_done(folder):
        print(f"done: {folder.path}{uncontained}", flush=True)
        return folder.path
    check_device(resolved["model"]["device"])
    reset_peak_memory(_device(resolved["model"]["device"]))
    shard = parse_shard(resolved.get("shard"))
    threads = set_threads(resolved["timing"]["threads"])
    benchmark, decoder, model = _parts(cfg, models)
    references = reference_tokens(cfg, decoder, models)
    paired = paired_reference(decoder) if resolved["timing"]["paired"] else None
    indexed = benchmark.selected(resolved["limit"], shard)  # (index in the unsharded job, sample)
    samples = [s for _, s in indexed]
    ids = [s.id for s in samples]
    if len(set(ids)) != len(ids):
        raise SSDError(f"benchmark {benchmark.name} has repeated sample ids; they must be unique to resume")
    # Another process may hold the folder: a Slurm sweep runs its jobs at once, and a job can be another
    # job's reference (reference_tokens). Wait for it, then find the folder done, or continue it.
    with folder.lock(wait=True):
        if verified_done(folder):  # finished by another process while this one loaded the model or waited
            print(f"done: {folder.path}", flush=True)
            return folder.path
        folder.write_config(resolved)
        finished = {r["id"] for r in folder.read_samples(ids)}
        todo = [(i, s) for i, s in indexed if s.id not in finished]
        print(f"run: {folder.path} ({len(finished)} of {len(samples)} samples already done)", flush=True)
        parts = (benchmark, decoder, model)
        paired_name = None if paired is None else paired.cfg.name
        progress = Progress(len(todo))
        recorder = Recorder(folder, benchmark, model, references, len(samples), progress, paired_name)
        _generate(todo, parts, resolved["seed"], recorder, resolved["batch_size"], paired)
        records = folder.read_samples(ids)  # from the file, as any later reader would see it
        summary = _summary(folder, resolved, records, model, threads)
        folder.write_summary(summary)
    print(f"summary: {folder.summary_file}: {headline(summary)}", flush=True)
    if (resolved.get("wandb") or {}).get("mode", "disabled") != "disabled":
        from ssd.results.wandb_mirror import mirror

        where = mirror(folder.path, resolved["wandb"])  # a copy of the finished folder; never raises
        if where:
            print(f"wandb: written to {where} (an offline run uploads with `wandb sync {where}`)", flush=True)
    return folder.path


def _pin_sandbox(cfg: DictConfig, resolved: dict[str, Any]) -> str:
    """A code benchmark's isolation is part of its run's identity (the folder's hash): `auto` becomes the
    one that grades here, so runs graded under different isolations never share a folder. Under `none`
    the job says so first, and its last line too (returned)."""
    bench = resolved["benchmark"]
    if bench.get("sandbox") == "auto":
        from ssd.sandbox import mechanism

        bench["sandbox"] = cfg.benchmark.sandbox = mechanism().isolation
    if bench.get("sandbox") != "none":
        return ""
    print(f"{UNCONTAINED}: {UNCONTAINED_WHY}", flush=True)
    return f" ({UNCONTAINED})"


def _device(name: str) -> str:
    """The device a job's model will be on (`model.device`, with `auto` resolved as the loader does)."""
    if name != "auto":
        return name
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _prompts(todo: list[tuple[int, Any]], benchmark: Any, model: Any, gen_length: int) -> dict[int, Any]:
    """Every remaining prompt, checked against the model's length before any decoding starts."""
    prompts = {}
    for index, sample in todo:
        text, ids = prompt_ids(benchmark, model.tokenizer, sample)
        if len(ids) + gen_length > model.max_length:
            raise SSDError(
                f"sample {sample.id}: prompt of {len(ids)} tokens + gen_length {gen_length} = "
                f"{len(ids) + gen_length} exceeds the model's max_length {model.max_length}: lower "
                f"decoder.gen_length or benchmark.num_fewshot"
            )
        prompts[index] = (text, ids)
    return prompts


def _generate(
    todo: list[tuple[int, Any]],
    parts: tuple[Any, Any, Any],
    seed: int,
    recorder: Recorder,
    batch_size: int,
    paired: Any = None,
) -> None:
    """Decode the remaining samples, batch_size prompts at a time; grade and record each one. Each batch
    is metered (CPU against wall time: ssd.results.timing); with a `paired` reference decoder, that
    decoder runs the same batch right before or after it, alternating, and is timed the same way."""
    benchmark, decoder, model = parts
    prompts = _prompts(todo, benchmark, model, decoder.cfg.gen_length)
    if todo and model.device.type == "cuda":  # kernels, allocator and autotuning, outside the timings
        decoder.generate(model, prompts[todo[0][0]][1], seed=0)
        if paired is not None:
            paired.generate(model, prompts[todo[0][0]][1], seed=0)
    for number, lo in enumerate(range(0, len(todo), batch_size)):
        batch = todo[lo : lo + batch_size]
        seeds = [sample_seed(seed, index) for index, _ in batch]
        ids = [prompts[index][1] for index, _ in batch]
        with heartbeat(f"sample {batch[0][1].id}"):
            if paired is not None and number % 2:
                references, ref_timing = timed(paired, model, ids, seeds)
            generations, timing = timed(decoder, model, ids, seeds)
            if paired is not None and not number % 2:
                references, ref_timing = timed(paired, model, ids, seeds)
        refs = [None] * len(batch) if paired is None else [(r, ref_timing) for r in references]
        for (index, sample), seed_, gen, ref in zip(batch, seeds, generations, refs, strict=True):
            recorder.record(index, sample, prompts[index][0], seed_, gen, timing, ref)


@dataclass
class Recorder:
    """Grades a generation and appends its record (one fsynced line) to the run folder."""

    folder: RunFolder
    benchmark: Any
    model: Any
    references: dict[str, list[int]] | None
    total: int
    progress: Progress
    paired_name: str | None = None  # the decoder timed beside each sample (timing.paired)

    def decode(self, tokens: list[int]) -> str:
        return self.model.tokenizer.decode(tokens, skip_special_tokens=True)

    def count(self, tokens: list[int]) -> tuple[str, int]:
        return completion_and_count(tokens, self.model.stop_ids, self.decode, self.benchmark.cut)

    def record(
        self, index: int, sample: Any, prompt: str, seed: int, gen: Any, timing: dict, ref: Any = None
    ) -> None:
        """`timing`: the metered batch (per sample); `ref`: the paired reference's (Generation, timing)."""
        completion, generated = self.count(gen.tokens)
        score = self.benchmark.score(sample, completion)
        # Every Generation and Score field is recorded (tokens, nfe, forward_batch_sizes, wall_seconds,
        # accepted, extra; correct, extracted, details), so a new decoder statistic needs no runner change.
        record = {"id": sample.id, "index": index, "seed": seed, "prompt": prompt, "target": sample.target}
        record |= {"completion": completion, "generated_tokens": generated, **asdict(gen), **asdict(score)}
        record["timing"] = timing
        if ref is not None:
            ours = (generated, gen.wall_seconds, timing["cpu_seconds"])
            theirs = (self.count(ref[0].tokens)[1], ref[0].wall_seconds, ref[1]["cpu_seconds"])
            record["paired"] = paired_record(self.paired_name, ours, theirs)
        verdict = "correct" if score.correct else "wrong"
        if self.references is not None:
            diverges = first_difference(gen.tokens, self.references[sample.id])
            record |= {"identical": diverges is None, "first_diverging_position": diverges}
            if diverges is not None:
                verdict += f", differs from its reference at token {diverges}"
        self.folder.append_sample(record | {"correct": bool(score.correct)})
        print(
            f"[{index + 1}/{self.total}] {sample.id}: {verdict}, {generated} tokens, {gen.nfe} NFE, "
            f"{gen.wall_seconds:.2f}s, {self.progress.step()}",
            flush=True,
        )


def _summary(
    folder: RunFolder, resolved: dict[str, Any], samples: list[dict[str, Any]], model: Any, threads: int
) -> dict[str, Any]:
    digest = config_hash(resolved)
    return {
        "run": folder.path.name,
        "config_hash": digest,
        "sweep": resolved["sweep"],
        **aggregate(samples, model.device.type, threads),
        # This process's peak since the job started (a resumed job: since it resumed); what it measures
        # depends on the device: see ssd.results.provenance.PEAK_MEMORY_KINDS.
        **peak_memory(model.device),
        "environment": environment(str(model.device), seed=resolved["seed"], config_hash=digest),
    }


def _task(cfg: DictConfig) -> None:
    # Hydra reports exceptions from the task itself (with a traceback) and exits 1; SystemExit passes.
    try:
        run_job(cfg)
    except SSDError as e:
        fail(e)


def main(argv: Sequence[str] | None = None) -> None:
    import hydra

    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        check_choices(argv)
    except SSDError as e:
        fail(e)
    say_if_random(argv)
    register()
    sys.argv = [sys.argv[0], *argv]
    # The task by its importable name: under `python -m ssd.run` this file is __main__, and submitit must
    # unpickle the task on a compute node, where __main__ is submitit's own.
    from ssd.run import _task as task

    # An absolute config_path (= "../conf" from this file) also works when main() is called from a module.
    try:
        with hydra_errors(argv):
            hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")(task)()
    except SSDError as e:
        fail(e)


if __name__ == "__main__":
    main()
