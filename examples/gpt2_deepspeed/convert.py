"""A DeepSpeed checkpoint of train.py -> a HuggingFace folder (model and tokenizer) that lm-eval loads.

    python convert.py --load RUN/checkpoints --iteration 100 --out RUN/converted_hf/iter_100

The weights come from DeepSpeed's own consolidation (`deepspeed.utils.zero_to_fp32`
`get_fp32_state_dict_from_zero_checkpoint`: the fp32 master weights gathered from every rank's ZeRO shard);
at ZeRO-0 there are no shards and the model states file holds the weights. The model's config is the one the
trainer stored with the save (`hf_config`). The folder is written beside OUT and renamed into place, so a
killed conversion never leaves a half-written OUT. Exit 2 with `error: ...` when the save cannot be read.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from vocab import build_tokenizer


def model_states_file(folder: Path) -> Path:
    """Rank 0's model states: `mp_rank_00_model_states.pt` (ZeRO 0-2) or `zero_pp_rank_0_mp_rank_00_...` (ZeRO-3)."""
    for name in ("mp_rank_00_model_states.pt", "zero_pp_rank_0_mp_rank_00_model_states.pt"):
        if (folder / name).is_file():
            return folder / name
    raise FileNotFoundError(f"{folder}: no mp_rank_00 model states file")


def consolidated(load: Path, tag: str):
    """(fp32 state dict, the trainer's hf_config) of one save."""
    import torch

    states = torch.load(model_states_file(load / tag), map_location="cpu", weights_only=False)
    if any((load / tag).glob("*zero_pp_rank_*_optim_states.pt")):
        from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

        weights = get_fp32_state_dict_from_zero_checkpoint(str(load), tag=tag)
    else:
        weights = {name: tensor.float() for name, tensor in states["module"].items()}
    return weights, states["hf_config"]


def convert(load: Path, iteration: int, out: Path) -> None:
    from transformers import GPT2Config, GPT2LMHeadModel

    weights, hf_config = consolidated(load, f"global_step{iteration}")
    model = GPT2LMHeadModel(GPT2Config.from_dict(hf_config))
    missing, unexpected = model.load_state_dict(weights, strict=False)
    missing = [name for name in missing if name != "lm_head.weight"]  # tied to the embedding
    if missing or unexpected:
        raise ValueError(f"weights do not fit the model: missing {missing[:3]}, unexpected {unexpected[:3]}")
    partial = out.with_name(f".{out.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    model.save_pretrained(partial)
    build_tokenizer().save_pretrained(partial)
    shutil.rmtree(out, ignore_errors=True)
    partial.rename(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--load", required=True, type=Path, help="the run's checkpoints folder")
    parser.add_argument("--iteration", required=True, type=int)
    parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    try:
        convert(args.load, args.iteration, args.out)
    except (OSError, ValueError, RuntimeError, KeyError) as error:
        print(f"error: global_step{args.iteration} in {args.load}: {error}", file=sys.stderr)
        return 2
    print(f"converted global_step{args.iteration} of {args.load} to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
