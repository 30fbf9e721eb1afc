"""Train the embedded default's models on the `arith` train split (ssd/benchmarks/arith.py), on a CPU.

- `arith-llada`: a small masked diffusion LM of the LLaDA architecture, trained with LLaDA's SFT
  objective: prompt tokens are never masked; per sequence t ~ U(eps, 1) (stratified over the batch: the
  i-th of B sequences draws from the i-th of B equal slices of [eps, 1], a variance reduction that keeps
  every t uniform), each response token is masked with probability t, and the loss is the cross-entropy
  on masked positions weighted by 1/t, normalised by the response length (gen_length: responses are
  padded with EOS to the fixed length the decoders generate, so the model learns EOS then EOS padding).
- `arith-qwen2`: a small autoregressive Qwen2 (transformers' `Qwen2ForCausalLM`), next-token
  cross-entropy on the response tokens up to and including EOS: DiffuSpec's target. Same tokenizer.
- `arith-dream`: the Dream architecture (hidden i-1 predicts token i, 4 query / 2 KV heads, q/k/v biases):
  causal next-token pre-training (Dream starts from an AR model), then LLaDA's objective on its aligned
  logits. From a random init the shifted model sat on the plateau of per-position marginals (loss 1.32,
  0-10% accuracy) for 1000+ steps, where the LLaDA, or this Dream without its shift, leaves it in 200.

All use the character tokenizer of ssd/models/tiny.py and plain-text prompts, and are saved in the
official layouts (`save_checkpoint` for LLaDA and Dream; `save_pretrained` + tokenizer files for Qwen2),
so the harness loads them through the same loaders as the real models.

Deterministic from `--seed`: fixed data (the train split drawn from the seed, consumed in order), seeded
initialisation and masking, `torch.use_deterministic_algorithms(True)`, a fixed thread count (`--threads`;
different thread counts or CPUs may round differently). Run twice, it writes byte-identical safetensors.

Sizes: all 4 layers, d 96, 4 heads, MLP 256, ~0.46M parameters (Dream 0.43M), 1.7-1.9 MB of fp32
safetensors each. Single-threaded, one process per model, `--jobs` (2) at a time: LLaDA 2400 steps of 64
sequences, ~530 s of CPU; Qwen2 2000 steps, ~430 s; Dream 1000 causal + 2000 masked steps, 494 s (alone,
at load ~2 on two cores; rerun, same bytes). Each process computes exactly what it would alone.

    python scripts/train_tiny.py                 # all three -> ssd/assets/arith-{llada,qwen2,dream}
    python scripts/train_tiny.py --only llada --llada-steps 50 --out /tmp/x --eval-every 25
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from ssd.benchmarks.arith import problems
from ssd.models.tiny import char_tokenizer, tiny_config

ASSETS = Path(__file__).resolve().parent.parent / "ssd" / "assets"
GEN_LENGTH = 24  # what the default sweep decodes; the answer (21 characters + EOS) is padded to it
MAX_LENGTH = 128  # max_sequence_length / max_position_embeddings written to config.json


@dataclass
class Recipe:
    """Sizes and optimisation of one model; the defaults are what ssd/assets/ holds."""

    d_model: int
    n_layers: int
    n_heads: int
    mlp: int
    steps: int
    batch: int = 64
    lr: float = 3e-3
    warmup: int = 50
    min_lr_ratio: float = 0.05
    weight_decay: float = 0.01
    clip: float = 1.0


LLADA = Recipe(d_model=96, n_layers=4, n_heads=4, mlp=256, steps=2400)
QWEN2 = Recipe(d_model=96, n_layers=4, n_heads=4, mlp=256, steps=2000)
# Dream: the LLaDA's sizes, grouped KV heads; masked `steps` after DREAM_AR's causal ones (docstring: why)
DREAM = Recipe(d_model=96, n_layers=4, n_heads=4, mlp=256, steps=2000)
DREAM_AR = Recipe(d_model=96, n_layers=4, n_heads=4, mlp=256, steps=1000)
DREAM_KV_HEADS = 2
MODELS = ("llada", "qwen2", "dream")
EPS = 1e-3  # t ~ U(EPS, 1): LLaDA's lower bound on the masking probability


def setup(seed: int, threads: int) -> None:
    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)


def encode(tokenizer: Any, count: int, seed: int, split: str = "train") -> tuple[torch.Tensor, torch.Tensor]:
    """Prompt ids [n, P] and EOS-padded response ids [n, GEN_LENGTH] of `count` problems of `split`."""
    eos = tokenizer.eos_token_id
    drawn = problems(split, count, seed)
    prompts = tokenizer([p.prompt for p in drawn])["input_ids"]
    responses = []
    for r in tokenizer([p.completion for p in drawn])["input_ids"]:
        r = [*r, eos]
        if len(r) > GEN_LENGTH:
            raise ValueError(f"answer of {len(r)} tokens exceeds GEN_LENGTH {GEN_LENGTH}")
        responses.append(r + [eos] * (GEN_LENGTH - len(r)))
    if len({len(p) for p in prompts}) != 1:
        raise ValueError("arith prompts are expected to have one length")
    return torch.tensor(prompts), torch.tensor(responses)


def lr_at(step: int, r: Recipe) -> float:
    """Linear warm-up, then cosine decay to min_lr_ratio of the peak."""
    if step < r.warmup:
        return r.lr * (step + 1) / r.warmup
    progress = (step - r.warmup) / max(1, r.steps - r.warmup)
    return r.lr * (r.min_lr_ratio + (1 - r.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def optimiser(model: torch.nn.Module, r: Recipe) -> torch.optim.Optimizer:
    decay = [p for n, p in model.named_parameters() if p.dim() > 1]
    no_decay = [p for n, p in model.named_parameters() if p.dim() <= 1]
    groups = [{"params": decay, "weight_decay": r.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    # foreach=False: the plain per-parameter loop, no fused/multi-tensor kernels (determinism, clarity)
    return torch.optim.AdamW(groups, lr=r.lr, betas=(0.9, 0.98), eps=1e-8, foreach=False)


def update(
    model: torch.nn.Module, opt: torch.optim.Optimizer, loss: torch.Tensor, step: int, r: Recipe
) -> float:
    """One optimiser step at the scheduled learning rate, gradients clipped; returns the loss."""
    for g in opt.param_groups:
        g["lr"] = lr_at(step, r)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), r.clip, foreach=False)
    opt.step()
    return loss.item()


def log(name: str, step: int, r: Recipe, running: float, every: int, start: float) -> float:
    """Print the mean loss of the last `every` steps every `every` steps; returns the new running sum."""
    if (step + 1) % every:
        return running
    print(
        f"{name} step {step + 1}/{r.steps} loss {running / every:.4f} ({time.perf_counter() - start:.0f}s)",
        flush=True,
    )
    return 0.0


def init_weights(model: torch.nn.Module, seed: int, n_layers: int) -> None:
    """GPT-2-style init: N(0, 0.02), residual output projections (LLaDA's attn_out/ff_out, Dream's
    o_proj/down_proj) scaled by 1/sqrt(2 n_layers); norms 1, biases (Dream's q/k/v) 0."""
    gen = torch.Generator().manual_seed(seed)
    residual = ("attn_out.weight", "ff_out.weight", "o_proj.weight", "down_proj.weight")
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 1:
                p.fill_(0.0 if name.endswith(".bias") else 1.0)
                continue
            in_layer = ".blocks." in name or ".layers." in name
            std = 0.02 / math.sqrt(2 * n_layers) if in_layer and name.endswith(residual) else 0.02
            p.copy_(torch.randn(p.shape, generator=gen) * std)


def held_out_accuracy(model: Any, n: int = 50) -> float:
    """Greedy stepwise (no cache) accuracy on the first `n` held-out problems (progress report only)."""
    from ssd.benchmarks.arith import Arith
    from ssd.config import ArithConfig, StepwiseConfig
    from ssd.decoders.stepwise import Stepwise

    benchmark = Arith(ArithConfig(size=n))
    decoder = Stepwise(StepwiseConfig(gen_length=GEN_LENGTH, block_length=8))
    eos, correct = model.eos_id, 0
    for sample in benchmark.samples():
        tokens = decoder.generate(model, model.tokenizer(sample.question)["input_ids"]).tokens
        tokens = tokens[: tokens.index(eos)] if eos in tokens else tokens
        correct += benchmark.score(sample, model.tokenizer.decode(tokens, skip_special_tokens=True)).correct
    return correct / n


def train_llada(r: Recipe, seed: int, log_every: int = 50, eval_every: int = 0) -> torch.nn.Module:
    from ssd.models.llada import LLaDA

    tokenizer = char_tokenizer("llada")
    config = tiny_config(
        "llada",
        len(tokenizer),
        d_model=r.d_model,
        n_layers=r.n_layers,
        n_heads=r.n_heads,
        n_kv_heads=r.n_heads,
        mlp_hidden_size=r.mlp,
        max_sequence_length=MAX_LENGTH,
    )
    model = LLaDA.from_config(config)
    init_weights(model, seed, r.n_layers)
    model.tokenizer = tokenizer
    return train_masked(model, "llada", r, seed, log_every, eval_every)


def train_masked(
    model: Any, name: str, r: Recipe, seed: int, log_every: int = 50, eval_every: int = 0
) -> torch.nn.Module:
    """LLaDA's SFT objective (module docstring) on the model's aligned logits (index i predicts token i:
    a shifted model such as Dream realigns inside its class, so the objective is the same for both)."""
    prompts, responses = encode(model.tokenizer, r.steps * r.batch, seed)
    mask_id, P, G = model.mask_id, prompts.shape[1], GEN_LENGTH
    gen = torch.Generator().manual_seed(seed + 1)
    opt = optimiser(model, r)
    model.train()
    start, running = time.perf_counter(), 0.0
    for step in range(r.steps):
        sl = slice(step * r.batch, (step + 1) * r.batch)
        prompt, response = prompts[sl], responses[sl]
        u = (torch.arange(r.batch) + torch.rand(r.batch, generator=gen)) / r.batch
        t = EPS + (1 - EPS) * u[torch.randperm(r.batch, generator=gen)]
        masked = torch.rand(r.batch, G, generator=gen) < t[:, None]
        x = torch.cat([prompt, torch.where(masked, mask_id, response)], dim=1)
        logits = model(x)[:, P:]
        ce = F.cross_entropy(logits[masked], response[masked], reduction="none")
        loss = (ce / t[:, None].expand(-1, G)[masked]).sum() / (r.batch * G)
        running += update(model, opt, loss, step, r)
        running = log(name, step, r, running, log_every, start)
        if eval_every and (step + 1) % eval_every == 0:
            model.eval()
            print(f"{name} step {step + 1} held-out accuracy {held_out_accuracy(model):.2f}", flush=True)
            model.train()
    return model.eval()


def pretrain_causal(model: Any, r: Recipe, seed: int, log_every: int = 50) -> None:
    """Next-token cross-entropy on the response (EOS padding included) under a causal mask, through the
    model's own body and head (hidden i-1 predicts token i); its own draw of the train split (seed + 2)."""
    from ssd.models.layers import Window

    prompts, responses = encode(model.tokenizer, r.steps * r.batch, seed + 2)
    seq = torch.cat([prompts, responses], dim=1)
    P, T = prompts.shape[1], seq.shape[1]
    # a [1, 1, T, T] key mask broadcasts over rows and heads like Window's padding mask [R, 1, 1, T]
    causal = Window(torch.arange(T), torch.ones(T, T, dtype=torch.bool).tril()[None, None])
    opt = optimiser(model, r)
    model.train()
    start, running = time.perf_counter(), 0.0
    for step in range(r.steps):
        batch = seq[step * r.batch : (step + 1) * r.batch]
        logits = model.head(model.body(batch, causal)[:, P - 1 : -1])
        loss = F.cross_entropy(logits.flatten(0, 1), batch[:, P:].flatten())
        running += update(model, opt, loss, step, r)
        running = log("dream causal", step, r, running, log_every, start)


def train_dream(
    r: Recipe, ar: Recipe, seed: int, log_every: int = 50, eval_every: int = 0
) -> torch.nn.Module:
    """A Dream: causal pre-training (`ar` steps), then LLaDA's objective (module docstring: why)."""
    from ssd.models.dream import Dream

    tokenizer = char_tokenizer("dream")
    sizes = dict(hidden_size=r.d_model, num_hidden_layers=r.n_layers, num_attention_heads=r.n_heads)
    sizes |= dict(
        num_key_value_heads=DREAM_KV_HEADS, intermediate_size=r.mlp, max_position_embeddings=MAX_LENGTH
    )
    model = Dream.from_config(tiny_config("dream", len(tokenizer), **sizes))
    init_weights(model, seed, r.n_layers)
    model.tokenizer = tokenizer
    pretrain_causal(model, ar, seed, log_every)
    return train_masked(model, "dream", r, seed, log_every, eval_every)


def qwen2_config(r: Recipe, vocab: int) -> Any:
    from transformers import Qwen2Config

    c = tiny_config("dream", vocab)
    return Qwen2Config(
        vocab_size=vocab,
        hidden_size=r.d_model,
        intermediate_size=r.mlp,
        num_hidden_layers=r.n_layers,
        num_attention_heads=r.n_heads,
        num_key_value_heads=r.n_heads,
        max_position_embeddings=MAX_LENGTH,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
        tie_word_embeddings=False,
        eos_token_id=c["eos_token_id"],
        pad_token_id=c["pad_token_id"],
        bos_token_id=c["bos_token_id"],
    )


def train_qwen2(r: Recipe, seed: int, log_every: int = 50) -> tuple[torch.nn.Module, Any]:
    from transformers import Qwen2ForCausalLM

    tokenizer = char_tokenizer("llada")  # the drafter's tokenizer: DiffuSpec feeds the target its ids
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM._from_config(qwen2_config(r, len(tokenizer)), attn_implementation="sdpa")
    prompts, responses = encode(tokenizer, r.steps * r.batch, seed + 7)
    P = prompts.shape[1]
    seq = torch.cat([prompts, responses], dim=1)
    labels = seq.clone()
    labels[:, :P] = -100
    # the target learns the response up to and including its first EOS; the padding after it is ignored
    eos = tokenizer.eos_token_id
    first_eos = (responses == eos).int().argmax(1)
    after = torch.arange(GEN_LENGTH)[None, :] > first_eos[:, None]
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
    setup(args.seed, args.threads)
    base = {"llada": LLADA, "qwen2": QWEN2, "dream": DREAM}[name]
    recipe = Recipe(**{**asdict(base), "steps": getattr(args, f"{name}_steps")})
    extra: dict[str, Any] = {}
    wall, cpu = time.perf_counter(), time.process_time()
    from ssd.models.checkpoint import save_checkpoint

    if name == "llada":
        model = train_llada(recipe, args.seed, eval_every=args.eval_every)
        folder = save_checkpoint(model, Path(args.out) / "arith-llada")
    elif name == "dream":
        ar = Recipe(**{**asdict(DREAM_AR), "steps": args.dream_ar_steps})
        model = train_dream(recipe, ar, args.seed, eval_every=args.eval_every)
        folder = save_checkpoint(model, Path(args.out) / "arith-dream")
        extra = {"causal_recipe": asdict(ar), "n_kv_heads": DREAM_KV_HEADS}
    else:
        model, tokenizer = train_qwen2(recipe, args.seed)
        folder = Path(args.out) / "arith-qwen2"
        model.save_pretrained(str(folder))
        tokenizer.save_pretrained(str(folder))
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    card = dict(
        recipe=asdict(recipe),
        seed=args.seed,
        threads=args.threads,
        gen_length=GEN_LENGTH,
        parameters=sum(p.numel() for p in model.parameters()),
        torch=torch.__version__,
        command=f"python scripts/train_tiny.py --only {name} --seed {args.seed} --threads {args.threads} "
        f"--{name}-steps {recipe.steps}" + (f" --dream-ar-steps {args.dream_ar_steps}" if extra else ""),
        **extra,
    )
    report(name, folder, model, wall, cpu, **card)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=str(ASSETS), help="parent folder of the arith-<model>/ folders")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per model (fixed: determinism)")
    parser.add_argument("--only", choices=MODELS, default=None, help="train one model (default: all)")
    parser.add_argument("--jobs", type=int, choices=(1, 2), default=2, help="models trained at once")
    parser.add_argument("--llada-steps", type=int, default=LLADA.steps)
    parser.add_argument("--qwen2-steps", type=int, default=QWEN2.steps)
    parser.add_argument("--dream-steps", type=int, default=DREAM.steps, help="of the masked objective")
    parser.add_argument("--dream-ar-steps", type=int, default=DREAM_AR.steps, help="of causal pre-training")
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
