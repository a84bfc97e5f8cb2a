"""The training loss a Megatron-style log prints every --log-interval iterations.

Megatron-LM (`megatron/training/training.py: training_log`, @d98e8a64) writes
` [date] iteration      100/    1000 | consumed samples: ... | learning rate: ... | lm loss: 2.345678E+00 | ...`,
the loss being the mean over the iterations since the previous log line; Megatron-DeepSpeed and the examples here
print the same fields. A log appended by several attempts repeats iterations after a resume: the last wins.
"""

from __future__ import annotations

import re
from pathlib import Path

_TRAINING_LINE = re.compile(
    r"\biteration\s+(?P<iteration>\d+)\s*/\s*\d+\s*\|.*?\|\s*lm loss:\s*(?P<value>[-+]?(?:[0-9.]+(?:[eE][-+]?\d+)?|nan|inf))",
    re.IGNORECASE)


def read_training_losses(log: Path) -> dict[int, float]:
    """Iteration -> the `lm loss` logged at it (empty when the log is missing or has none)."""
    losses: dict[int, float] = {}
    try:
        with open(log, encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if "lm loss:" not in line:
                    continue
                match = _TRAINING_LINE.search(line)
                if match:
                    losses[int(match["iteration"])] = float(match["value"])
    except OSError:
        pass
    return losses
