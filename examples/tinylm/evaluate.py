"""Evaluate a converted tinylm model on held-out text from its grammar; write the results as JSON.

    python examples/tinylm/evaluate.py --model RUN/converted/iter_0000400 --out RUN/results/iter_0000400.json

The held-out text comes from a stream no training or validation batch uses (fixed --seed, default 0), so
results of different runs are comparable. JSON (written atomically): the measurements at the top level,
what was measured under "run" (a mapping, so `orch results` does not take it for metrics):
    {"iteration", "val_loss" (nats/token), "perplexity", "true_entropy", "parameters", "run": {"tokens", ...}}
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # share small machines politely

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

from convert import load_converted  # noqa: E402
from grammar import TEST_STREAM, MarkovGrammar, stream_rng  # noqa: E402
from model import loss  # noqa: E402


def evaluate(model_dir: Path, seed: int = 0, num_samples: int = 256, seq_length: int = 128) -> dict:
    config, model, spec, weights = load_converted(model_dir)
    grammar = MarkovGrammar(spec)
    tokens = grammar.sample(stream_rng(TEST_STREAM, seed), num_samples, seq_length + model.context)
    value = loss(weights, model, tokens)
    return {
        "iteration": config["iteration"],
        "val_loss": value,
        "perplexity": math.exp(value),
        "true_entropy": grammar.entropy_rate(),
        "parameters": int(sum(array.size for array in weights.values())),  # N of a scaling-law fit
        "run": {
            "tokens": num_samples * seq_length,  # held-out tokens evaluated
            "hidden_size": model.hidden_size,
            "num_layers": model.num_layers,
            "consumed_samples": config.get("consumed_samples"),
            "seed": seed,
            "model": str(model_dir),
        },
    }


def write_json_atomically(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.tmp.{os.getpid()}"
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Evaluate a converted tinylm model on held-out grammar text.")
    parser.add_argument("--model", type=Path, required=True, help="folder written by convert.py")
    parser.add_argument("--out", type=Path, required=True, help="results JSON")
    parser.add_argument("--seed", type=int, default=0, help="held-out text seed")
    parser.add_argument("--num-samples", type=int, default=256)
    parser.add_argument("--seq-length", type=int, default=128)
    args = parser.parse_args(argv)
    try:
        results = evaluate(args.model, args.seed, args.num_samples, args.seq_length)
    except (FileNotFoundError, ValueError, KeyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    write_json_atomically(args.out, results)
    print(f"iteration {results['iteration']}: val_loss {results['val_loss']:.4f} nats/token, perplexity "
          f"{results['perplexity']:.3f}, true entropy {results['true_entropy']:.4f} "
          f"({results['run']['tokens']} tokens) -> {args.out}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
