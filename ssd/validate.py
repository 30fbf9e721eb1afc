"""Strict configs: every key in the schema, every value in its declared range (ssd/bounds.py), and Hydra's
own composition errors rewritten as one line naming the key, the bad value and what to pass instead.

A job's resolved config is checked before anything runs (`check_config`), so a value outside its meaning
(a negative temperature, a threshold above 1, `limit=0`, a misspelt key added with `+`) never runs silently.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import os
import re
from collections.abc import Iterator, Sequence
from typing import Any

from ssd.bounds import Choices, check_of
from ssd.config import SCHEMAS, ModelConfig, RunConfig, TimingConfig, WandbConfig, parse_shard
from ssd.errors import SSDError
from ssd.registry import did_you_mean

# The nested parts of a run config. Decoder and benchmark are picked by name (`schema_for`); the others
# have one schema each (FIXED).
FIXED = {"model": ModelConfig, "wandb": WandbConfig, "timing": TimingConfig}
SECTIONS = ("model", "decoder", "benchmark", "wandb", "timing")


def schema_for(section: str, values: dict[str, Any]) -> type:
    """The dataclass a config section was composed from: picked by the section's `name`."""
    if section in FIXED:
        return FIXED[section]
    name = str(values.get("name"))
    schemas = SCHEMAS[section]
    if f"_schema_{name}" not in schemas:
        known = sorted(k.removeprefix("_schema_") for k in schemas)
        raise SSDError(f"{section}.name={name} is not a known {section}: {did_you_mean(name, known)}")
    return schemas[f"_schema_{name}"]


def _field_names(schema: type) -> list[str]:
    return [f.name for f in dataclasses.fields(schema)]


def _where(schema: type) -> str:
    """How a message names the part of the config a schema describes: `the ssd decoder`, `model`."""
    for section, schemas in SCHEMAS.items():
        for key, node in schemas.items():
            if node is schema and key.startswith("_schema_"):
                return f"the {key.removeprefix('_schema_')} {section}"
    names = {schema: section for section, schema in FIXED.items()} | {RunConfig: "the run config"}
    return names.get(schema, schema.__name__)


def unknown_key(key: str, schema: type) -> SSDError:
    """One line for a key that is not in the schema, with the closest valid key."""
    prefix, _, leaf = key.rpartition(".")
    names = _field_names(schema)
    close = difflib.get_close_matches(leaf, names, n=1, cutoff=0.6)
    full = [f"{prefix}.{k}" if prefix else k for k in names]
    hint = f"did you mean {full[names.index(close[0])]}? " if close else ""
    return SSDError(
        f"unknown key {key} ({_where(schema)} has no such setting): {hint}valid keys: {', '.join(full)}"
    )


def _check_section(prefix: str, schema: type, values: dict[str, Any]) -> None:
    names = _field_names(schema)
    for key in values:
        if key not in names:
            raise unknown_key(f"{prefix}.{key}" if prefix else key, schema)
    for f in dataclasses.fields(schema):
        check = check_of(f)
        value = values.get(f.name)
        if check is not None and f.name in values and not check.holds(value):
            key = f"{prefix}.{f.name}" if prefix else f.name
            shown = "null" if value is None else value
            if isinstance(check, Choices):
                raise SSDError(f"{key}={shown} is not valid: choose {check.describe()}")
            raise SSDError(f"{key}={shown} is out of range: pass a value {check.describe()}")
    relations = getattr(schema, "relations", None)
    if relations is not None:
        for problem in relations(schema(**values)):
            raise SSDError(problem)


def check_config(resolved: dict[str, Any]) -> None:
    """Raise SSDError (one line) unless every key of a job's resolved config is in its schema and every
    value is in its declared range."""
    top = {k: (None if k in SECTIONS else v) for k, v in resolved.items()}
    _check_section("", RunConfig, top)
    for section in SECTIONS:
        values = resolved.get(section)
        if isinstance(values, dict):
            _check_section(section, schema_for(section, values), values)
    shard, limit = parse_shard(resolved.get("shard")), resolved.get("limit")
    if shard is not None and limit is not None and shard[0] >= limit:  # known before the data is read
        raise SSDError(
            f"shard={resolved['shard']} selects none of the job's limit={limit} samples: split them into "
            f"at most {limit} shards (shard=i/n with n <= {limit})"
        )


