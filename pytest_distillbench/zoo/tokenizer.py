"""The zoo's tokenizer, in Hugging Face format: whole words for the bundled suites' frequent
words, one token per character for everything else.

Digits stay single characters, so worked arithmetic is written and read column by column, and
so do the random letters of ``sort_letters`` and any text outside the suites' vocabulary (no
input ever maps to ``<unk>`` while it is printable ASCII). The suites' frequent words (names,
comparatives, verbs, Python keywords) are one token each, with or without the space before
them, as GPT-2 writes them: a deduction such as "Cal is taller than Max" is then five tokens
a small model can attend between instead of 22 characters, and a training example is 34 tokens
on average instead of 57 characters. Saved with ``PreTrainedTokenizerFast`` so
``AutoTokenizer`` and lm-eval's HF backend load it offline.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

SPECIAL_TOKENS = ("<pad>", "<eos>", "<unk>")
PAD, EOS, UNK = SPECIAL_TOKENS
CHARACTERS = tuple(sorted(set(string.printable) - set("\x0b\x0c\r")))
INDENT = "    "  # one token for a level of Python indentation
WORD = re.compile(r"[A-Za-z]+")
MIN_WORD_COUNT = 100
# frequent_words() over the bundled train splits (a test checks they still agree). Frozen here
# rather than derived at load time: the tokenizer is part of every checkpoint trained with it.
WORDS = (
    "Add", "Ann", "Bob", "Cal", "Cup", "Dee", "Eve", "Gus", "He", "How", "Liv", "Max", "Multiply",
    "Return", "Sam", "She", "Sort", "Subtract", "Swap", "Where", "Which", "Who", "Zoe", "above",
    "add", "and", "apply", "away", "ball", "below", "books", "buys", "by", "calc", "cards", "coin",
    "coins", "compute", "cup", "cups", "def", "each", "faster", "fastest", "finds", "for", "from",
    "gets", "gives", "greater", "has", "if", "in", "is", "item", "items", "key", "larger", "less",
    "loses", "makes", "many", "marbles", "minus", "multiply", "now", "nums", "of", "older",
    "oldest", "or", "pens", "plus", "return", "ring", "sells", "shells", "shorter", "shortest",
    "slower", "slowest", "smaller", "solve", "stamps", "step", "subtract", "sum", "taller",
    "tallest", "than", "the", "then", "times", "to", "transform", "uses", "vals", "wins", "xs",
    "younger", "youngest",
)


def frequent_words(texts: Iterable[str], min_count: int = MIN_WORD_COUNT) -> tuple[str, ...]:
    """The letter runs of two or more letters that occur at least ``min_count`` times, sorted.

    Runs of random letters (``sort_letters``) are each rare, so they stay characters."""
    counts: Counter[str] = Counter()
    for text in texts:
        counts.update(WORD.findall(text))
    return tuple(sorted(w for w, n in counts.items() if n >= min_count and len(w) >= 2))


def vocabulary(words: Iterable[str] = WORDS) -> tuple[str, ...]:
    """Every token in id order: specials, characters, the indent, then each word bare and with
    its leading space."""
    return SPECIAL_TOKENS + CHARACTERS + (INDENT,) + tuple(p + w for w in words for p in ("", " "))


def piece_pattern(words: Iterable[str] = WORDS) -> str:
    """A regex matching one token's text: a whole known word (not part of a longer letter run),
    optionally with the space before it; an indent; else a single character."""
    alternatives = "|".join(sorted(words, key=lambda w: (-len(w), w)))
    return rf"(?: |(?<![A-Za-z]))(?:{alternatives})(?![A-Za-z])|{INDENT}|[\s\S]"


def build_tokenizer(words: Iterable[str] = WORDS):
    """Return a ``PreTrainedTokenizerFast`` over :func:`vocabulary`."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = tuple(words)
    vocab = {token: i for i, token in enumerate(vocabulary(words))}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    # every piece the pattern isolates is in the vocabulary, so the word level model never misses
    core.pre_tokenizer = pre_tokenizers.Split(Regex(piece_pattern(words)), behavior="isolated")
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
