"""Speculation over a policy: SSD over stepwise reproduces its recorded outputs, and SSD over Fast-dLLM's
rules (decoder.policy=fast_dllm) reproduces Fast-dLLM token for token, in fewer forwards."""

from __future__ import annotations

import json

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ssd.config import CacheMode, FastDLLMConfig, ParallelRule, SSDConfig, StepPolicy
from ssd.decoders.drafts import TransitionTree
from ssd.decoders.fast_dllm import FastDLLM
from ssd.decoders.ssd import SelfSpeculative
from ssd.decoders.tree import TreeTensors, deepest_reached, node_states, order_nodes
from ssd.errors import SSDError
from ssd.models.tiny import tiny_model
from tests.helpers import REPO, load_script, random_prompt

MODELS: dict[tuple, torch.nn.Module] = {}


def model_for(arch: str, seed: int, init_std: float = 0.5):
    if (arch, seed, init_std) not in MODELS:
        MODELS[arch, seed, init_std] = tiny_model(arch, seed=seed, init_std=init_std)
    return MODELS[arch, seed, init_std]


def test_ssd_reproduces_its_recorded_outputs_on_the_embedded_model() -> None:
    """SSD's default-sweep settings on the arith model, recorded before the speculation engine replaced
    SSD's own loop (scripts/ssd_arith_record.py): tokens, NFE, rows and whole rows per forward."""
    fixture = json.loads((REPO / "tests/fixtures/ssd_arith_reference.json").read_text())
    record = load_script("ssd_arith_record")
    model = record.load_model()
    assert set(fixture["settings"]) == set(record.SETTINGS)
    for name, want in fixture["settings"].items():
        assert record.run_setting(name, fixture["limit"], model) == want, name


setups = st.fixed_dictionaries(
    {
        "arch": st.sampled_from(["llada", "dream"]),
        "seed": st.integers(0, 3),
        "init_std": st.sampled_from([1.5, 5.0, 8.0]),  # >= 5: Fast-dLLM commits sets of positions
        "prompt_seed": st.integers(0, 10_000),
        "prompt_length": st.integers(1, 16),
        "block_length": st.sampled_from([2, 4, 8, 16]),
        "cache": st.sampled_from(list(CacheMode)),
        "layout": st.sampled_from(["batch", "tree"]),
        "bit_exact": st.booleans(),
        "rule": st.sampled_from(list(ParallelRule)),
        "knob": st.sampled_from([0.3, 0.5, 0.7, 0.9]),
        "drafts": st.sampled_from([dict(draft_length=1), dict(draft_length=3), dict(tree_budget=6)]),
        "seed_next_block": st.booleans(),
    }
)


def check_against_fast_dllm(s: dict, temperature: float, seed: int) -> None:
    model = model_for(s["arch"], s["seed"], s["init_std"])
    prompt = random_prompt(len(model.tokenizer), s["prompt_seed"], s["prompt_length"])
    bit_exact = s["bit_exact"] and s["cache"] is not CacheMode.none
    rule = dict(rule=s["rule"], threshold=s["knob"], factor=2 * s["knob"])
    common = dict(gen_length=16, block_length=s["block_length"], cache=s["cache"], verify_layout=s["layout"])
    cfg = SSDConfig(
        **common, **rule, **s["drafts"], policy=StepPolicy.fast_dllm, temperature=temperature,
        bit_exact=bit_exact, seed_next_block=s["seed_next_block"],
    )  # fmt: skip
    dec = SelfSpeculative(cfg)
    reference = dec.reference_config()
    assert isinstance(reference, FastDLLMConfig) and reference.threshold == s["knob"]
    out = dec.generate(model, prompt, seed)
    ref = FastDLLM(reference).generate(model, prompt, seed)
    assert out.tokens == ref.tokens
    assert out.nfe <= ref.nfe
    # every position committed once, but where a random model's only candidates are the mask token (both
    # decoders then end the block, as Fast-dLLM's released code never would)
    assert sum(out.accepted) == sum(ref.accepted) <= 16 and min(out.accepted) >= 1
    assert max(out.forward_batch_sizes) <= dec.rows_per_forward()


