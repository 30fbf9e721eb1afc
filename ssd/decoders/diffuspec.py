"""DiffuSpec (arXiv 2510.02358): a diffusion LM drafts for an autoregressive target.

    k = k_init
    until a stop token or gen_length tokens:
        1. draft    one dLLM forward over [context ; MASK x k]; causal-consistency path search over
                    its per-position candidates gives the draft d_1..d_L (ssd/decoders/cps.py)
        2. verify   one target forward over [pending, d_1..d_L]; accept the longest prefix the
                    target's greedy predictions agree with, then add the target's own next token
                    (the correction at the first miss, or a bonus after a full accept)
        3. adapt    EMAs of the generated length L_gen = min(first EOS - 1, k) and the accepted
                    length L_acc; k = clip(floor(EMA L_gen) + delta * [EMA L_acc >= EMA L_gen], k_min, k_max)

Standard greedy speculative acceptance: the output is the target's greedy output (its reference,
`target_greedy`), if the target computes the same numbers for a verified run of tokens as for one
token at a time; the runner's lossless check measures that.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from ssd.config import DiffuSpecConfig, TargetGreedyConfig
from ssd.decoders.base import Decoder, Generation, Timer
from ssd.decoders.cps import NGram, path_search
from ssd.errors import SSDError
from ssd.models.autoregressive import AutoregressiveLM, load_target
from ssd.models.base import DiffusionLM


class TargetGreedy(Decoder):
    """The target's own greedy decoding, one token per forward (DiffuSpec's lossless reference)."""

    name = "target_greedy"
    lossless = True  # it *is* the reference
    cfg: TargetGreedyConfig

    def __init__(self, cfg: TargetGreedyConfig) -> None:
        super().__init__(cfg)
        if cfg.temperature != 0:
            raise SSDError(f"{self.name} decodes greedily: set decoder.temperature=0")

    def target(self, model: DiffusionLM) -> AutoregressiveLM:
        return load_target(self.cfg.target_path, self.cfg.target_dtype, str(model.device))

    def reference_config(self) -> None:
        return None

    def generate(self, model: DiffusionLM, prompt_ids: list[int], seed: int = 0) -> Generation:
        target, stops = self.target(model), model.stop_ids
        prompt_ids = target.decoding_prompt(prompt_ids)
        out: list[int] = []
        with Timer(model.device) as timer, torch.inference_mode():
            kv, pending = target.start(prompt_ids)
            nfe = int(len(prompt_ids) > 1)
            while len(out) < self.cfg.gen_length and not (out and out[-1] in stops):
                pending = target.predict(kv, pending, [])[0]
                out.append(pending)
                nfe += 1
        return Generation(out, nfe, [1] * nfe, timer.seconds, accepted=[1] * len(out))


class DiffuSpec(TargetGreedy):
    name = "diffuspec"
    cfg: DiffuSpecConfig

    def __init__(self, cfg: DiffuSpecConfig) -> None:
        super().__init__(cfg)
        if not 1 <= cfg.k_min <= cfg.k_init <= cfg.k_max:
            raise SSDError(f"need 1 <= k_min <= k_init <= k_max (got {cfg.k_min}, {cfg.k_init}, {cfg.k_max})")
        if not 0 <= cfg.mix <= 1 or cfg.beam < 1:
            raise SSDError(f"need 0 <= decoder.mix <= 1 and decoder.beam >= 1 (got {cfg.mix}, {cfg.beam})")

    def reference_config(self) -> TargetGreedyConfig:
        """The target's greedy decoding; it keeps this job's frame (cache, block), unused by an AR model,
        so that its run pairs with this one in the reports."""
        c = self.cfg
        return TargetGreedyConfig(
            gen_length=c.gen_length,
            block_length=c.block_length,
            cache=c.cache,
            target_path=c.target_path,
            target_dtype=c.target_dtype,
        )

    def generate(self, model: DiffusionLM, prompt_ids: list[int], seed: int = 0) -> Generation:
        c, target, stops = self.cfg, self.target(model), model.stop_ids
        prompt_ids = target.decoding_prompt(prompt_ids)  # the same start as TargetGreedy's
        ngram = NGram(c.ngram, len(model.tokenizer))
        out: list[int] = []
        accepted, accepted_drafts, draft_lengths, k = [], [], [], c.k_init
        ema_gen = ema_acc = None
        with Timer(model.device) as timer, torch.inference_mode():
            ngram.add(prompt_ids)
            kv, pending = target.start(prompt_ids)
            target_forwards, drafter_forwards = int(len(prompt_ids) > 1), 0
            while len(out) < c.gen_length and not (out and out[-1] in stops):
                # 1. draft: one dLLM forward, then the path search
                k_now = min(k, c.gen_length - len(out))
                context = prompt_ids + out
                x = torch.tensor([context + [model.mask_id] * k_now], device=model.device)
                probs = torch.softmax(model(x, span=(len(context), len(context) + k_now))[0].double(), -1)
                drafter_forwards += 1
                draft = path_search(probs, ngram, stops, c.beam, c.mass, c.max_candidates, c.mix)
                # 2. verify: greedy acceptance, plus the target's own next token
                predicted = target.predict(kv, pending, draft)
                target_forwards += 1
                a = next(
                    (i for i, (d, p) in enumerate(zip(draft, predicted, strict=False)) if d != p), len(draft)
                )
                target.truncate(kv, len(context) + a)
                new = [*draft[:a], predicted[a]]
                stop_at = next((i for i, t in enumerate(new) if t in stops), None)
                new = new[: c.gen_length - len(out) if stop_at is None else stop_at + 1]
                out += new
                ngram.add(new)
                pending = new[-1]
                accepted.append(len(new))
                accepted_drafts.append(a)
                draft_lengths.append(len(draft))
                # 3. adapt the draft length
                generated = next((i for i, t in enumerate(draft) if t in stops), len(draft))
                ema_gen = generated if ema_gen is None else c.rho * ema_gen + (1 - c.rho) * generated
                ema_acc = a if ema_acc is None else c.rho * ema_acc + (1 - c.rho) * a
                k = min(c.k_max, max(c.k_min, math.floor(ema_gen) + c.delta * (ema_acc >= ema_gen)))
        nfe = target_forwards + drafter_forwards
        extra: dict[str, Any] = {
            "target_forwards": target_forwards,
            "drafter_forwards": drafter_forwards,
            "draft_lengths": draft_lengths,
            "accepted_drafts": accepted_drafts,
        }
        return Generation(out, nfe, [1] * nfe, timer.seconds, accepted=accepted, extra=extra)
