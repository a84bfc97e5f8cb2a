"""`orch ckpt pending` on a large run: 200 DeepSpeed ZeRO-1 saves x 64 data-parallel ranks (13,000 files).

Prints the time to judge every save (in process, best of 5) without and with the whole-file rule (each
torch.save zip's end-of-central-directory record and central directory read; see campaign/whole_files.py),
and the wall time of the `orch ckpt pending` command itself. The files are copies of a real DeepSpeed
optimizer shard and model-state file (tests/fixtures/checkpoints). Goal (issue 19): under 150 ms.
Run: `.venv/bin/python benchmarks/bench_ckpt_pending.py`.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from orchestrator.campaign import checkpoints
from timing import best_of

REPO = Path(__file__).resolve().parents[1]
REAL = REPO / "tests" / "fixtures" / "checkpoints" / "zero1_whole" / "checkpoints" / "global_step2"
SAVES, RANKS = 200, 64


def build(root: Path) -> Path:
    run = root / "run"
    model = (REAL / "mp_rank_00_model_states.pt").read_bytes()
    shard = (REAL / "zero_pp_rank_0_mp_rank_00_optim_states.pt").read_bytes()
    for save in range(1, SAVES + 1):
        folder = run / "checkpoints" / f"global_step{save * 100}"
        folder.mkdir(parents=True)
        (folder / "mp_rank_00_model_states.pt").write_bytes(model)
        for rank in range(RANKS):
            (folder / f"zero_pp_rank_{rank}_mp_rank_00_optim_states.pt").write_bytes(shard)
    (run / "checkpoints" / "latest").write_text(f"global_step{SAVES * 100}")
    return run


def main() -> None:
    root = Path(tempfile.mkdtemp())
    try:
        run = build(root)
        target = run / "checkpoints"
        whole = checkpoints._files_problem
        checkpoints._files_problem = lambda path, contents: ""  # names and trackers only: the rule before
        names_only = best_of(5, lambda: checkpoints.inspect_checkpoints(target))
        checkpoints._files_problem = whole
        with_rule = best_of(5, lambda: checkpoints.inspect_checkpoints(target))
        verdicts = checkpoints.inspect_checkpoints(target)
        assert all(v.complete for v in verdicts) and len(verdicts) == SAVES
        orch = [sys.executable, "-m", "orchestrator", "ckpt", "pending", str(run), "--count"]
        command = best_of(3, lambda: subprocess.run(orch, check=True, capture_output=True))
        print(f"{SAVES} saves x {RANKS} ranks ({SAVES * (RANKS + 1):,} files), judged in process, best of 5:")
        print(f"  names and trackers only (before): {names_only * 1000:.0f} ms")
        print(f"  every file whole (now):           {with_rule * 1000:.0f} ms")
        print(f"`orch ckpt pending --count` wall time, best of 3: {command * 1000:.0f} ms (goal < 150 ms)")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
