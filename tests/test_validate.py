"""Strict configs: every schema field declares what it accepts, every value outside it is one line, and
every shipped option and experiment still passes."""

from __future__ import annotations

import copy
import dataclasses
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from ssd.bounds import Bounds, Choices, check_of
from ssd.config import SCHEMAS, ModelConfig, RunConfig, SSDConfig, TimingConfig, WandbConfig, register
from ssd.errors import SSDError
from ssd.run import CONF_DIR, options, resolve
from ssd.validate import check_config, check_device

REPO = Path(__file__).resolve().parent.parent
EXPERIMENTS = options("experiment")

# (section, schema) for every schema: the run config itself, the model, wandb, each decoder and benchmark.
SCHEMA_LIST = [("", RunConfig), ("model", ModelConfig), ("wandb", WandbConfig), ("timing", TimingConfig)] + [
    (group, schema) for group in ("decoder", "benchmark") for schema in SCHEMAS[group].values()
]
FIELDS = [(section, schema, f) for section, schema in SCHEMA_LIST for f in dataclasses.fields(schema)]
NUMERIC = [(s, c, f) for s, c, f in FIELDS if str(f.type).split(" |")[0] in ("int", "float")]
BOUNDED = [(s, c, f) for s, c, f in FIELDS if isinstance(check_of(f), Bounds)]
CHOICES = [(s, c, f) for s, c, f in FIELDS if isinstance(check_of(f), Choices)]


def _id(item: tuple[str, type, dataclasses.Field]) -> str:
    return f"{item[1].__name__}.{item[2].name}"


def compose_run(overrides: list[str], hydra: bool = False) -> Any:
    register()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("config", overrides=overrides, return_hydra_config=hydra)


def config_for(section: str, schema: type) -> dict[str, Any]:
    """A resolved, valid config whose `section` is composed from `schema`."""
    overrides = []
    for group in ("decoder", "benchmark"):
        for key, node in SCHEMAS[group].items():
            if node is schema and section == group:
                overrides.append(f"{group}={key.removeprefix('_schema_')}")
    resolved = resolve(compose_run(overrides))
    check_config(resolved)  # the starting point is valid
    return resolved


def with_value(resolved: dict[str, Any], section: str, key: str, value: Any) -> dict[str, Any]:
    changed = copy.deepcopy(resolved)
    (changed[section] if section else changed)[key] = value
    return changed


def outside(bounds: Bounds, is_int: bool) -> list[Any]:
    """Values just outside `bounds` (and null where null is not allowed)."""
    step = 1 if is_int else 1e-3
    values: list[Any] = [] if bounds.nullable else [None]
    if bounds.lo is not None:
        values.append(bounds.lo if bounds.lo_open else bounds.lo - step)
    if bounds.hi is not None:
        values.append(bounds.hi if bounds.hi_open else bounds.hi + step)
    if not is_int:
        values.append(float("nan"))
    return values


def inside(bounds: Bounds) -> list[Any]:
    return [v for v in (bounds.lo, bounds.hi) if v is not None and bounds.holds(v)]


@pytest.mark.parametrize("item", NUMERIC, ids=_id)
def test_every_numeric_field_declares_its_range(item: tuple[str, type, dataclasses.Field]) -> None:
    """A new numeric knob without a declared range fails here (knob(default, Bounds(...)) or Free(why))."""
    assert check_of(item[2]) is not None, f"{_id(item)} has no declared range (ssd/bounds.py knob)"


@pytest.mark.parametrize("item", BOUNDED, ids=_id)
def test_values_outside_a_range_are_one_line_errors(item: tuple[str, type, dataclasses.Field]) -> None:
    section, schema, f = item
    bounds = check_of(f)
    resolved = config_for(section, schema)
    key = f"{section}.{f.name}" if section else f.name
    for value in outside(bounds, str(f.type).startswith("int")):
        with pytest.raises(SSDError) as info:
            check_config(with_value(resolved, section, f.name, value))
        message = str(info.value)
        assert "\n" not in message and message.startswith(f"{key}=") and bounds.describe() in message
    tied = f.name in ("draft_length", "block_length", "gen_length") or f.name.startswith("k_")
    tied |= schema is SSDConfig and f.name in ("threshold", "factor")  # meaningful with policy=fast_dllm
    for value in [] if tied else inside(bounds):  # the ends inside the range pass (tied ones: test_relations)
        check_config(with_value(resolved, section, f.name, value))


