"""SSD verification trees: the chain reproduces the recorded outputs, every tree shape and adaptive budget
gives stepwise's tokens, and shape specs are checked."""

from __future__ import annotations

import json

import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from ssd.config import CacheMode, SSDConfig, StepwiseConfig
from ssd.decoders.ssd import SelfSpeculative
from ssd.decoders.stepwise import Stepwise
from ssd.decoders.tree import TreeTensors, deepest_reached, node_states, parse, resolve
from ssd.errors import SSDError
from ssd.models.tiny import tiny_model
from tests.helpers import REPO, load_script, random_prompt

FIXTURE = json.loads((REPO / "tests/fixtures/ssd_chain_reference.json").read_text())
MODELS: dict[tuple, torch.nn.Module] = {}


def model_for(arch: str, seed: int, init_std: float = 0.5):
    if (arch, seed, init_std) not in MODELS:
        MODELS[arch, seed, init_std] = tiny_model(arch, seed=seed, init_std=init_std)
    return MODELS[arch, seed, init_std]


def test_the_chain_reproduces_the_recorded_tokens_nfe_and_rows() -> None:
    """Recorded with the chain code before the tree replaced it (scripts/ssd_chain_record.py)."""
    record = load_script("ssd_chain_record")
    assert len(FIXTURE["records"]) == len(record.cases()) >= 80
    for r in FIXTURE["records"]:
        got = record.run_case(r["case"])
        assert got == {k: r[k] for k in got}, r["case"]


@st.composite
def shapes(draw) -> str:
    """A random valid shape spec: each new path extends an existing one (or the root) by one element."""
    paths: list[str] = []
    for _ in range(draw(st.integers(0, 9))):
        parent = draw(st.sampled_from(["", *paths]))
        element = str(draw(st.integers(0, 3))) + draw(st.sampled_from(["", "", "b", "c"]))
        if parent + element not in paths:
            paths.append(parent + element)
    return "-".join(paths)


setups = st.fixed_dictionaries(
    {
        "arch": st.sampled_from(["llada", "dream"]),
        "seed": st.integers(0, 3),
        "init_std": st.sampled_from([0.5, 1.5]),
        "prompt_seed": st.integers(0, 10_000),
        "prompt_length": st.integers(1, 16),
        "block_length": st.sampled_from([1, 2, 4, 8]),
        "cache": st.sampled_from(list(CacheMode)),
        "layout": st.sampled_from(["batch", "tree"]),
        "bit_exact": st.booleans(),
    }
)


def assume_fits(spec: str, block_length: int) -> None:
    """Shapes with positions no block of this size has are refused (tested below): not drawn here."""
    try:
        parse(spec, block_length)
    except SSDError:
        assume(False)


def check_against_stepwise(s: dict, temperature: float = 0.0, seed: int = 0, **tree) -> None:
    assume_fits(tree.get("tree", ""), s["block_length"])
    model = model_for(s["arch"], s["seed"], s["init_std"])
    prompt = random_prompt(len(model.tokenizer), s["prompt_seed"], s["prompt_length"])
    bit_exact = s["bit_exact"] and s["cache"] is not CacheMode.none
    common = dict(gen_length=16, block_length=s["block_length"], cache=s["cache"], verify_layout=s["layout"])
    common["temperature"] = temperature
    dec = SelfSpeculative(SSDConfig(**common, bit_exact=bit_exact, **tree))
    out = dec.generate(model, prompt, seed)
    ref = Stepwise(dec.reference_config()).generate(model, prompt, seed)
    assert out.tokens == ref.tokens
    assert out.nfe <= ref.nfe
    assert sum(out.accepted) == 16 and min(out.accepted) >= 1
    assert max(out.forward_batch_sizes) <= dec.rows_per_forward()


@settings(max_examples=60, deadline=None, derandomize=True)
@given(s=setups, spec=shapes())
def test_every_tree_shape_gives_stepwise_tokens(s: dict, spec: str) -> None:
    check_against_stepwise(s, tree=spec)


