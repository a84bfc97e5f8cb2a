"""Convert a training checkpoint to a HuggingFace-like folder: `config.json` + `model.npz` (weights only).

    python examples/tinylm/convert.py --load RUN/checkpoints --iteration 400 --out RUN/converted/iter_0000400

Without --iteration the latest checkpoint (per latest_checkpointed_iteration.txt) is converted. The folder is
written under a temporary name and renamed into place, so it exists only once complete.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np

import checkpointing
from grammar import GrammarSpec
from model import ModelConfig

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.npz"


def convert(load: Path, iteration: int | None, out: Path) -> dict:
    if iteration is None:
        iteration = checkpointing.read_tracker(load)
        if iteration is None:
            raise checkpointing.CheckpointError(f"no {checkpointing.TRACKER} in {load}; pass --iteration")
    arrays, meta = checkpointing.load(load, iteration)
    model = meta["model"]
    config = {
        "model_type": "tinylm",
        "architectures": ["TinyLMForCausalLM"],
        "hidden_size": model["hidden_size"],
        "num_hidden_layers": model["num_layers"],
        "context_size": model["context"],
        "vocab_size": model["vocab_size"],
        "iteration": meta["iteration"],
        "consumed_samples": meta["consumed_samples"],
        "grammar": meta["grammar"],
        "source_checkpoint": str(checkpointing.iteration_dir(load, iteration)),
    }
    weights = {name[len("model/"):]: value for name, value in arrays.items() if name.startswith("model/")}

    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.parent / f".{out.name}.tmp.{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    (staging / CONFIG_FILE).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    np.savez(staging / WEIGHTS_FILE, **weights)
    if out.exists():
        retired = out.parent / f".{out.name}.old.{os.getpid()}"
        os.replace(out, retired)
        os.replace(staging, out)
        shutil.rmtree(retired)
    else:
        os.replace(staging, out)
    return config


def load_converted(folder: Path) -> tuple[dict, ModelConfig, GrammarSpec, dict[str, np.ndarray]]:
    """(raw config, model config, grammar spec, weights) of a converted folder."""
    config_path = folder / CONFIG_FILE
    if not config_path.is_file():
        raise FileNotFoundError(f"{config_path} does not exist (convert a checkpoint with convert.py first)")
    config = json.loads(config_path.read_text())
    if config.get("model_type") != "tinylm":
        raise ValueError(f"{config_path}: model_type is {config.get('model_type')!r}, expected 'tinylm'")
    model = ModelConfig(vocab_size=config["vocab_size"], hidden_size=config["hidden_size"],
                        num_layers=config["num_hidden_layers"], context=config["context_size"])
    with np.load(folder / WEIGHTS_FILE, allow_pickle=False) as data:
        weights = {name: data[name] for name in data.files}
    return config, model, GrammarSpec.from_dict(config["grammar"]), weights


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Convert a tinylm checkpoint to a HuggingFace-like folder.")
    parser.add_argument("--load", type=Path, required=True, help="checkpoint folder (holds iter_*/)")
    parser.add_argument("--iteration", type=int, default=None, help="default: the latest checkpoint")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    try:
        config = convert(args.load, args.iteration, args.out)
    except checkpointing.CheckpointError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"converted iteration {config['iteration']} of {args.load} to {args.out}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
