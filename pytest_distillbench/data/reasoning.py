"""Reasoning suite: comparison, logical deduction and state tracking scored by log-likelihood,
plus letter sorting answered by generation.

Multiple-choice prompts end where ``" " + choice`` starts; choices are listed in a fixed
order (numeric or alphabetical) so their position gives nothing away.
"""

from __future__ import annotations

import itertools
import random

from pytest_distillbench.data.generator import Record, SplitSizes, TaskGenerator


def compare(rng: random.Random) -> Record:
    """``"Q: Which is larger, 47 or 52? A:"`` with choices ``["47", "52"]``."""
    a, b = rng.sample(range(1, 1000), 2)
    larger = rng.random() < 0.5
    word = "larger" if larger else "smaller"
    answer = max(a, b) if larger else min(a, b)
    choices = [str(a), str(b)]
    return {"prompt": f"Q: Which is {word}, {a} or {b}? A:", "choices": choices,
            "label": choices.index(str(answer))}


NAMES = ("Ann", "Bob", "Cal", "Dee", "Eve", "Gus", "Liv", "Max")
# (comparative for "more", comparative for "less", superlative of more, superlative of less)
SCALES = (
    ("taller", "shorter", "tallest", "shortest"),
    ("older", "younger", "oldest", "youngest"),
    ("faster", "slower", "fastest", "slowest"),
)


def ordering(rng: random.Random) -> Record:
    """Logical deduction over a chain of two to four people (one to three stated facts).

    The neighbouring pairs of a hidden ranking are stated in random order, each either as
    "X is taller than Y" or "Y is shorter than X"; the question asks for one end of the chain.
    """
    more, less, most, least = rng.choice(SCALES)
    ranking = rng.sample(NAMES, rng.choice((2, 3, 4)))  # ranking[0] has the most
    facts = []
    for high, low in itertools.pairwise(ranking):
        if rng.random() < 0.5:
            facts.append(f"{high} is {more} than {low}.")
        else:
            facts.append(f"{low} is {less} than {high}.")
    rng.shuffle(facts)
    ask_most = rng.random() < 0.5
    answer = ranking[0] if ask_most else ranking[-1]
    choices = sorted(ranking)
    prompt = " ".join(facts) + f" Who is {most if ask_most else least}? A:"
    return {"prompt": prompt, "choices": choices, "label": choices.index(answer)}


CUPS = 4
THINGS = ("ball", "coin", "ring", "key")


def tracking(rng: random.Random) -> Record:
    """Follow an object under one to three swaps of four cups.

    ``"A ball is in cup 2. Swap 1 2. Swap 2 4. Where is the ball? Cup"`` -> ``"4"``.
    """
    thing = rng.choice(THINGS)
    cup = start = rng.randint(1, CUPS)
    moves = []
    for _ in range(rng.randint(1, 3)):
        a, b = rng.sample(range(1, CUPS + 1), 2)
        moves.append(f"Swap {a} {b}.")
        if cup in (a, b):
            cup = b if cup == a else a
    choices = [str(c) for c in range(1, CUPS + 1)]
    prompt = f"A {thing} is in cup {start}. " + " ".join(moves) + f" Where is the {thing}? Cup"
    return {"prompt": prompt, "choices": choices, "label": choices.index(str(cup))}


LETTERS = "abcdefghijklmnopqrstuvwxyz"


def sort_letters(rng: random.Random) -> Record:
    """Three to five distinct letters, answered in alphabetical order: ``"Sort: dbca ->"``."""
    letters = rng.sample(LETTERS, rng.randint(3, 5))
    return {"prompt": f"Sort: {''.join(letters)} ->", "answer": "".join(sorted(letters))}


_MC_SIZES = SplitSizes(test=200, validation=200, train=5000)

TASKS = (
    TaskGenerator("reasoning", "compare", "Which of two numbers is larger or smaller",
                  1, "multiple_choice", compare, _MC_SIZES),
    TaskGenerator("reasoning", "sort_letters", "Sort three to five letters alphabetically",
                  2, "generation", sort_letters, SplitSizes(test=200, validation=200, train=8000)),
    TaskGenerator("reasoning", "ordering", "Who is at the end of a stated two- to four-person order",
                  3, "multiple_choice", ordering, _MC_SIZES),
    TaskGenerator("reasoning", "tracking", "Where an object ends up after one to three cup swaps",
                  3, "multiple_choice", tracking, _MC_SIZES),
)
