"""Train the embedded models on the train splits of their generated tasks, on a CPU.

- `arith-llada`: a small masked diffusion LM of the LLaDA architecture on `arith` (ssd/benchmarks/
  arith.py), trained with LLaDA's SFT objective (scripts/tiny_training.py: `train_masked`).
- `arith-qwen2`: a small autoregressive Qwen2 (transformers' `Qwen2ForCausalLM`), next-token
  cross-entropy on the response tokens up to and including EOS: DiffuSpec's target. Same tokenizer.
- `arith-dream`: the Dream architecture (hidden i-1 predicts token i, 4 query / 2 KV heads, q/k/v biases):
  causal next-token pre-training (Dream starts from an AR model), then LLaDA's objective on its aligned
  logits. From a random init the shifted model sat on the plateau of per-position marginals (loss 1.32,
  0-10% accuracy) for 1000+ steps, where the LLaDA, or this Dream without its shift, leaves it in 200.
- `tally-dream`: a Dream on `tally` (ssd/benchmarks/tally.py), the second workload: answers of 95
  tokens decoded in blocks of 32. A Dream because its causal stage is what trains this length: a LLaDA on
  the masked objective alone (sequences of ~190 tokens, the digit each total needs 96 positions back) sat
  on the plateau of per-position marginals for 500+ steps, where the causal stage leaves it in ~250.
  RoPE base 1e4 instead of the architecture's 1e6, for offsets of ~96 (a choice, not compared).

All use the character tokenizer of ssd/models/tiny.py and plain-text prompts, and are saved in the
official layouts (`save_checkpoint` for LLaDA and Dream; `save_pretrained` + tokenizer files for Qwen2),
so the harness loads them through the same loaders as the real models.

Deterministic from `--seed`: fixed data (the train split drawn from the seed, consumed in order), seeded
initialisation and masking, `torch.use_deterministic_algorithms(True)`, a fixed thread count (`--threads`;
different thread counts or CPUs may round differently). Run twice, it writes byte-identical safetensors.

Sizes: all 4 layers, d 96, 4 heads, MLP 256, ~0.46M parameters (Dream 0.43M), 1.7-1.9 MB of fp32
safetensors each. Single-threaded, one process per model, `--jobs` (2) at a time: LLaDA 2400 steps of 64
sequences, ~530 s of CPU; Qwen2 2000 steps, ~430 s; Dream 1000 causal + 2000 masked steps, 494 s (alone,
at load ~2 on two cores; rerun, same bytes); tally's Dream 600 causal + 1400 masked steps of 32 sequences,
899 s of CPU. Each process computes exactly what it would alone.

    python scripts/train_tiny.py     # all four: ssd/assets/arith-{llada,qwen2,dream}, ssd/assets/tally-dream
    python scripts/train_tiny.py --only llada --llada-steps 50 --out /tmp/x --eval-every 25
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from tiny_training import (
    Recipe,
    Task,
    encode,
    init_weights,
    log,
    optimiser,
    pretrain_causal,
    setup,
    train_masked,
    update,
)

from ssd.benchmarks import arith, tally
from ssd.models.tiny import char_tokenizer, tiny_config

ASSETS = Path(__file__).resolve().parent.parent / "ssd" / "assets"
# arith's answer (21 characters + EOS) padded to the default sweep's gen 24, decoded in blocks of 8
ARITH = Task("arith", arith.problems, gen_length=24, block_length=8, max_length=128)
# tally's answer (94 characters + EOS) padded to gen 96, blocks of 32
TALLY = Task("tally", tally.problems, gen_length=96, block_length=32, max_length=256)

LLADA = Recipe(d_model=96, n_layers=4, n_heads=4, mlp=256, steps=2400)
QWEN2 = Recipe(d_model=96, n_layers=4, n_heads=4, mlp=256, steps=2000)
# Dream: the LLaDA's sizes, grouped KV heads; masked `steps` after DREAM_AR's causal ones (docstring: why)
DREAM = Recipe(d_model=96, n_layers=4, n_heads=4, mlp=256, steps=2000)
DREAM_AR = Recipe(d_model=96, n_layers=4, n_heads=4, mlp=256, steps=1000)
DREAM_KV_HEADS = 2
# tally's Dream: the same sizes, RoPE base 1e4 (docstring: why), half the batch of sequences 4x as long
TALLY_DREAM = Recipe(d_model=96, n_layers=4, n_heads=4, mlp=256, steps=1400, batch=32, rope_theta=1e4)
TALLY_AR = Recipe(d_model=96, n_layers=4, n_heads=4, mlp=256, steps=600, batch=32, rope_theta=1e4)
# name -> (task, recipe, output folder under --out)
MODELS: dict[str, tuple[Task, Recipe, str]] = {
    "llada": (ARITH, LLADA, "arith-llada"),
    "qwen2": (ARITH, QWEN2, "arith-qwen2"),
    "dream": (ARITH, DREAM, "arith-dream"),
    "tally": (TALLY, TALLY_DREAM, "tally-dream"),
}


def train_llada(task: Task, r: Recipe, seed: int, eval_every: int = 0) -> torch.nn.Module:
    from ssd.models.llada import LLaDA

    tokenizer = char_tokenizer("llada")
    sizes = dict(d_model=r.d_model, n_layers=r.n_layers, n_heads=r.n_heads, n_kv_heads=r.n_heads)
    sizes |= dict(mlp_hidden_size=r.mlp, max_sequence_length=task.max_length)
    if r.rope_theta is not None:
        sizes["rope_theta"] = r.rope_theta
    model = LLaDA.from_config(tiny_config("llada", len(tokenizer), **sizes))
    init_weights(model, seed, r.n_layers)
    model.tokenizer = tokenizer
    return train_masked(model, f"{task.name} llada", task, r, seed, eval_every=eval_every)


def train_dream(task: Task, r: Recipe, ar: Recipe, seed: int, eval_every: int = 0) -> torch.nn.Module:
    """A Dream: causal pre-training (`ar` steps), then LLaDA's objective (module docstring: why)."""
    from ssd.models.dream import Dream

    tokenizer = char_tokenizer("dream")
    sizes = dict(hidden_size=r.d_model, num_hidden_layers=r.n_layers, num_attention_heads=r.n_heads)
    sizes |= dict(
        num_key_value_heads=DREAM_KV_HEADS, intermediate_size=r.mlp, max_position_embeddings=task.max_length
    )
    if r.rope_theta is not None:
        sizes["rope_theta"] = r.rope_theta
    model = Dream.from_config(tiny_config("dream", len(tokenizer), **sizes))
    init_weights(model, seed, r.n_layers)
    model.tokenizer = tokenizer
    pretrain_causal(model, f"{task.name} dream", task, ar, seed)
    return train_masked(model, f"{task.name} dream", task, r, seed, eval_every=eval_every)


