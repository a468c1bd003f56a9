"""Arithmetic and digit task families.

Each family is a function `rng -> Task` (see `grammar.Task`)."""

from __future__ import annotations

import math

from phi_jax.curation.procedural.grammar import Task, WORDS, list_inputs, draw_names, poly_text

def arith_linear(rng):
  a, b = rng.randint(2, 12), rng.randint(1, 30)
  form = rng.choice(["ax+b", "ax-b", "(x+a)*b", "x*x+a", "(x-b)//a", "x%a+b"])
  spec = {"ax+b": (f"$a * {a} + {b}", lambda x: x * a + b, f"{a} times $a plus {b}"),
          "ax-b": (f"$a * {a} - {b}", lambda x: x * a - b, f"{a} times $a minus {b}"),
          "(x+a)*b": (f"($a + {a}) * {b}", lambda x: (x + a) * b,
                      f"$a plus {a}, multiplied by {b}"),
          "x*x+a": (f"$a * $a + {a}", lambda x: x * x + a, f"the square of $a plus {a}"),
          "(x-b)//a": (f"($a - {b}) // {a}", lambda x: (x - b) // a,
                       f"$a minus {b}, floor-divided by {a}"),
          "x%a+b": (f"$a % {a} + {b}", lambda x: x % a + b, f"the remainder of $a divided by {a}, "
                    f"plus {b}")}[form]
  return Task(draw_names(rng, ["compute", "calc", "evaluate", "get", "apply"],
                      ["score", "value", "result", "formula", "price", "offset", "total"]),
               [("int", "int")], "int", f"Return {spec[2]}.", f"    return {spec[0]}\n", spec[1],
               [(rng.randint(-30, 50),) for _ in range(4)], (form, a, b))


def arith_poly(rng):
  c = [rng.randint(-5, 5) for _ in range(3)]
  c[2] = c[2] or 1
  return Task(draw_names(rng, ["evaluate", "compute", "eval"],
                      ["poly", "curve", "quadratic", "parabola", "polynomial"]),
               [("int", "int")], "int",
               f"Evaluate the polynomial {poly_text(c[::-1], '$a', '**')} and return the result.",
               f"    return {poly_text(c[::-1], '$a', ' ** ')}\n",
               lambda x: c[2] * x**2 + c[1] * x + c[0],
               [(rng.randint(-10, 10),) for _ in range(4)], tuple(c))


def clamp(rng):
  lo = rng.randint(-20, 10)
  hi = lo + rng.randint(5, 40)
  body = (f"    if $a < {lo}:\n        return {lo}\n    if $a > {hi}:\n        return {hi}\n"
          "    return $a\n") if rng.random() < 0.5 else f"    return max({lo}, min({hi}, $a))\n"
  return Task(draw_names(rng, ["clamp", "limit", "bound", "restrict"],
                      ["value", "reading", "level", "input", "speed"]),
               [("int", "int")], "int",
               f"Clamp $a to the range [{lo}, {hi}]: return {lo} if it is smaller, {hi} if it is "
               "larger, and $a itself otherwise.", body, lambda x: max(lo, min(hi, x)),
               [(lo - 3,), (hi + 7,), (rng.randint(lo, hi),), (lo,)], (lo, hi))


def digits(rng):
  k = rng.randint(1, 8)
  mode = rng.choice(["sum", "product", "even", "greater", "largest", "reverse"])
  spec = {
      "sum": ("the sum of the decimal digits of $a (ignore the sign)",
              "    total = 0\n    while n > 0:\n        total += n % 10\n        n //= 10\n"
              "    return total\n", lambda n: sum(map(int, str(n)))),
      "product": ("the product of the decimal digits of $a (ignore the sign)",
                  "    total = 1\n    while True:\n        total *= n % 10\n        n //= 10\n"
                  "        if n == 0:\n            return total\n",
                  lambda n: math.prod(map(int, str(n)))),
      "even": ("how many decimal digits of $a are even (ignore the sign)",
               "    count = 0\n    for ch in str(n):\n        if int(ch) % 2 == 0:\n"
               "            count += 1\n    return count\n",
               lambda n: sum(int(ch) % 2 == 0 for ch in str(n))),
      "greater": (f"how many decimal digits of $a are greater than {k} (ignore the sign)",
                  f"    return sum(1 for ch in str(n) if int(ch) > {k})\n",
                  lambda n: sum(int(ch) > k for ch in str(n))),
      "largest": ("the largest decimal digit of $a (ignore the sign)",
                  "    return max(int(ch) for ch in str(n))\n",
                  lambda n: max(map(int, str(n)))),
      "reverse": ("the number whose digits are those of $a in reverse order (ignore the sign; "
                  "leading zeros vanish)", "    return int(str(n)[::-1])\n",
                  lambda n: int(str(n)[::-1])),
  }[mode]
  verbs, objects = {"sum": (["sum", "add"], ["digits", "of_digits"]),
                    "product": (["multiply", "product"], ["digits", "of_digits"]),
                    "even": (["count", "num"], ["even_digits", "even_figures"]),
                    "greater": (["count", "num"], ["large_digits", "big_digits"]),
                    "largest": (["max", "largest", "top"], ["digit", "figure"]),
                    "reverse": (["reverse", "flip", "mirror"], ["digits", "number"])}[mode]
  return Task(draw_names(rng, verbs, objects),
               [("int", "int")], "int", f"Return {spec[0]}.",
               "    n = abs($a)\n" + spec[1], lambda x: spec[2](abs(x)),
               [(rng.randint(0, 99999),), (-rng.randint(10, 9999),), (rng.randint(0, 9),),
                (rng.randint(100, 10**7),)], (mode, k if mode == "greater" else 0))


