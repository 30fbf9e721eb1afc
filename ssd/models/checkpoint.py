"""Official checkpoint layout: `config.json`, safetensors shards named by `model.safetensors.index.json`
(or one `model.safetensors`), tokenizer files. Reads and writes it; never runs remote code.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from ssd.errors import SSDError

# A model class with the official layout's hooks (from_config, config_dict, tokenizer): the subclasses of
# DiffusionLM. Bound to nn.Module, not imported, so that base.py and this module do not import each other.
Model = TypeVar("Model", bound=torch.nn.Module)

INDEX = "model.safetensors.index.json"
SINGLE = "model.safetensors"
HUB_FILES = [
    "config.json",
    "*.safetensors",
    INDEX,
    "tokenizer*",
    "special_tokens_map.json",
    "vocab.json",
    "merges.txt",
    "generation_config.json",
]


def parse_config(schema: type, raw: dict[str, Any], arch: str, supported: dict[str, set]) -> Any:
    """Build the architecture's config dataclass from `config.json`, naming missing or unsupported keys."""
    fields = {f.name for f in dataclasses.fields(schema)}
    required = [
        f.name
        for f in dataclasses.fields(schema)
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    missing = [k for k in required if k not in raw]
    if missing:
        raise SSDError(f"config.json is not a {arch} config: missing {', '.join(missing)}")
    for key, allowed in supported.items():
        if key in raw and raw[key] not in allowed:
            raise SSDError(
                f"{arch} config.json has {key}={raw[key]!r}; this implementation supports {allowed}"
            )
    return schema(**{k: v for k, v in raw.items() if k in fields})


def resolve(path: str | Path) -> Path:
    """A local checkpoint folder as given, or a hub id downloaded to the local hub cache."""
    local = Path(path).expanduser()
    if local.is_dir():
        return local
    looks_like_id = str(path).count("/") == 1 and not str(path).startswith((".", "/", "~"))
    if not looks_like_id:
        raise SSDError(
            f"checkpoint folder '{path}' does not exist: pass model.path=<folder with config.json "
            f"and safetensors> or a hub id such as GSAI-ML/LLaDA-8B-Instruct"
        )
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(str(path), allow_patterns=HUB_FILES))
    except Exception as e:  # any hub failure (offline, gated, unknown id) ends the same way for the user
        raise SSDError(
            f"cannot fetch '{path}' from the Hugging Face hub ({type(e).__name__}): "
            f"download it where the hub is "
            f"reachable (`hf download {path} --local-dir DIR`) and pass model.path=DIR"
        ) from None


def damaged(file: Path, error: BaseException) -> SSDError:
    """One line naming a checkpoint file that cannot be read, and what to do about it."""
    detail = str(error).splitlines()[0] if str(error) else type(error).__name__
    return SSDError(
        f"checkpoint file {file} is damaged or truncated ({type(error).__name__}: {detail}): download or "
        f"copy it again"
    )


def read_json(file: Path) -> dict[str, Any]:
    """A checkpoint's JSON file (config.json, the shard index), or an SSDError naming it."""
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise damaged(file, e) from None
    if not isinstance(data, dict):
        raise damaged(file, ValueError(f"a JSON {type(data).__name__}, not an object"))
    return data


def weight_files(folder: Path) -> dict[str, Path]:
    """Parameter name -> the shard holding it, checked against what is on disk."""
    if (folder / INDEX).is_file():
        weight_map = read_json(folder / INDEX).get("weight_map")
        if not isinstance(weight_map, dict):
            raise damaged(folder / INDEX, KeyError("no weight_map"))
        shards = {name: folder / shard for name, shard in weight_map.items()}
        absent = sorted({p.name for p in shards.values() if not p.is_file()})
        if absent:
            raise SSDError(
                f"checkpoint {folder} is incomplete: shard(s) {', '.join(absent)} named in {INDEX} "
                f"are missing; download them again"
            )
        return shards
    if (folder / SINGLE).is_file():
        try:
            with safe_open(folder / SINGLE, "pt") as f:
                return {name: folder / SINGLE for name in f.keys()}  # noqa: SIM118 (safe_open is no dict)
        except Exception as e:  # safetensors raises its own error type for a bad header
            raise damaged(folder / SINGLE, e) from None
    raise SSDError(
        f"checkpoint folder {folder} has no weights ({INDEX} or {SINGLE}): point model.path at "
        f"a complete checkpoint"
    )