@settings(max_examples=40, deadline=None, derandomize=True)
@given(s=setups, budget=st.integers(1, 12))
def test_every_adaptive_budget_gives_stepwise_tokens(s: dict, budget: int) -> None:
    check_against_stepwise(s, tree_budget=budget)


@settings(max_examples=40, deadline=None, derandomize=True)
@given(s=setups, spec=shapes(), budget=st.sampled_from([0, 0, 3, 8]), seed=st.integers(0, 2**31 - 1))
def test_sampling_ssd_equals_stepwise_sampling(s: dict, spec: str, budget: int, seed: int) -> None:
    """At temperature 0.7, chain, trees and adaptive trees reproduce stepwise's samples."""
    check_against_stepwise(
        s, temperature=0.7, seed=seed, **({"tree_budget": budget} if budget else {"tree": spec})
    )


def test_counter_noise_is_keyed_by_seed_step_and_position() -> None:
    from ssd.decoders.noise import CounterNoise

    u = CounterNoise(5).uniform(torch.tensor([3, 3, 4]), 4, 50, torch.device("cpu"))
    assert u.shape == (3, 4, 50) and u.dtype == torch.float64 and u.min() > 0 and u.max() < 1
    assert torch.equal(u[0], u[1]) and not torch.equal(u[0], u[2])
    assert not torch.equal(u[0], CounterNoise(6).uniform(torch.tensor([3]), 4, 50, torch.device("cpu"))[0])
    assert abs(u.mean().item() - 0.5) < 0.05 and len(set(u[1:].flatten().tolist())) == u[1:].numel()


def test_sampling_differs_by_seed_and_from_greedy() -> None:
    model = model_for("llada", 1, 0.5)
    prompt = random_prompt(len(model.tokenizer), 4, 8)
    dec = SelfSpeculative(SSDConfig(gen_length=16, block_length=8, temperature=0.7, tree_budget=6))
    a, b = dec.generate(model, prompt, 1).tokens, dec.generate(model, prompt, 2).tokens
    greedy = SelfSpeculative(SSDConfig(gen_length=16, block_length=8)).generate(model, prompt).tokens
    assert a != b and greedy not in (a, b)


@settings(max_examples=60, deadline=None, derandomize=True)
@given(
    s=setups,
    spec=shapes(),
    budget=st.sampled_from([0, 0, 4]),
    temperature=st.sampled_from([0.0, 0.7]),
    seed_rows=st.sampled_from([0, 0, 1, 2]),
)
def test_the_state_filling_a_block_seeds_the_next(
    s: dict, spec: str, budget: int, temperature: float, seed_rows: int
) -> None:
    """Every cache mode and layout: stepwise's tokens; the same walk as without seeding, minus the
    refreshes it stood in for (with a cache, the filling states' full rows are the next refresh), and
    no more whole rows beside the cached ones than `seed_rows` allows."""
    assume_fits("" if budget else spec, s["block_length"])
    model = model_for(s["arch"], s["seed"], s["init_std"])
    prompt = random_prompt(len(model.tokenizer), s["prompt_seed"], s["prompt_length"])
    tree = {"tree_budget": budget} if budget else {"tree": spec}
    common = dict(
        gen_length=16,
        block_length=s["block_length"],
        temperature=temperature,
        cache=s["cache"],
        verify_layout=s["layout"],
        bit_exact=s["bit_exact"] and s["cache"] is not CacheMode.none,
        **tree,
    )
    plain = SelfSpeculative(SSDConfig(**common)).generate(model, prompt, 5)
    seeded_dec = SelfSpeculative(SSDConfig(**common, seed_next_block=True, seed_rows=seed_rows))
    seeded = seeded_dec.generate(model, prompt, 5)
    ref = Stepwise(seeded_dec.reference_config()).generate(model, prompt, 5)
    assert seeded.tokens == ref.tokens == plain.tokens
    if not budget:  # the adaptive tree may spend its rows differently once filling states cost one
        assert seeded.accepted == plain.accepted
    blocks = 16 // s["block_length"]
    assert plain.nfe - (blocks - 1) <= seeded.nfe <= plain.nfe
    assert max(seeded.forward_batch_sizes) <= seeded_dec.rows_per_forward()
    # every forward says how many of its rows ran the whole sequence: refreshes, seeds, no-cache rows
    shapes_ = list(zip(seeded.forward_batch_sizes, seeded.forward_full_rows, strict=True))
    assert len(shapes_) == seeded.nfe and all(0 <= f <= r for r, f in shapes_) and shapes_[0] == (1, 1)
    if s["cache"] is CacheMode.none:
        assert all(f == r for r, f in shapes_)
    else:  # a refresh for each block no filling state seeded; full rows only beside cached ones
        refreshes = sum(1 for r, f in shapes_ if r == f == 1)
        assert all(f == 0 or f < r for r, f in shapes_[1:] if (r, f) != (1, 1))
        assert all(f <= (seed_rows or r) for r, f in shapes_ if (r, f) != (1, 1))
        assert 1 <= refreshes <= blocks
        if not budget:  # the same walk: each forward saved is a refresh a seed stood in for
            assert refreshes == blocks - (plain.nfe - seeded.nfe)


