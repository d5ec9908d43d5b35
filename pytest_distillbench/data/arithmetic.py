"""Math suite: arithmetic and short word problems answered by generating a number.

Prompts end where the answer starts (``"Q: 37+58="`` then ``"95"``); answers are integers
written without spaces, so lm-eval's exact match on the last number decides the score.
"""

from __future__ import annotations

import random

from pytest_distillbench.data.generator import Record, SplitSizes, TaskGenerator


def _equation(left: int, op: str, right: int) -> Record:
    value = {"+": left + right, "-": left - right, "*": left * right}[op]
    return {"prompt": f"Q: {left}{op}{right}=", "answer": str(value)}


def add_sub_1d2d(rng: random.Random) -> Record:
    """A two-digit and a one-digit number, added (either order) or subtracted (no negatives)."""
    big, small = rng.randint(10, 99), rng.randint(1, 9)
    form = rng.randrange(3)
    if form == 0:
        return _equation(big, "+", small)
    if form == 1:
        return _equation(small, "+", big)
    return _equation(big, "-", small)


def add_sub_2d(rng: random.Random) -> Record:
    """Two two-digit numbers; subtraction puts the larger first so answers are non-negative."""
    a, b = rng.randint(10, 99), rng.randint(10, 99)
    if rng.random() < 0.5:
        return _equation(a, "+", b)
    return _equation(max(a, b), "-", min(a, b))


def add_3d(rng: random.Random) -> Record:
    """Two three-digit numbers added: longer carry chains than add_sub_2d."""
    return _equation(rng.randint(100, 999), "+", rng.randint(100, 999))


def mul_1d2d(rng: random.Random) -> Record:
    """A one-digit number (2-9) times a two-digit number, in either order."""
    digit, number = rng.randint(2, 9), rng.randint(10, 99)
    if rng.random() < 0.5:
        return _equation(digit, "*", number)
    return _equation(number, "*", digit)


# name -> pronoun; short names keep prompts short for character-level models
PEOPLE = {"Ann": "She", "Bob": "He", "Cal": "He", "Dee": "She", "Eve": "She",
          "Gus": "He", "Liv": "She", "Max": "He", "Sam": "He", "Zoe": "She"}
OBJECTS = ("pens", "cards", "books", "coins", "stamps", "shells", "cups", "marbles")
GAIN_VERBS = ("buys", "finds", "gets", "wins", "makes")
LOSS_VERBS = ("gives away", "loses", "sells", "uses")


def _join_actions(actions: list[str]) -> str:
    if len(actions) == 1:
        return actions[0]
    return ", ".join(actions[:-1]) + " and " + actions[-1]


def word_problems(rng: random.Random) -> Record:
    """One to three gains or losses of single-digit amounts, never dropping below zero.

    ``"Ann has 5 pens. She buys 3 and gives away 2. How many pens now? A:"`` -> ``"6"``.
    """
    name = rng.choice(sorted(PEOPLE))
    thing = rng.choice(OBJECTS)
    start = count = rng.randint(1, 9)
    actions = []
    for _ in range(rng.randint(1, 3)):
        if count > 0 and rng.random() < 0.5:
            amount = rng.randint(1, min(count, 9))
            actions.append(f"{rng.choice(LOSS_VERBS)} {amount}")
            count -= amount
        else:
            amount = rng.randint(1, 9)
            actions.append(f"{rng.choice(GAIN_VERBS)} {amount}")
            count += amount
    prompt = (f"{name} has {start} {thing}. {PEOPLE[name]} {_join_actions(actions)}. "
              f"How many {thing} now? A:")
    return {"prompt": prompt, "answer": str(count)}


_SIZES = SplitSizes(test=200, validation=200, train=8000)
_WORDY_SIZES = SplitSizes(test=200, validation=200, train=6000)  # long prompts: fewer fit in 10 MB

TASKS = (
    TaskGenerator("math", "add_sub_1d2d", "Adding or subtracting a one-digit and a two-digit number",
                  1, "generation", add_sub_1d2d, _SIZES),
    TaskGenerator("math", "add_sub_2d", "Two-digit addition and subtraction",
                  2, "generation", add_sub_2d, _SIZES),
    TaskGenerator("math", "word_problems", "Word problems of one to three small gains and losses",
                  2, "generation", word_problems, _WORDY_SIZES),
    TaskGenerator("math", "add_3d", "Three-digit addition",
                  3, "generation", add_3d, _SIZES),
    TaskGenerator("math", "mul_1d2d", "A one-digit number times a two-digit number",
                  4, "generation", mul_1d2d, _SIZES),
)
