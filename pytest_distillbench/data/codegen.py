"""Code suite: HumanEval-style function synthesis from a one-line docstring.

Each generator picks the operation as Python values first, then renders the docstring, the
canonical body and the asserts from them; the expected values in ``check`` are computed from
the operation itself, never by running the canonical source.
"""

from __future__ import annotations

import copy
import operator
import random
from collections.abc import Callable
from typing import Any

from pytest_distillbench.data.generator import Record, SplitSizes, TaskGenerator

FUNCTION_NAMES = ("f", "g", "calc", "solve", "compute", "apply", "step", "transform")
NUMBER_ARGS = ("x", "n", "a", "k")
LIST_ARGS = ("xs", "nums", "vals", "items")

# symbol -> the function it denotes
OPERATORS: dict[str, Callable[[int, int], int]] = {
    "+": operator.add, "-": operator.sub, "*": operator.mul,
    "//": operator.floordiv, "%": operator.mod,
}


def _record(name: str, arg: str, doc: str, body: list[str], cases: list[tuple[Any, Any]]) -> Record:
    prompt = f'def {name}({arg}):\n    """{doc}"""\n'
    asserts = "".join(f"    assert candidate({given!r}) == {expected!r}\n" for given, expected in cases)
    return {
        "prompt": prompt,
        "canonical_solution": "".join(f"    {line}\n" for line in body),
        "test": "def check(candidate):\n" + asserts,
        "entry_point": name,
    }


def problem_key(record: Record) -> str:
    """The problem without its function name: renaming a function does not make a new task."""
    return record["prompt"].split("(", 1)[1]


def _number_inputs(rng: random.Random) -> list[int]:
    return rng.sample(range(-5, 30), 4)


def _telling_cases(rng: random.Random, draw_inputs: Callable[[random.Random], list[Any]],
                   fn: Callable[[Any], Any], tries: int = 100) -> list[tuple[Any, Any]]:
    """Draw inputs until the expected outputs tell the task apart from trivial answers.

    The outputs must not all be equal (or a constant would pass) and must not all equal their
    inputs (or ``return x`` would pass).
    """
    for _ in range(tries):
        cases = [(given, fn(copy.deepcopy(given))) for given in draw_inputs(rng)]
        if len({repr(out) for _, out in cases}) > 1 and any(out != given for given, out in cases):
            return cases
    raise ValueError(f"no telling test inputs found in {tries} draws; the operation is degenerate")


ARITH_PHRASES = {
    "+": "Return {x} plus {k}.", "-": "Return {x} minus {k}.", "*": "Return {x} times {k}.",
    "//": "Return {x} divided by {k}, rounded down.",
    "%": "Return the remainder of {x} divided by {k}.",
}


def code_arith(rng: random.Random) -> Record:
    """One operation between the argument and a constant: ``return x + 3``.

    ``+ - *`` also appear with the constant first (``return 7 - x``); ``//`` and ``%`` only
    divide by the constant, so no input divides by zero.
    """
    arg, symbol = rng.choice(NUMBER_ARGS), rng.choice(sorted(OPERATORS))
    # small divisors keep // and % from returning the input unchanged on most test inputs
    k = rng.randint(2, 9) if symbol in ("//", "%") else rng.randint(2, 50)
    constant_first = symbol in "+-*" and rng.random() < 0.4
    func = OPERATORS[symbol]
    if constant_first:
        doc = ARITH_PHRASES[symbol].format(x=k, k=arg)
        body = [f"return {k} {symbol} {arg}"]
        cases = _telling_cases(rng, _number_inputs, lambda x: func(k, x))
    else:
        doc = ARITH_PHRASES[symbol].format(x=arg, k=k)
        body = [f"return {arg} {symbol} {k}"]
        cases = _telling_cases(rng, _number_inputs, lambda x: func(x, k))
    return _record(rng.choice(FUNCTION_NAMES), arg, doc, body, cases)


# symbol -> (first step with the argument named, later step on the running value)
STEP_PHRASES = {
    "+": ("Add {k} to {x}", "add {k}"),
    "-": ("Subtract {k} from {x}", "subtract {k}"),
    "*": ("Multiply {x} by {k}", "multiply by {k}"),
}


