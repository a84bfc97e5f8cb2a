#!/usr/bin/env python3
"""Token milestones (1..N-1 trillion tokens) -> checkpoint steps, as a TSV `id steps_mod steps_rollback`.

Thin wrapper around `orch cooldown milestones` (same flags); see docs/planning.md.
Example: helpers/build_checkpoints_from_tokens.py --ttokens 8 --tokens-per-step 8192*6144 --out checkpoints.tsv
"""

import sys
from pathlib import Path

try:
    import orchestrator  # noqa: F401  (installed: pip install -e .)
except ImportError:  # run from a checkout without installing: use the repository's package
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from orchestrator.cli.cooldown import add_milestones_arguments, run_milestones, standalone_main

if __name__ == "__main__":
    sys.exit(
        standalone_main(
            add_milestones_arguments,
            run_milestones,
            sys.argv[1:],
            prog="build_checkpoints_from_tokens.py",
            description="Steps of the trillion-token milestones, exact (steps_mod) and rolled back by the cooldown "
            "(steps_rollback), rounded half-up to a multiple of --round.",
        )
    )
