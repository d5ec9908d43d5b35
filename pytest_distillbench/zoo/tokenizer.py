"""A character-level tokenizer in Hugging Face format.

Every printable ASCII character is one token, so prompts of arithmetic, short reasoning and
Python code need no merges and tiny models learn them quickly. Saved with
``PreTrainedTokenizerFast`` so ``AutoTokenizer`` and lm-eval's HF backend load it offline.
"""

from __future__ import annotations

import string
from pathlib import Path

SPECIAL_TOKENS = ("<pad>", "<eos>", "<unk>")
PAD, EOS, UNK = SPECIAL_TOKENS
CHARACTERS = tuple(sorted(set(string.printable) - set("\x0b\x0c\r")))


def build_tokenizer():
    """Return a ``PreTrainedTokenizerFast`` with one token per printable character."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {token: i for i, token in enumerate(SPECIAL_TOKENS + CHARACTERS)}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    # "." would not match "\n", leaving runs of newlines as one unknown piece
    core.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    core.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(
        tokenizer_object=core,
        pad_token=PAD,
        eos_token=EOS,
        bos_token=EOS,
        unk_token=UNK,
        model_max_length=1024,
        clean_up_tokenization_spaces=False,
    )


def save_tokenizer(directory: str | Path) -> None:
    build_tokenizer().save_pretrained(str(directory))
