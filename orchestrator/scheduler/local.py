"""The embedded scheduler: runs rendered sbatch scripts with bash on this machine (no Slurm needed).

Used when `sbatch` is absent and by `make demo`. Each submission gets a unique increasing integer id
and a small wrapper process (`run_wrapper`, in a new Python) in its own session. The wrapper starts
the script in a process group of its own, enforces `#SBATCH --time`, handles cancellation and writes
the outcome to the state folder, so jobs outlive the monitor and a new monitor re-adopts them.

State folder (default `.orch/local/`), each file written once, atomically, by one writer:
  `<id>.json`      the submission (submit): name, script, log paths, time limit, wrapper pid
  `<id>.run.json`  the script started (wrapper): its pid = process group id
  `<id>.end.json`  the final state and exit code (wrapper)
  `<id>.cancel`    a cancel request (cancel); the wrapper kills the group and ends CANCELLED
"""

from __future__ import annotations

import functools
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator.jobs import Job
from orchestrator.process import pid_alive
from orchestrator.scheduler.base import NodeGpus, Observation, SchedulerState, SchedulerUnavailable, SubmitError
from orchestrator.scheduler.local_processes import JOB_TOKEN_VARIABLE, job_token, signal_job
from orchestrator.scheduler.sbatch_script import parse_time_limit, script_options

DEFAULT_STATE_DIR = Path(".orch/local")
KILL_WAIT_SECS = 5.0  # SIGTERM, then SIGKILL after this long (Slurm's KillWait, shortened)
POLL_SECS = 0.2  # how often a wrapper looks at its time limit and for a cancel request
# The wrapper runs this module from any folder, whether or not orch is installed.
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])
_START_GRACE_SECS = 30.0  # a wrapper writes its run file well within this after being started

_WRAPPER_BOOT = (
    "import json, sys; sys.path.insert(0, sys.argv[1]); "
    "from orchestrator.scheduler.local import run_wrapper; run_wrapper(json.loads(sys.argv[2]))"
)


def expand_log_path(pattern: str, job_id: str, name: str) -> str:
    """sbatch's filename patterns: %j job id, %x job name, %u user, %% a percent sign."""
    replacements = {"j": job_id, "x": name, "u": os.environ.get("USER", str(os.getuid())), "%": "%", "A": job_id}
    return re.sub(r"%(\d*)([jxu%A])", lambda m: replacements[m[2]].zfill(int(m[1] or 0)), pattern)


# -- processes ------------------------------------------------------------------------------------


