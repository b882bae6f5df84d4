"""Parameter groups, AdamW with warm-up + cosine decay, gradient scaling, and the EMA of the weights.

Parameter groups are picked by name with regular expressions (first matching rule wins):

- ``freeze``: ``requires_grad = False``, the parameter is left out of the optimiser.
- ``lr_scale``: its learning rate is ``optim.lr * lr_scale``.
- ``grad_scale``: its gradient is multiplied by this after backward. This is the reference's
  "0.5 on the pretrained spatial weights" (dossier §6). Under Adam it is almost a no-op: Adam divides
  the gradient by the root of its own running second moment, so a constant factor ``s`` cancels
  except against ``eps`` (and in the clipped global norm). ``lr_scale`` is what actually slows a group.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch
import torch.nn as nn
from diffusers.optimization import get_constant_schedule_with_warmup, get_cosine_schedule_with_warmup

from higen.training.config import OptimSection, ParamGroupRule

# The pretrained image (Stable Diffusion 2.1) weights: everything but the temporal layers, the
# cue/prior embeddings (and the moving prior's velocity) and the text resampler. On the released config
# this names 686 tensors, the SD 2.1 UNet's count (the reference's own list, not shipped with the
# weights, names 682).
SPATIAL_PATTERN = r"^(?!.*(temporal|motion_embed|appearance_embed|position_embed|prior_embed|prior_velocity|text_resampler))"
PRESETS = {"@spatial": SPATIAL_PATTERN}


@dataclass
class ParamGroup:
    """Parameters sharing a learning-rate multiplier and a gradient scale."""

    name: str
    names: list[str]
    params: list[nn.Parameter]
    lr_scale: float = 1.0
    grad_scale: float = 1.0


def resolve_pattern(pattern: str) -> str:
    return PRESETS.get(pattern, pattern)


def build_param_groups(model: nn.Module, rules: list[ParamGroupRule]) -> list[ParamGroup]:
    """Split ``model``'s parameters by the rules (first match wins); frozen ones get ``requires_grad=False``.

    Rules that match nothing are an error: a typo in a regex must not silently train everything.
    """
    compiled = [re.compile(resolve_pattern(rule.pattern)) for rule in rules]
    groups = [ParamGroup(f"rule{i}:{rule.pattern}", [], [], rule.lr_scale, rule.grad_scale) for i, rule in enumerate(rules)]
    default = ParamGroup("default", [], [])
    matched = [0] * len(rules)
    for name, param in model.named_parameters():
        index = next((i for i, pattern in enumerate(compiled) if pattern.search(name)), None)
        if index is not None:
            matched[index] += 1
            if rules[index].freeze:
                param.requires_grad_(False)
                continue
        if not param.requires_grad:
            continue
        group = default if index is None else groups[index]
        group.names.append(name)
        group.params.append(param)
    unused = [rules[i].pattern for i, n in enumerate(matched) if n == 0]
    if unused:
        raise ValueError(f"optim.param_groups: no parameter name matches {', '.join(map(repr, unused))}")
    result = [g for g in [default, *groups] if g.params]
    if not result:
        raise ValueError("optim.param_groups freeze every parameter; nothing would train")
    return result


def make_optimizer(groups: list[ParamGroup], cfg: OptimSection) -> torch.optim.AdamW:
    """AdamW over the groups; ``foreach`` for speed, never ``fused`` (not bitwise reproducible across builds)."""
    torch_groups = [{"params": g.params, "lr": cfg.lr * g.lr_scale, "name": g.name} for g in groups]
    return torch.optim.AdamW(torch_groups, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps, weight_decay=cfg.weight_decay)


def make_lr_schedule(optimizer: torch.optim.Optimizer, cfg: OptimSection, max_steps: int):
    """Linear warm-up then cosine to zero over ``decay_steps`` (default: the whole run), or constant."""
    if cfg.schedule == "constant":
        return get_constant_schedule_with_warmup(optimizer, cfg.warmup_steps)
    return get_cosine_schedule_with_warmup(optimizer, cfg.warmup_steps, cfg.decay_steps or max_steps)


@torch.no_grad()
def scale_gradients(groups: list[ParamGroup]) -> None:
    for group in groups:
        if group.grad_scale != 1.0:
            grads = [p.grad for p in group.params if p.grad is not None]
            if grads:
                torch._foreach_mul_(grads, group.grad_scale)


class EMA:
    """Exponential moving average of the trainable weights, kept in fp32, keyed by parameter name.

    ``shadow = decay * shadow + (1 - decay) * param`` after every optimiser step (the release: 0.9999).
    With ``warmup`` the decay is ``min(decay, (1 + n) / (10 + n))`` at update ``n``, so a short run's
    EMA is not stuck at the initial weights. Works on FSDP shards (DTensors) unchanged.
    """

    def __init__(self, named_params: dict[str, torch.Tensor], decay: float, warmup: bool = True):
        self.decay, self.warmup = decay, warmup
        self.shadow = {name: p.detach().float().clone() for name, p in named_params.items()}
        self.num_updates = 0

    def current_decay(self) -> float:
        n = self.num_updates
        return min(self.decay, (1 + n) / (10 + n)) if self.warmup else self.decay

    @torch.no_grad()
    def update(self, named_params: dict[str, torch.Tensor]) -> None:
        weight = 1.0 - self.current_decay()
        names = list(self.shadow)
        torch._foreach_lerp_([self.shadow[n] for n in names], [named_params[n].detach().float() for n in names], weight)
        self.num_updates += 1

    def state(self) -> tuple[dict[str, torch.Tensor], dict]:
        """(tensors, JSON-able metadata)."""
        return self.shadow, {"num_updates": self.num_updates, "decay": self.decay, "warmup": self.warmup}

    def load(self, tensors: dict[str, torch.Tensor], meta: dict) -> None:
        missing = sorted(set(self.shadow) - set(tensors))
        if missing:
            raise ValueError(f"the checkpoint's EMA lacks {len(missing)} weights, e.g. {missing[:3]}")
        for name, value in self.shadow.items():
            value.copy_(tensors[name])
        self.num_updates = int(meta["num_updates"])
