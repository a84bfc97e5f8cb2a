"""The text this example trains on and its tokenizer: tinylm's seeded grammar, one word per grammar token.

Grammar token t is the word `t05`-style `t<t:02d>` and token id t + 1; id 0 is `<|endoftext|>` (GPT-2's
end-of-text, which lm-eval puts before a rolling window). A word-level tokenizer (HuggingFace `tokenizers`)
maps one word to one id, so lm-eval's word perplexity is the per-token perplexity and its log is comparable
with the grammar's true entropy.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tinylm"))
from grammar import TEST_STREAM, TRAIN_STREAM, VALID_STREAM, GrammarSpec, MarkovGrammar, stream_rng  # noqa: E402

__all__ = ["TEST_STREAM", "TRAIN_STREAM", "VALID_STREAM", "GrammarSpec", "MarkovGrammar", "stream_rng",
           "EOT", "VOCAB_SIZE", "words", "build_tokenizer"]

EOT = "<|endoftext|>"
VOCAB_SIZE = GrammarSpec.vocab_size + 1  # the grammar's tokens and end-of-text


def words(tokens: np.ndarray) -> str:
    """Grammar tokens as the text lm-eval reads."""
    return " ".join(f"t{int(token):02d}" for token in tokens)


def build_tokenizer():
    """A GPT-2-style fast tokenizer over the grammar's words (built here: nothing is downloaded)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {EOT: 0, **{f"t{token:02d}": token + 1 for token in range(GrammarSpec.vocab_size)}}
    core = Tokenizer(models.WordLevel(vocab, unk_token=EOT))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    core.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces when decoding
    return PreTrainedTokenizerFast(tokenizer_object=core, eos_token=EOT, bos_token=EOT, unk_token=EOT,
                                   pad_token=EOT, model_max_length=1 << 20)