@settings(max_examples=50, deadline=None, derandomize=True)
@given(s=setups)
def test_speculative_fast_dllm_is_fast_dllm_greedy(s: dict) -> None:
    check_against_fast_dllm(s, 0.0, 0)


@settings(max_examples=40, deadline=None, derandomize=True)
@given(s=setups, seed=st.integers(0, 2**31 - 1))
def test_speculative_fast_dllm_is_fast_dllm_sampling(s: dict, seed: int) -> None:
    check_against_fast_dllm(s, 0.7, seed)


@pytest.mark.parametrize("cache", list(CacheMode))
@pytest.mark.parametrize("arch", ["llada", "dream"])
def test_steps_of_several_positions_are_speculated_too(arch: str, cache: CacheMode) -> None:
    """On a peaked model Fast-dLLM commits sets; speculation over it still gives its tokens, in no more
    forwards, every layout and the bit-exact mode alike."""
    model = model_for(arch, 1, 8.0)
    common = dict(gen_length=32, block_length=8, cache=cache, threshold=0.5)
    layouts = (
        [("batch", False)] if cache is CacheMode.none else [("batch", False), ("tree", False), ("tree", True)]
    )
    for layout, bit_exact in layouts:
        spec, ref = 0, 0
        for i in range(4):
            prompt = random_prompt(len(model.tokenizer), i, 10)
            cfg = SSDConfig(**common, policy=StepPolicy.fast_dllm, tree_budget=8, verify_layout=layout,
                            bit_exact=bit_exact)  # fmt: skip
            dec = SelfSpeculative(cfg)
            out, want = dec.generate(model, prompt), FastDLLM(dec.reference_config()).generate(model, prompt)
            assert out.tokens == want.tokens
            assert max(want.accepted) > 1  # the policy's steps are sets here
            spec, ref = spec + out.nfe, ref + want.nfe
        assert spec <= ref


def test_a_set_step_matches_only_the_policys_exact_step() -> None:
    """A guessed step is accepted iff its positions are exactly the policy's and every token agrees: a
    subset or a superset of the real step is not the policy's state."""
    nodes = [(-1, ((0, 0),), 1), (0, ((1, 0), (2, 0)), 3), (0, ((1, 0),), 2), (1, ((3, 0),), 4)]
    layout = order_nodes(nodes, 8)
    t = TreeTensors(layout, torch.device("cpu"))
    order = torch.tensor([5, 3, 6, 0, 1, 2, 4, 7])
    cands = torch.arange(8)[None, :, None] + 10  # the token drafted at position q is 10 + q
    _, own, own_tokens = node_states(torch.zeros(1, 8, dtype=torch.long), 0, order, cands, t)

    def walk(steps: list[set[int]], tokens: dict[int, int] | None = None) -> int:
        step = torch.zeros(len(steps), 8, dtype=torch.bool)
        for i, positions in enumerate(steps):
            step[i, list(positions)] = True
        step_tokens = torch.arange(8).expand(len(steps), -1) + 10
        for q, tok in (tokens or {}).items():
            step_tokens[:, q] = tok
        return int(deepest_reached(t, own, own_tokens, step, step_tokens))

    assert walk([{3, 6}, {0}, set(), set()]) == 3  # root -> {3, 6} -> {0}
    assert walk([{3}, set(), set(), set()]) == 2  # the singleton {3}
    assert walk([{3, 6, 0}, set(), set(), set()]) == 0  # a superset of every guess
    assert walk([{6}, set(), set(), set()]) == 0  # a subset of the pair, not the singleton
    assert walk([{3, 6}, {0}, set(), set()], {6: 99}) == 0  # right positions, one wrong token


def test_the_chain_of_a_set_policy_guesses_prefixes_of_the_free_positions() -> None:
    tree = TransitionTree(budget=0, draft_length=3)
    logits = torch.zeros(1, 8, 5)
    # confidences fall with position, steeply after the fourth (a gentle fall is guessed as one step that
    # fills the block: a chain of two nodes)
    logits[0, :, 0] = torch.tensor([9.0, 8, 7, 3, 2, 1, 0.5, 0])
    order = torch.arange(8)
    layout, _ = tree.grow(logits, order, 8, (0, 1))
    assert layout.commits[0] == ((0, 0), (1, 0))  # the root: the policy's own step over 2 positions
    assert layout.parent == (-1, 0, 1) and layout.evaluated == 3
    free = [r for c in layout.commits[1:] for r, _ in c]
    assert sorted(free) == list(range(2, 2 + len(free)))  # each guess the next free ranks, in order


