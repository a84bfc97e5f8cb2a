"""Write a megatron-core `dist_checkpointing` (torch_dist) checkpoint on 2 gloo ranks (CPU), optionally dying mid-save.

    DS_ACCELERATOR=cpu torchrun --nproc_per_node 2 megatron_writer.py OUT FAULT
    python megatron_writer.py --verify CHECKPOINTS       # prints {iteration folder: {"loads", "error"}} as JSON
FAULT: none | kill_rank1_mid_write (rank 1 killed half-way through writing its .distcp of iter_0000004) |
kill_at_metadata_rename (rank 0 killed before `.metadata.tmp` becomes `.metadata`) | kill_before_metadata_json
(rank 0 killed before megatron writes metadata.json).

megatron-core 0.16.1 calls `torch.cuda.synchronize()` (strategies/filesystem_async.py, preload_tensors) and
`torch.cuda.current_device()` (strategies/state_dict_saver.py) in its writer, which fail on CPU-only torch. Both
are replaced by no-ops in this process before saving: the files are the real writer's otherwise. Checkpoints
written this way are marked `(CUDA calls patched out)` in truth.json.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

import torch

FAULT_ITER = 4


RANK_PID = os.getpid()


def _die() -> None:
    """Kill this rank (and, from a writer process megatron forked for it, the rank too)."""
    if os.getpid() != RANK_PID:
        os.kill(RANK_PID, signal.SIGKILL)
    os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(3600)


def _patch_cuda() -> None:
    torch.cuda.synchronize = lambda *args, **kwargs: None
    torch.cuda.current_device = lambda: "cpu"  # used as a tensor device


def sharded_state(rank: int, world: int, step: int):
    from megatron.core.dist_checkpointing import ShardedTensor

    torch.manual_seed(step)
    weight = torch.randn(64, 32) + step
    bias = torch.randn(64) * step
    local_rows = 64 // world
    return {
        "weight": ShardedTensor.from_rank_offsets("decoder.weight", weight[rank * local_rows:(rank + 1) * local_rows].clone(),
                                                  (0, rank, world)),
        "bias": ShardedTensor.from_rank_offsets("decoder.bias", bias.clone(), replica_id=rank),
        "iteration": step,
    }


def write(out: Path, fault: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    _patch_cuda()
    from megatron.core import dist_checkpointing
    from megatron.core.dist_checkpointing.strategies import filesystem_async

    for step in (2, 4):
        folder = out / f"iter_{step:07d}"
        if rank == 0:
            folder.mkdir(parents=True, exist_ok=True)
        dist.barrier()
        if step == FAULT_ITER:
            _arm(fault, rank, filesystem_async)
        dist_checkpointing.save(sharded_state(rank, world, step), str(folder))
        if rank == 0:
            (out / "latest_checkpointed_iteration.txt").write_text(str(step))
        dist.barrier()
    print(f"rank {rank}: done", flush=True)


def _arm(fault: str, rank: int, filesystem_async) -> None:
    """Kill this rank at the chosen point of the next save."""
    import megatron.core.dist_checkpointing.serialization as serialization

    if fault == "kill_rank1_mid_write" and rank == 1:
        real = filesystem_async._write_item

        def half_then_die(*args, **kwargs):
            stream = next(arg for arg in args if hasattr(arg, "fileno") and hasattr(arg, "truncate"))
            result = real(*args, **kwargs)
            stream.flush()
            stream.truncate(max(1, stream.tell() // 2))
            stream.flush()
            os.fsync(stream.fileno())
            _die()
            return result

        filesystem_async._write_item = half_then_die
    if fault == "kill_at_metadata_rename" and rank == 0:
        import torch.distributed.checkpoint.filesystem as torch_fs

        def rename_then_die(self, path, new_path):
            _die()

        torch_fs.FileSystem.rename = rename_then_die
    if fault == "kill_before_metadata_json" and rank == 0:
        serialization.save_config = lambda *args, **kwargs: _die()


def verify(checkpoints: Path) -> dict[str, dict]:
    import torch.distributed as dist

    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", str(29900 + os.getpid() % 50))
    dist.init_process_group("gloo", rank=0, world_size=1)
    _patch_cuda()
    from megatron.core import dist_checkpointing

    truth = {}
    for folder in sorted(p for p in checkpoints.iterdir() if p.is_dir()):
        error = ""
        try:
            step = int(folder.name.split("_")[1])
            template = sharded_state(0, 1, step)
            loaded = dist_checkpointing.load(template, str(folder))
            if loaded["iteration"] != step:
                error = f"iteration {loaded['iteration']} read back, not {step}"
        except Exception as exception:  # noqa: BLE001 - any failure to load is the truth we record
            error = f"{type(exception).__name__}: {str(exception).splitlines()[0][:200] if str(exception) else ''}"
        truth[folder.name] = {"loads": not error, "error": error}
    return truth


if __name__ == "__main__":
    if sys.argv[1] == "--verify":
        print(json.dumps(verify(Path(sys.argv[2]))))
    else:
        write(Path(sys.argv[1]), sys.argv[2])
