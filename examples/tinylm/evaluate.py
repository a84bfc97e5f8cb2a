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
from data import read_dataset  # noqa: E402
from grammar import TEST_STREAM, MarkovGrammar, stream_rng  # noqa: E402
from model import loss  # noqa: E402


def dataset_losses(model_dir: Path, prefixes: list[str], new: str | None = None, seed: int = 0,
                   num_samples: int = 256, seq_length: int = 128) -> dict:
    """Held-out loss and true entropy on each dataset (`loss_<name>`, `true_entropy_<name>`, name = the prefix's
    file name), and on the job's newest dataset as `loss_new`: forgetting and learning side by side."""
    _config, model, _spec, weights = load_converted(model_dir)
    results: dict = {}
    for prefix in prefixes:
        grammar = MarkovGrammar(read_dataset(prefix))
        tokens = grammar.sample(stream_rng(TEST_STREAM, seed), num_samples, seq_length + model.context)
        name = Path(prefix).name
        results[f"loss_{name}"] = loss(weights, model, tokens)
        results[f"true_entropy_{name}"] = grammar.entropy_rate()
        if prefix == new:
            results["loss_new"] = results[f"loss_{name}"]
    return results


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
    parser.add_argument("--eval-data", nargs="+", default=[], metavar="PREFIX",
                        help="also the held-out loss on each of these datasets (loss_<name>, true_entropy_<name>)")
    parser.add_argument("--new-data", metavar="PREFIX", help="the one of --eval-data the run is learning: loss_new")
    args = parser.parse_args(argv)
    if args.new_data and args.new_data not in args.eval_data:
        parser.error("--new-data must be one of --eval-data")
    try:
        results = evaluate(args.model, args.seed, args.num_samples, args.seq_length)
        if args.eval_data:  # a model trained on a mixture: its checkpoint's grammar is just the first dataset's
            results = {key: value for key, value in results.items() if key in ("iteration", "parameters", "run")}
            results.update(dataset_losses(args.model, args.eval_data, args.new_data, args.seed, args.num_samples,
                                          args.seq_length))
    except (FileNotFoundError, ValueError, KeyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    write_json_atomically(args.out, results)
    losses = ", ".join(f"{key} {value:.4f}" for key, value in results.items() if key.startswith(("val_loss", "loss_")))
    print(f"iteration {results['iteration']}: {losses} nats/token ({results['run']['tokens']} tokens per dataset)"
          f" -> {args.out}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