def test_a_guess_may_be_any_prefix_of_the_free_positions() -> None:
    """In a block of 32 a threshold policy's step can commit a dozen positions at once (tally's chain
    after its spaces): the draft offers every prefix of the free ranks, not only short ones."""
    tree = TransitionTree(budget=16, draft_length=0)
    free = list(range(3, 32))
    p = [[0.97, 0.02, 0.01]] * 32
    sizes = {len(step) for _, step in tree.children(free, 1, p) if all(k == 0 for _, k in step)}
    assert sizes == set(range(1, len(free) + 1))
    # with confidences that stay high the likeliest guesses are long ones
    logits = torch.zeros(1, 32, 5)
    logits[0, :, 0] = 8.0
    layout, _ = tree.grow(logits, torch.arange(32), 32, (0, 1))
    assert max(len(c) for c in layout.commits[1:]) > 8


@pytest.mark.parametrize("cache", list(CacheMode))
def test_speculation_over_fast_dllm_in_blocks_of_32_keeps_its_tokens(cache: CacheMode) -> None:
    """Blocks of 32 on peaked random models, where Fast-dLLM's steps commit many positions and guesses of
    any prefix length are drawn: token-identical to Fast-dLLM, greedy and at T = 0.7, both architectures,
    in fewer forwards overall."""
    spec_nfe = fast_nfe = 0
    for arch in ("llada", "dream"):
        for seed, std in enumerate((5.0, 8.0)):
            model = model_for(arch, seed, std)
            for temperature, threshold in ((0.0, 0.9), (0.7, 0.9), (0.0, 0.5), (0.7, 0.5)):
                frame = dict(gen_length=64, block_length=32, cache=cache, temperature=temperature)
                dec = SelfSpeculative(
                    SSDConfig(**frame, policy="fast_dllm", threshold=threshold, tree_budget=16)
                )
                prompt = random_prompt(len(model.tokenizer), 31 * seed + int(10 * threshold))
                ref = FastDLLM(dec.reference_config()).generate(model, prompt, seed + 5)
                out = dec.generate(model, prompt, seed + 5)
                assert out.tokens == ref.tokens, (arch, seed, temperature, threshold)
                spec_nfe, fast_nfe = spec_nfe + out.nfe, fast_nfe + ref.nfe
    assert spec_nfe < fast_nfe


@pytest.mark.parametrize(
    ("knobs", "message"),
    [
        (dict(threshold=0.5), "set decoder.policy=fast_dllm or drop them"),
        (dict(rule="factor"), "set decoder.policy=fast_dllm or drop them"),
        (dict(policy="fast_dllm", tree="0-1"), "use decoder.tree_budget"),
        (dict(policy="fast_dllm", rule="factor", factor=-1.0), "factor must be positive"),
    ],
)
def test_knobs_outside_the_policy_are_one_line_errors(knobs: dict, message: str) -> None:
    enums = {"policy": StepPolicy, "rule": ParallelRule}
    knobs = {k: enums[k](v) if k in enums else v for k, v in knobs.items()}
    with pytest.raises(SSDError, match=message) as e:
        SelfSpeculative(SSDConfig(gen_length=16, block_length=8, **knobs))
    assert "\n" not in str(e.value)


def test_the_bit_exact_reference_of_speculative_fast_dllm_pads_to_its_rows() -> None:
    cfg = SSDConfig(
        gen_length=16, block_length=8, cache=CacheMode.dual, policy=StepPolicy.fast_dllm, threshold=0.7,
        tree_budget=6, bit_exact=True, verify_layout="tree",
    )  # fmt: skip
    reference = SelfSpeculative(cfg).reference_config()
    assert reference == FastDLLMConfig(
        gen_length=16, block_length=8, cache=CacheMode.dual, threshold=0.7, bit_exact=True,
        verify_layout="tree", pad_rows=6,
    )  # fmt: skip
