"""Writes the two lm-evaluation-harness tasks this example evaluates on (tasks/): offline, from the grammar.

    python make_tasks.py        (the committed files are its output; it is deterministic)

- `grammar_ppl` (loglikelihood_rolling): 32 held-out passages of 63 words from the grammar's test stream.
  lm-eval's `word_perplexity` is per token here (one word, one token); its log is comparable with the
  grammar's true entropy (`python ../tinylm/grammar.py --entropy`).
- `grammar_next` (multiple_choice): a passage of 12 words, then the choice between the grammar's most likely next
  word and 3 words it almost never follows with; `acc` is how often the model prefers the likely one.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from vocab import TEST_STREAM, GrammarSpec, MarkovGrammar, stream_rng, words

HERE = Path(__file__).resolve().parent / "tasks"
PASSAGES, PASSAGE_WORDS = 32, 63
QUESTIONS, CONTEXT_WORDS, CHOICES = 64, 12, 4


def main() -> int:
    grammar = MarkovGrammar(GrammarSpec())
    passages = grammar.sample(stream_rng(TEST_STREAM, 0, 1), PASSAGES, PASSAGE_WORDS)
    HERE.mkdir(exist_ok=True)
    with open(HERE / "grammar_ppl.jsonl", "w") as out:
        for passage in passages:
            out.write(json.dumps({"text": words(passage)}) + "\n")
    rng = stream_rng(TEST_STREAM, 0, 2)
    contexts = grammar.sample(rng, QUESTIONS, CONTEXT_WORDS)
    with open(HERE / "grammar_next.jsonl", "w") as out:
        for context in contexts:
            probs = grammar.probs[tuple(context[-grammar.spec.order:])]
            likely = int(np.argmax(probs))
            rare = rng.choice(np.argsort(probs)[: grammar.spec.vocab_size - grammar.spec.branching], CHOICES - 1,
                              replace=False)
            choices = [likely, *map(int, rare)]
            order = rng.permutation(CHOICES)
            out.write(json.dumps({"context": words(context), "choices": [f"t{choices[i]:02d}" for i in order],
                                  "gold": int(np.flatnonzero(order == 0)[0])}) + "\n")
    print(f"wrote {HERE}/grammar_ppl.jsonl ({PASSAGES} passages) and grammar_next.jsonl ({QUESTIONS} questions)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
