"""A seeded stochastic grammar: an order-2 Markov chain over a small vocabulary with sparse transitions.

Shipped as code so the data needs no download, and its true entropy per token is known exactly:
the entropy rate is the stationary-distribution-weighted entropy of the next-token distributions.
Sequences start from the stationary distribution, so the expected loss of a perfect model on any
sampled window equals that entropy rate.

Run `python examples/tinylm/grammar.py` to print the true entropy and a sample.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass

import numpy as np

# Seed-sequence tags keep the training, validation and test streams apart for any user seed.
TRAIN_STREAM = 1
VALID_STREAM = 2
TEST_STREAM = 3


@dataclass(frozen=True)
class GrammarSpec:
    """Everything that defines the grammar; stored in checkpoints and converted models."""

    vocab_size: int = 32
    order: int = 2
    branching: int = 4  # successors per context that carry most of the mass
    noise: float = 0.02  # mass spread over the whole vocabulary: keeps the chain ergodic
    seed: int = 1234
    # A shifted distribution (continual pre-training): this share of the contexts get new successors and
    # weights, drawn from `shift_seed`; 0 is the base grammar, 1 a new grammar over the same vocabulary.
    shift: float = 0.0
    shift_seed: int = 0

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict) -> "GrammarSpec":
        return cls(**{key: data[key] for key in asdict(cls()) if key in data})


class MarkovGrammar:
    """P(next | previous `order` tokens), a dense (V,)*order + (V,) array built from the spec."""

    def __init__(self, spec: GrammarSpec) -> None:
        if spec.vocab_size < 2 or spec.order < 1 or not 1 <= spec.branching <= spec.vocab_size:
            raise ValueError(f"invalid grammar spec {spec}")
        if not 0.0 < spec.noise < 1.0:
            raise ValueError("grammar noise must be in (0, 1) so the chain is ergodic")
        if not 0.0 <= spec.shift <= 1.0:
            raise ValueError("grammar shift must be in [0, 1]")
        self.spec = spec
        vocab, contexts = spec.vocab_size, spec.vocab_size ** spec.order
        rng = np.random.default_rng(spec.seed)
        sparse = np.zeros((contexts, vocab))
        for row in range(contexts):
            successors = rng.choice(vocab, size=spec.branching, replace=False)
            sparse[row, successors] = rng.dirichlet(np.ones(spec.branching))
        if spec.shift > 0:
            shifted = np.random.default_rng([spec.shift_seed, spec.seed])
            rows = shifted.choice(contexts, size=int(round(spec.shift * contexts)), replace=False)
            for row in rows:
                sparse[row] = 0.0
                sparse[row, shifted.choice(vocab, size=spec.branching, replace=False)] = shifted.dirichlet(
                    np.ones(spec.branching))
        probs = (1.0 - spec.noise) * sparse + spec.noise / vocab
        self.probs = probs.reshape((vocab,) * spec.order + (vocab,))
        self._cumulative = np.cumsum(probs, axis=1)
        self._cumulative[:, -1] = 1.0  # guard against rounding: every uniform draw lands in a bucket
        self.stationary = self._stationary_contexts()

    def _stationary_contexts(self, tolerance: float = 1e-14, max_steps: int = 100_000) -> np.ndarray:
        """Stationary distribution over contexts (tuples of `order` tokens), by power iteration."""
        vocab, order = self.spec.vocab_size, self.spec.order
        flat_probs = self.probs.reshape(vocab, vocab ** (order - 1), vocab)  # (oldest, rest, next)
        pi = np.full(vocab ** order, 1.0 / vocab ** order)
        for _ in range(max_steps):
            # the new context drops the oldest token and appends the next one
            new = np.einsum("ar,arn->rn", pi.reshape(vocab, -1), flat_probs).reshape(-1)
            if np.abs(new - pi).sum() < tolerance:
                return new / new.sum()
            pi = new
        raise RuntimeError("stationary distribution did not converge")

    def entropy_rate(self) -> float:
        """True entropy per token in nats: sum over contexts of pi(context) * H(next | context)."""
        flat = self.probs.reshape(-1, self.spec.vocab_size)
        row_entropy = -(flat * np.log(flat)).sum(axis=1)
        return float(self.stationary @ row_entropy)

    def sample(self, rng: np.random.Generator, batch: int, length: int) -> np.ndarray:
        """`batch` independent sequences of `length` tokens, started from the stationary distribution."""
        vocab, order = self.spec.vocab_size, self.spec.order
        if length < order:
            raise ValueError(f"sequence length {length} is shorter than the grammar order {order}")
        out = np.empty((batch, length), dtype=np.int64)
        start = rng.choice(vocab ** order, size=batch, p=self.stationary)
        for position in range(order):  # unravel the context index, oldest token first
            out[:, position] = (start // vocab ** (order - 1 - position)) % vocab
        context = start
        for position in range(order, length):
            draws = rng.random(batch)
            nxt = (self._cumulative[context] < draws[:, None]).sum(axis=1)
            out[:, position] = nxt
            context = (context * vocab + nxt) % vocab ** order
        return out

    def log_prob(self, tokens: np.ndarray) -> np.ndarray:
        """log P(token_t | previous `order` tokens) for every position t >= order."""
        order = self.spec.order
        index = tuple(tokens[:, i: tokens.shape[1] - order + i] for i in range(order + 1))
        return np.log(self.probs[index])


def stream_rng(stream: int, seed: int, *extra: int) -> np.random.Generator:
    """An independent generator per (stream, seed, ...): resuming at iteration N redraws batch N exactly."""
    return np.random.default_rng([stream, seed, *extra])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Print the tiny grammar's true entropy and a sample.")
    parser.add_argument("--vocab-size", type=int, default=GrammarSpec.vocab_size)
    parser.add_argument("--grammar-seed", type=int, default=GrammarSpec.seed)
    parser.add_argument("--length", type=int, default=24)
    parser.add_argument("--entropy", action="store_true", help="print only the entropy rate (nats/token)")
    parser.add_argument("--shift", type=float, default=0.0, help="share of contexts redrawn (a shifted dataset)")
    parser.add_argument("--shift-seed", type=int, default=0)
    parser.add_argument("--write-dataset", metavar="PREFIX",
                        help="write PREFIX.json, a dataset that data-file lists name by PREFIX, and exit")
    args = parser.parse_args(argv)
    spec = GrammarSpec(vocab_size=args.vocab_size, seed=args.grammar_seed, shift=args.shift, shift_seed=args.shift_seed)
    grammar = MarkovGrammar(spec)
    rate = grammar.entropy_rate()
    if args.write_dataset:
        from data import write_dataset

        path = write_dataset(args.write_dataset, spec)
        print(f"{path}: true entropy {rate:.6f} nats/token")
        return 0
    if args.entropy:
        print(f"{rate:.6f}")
        return 0
    print(f"true entropy: {rate:.6f} nats/token (perplexity {np.exp(rate):.3f}, "
          f"uniform would be {np.log(args.vocab_size):.3f} nats)")
    print("sample:", " ".join(map(str, grammar.sample(stream_rng(TEST_STREAM, 0), 1, args.length)[0])))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
