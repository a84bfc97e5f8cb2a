"""Job arrays, pure: which jobs can share one `sbatch --array`, and the driver script that runs them (no Slurm here).

Each job keeps its own rendered script. One array is one driver script: the `#SBATCH` lines its jobs share, then a
`case` on `$SLURM_ARRAY_TASK_ID` that runs task i's own script, in the working directory a plain submission would
have, with its log where a plain submission's `--output` would put it. A job's `%j` names its task there,
`<array id>_<index>`: the id squeue and sacct print for the task, and the one the monitor records (a plain
submission's `%j` is its own id the same way; Slurm's default log for an array task is `slurm-%A_%a.out` too).

Jobs share an array when their submit command (script path aside), interpreter line and every `#SBATCH` line but
the per-task ones (job name, log, open mode) are the same text: same partition, nodes, GPUs and time limit.
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from orchestrator.scheduler.sbatch_script import directive_lines, directive_words, parse_options, script_options

# Options each task sets for itself in the driver; every other `#SBATCH` line must be shared by the array's jobs.
PER_TASK_OPTIONS = frozenset({"job-name", "output", "error", "open-mode"})
# Where a log pattern's job id goes: filled in by the driver when the task runs (a character no path holds).
JOB_ID_MARK = "\x00"
_TASK_ID = '"${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}"'
# sbatch filename patterns (sbatch(1) "filename pattern"); the driver fills %j and %x and the caller %u (as the
# monitor does when it reads the log); any other pattern would name a file the monitor does not look at.
_LOG_PATTERN = re.compile(r"%(\d*)(.)")


@dataclass(frozen=True)
class ArrayTask:
    """One job as a task of an array."""

    name: str
    script: str
    """The job's own rendered script (absolute)."""
    output: str
    """Its log, as the monitor resolves it, with JOB_ID_MARK where the task's id goes."""
    error: str
    """Its `--error` log the same way; "" when stderr goes to `output`."""
    append: bool
    """`--open-mode=append`: the log is appended to, not truncated, when the task starts."""
    interpreter: tuple[str, ...]
    """The script's `#!` line: the program (and argument) that runs it, as the kernel would."""


@dataclass(frozen=True)
class Arrayable:
    """A job that may be a task of an array: the key its array-mates share, and the task."""

    key: tuple[str, ...]
    task: ArrayTask
    header: tuple[str, ...]
    """The script's shared `#SBATCH` lines, verbatim (the driver's own)."""


def arrayable(name: str, script_path: str, script_text: str, command: str, output_file: str,
              resolve_log: Callable[[str], str]) -> Arrayable | str:
    """The job as an array task, or why it cannot be one. `command` is its submit command with the script path
    replaced by `{script}`; `resolve_log(pattern)` makes an sbatch log pattern concrete but for JOB_ID_MARK."""
    first_line = script_text.split("\n", 1)[0]
    if not first_line.startswith("#!") or not first_line[2:].strip():
        return "its script has no #! line"
    options = script_options(script_text)
    if any(word.startswith(("-a", "--ar")) for word in directive_words(directive_lines(script_text))):
        return "its script is an array already"
    if options.get("output", output_file) != output_file:
        return f"its script's --output ({options.get('output')}) is not its output_file ({output_file})"
    if "output" not in options:
        return "its script sets no --output"
    for option in ("output", "error"):
        patterns = {match[0] for match in _LOG_PATTERN.finditer(options.get(option, "").replace("%%", ""))}
        unknown = patterns - {"%j", "%x", "%u"}
        if unknown:
            return f"its --{option} uses {', '.join(sorted(unknown))}, which an array task would not fill as a job does"
    header = []
    for line in directive_lines(script_text):
        keys = set(parse_options(directive_words([line])))
        if keys & PER_TASK_OPTIONS and keys - PER_TASK_OPTIONS:
            return f"its #SBATCH line {line.strip()!r} mixes per-job and shared options"
        if not keys & PER_TASK_OPTIONS:
            header.append(line)
    interpreter = tuple(first_line[2:].strip().split(None, 1))
    error = options.get("error", "")
    task = ArrayTask(name, script_path, resolve_log(output_file), resolve_log(error) if error else "",
                     options.get("open-mode", "").startswith("a"), interpreter)
    return Arrayable((command, first_line, *header), task, tuple(header))


