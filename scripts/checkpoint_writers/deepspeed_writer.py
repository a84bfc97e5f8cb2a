"""Write DeepSpeed checkpoints with the real engine on 2 gloo ranks (CPU), optionally dying mid-save.

Run by scripts/record-checkpoint-fixtures.sh under torchrun:
    DS_ACCELERATOR=cpu torchrun --nproc_per_node 2 deepspeed_writer.py OUT STAGE DTYPE MODEL FAULT
STAGE 0-3, DTYPE fp32|bf16, MODEL plain|pipe, FAULT one of:
    none                  two saves, global_step2 and global_step4
    stop_rank1_optim      rank 1 stops (SIGSTOP) half-way through writing its optimizer shard of global_step4
    kill_rank1_optim      rank 1 is killed (SIGKILL) half-way through writing its optimizer shard of global_step4
                          (at ZeRO 0, where only rank 0 writes, rank 0 half-way through the model states)
    kill_rank0_at_latest  rank 0 is killed just before it opens `latest` for global_step4
    kill_rank0_in_latest  rank 0 is killed after `latest` was opened (truncated) and before the tag is written
A file cut "half-way" holds the first half of the bytes the real serializer produced for it (torch.save into
a buffer, the first half written to the real path): what a writer killed part-way through leaves.
"""

from __future__ import annotations

import io
import os
import signal
import sys
import time

import torch

out, stage, dtype, model_kind, fault = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
rank = int(os.environ["RANK"])
FAULT_TAG = "global_step4"

import deepspeed  # noqa: E402  (after the environment is read)
import deepspeed.runtime.engine as ds_engine  # noqa: E402

real_save = torch.save


def _die(sig: int) -> None:
    os.kill(os.getpid(), sig)
    time.sleep(3600)


def faulty_save(obj, f, *args, **kwargs):
    path = str(f)
    # At ZeRO 0 only rank 0 writes (the model states, optimizer included): it is the one cut off there.
    writer = 0 if stage == 0 else 1
    target = (FAULT_TAG in path and rank == writer and fault in ("stop_rank1_optim", "kill_rank1_optim")
              and ("optim_states" in path or (stage == 0 and "model_states" in path)))
    if not target:
        return real_save(obj, f, *args, **kwargs)
    buffer = io.BytesIO()
    real_save(obj, buffer, *args, **kwargs)
    data = buffer.getvalue()
    with open(path, "wb") as handle:
        handle.write(data[: len(data) // 2])
        handle.flush()
        os.fsync(handle.fileno())
    _die(signal.SIGSTOP if fault == "stop_rank1_optim" else signal.SIGKILL)


torch.save = faulty_save
real_open = open


def faulty_open(path, mode="r", *args, **kwargs):
    if rank == 0 and str(path).endswith("latest") and "w" in mode and _saving_fault_tag:
        if fault == "kill_rank0_at_latest":
            _die(signal.SIGKILL)
        if fault == "kill_rank0_in_latest":
            handle = real_open(path, mode, *args, **kwargs)  # truncated, as `open(..., 'w')` leaves it
            handle.flush()
            _die(signal.SIGKILL)
    return real_open(path, mode, *args, **kwargs)


ds_engine.open = faulty_open  # the engine's `with open(os.path.join(save_dir, 'latest'), 'w')`
_saving_fault_tag = False

torch.manual_seed(0)
config = {
    "train_batch_size": 4,
    "train_micro_batch_size_per_gpu": 1,
    "gradient_accumulation_steps": 2,
    "zero_optimization": {"stage": stage},
    "bf16": {"enabled": dtype == "bf16"},
    "steps_per_print": 1000,
}
if model_kind == "pipe":
    from deepspeed.pipe import PipelineModule

    deepspeed.init_distributed(dist_backend="gloo")  # PipelineModule builds its topology at construction
    config["train_batch_size"] = 2  # two pipeline stages on the two ranks: data parallel 1

    layers = [torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4)]
    model = PipelineModule(layers=layers, num_stages=2, loss_fn=torch.nn.MSELoss())
else:
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4))
optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
engine, _, _, _ = deepspeed.initialize(model=model, optimizer=optimizer, config=config)
kind = torch.bfloat16 if dtype == "bf16" else torch.float32


def batches():
    while True:
        yield torch.randn(1, 8, dtype=kind), torch.randn(1, 4, dtype=kind)


data = batches()
for step in (1, 2, 3, 4):
    if model_kind == "pipe":
        engine.train_batch(data)
    else:
        for _ in range(2):
            x, y = next(data)
            loss = torch.nn.functional.mse_loss(engine(x), y)
            engine.backward(loss)
            engine.step()
    if step % 2 == 0:
        tag = f"global_step{step}"
        _saving_fault_tag = tag == FAULT_TAG and fault != "none"
        engine.save_checkpoint(out, tag=tag)
print(f"rank {rank}: done", flush=True)
