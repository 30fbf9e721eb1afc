"""Fast-dLLM's caches, and `BlockForward`: the one door through which decoders call a model.

Semantics (docs/algorithms.md, "Caches"):
- none: every forward runs the full sequence.
- prefix: a refresh (a full forward at the block start) keeps the keys/values of `[:start]`; later
  forwards feed `x[start:]` against them.
- dual: a refresh keeps the keys/values of the whole sequence; later forwards feed only the current
  block and overwrite its keys/values in place. The suffix stays as it was at the refresh: that staleness
  is the approximation.

Every forward takes a *batch of candidate states sharing one cache*: the cache holds each sequence once
and a verification forward evaluates several candidate states of a sequence against it, in one of two
layouts (`VerifyLayout`): batch (a row per candidate, the cache copied per row) or tree (ssd/models/tree.py).
"""

from __future__ import annotations

from typing import Any, Protocol

import torch

from ssd.config import CacheMode, VerifyLayout
from ssd.models.layers import AttendHook, Window, sdpa
from ssd.models.tree import shared_attention, tree_mask


class Denoiser(Protocol):
    """What BlockForward needs of a model (DiffusionLM provides it): named here, not imported, so that
    base.py (which builds caches) and this module do not import each other."""

    predicts_from_previous_position: bool

    @property
    def device(self) -> torch.device: ...

    def __call__(self, tokens: torch.Tensor, **kwargs: Any) -> torch.Tensor: ...

    def refresh(self, tokens: torch.Tensor, mode: CacheMode, start: int, end: int, **kwargs: Any) -> Any: ...


