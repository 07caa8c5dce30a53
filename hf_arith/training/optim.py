"""Optimizer, learning-rate schedule, batch-size schedule and clipping schedule.

Every schedule is a pure function of the optimizer step, so it can be checked against values
computed by hand and a resumed run recomputes exactly what the interrupted one would have used.

Example:
    >>> from hf_arith.training.recipe import TrainSpec
    >>> spec = TrainSpec(max_steps=100, lr=1e-3, schedule="wcc", warmup=0.1, cooldown=0.1)
    >>> [round(lr_multiplier(s, spec), 2) for s in (0, 5, 10, 50, 95)]
    [0.0, 0.5, 1.0, 1.0, 0.5]
    >>> ramp = BatchSchedule.from_spec(TrainSpec(max_steps=10, micro_batch_size=4, global_batch_size=16,
    ...                                          batch_ramp=0.5))
    >>> [ramp.size(step) for step in range(6)]
    [4, 4, 8, 8, 12, 16]
"""

from __future__ import annotations

import functools
import math
from array import array
from dataclasses import dataclass

import torch
from torch import nn

from .recipe import TrainSpec, _steps

# ---------------------------------------------------------------------------------------------
# Optimizer


# Modules whose parameters are never decayed, whatever their type: FIRE's MLP and scalars encode
# relative positions (a function of distance), not features that weight decay should shrink.
NO_DECAY_MODULES = ("FireBias",)


