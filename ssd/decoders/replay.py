"""Decoders whose acceptance is replayed from a recorded run: speed at real shapes with random weights.

A random-weight model of the real shape costs what the real one does per forward, but accepts nothing.
These subclasses run the real decoder, drafting, verification forward, acceptance check and its host
sync included, and then accept what a recorded run of the same decoder accepted, iteration by iteration
(streamed in order, cycled, clipped to what the iteration allows). They are not in the registry: they
time decoding (scripts/forward_cost.py); they do not produce results.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from itertools import cycle
from pathlib import Path

import torch

from ssd.config import FastDLLMConfig, SSDConfig
from ssd.decoders.fast_dllm import FastDLLM
from ssd.decoders.ssd import SelfSpeculative
from ssd.decoders.tree import Layout
from ssd.models.cache import BlockForward
from ssd.results.runfolder import SAMPLES


def accepted_lengths(folder: Path) -> list[int]:
    """Tokens committed per iteration over all samples of a run folder, in sample order."""
    samples = [json.loads(line) for line in (Path(folder) / SAMPLES).read_text().splitlines()]
    return [a for s in samples for a in s["accepted"]]


class ReplaySSD(SelfSpeculative):
    """SSD whose accepted lengths come from a recorded run (the real check still runs and syncs)."""

    def __init__(self, cfg: SSDConfig, pattern: list[int]) -> None:
        super().__init__(cfg)
        if cfg.tree or cfg.tree_budget:
            raise ValueError(
                "ReplaySSD replays the chain's accepted depths: a tree's branches are not recorded"
            )
        self.pattern: Iterator[int] = cycle(pattern)

    def accept(self, layout: Layout, *args: torch.Tensor) -> int:
        """The real walk (and its sync) runs; the node kept is the recorded depth down the first
        children (the chain: its node of that depth), clipped to the tree."""
        super().accept(layout, *args)
        want, node = next(self.pattern), 0
        while layout.depth[node] < want and node in layout.parent:
            node = layout.parent.index(node)
        return node


class ReplayFastDLLM(FastDLLM):
    """Fast-dLLM committing, per iteration, the recorded number of its most confident positions."""

    def __init__(self, cfg: FastDLLMConfig, pattern: list[int]) -> None:
        super().__init__(cfg)
        self.pattern: Iterator[int] = cycle(pattern)

    def step(self, fwd: BlockForward, confidence: torch.Tensor, at_refresh: bool) -> torch.Tensor:
        rule = super().step(fwd, confidence, at_refresh)
        if at_refresh and fwd.first_position_from_refresh:
            return rule
        k = min(next(self.pattern), int(torch.isfinite(confidence).sum()))  # a second sync: timing only
        return torch.zeros_like(rule).scatter(-1, confidence.topk(max(k, 1), dim=-1).indices, True)
