"""SSD's calibrated draft graph (ssd/decoders/graph.py): stepwise's tokens whatever the calibration, on
random models of both architectures, in every cache mode, sampling and seeding; merge edges walked only
where the states agree; a bad calibration is a one-line error; the shipped one pays on its workload."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ssd.config import CacheMode, SSDConfig
from ssd.decoders.graph import FEATURES, Calibration, DraftGraph
from ssd.decoders.ssd import SelfSpeculative
from ssd.decoders.stepwise import Stepwise
from ssd.decoders.tree import TreeTensors, deepest_reached, node_states, order_rows
from ssd.errors import SSDError
from tests.helpers import REPO, load_script, random_prompt
from tests.test_ssd_tree import check_against_stepwise, model_for, setups

SHIPPED = "ssd/assets/arith-llada/draft_graph.json"


@st.composite
def calibrations(draw, tmp: Path) -> str:
    """The shipped calibration, or random weights and shape knobs (odd graphs the fit never gives)."""
    if draw(st.booleans()):
        return SHIPPED
    weights = st.lists(st.floats(-3, 3), min_size=len(FEATURES), max_size=len(FEATURES))
    cal = Calibration(
        weights=tuple(map(tuple, draw(st.lists(weights, min_size=1, max_size=4)))),
        positions=draw(st.integers(1, 5)),
        tokens=draw(st.integers(1, 4)),
        beam=draw(st.integers(1, 12)),
        depth_power=draw(st.sampled_from([0.0, 1.0, 2.0, 4.0])),
    )
    path = tmp / f"cal-{abs(hash(cal))}.json"
    cal.save(path)
    return str(path)


@settings(max_examples=40, deadline=None, derandomize=True)
@given(s=setups, budget=st.integers(1, 12), data=st.data(), temperature=st.sampled_from([0.0, 0.7]))
def test_a_calibrated_graph_gives_stepwise_tokens(
    tmp_path_factory, s: dict, budget: int, data, temperature: float
) -> None:
    cal = data.draw(calibrations(tmp_path_factory.mktemp("cal")))
    check_against_stepwise(s, temperature, seed=11, tree_budget=budget, tree_calibration=cal)


@settings(max_examples=25, deadline=None, derandomize=True)
@given(s=setups, budget=st.sampled_from([3, 8]), temperature=st.sampled_from([0.0, 0.7]))
def test_a_calibrated_graph_seeds_the_next_block(s: dict, budget: int, temperature: float) -> None:
    check_against_stepwise(
        s,
        temperature,
        seed=5,
        tree_budget=budget,
        tree_calibration=SHIPPED,
        seed_next_block=True,
    )


def two_orders() -> tuple:
    """root (rank 0); a = root + rank 1, b = root + rank 2; ab = a + rank 2, also b + rank 1 (a merge)."""
    layout = order_rows([(-1, 0, 0, 1), (0, 1, 0, 2), (0, 2, 0, 2), (1, 2, 0, 3)], 8, 0, ((2, 3, 1),))
    return layout, TreeTensors(layout, torch.device("cpu"))


def walk(
    t: TreeTensors, own: torch.Tensor, own_tokens: torch.Tensor, choice: list[int], tok: list[int]
) -> int:
    """The deepest node reached when stepwise commits position choice[i] with token tok[i] at node i."""
    step = torch.nn.functional.one_hot(torch.tensor(choice), 8).bool()
    return int(deepest_reached(t, own, own_tokens, step, torch.where(step, torch.tensor(tok)[:, None], 0)))


def test_a_state_two_orders_reach_is_reached_by_either() -> None:
    layout, t = two_orders()
    order = torch.tensor([5, 3, 6, 0, 1, 2, 4, 7])
    x = torch.full((1, 12), 99)
    cands = torch.arange(8).view(1, 8, 1) + 10  # position q's token: q + 10
    states, own, own_tokens = node_states(x, 4, order, cands, t)
    assert own.sum(-1).tolist() == [1] * 5 and own.int().argmax(-1).tolist() == [5, 3, 6, 6, 3]
    assert own_tokens.sum(-1).tolist() == [15, 13, 16, 16, 13]  # the 5th: the merge edge's commit
    assert states[3, 4:12].tolist() == [99, 99, 99, 13, 99, 15, 16, 99]  # ab: root, a and b commits
    assert walk(t, own, own_tokens, [3, 6, 3, 0], [13, 16, 13, 0]) == 3  # root -> a -> ab
    assert walk(t, own, own_tokens, [6, 0, 3, 0], [16, 0, 13, 0]) == 3  # root -> b -> ab, the merge edge
    assert walk(t, own, own_tokens, [6, 0, 3, 0], [16, 0, 14, 0]) == 2  # another token at b: b only
    assert walk(t, own, own_tokens, [1, 6, 3, 0], [11, 16, 13, 0]) == 0  # an undrafted position


def test_a_merge_is_not_walked_where_the_states_disagree() -> None:
    """At temperature > 0 the two orders may draft rank 2's token from different noise: the merge edge's
    parent plus its commit is then not the child's state, and the walk must not take it."""
    layout, t = two_orders()
    order = torch.tensor([5, 3, 6, 0, 1, 2, 4, 7])
    x = torch.full((1, 12), 99)
    cands = (torch.arange(8).view(1, 8, 1) + 10).repeat(3, 1, 1)
    cands[1, 6] = 40  # rank 2 (position 6) drafted one commit in (b) differs from two commits in (ab)
    _, own, own_tokens = node_states(x, 4, order, cands, t)
    assert not own[4].any()  # the merge edge commits nothing any step could equal
    assert walk(t, own, own_tokens, [6, 0, 3, 0], [40, 0, 13, 0]) == 2  # root -> b, then no further


