"""Math suite: arithmetic and short word problems answered by generating a number.

Prompts end where the answer starts (``"Q: 37+58="``). Each record also carries a worked
``solution`` that ends in the answer (``"7+8=15, 3+5+1=9 -> 95"``): column arithmetic from
the units up, one single-digit step at a time, the way a person writes it out. Models are
trained on the solution (a short chain of thought, as GSM8K's reference answers are written),
and scored, as GSM8K is, by exact match of the last number they write against ``answer``.
"""

from __future__ import annotations

import random

from pytest_distillbench.data.generator import Record, SplitSizes, TaskGenerator

ANSWER_MARK = " -> "  # separates the worked steps from the final answer


def _digits(value: int) -> list[int]:
    """Decimal digits of a non-negative integer, units first."""
    return [int(d) for d in reversed(str(value))]


def _finish(steps: list[str], value: int) -> str:
    return ", ".join(steps) + ANSWER_MARK + str(value)


def column_addition(left: int, right: int) -> str:
    """``37+58`` -> ``"7+8=15, 3+5+1=9 -> 95"``: a missing digit is written as 0 and a carry
    as ``+1``."""
    a, b = _digits(left), _digits(right)
    steps, carry = [], 0
    for i in range(max(len(a), len(b))):
        x, y = (a[i] if i < len(a) else 0), (b[i] if i < len(b) else 0)
        total = x + y + carry
        steps.append(f"{x}+{y}{'+1' if carry else ''}={total}")
        carry = total // 10
    return _finish(steps, left + right)


def column_subtraction(left: int, right: int) -> str:
    """``83-6`` -> ``"13-6=7, 8-0-1=7 -> 77"`` (``left >= right``): a borrowed ten is written
    in front of the digit and paid back as ``-1`` in the next column."""
    a, b = _digits(left), _digits(right)
    steps, borrow = [], 0
    for i, x in enumerate(a):
        y = b[i] if i < len(b) else 0
        paid = "-1" if borrow else ""
        if x - borrow < y:
            steps.append(f"1{x}-{y}{paid}={10 + x - y - borrow}")
            borrow = 1
        else:
            steps.append(f"{x}-{y}{paid}={x - y - borrow}")
            borrow = 0
    return _finish(steps, left - right)


def column_multiplication(number: int, digit: int) -> str:
    """``43*5`` -> ``"3*5=15, 4*5=20, 20+1=21 -> 215"``: each digit times the one-digit factor,
    then the carried tens added as a step of its own."""
    steps, carry = [], 0
    for x in _digits(number):
        product = x * digit
        steps.append(f"{x}*{digit}={product}")
        if carry:
            steps.append(f"{product}+{carry}={product + carry}")
        carry = (product + carry) // 10
    return _finish(steps, number * digit)


def _equation(left: int, op: str, right: int) -> Record:
    if op == "+":
        value, solution = left + right, column_addition(left, right)
    elif op == "-":
        value, solution = left - right, column_subtraction(left, right)
    else:
        number, digit = (left, right) if left >= 10 else (right, left)
        value, solution = left * right, column_multiplication(number, digit)
    return {"prompt": f"Q: {left}{op}{right}=", "answer": str(value), "solution": solution}


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


# name -> pronoun; short names keep prompts short for small models
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

    ``"Ann has 5 pens. She buys 3 and gives away 2. How many pens now? A:"`` -> ``"6"``, worked
    as ``"5+3=8, 8-2=6 -> 6"``: one step per action, in the order the story tells them.
    """
    name = rng.choice(sorted(PEOPLE))
    thing = rng.choice(OBJECTS)
    start = count = rng.randint(1, 9)
    actions, steps = [], []
    for _ in range(rng.randint(1, 3)):
        if count > 0 and rng.random() < 0.5:
            amount = rng.randint(1, min(count, 9))
            actions.append(f"{rng.choice(LOSS_VERBS)} {amount}")
            steps.append(f"{count}-{amount}={count - amount}")
            count -= amount
        else:
            amount = rng.randint(1, 9)
            actions.append(f"{rng.choice(GAIN_VERBS)} {amount}")
            steps.append(f"{count}+{amount}={count + amount}")
            count += amount
    prompt = (f"{name} has {start} {thing}. {PEOPLE[name]} {_join_actions(actions)}. "
              f"How many {thing} now? A:")
    return {"prompt": prompt, "answer": str(count), "solution": " " + _finish(steps, count)}


_SIZES = SplitSizes(test=200, validation=200, train=8000)
_WORDY_SIZES = SplitSizes(test=200, validation=200, train=6000)  # long prompts: fewer fit in 10 MB

TASKS = (
    TaskGenerator("math", "add_sub_1d2d", "Adding or subtracting a one-digit and a two-digit number",
                  1, "generation", add_sub_1d2d, _SIZES),
    TaskGenerator("math", "add_sub_2d", "Two-digit addition and subtraction",
                  2, "generation", add_sub_2d, _SIZES),
    TaskGenerator("math", "word_problems", "Word problems of one to three small gains and losses",
                  3, "generation", word_problems, _WORDY_SIZES),
    TaskGenerator("math", "add_3d", "Three-digit addition",
                  3, "generation", add_3d, _SIZES),
    TaskGenerator("math", "mul_1d2d", "A one-digit number times a two-digit number",
                  2, "generation", mul_1d2d, _SIZES),
)