PEAKED_TREE = "0-1-00-000-0000-00000-000000"


@pytest.mark.parametrize("cache", list(CacheMode))
def test_seeded_batches_decode_each_prompt_as_alone(cache: CacheMode) -> None:
    """Prompts of different lengths decoded together (left padding; some sequences seeded by their own
    full rows while others refresh): each gets the tokens, walk and rows it gets alone."""
    model = model_for("llada", 2, 1.5)
    prompts = [random_prompt(len(model.tokenizer), i, 3 + 4 * i) for i in range(4)]
    dec = SelfSpeculative(
        SSDConfig(gen_length=24, block_length=8, cache=cache, tree=PEAKED_TREE, seed_next_block=True)
    )
    alone = [dec.generate(model, p, 3) for p in prompts]
    together = dec.generate_batch(model, prompts, [3] * 4)
    for a, b, p in zip(alone, together, prompts, strict=True):
        ref = Stepwise(dec.reference_config()).generate(model, p, 3)
        assert b.tokens == a.tokens == ref.tokens
        assert (b.accepted, b.forward_batch_sizes, b.forward_full_rows) == (
            a.accepted,
            a.forward_batch_sizes,
            a.forward_full_rows,
        )


@pytest.mark.parametrize("cache", list(CacheMode))
def test_seeding_saves_refreshes_on_a_peaked_model(cache: CacheMode) -> None:
    model = model_for("llada", 2, 1.5)
    common = dict(gen_length=24, block_length=8, tree=PEAKED_TREE, cache=cache)
    nfe = [0, 0]
    for i in range(10):
        prompt = random_prompt(len(model.tokenizer), i)
        for j, seed_next in enumerate((False, True)):
            nfe[j] += (
                SelfSpeculative(SSDConfig(**common, seed_next_block=seed_next)).generate(model, prompt).nfe
            )
    assert nfe[1] < nfe[0]


def test_the_walk_follows_stepwise_choices_to_the_deepest_node() -> None:
    # root; children 0 (rank 1) and 1 (rank 2, mix-order); grandchild 00 (rank 2 under child 0)
    layout = resolve(parse("0-1-00", 8), 8)
    assert layout.rank == (0, 1, 2, 2) and layout.parent == (-1, 0, 0, 1)
    t = TreeTensors(layout, torch.device("cpu"))
    order = torch.tensor([5, 3, 6, 0, 1, 2, 4, 7])
    cands = torch.full((1, 8, 1), 9)  # every drafted token is 9
    _, own, own_tokens = node_states(torch.zeros(1, 8, dtype=torch.long), 0, order, cands, t)

    def walk(choice: list[int], tok: list[int]) -> int:
        step = torch.nn.functional.one_hot(torch.tensor(choice), 8).bool()  # stepwise's one commit
        step_tokens = torch.tensor(tok)[:, None].expand(-1, 8)
        return int(deepest_reached(t, own, own_tokens, step, step_tokens))

    assert walk([3, 6, 6, 0], [9, 9, 9, 9]) == 3  # root -> 0 (pos 3) -> 00 (pos 6)
    assert walk([6, 6, 6, 0], [9, 9, 9, 9]) == 2  # root -> 1 (pos 6, mix-order), no child there
    assert walk([3, 1, 6, 0], [9, 9, 9, 9]) == 1  # root -> 0, then stepwise picks an undrafted position
    assert walk([3, 6, 6, 0], [8, 9, 9, 9]) == 0  # right position, wrong token: the root only