def qwen2_config(task: Task, r: Recipe, vocab: int) -> Any:
    from transformers import Qwen2Config

    c = tiny_config("dream", vocab)
    return Qwen2Config(
        vocab_size=vocab,
        hidden_size=r.d_model,
        intermediate_size=r.mlp,
        num_hidden_layers=r.n_layers,
        num_attention_heads=r.n_heads,
        num_key_value_heads=r.n_heads,
        max_position_embeddings=task.max_length,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
        tie_word_embeddings=False,
        eos_token_id=c["eos_token_id"],
        pad_token_id=c["pad_token_id"],
        bos_token_id=c["bos_token_id"],
    )


def train_qwen2(task: Task, r: Recipe, seed: int, log_every: int = 50) -> tuple[torch.nn.Module, Any]:
    from transformers import Qwen2ForCausalLM

    tokenizer = char_tokenizer("llada")  # the drafter's tokenizer: DiffuSpec feeds the target its ids
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM._from_config(qwen2_config(task, r, len(tokenizer)), attn_implementation="sdpa")
    prompts, responses = encode(task, tokenizer, r.steps * r.batch, seed + 7)
    P = prompts.shape[1]
    seq = torch.cat([prompts, responses], dim=1)
    labels = seq.clone()
    labels[:, :P] = -100
    # the target learns the response up to and including its first EOS; the padding after it is ignored
    eos = tokenizer.eos_token_id
    first_eos = (responses == eos).int().argmax(1)
    after = torch.arange(task.gen_length)[None, :] > first_eos[:, None]
    labels[:, P:][after] = -100
    opt = optimiser(model, r)
    model.train()
    start, running = time.perf_counter(), 0.0
    for step in range(r.steps):
        sl = slice(step * r.batch, (step + 1) * r.batch)
        logits = model(seq[sl]).logits[:, :-1]
        loss = F.cross_entropy(logits.flatten(0, 1), labels[sl, 1:].flatten(), ignore_index=-100)
        running += update(model, opt, loss, step, r)
        running = log("qwen2", step, r, running, log_every, start)
    return model.eval(), tokenizer


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def report(name: str, folder: Path, model: torch.nn.Module, wall: float, cpu: float, **card: Any) -> None:
    """Write the model card (training.json), then print the time and the weights' digests."""
    (folder / "training.json").write_text(json.dumps(card, indent=2, sort_keys=True) + "\n")
    n = sum(p.numel() for p in model.parameters())
    print(f"{folder}: {name}, {n} parameters, trained in {wall:.0f}s wall, {cpu:.0f}s CPU", flush=True)
    for f in sorted(folder.glob("*.safetensors")):
        print(f"  sha256 {f.name} {sha256(f)}", flush=True)