def check_device(name: str) -> None:
    """A `model.device` that names a GPU this machine has (`auto` and `cpu` always do)."""
    if name in ("auto", "cpu"):
        return
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    index = int(name.partition(":")[2] or 0)
    if count == 0:
        raise SSDError(
            f"model.device={name} but torch sees no CUDA GPU here: pass model.device=cpu (or auto, which "
            f"picks a GPU where there is one)"
        )
    if index >= count:
        raise SSDError(
            f"model.device={name} but this machine has {count} GPU(s) (cuda:0..cuda:{count - 1}): pass one "
            f"of those, or model.device=auto"
        )


# --- Hydra's composition errors, one line each ----------------------------------------------------------

_KINDS = {"Integer": "an integer", "Float": "a number", "Boolean": "true or false", "String": "a string"}


def _override_value(key: str, argv: Sequence[str]) -> str | None:
    for arg in reversed(argv):  # the last one wins, as in Hydra
        name, eq, value = arg.lstrip("+~").partition("=")
        if name == key:
            return value if eq else None
    return None


def _cause(error: BaseException) -> BaseException | None:
    """The OmegaConf error (with a `full_key`) behind a Hydra composition error, if any."""
    from omegaconf.errors import OmegaConfBaseException

    seen = error
    while seen is not None:
        if isinstance(seen, OmegaConfBaseException) and getattr(seen, "full_key", None):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _nullable(object_type: Any, leaf: str) -> bool:
    if not dataclasses.is_dataclass(object_type):
        return False
    fields = {f.name: f for f in dataclasses.fields(object_type)}
    return leaf in fields and "None" in str(fields[leaf].type)


def explain(error: BaseException, argv: Sequence[str]) -> str:
    """One line for an error Hydra or OmegaConf raised while composing the config from `argv`."""
    from hydra.errors import OverrideParseException

    if isinstance(error, OverrideParseException):
        from hydra.core.override_parser.overrides_parser import OverridesParser

        parser = OverridesParser.create()
        for arg in argv:
            try:
                parser.parse_overrides([arg])
            except OverrideParseException as e:
                first = str(e).splitlines()[0]
                return f"cannot parse the override '{arg}' ({first}): write key=value, quoting special values"
        return f"cannot parse the overrides ({str(error).splitlines()[0]}): write key=value"
    cause = _cause(error)
    if cause is None:
        return " ".join(str(error).replace("Set the environment variable HYDRA_FULL_ERROR=1", "").split())
    key = str(cause.full_key)
    message = str(getattr(cause, "msg", "") or cause).splitlines()[0]
    object_type = getattr(cause, "object_type", None)
    value = _override_value(key, argv)
    if "not in" in message and dataclasses.is_dataclass(object_type):
        return str(unknown_key(key, object_type))
    if match := re.search(r"Invalid value '([^']*)', expected one of \[([^\]]*)\]", message):
        return f"{key}={match[1]} is not valid: choose one of {match[2]}"
    if match := re.search(r"Value '([^']*)' of type '\w+' could not be converted to (\w+)", message):
        kind = _KINDS.get(match[2], match[2].lower())
        null = " or null" if _nullable(object_type, key.rpartition(".")[2]) else ""
        return f"{key}={value if value is not None else match[1]} is not {kind}: pass {kind}{null}"
    if match := re.search(r"Value '([^']*)' is not a valid bool", message):
        return f"{key}={match[1]} is not true or false: pass true or false"
    if "does not support deletion" in message:
        return f"{key} cannot be deleted (~{key}): every setting has a value; set it instead ({key}=…)"
    return f"{key}: {message}"


@contextlib.contextmanager
def hydra_errors(argv: Sequence[str]) -> Iterator[None]:
    """Let Hydra's composition errors reach us (HYDRA_FULL_ERROR) and turn them into SSDError lines."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    os.environ["HYDRA_FULL_ERROR"] = "1"
    try:
        yield
    except (HydraException, OmegaConfBaseException) as e:
        raise SSDError(explain(e, argv)) from None
