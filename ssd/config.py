"""Structured config schemas (torch-free), registered with Hydra's ConfigStore.

Every option file in `conf/<group>/` starts from one of these schemas, so a misspelt key or a value of
the wrong type fails when the config is composed, not halfway through a run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, OmegaConf

from ssd.bounds import (
    DTYPES,
    FRACTION,
    NON_NEGATIVE,
    POSITIVE,
    POSITIVE_INT,
    PROBABILITY,
    Bounds,
    Choices,
    Free,
    knob,
)

ASSETS = Path(__file__).resolve().parent / "assets"  # checkpoints shipped with the package


class CacheMode(str, Enum):
    """Fast-dLLM's cache modes (semantics in ssd/models/cache.py)."""

    none = "none"
    prefix = "prefix"
    dual = "dual"


class VerifyLayout(str, Enum):
    """How a forward over several candidate states of one sequence reads the cache (ssd/models/tree.py)."""

    auto = "auto"  # tree on a GPU, batch on a CPU: the faster one, as measured (scripts/forward_cost.py)
    batch = "batch"  # one row per candidate, each with its own copy of the cache
    tree = "tree"  # the candidates side by side in one row over one copy of the cache


@dataclass
class ModelConfig:
    name: str = MISSING  # registry key: llada | dream
    path: str = MISSING  # a local checkpoint folder, or a hub id (downloaded where the hub is reachable)
    dtype: str = knob("auto", DTYPES)  # auto (bf16 on GPU, fp32 on CPU) | float32 | bfloat16 | float16
    device: str = knob("auto", Choices(("auto", "cpu", "cuda"), r"cuda:\d+", "cuda:N"))


@dataclass
class DecoderConfig:
    name: str = MISSING
    gen_length: int = knob(256, POSITIVE_INT)
    block_length: int = knob(32, POSITIVE_INT)  # must divide gen_length (checked by the decoder)
    cache: CacheMode = CacheMode.none
    temperature: float = knob(0.0, NON_NEGATIVE)  # 0 = greedy; > 0 = Gumbel-max sampling as LLaDA does it
    verify_layout: VerifyLayout = VerifyLayout.auto  # candidate states sharing the cache: auto|batch|tree
    # Every cached forward padded to the decoder's most candidate rows, one prompt at a time: a state's
    # logits then do not depend on its row, so a lossless decoder equals its reference bit for bit.
    bit_exact: bool = False


@dataclass
class StepwiseConfig(DecoderConfig):
    name: str = "stepwise"
    # bit_exact: the rows each forward is padded to (set by the decoder it is checking)
    pad_rows: int = knob(1, POSITIVE_INT)


class ParallelRule(str, Enum):
    threshold = "threshold"
    factor = "factor"


@dataclass
class FastDLLMConfig(DecoderConfig):
    name: str = "fast_dllm"
    rule: ParallelRule = ParallelRule.threshold
    # tau: commit every masked position with confidence >= tau (top-1 always)
    threshold: float = knob(0.9, FRACTION)
    factor: float = knob(1.0, POSITIVE)  # f: commit the top n while (n + 1) * (1 - c_(n)) < f (top-1 always)
    # bit_exact: the rows each forward is padded to (set by the speculation run it is the reference of)
    pad_rows: int = knob(1, POSITIVE_INT)


class StepPolicy(str, Enum):
    """The decoder whose steps SSD speculates over (ssd/decoders/policy.py); its output is SSD's."""

    stepwise = "stepwise"
    fast_dllm = "fast_dllm"  # Fast-dLLM's rule, threshold or factor (decoder.rule, .threshold, .factor)