def param_groups(model: nn.Module, weight_decay: float, decay_embeddings: bool = False) -> list[dict]:
    """AdamW parameter groups: weight decay on the weights of `nn.Linear` layers only.

    Embeddings, norms, biases and any other parameter (Abacus rows, FIRE's MLP and scalars: see
    `NO_DECAY_MODULES`) are not decayed: shrinking them towards zero only hurts (OLMo exempts them).
    A Linear weight tied to an embedding (a tied LM head) counts as an embedding.
    `decay_embeddings=True` is the Abacus reference's rule instead (cramming's `group_parameters`):
    everything but biases and norm parameters is decayed, embeddings, the Abacus table and FIRE's
    weights and scalars included.

    Example:
        >>> model = nn.Sequential(nn.Embedding(10, 4), nn.Linear(4, 4), nn.LayerNorm(4))
        >>> [(len(g["params"]), g["weight_decay"]) for g in param_groups(model, 0.1)]
        [(1, 0.1), (4, 0.0)]
        >>> [(len(g["params"]), g["weight_decay"]) for g in param_groups(model, 0.1, decay_embeddings=True)]
        [(2, 0.1), (3, 0.0)]
    """
    if decay_embeddings:
        exempt = {id(m.bias) for m in model.modules() if getattr(m, "bias", None) is not None}
        exempt |= {id(p) for m in model.modules() if "Norm" in type(m).__name__ for p in m.parameters()}
        decayed = {id(p) for p in model.parameters()} - exempt
    else:
        exempt = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
        exempt |= {id(p) for m in model.modules() if type(m).__name__ in NO_DECAY_MODULES for p in m.parameters()}
        decayed = {id(m.weight) for m in model.modules() if isinstance(m, nn.Linear)} - exempt
    decay, no_decay = [], []
    for _, param in model.named_parameters():  # shared (tied) parameters appear once
        if param.requires_grad:
            (decay if id(param) in decayed else no_decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def build_optimizer(model: nn.Module, spec: TrainSpec) -> torch.optim.AdamW:
    """AdamW with `param_groups`, the recipe's lr/betas/eps, and the fused kernel where this
    torch and the parameters' device support it (one kernel launch for all parameters).

    Example:
        >>> optimizer = build_optimizer(nn.Linear(4, 4), TrainSpec(lr=1e-3, weight_decay=0.1))
        >>> optimizer.defaults["lr"], optimizer.param_groups[0]["weight_decay"]
        (0.001, 0.1)
    """
    groups = param_groups(model, spec.weight_decay, spec.decay_embeddings)
    kwargs = {"lr": spec.lr, "betas": tuple(spec.betas), "eps": spec.eps}
    try:
        return torch.optim.AdamW(groups, fused=True, **kwargs)
    except (RuntimeError, ValueError, TypeError):  # device or dtype without a fused kernel
        return torch.optim.AdamW(groups, **kwargs)


# ---------------------------------------------------------------------------------------------
# Learning-rate schedule


def lr_multiplier(step: int, spec: TrainSpec, fraction: float | None = None) -> float:
    """The learning rate at optimizer step `step` (0-based) as a multiple of `spec.lr`.

    Warmup: linear from `warmup_start_ratio` (at step 0) to 1 (at step `warmup`). Then
    `constant`: 1; `wcc`: 1 until the last `cooldown` steps, then linear down to
    `final_lr_ratio` (reached at `max_steps`); `linear` / `cosine`: from 1 after warmup to
    `final_lr_ratio` at `max_steps`. With `fraction` (`schedule_clock: time`), the same shape over
    the share of the time budget spent: warmup and cooldown are fractions of the budget and the
    schedule ends at 1.0, whatever the step.

    Example:
        >>> spec = TrainSpec(max_steps=100, schedule="cosine", warmup=10, final_lr_ratio=0.1,
        ...                  warmup_start_ratio=0.1)
        >>> [round(lr_multiplier(s, spec), 3) for s in (0, 5, 10, 55, 100)]
        [0.1, 0.55, 1.0, 0.55, 0.1]
        >>> timed = TrainSpec(schedule="wcc", warmup=0.1, cooldown=0.1, schedule_clock="time", time_budget_minutes=60)
        >>> [round(lr_multiplier(0, timed, f), 2) for f in (0.0, 0.05, 0.5, 0.95, 1.0)]
        [0.0, 0.5, 1.0, 0.5, 0.0]
    """
    if fraction is None:
        position, total = step, spec.max_steps
        warmup, cooldown, least = _steps(spec.warmup, total), _steps(spec.cooldown, total), 1
    else:
        position, total = min(fraction, 1.0), 1.0
        warmup, cooldown, least = float(spec.warmup), float(spec.cooldown), 1e-12
    start, final = spec.warmup_start_ratio, spec.final_lr_ratio
    if position < warmup:
        return start + (1.0 - start) * position / warmup
    if spec.schedule == "constant":
        return 1.0
    if spec.schedule == "wcc":
        left = total - position
        if cooldown and left < cooldown:
            return final + (1.0 - final) * max(left, 0) / cooldown
        return 1.0
    progress = min(1.0, (position - warmup) / max(least, total - warmup))
    if spec.schedule == "linear":
        return final + (1.0 - final) * (1.0 - progress)
    if spec.schedule == "cosine":
        return final + (1.0 - final) * 0.5 * (1.0 + math.cos(math.pi * progress))
    raise ValueError(f"unknown schedule {spec.schedule!r}")


class BudgetClock:
    """The share of `train.time_budget_minutes` a `schedule_clock: time` run has spent; the
    training loop sets `fraction` (the same on every process), the schedules read it."""

    def __init__(self, budget_minutes: float):
        self.budget_s = budget_minutes * 60
        self.fraction = 0.0

    def set(self, seconds: float) -> float:
        self.fraction = seconds / self.budget_s
        return self.fraction


def build_scheduler(optimizer: torch.optim.Optimizer, spec: TrainSpec, clock: BudgetClock | None = None):
    """`LambdaLR` over `lr_multiplier`; call `.step()` once per optimizer step. With a `clock`
    (`schedule_clock: time`) the multiplier follows the clock's fraction, not the step count.

    Example:
        >>> scheduler = build_scheduler(build_optimizer(nn.Linear(2, 2), TrainSpec(warmup=10)), TrainSpec(warmup=10))
        >>> scheduler.get_last_lr()
        [0.0, 0.0]
    """
    if clock is None:
        return torch.optim.lr_scheduler.LambdaLR(optimizer, functools.partial(lr_multiplier, spec=spec))
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_multiplier(step, spec, clock.fraction))


# ---------------------------------------------------------------------------------------------
# Gradient clipping schedule


def clip_value(step: int, spec: TrainSpec) -> float | None:
    """The gradient-norm limit at `step`: `grad_clip_warmup.value` for its first `steps`, then
    `grad_clip`; None means no clipping.

    Example:
        >>> from hf_arith.training.recipe import ClipWarmupSpec
        >>> spec = TrainSpec(grad_clip=1.0, grad_clip_warmup=ClipWarmupSpec(steps=1000, value=10.0))
        >>> clip_value(999, spec), clip_value(1000, spec)
        (10.0, 1.0)
    """
    warm = spec.grad_clip_warmup
    value = warm.value if warm is not None and step < warm.steps else spec.grad_clip
    return value if value else None


# ---------------------------------------------------------------------------------------------
# Global batch size schedule


