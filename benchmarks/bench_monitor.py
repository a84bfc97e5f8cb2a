"""How hard the monitor hits the scheduler, and what one cycle costs, for 10, 100 and 1000 jobs.

The real Slurm backend runs against counting shims of `squeue`, `sacct` and `scontrol` on PATH (a
1000-job queue is more than the one-node test cluster should hold). Every job is running with a log
that grows every cycle, so each cycle does the full work: one query, a stat of every output file,
a re-read of each changed log for `termination_str`, and the store writes that follow.

AutoExperiment's manager runs `squeue -j ID` and `squeue -j ID -t R` for every running job at each
check: 2 x N controller calls per round, shown for comparison.

Run: .venv/bin/python benchmarks/bench_monitor.py
"""

from __future__ import annotations

import os
import resource
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from orchestrator.jobs import Job  # noqa: E402
from orchestrator.monitor.loop import Monitor, MonitorOptions  # noqa: E402
from orchestrator.monitor.probe_runner import FlagResult  # noqa: E402
from orchestrator.scheduler.slurm import SlurmScheduler  # noqa: E402
from orchestrator.scheduler.slurm_parse import FIELD_SEPARATOR  # noqa: E402
from orchestrator.state import StateStore  # noqa: E402

CYCLES = 10
SIZES = (10, 100, 1000)

SHIM = """#!/bin/sh
echo "$(basename "$0")" >> "{count_file}"
if [ "$(basename "$0")" = squeue ]; then cat "{queue_file}"; fi
"""


def make_shims(root: Path, jobs: list[Job]) -> tuple[Path, Path]:
    shims = root / "shims"
    shims.mkdir()
    count_file, queue_file = root / "calls.txt", root / "queue.txt"
    row = FIELD_SEPARATOR.join(["{id}", "RUNNING", "0", "None", "2026-01-01T00:00:00", str(root), "{script}", "1:00",
                                "cpu=1,node=1,billing=1,gres/gpu=4", "{name}"])
    queue_file.write_text("".join(row.format(id=1000 + i, script=job.sbatch_script, name=job.name) + "\n"
                                  for i, job in enumerate(jobs)))
    for command in ("squeue", "sacct", "scontrol", "sbatch", "scancel"):
        path = shims / command
        path.write_text(SHIM.format(count_file=count_file, queue_file=queue_file))
        path.chmod(0o755)
    return shims, count_file


def calls(count_file: Path) -> list[str]:
    return count_file.read_text().split() if count_file.exists() else []


def bench(count: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as directory:
        root = Path(directory)
        logs = root / "logs"
        logs.mkdir()
        jobs = [Job(name=f"bench{count}_{i}", template="t", sbatch_script=str(root / f"{i}.sbatch"),
                    output_file=str(logs / f"{i}.out"), cmd="sbatch x", check_interval_secs=60,
                    termination_str="TRAINING DONE") for i in range(count)]
        for job in jobs:
            Path(job.output_file).write_text("iteration 1 | lm loss: 3.2\n" * 200)
        shims, count_file = make_shims(root, jobs)
        scheduler = SlurmScheduler(env=dict(os.environ, PATH=f"{shims}:{os.environ['PATH']}"))
        store = StateStore.open(root)
        monitor = Monitor(jobs, scheduler, store, MonitorOptions(poll_secs=1), probe=lambda c, timeout: FlagResult(False))
        monitor.start()
        monitor.cycle()  # first cycle adopts every job found by name
        assert all(r.state.value == "running" for r in store.jobs().values()), "adoption failed"
        first_calls = len(calls(count_file))

        def grow(cycle: int) -> None:
            for job in jobs:  # every log grows: the worst case for the termination search
                with open(job.output_file, "a") as handle:
                    handle.write(f"iteration {cycle + 2} | lm loss: 3.1\n")

        cpu_self, cpu_children, wall = 0.0, 0.0, 0.0
        for cycle in range(CYCLES):
            grow(cycle)
            before_self, before_children = time.process_time(), resource.getrusage(resource.RUSAGE_CHILDREN)
            start = time.perf_counter()
            monitor.cycle()
            wall += time.perf_counter() - start
            cpu_self += time.process_time() - before_self
            after_children = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu_children += (after_children.ru_utime + after_children.ru_stime
                             - before_children.ru_utime - before_children.ru_stime)
        measured = calls(count_file)[first_calls:]
        # Memory separately: tracemalloc slows Python down several times.
        tracemalloc.start()
        peak_alloc = 0
        for cycle in range(CYCLES, CYCLES + 3):
            grow(cycle)
            tracemalloc.reset_peak()
            monitor.cycle()
            peak_alloc = max(peak_alloc, tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
        store.close()
        return {
            "jobs": count,
            "queries_per_cycle": len(measured) / CYCLES,
            "squeue_per_cycle": measured.count("squeue") / CYCLES,
            "first_cycle_queries": first_calls,
            "autoexperiment_squeue_per_round": 2 * count,
            "wall_ms": 1000 * wall / CYCLES,
            "cpu_ms": 1000 * cpu_self / CYCLES,
            "cpu_children_ms": 1000 * cpu_children / CYCLES,
            "peak_alloc_mib": peak_alloc / 2**20,
        }


def main() -> int:
    print(f"monitor cost per cycle, averaged over {CYCLES} cycles (all jobs running, every log growing)")
    header = (f"{'jobs':>6} {'sched cmds/cycle':>17} {'squeue/cycle':>13} {'AutoExp squeue/round':>21} "
              f"{'wall ms':>9} {'CPU ms':>8} {'shim CPU ms':>12} {'alloc peak MiB':>15}")
    print(header)
    for count in SIZES:
        r = bench(count)
        print(f"{r['jobs']:>6} {r['queries_per_cycle']:>17.1f} {r['squeue_per_cycle']:>13.1f} "
              f"{r['autoexperiment_squeue_per_round']:>21} {r['wall_ms']:>9.1f} {r['cpu_ms']:>8.1f} "
              f"{r['cpu_children_ms']:>12.1f} {r['peak_alloc_mib']:>15.2f}")
        if r["squeue_per_cycle"] != 1.0:
            print(f"FAIL: {r['squeue_per_cycle']} squeue calls per cycle, expected 1", file=sys.stderr)
            return 1
    rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"max RSS of this process over the whole run: {rss_mib:.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