@dataclass
class SSDConfig(DecoderConfig):
    name: str = "ssd"
    # whose steps are speculated, and so whose output SSD reproduces: stepwise's (the paper's SSD) or
    # Fast-dLLM's with these rule knobs (the same knobs and defaults as decoder=fast_dllm)
    policy: StepPolicy = StepPolicy.stepwise
    rule: ParallelRule = ParallelRule.threshold
    threshold: float = knob(0.9, FRACTION)
    factor: float = knob(1.0, POSITIVE)
    draft_length: int = knob(4, POSITIVE_INT)  # N: the chain's drafts per iteration (unused by a tree)
    tree: str = ""  # a verification tree shape (ssd/decoders/tree.py), e.g. "0-1-00"; "": the chain
    tree_budget: int = knob(0, NON_NEGATIVE)  # > 0: an adaptive tree of at most this many rows (adaptive.py)
    tree_cost: str = ""  # with tree_budget: a forward-cost JSON; the budget is then chosen per iteration
    # with tree_budget: a draft-graph calibration JSON (scripts/tree_calibrate.py); rows then come from its
    # fitted position model, states shared by several commit orders verified once (ssd/decoders/graph.py)
    tree_calibration: str = ""
    # also evaluate the states that fill the block, as the next block's refresh (with a cache: full rows
    # beside the cached ones); the one accepted stands in for that refresh
    seed_next_block: bool = False
    # with seed_next_block: the most filling states run whole per forward (the most likely first); 0: all
    seed_rows: int = knob(0, NON_NEGATIVE)

    def tree_problems(self) -> list[str]:
        """The tree and seeding knobs that exclude each other (the decoder refuses them too)."""
        problems = []
        if self.tree and self.tree_budget:
            problems.append("decoder.tree and decoder.tree_budget exclude each other: set one of them")
        if self.tree_cost and not self.tree_budget:
            problems.append("decoder.tree_cost prices an adaptive tree: set decoder.tree_budget too")
        if self.tree_calibration and not self.tree_budget:
            problems.append("decoder.tree_calibration shapes an adaptive tree: set decoder.tree_budget too")
        if self.tree_calibration and self.tree_cost:
            problems.append(
                "decoder.tree_calibration does not price its rows with decoder.tree_cost (it fills the "
                "budget): drop one of them"
            )
        if self.seed_next_block and self.tree_cost:
            problems.append(
                "decoder.seed_next_block does nothing with decoder.tree_cost (the table prices a seed as "
                "the refresh it may save, so a priced tree never runs one): drop one of them"
            )
        if self.seed_next_block and self.bit_exact and self.cache == "none":
            problems.append(
                "decoder.seed_next_block with decoder.bit_exact needs a cache (without one the seeds are "
                "rows of the padded forward, not the reference's refresh): set decoder.cache or drop one"
            )
        return problems + self.policy_problems()

    def policy_problems(self) -> list[str]:
        """Knobs outside the chosen policy's meaning: Fast-dLLM's rule under stepwise, shapes under a rule."""
        if self.policy == StepPolicy.stepwise:
            rule = FastDLLMConfig()
            if (self.rule, self.threshold, self.factor) != (rule.rule, rule.threshold, rule.factor):
                return [
                    "decoder.rule, decoder.threshold and decoder.factor choose Fast-dLLM's steps, and "
                    "decoder.policy=stepwise speculates over stepwise's: set decoder.policy=fast_dllm or "
                    "drop them"
                ]
            return []
        if self.tree:
            return [
                "decoder.tree names single commits, stepwise's steps; decoder.policy=fast_dllm commits sets: "
                "use decoder.tree_budget (an adaptive tree) or decoder.draft_length (a chain) instead"
            ]
        if self.tree_calibration:
            return [
                "decoder.tree_calibration is a draft graph of stepwise's single commits; decoder.policy="
                "fast_dllm commits sets: drop decoder.tree_calibration (its adaptive tree is drafts.py's)"
            ]
        if self.rule == ParallelRule.factor and self.factor <= 0:
            return [f"decoder.factor must be positive (got {self.factor})"]
        return []

    def relations(self) -> list[str]:
        problems = self.tree_problems()
        if not (self.tree or self.tree_budget):
            problems += _draft_within_block(self.draft_length, self.block_length, 1)
        return problems


@dataclass
class PSDConfig(FastDLLMConfig):
    name: str = "psd"
    draft_length: int = knob(4, NON_NEGATIVE)  # D: the deepest temporal draft beyond the policy's set

    def relations(self) -> list[str]:
        return _draft_within_block(self.draft_length, self.block_length, 0)


@dataclass
class TargetGreedyConfig(DecoderConfig):
    """Greedy decoding of an autoregressive target: DiffuSpec's reference. Blocks play no part."""

    name: str = "target_greedy"
    target_path: str = "Qwen/Qwen2.5-7B-Instruct"  # a Qwen2 checkpoint folder or hub id
    target_dtype: str = knob("auto", DTYPES)