def _process_start_ticks(pid: int) -> int | None:
    """The process's start time (clock ticks since boot), to tell it from a later process with its pid."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rpartition(")")[2].split()
    if fields[0] == "Z":  # a zombie has finished
        return None
    return int(fields[19])


def _alive(pid: int | None, start_ticks: int | None) -> bool:
    if not pid:
        return False
    if Path("/proc").is_dir():
        ticks = _process_start_ticks(pid)
        return ticks is not None and (start_ticks is None or ticks == start_ticks)
    return pid_alive(pid)


def _group_alive(pgid: int | None) -> bool:
    if not pgid:
        return False
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _write_json(path: Path, data: Mapping[str, Any]) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(json.dumps(data, indent=1))
    os.replace(temporary, path)


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as error:
        raise SchedulerUnavailable(f"cannot read {path}: {error}") from error


# -- the backend ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Paths:
    state_dir: Path
    job_id: str

    @property
    def record(self) -> Path:
        return self.state_dir / f"{self.job_id}.json"

    @property
    def run(self) -> Path:
        return self.state_dir / f"{self.job_id}.run.json"

    @property
    def end(self) -> Path:
        return self.state_dir / f"{self.job_id}.end.json"

    @property
    def cancel(self) -> Path:
        return self.state_dir / f"{self.job_id}.cancel"


class LocalScheduler:
    name = "local"

    def __init__(self, state_dir: str | Path = DEFAULT_STATE_DIR) -> None:
        self.state_dir = Path(state_dir).absolute()
        self._children: list[subprocess.Popen[bytes]] = []  # wrappers we started, reaped in query()

    def _paths(self, job_id: str) -> _Paths:
        return _Paths(self.state_dir, job_id)

    def _next_id(self) -> str:
        from filelock import FileLock

        self.state_dir.mkdir(parents=True, exist_ok=True)
        counter = self.state_dir / "last_id"
        with FileLock(str(self.state_dir / "last_id.lock")):
            last = int(counter.read_text() or 0) if counter.exists() else 0
            _write_json_text(counter, str(last + 1))
        return str(last + 1)

    def submit(self, job: Job, exclude: Sequence[str] = (), after: str | None = None) -> str:
        # One machine: no node to exclude (the monitor marks none here either: nodes_of knows of none).
        if after is not None:  # no dependencies here (no `can_chain`): the monitor submits each segment itself
            raise SubmitError(f"the local scheduler cannot queue {job.name} behind {after}")
        script = Path(job.sbatch_script)
        try:
            options = script_options(script.read_text())
        except OSError as error:
            raise SubmitError(f"cannot read the script {script}: {error}") from error
        try:
            time_limit = parse_time_limit(options.get("time", ""))
        except ValueError as error:
            raise SubmitError(f"{script}: #SBATCH --time={options.get('time')}: {error}") from None
        job_id = self._next_id()
        name = options.get("job-name") or job.name
        cwd = Path(options.get("chdir") or ".").absolute()
        output = cwd / expand_log_path(options.get("output") or job.output_file, job_id, name)
        error_log = cwd / expand_log_path(options["error"], job_id, name) if "error" in options else output
        spec = {
            "id": job_id,
            "name": name,
            "script": str(script.absolute()),
            "cwd": str(cwd),
            "output": str(output),
            "error": str(error_log),
            "append": options.get("open-mode") == "append",
            "time_limit_secs": time_limit,
            "state_dir": str(self.state_dir),
        }
        self._reap()
        # Record the job before starting it: a monitor killed right after the start must find it by
        # name when it comes back (a record without a wrapper pid reads PENDING, then GONE if it never ran).
        spec_record = dict(spec, submitted_at=time.time())
        _write_json(self._paths(job_id).record, spec_record)
        try:
            wrapper = subprocess.Popen(
                [sys.executable, "-c", _WRAPPER_BOOT, _PACKAGE_ROOT, json.dumps(spec)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,  # jobs outlive the monitor, like Slurm jobs
                cwd=str(cwd),
            )
        except OSError as error:
            _write_end(self._paths(job_id).end, SchedulerState.FAILED, None, f"could not start: {error}")
            raise SchedulerUnavailable(f"cannot start the local job wrapper: {error}") from error
        self._children.append(wrapper)
        record = dict(spec_record, wrapper_pid=wrapper.pid, wrapper_start=_process_start_ticks(wrapper.pid))
        _write_json(self._paths(job_id).record, record)
        return job_id

    def query(self, scheduler_ids: Collection[str], names: Collection[str]) -> Mapping[str, Observation]:
        self._reap()
        wanted_names = set(names)
        found: dict[str, Observation] = {}
        for job_id in {str(i) for i in scheduler_ids}:
            found[job_id] = self._observe(job_id)
        if wanted_names:
            for record_file in self._record_files():
                job_id = record_file.name[: -len(".json")]
                if job_id in found or self._paths(job_id).end.exists():
                    continue
                observation = self._observe(job_id)
                if observation.name in wanted_names and observation.state.is_active:
                    found[job_id] = observation
        return found

    def node_gpus(self) -> NodeGpus:
        """Jobs run on this machine, whatever partition they name: no GPUs are allocated to them."""
        return NodeGpus({}, everywhere=0)

    def cancel(self, scheduler_ids: Collection[str]) -> None:
        for job_id in {str(i) for i in scheduler_ids}:
            paths = self._paths(job_id)
            record = _read_json(paths.record)
            if record is None or paths.end.exists():
                continue
            paths.cancel.touch()
            run = _read_json(paths.run)
            token = job_token(str(self.state_dir), job_id)
            if run is not None:
                signal_job(run["pgid"], token, signal.SIGTERM)
            if not _alive(record.get("wrapper_pid"), record.get("wrapper_start")):
                # Nobody is left to record the ending: do it here.
                if run is not None:
                    signal_job(run["pgid"], token, signal.SIGKILL)
                if not paths.end.exists():  # the wrapper may have just written its own ending
                    _write_end(paths.end, SchedulerState.CANCELLED, None, "cancelled")

    # -- reading the state folder ---------------------------------------------------------------------

    def _record_files(self) -> list[Path]:
        try:
            return [p for p in self.state_dir.glob("*.json") if p.name[: -len(".json")].isdigit()]
        except OSError as error:
            raise SchedulerUnavailable(f"cannot list {self.state_dir}: {error}") from error

    def _observe(self, job_id: str) -> Observation:
        paths = self._paths(job_id)
        record = _read_json(paths.record)
        if record is None:
            return Observation(job_id, "", SchedulerState.GONE, reason="unknown id")
        seen = functools.partial(Observation, job_id, record["name"], script=record.get("script", ""),
                                 work_dir=record.get("cwd", ""))
        end = _read_json(paths.end)
        wrapper_alive = end is None and _alive(record.get("wrapper_pid"), record.get("wrapper_start"))
        # The wrapper may have finished between the two reads above.
        end = end or _read_json(paths.end)
        run = _read_json(paths.run)
        started = str(run["started_at"]) if run else ""
        if end is not None:
            # The wrapper's own clock: a job that began and ended between two polls still has its time.
            elapsed = max(0.0, end["ended_at"] - run["started_at"]) if run and "ended_at" in end else None
            return seen(SchedulerState(end["state"]), end.get("exit_code"), end.get("reason", ""), start_time=started,
                        elapsed_secs=elapsed)
        if wrapper_alive:
            return seen(SchedulerState.RUNNING if run else SchedulerState.PENDING, start_time=started,
                        elapsed_secs=max(0.0, time.time() - run["started_at"]) if run else None)
        if record.get("wrapper_pid") is None and run is None:
            # Recorded, but the submitter stopped before noting the wrapper's pid: it is starting, or never will.
            if time.time() - record.get("submitted_at", 0) < _START_GRACE_SECS:
                return seen(SchedulerState.PENDING, reason="starting")
            return seen(SchedulerState.GONE, reason="never started")
        if run is not None and _group_alive(run["pgid"]):
            # The wrapper died (killed, machine sleep...) but the script still runs: re-adopt it as
            # running; its exit code is lost, so its end will read GONE.
            return seen(SchedulerState.RUNNING, reason="wrapper lost", start_time=started)
        return seen(SchedulerState.GONE, reason="wrapper ended without a final state", start_time=started)

    def _reap(self) -> None:
        self._children = [child for child in self._children if child.poll() is None]


def _write_json_text(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


def _write_end(path: Path, state: SchedulerState, exit_code: int | None, reason: str) -> None:
    _write_json(path, {"state": state.value, "exit_code": exit_code, "reason": reason, "ended_at": time.time()})


# -- the wrapper process (started by submit through _WRAPPER_BOOT) ----------------------------------------


def _open_log(path: str, append: bool) -> Any:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return open(path, "ab" if append else "wb")


def run_wrapper(spec: Mapping[str, Any]) -> None:
    """Run one job's script to its end and record how it ended."""
    paths = _Paths(Path(spec["state_dir"]), spec["id"])
    if paths.cancel.exists():  # cancelled while pending
        _write_end(paths.end, SchedulerState.CANCELLED, None, "cancelled before it started")
        return
    token = job_token(spec["state_dir"], spec["id"])
    env = dict(os.environ, SLURM_JOB_ID=spec["id"], SLURM_JOBID=spec["id"], SLURM_JOB_NAME=spec["name"],
               SLURM_SUBMIT_DIR=spec["cwd"], ORCH_SCHEDULER="local", **{JOB_TOKEN_VARIABLE: token})
    try:
        with _open_log(spec["output"], spec["append"]) as out:
            err = out if spec["error"] == spec["output"] else _open_log(spec["error"], spec["append"])
            try:
                process = subprocess.Popen(["bash", spec["script"]], cwd=spec["cwd"], env=env, stdin=subprocess.DEVNULL,
                                           stdout=out, stderr=err, start_new_session=True)
            finally:
                if err is not out:
                    err.close()
    except OSError as error:
        _write_end(paths.end, SchedulerState.FAILED, None, f"could not start: {error}")
        return
    _write_json(paths.run, {"pid": process.pid, "pgid": process.pid, "started_at": time.time()})
    deadline = time.monotonic() + spec["time_limit_secs"] if spec["time_limit_secs"] else None
    ending: tuple[SchedulerState, str] | None = None  # set once we start killing
    kill_at = 0.0
    while process.poll() is None:
        now = time.monotonic()
        if ending is None:
            if paths.cancel.exists():
                ending = (SchedulerState.CANCELLED, "cancelled")
            elif deadline is not None and now >= deadline:
                ending = (SchedulerState.TIMEOUT, "TimeLimit")
            if ending is not None:
                signal_job(process.pid, token, signal.SIGTERM)
                kill_at = now + KILL_WAIT_SECS
        elif now >= kill_at:
            signal_job(process.pid, token, signal.SIGKILL)
        time.sleep(POLL_SECS)
    # Processes the script left behind belong to its job, in its group or not: end them too (Slurm does).
    signal_job(process.pid, token, signal.SIGKILL)
    code = process.returncode
    exit_code = 128 - code if code < 0 else code
    if ending is None and code < 0 and paths.cancel.exists():  # killed by cancel()'s SIGTERM before we looked
        ending = (SchedulerState.CANCELLED, "cancelled")
    if ending is not None:
        _write_end(paths.end, ending[0], exit_code, ending[1])
    elif exit_code == 0:
        _write_end(paths.end, SchedulerState.COMPLETED, 0, "")
    else:
        _write_end(paths.end, SchedulerState.FAILED, exit_code, "NonZeroExitCode")