def train_one(name: str, args: argparse.Namespace) -> None:
    """Train and save one model, in this process."""
    from ssd.models.checkpoint import save_checkpoint

    setup(args.seed, args.threads)
    task, base, folder = MODELS[name]
    recipe = Recipe(**{**asdict(base), "steps": getattr(args, f"{name}_steps")})
    folder, extra = Path(args.out) / folder, {}
    wall, cpu = time.perf_counter(), time.process_time()
    if name in ("dream", "tally"):
        causal = DREAM_AR if name == "dream" else TALLY_AR
        ar = Recipe(**{**asdict(causal), "steps": getattr(args, f"{name}_ar_steps")})
        model = train_dream(task, recipe, ar, args.seed, eval_every=args.eval_every)
        extra = {"causal_recipe": asdict(ar), "n_kv_heads": DREAM_KV_HEADS}
    elif name == "qwen2":
        model, tokenizer = train_qwen2(task, recipe, args.seed)
        model.save_pretrained(str(folder))
        tokenizer.save_pretrained(str(folder))
    else:
        model = train_llada(task, recipe, args.seed, eval_every=args.eval_every)
    if name != "qwen2":
        save_checkpoint(model, folder)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    causal = f" --{name}-ar-steps {extra['causal_recipe']['steps']}" if extra else ""
    card = dict(
        task=task.name,
        recipe=asdict(recipe),
        seed=args.seed,
        threads=args.threads,
        gen_length=task.gen_length,
        parameters=sum(p.numel() for p in model.parameters()),
        torch=torch.__version__,
        command=f"python scripts/train_tiny.py --only {name} --seed {args.seed} --threads {args.threads} "
        f"--{name}-steps {recipe.steps}{causal}",
        **extra,
    )
    report(name, folder, model, wall, cpu, **card)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=str(ASSETS), help="parent folder of the <task>-<model>/ folders")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per model (fixed: determinism)")
    parser.add_argument("--only", choices=MODELS, default=None, help="train one model (default: all)")
    parser.add_argument("--jobs", type=int, choices=(1, 2), default=2, help="models trained at once")
    parser.add_argument("--llada-steps", type=int, default=LLADA.steps)
    parser.add_argument("--qwen2-steps", type=int, default=QWEN2.steps)
    parser.add_argument("--dream-steps", type=int, default=DREAM.steps, help="of the masked objective")
    parser.add_argument("--dream-ar-steps", type=int, default=DREAM_AR.steps, help="of causal pre-training")
    parser.add_argument("--tally-steps", type=int, default=TALLY_DREAM.steps, help="of the masked objective")
    parser.add_argument("--tally-ar-steps", type=int, default=TALLY_AR.steps, help="of causal pre-training")
    parser.add_argument("--eval-every", type=int, default=0, help="report held-out accuracy (slower)")
    args = parser.parse_args(argv)
    names = [args.only] if args.only else list(MODELS)
    began = time.perf_counter()
    if len(names) == 1 or args.jobs == 1:
        for name in names:
            train_one(name, args)
    else:  # one process per model, `jobs` at a time: the same computation as in sequence
        forwarded = [
            *("--out", args.out, "--seed", str(args.seed), "--threads", str(args.threads)),
            *("--llada-steps", str(args.llada_steps), "--qwen2-steps", str(args.qwen2_steps)),
            *("--dream-steps", str(args.dream_steps), "--dream-ar-steps", str(args.dream_ar_steps)),
            *("--tally-steps", str(args.tally_steps), "--tally-ar-steps", str(args.tally_ar_steps)),
            *("--eval-every", str(args.eval_every)),
        ]
        procs, failed = [], False
        for name in names:
            if len(procs) == args.jobs:
                failed |= procs.pop(0).wait() != 0
            procs.append(subprocess.Popen([sys.executable, __file__, *forwarded, "--only", name]))
        if any([p.wait() for p in procs]) or failed:
            raise SystemExit("training failed")
    print(f"all done in {time.perf_counter() - began:.0f}s wall", flush=True)


if __name__ == "__main__":
    main()