def pick_device_dtype(device: str, dtype: str) -> tuple[torch.device, torch.dtype]:
    dev = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device)
    if dtype == "auto":
        return dev, torch.bfloat16 if dev.type == "cuda" else torch.float32
    if dtype not in ("float32", "bfloat16", "float16"):
        raise SSDError(f"unknown dtype '{dtype}': choose auto, float32, bfloat16 or float16")
    return dev, getattr(torch, dtype)


def load_model(cls: type[Model], path: str | Path, dtype: str = "auto", device: str = "auto") -> Model:
    folder = resolve(path)
    if not (folder / "config.json").is_file():
        raise SSDError(
            f"checkpoint folder {folder} has no config.json: point model.path at a checkpoint folder"
        )
    dev, dt = pick_device_dtype(device, dtype)
    raw = read_json(folder / "config.json")
    with torch.device("meta"):
        try:
            model = cls.from_config(raw)
        except (TypeError, ValueError) as e:  # values of the wrong kind (a string where a size belongs)
            raise SSDError(
                f"checkpoint file {folder / 'config.json'} does not describe a model: {e}"
            ) from None
    expected = model.state_dict()
    files = weight_files(folder)
    missing = sorted(set(expected) - set(files))
    unexpected = sorted(set(files) - set(expected))
    if missing or unexpected:
        detail = "; ".join(
            s
            for s in (
                f"missing {len(missing)} parameter(s), e.g. {missing[0]}" if missing else "",
                f"unexpected {len(unexpected)}, e.g. {unexpected[0]}" if unexpected else "",
            )
            if s
        )
        raise SSDError(
            f"checkpoint {folder} does not match the {cls.__name__} architecture ({detail}): "
            f"is model.name right for this folder?"
        )
    model = model.to_empty(device=dev).to(dt)
    by_file: dict[Path, list[str]] = {}
    for name, file in files.items():
        by_file.setdefault(file, []).append(name)
    params = model.state_dict()
    for file, names in by_file.items():
        for name, tensor in _tensors(file, names, str(dev)):
            if tensor.shape != params[name].shape:
                raise SSDError(
                    f"checkpoint {folder}: {name} has shape {tuple(tensor.shape)}, the config "
                    f"implies {tuple(params[name].shape)}; config.json and weights disagree"
                )
            params[name].copy_(tensor)
    model.tokenizer = load_tokenizer(folder)
    return model.eval()


def _tensors(file: Path, names: list[str], device: str) -> Iterator[tuple[str, torch.Tensor]]:
    """The named tensors of one safetensors shard, one at a time, or an SSDError naming the shard."""
    try:
        with safe_open(file, "pt", device=device) as f:
            for name in names:
                yield name, f.get_tensor(name)
    except Exception as e:  # safetensors' own error type (truncated, corrupt header), or OSError
        raise damaged(file, e) from None


def load_tokenizer(folder: Path) -> Any:
    """The checkpoint's tokenizer through transformers' native classes (no remote code)."""
    from transformers import PreTrainedTokenizerFast, Qwen2Tokenizer

    if (folder / "tokenizer.json").is_file():
        return PreTrainedTokenizerFast.from_pretrained(str(folder))
    if (folder / "vocab.json").is_file() and (folder / "merges.txt").is_file():
        return Qwen2Tokenizer.from_pretrained(str(folder))
    raise SSDError(
        f"checkpoint folder {folder} has no tokenizer (tokenizer.json, or vocab.json + merges.txt)"
    )


def save_checkpoint(model: torch.nn.Module, folder: str | Path, max_shard_bytes: int = 2**30) -> Path:
    """Write `model` in the official layout: config.json, sharded safetensors + index, tokenizer."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(model.config_dict(), indent=2) + "\n")
    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for name, tensor in model.state_dict().items():
        nbytes = tensor.numel() * tensor.element_size()
        if shards[-1] and size + nbytes > max_shard_bytes:
            shards.append({})
            size = 0
        shards[-1][name] = tensor.detach().contiguous().cpu()
        size += nbytes
    weight_map = {}
    for i, shard in enumerate(shards, 1):
        shard_name = f"model-{i:05d}-of-{len(shards):05d}.safetensors"
        save_file(shard, str(folder / shard_name), metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(shard, shard_name))
    total = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    tmp = folder / (INDEX + ".tmp")
    tmp.write_text(json.dumps(index, indent=2) + "\n")
    os.replace(tmp, folder / INDEX)
    if model.tokenizer is not None:
        model.tokenizer.save_pretrained(str(folder))
    return folder