def divisible(rng):
  a, b = rng.sample(range(2, 20), 2)
  mode = rng.choice(["and", "or", "only_first", "neither"])
  cond, ref, text = {
      "and": (f"$a % {a} == 0 and $a % {b} == 0", lambda n: n % a == 0 and n % b == 0,
              f"divisible by both {a} and {b}"),
      "or": (f"$a % {a} == 0 or $a % {b} == 0", lambda n: n % a == 0 or n % b == 0,
             f"divisible by {a} or by {b} (or both)"),
      "only_first": (f"$a % {a} == 0 and $a % {b} != 0", lambda n: n % a == 0 and n % b != 0,
                     f"divisible by {a} but not by {b}"),
      "neither": (f"$a % {a} != 0 and $a % {b} != 0", lambda n: n % a != 0 and n % b != 0,
                  f"divisible by neither {a} nor {b}")}[mode]
  return Task(draw_names(rng,
                         ["is", "check", "test"], ["divisible", "multiple", "special", "valid"]),
               [("int", "int")], "bool", f"Return True if $a is {text}, else False.",
               f"    return {cond}\n", ref,
               [(a * b * rng.randint(1, 5),), (a * rng.randint(1, 9),), (b * rng.randint(1, 9),),
                (a * b + 1,), (rng.randint(1, 200),)], (mode, a, b))


def fizzbuzz(rng):
  a, b = rng.sample(range(2, 13), 2)
  w1, w2 = (w.capitalize() for w in rng.sample(WORDS, 2))
  body = (f"    if $a % {a} == 0 and $a % {b} == 0:\n        return '{w1}{w2}'\n"
          f"    if $a % {a} == 0:\n        return '{w1}'\n    if $a % {b} == 0:\n"
          f"        return '{w2}'\n    return str($a)\n")
  ref = lambda n: (w1 + w2 if n % a == 0 and n % b == 0 else w1 if n % a == 0
                   else w2 if n % b == 0 else str(n))
  return Task(draw_names(rng,
                         ["fizz", "say", "label", "speak"], ["buzz", "number", "word", "turn"]),
               [("int", "int")], "str",
               f"Return '{w1}{w2}' if $a is divisible by both {a} and {b}, '{w1}' if only by {a}, "
               f"'{w2}' if only by {b}, and otherwise $a as a string.", body, ref,
               [(a * b,), (a,), (b,), (a * b + 1,), (rng.randint(1, 100),)], (a, b, w1, w2))


def range_sum(rng):
  k = rng.randint(2, 15)
  mode = rng.choice(["multiples", "squares", "odd", "not_multiples"])
  pred, ref_pred, text = {
      "multiples": (f"i % {k} == 0", lambda i: i % k == 0, f"the multiples of {k}"),
      "squares": ("True", lambda i: True, "the squares of the integers"),
      "odd": ("i % 2 == 1", lambda i: i % 2 == 1, "the odd integers"),
      "not_multiples": (f"i % {k} != 0", lambda i: i % k != 0,
                        f"the integers not divisible by {k}"),
  }[mode]
  term = "i * i" if mode == "squares" else "i"
  body = (f"    total = 0\n    for i in range(1, $a + 1):\n        if {pred}:\n"
          f"            total += {term}\n    return total\n").replace("        if True:\n    ", "")
  return Task(draw_names(rng, ["sum", "total", "add_up", "accumulate"],
                      ["range", "upto", "series", "sequence"]),
               [("int", "int")], "int", f"Return the sum of {text} from 1 to $a inclusive "
               "(0 when $a < 1).", body,
               lambda n: sum((i * i if mode == "squares" else i) for i in range(1, n + 1)
                             if ref_pred(i)),
               [(0,), (1,), (rng.randint(5, 40),), (rng.randint(41, 100),)],
               (mode, k if mode in ("multiples", "not_multiples") else 0))


def gcd_lcm(rng):
  mode = rng.choice(["gcd", "lcm", "coprime", "gcd_list"])
  loop = "    while $b:\n        $a, $b = $b, $a % $b\n"
  if mode == "gcd_list":
    return Task(draw_names(rng, ["gcd", "common", "greatest"], ["of_all", "divisor", "factor"]),
                 [("ints", "list[int]")], "int",
                 "Return the greatest common divisor of the positive integers in $a (0 for an "
                 "empty list).",
                 "    result = 0\n    for x in $a:\n        y = x\n        while y:\n"
                 "            result, y = y, result % y\n    return result\n",
                 lambda xs: math.gcd(*xs) if xs else 0,
                 list_inputs(rng, lo=1, hi=60) + [([12, 18, 30],)], (mode,))
  body, ref, text = {
      "gcd": (loop + "    return $a\n", math.gcd, "the greatest common divisor of $a and $b"),
      "lcm": ("    p, q = $a, $b\n    while q:\n        p, q = q, p % q\n    return $a * $b // p\n",
              lambda x, y: x * y // math.gcd(x, y), "the least common multiple of $a and $b"),
      "coprime": (loop + "    return $a == 1\n", lambda x, y: math.gcd(x, y) == 1,
                  "True if $a and $b have no common divisor other than 1"),
  }[mode]
  pairs = [(rng.randint(1, 60), rng.randint(1, 60)) for _ in range(3)] + [(12, 18), (7, 13)]
  return Task(draw_names(rng, ["find", "compute", "get"], ["gcd", "lcm", "divisor", "common"])
               if mode != "coprime" else draw_names(rng, ["are", "is", "check"], ["coprime",
                                                                             "relatively_prime"]),
               [("int", "int"), ("int", "int")], "bool" if mode == "coprime" else "int",
               f"Return {text} (both are positive integers).", body, ref, pairs, (mode,))
