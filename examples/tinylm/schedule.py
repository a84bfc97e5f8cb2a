"""Learning-rate schedule with Megatron's semantics (warmup, then constant / linear / cosine / WSD decay).

Steps are counted in iterations. The LR used by iteration i (1-based) is `lr_at(i)`, so a WSD run reaches
min_lr on its last iteration, and the stable phase lasts until `decay_iters - wsd_decay_iters`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

DECAY_STYLES = ("constant", "linear", "cosine", "WSD")
WSD_DECAY_STYLES = ("linear", "cosine", "exponential", "minus_sqrt")


@dataclass(frozen=True)
class LRSchedule:
    max_lr: float
    min_lr: float
    warmup_iters: int
    decay_iters: int
    decay_style: str
    wsd_decay_iters: int
    wsd_decay_style: str

    def __post_init__(self) -> None:
        if self.decay_style not in DECAY_STYLES:
            raise ValueError(f"--lr-decay-style {self.decay_style!r} is not one of {', '.join(DECAY_STYLES)}")
        if self.wsd_decay_style not in WSD_DECAY_STYLES:
            raise ValueError(f"--lr-wsd-decay-style {self.wsd_decay_style!r} is not one of "
                             f"{', '.join(WSD_DECAY_STYLES)}")
        if self.decay_style == "WSD" and not 0 <= self.wsd_decay_iters <= self.decay_iters:
            raise ValueError(f"--lr-wsd-decay-iters {self.wsd_decay_iters} must be within "
                             f"[0, --lr-decay-iters {self.decay_iters}]")

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "LRSchedule":
        return cls(**{field.name: data[field.name] for field in fields(cls)})

    def lr_at(self, step: int) -> float:
        if self.warmup_iters > 0 and step <= self.warmup_iters:
            return self.max_lr * step / self.warmup_iters
        if self.decay_style == "constant":
            return self.max_lr
        if step > self.decay_iters:
            return self.min_lr
        coeff = self._decay_coefficient(step)
        return self.min_lr + coeff * (self.max_lr - self.min_lr)

    def _decay_coefficient(self, step: int) -> float:
        if self.decay_style == "WSD":
            anneal_start = self.decay_iters - self.wsd_decay_iters
            if step <= anneal_start:
                return 1.0
            ratio = (step - anneal_start) / self.wsd_decay_iters
            return {
                "linear": lambda: 1.0 - ratio,
                "cosine": lambda: 0.5 * (math.cos(math.pi * ratio) + 1.0),
                "exponential": lambda: 2.0 * 0.5 ** ratio - 1.0,
                "minus_sqrt": lambda: 1.0 - math.sqrt(ratio),
            }[self.wsd_decay_style]()
        ratio = (step - self.warmup_iters) / max(self.decay_iters - self.warmup_iters, 1)
        if self.decay_style == "linear":
            return 1.0 - ratio
        return 0.5 * (math.cos(math.pi * ratio) + 1.0)  # cosine
