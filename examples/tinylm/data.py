"""Datasets and data-file lists for tinylm: what a Megatron-DeepSpeed `--data-file-list` is to a real run.

A dataset is a grammar (`grammar.GrammarSpec`, possibly shifted) stored as `PREFIX.json`; a data-file list
has Megatron-DeepSpeed's lines `weight PREFIX corpus` (what `orch data mix` and `orch build` write). A batch
from a list draws each sample's dataset by weight, so the mixture is what the weights say.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path

import numpy as np

from grammar import GrammarSpec, MarkovGrammar


def write_dataset(prefix: str | os.PathLike[str], spec: GrammarSpec) -> Path:
    path = Path(f"{prefix}.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(asdict(spec), sort_keys=True) + "\n")
    return path


def read_dataset(prefix: str) -> GrammarSpec:
    path = Path(f"{prefix}.json")
    try:
        return GrammarSpec.from_dict(json.loads(path.read_text()))
    except (OSError, ValueError) as error:
        raise ValueError(f"{path}: not a tinylm dataset ({error})") from None


class DataMixture:
    """Weighted datasets; one dataset of weight 1 for the built-in grammar."""

    def __init__(self, entries: list[tuple[float, str, GrammarSpec]]) -> None:
        if not entries or sum(weight for weight, _, _ in entries) <= 0:
            raise ValueError("a data mixture needs at least one dataset with a positive weight")
        vocab = {spec.vocab_size for _, _, spec in entries}
        if len(vocab) != 1:
            raise ValueError(f"the datasets of one mixture must share a vocabulary, got sizes {sorted(vocab)}")
        total = sum(weight for weight, _, _ in entries)
        self.weights = np.array([weight / total for weight, _, _ in entries])
        self.names = [name for _, name, _ in entries]
        self.grammars = [MarkovGrammar(spec) for _, _, spec in entries]

    @classmethod
    def from_list(cls, path: str | os.PathLike[str]) -> "DataMixture":
        entries = []
        try:
            text = Path(path).read_text()
        except OSError as error:
            raise ValueError(f"{path}: cannot read the data-file list ({error.strerror})") from None
        for number, line in enumerate(text.splitlines(), 1):
            fields = line.split()
            if not fields or fields[0].startswith("#"):
                continue
            if len(fields) != 3:
                raise ValueError(f"{path}:{number}: expected 'weight prefix corpus'")
            entries.append((float(fields[0]), fields[1], read_dataset(fields[1])))
        return cls(entries)

    @classmethod
    def single(cls, spec: GrammarSpec) -> "DataMixture":
        return cls([(1.0, "grammar", spec)])

    @property
    def vocab_size(self) -> int:
        return self.grammars[0].spec.vocab_size

    def sample(self, rng: np.random.Generator, batch: int, length: int) -> np.ndarray:
        if len(self.grammars) == 1:
            return self.grammars[0].sample(rng, batch, length)
        counts = rng.multinomial(batch, self.weights)
        parts = [grammar.sample(rng, int(count), length) for grammar, count in zip(self.grammars, counts) if count]
        return rng.permutation(np.concatenate(parts))

    def describe(self) -> list[dict]:
        return [{"weight": float(weight), "prefix": name, "spec": asdict(grammar.spec),
                 "true_entropy": grammar.entropy_rate()}
                for weight, name, grammar in zip(self.weights, self.names, self.grammars)]
