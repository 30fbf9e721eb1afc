"""The decoder axis: a base class, the common semi-autoregressive frame, and the accounting.

Every forward a decoder makes goes through a `BlockForward` (ssd/models/cache.py), which counts NFE
and the batch size of each call, so the accounting cannot drift from what was actually run.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch

from ssd.config import DecoderConfig, StepwiseConfig
from ssd.decoders.noise import CounterNoise
from ssd.errors import SSDError
from ssd.models.base import DiffusionLM
from ssd.models.cache import BlockForward


@dataclass
class Generation:
    """What a decoder returns for one prompt."""

    tokens: list[int]  # the generated positions (gen_length ids; stop tokens and what follows included)
    nfe: int  # forward calls
    forward_batch_sizes: list[int]  # the batch size of each forward call
    wall_seconds: float  # decoding time (device synchronised)
    accepted: list[int] = field(default_factory=list)  # tokens committed per iteration (speculative decoders)
    extra: dict[str, Any] = field(default_factory=dict)
    # of each forward's rows, those that ran the whole sequence (a refresh: 1 of 1; no cache: all; a
    # cached forward: 0, or the states seeding the next block). Empty: not recorded (older decoders)
    forward_full_rows: list[int] = field(default_factory=list)


class Decoder(ABC):
    """Anything that turns a prompt into tokens with a (masked diffusion) model, and accounts for it."""

    name: ClassVar[str]
    # Lossless decoders produce exactly their reference's tokens; the runner checks it per sample.
    lossless: ClassVar[bool] = False
    # Decoders that call the model through a BlockForward can run in the bit-exact mode.
    supports_bit_exact: ClassVar[bool] = False

    def __init__(self, cfg: DecoderConfig) -> None:
        if cfg.gen_length <= 0 or cfg.block_length <= 0:
            raise SSDError(
                f"gen_length ({cfg.gen_length}) and block_length ({cfg.block_length}) must be positive"
            )
        if cfg.gen_length % cfg.block_length:
            raise SSDError(
                f"block_length {cfg.block_length} does not divide gen_length {cfg.gen_length}: "
                f"pick a block_length among {divisors(cfg.gen_length)}"
            )
        if cfg.temperature < 0:
            raise SSDError(f"decoder.temperature must be >= 0 (got {cfg.temperature}): 0 is greedy")
        if cfg.bit_exact and not self.supports_bit_exact:
            raise SSDError(f"decoder {cfg.name} has no bit-exact mode: set decoder.bit_exact=false")
        self.cfg = cfg

    @abstractmethod
    def generate(self, model: DiffusionLM, prompt_ids: list[int], seed: int = 0) -> Generation:
        """Decode at most `gen_length` tokens after the prompt, timed with the device synchronised."""

    def generate_batch(
        self, model: DiffusionLM, prompts: list[list[int]], seeds: list[int]
    ) -> list[Generation]:
        """Several prompts; here one after another (a decoder that batches overrides this)."""
        return [self.generate(model, p, s) for p, s in zip(prompts, seeds, strict=True)]

    def reference_config(self) -> DecoderConfig | None:
        """The decoder whose tokens this one is compared with, token for token (None: it is a reference).

        Stepwise with the same cache mode, block, generation length and temperature (sampling: the same
        per-sample noise, ssd/decoders/noise.py): the reference of the lossless decoders, and the
        yardstick ("identical to stepwise") of the lossy ones. In the
        bit-exact mode it computes its forwards as this decoder does: same layout, same padded rows.
        """
        c = self.cfg
        reference = StepwiseConfig(
            gen_length=c.gen_length, block_length=c.block_length, cache=c.cache, temperature=c.temperature
        )
        if c.bit_exact:
            reference.bit_exact, reference.verify_layout = True, c.verify_layout
            reference.pad_rows = self.rows_per_forward()
        return reference

    def rows_per_forward(self) -> int:
        """The most candidate states of one sequence this decoder evaluates in one forward."""
        return 1


@dataclass
class Rows:
    """A block loop's request: candidate states [k, T], of which the last `full` fill the block. With a
    cache those run as full forwards of the next block's refresh (their logits come back for that block,
    their keys/values are kept aside); without one every row is a full forward anyway."""

    states: torch.Tensor
    full: int = 0


@dataclass
class Seed:
    """A block loop's end at an evaluated state that filled the block: its row (the index among the rows
    of the last request) stands in for the next block's refresh, whose logits [1, L, V] it carries."""

    logits: torch.Tensor
    row: int