def test_the_graph_shares_states_and_keeps_its_budget() -> None:
    cal = Calibration.load(SHIPPED)
    gen = torch.Generator().manual_seed(0)
    merged = 0
    for _ in range(20):
        logits = torch.randn(1, 8, 30, generator=gen) * 4
        order = torch.randperm(8, generator=gen)
        for budget in (1, 4, 16):
            layout, _ = DraftGraph(budget, cal).grow(logits, order, 8)
            assert layout.evaluated == layout.size <= budget and layout.depth[0] == 1
            assert max(layout.depth) <= 7  # unseeded: no state filling the block
            merged += len(layout.merges)
        assert DraftGraph(16, cal).grow(logits, order, 1)[0].evaluated == 0
    assert merged > 0


def test_the_shipped_calibration_beats_the_adaptive_tree_on_arith() -> None:
    """Measured on the default sweep's setting (the first 20 test problems), same budget."""
    from ssd.benchmarks.arith import problems
    from ssd.models.llada import LLaDA

    model = LLaDA.from_pretrained(str(REPO / "ssd/assets/arith-llada"), dtype="float32", device="cpu")
    common = dict(gen_length=24, block_length=8, cache=CacheMode.dual, tree_budget=16)
    nfe = {"adaptive": 0, "graph": 0}
    for p in problems("test", 20, 0):
        ids = list(model.tokenizer(p.prompt)["input_ids"])
        ref = Stepwise(SelfSpeculative(SSDConfig(**common)).reference_config()).generate(model, ids)
        for name, extra in (("adaptive", {}), ("graph", {"tree_calibration": SHIPPED})):
            out = SelfSpeculative(SSDConfig(**common, **extra)).generate(model, ids)
            assert out.tokens == ref.tokens
            nfe[name] += out.nfe
    assert nfe["graph"] < nfe["adaptive"] * 0.95