@dataclass
class DiffuSpecConfig(TargetGreedyConfig):
    """A dLLM drafts for the autoregressive target; defaults are the paper's (algorithms.md)."""

    name: str = "diffuspec"
    beam: int = knob(3, POSITIVE_INT)  # CPS beam width
    # CPS: candidates per position up to this cumulative probability ...
    mass: float = knob(0.8, FRACTION)
    max_candidates: int = knob(15, POSITIVE_INT)  # ... and at most this many (EOS always kept)
    # lambda: lambda * log p_dLLM + (1 - lambda) * log p_ngram; 1 disables the n-gram
    mix: float = knob(0.5, PROBABILITY)
    ngram: int = knob(3, POSITIVE_INT)  # n-gram order (1: unigram)
    k_init: int = knob(30, POSITIVE_INT)  # ADL: first draft length, ...
    k_min: int = knob(20, POSITIVE_INT)  # ... clipped to [k_min, k_max] ...
    k_max: int = knob(30, POSITIVE_INT)
    # ... with this bonus when the accepted length keeps up with the generated one
    delta: int = knob(10, NON_NEGATIVE)
    rho: float = knob(0.5, PROBABILITY)  # EMA factor of the generated and accepted lengths

    def relations(self) -> list[str]:
        if self.k_min <= self.k_init <= self.k_max:
            return []
        return [
            f"decoder.k_min={self.k_min}, k_init={self.k_init}, k_max={self.k_max} are out of order: "
            f"pass values with k_min <= k_init <= k_max"
        ]


@dataclass
class BenchmarkConfig:
    name: str = MISSING
    num_fewshot: int = knob(0, NON_NEGATIVE)  # the upper bound is the benchmark's (its shipped examples)
    chat: bool = True  # wrap the prompt in the model's chat template (Instruct models)
    data_dir: str = "data"


@dataclass
class GSM8KConfig(BenchmarkConfig):
    name: str = "gsm8k"
    num_fewshot: int = knob(5, NON_NEGATIVE)
    variant: str = knob("gsm8k", Choices(("gsm8k", "gsm8k_cot", "gsm8k_cot_zeroshot")))  # lm-eval tasks


@dataclass
class MATHConfig(BenchmarkConfig):
    """MATH as lm-eval's minerva_math (ssd/benchmarks/math.py)."""

    name: str = "math"
    num_fewshot: int = knob(4, NON_NEGATIVE)  # the Minerva examples (0..4)
    subset: str = knob("full", Choices(("full", "math500")))  # full (the 5,000-problem test split) | math500
    # wall seconds per math-verify grade (a hung grade counts as wrong)
    grade_timeout: float = knob(10.0, POSITIVE)


@dataclass
class CodeConfig(BenchmarkConfig):
    """What the code benchmarks share: generated programs graded in the sandbox (ssd/sandbox/)."""

    timeout: float = knob(10.0, POSITIVE)  # wall seconds per program in the sandbox
    # The sandbox's isolation; part of a run's identity. auto = SSD_SANDBOX if set, else the best that
    # works here; the runner records the one that grades (none: uncontained, README "Running generated code")
    sandbox: str = knob("auto", Choices(("auto", "bwrap", "ns", "none")))


@dataclass
class HumanEvalConfig(CodeConfig):
    """HumanEval as lm-eval's humaneval, 0-shot, pass@1 (ssd/benchmarks/humaneval.py)."""

    name: str = "humaneval"


@dataclass
class MBPPConfig(CodeConfig):
    """MBPP (full test split) as lm-eval's mbpp, pass@1 (ssd/benchmarks/mbpp.py)."""

    name: str = "mbpp"
    num_fewshot: int = knob(3, NON_NEGATIVE)  # task_ids 2, 3, 4 of the prompt split (0..3)


@dataclass
class ArithConfig(BenchmarkConfig):
    """The embedded models' generated tasks: arith, the default's, and tally (ssd/benchmarks/)."""

    name: str = "arith"
    chat: bool = False  # plain-text prompts: what the shipped arith checkpoints were trained on
    seed: int = knob(0, Free("any integer picks a test split"))  # disjoint from training data for any seed
    size: int = knob(200, Bounds(lo=1, hi=10_000))  # test problems, ~0.5 ms each to draw (a job: its `limit`)


class WandbMode(str, Enum):
    disabled = "disabled"
    offline = "offline"  # written under $WANDB_DIR (or ./wandb); `wandb sync` uploads it later
    online = "online"  # without an API key: offline, with one warning line


