"""Test helpers shared by several test modules."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import torch

REPO = Path(__file__).resolve().parent.parent
NOTEBOOK = REPO / "notebooks" / "compare_sweeps.ipynb"
# The environment variables the notebook reads (its first cell).
NOTEBOOK_ENV = ("SSD_RUNS", "SSD_SWEEP_A", "SSD_SWEEP_B", "SSD_RUNS_A", "SSD_RUNS_B")


class CountingModel(torch.nn.Module):
    """Wraps a model; records the token tensor of every call (its batch size is the forward's)."""

    def __init__(self, model) -> None:
        super().__init__()
        self.inner = model
        self.calls: list[torch.Tensor] = []

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self.inner, name)

    def forward(self, tokens, cache=None, span=None, rows=None, pad=None, candidates=1):
        self.calls.append(tokens.clone())
        return self.inner(tokens, cache=cache, span=span, rows=rows, pad=pad, candidates=candidates)

    def refresh(self, tokens, mode, start, end, pad=None, cache=None):
        self.calls.append(tokens.clone())
        return self.inner.refresh(tokens, mode, start, end, pad=pad, cache=cache)


def random_prompt(vocab: int, seed: int, length: int = 12) -> list[int]:
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(8, vocab, (length,), generator=gen).tolist()


def real_data(name: str) -> Path:
    """The data folder holding the real test set `name` (what `make data` writes), materialised if missing."""
    from ssd.benchmarks.data import SOURCES, ensure, materialise
    from ssd.errors import SSDError

    root = REPO / "data"
    try:
        ensure(name, root)
    except SSDError:
        materialise(SOURCES[name], root)
    return root


def load_script(name: str) -> ModuleType:
    """scripts/<name>.py as a module (scripts/ is not a package)."""
    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def tiny_job(ckpt: Path, out: Path, **settings: Any) -> Any:
    """The composed config of a small stepwise job on the tiny LLaDA at `ckpt` (arith, 3 samples, 16
    tokens), writing under `out`; `settings` (Hydra override keys) change or add to it."""
    from hydra import compose, initialize_config_dir

    from ssd.config import register
    from ssd.run import CONF_DIR

    base = {
        "model": "tiny_llada",
        "model.path": ckpt,
        "benchmark": "arith",
        "decoder": "stepwise",
        "decoder.gen_length": 16,
        "decoder.block_length": 8,
        "limit": 3,
        "output_dir": out,
    }
    register()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("config", overrides=[f"{k}={v}" for k, v in {**base, **settings}.items()])


def execute_notebook(monkeypatch: pytest.MonkeyPatch, **env: str) -> Any:
    """notebooks/compare_sweeps.ipynb executed with only these of its environment variables set; the
    executed notebook. Raises CellExecutionError, with the cell's traceback, if any cell fails; skips the
    calling test without nbformat or nbclient."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    for name in NOTEBOOK_ENV:
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(
        nb, timeout=180, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOK.parent)}}
    )
    client.execute()
    return nb
