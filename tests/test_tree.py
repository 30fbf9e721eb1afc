"""Verification layouts (batch, shared-cache tree), the static cache and the bit-exact mode."""

from __future__ import annotations

import pytest
import torch

from ssd.config import CacheMode, DiffuSpecConfig, PSDConfig, SSDConfig, StepwiseConfig, VerifyLayout
from ssd.decoders.psd import PSD
from ssd.decoders.ssd import SelfSpeculative
from ssd.decoders.stepwise import Stepwise
from ssd.errors import SSDError
from ssd.models.cache import BlockForward, slots
from ssd.models.tiny import tiny_model
from tests.helpers import random_prompt

ARCHS = ["llada", "dream"]
LAYOUTS = [VerifyLayout.batch, VerifyLayout.tree]
CACHED = [CacheMode.prefix, CacheMode.dual]


def masked_batch(model, pads: list[int], width: int = 30, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Sequences [N, width] left-padded by `pads`, masked from position 18 on."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randint(8, 60, (len(pads), width), generator=gen)
    for i, p in enumerate(pads):
        x[i, :p] = model.eos_id
    x[:, 18:] = model.mask_id
    return x, torch.tensor(pads)


def candidates_of(x: torch.Tensor, counts: list[int]) -> tuple[torch.Tensor, list[int]]:
    """counts[i] candidate states of sequence i, each committing a different token in the block."""
    states, rows = [], []
    for i, k in enumerate(counts):
        for j in range(k):
            s = x[i].clone()
            s[18 + j] = 20 + j
            states.append(s)
            rows.append(i)
    return torch.stack(states), rows


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("mode", CACHED)
@pytest.mark.parametrize("counts", [[3, 1, 2], [4, 0, 2]])
@pytest.mark.parametrize("bit_exact", [False, True])
def test_tree_layout_equals_the_batch_layout(
    arch: str, mode: CacheMode, counts: list[int], bit_exact
) -> None:
    """Candidates folded into one row over one cache copy get each candidate's own attention, with
    several sequences (some without candidates), different left padding and numbers of candidates."""
    model = tiny_model(arch, seed=3)
    x, pads = masked_batch(model, [0, 3, 5])
    states, rows = candidates_of(x, counts)
    out = {}
    for layout in LAYOUTS:
        fwd = BlockForward(model, mode, pads, layout=layout, max_rows=4, bit_exact=bit_exact)
        with torch.no_grad():
            fwd.refresh(x, 18, 24)
            fwd(states, rows)  # a forward that writes into the cache must leave it as it found it
            out[layout] = fwd(states, rows)
    torch.testing.assert_close(out[VerifyLayout.tree], out[VerifyLayout.batch], rtol=1e-5, atol=1e-5)
    first = 1 if model.predicts_from_previous_position else 0
    tree, batch = out[VerifyLayout.tree][:, first:], out[VerifyLayout.batch][:, first:]
    assert torch.equal(tree.argmax(-1), batch.argmax(-1))


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("mode", CACHED)
@pytest.mark.parametrize("draft_length", [2, 5])
def test_ssd_gives_the_same_tokens_in_both_layouts(arch: str, mode: CacheMode, draft_length: int) -> None:
    prompts = [random_prompt(60, s, length=5 + 3 * s) for s in range(3)]
    for seed in range(3):
        model = tiny_model(arch, seed=seed)
        tokens = {}
        for layout in LAYOUTS:
            cfg = SSDConfig(gen_length=16, block_length=8, cache=mode, draft_length=draft_length)
            cfg.verify_layout = layout
            gens = SelfSpeculative(cfg).generate_batch(model, prompts, [0, 1, 2])
            tokens[layout] = [g.tokens for g in gens]
        assert tokens[VerifyLayout.tree] == tokens[VerifyLayout.batch]


def test_slots_group_rows_by_sequence_and_pad_each_group() -> None:
    index, take, groups = slots([0, 0, 2, 0, 2], 3)
    assert groups == [0, 2]
    assert index == [0, 1, 3, 2, 4, 4]  # group 0: rows 0, 1, 3; group 2: rows 2, 4 and row 4 again
    assert take == [0, 1, 3, 2, 4]
    with pytest.raises(ValueError, match="exceed pad_rows=2"):
        slots([1, 1, 1], 2)


def test_the_cache_buffers_are_allocated_once_per_batch() -> None:
    model = tiny_model("llada", seed=0)
    x, _ = masked_batch(model, [0, 0])
    fwd = BlockForward(model, CacheMode.dual)
    with torch.no_grad():
        fwd.refresh(x, 18, 24)
        where = [k.data_ptr() for k in fwd.cache.keys]
        fwd(x)
        fwd.refresh(x, 24, 30)
    assert [k.data_ptr() for k in fwd.cache.keys] == where


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_in_bit_exact_mode_a_states_logits_do_not_depend_on_its_row(layout: VerifyLayout, dtype) -> None:
    model = tiny_model("llada", seed=1).to(dtype)
    x, _ = masked_batch(model, [0])
    states, rows = candidates_of(x, [4])
    fwd = BlockForward(model, CacheMode.dual, layout=layout, max_rows=4, bit_exact=True)
    with torch.no_grad():
        fwd.refresh(x, 18, 24)
        together = fwd(states, rows)
        alone = [fwd(states[j : j + 1], [0]) for j in range(4)]
        shuffled = fwd(states[[2, 0, 3]], [0, 0, 0])
    for j in range(4):
        assert torch.equal(together[j], alone[j][0])
    assert torch.equal(shuffled, together[[2, 0, 3]])


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_bit_exact_ssd_equals_its_reference_in_bfloat16(arch: str, layout: VerifyLayout) -> None:
    """bf16 makes row-dependent rounding visible; the bit-exact mode must still give identical tokens."""
    cfg = SSDConfig(gen_length=16, block_length=8, cache=CacheMode.dual, draft_length=4, bit_exact=True)
    cfg.verify_layout = layout
    decoder = SelfSpeculative(cfg)
    reference_cfg = decoder.reference_config()
    assert isinstance(reference_cfg, StepwiseConfig)
    assert reference_cfg.bit_exact and reference_cfg.pad_rows == 4 and reference_cfg.verify_layout is layout
    reference = Stepwise(reference_cfg)
    for seed in range(3):
        model = tiny_model(arch, seed=seed).to(torch.bfloat16)
        prompts = [random_prompt(60, s, length=4 + s) for s in range(4)]
        ours = decoder.generate_batch(model, prompts, [0] * 4)
        theirs = reference.generate_batch(model, prompts, [0] * 4)
        assert [g.tokens for g in ours] == [g.tokens for g in theirs]


def test_bit_exact_pads_every_forward_and_decodes_one_prompt_at_a_time(monkeypatch) -> None:
    seen: list[tuple[int, int]] = []
    original = BlockForward.__call__

    def recording(self, states, rows=None):
        seen.append((self.sequences, self.pad_rows))
        return original(self, states, rows)

    monkeypatch.setattr(BlockForward, "__call__", recording)
    cfg = PSDConfig(gen_length=8, block_length=4, cache=CacheMode.prefix, draft_length=2, bit_exact=True)
    assert PSD(cfg).rows_per_forward() == 3
    PSD(cfg).generate_batch(tiny_model("dream", seed=0), [[9, 10, 11], [12, 13]], [0, 0])
    assert seen and set(seen) == {(1, 3)}


def test_bit_exact_is_refused_where_there_is_no_such_mode() -> None:
    with pytest.raises(SSDError, match="decoder diffuspec has no bit-exact mode"):
        from ssd.decoders.diffuspec import DiffuSpec

        DiffuSpec(DiffuSpecConfig(bit_exact=True))
    with pytest.raises(SSDError, match="pad_rows must be at least 1"):
        Stepwise(StepwiseConfig(pad_rows=0))


@pytest.mark.parametrize("layout", LAYOUTS)
def test_an_ssd_iteration_reads_one_number_from_the_device(layout: VerifyLayout, monkeypatch) -> None:
    """The accepted length is the only value a decoding iteration brings back to the host (on a GPU
    every such read is a synchronisation); stepwise brings back none."""
    model = tiny_model("llada", seed=0)
    prompt = random_prompt(60, 1)
    reads: list[str] = []
    for name in ("__int__", "__bool__", "__float__", "__index__", "item", "tolist"):
        original = getattr(torch.Tensor, name)

        def counting(self, *args, _original=original, _name=name):
            reads.append(_name)
            return _original(self, *args)

        monkeypatch.setattr(torch.Tensor, name, counting)
    common = dict(gen_length=16, block_length=8, cache=CacheMode.dual, verify_layout=layout)
    Stepwise(StepwiseConfig(**common)).generate(model, prompt)
    assert reads == ["tolist"]  # the generated tokens, once decoding is over
    reads.clear()
    out = SelfSpeculative(SSDConfig(**common, draft_length=4)).generate(model, prompt)
    forwards = out.nfe - 2  # verification forwards: one per iteration but the last of a block's
    assert reads.count("__int__") == forwards and len(reads) == forwards + 1


def test_the_automatic_layout_is_the_tree_on_a_gpu_and_the_batch_on_a_cpu() -> None:
    from ssd.models.cache import resolve_layout

    assert resolve_layout(VerifyLayout.auto, torch.device("cuda", 0)) is VerifyLayout.tree
    assert resolve_layout(VerifyLayout.auto, torch.device("cpu")) is VerifyLayout.batch
    assert resolve_layout(VerifyLayout.tree, torch.device("cpu")) is VerifyLayout.tree
    assert BlockForward(tiny_model("llada"), CacheMode.dual).layout is VerifyLayout.batch