@pytest.mark.parametrize("item", CHOICES, ids=_id)
def test_values_outside_the_choices_are_one_line_errors(item: tuple[str, type, dataclasses.Field]) -> None:
    section, schema, f = item
    resolved = config_for(section, schema)
    for value in check_of(f).values:
        check_config(with_value(resolved, section, f.name, value))
    with pytest.raises(SSDError, match=rf"^{section}.{f.name}=nonsense is not valid: choose one of "):
        check_config(with_value(resolved, section, f.name, "nonsense"))


@pytest.mark.parametrize(("section", "schema"), SCHEMA_LIST, ids=[c.__name__ for _, c in SCHEMA_LIST])
def test_a_key_outside_the_schema_is_refused_with_the_closest_one(section: str, schema: type) -> None:
    resolved = config_for(section, schema)
    name = next(f.name for f in dataclasses.fields(schema) if len(f.name) > 4)
    typo = name[:-2] + name[-1] + name[-2]  # two letters swapped
    key = f"{section}.{typo}" if section else typo
    with pytest.raises(SSDError) as info:
        check_config(with_value(resolved, section, typo, 1))
    full = f"{section}.{name}" if section else name
    assert str(info.value).startswith(f"unknown key {key} ") and f"did you mean {full}?" in str(info.value)


def test_relations() -> None:
    ssd = config_for("decoder", SCHEMAS["decoder"]["_schema_ssd"])
    block = ssd["decoder"]["block_length"]
    check_config(with_value(ssd, "decoder", "draft_length", block))
    with pytest.raises(SSDError, match=rf"draft_length={block + 1} exceeds decoder.block_length={block}"):
        check_config(with_value(ssd, "decoder", "draft_length", block + 1))
    fast = with_value(ssd, "decoder", "policy", "fast_dllm")  # speculation over Fast-dLLM: its knobs mean
    check_config(with_value(fast, "decoder", "threshold", 1.0))  # something, its ends pass
    with pytest.raises(SSDError, match=r"decoder.threshold .* set decoder.policy=fast_dllm or drop them"):
        check_config(with_value(ssd, "decoder", "threshold", 0.5))
    psd = config_for("decoder", SCHEMAS["decoder"]["_schema_psd"])
    check_config(with_value(psd, "decoder", "draft_length", 0))  # PSD without drafts: Fast-dLLM's policy
    diffuspec = config_for("decoder", SCHEMAS["decoder"]["_schema_diffuspec"])
    with pytest.raises(SSDError, match=r"k_min=31, k_init=30, k_max=30 are out of order"):
        check_config(with_value(diffuspec, "decoder", "k_min", 31))
    with pytest.raises(SSDError, match=r"shard='4/4' is not 'i/n'"):
        check_config(with_value(diffuspec, "", "shard", "4/4"))


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_experiment_and_arm_passes(name: str) -> None:
    """`make sweep` and the other shipped sweeps keep running: each swept value composes and passes."""
    cfg = compose_run([f"+experiment={name}"], hydra=True)
    for key, values in (cfg.hydra.sweeper.params or {}).items():
        for value in str(values).split(","):
            job = compose_run([f"+experiment={name}", f"{key}={value.strip()}"])
            check_config(OmegaConf.to_container(job, resolve=True, enum_to_str=True))


def test_a_gpu_that_is_not_there() -> None:
    check_device("cpu")
    check_device("auto")
    with pytest.raises(SSDError, match=r"^model.device=cuda:99 but "):
        check_device("cuda:99")


def run_cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    env.pop("HYDRA_FULL_ERROR", None)
    cmd = [sys.executable, "-m", "ssd.run", "benchmark=arith", "limit=1", "output_dir=/nonexistent/x", *args]
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)


CLI_CASES = [
    (
        ["decoder=ssd", "decoder.draft_lenght=4"],
        r"^error: unknown key decoder.draft_lenght \(the ssd decoder",
    ),
    (["decoder=ssd", "+decoder.draft_lenght=4"], r"did you mean decoder.draft_length\?"),
    (["decoder.cache=full"], r"^error: decoder.cache=full is not valid: choose one of none, prefix, dual$"),
    (["limit=abc"], r"^error: limit=abc is not an integer: pass an integer or null$"),
    (["limit=["], r"^error: cannot parse the override 'limit=\['"),
    (["~decoder.cache"], r"^error: decoder.cache cannot be deleted"),
    (["limit=0"], r"^error: limit=0 is out of range: pass a value >= 1 or null$"),
    (["decoder=fast_dllm", "decoder.threshold=1.5"], r"^error: decoder.threshold=1.5 is out of range"),
]


@pytest.mark.parametrize(("args", "pattern"), CLI_CASES, ids=[" ".join(a) for a, _ in CLI_CASES])
def test_the_runner_says_it_in_one_line(args: list[str], pattern: str) -> None:
    proc = run_cli(*args)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and re.search(pattern, lines[0]), proc.stderr