@dataclass
class WandbConfig:
    """Mirror each job to W&B (ssd/results/wandb_mirror.py; `pip install -e '.[wandb]'`). A copy of the run
    folder, logged after it is complete: it never changes a result or the run folder's name."""

    mode: WandbMode = WandbMode.disabled
    project: str = "ssd"
    entity: str | None = None
    group: str | None = "${sweep}"  # one W&B group per sweep


@dataclass
class TimingConfig:
    """How jobs are timed (ssd/results/timing.py). Threads change tokens/s, never tokens."""

    # torch's intra-op CPU threads; null = torch's default (one per core). 1 by default: a job then never
    # fights itself for cores, and on a shared machine its timings stay comparable (see the README).
    threads: int | None = knob(1, Bounds(lo=1, nullable=True))
    # Also time the decoder's reference on each sample, interleaved, for a paired per-sample speedup.
    paired: bool = False


@dataclass
class RunConfig:
    model: ModelConfig = MISSING
    decoder: DecoderConfig = MISSING
    benchmark: BenchmarkConfig = MISSING
    # the first `limit` samples of the benchmark (None = all; 0 is refused: it would "finish" with nothing)
    limit: int | None = knob(None, Bounds(lo=1, nullable=True))
    shard: str | None = None  # "i/n": this job takes every n-th of those samples, starting at the i-th
    # prompts decoded together (left-padded; each gets the tokens it gets alone)
    batch_size: int = knob(1, POSITIVE_INT)
    # Decode each sample with the decoder's reference too and record token identity (None: whenever the
    # decoder has a reference). The reference is an ordinary run folder, so a sweep's own reference
    # job is reused, and its cost never enters this job's throughput.
    check_lossless: bool | None = None
    seed: int = knob(0, Free("any integer seeds the per-sample seeds"))
    output_dir: str = "results/runs"  # one run folder per job below this
    sweep: str = "adhoc"  # a label grouping the runs of one sweep; part of a run's identity (its hash)
    wandb: WandbConfig = field(default_factory=WandbConfig)
    timing: TimingConfig = field(default_factory=TimingConfig)


def _draft_within_block(draft_length: int, block_length: int, least: int) -> list[str]:
    """A draft never reaches past its block: a longer one is no different and would only mislabel the run."""
    if draft_length <= block_length:
        return []
    return [
        f"decoder.draft_length={draft_length} exceeds decoder.block_length={block_length} (a draft stays in "
        f"its block): pass decoder.draft_length between {least} and {block_length}"
    ]


def parse_shard(value: object) -> tuple[int, int] | None:
    """`"i/n"` -> (i, n) with 0 <= i < n; None when unsharded."""
    if value in (None, ""):
        return None
    try:
        i, n = (int(p) for p in str(value).split("/"))
    except ValueError:
        i, n = -1, 0
    if not 0 <= i < n:
        from ssd.errors import SSDError

        raise SSDError(f"shard={value!r} is not 'i/n' with 0 <= i < n: pass e.g. shard=0/4")
    return i, n


SCHEMAS: dict[str, dict[str, type]] = {
    "model": {"_schema": ModelConfig},
    "decoder": {
        "_schema_stepwise": StepwiseConfig,
        "_schema_fast_dllm": FastDLLMConfig,
        "_schema_ssd": SSDConfig,
        "_schema_psd": PSDConfig,
        "_schema_diffuspec": DiffuSpecConfig,
        "_schema_target_greedy": TargetGreedyConfig,
    },
    "benchmark": {
        "_schema_gsm8k": GSM8KConfig,
        "_schema_arith": ArithConfig,
        "_schema_tally": ArithConfig,
        "_schema_math": MATHConfig,
        "_schema_humaneval": HumanEvalConfig,
        "_schema_mbpp": MBPPConfig,
    },
}


def asset(name: str) -> str:
    """`${asset:NAME}` in a config: the folder ssd/assets/NAME shipped with the package, wherever it is
    installed. Relative to the working directory when below it (so from the repo root the resolved config,
    and with it the run folder's hash, is the same on every machine), absolute otherwise."""
    path = ASSETS / name
    try:
        return str(path.relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def register() -> None:
    """Store the schemas so that config files can name them in their defaults lists."""
    if not OmegaConf.has_resolver("asset"):
        OmegaConf.register_new_resolver("asset", asset)
    cs = ConfigStore.instance()
    cs.store(name="_run_schema", node=RunConfig)
    for group, nodes in SCHEMAS.items():
        for name, node in nodes.items():
            cs.store(group=group, name=name, node=node)