# A decoder's work on one block of one sequence: it yields candidate states [k, T] (or `Rows`) and is
# sent their block logits [k, L, V]; it commits tokens into its sequence in place and ends when the
# block is full, returning None, or a `Seed` for the next block.
BlockLoop = Generator[torch.Tensor | Rows, torch.Tensor, Seed | None]


class BlockDecoder(Decoder):
    """The semi-autoregressive masked frame: `[prompt ; MASK x gen_length]`, blocks left to right.

    A subclass writes `block()`, the algorithm for one block of one sequence. This class runs it
    for a batch of prompts: left padding to a common length (so block boundaries coincide), one
    refresh forward per block for the sequences no seed of the previous block stands in for (`Seed`),
    then every sequence's candidate states gathered into one forward per round. Each sequence therefore
    goes through exactly the steps it would alone; its accounting (NFE, rows per forward, tokens per
    iteration) is its own.

    In the bit-exact mode prompts are decoded one at a time, every forward padded to
    `rows_per_forward()` candidate rows, so that each forward has one shape (BlockForward).
    """

    supports_bit_exact = True

    @abstractmethod
    def block(
        self,
        fwd: BlockForward,
        x: torch.Tensor,
        logits: torch.Tensor,
        noise: CounterNoise | None,
        committed: list[int],
    ) -> BlockLoop:
        """Decode the block [fwd.start, fwd.end) of the sequence x [1, T], starting from the refresh
        forward's `logits` [1, L, V]; append the tokens committed per iteration to `committed`.
        `noise` (temperature > 0) is the sequence's sampling noise, keyed by tokens committed so far."""

    def generate(self, model: DiffusionLM, prompt_ids: list[int], seed: int = 0) -> Generation:
        return self.generate_batch(model, [prompt_ids], [seed])[0]

    def generate_batch(
        self, model: DiffusionLM, prompts: list[list[int]], seeds: list[int]
    ) -> list[Generation]:
        if self.cfg.bit_exact and len(prompts) > 1:
            return super().generate_batch(model, prompts, seeds)
        prompts = [model.decoding_prompt(p) for p in prompts]
        n, width, device = len(prompts), max(map(len, prompts)), model.device
        pads = [width - len(p) for p in prompts]
        x = torch.tensor(
            [
                [model.eos_id] * pad + p + [model.mask_id] * self.cfg.gen_length
                for p, pad in zip(prompts, pads, strict=True)
            ],
            dtype=torch.long,
            device=device,
        )
        fwd = BlockForward(
            model,
            self.cfg.cache,
            torch.tensor(pads, device=device) if any(pads) else None,
            layout=self.cfg.verify_layout,
            max_rows=self.rows_per_forward(),
            bit_exact=self.cfg.bit_exact,
        )
        noises = [CounterNoise(s) if self.cfg.temperature > 0 else None for s in seeds]
        books = [_Books() for _ in range(n)]
        carried: dict[int, torch.Tensor] = {}  # a block's logits carried over from the previous block
        with Timer(device) as timer, torch.inference_mode():
            for start, end in self.blocks(width):
                todo = [i for i in range(n) if i not in carried]
                logits = fwd.refresh(x, start, end, todo if carried else None)
                fresh = dict(zip(todo, logits.split(1) if todo else [], strict=True))
                pending: dict[int, tuple[BlockLoop, Rows]] = {}
                for i in range(n):
                    if i in carried:
                        first = carried.pop(i)
                    else:
                        first = fresh[i]
                        books[i].record(1, 1)
                    loop = self.block(fwd, x[i : i + 1], first, noises[i], books[i].committed)
                    _advance(pending, i, loop, None)
                while pending:
                    _round(fwd, pending, books, carried, full_everywhere=fwd.cache is None)
        batch = (
            {"batch_size": n, "batch_wall_seconds": timer.seconds, "batch_forwards": fwd.nfe} if n > 1 else {}
        )
        return [
            Generation(
                tokens=x[i, width:].tolist(),
                nfe=len(b.forwards),
                forward_batch_sizes=b.forwards,
                forward_full_rows=b.full,
                wall_seconds=timer.seconds / n,
                accepted=b.committed,
                extra=dict(batch),
            )
            for i, b in enumerate(books)
        ]

    def blocks(self, prompt_length: int) -> list[tuple[int, int]]:
        """Absolute [start, end) of each block of the generated part."""
        g, b = self.cfg.gen_length, self.cfg.block_length
        return [(prompt_length + s, prompt_length + s + b) for s in range(0, g, b)]

    def predict_block(
        self,
        fwd: BlockForward,
        x: torch.Tensor,
        logits: torch.Tensor,
        at_refresh: bool,
        noise: CounterNoise | None = None,
        steps: torch.Tensor | int = 0,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Candidate tokens and confidences [B, L] over the current block of states `x` [B, T].

        Only masked positions can be chosen. At temperature > 0 row b samples with the noise of step
        `steps` (an int for every row, or [B]): the tokens committed in the generation at that state.
        Right after a refresh of a model whose cached forwards cannot predict the block start, the
        block start gets confidence +inf: stepwise commits it first, from this forward (see
        BlockForward.first_position_from_refresh).
        """
        masked = x[:, fwd.start : fwd.end] == fwd.model.mask_id
        uniform = None
        if self.cfg.temperature > 0:
            if noise is None:
                raise ValueError("predict_block: temperature > 0 needs the sequence's noise")
            n = logits.shape[0]
            if isinstance(steps, int):  # torch.full: no host-to-device copy to wait for
                steps_t = torch.full((n,), steps, dtype=torch.long, device=logits.device)
            else:
                steps_t = steps.expand(n)
            uniform = noise.uniform(steps_t, logits.shape[1], logits.shape[2], logits.device)
        tokens, confidence = predict(logits, masked, self.cfg.temperature, uniform)
        if at_refresh and fwd.first_position_from_refresh:
            confidence[:, 0] = torch.inf
        return tokens, confidence

    def initial_state(self, fwd: BlockForward, prompt: torch.Tensor) -> torch.Tensor:
        masks = torch.full(
            (1, self.cfg.gen_length), fwd.model.mask_id, dtype=torch.long, device=prompt.device
        )
        return torch.cat([prompt, masks], dim=1)


@dataclass
class _Books:
    forwards: list[int] = field(default_factory=list)  # rows of each forward this sequence took part in
    full: list[int] = field(default_factory=list)  # of those, rows that ran the whole sequence
    committed: list[int] = field(default_factory=list)

    def record(self, rows: int, full: int) -> None:
        self.forwards.append(rows)
        self.full.append(full)


def _round(
    fwd: BlockForward,
    pending: dict[int, tuple[BlockLoop, Rows]],
    books: list[_Books],
    carried: dict[int, torch.Tensor],
    full_everywhere: bool,
) -> None:
    """One forward for every pending sequence's request, each loop advanced with its own rows' logits.

    With a cache, the rows that fill a block run whole beside the cached ones (BlockForward.with_seeds);
    a loop that ends on one of them carries its logits, and its keys/values are adopted, into the next
    block. Without a cache every row runs whole and the decoder reads the next block off its logits."""
    order = sorted(pending)
    asks = [pending[i][1] for i in order]
    kept = [a.states.shape[0] - (0 if full_everywhere else a.full) for a in asks]
    rows = [i for i, k in zip(order, kept, strict=True) for _ in range(k)]
    seed_rows = [i for i, a, k in zip(order, asks, kept, strict=True) for _ in range(a.states.shape[0] - k)]
    cached = torch.cat([a.states[:k] for a, k in zip(asks, kept, strict=True)])
    if seed_rows:
        seeds = torch.cat([a.states[k:] for a, k in zip(asks, kept, strict=True)])
        out, ahead = fwd.with_seeds(cached, rows, seeds, seed_rows)
    else:
        out, ahead = fwd(cached, rows), None
    offset = 0  # of the sequence's seeds among all seeds
    for i, a, k, chunk in zip(order, asks, kept, out.split(kept), strict=True):
        n_seeds = a.states.shape[0] - k
        if n_seeds:
            chunk = torch.cat([chunk, ahead[offset : offset + n_seeds]])
        books[i].record(a.states.shape[0], a.states.shape[0] if full_everywhere else a.full)
        seed = _advance(pending, i, pending[i][0], chunk)
        if seed is not None:
            carried[i] = seed.logits
            if not full_everywhere:  # and its keys/values (adopt refuses a row that was no seed)
                fwd.adopt(i, offset + seed.row - k if seed.row >= k else -1)
        offset += n_seeds


def _advance(
    pending: dict[int, tuple[BlockLoop, Rows]], i: int, loop: BlockLoop, logits: torch.Tensor | None
) -> Seed | None:
    """Run sequence i's block loop to its next request, or to its end, which removes it and returns what
    it returned (a `Seed`: the next block's logits, standing in for that block's refresh)."""
    try:
        ask = loop.send(logits) if logits is not None else next(loop)
    except StopIteration as done:
        pending.pop(i, None)
        return done.value
    pending[i] = (loop, ask if isinstance(ask, Rows) else Rows(ask))
    return None


def divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


class Timer:
    """Wall time of a block of device work: synchronised before reading the clock at both ends."""

    def __init__(self, device: torch.device) -> None:
        self.device, self.seconds = device, 0.0

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def __enter__(self) -> Timer:
        self._sync()
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self._sync()
        self.seconds = time.perf_counter() - self._start


def predict(
    logits: torch.Tensor,
    masked: torch.Tensor,
    temperature: float = 0.0,
    uniform: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Candidate token and confidence at every position: [B, L, V] logits -> ([B, L] ids, [B, L] float64).

    One definition for every decoder: the softmax is taken in float64; the candidate is the argmax
    (temperature 0) or LLaDA's Gumbel-max sample `exp(l) / (-log u)^T` in float64 (temperature > 0,
    u: `uniform` [B, L, V], the counter-based noise of ssd/decoders/noise.py);
    the confidence is the clean softmax probability of the candidate. Positions where `masked` is False
    get confidence -inf, so they are never chosen.
    """
    logits = logits.to(torch.float64)
    tokens = perturbed(logits, uniform, temperature).argmax(-1)
    confidence = torch.softmax(logits, -1).gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
    return tokens, confidence.masked_fill(~masked, -torch.inf)


def perturbed(logits: torch.Tensor, uniform: torch.Tensor | None, temperature: float) -> torch.Tensor:
    """LLaDA's Gumbel-max scores in float64: their argmax is the sample (temperature 0: the logits)."""
    logits = logits.to(torch.float64)
    if temperature == 0 or uniform is None:
        return logits
    return logits.exp() / (-torch.log(uniform)) ** temperature


def draft_chain(
    x: torch.Tensor, start: int, positions: torch.Tensor, drafts: torch.Tensor, depths: range
) -> torch.Tensor:
    """Candidate states [len(depths), T]: row i is `x` [1, T] with the first depths[i] drafts committed
    (`positions` are block-relative, in draft order; `drafts` their tokens). Built on the device from
    host integers only: no host-device traffic inside a decoding iteration."""
    n = positions.shape[0]
    chain = x.repeat(len(depths), 1)
    depth = torch.arange(depths.start, depths.stop, device=x.device)
    upto = torch.arange(n, device=x.device)[None, :] < depth[:, None]
    absolute = start + positions
    chain[:, absolute] = torch.where(upto, drafts, chain[:, absolute])
    return chain
