"""Calibrate SSD's draft graph (ssd/decoders/graph.py) offline, on the arith model's TRAIN split.

Decodes train problems with stepwise (gen 24, block 8, dual cache; scripts/tree_oracle.py's trace of
every state: confidences, probabilities, stepwise's choice), then fits the graph's position model by
maximum likelihood on stepwise's own choices at the states SSD starts its iterations from, on policy:
round 0 is the adaptive tree's depth-only geometric prior; each round replays SSD with the current model
over the traces (a node is reached iff each commit on a path to it is stepwise's choice at its parent,
as in the decoder, so the replay's NFE is SSD's), collects its iteration starts and the choices stepwise
made below them, and refits. The problems' last quarter is held out: the report gives each round's
replayed NFE, TPF, rows and projected H100 speedup on it; the best round is written. The test split is
never read. Problems are drawn with --seed 1 by default (the model trained on seed 0's problems).
Writes the calibration JSON (provenance inside) and a Markdown report of the rounds.
Usage: OMP_NUM_THREADS=1 python scripts/tree_calibrate.py [--model arith_llada] [--problems 400] [--seed 1]
       [--budget 16] [--out ssd/assets/arith-llada/draft_graph.json]
       [--report results/tree_sweep/calibration.md]
"""

from __future__ import annotations

import argparse
import math
import os
import time
from datetime import datetime, timezone
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from tree_oracle import BLOCK, CONF, GEN, Tracing  # scripts/ is on sys.path

from ssd.benchmarks.arith import problems
from ssd.benchmarks.base import Sample
from ssd.config import CacheMode, StepwiseConfig, register
from ssd.cost import CostTable
from ssd.decoders.graph import FEATURES, RANKS, Calibration, DraftGraph, confidence_logit, features
from ssd.results.provenance import git_state
from ssd.run import _parts, prompt_ids

DEPTHS = 6  # one weight row per depth 1..DEPTHS; deeper states share the last
L2 = 1e-2
COSTS = {
    "arith_llada": "results/forward_cost/h100_llada8b.json",
    "arith_dream": "results/forward_cost/h100_dream7b.json",
}
COST = CostTable.load(COSTS["arith_llada"])  # the model's architecture's table (main() sets it)


def trace(n: int, seed: int, model_conf: str = "arith_llada") -> tuple[list[list[tuple]], str]:
    """Stepwise's traces (one per block) of n train problems, and the model's path."""
    register()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=["+experiment=default", "decoder=stepwise", f"model={model_conf}"])
    benchmark, _, model = _parts(cfg, {})
    dec = Tracing(StepwiseConfig(gen_length=GEN, block_length=BLOCK, cache=CacheMode.dual))
    for i, p in enumerate(problems("train", n, seed)):
        sample = Sample(id=f"train-{seed}-{i}", question=p.prompt, target=p.answer, meta={})
        dec.generate(model, prompt_ids(benchmark, model.tokenizer, sample)[1])
    return dec.traces, str(cfg.model.path)


