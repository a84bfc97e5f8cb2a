"""Campaign planning: the arithmetic a user does before writing a config.

- `cooldown_cmds`: Megatron-DeepSpeed commands that cool a constant-LR run down from a checkpoint.
- `milestones`: token milestones -> checkpoint steps (exact and rolled back by the cooldown length).
- `cooldown_sweep`: one runnable script per milestone, built from the two above.
- `data_mix`: blend weighted data-file lists into one list (continued pre-training mixtures).
- `flops`: parameter counts, training FLOPs per token, tokens per step, iterations for a budget.

Pure Python with no heavy imports: the CLI imports these modules on every `orch` call.
"""

from __future__ import annotations

from orchestrator.files import write_atomically

__all__ = ["write_atomically"]
