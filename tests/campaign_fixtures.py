"""On-disk checkpoint layouts as the trainers write them, shared by the tests/test_campaign_*.py files.

File names follow the writers' own naming functions (see `orchestrator/campaign/checkpoints.py` for the
files and commits): Megatron-LM `get_checkpoint_name` and dist_checkpointing `save`, DeepSpeed
`_get_ckpt_name` / `_get_zero_ckpt_name` / `ckpt_layer_path`, `ds_to_universal.py`. Contents are the real
writers' bytes (tests/fixtures/checkpoints, recorded by scripts/record-checkpoint-fixtures.sh): every `.pt` a
whole file torch.save wrote, the torch_dist files a real megatron-core save, `.npz` numpy's own zip; a whole
file under each name, since completeness is judged by names, order and each file's own end.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

RECORDED = Path(__file__).parent / "fixtures" / "checkpoints"
REAL_TORCH_FILE = (RECORDED / "zero1_whole" / "checkpoints" / "global_step2" / "mp_rank_00_model_states.pt").read_bytes()
REAL_TORCH_DIST = RECORDED / "torch_dist_whole" / "checkpoints" / "iter_0000002"
TORCH_DIST_CONFIG = json.loads((REAL_TORCH_DIST / "metadata.json").read_text())


def _npz_bytes() -> bytes:
    import numpy

    buffer = io.BytesIO()
    numpy.savez(buffer, weight=numpy.zeros(4))
    return buffer.getvalue()


def real_content(name: str) -> bytes:
    """What the real writer leaves under this file name, whole."""
    leaf = name.rsplit("/", 1)[-1]
    if (REAL_TORCH_DIST / leaf).is_file():
        return (REAL_TORCH_DIST / leaf).read_bytes()
    if leaf.endswith(".npz"):
        return _npz_bytes()
    return REAL_TORCH_FILE

LAYOUTS: dict[str, list[str]] = {
    # Megatron-LM legacy torch format, TP=2 (no pipeline: mp_rank_TT)
    "torch": ["mp_rank_00/model_optim_rng.pt", "mp_rank_01/model_optim_rng.pt"],
    # TP=2 x PP=2 with the distributed optimizer (mp_rank_TT_PPP, distrib_optim.pt beside the model)
    "torch_tp_pp": [f"mp_rank_{tp:02d}_{pp:03d}/{name}" for tp in range(2) for pp in range(2)
                    for name in ("model_optim_rng.pt", "distrib_optim.pt")],
    # torch_dist: shards, torch's .metadata, common.pt, and Megatron's metadata.json (written last)
    "torch_dist": ["__0_0.distcp", "__0_1.distcp", "__1_0.distcp", ".metadata", "common.pt", "metadata.json"],
    # the tinylm example's numpy twin of the legacy format
    "npz": ["mp_rank_00/model_optim_rng.npz"],
    # DeepSpeed ZeRO-1, model parallel 2, data parallel 2 (bf16 optimizer files)
    "deepspeed": ["mp_rank_00_model_states.pt", "mp_rank_01_model_states.pt"]
    + [f"bf16_zero_pp_rank_{dp}_mp_rank_{mp:02d}_optim_states.pt" for dp in range(2) for mp in range(2)],
    # DeepSpeed ZeRO-3: no mp_rank_00_model_states.pt, one model-state file per data-parallel rank
    "zero3": [f"zero_pp_rank_{dp}_mp_rank_00_{kind}_states.pt" for dp in range(4) for kind in ("model", "optim")],
    # DeepSpeed pipeline engine: layer files per tensor rank plus the engine's model states
    "pipeline": ["mp_rank_00_model_states.pt", "mp_rank_01_model_states.pt"]
    + [f"layer_{layer:02d}-model_{tp:02d}-model_states.pt" for layer in (1, 2, 3, 5) for tp in range(2)],
    # ds_to_universal.py output: zero/<param>/fp32.pt and the copied model states
    "universal": ["zero/embedding.word_embeddings.weight/fp32.pt", "zero/embedding.word_embeddings.weight/exp_avg.pt",
                  "mp_rank_00_model_states.pt"],
}
DEEPSPEED_LAYOUTS = ("deepspeed", "zero3", "pipeline", "mds")


def folder_name(iteration: int, fmt: str) -> str:
    if fmt == "universal":
        return f"global_step{iteration}_universal"
    return f"global_step{iteration}" if fmt in DEEPSPEED_LAYOUTS else f"iter_{iteration:07d}"


def make_checkpoint(checkpoints: Path, iteration: int, fmt: str = "torch", track: bool = True,
                    files: list[str] | None = None) -> Path:
    """One checkpoint folder as `fmt`'s writer leaves it; with `track`, the writer's trackers too.

    `files` replaces the layout's file list (a save that died part-way); "mds" is Megatron-DeepSpeed:
    DeepSpeed's files and `latest`, then Megatron's tracker."""
    folder = checkpoints / folder_name(iteration, fmt)
    for name in files if files is not None else LAYOUTS["deepspeed" if fmt == "mds" else fmt]:
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(real_content(name))
    folder.mkdir(parents=True, exist_ok=True)
    if track:
        write_tracker(checkpoints, iteration, fmt)
    return folder


def write_tracker(checkpoints: Path, iteration: int, fmt: str = "torch") -> None:
    """The tracker(s) `fmt`'s writer updates after a save."""
    checkpoints.mkdir(parents=True, exist_ok=True)
    if fmt == "universal":
        (checkpoints / "latest_universal").write_text(f"global_step{iteration}_universal")
        return
    if fmt in DEEPSPEED_LAYOUTS:
        (checkpoints / "latest").write_text(f"global_step{iteration}")
    if fmt not in DEEPSPEED_LAYOUTS or fmt == "mds":
        (checkpoints / "latest_checkpointed_iteration.txt").write_text(f"{iteration}")
