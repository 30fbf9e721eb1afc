"""How far can verification trees built from one forward go? An upper bound on the arith model.

Decodes the arith problems with stepwise (gen 24, block 8, dual cache) and records, at every state, its
block confidences, token probabilities and stepwise's choice. An SSD iteration starting at state t with a
tree drawn from t's forward commits stepwise's next d choices only if the tree holds that path; the most
any tree can do is hold it whenever every step (position, token) is among the candidates the tree may
draw from: position = the j-th most confident free position at t (j < J), token = t's k-th most likely
there (k < K). The bound counts the forwards of SSD with such an oracle tree of unlimited rows
(J = K = 1: the chain of unlimited length). Writes Markdown + JSON.
Usage: OMP_NUM_THREADS=1 python scripts/tree_oracle.py [--limit 200] [--out results/tree_sweep/oracle]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir

from ssd.config import CacheMode, StepwiseConfig, register
from ssd.decoders.stepwise import Stepwise
from ssd.run import _parts, completion_and_count, prompt_ids

CONF = Path(__file__).resolve().parent.parent / "conf"
GEN, BLOCK = 24, 8


class Tracing(Stepwise):
    """Stepwise, keeping per block the (confidences, probabilities, choice, token) of every state."""

    def __init__(self, cfg: StepwiseConfig) -> None:
        super().__init__(cfg)
        self.traces: list[list[tuple]] = []

    def block(self, fwd, x, logits, noise, committed):
        trace: list[tuple] = []
        for step in range(fwd.end - fwd.start):
            if step:
                logits = yield x
            tokens, confidence = self.predict_block(fwd, x, logits, step == 0)
            pos = int(confidence.argmax(-1))
            probs = torch.softmax(logits[0].to(torch.float64), -1)
            trace.append((confidence[0].clone(), probs, pos, int(tokens[0, pos])))
            x[0, fwd.start + pos] = tokens[0, pos]
            committed.append(1)
        self.traces.append(trace)


def forwards(blocks: list[list[tuple]], j_max: int, k_max: int, seed: bool = False) -> int:
    """Forwards of SSD with an oracle tree (unlimited rows) drawing from j < J, k < K (`seed`: a block
    whose last iteration reached the state filling it needs no refresh for the next block of its sample)."""
    nfe, seeded = 0, False
    for b, trace in enumerate(blocks):
        nfe += 0 if seeded and b % (GEN // BLOCK) else 1  # the refresh, unless the last block seeded it
        t, seeded = 0, False
        while t < len(trace):
            if t == len(trace) - 1:  # one masked position left: committed without a forward
                break
            conf, probs, root, _ = trace[t]
            order = torch.sort(conf, descending=True, stable=True).indices.tolist()
            used, d = [root], 1
            while t + d < len(trace):
                _, _, pos, tok = trace[t + d]
                free = [r for r in order if r not in used]
                if free.index(pos) < j_max and tok in probs[pos].topk(k_max).indices.tolist():
                    used.append(pos)
                    d += 1
                else:
                    break
            nfe += 1
            t += d
            seeded = seed and t == len(trace)
    return nfe


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--limit", type=int, default=200)
    ap.add_argument("--out", default="results/tree_sweep/oracle")
    args = ap.parse_args()
    register()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=["+experiment=default", "decoder=stepwise"])
    benchmark, _, model = _parts(cfg, {})
    dec = Tracing(StepwiseConfig(gen_length=GEN, block_length=BLOCK, cache=CacheMode.dual))
    tokens = 0
    for sample in benchmark.samples()[: args.limit]:
        _, ids = prompt_ids(benchmark, model.tokenizer, sample)
        gen = dec.generate(model, ids)
        decode = lambda t: model.tokenizer.decode(t, skip_special_tokens=True)  # noqa: E731
        tokens += completion_and_count(gen.tokens, model.stop_ids, decode, benchmark.cut)[1]
    n = min(args.limit, len(benchmark.samples()))
    rows = []
    for j, k in ((1, 1), (2, 1), (3, 1), (4, 1), (2, 2), (4, 2), (4, 3), (4, 8), (8, 8)):
        nfe, seeded = forwards(dec.traces, j, k), forwards(dec.traces, j, k, seed=True)
        rows.append(
            {
                "J": j,
                "K": k,
                "mean_nfe": nfe / n,
                "tpf": tokens / nfe,
                "seeded_mean_nfe": seeded / n,
                "seeded_tpf": tokens / seeded,
            }
        )
    command = f"OMP_NUM_THREADS=1 python scripts/tree_oracle.py --limit {args.limit}"
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(
        json.dumps({"command": command, "n": n, "rows": rows}, indent=1) + "\n"
    )
    lines = [
        "# Upper bound of one-forward verification trees on the arith model (gen 24, block 8, dual cache)",
        "",
        f"Command: `{command}`. SSD with an oracle tree of unlimited rows that holds stepwise's path",
        "whenever every step is among the j < J most confident free positions and k < K most likely tokens",
        "of the iteration's own forward (scripts/tree_oracle.py). J = K = 1: the chain of unlimited length.",
        "Seeded: the tree's states that fill the block also run whole (decoder.seed_next_block), so a block",
        "whose last iteration reaches its filling state needs no refresh for the next one.",
        "",
        "| J | K | NFE | TPF | NFE seeded | TPF seeded |",
        "|--:|--:|--:|--:|--:|--:|",
        *(
            f"| {r['J']} | {r['K']} | {r['mean_nfe']:.2f} | {r['tpf']:.2f} | {r['seeded_mean_nfe']:.2f} | "
            f"{r['seeded_tpf']:.2f} |"
            for r in rows
        ),
    ]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