def test_a_tree_costs_no_more_forwards_than_its_chain_on_a_peaked_model() -> None:
    """Sanity of the trade: mix-order siblings on top of the chain never lose here (measured, 20 prompts)."""
    model = model_for("llada", 2, 1.5)
    common = dict(gen_length=24, block_length=8, cache=CacheMode.dual)
    chain = SelfSpeculative(SSDConfig(**common, draft_length=4))
    tree = SelfSpeculative(SSDConfig(**common, tree="0-1-2-00-01-10-000"))
    nfe = {"chain": 0, "tree": 0}
    for i in range(20):
        prompt = random_prompt(len(model.tokenizer), i)
        nfe["chain"] += chain.generate(model, prompt).nfe
        nfe["tree"] += tree.generate(model, prompt).nfe
    assert nfe["tree"] < nfe["chain"]


@pytest.mark.parametrize(
    ("knobs", "message"),
    [
        (dict(tree="0-x"), "bad path"),
        (dict(tree="00"), "needs its parent"),
        (dict(tree="0-0"), "appears twice"),
        (dict(tree="9"), "asks for free position 9 after 1 commits"),
        (dict(tree="0-00-000-0000-00000-000000-0000000-00000000"), "9 commits deep, deeper than"),
        (dict(tree="0", tree_budget=4), "exclude each other"),
        (dict(tree_budget=-1), "tree_budget"),
        (dict(seed_rows=-1, seed_next_block=True), "seed_rows must be >= 0"),
        (dict(tree_budget=4, tree_cost="/nonexistent.json"), "not found"),
        (dict(seed_next_block=True, bit_exact=True), "needs a cache"),
        (
            dict(seed_next_block=True, tree_budget=4, tree_cost="results/forward_cost/h100_llada8b.json"),
            "does nothing with decoder.tree_cost",
        ),
    ],
)
def test_bad_tree_knobs_are_one_line_errors(knobs: dict, message: str) -> None:
    with pytest.raises(SSDError, match=message) as e:
        SelfSpeculative(SSDConfig(**({"gen_length": 16, "block_length": 8} | knobs)))
    assert "\n" not in str(e.value)


def test_the_default_chain_is_stepwise_with_the_same_cache() -> None:
    cfg = SSDConfig(gen_length=8, block_length=8, draft_length=3)
    assert SelfSpeculative(cfg).reference_config() == StepwiseConfig(gen_length=8, block_length=8)


@pytest.mark.parametrize("cache", [CacheMode.prefix, CacheMode.dual])
def test_an_adopted_seed_is_the_next_blocks_refresh(cache: CacheMode) -> None:
    """A filling state run whole beside cached rows leaves the next block in the state a refresh of it
    would: same logits, same keys/values (a cached forward after it agrees); a non-seed row is refused."""
    from ssd.models.cache import BlockForward

    model = model_for("llada", 1, 1.5)
    x = torch.tensor([random_prompt(len(model.tokenizer), 4, 6) + [model.mask_id] * 16])
    filled = x.clone()
    filled[0, 6:14] = torch.arange(3, 11)
    with torch.inference_mode():
        seeded = BlockForward(model, cache)
        seeded.refresh(x, 6, 14)
        _, ahead = seeded.with_seeds(x.clone(), [0], filled, [0])
        with pytest.raises(RuntimeError, match="not a seed"):
            seeded.adopt(0, 1)
        seeded.adopt(0, 0)
        assert seeded.refresh(filled, 14, 22, rows=[]).numel() == 0 and seeded.nfe == 2
        fresh = BlockForward(model, cache)
        expected = fresh.refresh(filled, 14, 22)
        assert torch.equal(ahead, expected)
        step = filled.clone()
        step[0, 14] = 5
        assert torch.equal(seeded(step), fresh(step))