@dataclass(frozen=True)
class BatchSchedule:
    """Global batch size (examples) per step, and the index of the first example of each step.

    Step s trains on global examples `[offset(s), offset(s) + size(s))`, whatever the number of
    processes: the data position is a function of the step alone, so resuming at step s needs
    nothing but s.

    Growth (at most one):
    - ramp (the paper): over the first `ramp_steps` steps, `micro + (final - micro) * s / ramp_steps`
      rounded down to a multiple of `micro` (whole micro-batches), then `final`.
    - doubling (OLMo): `start * 2**k` where k = tokens seen before the step //
      `double_every_tokens`, tokens = examples × `tokens_per_example`; capped at `final`.

    Example:
        >>> schedule = BatchSchedule(final=8, micro=2, start=2, double_every_tokens=40, tokens_per_example=10)
        >>> [schedule.size(step) for step in range(6)], schedule.offset(3)
        ([2, 2, 4, 8, 8, 8], 8)
    """

    final: int
    micro: int = 1
    ramp_steps: int = 0
    start: int | None = None
    double_every_tokens: int | None = None
    tokens_per_example: int = 1
    # Steps past this are never trained; stops the growth precomputation of a slow doubling.
    max_steps: int | None = None

    @classmethod
    def from_spec(cls, spec: TrainSpec, tokens_per_example: int | None = None) -> BatchSchedule:
        """The schedule a `TrainSpec` describes (`batch_ramp` or `batch_warmup`).

        Example:
            >>> BatchSchedule.from_spec(TrainSpec(max_steps=100, micro_batch_size=8,
            ...                                   global_batch_size=64, batch_ramp=0.6)).ramp_steps
            60
        """
        warm = spec.batch_warmup
        return cls(
            final=spec.global_batch_size,
            micro=spec.micro_batch_size,
            ramp_steps=int(round(spec.batch_ramp * spec.max_steps)),
            start=warm.start if warm else None,
            double_every_tokens=warm.double_every_tokens if warm else None,
            tokens_per_example=tokens_per_example or 1,
            max_steps=spec.max_steps,
        )

    def _growth_size(self, step: int, offset: int) -> int:
        if self.ramp_steps and step < self.ramp_steps:
            size = self.micro + (self.final - self.micro) * step // self.ramp_steps
            return max(self.micro, size // self.micro * self.micro)
        if self.start is not None:
            doublings = offset * self.tokens_per_example // self.double_every_tokens
            return self.final if doublings >= 64 else min(self.final, self.start << doublings)
        return self.final

    @functools.cached_property
    def _growth_offsets(self) -> array:
        """offsets[s] for every step s of the growth phase, and one past it (where size = final)."""
        offsets, step, offset = array("q", [0]), 0, 0
        while True:
            size = self._growth_size(step, offset)
            grown = size >= self.final and (not self.ramp_steps or step >= self.ramp_steps)
            if grown or (self.max_steps is not None and step > self.max_steps):
                return offsets
            offset += size
            step += 1
            offsets.append(offset)

    def offset(self, step: int) -> int:
        """Examples trained on before step `step`.

        Example:
            >>> BatchSchedule(final=16, micro=4, ramp_steps=4).offset(6)  # 4 + 4 + 8 + 12 + 16 + 16
            60
        """
        grown = self._growth_offsets
        if step < len(grown):
            return grown[step]
        return grown[-1] + (step - (len(grown) - 1)) * self.final

    def size(self, step: int) -> int:
        """Global batch size (examples) of step `step`.

        Example:
            >>> BatchSchedule(final=16, micro=4, ramp_steps=4).size(2)
            8
        """
        return self.offset(step + 1) - self.offset(step)

    def size_at(self, fraction: float, ramp: float) -> int:
        """Global batch size when `fraction` of a time budget is spent (`schedule_clock: time`): the
        paper's ramp from the micro batch to `final` over the first `ramp` of the budget, in whole
        micro-batches, as the reference's `schedule_batch_size` does.

        Example:
            >>> BatchSchedule(final=16, micro=4).size_at(0.3, ramp=0.6)
            8
        """
        if ramp and fraction < ramp:
            size = self.micro + (self.final - self.micro) * fraction / ramp
            return max(self.micro, int(size) // self.micro * self.micro)
        return self.final

    def span(self, step: int) -> tuple[int, int]:
        """`(start, stop)` global example indices of step `step`.

        Example:
            >>> BatchSchedule(final=16).span(2)
            (32, 48)
        """
        start = self.offset(step)
        return start, start + self.size(step)


def process_share(start: int, stop: int, rank: int, world_size: int) -> tuple[int, int]:
    """The contiguous part of the global examples `[start, stop)` that process `rank` trains on.
    Shares differ by at most one example.

    Example:
        >>> [process_share(100, 105, r, 2) for r in range(2)]
        [(100, 102), (102, 105)]
    """
    n = stop - start
    return start + n * rank // world_size, start + n * (rank + 1) // world_size


__all__ = [
    "NO_DECAY_MODULES",
    "BatchSchedule",
    "BudgetClock",
    "build_optimizer",
    "build_scheduler",
    "clip_value",
    "lr_multiplier",
    "param_groups",
    "process_share",
]
