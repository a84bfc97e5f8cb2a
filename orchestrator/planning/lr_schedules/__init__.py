"""LR schedules exactly as each training framework computes them (pure Python, no numpy).

`FRAMEWORKS` maps the CLI name to the module; each module has `lr_at(step, **params)`,
`curve(steps, **params)`, `warmup_end(**params)` and `horizon(**params)`, with parameters named
after the framework's own flags (see `common`).
"""

from __future__ import annotations

import inspect
from types import ModuleType

from orchestrator.planning.lr_schedules import megatron_deepspeed, megatron_lm, schedules_and_scaling

FRAMEWORKS: dict[str, ModuleType] = {
    megatron_lm.FRAMEWORK: megatron_lm,
    megatron_deepspeed.FRAMEWORK: megatron_deepspeed,
    schedules_and_scaling.FRAMEWORK: schedules_and_scaling,
}


def parameter_names(framework: ModuleType) -> dict[str, inspect.Parameter]:
    """The keyword parameters of a framework's `lr_at` (its flags), in signature order."""
    parameters = inspect.signature(framework.lr_at).parameters
    return {name: parameter for name, parameter in parameters.items() if parameter.kind is inspect.Parameter.KEYWORD_ONLY}


def required_parameters(framework: ModuleType) -> list[str]:
    return [name for name, p in parameter_names(framework).items() if p.default is inspect.Parameter.empty]
