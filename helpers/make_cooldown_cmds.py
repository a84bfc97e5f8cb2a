#!/usr/bin/env python3
"""Emit Megatron-DeepSpeed commands that cool a constant-LR run down, starting exactly at a checkpoint.

Thin wrapper around `orch cooldown cmds` (same flags); see docs/planning.md.
Example: helpers/make_cooldown_cmds.py --load CKPT_DIR --data-file-list LIST -S 19850 39750 -R 2000 4000
"""

import sys
from pathlib import Path

try:
    import orchestrator  # noqa: F401  (installed: pip install -e .)
except ImportError:  # run from a checkout without installing: use the repository's package
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from orchestrator.cli.cooldown import add_cmds_arguments, run_cmds, standalone_main

if __name__ == "__main__":
    sys.exit(
        standalone_main(
            add_cmds_arguments,
            run_cmds,
            sys.argv[1:],
            prog="make_cooldown_cmds.py",
            description="Emit Megatron-DeepSpeed cooldown commands whose LR decay starts at the resume step S "
            "(TRAIN_ITERS = S + R, --lr_constant_plus_cooldown_frac = R / T).",
        )
    )