def driver_script(array_name: str, header: Sequence[str], tasks: Sequence[ArrayTask], log: str = "/dev/null") -> str:
    """The batch script of one array: task i runs `tasks[i]`'s own script, with its name and log. `log` is the
    array's own: what reaches it is Slurm's own lines about a task (time limit, preemption) and a task that could not
    start its script (its log folder or script gone)."""
    lines = ["#!/bin/bash", f"#SBATCH --job-name={shlex.quote(array_name)}", f"#SBATCH --output={shlex.quote(log)}",
             "#SBATCH --open-mode=append",
             *(f"#SBATCH{line}" for line in header),
             "# Written by orch: one task per job; each runs the job's own script with the job's name and log, as a",
             "# plain submission of it would run (no SLURM_ARRAY_* variables).",
             f"task_id={_TASK_ID}",
             'case "$SLURM_ARRAY_TASK_ID" in']
    for index, task in enumerate(tasks):
        redirect = (">>" if task.append else ">") + " " + _shell_path(task.output)
        if task.error:
            redirect += (" 2>>" if task.append else " 2>") + " " + _shell_path(task.error)
        else:
            redirect += " 2>&1"
        command = " ".join(shlex.quote(word) for word in (*task.interpreter, task.script))
        # The job's script sees what a plain submission of it would: its own name, and no array.
        lines.append(f"  {index}) export SLURM_JOB_NAME={shlex.quote(task.name)}; unset ${{!SLURM_ARRAY_*}}; "
                     f"exec {command} {redirect} ;;")
    lines += ['  *) echo "orch: array $SLURM_ARRAY_JOB_ID has no task $SLURM_ARRAY_TASK_ID" >&2; exit 2 ;;', "esac", ""]
    return "\n".join(lines)


def _shell_path(path: str) -> str:
    """A resolved log path for the shell, the task's id in place of JOB_ID_MARK."""
    return '"$task_id"'.join(shlex.quote(part) if part else "" for part in path.split(JOB_ID_MARK)) or "''"


def array_name(digest: str, first_job: str) -> str:
    """The Slurm job name of an array (its driver script is `<name>.sbatch`): unique, and says what it holds."""
    return f"orch-array-{digest}-{first_job[:60]}"


def array_name_of(driver: str) -> str:
    """The job name of the array whose driver script is `driver`."""
    return os.path.basename(driver).removesuffix(".sbatch")


def array_option(count: int) -> str:
    return f"--array=0-{count - 1}"


def task_id(array_id: str, index: int) -> str:
    """The id squeue, sacct and scancel use for task `index` of array `array_id`."""
    return f"{array_id}_{index}"


def chunks(items: Sequence, size: int) -> list[Sequence]:
    """`items` in runs of at most `size`, as even as can be (9 by 4: 3, 3, 3; never 4, 4, 1)."""
    if size < 1 or not items:
        return [items] if items else []
    count = -(-len(items) // size)
    base, extra = divmod(len(items), count)
    runs, start = [], 0
    for run in range(count):
        end = start + base + (run < extra)
        runs.append(items[start:end])
        start = end
    return runs


def max_array_tasks(config: Mapping[str, str]) -> int:
    """Most tasks one array may hold on this cluster (`scontrol show config`): indices run 0 to MaxArraySize - 1
    (slurm.conf(5); 0 turns arrays off), and SchedulerParameters' `max_array_tasks` may cap the count lower."""
    try:
        size = int(config.get("MaxArraySize", "1001"))
    except ValueError:
        size = 1001
    found = re.search(r"(?:^|,)max_array_tasks=(\d+)", config.get("SchedulerParameters", ""))
    return min(size, int(found.group(1))) if found else size