class KVCache:
    """Per-layer keys/values of N sequences in static buffers [N, Hkv, capacity, D].

    A refresh writes the whole sequence into `[:T]`; the buffers are allocated by the first refresh
    and overwritten in place by the next ones (same N and T within a batch), so a decoding loop
    allocates no cache memory. `spare_rows` candidate windows fit behind the sequence: the tree layout
    writes its candidates' keys there and attends to the buffer in place. In prefix mode only
    `[:start]` is read from the cached part; the window's keys are always fresh.
    """

    def __init__(
        self,
        mode: CacheMode,
        pad: torch.Tensor | None = None,
        spare_rows: int = 0,
        row_invariant: bool = False,
    ) -> None:
        if mode is CacheMode.none:
            raise ValueError("KVCache needs the prefix or dual mode")
        self.mode, self.pad, self.spare_rows = mode, pad, spare_rows
        # The tree computed so that a row's numbers do not depend on its slot (the bit-exact mode).
        self.row_invariant = row_invariant
        self.keys: list[torch.Tensor] = []
        self.values: list[torch.Tensor] = []
        self.start = self.end = self.total = 0

    def begin(self, start: int, end: int) -> None:
        """A refresh for the block [start, end) is about to fill the buffers."""
        self.start, self.end = start, end

    def record(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> None:
        """Record hook of the refresh forward: keep the whole sequence's keys/values."""
        t = self.total = k.shape[2]
        if layer == len(self.keys) or not self._fits(self.keys[layer], k):
            capacity = t + self.spare_rows * self.window_length(t)
            shape = (*k.shape[:2], capacity, k.shape[3])
            buffers = k.new_empty(shape), v.new_empty(shape)
            if layer == len(self.keys):
                self.keys.append(buffers[0])
                self.values.append(buffers[1])
            else:
                self.keys[layer], self.values[layer] = buffers
        self.keys[layer][:, :, :t].copy_(k)
        self.values[layer][:, :, :t].copy_(v)

    @staticmethod
    def _fits(buffer: torch.Tensor, k: torch.Tensor) -> bool:
        same = buffer.shape[:2] == k.shape[:2] and buffer.shape[3] == k.shape[3]
        return same and buffer.shape[2] >= k.shape[2] and buffer.dtype == k.dtype

    def install(self, start: int, end: int, parts: dict[int, tuple[KVCache, int]]) -> None:
        """Begin the block [start, end) with keys/values computed elsewhere: sequence i's are row j of
        another cache's refresh (`parts[i] = (cache, j)`: a seed's full row, or a refresh of some rows)."""
        self.begin(start, end)
        for layer in range(len(self.keys)):
            for i, (src, j) in parts.items():
                t = src.total
                self.keys[layer][i, :, :t].copy_(src.keys[layer][j, :, :t])
                self.values[layer][i, :, :t].copy_(src.values[layer][j, :, :t])
        self.total = next(iter(parts.values()))[0].total

    def _room(self, layer: int, length: int) -> None:
        """Grow a layer's buffers to `length` keys (only if a forward brings more candidates than the
        spare rows planned for)."""
        if self.keys[layer].shape[2] < length:
            for store in (self.keys, self.values):
                old = store[layer]
                store[layer] = old.new_empty((*old.shape[:2], length, old.shape[3]))
                store[layer][:, :, : self.total].copy_(old[:, :, : self.total])

    def window_length(self, total_length: int) -> int:
        """Length of the token window a cached forward feeds, for a sequence of `total_length`."""
        return (self.end if self.mode is CacheMode.dual else total_length) - self.start

    def window(self, width: int, rows: torch.Tensor | None, candidates: int = 1) -> Window:
        """Positions and attention of a cached forward over windows [R, candidates · width].

        Row r holds `candidates` windows of sequence rows[r], side by side (the tree layout, more than
        one) or a single window (rows None: row r is sequence r, and its window is written into the
        buffers in place; otherwise each row gets its own copy of its sequence's cache: the batch layout).
        """
        device = self.keys[0].device
        positions = torch.arange(self.start, self.start + width, device=device).repeat(candidates)
        pad = self.pad if self.pad is None or rows is None else self.pad[rows]
        if pad is not None:
            positions = (positions[None, :] - pad[:, None]).clamp(min=0)
        real = None if pad is None else torch.arange(self.total, device=device)[None, :] >= pad[:, None]
        if candidates > 1:
            return Window(positions, attend=self._tree(rows, real, candidates, width))
        mask = None if real is None else real[:, None, None, :]
        if rows is None:
            return Window(positions, attend=self._in_place(width, mask))
        return Window(positions, attend=self._batch(rows, width, mask))

    def _in_place(self, width: int, mask: torch.Tensor | None) -> AttendHook:
        s, t = self.start, self.total

        def attend(layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
            ck, cv = self.keys[layer][:, :, :t], self.values[layer][:, :, :t]
            ck[:, :, s : s + width] = k
            cv[:, :, s : s + width] = v
            return sdpa(q, ck, cv, mask)

        return attend

    def _batch(self, rows: torch.Tensor, width: int, mask: torch.Tensor | None) -> AttendHook:
        s, e, t = self.start, self.start + width, self.total

        def attend(layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
            ck, cv = self.keys[layer][:, :, :t], self.values[layer][:, :, :t]
            if ck.shape[0] == 1:
                ck, cv = ck.expand(rows.shape[0], -1, -1, -1), cv.expand(rows.shape[0], -1, -1, -1)
            else:
                ck, cv = ck[rows], cv[rows]
            keys = torch.cat([ck[:, :, :s], k, ck[:, :, e:]], 2)
            return sdpa(q, keys, torch.cat([cv[:, :, :s], v, cv[:, :, e:]], 2), mask)

        return attend

    def _tree(
        self, rows: torch.Tensor | None, real: torch.Tensor | None, candidates: int, width: int
    ) -> AttendHook:
        """Candidates side by side over one copy of the cache. The cached keys a window may see end at
        `stop`; the candidates' own keys go behind them, each visible to its own candidate only."""
        s, e = self.start, self.end
        stop = s if self.mode is CacheMode.prefix else self.total
        device = self.keys[0].device
        visible = torch.ones(1, stop, dtype=torch.bool, device=device) if real is None else real[:, :stop]
        if self.mode is CacheMode.dual:  # each candidate's window replaces the cached block
            visible[:, s:e] = False
        if self.row_invariant:
            return self._tree_invariant(rows, visible, stop, candidates)
        n = candidates * width
        mask = tree_mask(visible, candidates, width)

        def attend(layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
            if rows is not None:  # some sequences only: their caches are gathered (copied)
                ck, cv = self.keys[layer][rows, :, :stop], self.values[layer][rows, :, :stop]
                return sdpa(q, torch.cat([ck, k], 2), torch.cat([cv, v], 2), mask)
            self._room(layer, stop + n)
            ck, cv = self.keys[layer][:, :, : stop + n], self.values[layer][:, :, : stop + n]
            ck[:, :, stop:] = k
            cv[:, :, stop:] = v
            return sdpa(q, ck, cv, mask)

        return attend

    def _tree_invariant(
        self, rows: torch.Tensor | None, visible: torch.Tensor, stop: int, candidates: int
    ) -> AttendHook:
        def attend(layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
            ck, cv = self.keys[layer][:, :, :stop], self.values[layer][:, :, :stop]
            if rows is not None:
                ck, cv = ck[rows], cv[rows]
            return shared_attention(q, ck, cv, visible.expand(q.shape[0], -1), k, v, candidates)

        return attend


class BlockForward:
    """The model as a decoder sees it while decoding the block `[start, end)`: block logits only.

    `refresh(x, start, end)` begins a block for the sequences x [N, T] (one full forward; fills the
    cache in prefix/dual mode); `self(states, rows)` evaluates candidate states [R, T], row r being a
    state of sequence rows[r], and returns their block logits [R, end - start, V]. Counts every call
    and its number of rows.

    Several candidates of one sequence are evaluated in `layout`: batch (a row each, each with its own
    copy of the cache) or tree (side by side over one copy; ssd/models/tree.py); `max_rows` is the most
    a decoder sends per sequence (the cache keeps room for them). With `bit_exact`, every forward is
    padded to `max_rows` candidate rows per sequence and goes through the same code whatever the
    number of candidates, so a state's numbers do not depend on its row.
    """

    def __init__(
        self,
        model: Denoiser,
        mode: CacheMode,
        pad: torch.Tensor | None = None,
        layout: VerifyLayout = VerifyLayout.auto,
        max_rows: int = 1,
        bit_exact: bool = False,
    ) -> None:
        self.model, self.mode, self.pad = model, CacheMode(mode), pad
        self.layout = resolve_layout(VerifyLayout(layout), model.device)
        self.pad_rows = max_rows if bit_exact else 0
        spare = max_rows if self.layout is VerifyLayout.tree and max_rows > 1 else 0
        self.cache = (
            None if self.mode is CacheMode.none else KVCache(self.mode, pad, spare, row_invariant=bit_exact)
        )
        self.start = self.end = self.sequences = 0
        # Without a cache, candidate forwards may also return the logits of the next `lookahead`
        # positions (the next block's, for a state that fills this one: see SSDConfig.seed_next_block).
        self.lookahead = 0
        # With a cache, the keys/values of full rows that filled a block (with_seeds: per seed, its cache
        # and row there), kept for the sequences whose next block they begin (adopt): sequence -> seed
        self.adopted: dict[int, tuple[KVCache, int]] = {}
        self._seeds: list[tuple[KVCache, int]] = []
        self.nfe = 0
        self.batch_sizes: list[int] = []

    @property
    def first_position_from_refresh(self) -> bool:
        """True when cached forwards cannot predict the block's first position.

        Dream predicts token i at position i-1; with a cache, position start-1 is not recomputed, so
        (as Fast-dLLM does) decoders commit the block's first token from the refresh forward.
        """
        return self.model.predicts_from_previous_position and self.mode is not CacheMode.none

    def refresh(self, x: torch.Tensor, start: int, end: int, rows: list[int] | None = None) -> torch.Tensor:
        """Begin the block for every sequence of x; `rows` may name the sequences that need the forward
        (the others start from a seed: logits they carried over and, with a cache, keys/values they
        `adopt`ed): their logits only."""
        self.start, self.end, self.sequences = start, end, x.shape[0]
        if rows is None:
            self._count(x.shape[0])
            if self.cache is None:
                return self.model(x, span=(start, end), pad=self.pad)
            return self.model.refresh(x, self.mode, start, end, pad=self.pad, cache=self.cache)[0]
        logits, parts = x.new_empty(0), dict(self.adopted)
        if rows:
            self._count(len(rows))
            if self.cache is None:
                return self.model(x[rows], span=(start, end), rows=self._tensor(rows), pad=self.pad)
            pad = None if self.pad is None else self.pad[self._tensor(rows)]
            logits, part = self.model.refresh(x[rows], self.mode, start, end, pad, KVCache(self.mode, pad))
            parts |= {i: (part, j) for j, i in enumerate(rows)}
        if self.cache is not None:
            self.cache.install(start, end, parts)
            self.adopted = {}
        return logits

    def __call__(self, states: torch.Tensor, rows: list[int] | None = None) -> torch.Tensor:
        self._count(states.shape[0])
        return self._evaluate(states, rows)

    def with_seeds(
        self, states: torch.Tensor, rows: list[int], seeds: torch.Tensor, seed_rows: list[int]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One forward of candidate states [R, T] and of `seeds` [F, T], states that fill the block, run
        whole: each is the next block's refresh of its sequence, its logits over that block returned
        ([R, L, V], [F, L, V]) and its keys/values kept until `adopt` or the next call. Counted as one
        forward of R + F rows, run as two calls (one ragged batch would read the weights once). In the
        bit-exact mode each seed runs alone, as the reference refreshes its one prompt, so its numbers
        are the refresh's."""
        if self.cache is None:
            raise RuntimeError("BlockForward.with_seeds: without a cache every row is a full forward already")
        self._count(states.shape[0] + seeds.shape[0])
        out = self._evaluate(states, rows) if states.shape[0] else states.new_empty(0)
        if self.pad_rows:
            alone = [self._seed_refresh(seeds[f : f + 1], [r]) for f, r in enumerate(seed_rows)]
            self._seeds = [(cache, 0) for _, cache in alone]
            return out, torch.cat([logits for logits, _ in alone])
        ahead, cache = self._seed_refresh(seeds, seed_rows)
        self._seeds = [(cache, j) for j in range(len(seed_rows))]
        return out, ahead

    def _seed_refresh(self, seeds: torch.Tensor, seed_rows: list[int]) -> tuple[torch.Tensor, KVCache]:
        """The next block's refresh of `seeds` [F, T] (sequences `seed_rows`), into a cache of their own."""
        pad = None if self.pad is None else self.pad[self._tensor(seed_rows)]
        length = self.end - self.start
        return self.model.refresh(seeds, self.mode, self.end, self.end + length, pad, KVCache(self.mode, pad))

    def adopt(self, sequence: int, seed: int) -> None:
        """Sequence `sequence` begins the next block from seed `seed` of the last `with_seeds` call."""
        if not 0 <= seed < len(self._seeds):
            raise RuntimeError(f"BlockForward.adopt: row {seed} was not a seed of the last forward")
        self.adopted[sequence] = self._seeds[seed]

    def _evaluate(self, states: torch.Tensor, rows: list[int] | None) -> torch.Tensor:
        r = states.shape[0]
        if self.sequences == 0:
            raise RuntimeError("BlockForward: call refresh() at the block start before other forwards")
        seqs = rows if rows is not None else list(range(r)) if r == self.sequences else [0] * r
        span = (self.start, self.end)
        if self.cache is None and self.lookahead:
            span = (self.start, min(self.end + self.lookahead, states.shape[1]))
        if self.cache is not None:
            states = states[:, self.start : self.start + self.cache.window_length(states.shape[1])]
            if self.layout is VerifyLayout.tree and (self.pad_rows or r > len(set(seqs))):
                return self._tree(states, seqs, span)
        take: torch.Tensor | slice = slice(None)
        if self.pad_rows:  # the batch layout, every sequence's rows padded: one shape for every forward
            index, take, seqs, _ = self._slots(seqs, self.pad_rows)
            states = states[index]
        rows_t = None if seqs == list(range(self.sequences)) else self._rows(seqs)
        if self.cache is None:
            return self.model(states, span=span, rows=rows_t, pad=self.pad)[take]
        return self.model(states, cache=self.cache, span=span, rows=rows_t)[take]

    def _tree(self, window: torch.Tensor, seqs: list[int], span: tuple[int, int]) -> torch.Tensor:
        """The candidates of each sequence folded into one row [G, P · W]; logits unfolded to [R, ...]."""
        p = self.pad_rows or max(seqs.count(i) for i in set(seqs))
        index, take, _, groups = self._slots(seqs, p)
        folded = window[index].reshape(len(groups), -1)
        rows_t = None if groups == list(range(self.sequences)) else self._rows(groups)
        return self.model(folded, cache=self.cache, span=span, rows=rows_t, candidates=p)[take]

    def _slots(
        self, seqs: list[int], p: int
    ) -> tuple[torch.Tensor, torch.Tensor | slice, list[int], list[int]]:
        """`slots` as device indices: the row of each slot, the slot of each row, the sequence of each
        slot and of each group. One sequence (the usual case) needs no host-to-device copy."""
        if self.sequences > 1:
            index, take, groups = slots(seqs, p)
            return self._tensor(index), self._tensor(take), [seqs[i] for i in index], groups
        if len(seqs) > p:
            raise ValueError(f"{len(seqs)} candidate rows of one sequence exceed pad_rows={p}")
        index = torch.arange(p, device=self.model.device).clamp(max=len(seqs) - 1)
        return index, slice(len(seqs)), [0] * p, [0]

    def _rows(self, seqs: list[int]) -> torch.Tensor:
        if self.sequences == 1:
            return torch.zeros(len(seqs), dtype=torch.long, device=self.model.device)
        return self._tensor(seqs)

    def _tensor(self, values: list[int]) -> torch.Tensor:
        """Host integers on the model's device without a device sync (pinned, non-blocking on a GPU)."""
        device = self.model.device
        if device.type != "cuda":
            return torch.tensor(values, dtype=torch.long)
        return torch.tensor(values, dtype=torch.long, pin_memory=True).to(device, non_blocking=True)

    def _count(self, batch: int) -> None:
        self.nfe += 1
        self.batch_sizes.append(batch)


def resolve_layout(layout: VerifyLayout, device: torch.device) -> VerifyLayout:
    """auto: the tree on a GPU (one read of the cache for all candidates: ~1.1x one forward for 6 on
    an H100, against 1.3-2x for the batch; docs/algorithms.md, "One forward on a GPU"), the batch on a CPU
    (compute-bound, where the tree's extra small operations cost more than the cache copies save)."""
    if layout is not VerifyLayout.auto:
        return layout
    return VerifyLayout.tree if device.type == "cuda" else VerifyLayout.batch


def slots(seqs: list[int], p: int) -> tuple[list[int], list[int], list[int]]:
    """Rows grouped by sequence, each group padded to p slots by repeating its last row.

    Returns the row filling each slot [G · p], the slot of each row [R], and each group's sequence [G].
    """
    groups: dict[int, list[int]] = {}
    for r, s in enumerate(seqs):
        groups.setdefault(s, []).append(r)
    index: list[int] = []
    take = [0] * len(seqs)
    for g, members in enumerate(groups.values()):
        if len(members) > p:
            raise ValueError(f"{len(members)} candidate rows of one sequence exceed pad_rows={p}")
        for j, r in enumerate(members):
            take[r] = g * p + j
        index += members + members[-1:] * (p - len(members))
    return index, take, list(groups)
