"""Record checkpoints written by the real DeepSpeed engine and megatron-core, whole and dead, as test fixtures.

Run with the scratch venv of scripts/record-checkpoint-fixtures.sh (torch CPU, deepspeed, megatron-core):
    python scripts/checkpoint_writers/record.py tests/fixtures/checkpoints
Each case is one `torchrun --nproc_per_node 2` run of a writer in this folder; its checkpoint folder is copied
to OUT/<case>/checkpoints (for a rank stopped mid-save: while it is stopped, before the run is torn down).
OUT/truth.json records, for every saved iteration, whether the real readers load it: `torch.load` of each file,
DeepSpeed's own `get_fp32_state_dict_from_zero_checkpoint` for ZeRO 1-3, megatron-core's `dist_checkpointing.load`
for torch_dist. The tests hold orch's verdicts to that truth. `zero_to_fp32.py` / `zero_to_torch.py`, which
DeepSpeed copies into every save root, are left out (30 KB each, no bearing on completeness).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEEPSPEED_CASES = [
    # (case name, ZeRO stage, dtype, model, fault)
    *[(f"zero{s}_whole", s, "fp32", "plain", "none") for s in (0, 1, 2, 3)],
    ("zero0_rank0_killed_mid_write", 0, "fp32", "plain", "kill_rank1_optim"),  # ZeRO 0: only rank 0 writes
    *[(f"zero{s}_rank1_killed_mid_write", s, "fp32", "plain", "kill_rank1_optim") for s in (1, 2, 3)],
    ("zero1_rank1_stopped_mid_write", 1, "fp32", "plain", "stop_rank1_optim"),
    ("zero3_rank1_stopped_mid_write", 3, "fp32", "plain", "stop_rank1_optim"),
    ("zero1_rank0_killed_before_latest", 1, "fp32", "plain", "kill_rank0_at_latest"),
    ("zero1_rank0_killed_in_latest", 1, "fp32", "plain", "kill_rank0_in_latest"),
    ("zero3_rank0_killed_in_latest", 3, "fp32", "plain", "kill_rank0_in_latest"),
    ("zero2_bf16_whole", 2, "bf16", "plain", "none"),
    ("zero2_bf16_rank1_killed_mid_write", 2, "bf16", "plain", "kill_rank1_optim"),
    ("pipe_zero1_whole", 1, "fp32", "pipe", "none"),
    ("pipe_zero1_rank1_killed_mid_write", 1, "fp32", "pipe", "kill_rank1_optim"),
]
MEGATRON_CASES = [
    # (case name, fault) for megatron_writer.py
    ("torch_dist_whole", "none"),
    ("torch_dist_rank1_killed_mid_write", "kill_rank1_mid_write"),
    ("torch_dist_killed_at_metadata_rename", "kill_at_metadata_rename"),
    ("torch_dist_killed_before_metadata_json", "kill_before_metadata_json"),
]
ENV = {**os.environ, "DS_ACCELERATOR": "cpu", "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}


def torchrun(script: str, *args: str) -> subprocess.Popen:
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
               str(29500 + os.getpid() % 1000), str(HERE / script), *args]
    return subprocess.Popen(command, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)


def kill_tree(process: subprocess.Popen) -> None:
    """SIGKILL torchrun and every rank below it (the ranks run in sessions of their own)."""
    below = [int(stat.parent.name) for stat in Path("/proc").glob("[0-9]*/stat")
             if int(stat.parent.name) != process.pid and _descends(int(stat.parent.name), process.pid)]
    for pid in [process.pid, *below]:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    process.wait()


def kill_orphaned_helpers() -> None:
    """megatron-core's writer leaves multiprocessing helpers (resource_tracker, spawned workers) behind when a rank
    dies; outside a Slurm cgroup nothing reaps them."""
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            words = cmdline.read_bytes().split(b"\0")
            parent = int(Path(cmdline.parent, "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if parent == 1 and words and words[0] == sys.executable.encode() and b"multiprocessing" in b" ".join(words):
            try:
                os.kill(int(cmdline.parent.name), signal.SIGKILL)
            except ProcessLookupError:
                pass


def stopped_child(parent: int) -> bool:
    """Is a process below `parent` stopped (state T)?"""
    for status in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = status.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] == "T" and int(fields[1]) != 1 and _descends(int(status.parent.name), parent):
            return True
    return False


def _descends(pid: int, ancestor: int) -> bool:
    while pid > 1:
        if pid == ancestor:
            return True
        try:
            pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except OSError:
            return False
    return False


def run_case(script: str, args: list[str], save_dir: Path, target: Path, stop: bool) -> None:
    process = torchrun(script, str(save_dir), *args)
    if stop:
        deadline = time.time() + 120
        while time.time() < deadline and not stopped_child(process.pid):
            time.sleep(0.2)
        time.sleep(2)  # let rank 0 go on as far as it does without rank 1
        shutil.copytree(save_dir, target, symlinks=True)
        kill_tree(process)
    else:
        try:
            process.wait(timeout=300)
        except subprocess.TimeoutExpired:
            kill_tree(process)
        time.sleep(1)  # a forked writer of a killed rank may still finish its file
        if not save_dir.is_dir():
            raise SystemExit(f"{script} {' '.join(args)} wrote no checkpoint (exit {process.returncode})")
        shutil.copytree(save_dir, target, symlinks=True)
    for helper in ("zero_to_fp32.py", "zero_to_torch.py"):
        (target / helper).unlink(missing_ok=True)


def deepspeed_truth(checkpoints: Path, stage: int) -> dict[str, dict]:
    import torch

    truth = {}
    for folder in sorted(p for p in checkpoints.iterdir() if p.is_dir()):
        error = ""
        try:
            for path in sorted(folder.iterdir()):
                torch.load(path, map_location="cpu", weights_only=False)
            if stage >= 1 and not any(p.name.startswith("layer_") for p in folder.iterdir()):
                from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

                get_fp32_state_dict_from_zero_checkpoint(str(checkpoints), tag=folder.name)
        except Exception as exception:  # noqa: BLE001 - any failure to load is the truth we record
            error = f"{type(exception).__name__}: {str(exception).splitlines()[0][:200]}"
        truth[folder.name] = {"loads": not error, "error": error}
    return truth


def megatron_truth(checkpoints: Path) -> dict[str, dict]:
    result = subprocess.run([sys.executable, str(HERE / "megatron_writer.py"), "--verify", str(checkpoints)],
                            env=ENV, capture_output=True, text=True, timeout=300)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    out = Path(sys.argv[1]).resolve()
    wanted = set(sys.argv[2:])
    out.mkdir(parents=True, exist_ok=True)
    truth_path = out / "truth.json"
    truth = json.loads(truth_path.read_text()) if truth_path.exists() else {}
    for name, stage, dtype, model, fault in DEEPSPEED_CASES:
        if wanted and name not in wanted:
            continue
        target = out / name / "checkpoints"
        shutil.rmtree(out / name, ignore_errors=True)
        with tempfile.TemporaryDirectory() as scratch:
            run_case("deepspeed_writer.py", [str(stage), dtype, model, fault], Path(scratch) / "checkpoints", target,
                     stop=fault.startswith("stop"))
        truth[name] = {"writer": f"deepspeed ZeRO-{stage} {dtype} {model}", "fault": fault,
                       "saves": deepspeed_truth(target, stage)}
        print(name, json.dumps(truth[name]["saves"]), flush=True)
        _write(truth_path, truth)
    for name, fault in MEGATRON_CASES:
        if wanted and name not in wanted:
            continue
        target = out / name / "checkpoints"
        shutil.rmtree(out / name, ignore_errors=True)
        with tempfile.TemporaryDirectory() as scratch:
            run_case("megatron_writer.py", [fault], Path(scratch) / "checkpoints", target, stop=False)
            kill_orphaned_helpers()
        truth[name] = {"writer": "megatron-core dist_checkpointing torch_dist (CUDA calls patched out)", "fault": fault,
                       "saves": megatron_truth(target)}
        print(name, json.dumps(truth[name]["saves"]), flush=True)
        _write(truth_path, truth)
    versions = subprocess.run([sys.executable, "-c", "import torch, deepspeed, megatron.core as m; "
                               "print(torch.__version__, deepspeed.__version__, m.__version__)"],
                              capture_output=True, text=True, env=ENV).stdout.split()
    truth["_recorded_with"] = dict(zip(("torch", "deepspeed", "megatron-core"), versions))
    _write(truth_path, truth)


def _write(path: Path, truth: dict) -> None:
    path.write_text(json.dumps(truth, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