def test_the_calibration_replay_counts_the_decoders_forwards(monkeypatch) -> None:
    """scripts/tree_calibrate.py's replay over stepwise's traces is SSD's own walk: same NFE."""
    monkeypatch.syspath_prepend(str(REPO / "scripts"))
    script = load_script("tree_calibrate")
    blocks, _ = script.trace(4, 3)
    graph = DraftGraph(16, Calibration.load(SHIPPED))
    _, stats = script.replay(blocks, graph)
    from ssd.benchmarks.arith import problems
    from ssd.models.llada import LLaDA

    model = LLaDA.from_pretrained(str(REPO / "ssd/assets/arith-llada"), dtype="float32", device="cpu")
    dec = SelfSpeculative(
        SSDConfig(
            gen_length=24, block_length=8, cache=CacheMode.dual, tree_budget=16, tree_calibration=SHIPPED
        )
    )
    nfe = sum(
        dec.generate(model, list(model.tokenizer(p.prompt)["input_ids"])).nfe for p in problems("train", 4, 3)
    )
    assert stats["mean_nfe"] == pytest.approx(nfe / 4)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "not found"),
        ("{not json", "not a draft-graph calibration"),
        ('{"format": "other"}', "format is 'other'"),
        ('{"format": "ssd-draft-graph/1", "features": ["x"]}', "features"),
        ("WEIGHTS_SHORT", "one row of 10 numbers per depth"),
        ("BEAM_ZERO", "must be >= 1"),
        ("TOKENS_HUGE", "graph.tokens"),
    ],
)
def test_a_bad_calibration_is_a_one_line_error(tmp_path: Path, content: str | None, message: str) -> None:
    path = tmp_path / "cal.json"
    good = json.loads((REPO / SHIPPED).read_text())
    if content == "WEIGHTS_SHORT":
        content = json.dumps(good | {"weights": [[1.0, 2.0]]})
    elif content == "BEAM_ZERO":
        content = json.dumps(good | {"graph": good["graph"] | {"beam": 0}})
    elif content == "TOKENS_HUGE":
        content = json.dumps(good | {"graph": good["graph"] | {"tokens": 1000}})
    if content is not None:
        path.write_text(content)
    with pytest.raises(SSDError, match=message) as e:
        SelfSpeculative(SSDConfig(gen_length=16, block_length=8, tree_budget=4, tree_calibration=str(path)))
    assert "\n" not in str(e.value) and "tree_calibrate.py" in str(e.value)


@pytest.mark.parametrize(
    ("knobs", "message"),
    [
        (dict(tree_calibration=SHIPPED), "set decoder.tree_budget too"),
        (
            dict(tree_calibration=SHIPPED, tree_budget=8, tree_cost="results/forward_cost/h100_llada8b.json"),
            "drop one of them",
        ),
        (dict(tree_calibration=SHIPPED, tree_budget=8, policy="fast_dllm"), "stepwise's single commits"),
    ],
)
def test_calibration_knob_conflicts_are_one_line_errors(knobs: dict, message: str) -> None:
    with pytest.raises(SSDError, match=message) as e:
        SelfSpeculative(SSDConfig(**({"gen_length": 16, "block_length": 8} | knobs)))
    assert "\n" not in str(e.value)


def test_without_the_knob_the_adaptive_tree_is_unchanged() -> None:
    """The recorded adaptive runs stand: no calibration, no graph, the depth-only model and K = 3."""
    dec = SelfSpeculative(SSDConfig(gen_length=16, block_length=8, tree_budget=6))
    assert dec.adaptive.graph is None and dec.adaptive.k == 3
    model = model_for("llada", 1, 1.5)
    prompt = random_prompt(len(model.tokenizer), 3, 8)
    assert (
        dec.generate(model, prompt).tokens == Stepwise(dec.reference_config()).generate(model, prompt).tokens
    )


def test_the_calibrated_arm_has_its_own_label() -> None:
    from ssd.report.labels import decoder_label

    graph = {"name": "ssd", "tree": "", "tree_budget": 16, "tree_calibration": SHIPPED}
    assert decoder_label(graph)[0] == "ssd budget=16 graph=draft_graph"
    assert decoder_label(graph | {"tree_calibration": ""})[0] == "ssd budget=16"
