"""How the embedded models are trained (scripts/train_tiny.py picks the recipes, tasks and sizes).

- `train_masked`: LLaDA's SFT objective. Prompt tokens are never masked; per sequence t ~ U(eps, 1)
  (stratified over the batch: the i-th of B sequences draws from the i-th of B equal slices of [eps, 1], a
  variance reduction that keeps every t uniform), each response token is masked with probability t, and
  the loss is the cross-entropy on masked positions weighted by 1/t, normalised by the response length
  (responses are padded with EOS to the task's gen_length, so the model learns EOS then EOS padding).
- `pretrain_causal`: next-token cross-entropy under a causal mask through the model's own body and head,
  the stage a Dream starts from (it is initialised from an autoregressive model).

Deterministic from the seed: fixed data (the train split drawn from the seed, consumed in order), seeded
initialisation and masking, `torch.use_deterministic_algorithms(True)`, a fixed thread count.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

EPS = 1e-3  # t ~ U(EPS, 1): LLaDA's lower bound on the masking probability


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
    rope_theta: float | None = None  # RoPE base; None: the architecture's (tiny_config)


@dataclass(frozen=True)
class Task:
    """A generated task a model is trained on: its problems, and the frame its answers are decoded in."""

    name: str  # the benchmark's registry name (ssd/benchmarks/)
    problems: Callable[[str, int, int], list[Any]]  # (split, count, seed) -> objects with prompt, completion
    gen_length: int  # answers are padded with EOS to it
    block_length: int  # the frame the held-out check decodes in
    max_length: int  # max_sequence_length / max_position_embeddings written to config.json


def setup(seed: int, threads: int) -> None:
    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)


def encode(task: Task, tokenizer: Any, count: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Prompt ids [n, P] and EOS-padded response ids [n, gen_length] of `count` training problems."""
    eos = tokenizer.eos_token_id
    drawn = task.problems("train", count, seed)
    prompts = tokenizer([p.prompt for p in drawn])["input_ids"]
    responses = []
    for r in tokenizer([p.completion for p in drawn])["input_ids"]:
        r = [*r, eos]
        if len(r) > task.gen_length:
            raise ValueError(f"{task.name} answer of {len(r)} tokens exceeds gen_length {task.gen_length}")
        responses.append(r + [eos] * (task.gen_length - len(r)))
    if len({len(p) for p in prompts}) != 1:
        raise ValueError(f"{task.name} prompts are expected to have one length")
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


def held_out_accuracy(model: Any, task: Task, n: int = 50) -> float:
    """Greedy stepwise (no cache) accuracy on the first `n` held-out problems (progress report only)."""
    from ssd.benchmarks import BENCHMARKS
    from ssd.config import ArithConfig, StepwiseConfig
    from ssd.decoders.stepwise import Stepwise

    benchmark = BENCHMARKS.get(task.name)(ArithConfig(name=task.name, size=n))
    decoder = Stepwise(StepwiseConfig(gen_length=task.gen_length, block_length=task.block_length))
    eos, correct = model.eos_id, 0
    for sample in benchmark.samples():
        tokens = decoder.generate(model, model.tokenizer(sample.question)["input_ids"]).tokens
        tokens = tokens[: tokens.index(eos)] if eos in tokens else tokens
        correct += benchmark.score(sample, model.tokenizer.decode(tokens, skip_special_tokens=True)).correct
    return correct / n


def train_masked(
    model: Any, name: str, task: Task, r: Recipe, seed: int, log_every: int = 50, eval_every: int = 0
) -> torch.nn.Module:
    """LLaDA's SFT objective (module docstring) on the model's aligned logits (index i predicts token i:
    a shifted model such as Dream realigns inside its class, so the objective is the same for both)."""
    prompts, responses = encode(task, model.tokenizer, r.steps * r.batch, seed)
    mask_id, P, G = model.mask_id, prompts.shape[1], task.gen_length
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
            accuracy = held_out_accuracy(model, task)
            print(f"{name} step {step + 1} held-out accuracy {accuracy:.2f}", flush=True)
            model.train()
    return model.eval()


def pretrain_causal(model: Any, name: str, task: Task, r: Recipe, seed: int, log_every: int = 50) -> None:
    """Next-token cross-entropy on the response (EOS padding included) under a causal mask, through the
    model's own body and head (hidden i-1 predicts token i); its own draw of the train split (seed + 2)."""
    from ssd.models.layers import Window

    prompts, responses = encode(task, model.tokenizer, r.steps * r.batch, seed + 2)
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
        running = log(f"{name} causal", step, r, running, log_every, start)