def replay(blocks: list[list[tuple]], graph: DraftGraph) -> tuple[list[tuple[int, int]], dict]:
    """SSD with `graph` over stepwise's traces: its iteration starts (block, step) and its NFE, rows and
    projected H100 time per sample (3 blocks)."""
    starts, nfe, rows, ms = [], 0, 0, 0.0
    for b, steps in enumerate(blocks):
        nfe, ms, t = nfe + 1, ms + COST.refresh_ms, 0
        while t < len(steps) - 1:  # one position left: committed without a forward
            starts.append((b, t))
            conf, probs, _, _ = steps[t]
            m = len(steps) - t
            order = torch.sort(conf, descending=True, stable=True).indices
            layout, _ = graph.grow(probs.log()[None], order, m)
            tops = probs.topk(graph.cal.tokens, dim=-1).indices.tolist()
            positions = order.tolist()
            state: list[frozenset] = []
            for i in range(layout.size):
                q = positions[layout.rank[i]]
                above = state[layout.parent[i]] if i else frozenset()
                state.append(above | {(q, tops[q][layout.token[i]])})
            edges = {(layout.parent[i], i) for i in range(1, layout.size)} | {
                (a, c) for a, c, _ in layout.merges
            }
            node = {s: i for i, s in enumerate(state)}
            at, d = 0, 1
            while t + d < len(steps):
                _, _, pos, tok = steps[t + d]
                nxt = node.get(state[at] | {(pos, tok)})
                if nxt is None or (at, nxt) not in edges:
                    break
                at, d = nxt, d + 1
            nfe, rows, ms = nfe + 1, rows + layout.evaluated, ms + COST.forward_ms(layout.evaluated, 0)
            t += d
    samples = len(blocks) / (GEN // BLOCK)
    stepwise_ms = (GEN // BLOCK) * (COST.refresh_ms + (BLOCK - 1) * COST.ms(1))
    forwards = nfe - len(blocks)
    stats = {
        "mean_nfe": nfe / samples,
        "mean_rows": rows / max(forwards, 1),
        "projected_h100": stepwise_ms / (ms / samples),
    }
    return starts, stats


def examples(blocks: list[list[tuple]], starts: list[tuple[int, int]]) -> dict[int, list]:
    """Per depth: (features of every free rank [free, F], index of stepwise's choice) at each state on
    stepwise's path below an iteration start, where at least two positions are free."""
    out: dict[int, list] = {}
    for b, t in starts:
        steps = blocks[b]
        conf, probs, root, _ = steps[t]
        m = len(steps) - t
        positions = torch.sort(conf, descending=True, stable=True).indices.tolist()
        rank_of = {q: r for r, q in enumerate(positions[:m])}
        near = [(rank_of.get(q - 1, -1), rank_of.get(q + 1, -1)) for q in positions[:m]]
        z = [confidence_logit(c) for c in probs[positions[:m]].max(-1).values.tolist()]
        used = 1 << rank_of[root]
        for d in range(1, m - 1):
            free = [x for x in range(m) if not used >> x & 1]
            x = rank_of[steps[t + d][2]]
            rows = [features(y, j, z[y], near[y], used) for j, y in enumerate(free)]
            out.setdefault(min(d, DEPTHS), []).append(
                (torch.tensor(rows, dtype=torch.float64), free.index(x))
            )
            used |= 1 << x
    return out


def fit(data: dict[int, list]) -> list[list[float]]:
    """Conditional-logit weights per depth (a depth without data keeps the one above it)."""
    weights: list[list[float]] = []
    for d in range(1, DEPTHS + 1):
        items = data.get(d)
        weights.append(fit_depth(items) if items else weights[-1] if weights else prior()[0])
    return weights


def fit_depth(items: list[tuple[torch.Tensor, int]]) -> list[float]:
    """L2-regularised maximum likelihood of stepwise's choices under softmax(features @ w)."""
    w = torch.zeros(len(FEATURES), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w], max_iter=200, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        nll = sum(-torch.log_softmax(x @ w, 0)[y] for x, y in items) / len(items)
        loss = nll + L2 * (w * w).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return [round(v, 6) for v in w.detach().tolist()]


def prior() -> list[list[float]]:
    """The adaptive tree's geometric prior P(j) ~ 2^-(j+1), as weights (round 0)."""
    row = [-(j + 1) * math.log(2) for j in range(RANKS + 1)] + [0.0] * (len(FEATURES) - RANKS - 1)
    return [row] * DEPTHS


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="arith_llada", choices=sorted(COSTS), help="conf/model/<name>.yaml")
    ap.add_argument("--problems", type=int, default=400)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--budget", type=int, default=16, help="rows per forward while calibrating")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", default="ssd/assets/arith-llada/draft_graph.json")
    ap.add_argument("--report", default="results/tree_sweep/calibration.md")
    args = ap.parse_args()
    global COST
    COST = CostTable.load(COSTS[args.model])
    t0, load_before = time.time(), os.getloadavg()
    blocks, model_path = trace(args.problems, args.seed, args.model)
    cut = len(blocks) * 3 // 4 // (GEN // BLOCK) * (GEN // BLOCK)  # whole problems
    fitting, held = blocks[:cut], blocks[cut:]
    cal = Calibration(weights=tuple(map(tuple, prior())))
    history, best = [], None
    for r in range(args.rounds + 1):
        graph = DraftGraph(args.budget, cal)
        starts, _ = replay(fitting, graph)
        _, stats = replay(held, graph)
        history.append({"round": r, **{k: round(v, 4) for k, v in stats.items()}})
        print(history[-1], flush=True)
        if best is None or stats["mean_nfe"] < best[1]["mean_nfe"]:
            best = (cal, stats, r)
        if r < args.rounds:
            cal = Calibration(weights=tuple(map(tuple, fit(examples(fitting, starts)))))
    command = (
        f"OMP_NUM_THREADS=1 python scripts/tree_calibrate.py --model {args.model} --problems {args.problems} "
        f"--seed {args.seed} "
        f"--budget {args.budget} --rounds {args.rounds} --out {args.out} --report {args.report}"
    )
    chosen, stats, r = best
    provenance = {
        "command": command,
        "model": model_path,
        "data": f"arith train split, problems('train', {args.problems}, seed={args.seed}): "
        f"{len(fitting) // 3} problems fitted, {len(held) // 3} held out",
        "decoding": f"stepwise, gen {GEN}, block {BLOCK}, dual cache, greedy",
        "rounds": history,
        "chosen_round": r,
        "git": git_state(),
        "torch": torch.__version__,
        "written": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "seconds": round(time.time() - t0, 1),
        "load": {"before": load_before, "after": os.getloadavg()},
    }
    out = Path(args.out)
    Calibration(chosen.weights, provenance=provenance).save(out)
    lines = [
        f"# Draft-graph calibration ({args.model}, arith train split)",
        "",
        f"Command: `{command}`. Held out: the last {len(held) // 3} of the problems (train split). "
        "Replayed SSD over stepwise's traces with each round's model, "
        f"{args.budget} rows per forward; round 0: the depth-only prior. Written: round {r}.",
        "",
        "| round | NFE | mean rows | projected H100 |",
        "|--:|--:|--:|--:|",
        *(
            f"| {h['round']} | {h['mean_nfe']:.2f} | {h['mean_rows']:.2f} | {h['projected_h100']:.2f}x |"
            for h in history
        ),
    ]
    Path(args.report).parent.mkdir(parents=True, exist_ok=True)
    Path(args.report).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