def code_compose(rng: random.Random) -> Record:
    """Two steps through a temporary: ``t = x + 3`` then ``return t * 2``."""
    arg = rng.choice(NUMBER_ARGS)
    (s1, k1), (s2, k2) = [(rng.choice("+-*"), rng.randint(2, 9)) for _ in range(2)]
    while {s1, s2} == {"+", "-"} and k1 == k2:  # adding then removing k is the identity
        s2, k2 = rng.choice("+-*"), rng.randint(2, 9)
    doc = STEP_PHRASES[s1][0].format(k=k1, x=arg) + ", then " + STEP_PHRASES[s2][1].format(k=k2) + "."
    body = [f"t = {arg} {s1} {k1}", f"return t {s2} {k2}"]
    cases = _telling_cases(rng, _number_inputs, lambda x: OPERATORS[s2](OPERATORS[s1](x, k1), k2))
    return _record(rng.choice(FUNCTION_NAMES), arg, doc, body, cases)


def _lists(rng: random.Random, nonempty: bool) -> list[list[int]]:
    """Four small lists; the empty list is included where the operation allows it."""
    lists = [[rng.randint(0, 20) for _ in range(rng.randint(1, 6))] for _ in range(4)]
    if not nonempty:
        lists[rng.randrange(4)] = []
    return lists


COMPARE = {">": ("greater than", "above", operator.gt), "<": ("less than", "below", operator.lt)}
MAPS = {"+": ("plus", operator.add), "*": ("times", operator.mul)}


def code_lists(rng: random.Random) -> Record:
    """Reductions, filters and maps over a list of integers, each a one-line body."""
    # items are 0..20: constants 2..18 keep filters from keeping all or nothing every time,
    # filtered sums from always being 0, and maps from being the identity
    arg, k = rng.choice(LIST_ARGS), rng.randint(2, 18)
    family = rng.randrange(5)
    fn: Callable[[list[int]], Any]
    nonempty = False
    if family == 0:  # a whole-list reduction
        word, builtin = rng.choice((("sum", sum), ("largest item", max), ("smallest item", min)))
        nonempty = builtin is not sum
        doc, body, fn = f"Return the {word} of {arg}.", f"return {builtin.__name__}({arg})", builtin
    elif family == 1:  # filter
        symbol = rng.choice(sorted(COMPARE))
        words, _, test = COMPARE[symbol]
        doc = f"Return the items of {arg} {words} {k}."
        body = f"return [v for v in {arg} if v {symbol} {k}]"
        fn = lambda xs: [v for v in xs if test(v, k)]  # noqa: E731
    elif family == 2:  # map
        symbol = rng.choice(sorted(MAPS))
        word, func = MAPS[symbol]
        doc, body = f"Return each item of {arg} {word} {k}.", f"return [v {symbol} {k} for v in {arg}]"
        fn = lambda xs: [func(v, k) for v in xs]  # noqa: E731
    elif family == 3:  # counting or a filtered sum
        if rng.random() < 0.5:
            doc, body = f"Return how many items of {arg} equal {k}.", f"return {arg}.count({k})"
            fn = lambda xs: sum(1 for v in xs if v == k)  # noqa: E731
        else:
            symbol = rng.choice(sorted(COMPARE))
            words, _, test = COMPARE[symbol]
            doc = f"Return the sum of the items of {arg} {words} {k}."
            body = f"return sum(v for v in {arg} if v {symbol} {k})"
            fn = lambda xs: sum(v for v in xs if test(v, k))  # noqa: E731
    else:  # filter then map
        symbol, m_symbol = rng.choice(sorted(COMPARE)), rng.choice(sorted(MAPS))
        _, where, test = COMPARE[symbol]
        word, func = MAPS[m_symbol]
        factor = rng.randint(2, 9)
        doc = f"Return each item of {arg} {where} {k}, {word} {factor}."
        body = f"return [v {m_symbol} {factor} for v in {arg} if v {symbol} {k}]"
        fn = lambda xs: [func(v, factor) for v in xs if test(v, k)]  # noqa: E731
    cases = _telling_cases(rng, lambda r: _lists(r, nonempty), fn)
    return _record(rng.choice(FUNCTION_NAMES), arg, doc, [body], cases)


_SIZES = SplitSizes(test=100, validation=100, train=2500)

TASKS = (
    TaskGenerator("code", "code_arith", "One arithmetic operation with a constant",
                  1, "code", code_arith, _SIZES, key=problem_key),
    TaskGenerator("code", "code_compose", "Two arithmetic steps through a temporary variable",
                  2, "code", code_compose, _SIZES, key=problem_key),
    TaskGenerator("code", "code_lists", "Sums, filters, maps and counts over a list",
                  3, "code", code_lists, _SIZES, key=problem_key),
)
