"""Binding drills: training-only one-line tasks whose body is the docstring's expression.

"Return count * 37 - limit." -> `return count * 37 - limit`: the argument names and constants of
the task are the code's, so the only way to predict the body is to copy them from the
signature and docstring. They exist to teach a tiny model that binding (which the task families
need everywhere: `range(len(samples) - 6 + 1)` for "6 consecutive elements of samples") in far
fewer tokens than the families teach it. Constants are drawn from wide ranges, so no value can
be memorised.

They are never evaluated and are not in `exercises.FAMILIES`: their forms (below) are none of
the families' bodies, so no drill is a variant of a held-out exercise (tests check it).
"""

from __future__ import annotations

import random

from phi_jax.curation.procedural.grammar import Task, WORDS, draw_ints, draw_names

_VERBS = ("compute", "get", "make", "find", "evaluate", "build", "produce")
_INT_FORMS = (  # (body expression over $a / $b with {k} {m}, arity, Python twin)
    ("$a * {k} - $b", 2, lambda k, m: lambda a, b: a * k - b),
    ("($a + $b) * {k}", 2, lambda k, m: lambda a, b: (a + b) * k),
    ("$a - $b * {k}", 2, lambda k, m: lambda a, b: a - b * k),
    ("{k} - $a * {m}", 1, lambda k, m: lambda a: k - a * m),
    ("$a // {k} - {m}", 1, lambda k, m: lambda a: a // k - m),
    ("abs($a - {k})", 1, lambda k, m: lambda a: abs(a - k)),
    ("max($a, {k}) + {m}", 1, lambda k, m: lambda a: max(a, k) + m),
    ("min($a, $b) - {k}", 2, lambda k, m: lambda a, b: min(a, b) - k),
    ("$a * $b - {k}", 2, lambda k, m: lambda a, b: a * b - k),
    ("$a * {k} == $b", 2, lambda k, m: lambda a, b: a * k == b),
)
_TEXT_FORMS = (  # over a string $a
    ("$a[:{k}]", lambda k, m: lambda s: s[:k], "str"),
    ("$a[{k}:]", lambda k, m: lambda s: s[k:], "str"),
    ("$a * {m}", lambda k, m: lambda s: s * m, "str"),
    ("len($a) * {m} - {k}", lambda k, m: lambda s: len(s) * m - k, "int"),
    ("$a + '{w}'", None, "str"),
)
_LIST_FORMS = (  # over a list of ints $a
    ("$a[:{k}]", lambda k, m: lambda xs: xs[:k], "list[int]"),
    ("sum($a) * {m} + {k}", lambda k, m: lambda xs: sum(xs) * m + k, "int"),
    ("len($a) + {k}", lambda k, m: lambda xs: len(xs) + k, "int"),
    ("$a + [{k}, {m}]", lambda k, m: lambda xs: xs + [k, m], "list[int]"),
)


def _task(expr: str, args, returns: str, ref, inputs, params, rng) -> Task:
  return Task(draw_names(rng, _VERBS, ("value", "result", "answer", "output", "quantity")),
              args, returns, f"Return {expr}.", f"    return {expr}\n", ref, inputs, params)


def drill_int(rng: random.Random) -> Task:
  form, arity, make = rng.choice(_INT_FORMS)
  k, m = rng.randint(2, 99), rng.randint(1, 99)
  expr = form.format(k=k, m=m)
  args = [("int", "int")] * arity
  inputs = [tuple(rng.randint(-50, 99) for _ in range(arity)) for _ in range(4)]
  returns = "bool" if "==" in form else "int"
  return _task(expr, args, returns, make(k, m), inputs, ("int", form, k, m), rng)


def drill_text(rng: random.Random) -> Task:
  form, make, returns = rng.choice(_TEXT_FORMS)
  k, m, w = rng.randint(1, 9), rng.randint(2, 5), rng.choice(WORDS)
  expr = form.format(k=k, m=m, w=w)
  ref = make(k, m) if make else (lambda s: s + w)
  inputs = [(" ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 3))),) for _ in range(3)]
  return _task(expr, [("text", "str")], returns, ref, inputs + [("",)], ("text", form, k, m, w),
               rng)


def drill_list(rng: random.Random) -> Task:
  form, make, returns = rng.choice(_LIST_FORMS)
  k, m = rng.randint(1, 60), rng.randint(2, 9)
  if form == "$a[:{k}]":
    k = rng.randint(1, 6)
  expr = form.format(k=k, m=m)
  inputs = [(draw_ints(rng),) for _ in range(3)] + [([],)]
  return _task(expr, [("ints", "list[int]")], returns, make(k, m), inputs, ("list", form, k, m),
               rng)


DRILLS = {"drill_int": drill_int, "drill_text": drill_text, "drill_list": drill_list}
