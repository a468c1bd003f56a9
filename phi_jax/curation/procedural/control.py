"""Conditionals, loops and nested-data task families.

Each family is a function `rng -> Task` (see `grammar.Task`)."""

from __future__ import annotations


from phi_jax.curation.procedural.grammar import Task, draw_names

def grade(rng):
  cuts = sorted(rng.sample(range(10, 100, 5), 3), reverse=True)
  labels = rng.choice([("A", "B", "C", "F"), ("high", "medium", "low", "none"),
                       ("gold", "silver", "bronze", "none"), ("great", "good", "fair", "poor")])
  body = "".join(f"    {'if' if i == 0 else 'elif'} $a >= {c}:\n        return '{labels[i]}'\n"
                 for i, c in enumerate(cuts)) + f"    return '{labels[3]}'\n"
  ref = lambda x: next((labels[i] for i, c in enumerate(cuts) if x >= c), labels[3])
  text = ", ".join(f"'{labels[i]}' if $a >= {c}" for i, c in enumerate(cuts))
  return Task(draw_names(rng, ["grade", "rate", "classify", "label"], ["score", "result", "level"]),
               [("int", "int")], "str", f"Return {text} (checked in that order), else "
               f"'{labels[3]}'.", body, ref,
               [(c,) for c in cuts] + [(cuts[-1] - 1,), (rng.randint(0, 100),)],
               (tuple(cuts), labels))


def piecewise(rng):
  a = rng.randint(-5, 5)
  b = a + rng.randint(3, 10)
  p, q, r = rng.randint(2, 5), rng.randint(1, 9), rng.randint(10, 40)
  body = (f"    if $a < {a}:\n        return $a * {p}\n    elif $a < {b}:\n"
          f"        return $a + {q}\n"
          f"    else:\n        return {r} - $a\n")
  ref = lambda x: x * p if x < a else x + q if x < b else r - x
  return Task(draw_names(rng, ["piecewise", "compute", "adjust"], ["value", "rule", "response"]),
               [("int", "int")], "int",
               f"Return $a * {p} if $a < {a}; $a + {q} if {a} <= $a < {b}; otherwise {r} - $a.",
               body, ref, [(a - 1,), (a,), (b - 1,), (b,), (rng.randint(-20, 20),)],
               (a, b, p, q, r))


def loop_until(rng):
  k = rng.randint(2, 15)
  mode = rng.choice(["halve_below", "collatz", "to_zero", "subtract"])
  body, ref, text = {
      "halve_below": (f"    steps = 0\n    while $a >= {k}:\n        $a //= 2\n        steps += 1\n"
                      "    return steps\n", lambda n: _steps(n, lambda v: v >= k, lambda v: v // 2),
                      f"how many times $a must be floor-divided by 2 until it is less than {k}"),
      "collatz": ("    steps = 0\n    while $a != 1:\n"
                  "        $a = $a // 2 if $a % 2 == 0 else 3 * $a + 1\n"
                  "        steps += 1\n    return steps\n",
                  lambda n: _steps(n, lambda v: v != 1,
                                   lambda v: v // 2 if v % 2 == 0 else 3 * v + 1),
                  "the number of Collatz steps (halve if even, else 3n + 1) for $a (>= 1) to "
                  "reach 1"),
      "to_zero": ("    steps = 0\n    while $a > 0:\n"
                  "        $a = $a // 2 if $a % 2 == 0 else $a - 1\n"
                  "        steps += 1\n    return steps\n",
                  lambda n: _steps(n, lambda v: v > 0, lambda v: v // 2 if v % 2 == 0 else v - 1),
                  "the number of steps to reduce $a to 0, halving it when even and subtracting 1 "
                  "when odd"),
      "subtract": (f"    steps = 0\n    while $a >= {k}:\n        $a -= {k}\n        steps += 1\n"
                   "    return steps\n", lambda n: _steps(n, lambda v: v >= k, lambda v: v - k),
                   f"how many times {k} can be subtracted from $a before it drops below {k}"),
  }[mode]
  return Task(draw_names(rng, ["count", "num", "steps"], ["steps", "iterations", "rounds"]),
               [("int", "int")], "int", f"Return {text}.", body, ref,
               [(1,)] + [(rng.randint(1, 200),) for _ in range(3)] + [(27,)],
               (mode, k if mode in ("halve_below", "subtract") else 0))


def _steps(n, cond, update):
  steps = 0
  while cond(n):
    n, steps = update(n), steps + 1
  return steps


def matrix(rng):
  mode = rng.choice(["row_sums", "col_sums", "transpose", "diagonal", "row_max", "flatten"])
  body, ref, ret, text = {
      "row_sums": ("    return [sum(row) for row in $a]\n", lambda g: [sum(r) for r in g],
                   "list[int]", "the sum of each row of $a"),
      "col_sums": ("    if not $a:\n        return []\n"
                   "    return [sum(row[j] for row in $a) for j in range(len($a[0]))]\n",
                   lambda g: [sum(c) for c in zip(*g)] if g else [], "list[int]",
                   "the sum of each column of the rectangular grid $a ([] for an empty grid)"),
      "transpose": ("    if not $a:\n        return []\n"
                    "    return [[row[j] for row in $a] for j in range(len($a[0]))]\n",
                    lambda g: [list(c) for c in zip(*g)] if g else [], "list[list[int]]",
                    "the transpose of the rectangular grid $a ([] for an empty grid)"),
      "diagonal": ("    total = 0\n    for i in range(min(len($a), len($a[0]) if $a else 0)):\n"
                   "        total += $a[i][i]\n    return total\n",
                   lambda g: sum(g[i][i] for i in range(min(len(g), len(g[0]) if g else 0))),
                   "int", "the sum of the main-diagonal elements $a[i][i] of $a"),
      "row_max": ("    return [max(row) for row in $a]\n", lambda g: [max(r) for r in g],
                  "list[int]", "the largest element of each row of $a (rows are non-empty)"),
      "flatten": ("    out = []\n    for row in $a:\n        out.extend(row)\n    return out\n",
                  lambda g: [x for r in g for x in r], "list[int]",
                  "all elements of $a row by row, as one flat list"),
  }[mode]
  def draw():
    rows, cols = rng.randint(1, 4), rng.randint(1, 4)
    return [[rng.randint(-5, 9) for _ in range(cols)] for _ in range(rows)]
  inputs = [(draw(),) for _ in range(4)] + ([([],)] if mode in ("col_sums", "transpose",
                                                                "diagonal", "flatten") else [])
  return Task(draw_names(rng, ["grid", "matrix", "compute"], [mode, "table", "rows"]),
               [("grid", "list[list[int]]")], ret, f"Return {text}.", body, ref, inputs, (mode,))
