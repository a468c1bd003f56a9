"""CodeExercises-style problems without a language model: a grammar of small Python tasks.

    exercises = procedural.generate(1000, seed=0, split='train')     # deterministic
    ex = exercises[0]
    ex.prompt        # 'def count_vowels(text: str) -> int:' + a docstring with one example
    ex.solution      # the function body, indented: what a model must write
    ex.tests         # ('assert count_vowels("banana") == 3', ...)
    results = verify(exercises)                                     # runs them in the sandbox
    bench = procedural.generate(200, seed=0, split='test')          # the held-out benchmark
    procedural.evaluate_exercises(bench, completions, k=(1,))       # pass@k, HumanEval-style

Each task family (32 of them: arithmetic, digits, strings, lists, dicts, conditionals, loops and
compositions such as filter -> map -> reduce) draws its own constants and operations, writes a
docstring (with one example) and a reference body, and computes the expected value of each test
with a Python twin of that body; `verify` then runs body + asserts in the sandbox
(`phi_jax.evals.execution`), so a template that disagrees with its twin is caught. Function and
argument names are drawn from per-family vocabularies (the papers' "constrain the function name"
diversity). Everything is seeded: the same (n, seed, split, families) gives the same exercises, and
the first k of n are the exercises of n=k.

Splits (no exercise is in two of them):
  'test'        the HELDOUT_FAMILIES, whole families never drawn for training: the held-out
                exercise benchmark measures transfer to unseen task types.
  'train'       the other families, restricted to parameterisations (the family's operations and
                constants, ignoring names and test inputs) whose hash is >= VALIDATION_FRACTION.
  'validation'  the same families, parameterisations hashing below it: unseen variants of seen
                tasks.
  'all'         every family and parameterisation (e.g. for an offline stand-in teacher).
A family with few parameterisations may land wholly in 'train' or in 'validation'.

Records (`Exercise.to_record`) are HumanEval-like: {id, family, prompt, solution, tests,
entry_point}; the program that is run is `prompt + completion + "\\n\\n" + tests`.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import math
import random
import secrets
import string
import textwrap
from typing import Any, Callable, Mapping, Optional, Sequence

VERSION = 1
HELDOUT_FAMILIES = ("run_length", "rotate", "grade", "pair_count", "group_by", "string_case")
VALIDATION_FRACTION = 0.1
SPLITS = ("train", "validation", "test", "all")

_WORDS = ("apple", "river", "stone", "cloud", "tiger", "lemon", "piano", "rocket", "garden",
          "window", "silver", "orange", "planet", "bridge", "candle", "forest", "pencil", "island",
          "button", "dragon", "yellow", "mirror", "anchor", "basket", "castle", "violet", "pepper",
          "summer", "winter", "bottle", "cotton", "marble", "jungle", "engine", "falcon", "harbor",
          "kitten", "ladder", "meadow", "needle", "oyster", "puzzle", "quartz", "saddle", "tunnel",
          "umbrella", "velvet", "walnut", "zebra", "ant", "bee", "cat", "dog", "egg", "fig", "gum",
          "hat", "ink", "jam", "key", "log", "map", "nut", "owl", "pig", "rag", "sun", "toy", "van")
_ARGS = {
    "ints": ("nums", "values", "numbers", "xs", "data", "items", "scores", "readings", "arr",
             "seq", "amounts", "samples"),
    "int": ("n", "x", "k", "value", "num", "m", "count", "amount", "size", "limit", "step"),
    "text": ("s", "text", "word", "phrase", "line", "message", "sentence", "string", "source"),
    "words": ("words", "names", "tokens", "labels", "terms", "entries"),
    "dict": ("d", "mapping", "table", "counts", "inventory", "prices", "stock", "ledger"),
    "grid": ("grid", "matrix", "rows", "board", "cells"),
}


@dataclasses.dataclass(frozen=True)
class Exercise:
  """One problem. `prompt` ends with the docstring and a newline; `solution` is the body."""

  id: str
  family: str
  prompt: str
  solution: str
  tests: tuple[str, ...]
  entry_point: str
  key: str  # The parameterisation (family + operations + constants), name-independent.

  def program(self, completion: Optional[str] = None) -> str:
    """prompt + completion (default: the reference solution) + the asserts."""
    body = self.solution if completion is None else completion
    return self.prompt + body + "\n\n" + "\n".join(self.tests) + "\n"

  @property
  def text(self) -> str:
    """What training sees: the whole function (prompt + solution)."""
    return self.prompt + self.solution

  def to_record(self) -> dict[str, Any]:
    return {"id": self.id, "family": self.family, "prompt": self.prompt,
            "solution": self.solution, "tests": list(self.tests), "entry_point": self.entry_point}


@dataclasses.dataclass
class _Task:
  """A family's draw, before names are chosen. `body` uses $a, $b, $c for the arguments."""

  names: Sequence[str]        # candidate function names
  args: Sequence[tuple[str, str]]  # (name pool, annotation)
  returns: str
  doc: str                    # may use $a, $b, $c
  body: str                   # indented 4 spaces, uses $a, $b, $c
  ref: Callable[..., Any]     # Python twin of body
  inputs: Sequence[tuple]     # test arguments
  params: tuple               # the parameterisation (for the split and the key)


def _names(rng: random.Random, verbs: Sequence[str], objects: Sequence[str],
           k: int = 6) -> list[str]:
  """k candidate function names verb_object (never the same word twice)."""
  out = []
  while len(out) < k:
    verb, obj = rng.choice(verbs), rng.choice(objects)
    if verb != obj:
      out.append(f"{verb}_{obj}")
  return out


def _poly(coefs: Sequence[int], var: str, power: str) -> str:
  """c2, c1, c0 -> 'c2*x**2 - c1*x + c0' style (power: '**' joined with spaces or not)."""
  sp = " " if power == " ** " else ""
  out = ""
  for c, tail in zip(coefs, [f"{sp}*{sp}{var}{power}2", f"{sp}*{sp}{var}", ""]):
    if c == 0 and (tail or out):
      continue
    sign = "-" if c < 0 else "+"
    out += (f"-{abs(c)}" if sign == "-" else f"{c}") if not out else f" {sign} {abs(c)}"
    out += tail
  return out


def _ints(rng: random.Random, lo: int = -9, hi: int = 20, n: tuple[int, int] = (3, 8)) -> list[int]:
  return [rng.randint(lo, hi) for _ in range(rng.randint(*n))]


def _text(rng: random.Random, k: tuple[int, int] = (2, 5), caps: bool = False) -> str:
  words = [rng.choice(_WORDS) for _ in range(rng.randint(*k))]
  if caps:
    words = [w.capitalize() if rng.random() < 0.4 else w for w in words]
  return " ".join(words)


def _list_inputs(rng: random.Random, m: int = 4, **kw) -> list[tuple]:
  return [([],)] + [(_ints(rng, **kw),) for _ in range(m)]


# ---------------------------------------------------------------------------------------------
# Arithmetic and digits

def _arith_linear(rng):
  a, b = rng.randint(2, 9), rng.randint(1, 20)
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
  return _Task(_names(rng, ["compute", "calc", "evaluate", "get", "apply"],
                      ["score", "value", "result", "formula", "price", "offset", "total"]),
               [("int", "int")], "int", f"Return {spec[2]}.", f"    return {spec[0]}\n", spec[1],
               [(rng.randint(-30, 50),) for _ in range(4)], (form, a, b))


def _arith_poly(rng):
  c = [rng.randint(-5, 5) for _ in range(3)]
  c[2] = c[2] or 1
  return _Task(_names(rng, ["evaluate", "compute", "eval"],
                      ["poly", "curve", "quadratic", "parabola", "polynomial"]),
               [("int", "int")], "int",
               f"Evaluate the polynomial {_poly(c[::-1], '$a', '**')} and return the result.",
               f"    return {_poly(c[::-1], '$a', ' ** ')}\n",
               lambda x: c[2] * x**2 + c[1] * x + c[0],
               [(rng.randint(-10, 10),) for _ in range(4)], tuple(c))


def _clamp(rng):
  lo = rng.randint(-20, 10)
  hi = lo + rng.randint(5, 40)
  body = (f"    if $a < {lo}:\n        return {lo}\n    if $a > {hi}:\n        return {hi}\n"
          "    return $a\n") if rng.random() < 0.5 else f"    return max({lo}, min({hi}, $a))\n"
  return _Task(_names(rng, ["clamp", "limit", "bound", "restrict"],
                      ["value", "reading", "level", "input", "speed"]),
               [("int", "int")], "int",
               f"Clamp $a to the range [{lo}, {hi}]: return {lo} if it is smaller, {hi} if it is "
               "larger, and $a itself otherwise.", body, lambda x: max(lo, min(hi, x)),
               [(lo - 3,), (hi + 7,), (rng.randint(lo, hi),), (lo,)], (lo, hi))


def _digits(rng):
  k = rng.randint(2, 7)
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
  return _Task(_names(rng, verbs, objects),
               [("int", "int")], "int", f"Return {spec[0]}.",
               "    n = abs($a)\n" + spec[1], lambda x: spec[2](abs(x)),
               [(rng.randint(0, 99999),), (-rng.randint(10, 9999),), (rng.randint(0, 9),),
                (rng.randint(100, 10**7),)], (mode, k if mode == "greater" else 0))


def _divisible(rng):
  a, b = rng.sample(range(2, 13), 2)
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
  return _Task(_names(rng, ["is", "check", "test"], ["divisible", "multiple", "special", "valid"]),
               [("int", "int")], "bool", f"Return True if $a is {text}, else False.",
               f"    return {cond}\n", ref,
               [(a * b * rng.randint(1, 5),), (a * rng.randint(1, 9),), (b * rng.randint(1, 9),),
                (a * b + 1,), (rng.randint(1, 200),)], (mode, a, b))


def _fizzbuzz(rng):
  a, b = rng.sample(range(2, 10), 2)
  w1, w2 = (w.capitalize() for w in rng.sample(_WORDS, 2))
  body = (f"    if $a % {a} == 0 and $a % {b} == 0:\n        return '{w1}{w2}'\n"
          f"    if $a % {a} == 0:\n        return '{w1}'\n    if $a % {b} == 0:\n"
          f"        return '{w2}'\n    return str($a)\n")
  ref = lambda n: (w1 + w2 if n % a == 0 and n % b == 0 else w1 if n % a == 0
                   else w2 if n % b == 0 else str(n))
  return _Task(_names(rng, ["fizz", "say", "label", "speak"], ["buzz", "number", "word", "turn"]),
               [("int", "int")], "str",
               f"Return '{w1}{w2}' if $a is divisible by both {a} and {b}, '{w1}' if only by {a}, "
               f"'{w2}' if only by {b}, and otherwise $a as a string.", body, ref,
               [(a * b,), (a,), (b,), (a * b + 1,), (rng.randint(1, 100),)], (a, b, w1, w2))


def _range_sum(rng):
  k = rng.randint(2, 9)
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
  return _Task(_names(rng, ["sum", "total", "add_up", "accumulate"],
                      ["range", "upto", "series", "sequence"]),
               [("int", "int")], "int", f"Return the sum of {text} from 1 to $a inclusive "
               "(0 when $a < 1).", body,
               lambda n: sum((i * i if mode == "squares" else i) for i in range(1, n + 1)
                             if ref_pred(i)),
               [(0,), (1,), (rng.randint(5, 40),), (rng.randint(41, 100),)],
               (mode, k if mode in ("multiples", "not_multiples") else 0))


def _gcd_lcm(rng):
  mode = rng.choice(["gcd", "lcm", "coprime", "gcd_list"])
  loop = "    while $b:\n        $a, $b = $b, $a % $b\n"
  if mode == "gcd_list":
    return _Task(_names(rng, ["gcd", "common", "greatest"], ["of_all", "divisor", "factor"]),
                 [("ints", "list[int]")], "int",
                 "Return the greatest common divisor of the positive integers in $a (0 for an "
                 "empty list).",
                 "    result = 0\n    for x in $a:\n        y = x\n        while y:\n"
                 "            result, y = y, result % y\n    return result\n",
                 lambda xs: math.gcd(*xs) if xs else 0,
                 _list_inputs(rng, lo=1, hi=60) + [([12, 18, 30],)], (mode,))
  body, ref, text = {
      "gcd": (loop + "    return $a\n", math.gcd, "the greatest common divisor of $a and $b"),
      "lcm": ("    p, q = $a, $b\n    while q:\n        p, q = q, p % q\n    return $a * $b // p\n",
              lambda x, y: x * y // math.gcd(x, y), "the least common multiple of $a and $b"),
      "coprime": (loop + "    return $a == 1\n", lambda x, y: math.gcd(x, y) == 1,
                  "True if $a and $b have no common divisor other than 1"),
  }[mode]
  pairs = [(rng.randint(1, 60), rng.randint(1, 60)) for _ in range(3)] + [(12, 18), (7, 13)]
  return _Task(_names(rng, ["find", "compute", "get"], ["gcd", "lcm", "divisor", "common"])
               if mode != "coprime" else _names(rng, ["are", "is", "check"], ["coprime",
                                                                             "relatively_prime"]),
               [("int", "int"), ("int", "int")], "bool" if mode == "coprime" else "int",
               f"Return {text} (both are positive integers).", body, ref, pairs, (mode,))


# ---------------------------------------------------------------------------------------------
# Strings

def _count_chars(rng):
  c = rng.choice("aeiourstn")
  mode = rng.choice(["vowels", "consonants", "upper", "spaces", "char", "set"])
  chars = "".join(sorted(rng.sample(string.ascii_lowercase, 3)))
  cond, ref, text = {
      "vowels": ("ch.lower() in 'aeiou'", lambda ch: ch.lower() in "aeiou",
                 "vowels (a, e, i, o, u, either case)"),
      "consonants": ("ch.isalpha() and ch.lower() not in 'aeiou'",
                     lambda ch: ch.isalpha() and ch.lower() not in "aeiou", "consonant letters"),
      "upper": ("ch.isupper()", str.isupper, "uppercase letters"),
      "spaces": ("ch == ' '", lambda ch: ch == " ", "spaces"),
      "char": (f"ch == '{c}'", lambda ch: ch == c, f"occurrences of the letter '{c}'"),
      "set": (f"ch in '{chars}'", lambda ch: ch in chars, f"characters that are one of '{chars}'"),
  }[mode]
  body = (f"    count = 0\n    for ch in $a:\n        if {cond}:\n            count += 1\n"
          "    return count\n") if rng.random() < 0.5 else (
              f"    return sum(1 for ch in $a if {cond})\n")
  return _Task(_names(rng, ["count", "tally", "num", "how_many"],
                      [mode if mode not in ("char", "set") else "letters", "chars", "symbols"]),
               [("text", "str")], "int", f"Return the number of {text} in $a.", body,
               lambda s: sum(1 for ch in s if ref(ch)),
               [("",)] + [(_text(rng, caps=True),) for _ in range(4)],
               (mode, c if mode == "char" else "", chars if mode == "set" else ""))


def _string_transform(rng):
  c1, c2 = rng.sample("aeioustr", 2)
  mode = rng.choice(["reverse", "upper", "swapcase", "replace", "remove", "double", "even_idx",
                     "capitalize"])
  body, ref, text = {
      "reverse": ("    return $a[::-1]\n", lambda s: s[::-1], "$a reversed"),
      "upper": ("    return $a.upper()\n", str.upper, "$a in upper case"),
      "swapcase": ("    return ''.join(ch.lower() if ch.isupper() else ch.upper() for ch in $a)\n",
                   lambda s: "".join(ch.lower() if ch.isupper() else ch.upper() for ch in s),
                   "$a with the case of every letter swapped"),
      "replace": (f"    return $a.replace('{c1}', '{c2}')\n", lambda s: s.replace(c1, c2),
                  f"$a with every '{c1}' replaced by '{c2}'"),
      "remove": (f"    return ''.join(ch for ch in $a if ch != '{c1}')\n",
                 lambda s: s.replace(c1, ""), f"$a with every '{c1}' removed"),
      "double": ("    result = ''\n    for ch in $a:\n        result += ch * 2\n"
                 "    return result\n",
                 lambda s: "".join(ch * 2 for ch in s), "$a with every character doubled"),
      "even_idx": ("    return $a[::2]\n", lambda s: s[::2],
                   "the characters of $a at even positions (0, 2, 4, ...)"),
      "capitalize": ("    return ' '.join(w[:1].upper() + w[1:] for w in $a.split(' '))\n",
                     lambda s: " ".join(w[:1].upper() + w[1:] for w in s.split(" ")),
                     "$a with the first letter of every space-separated word in upper case"),
  }[mode]
  return _Task(_names(rng, ["transform", "convert", "make", "rewrite"],
                      ["text", "string", "word", mode]), [("text", "str")], "str",
               f"Return {text}.", body, ref, [("",)] + [(_text(rng, caps=True),) for _ in range(4)],
               (mode, c1 if mode in ("replace", "remove") else "",
                c2 if mode == "replace" else ""))


def _palindrome(rng):
  mode = rng.choice(["exact", "nocase", "letters"])
  prep, ref_prep, text = {
      "exact": ("    t = $a\n", lambda s: s, "reads the same forwards and backwards"),
      "nocase": ("    t = $a.lower()\n", str.lower,
                 "reads the same forwards and backwards, ignoring case"),
      "letters": ("    t = ''.join(ch.lower() for ch in $a if ch.isalpha())\n",
                  lambda s: "".join(ch.lower() for ch in s if ch.isalpha()),
                  "reads the same forwards and backwards when only its letters are kept, "
                  "ignoring case"),
  }[mode]
  return _Task(_names(rng, ["is", "check"], ["palindrome", "mirrored", "symmetric"]),
               [("text", "str")], "bool", f"Return True if $a {text}.", prep +
               "    return t == t[::-1]\n", lambda s: ref_prep(s) == ref_prep(s)[::-1],
               [("Level",), ("noon",), ("Never odd or even",), (_text(rng, (1, 2)),), ("",)],
               (mode,))


def _word_stats(rng):
  k = rng.randint(3, 6)
  c = rng.choice("abcdefmprst")
  mode = rng.choice(["longest", "shortest", "longer_than", "initials", "starting", "count"])
  body, ref, ret, text = {
      "longest": ("    best = ''\n    for w in $a.split():\n        if len(w) > len(best):\n"
                  "            best = w\n    return best\n",
                  lambda s: max(s.split(), key=len, default=""), "str",
                  "the longest word in $a (the first one on a tie; '' if there is none)"),
      "shortest": ("    words = $a.split()\n    if not words:\n        return ''\n"
                   "    return min(words, key=len)\n",
                   lambda s: min(s.split(), key=len, default=""), "str",
                   "the shortest word in $a (the first one on a tie; '' if there is none)"),
      "longer_than": (f"    return len([w for w in $a.split() if len(w) > {k}])\n",
                      lambda s: sum(len(w) > k for w in s.split()), "int",
                      f"how many words of $a have more than {k} letters"),
      "initials": ("    return ''.join(w[0] for w in $a.split())\n",
                   lambda s: "".join(w[0] for w in s.split()), "str",
                   "the first letters of the words of $a, joined together"),
      "starting": (f"    return [w for w in $a.split() if w.startswith('{c}')]\n",
                   lambda s: [w for w in s.split() if w.startswith(c)], "list[str]",
                   f"the words of $a that start with '{c}', in order"),
      "count": ("    return len($a.split())\n", lambda s: len(s.split()), "int",
                "the number of whitespace-separated words in $a"),
  }[mode]
  return _Task(_names(rng, ["find", "get", "word"], ["word", "words", mode, "stats"]),
               [("text", "str")], ret, f"Return {text}.", body, ref,
               [("",)] + [(_text(rng, (3, 7)),) for _ in range(4)],
               (mode, k if mode == "longer_than" else 0, c if mode == "starting" else ""))


def _caesar(rng):
  k = rng.randint(1, 25)
  decode = rng.random() < 0.5
  shift = -k if decode else k
  body = ("    result = []\n    for ch in $a:\n        if 'a' <= ch <= 'z':\n"
          f"            result.append(chr((ord(ch) - ord('a') + {shift}) % 26 + ord('a')))\n"
          "        else:\n            result.append(ch)\n    return ''.join(result)\n")
  ref = lambda s: "".join(chr((ord(ch) - 97 + shift) % 26 + 97) if "a" <= ch <= "z" else ch
                          for ch in s)
  return _Task(_names(rng, ["decode" if decode else "encode", "shift", "rotate"],
                      ["caesar", "message", "cipher", "letters"]), [("text", "str")], "str",
               f"Shift every lowercase letter of $a {'back' if decode else 'forward'} by {k} "
               "places in the alphabet, wrapping around; leave other characters unchanged.",
               body, ref, [("",)] + [(_text(rng),) for _ in range(3)] + [("xyz abc!",)],
               (decode, k))


def _run_length(rng):
  mode = rng.choice(["char_count", "count_char", "pairs"])
  emit, ret, text = {
      "char_count": ("out += prev + str(n)", "str", "each run written as the character followed "
                     "by its length, e.g. 'aaab' -> 'a3b1'"),
      "count_char": ("out += str(n) + prev", "str", "each run written as its length followed by "
                     "the character, e.g. 'aaab' -> '3a1b'"),
      "pairs": ("out.append((prev, n))", "list[tuple[str, int]]",
                "a list of (character, run length) pairs, e.g. 'aaab' -> [('a', 3), ('b', 1)]"),
  }[mode]
  init = "[]" if mode == "pairs" else "''"
  body = (f"    out = {init}\n    i = 0\n    while i < len($a):\n        prev, n = $a[i], 0\n"
          f"        while i < len($a) and $a[i] == prev:\n            i += 1\n            n += 1\n"
          f"        {emit}\n    return out\n")
  def ref(s):
    runs, i = [], 0
    while i < len(s):
      j = i
      while j < len(s) and s[j] == s[i]:
        j += 1
      runs.append((s[i], j - i))
      i = j
    if mode == "pairs":
      return runs
    return "".join(f"{ch}{n}" if mode == "char_count" else f"{n}{ch}" for ch, n in runs)
  def sample():
    return "".join(rng.choice("abc") * rng.randint(1, 4) for _ in range(rng.randint(1, 5)))
  return _Task(_names(rng, ["encode", "compress", "run_length"], ["runs", "string", "rle"]),
               [("text", "str")], ret, f"Compress $a by run-length encoding: return {text}.",
               body, ref, [("",), (sample(),), (sample(),), ("abc",)], (mode,))


def _char_frequency(rng):
  mode = rng.choice(["all", "letters", "first_repeat"])
  if mode == "first_repeat":
    return _Task(_names(rng, ["first", "find"], ["repeat", "repeated_char", "duplicate"]),
                 [("text", "str")], "str",
                 "Return the first character of $a that has already appeared earlier in it, or '' "
                 "if no character repeats.",
                 "    seen = set()\n    for ch in $a:\n        if ch in seen:\n"
                 "            return ch\n"
                 "        seen.add(ch)\n    return ''\n",
                 lambda s: next((ch for i, ch in enumerate(s) if ch in s[:i]), ""),
                 [("",), ("abc",)] + [(_text(rng, (1, 3)),) for _ in range(3)], (mode,))
  cond = "ch.isalpha()" if mode == "letters" else "True"
  key = "ch.lower()" if mode == "letters" else "ch"
  body = (f"    counts = {{}}\n    for ch in $a:\n        if {cond}:\n"
          f"            counts[{key}] = counts.get({key}, 0) + 1\n    return counts\n"
          ).replace("        if True:\n    ", "")
  def ref(s):
    out = {}
    for ch in s:
      if mode == "all" or ch.isalpha():
        k = ch.lower() if mode == "letters" else ch
        out[k] = out.get(k, 0) + 1
    return out
  return _Task(_names(rng, ["count", "char", "letter"], ["frequency", "counts", "histogram"]),
               [("text", "str")], "dict[str, int]",
               "Return a dict mapping each " + ("letter of $a, lower-cased," if mode == "letters"
                                                else "character of $a") +
               " to the number of times it occurs.", body, ref,
               [("",)] + [(_text(rng, (1, 3), caps=True),) for _ in range(3)], (mode,))


def _string_case(rng):
  mode = rng.choice(["snake_to_camel", "camel_to_snake", "acronym", "title"])
  body, ref, text, sample = {
      "snake_to_camel": ("    parts = $a.split('_')\n"
                         "    return parts[0] + ''.join(p.capitalize() for p in parts[1:])\n",
                         lambda s: s.split("_")[0] + "".join(p.capitalize()
                                                             for p in s.split("_")[1:]),
                         "the snake_case identifier $a in camelCase", "_"),
      "camel_to_snake": ("    out = ''\n    for ch in $a:\n        if ch.isupper():\n"
                         "            out += '_' + ch.lower()\n        else:\n"
                         "            out += ch\n"
                         "    return out\n",
                         lambda s: "".join("_" + ch.lower() if ch.isupper() else ch for ch in s),
                         "the camelCase identifier $a in snake_case", "camel"),
      "acronym": ("    return ''.join(w[0].upper() for w in $a.split())\n",
                  lambda s: "".join(w[0].upper() for w in s.split()),
                  "the acronym of $a: the first letter of each word, in upper case", " "),
      "title": ("    return ' '.join(w.capitalize() for w in $a.split())\n",
                lambda s: " ".join(w.capitalize() for w in s.split()),
                "$a with each word capitalised and single spaces between words", " "),
  }[mode]
  def draw():
    words = [rng.choice(_WORDS) for _ in range(rng.randint(1, 4))]
    if sample == "camel":
      return words[0] + "".join(w.capitalize() for w in words[1:])
    return sample.join(words)
  return _Task(_names(rng, ["to", "make", "convert"], [mode, "case", "identifier", "name"]),
               [("text", "str")], "str", f"Return {text}.", body, ref,
               [(draw(),) for _ in range(4)], (mode,))


# ---------------------------------------------------------------------------------------------
# Lists (including the filter -> map -> reduce composition)

_PREDICATES = [
    ("x > {k}", lambda k, m: lambda x: x > k, "greater than {k}"),
    ("x < {k}", lambda k, m: lambda x: x < k, "less than {k}"),
    ("x % {m} == 0", lambda k, m: lambda x: x % m == 0, "divisible by {m}"),
    ("x % 2 == 1", lambda k, m: lambda x: x % 2 == 1, "odd"),
    ("x != {k}", lambda k, m: lambda x: x != k, "not equal to {k}"),
    ("{lo} <= x <= {k}", lambda k, m: lambda x: k - 6 <= x <= k, "between {lo} and {k} inclusive"),
]
_TRANSFORMS = [
    ("x", lambda a: lambda x: x, "{noun}"),
    ("x * {a}", lambda a: lambda x: x * a, "{noun} multiplied by {a}"),
    ("x + {a}", lambda a: lambda x: x + a, "{noun} plus {a}"),
    ("x * x", lambda a: lambda x: x * x, "squares of the {noun}"),
    ("abs(x)", lambda a: lambda x: abs(x), "absolute values of the {noun}"),
]


def _filter_map_reduce(rng):
  k, m, a = rng.randint(-3, 12), rng.randint(2, 5), rng.randint(2, 6)
  pi, ti = rng.randrange(len(_PREDICATES)), rng.randrange(len(_TRANSFORMS))
  agg = rng.choice(["sum", "count", "max", "list", "product"])
  if agg == "count":
    ti = 0
  p_code, p_make, p_text = _PREDICATES[pi]
  t_code, t_make, t_text = _TRANSFORMS[ti]
  fmt = {"k": k, "m": m, "a": a, "lo": k - 6}
  p_code, p_text, t_code = p_code.format(**fmt), p_text.format(**fmt), t_code.format(**fmt)
  pred, fn = p_make(k, m), t_make(a)
  noun = t_text.format(noun="elements", a=a)
  sel = f"the elements of $a that are {p_text}"
  text = {"sum": f"Return the sum of the {noun} over {sel}.",
          "count": f"Return how many elements of $a are {p_text}.",
          "max": f"Return the largest of the {noun} over {sel}, or None if there are none.",
          "list": f"Return a list of the {noun} over {sel}, in order.",
          "product": f"Return the product of the {noun} over {sel} (1 if there are none)."}[agg]
  text = text.replace("the elements over", "").replace("of the elements over ", "of ")
  if rng.random() < 0.5 and agg != "product":
    expr = {"sum": f"sum({t_code} for x in $a if {p_code})",
            "count": f"sum(1 for x in $a if {p_code})",
            "max": f"max(({t_code} for x in $a if {p_code}), default=None)",
            "list": f"[{t_code} for x in $a if {p_code}]"}[agg]
    body = f"    return {expr}\n"
  else:
    init, update = {"sum": ("0", f"result += {t_code}"), "count": ("0", "result += 1"),
                    "max": ("None", f"y = {t_code}\n            if result is None or y > result:\n"
                            "                result = y"),
                    "list": ("[]", f"result.append({t_code})"),
                    "product": ("1", f"result *= {t_code}")}[agg]
    body = (f"    result = {init}\n    for x in $a:\n        if {p_code}:\n"
            f"            {update}\n    return result\n")
  def ref(xs):
    ys = [fn(x) for x in xs if pred(x)]
    return {"sum": sum(ys), "count": len(ys), "max": max(ys, default=None), "list": ys,
            "product": math.prod(ys)}[agg]
  ret = {"sum": "int", "count": "int", "max": "int | None", "list": "list[int]",
         "product": "int"}[agg]
  return _Task(_names(rng, [agg, "select", "filter", "process", "collect"],
                      ["values", "matches", "selected", "numbers", "items"]),
               [("ints", "list[int]")], ret, text, body, ref, _list_inputs(rng, lo=-8, hi=15),
               (pi, ti, agg, k if "{k}" in _PREDICATES[pi][0] else 0,
                m if "{m}" in _PREDICATES[pi][0] else 0, a if "{a}" in _TRANSFORMS[ti][0] else 0))


def _running(rng):
  mode = rng.choice(["sum", "max", "min", "product"])
  op = {"sum": "acc + x", "max": "max(acc, x)", "min": "min(acc, x)", "product": "acc * x"}[mode]
  body = (f"    out = []\n    for i, x in enumerate($a):\n        acc = x if i == 0 else {op}\n"
          "        out.append(acc)\n    return out\n")
  def ref(xs):
    out = []
    for i, x in enumerate(xs):
      out.append(x if i == 0 else {"sum": out[-1] + x, "max": max(out[-1], x),
                                   "min": min(out[-1], x), "product": out[-1] * x}[mode])
    return out
  word = {"sum": "sum", "max": "maximum", "min": "minimum", "product": "product"}[mode]
  return _Task(_names(rng, ["running", "prefix", "cumulative"], [mode, "totals", "values"]),
               [("ints", "list[int]")], "list[int]",
               f"Return the running {word} of $a: element i is the {word} of $a[0..i].", body,
               ref, _list_inputs(rng, lo=-5, hi=9), (mode,))


def _pairwise(rng):
  mode = rng.choice(["diffs", "increases", "decreases", "max_jump", "increasing"])
  body, ref, ret, text = {
      "diffs": ("    return [$a[i + 1] - $a[i] for i in range(len($a) - 1)]\n",
                lambda xs: [b - a for a, b in zip(xs, xs[1:])], "list[int]",
                "the differences between consecutive elements of $a"),
      "increases": ("    count = 0\n    for i in range(1, len($a)):\n"
                    "        if $a[i] > $a[i - 1]:\n"
                    "            count += 1\n    return count\n",
                    lambda xs: sum(b > a for a, b in zip(xs, xs[1:])), "int",
                    "how many elements of $a are larger than the element before them"),
      "decreases": ("    return sum(1 for i in range(1, len($a)) if $a[i] < $a[i - 1])\n",
                    lambda xs: sum(b < a for a, b in zip(xs, xs[1:])), "int",
                    "how many elements of $a are smaller than the element before them"),
      "max_jump": ("    best = 0\n    for i in range(1, len($a)):\n"
                   "        best = max(best, abs($a[i] - $a[i - 1]))\n    return best\n",
                   lambda xs: max((abs(b - a) for a, b in zip(xs, xs[1:])), default=0), "int",
                   "the largest absolute difference between consecutive elements of $a (0 if "
                   "there are fewer than two)"),
      "increasing": ("    return all($a[i] < $a[i + 1] for i in range(len($a) - 1))\n",
                     lambda xs: all(a < b for a, b in zip(xs, xs[1:])), "bool",
                     "True if $a is strictly increasing"),
  }[mode]
  inputs = _list_inputs(rng) + [([1, 3, 7, 12],)]
  return _Task(_names(rng, ["consecutive", "pairwise", "step"], [mode, "changes", "gaps"]),
               [("ints", "list[int]")], ret, f"Return {text}.", body, ref, inputs, (mode,))


def _windows(rng):
  k = rng.randint(2, 4)
  mode = rng.choice(["window_sums", "max_window", "chunks"])
  body, ref, ret, text = {
      "window_sums": (f"    return [sum($a[i:i + {k}]) for i in range(len($a) - {k} + 1)]\n",
                      lambda xs: [sum(xs[i:i + k]) for i in range(len(xs) - k + 1)], "list[int]",
                      f"the sums of every window of {k} consecutive elements of $a, in order"),
      "max_window": (f"    best = None\n    for i in range(len($a) - {k} + 1):\n"
                     f"        total = sum($a[i:i + {k}])\n"
                     "        if best is None or total > best:\n            best = total\n"
                     "    return best\n",
                     lambda xs: max((sum(xs[i:i + k]) for i in range(len(xs) - k + 1)),
                                    default=None), "int | None",
                     f"the largest sum of {k} consecutive elements of $a (None if $a is shorter "
                     f"than {k})"),
      "chunks": (f"    return [$a[i:i + {k}] for i in range(0, len($a), {k})]\n",
                 lambda xs: [xs[i:i + k] for i in range(0, len(xs), k)], "list[list[int]]",
                 f"$a split into consecutive chunks of {k} elements (the last may be shorter)"),
  }[mode]
  return _Task(_names(rng, ["window", "sliding", "chunk", "group"], [mode, "sums", "blocks"]),
               [("ints", "list[int]")], ret, f"Return {text}.", body, ref,
               _list_inputs(rng, n=(1, 9)), (mode, k))


def _kth(rng):
  k = rng.randint(1, 3)
  mode = rng.choice(["kth_largest", "kth_smallest", "argmax", "argmin"])
  if mode.startswith("kth"):
    rev = mode == "kth_largest"
    body = (f"    distinct = sorted(set($a){', reverse=True' if rev else ''})\n"
            f"    if len(distinct) < {k}:\n        return None\n    return distinct[{k - 1}]\n")
    ref = lambda xs: (sorted(set(xs), reverse=rev)[k - 1] if len(set(xs)) >= k else None)
    rank = ["", "", "second ", "third "][k] + ("largest" if rev else "smallest")
    text = f"the {rank} distinct value in $a, or None if it has fewer distinct values"
    ret = "int | None"
  else:
    cmp = ">" if mode == "argmax" else "<"
    body = (f"    best = 0\n    for i in range(1, len($a)):\n        if $a[i] {cmp} $a[best]:\n"
            "            best = i\n    return best if $a else -1\n")
    ref = lambda xs: (xs.index(max(xs) if mode == "argmax" else min(xs)) if xs else -1)
    text = (f"the index of the first {'largest' if mode == 'argmax' else 'smallest'} element of "
            "$a, or -1 if $a is empty")
    ret, k = "int", 0
  return _Task(_names(rng, ["find", "get", "pick"], [mode, "rank", "position", "element"]),
               [("ints", "list[int]")], ret, f"Return {text}.", body, ref,
               _list_inputs(rng, lo=0, hi=9), (mode, k))


def _rotate(rng):
  k = rng.randint(1, 4)
  left = rng.random() < 0.5
  body = (f"    if not $a:\n        return []\n    k = {k} % len($a)\n"
          + ("    return $a[k:] + $a[:k]\n" if left else "    return $a[-k:] + $a[:-k]\n"))
  ref = lambda xs: (xs[k % len(xs):] + xs[:k % len(xs)] if left
                    else xs[-(k % len(xs)):] + xs[:-(k % len(xs))]) if xs else []
  return _Task(_names(rng, ["rotate", "shift", "cycle"], ["left" if left else "right", "list",
                                                          "items"]),
               [("ints", "list[int]")], "list[int]",
               f"Return a new list with the elements of $a rotated {k} place(s) to the "
               f"{'left' if left else 'right'} (an empty list stays empty).", body, ref,
               _list_inputs(rng, n=(1, 7)), (left, k))


def _merge(rng):
  mode = rng.choice(["interleave", "merge_sorted", "add", "max", "dot"])
  body, ref, ret, text = {
      "interleave": ("    out = []\n    for i in range(max(len($a), len($b))):\n"
                     "        if i < len($a):\n            out.append($a[i])\n"
                     "        if i < len($b):\n            out.append($b[i])\n    return out\n",
                     lambda xs, ys: [v for i in range(max(len(xs), len(ys)))
                                     for v in (xs[i:i + 1] + ys[i:i + 1])], "list[int]",
                     "the elements of $a and $b alternately, starting with $a; the rest of the "
                     "longer list comes at the end"),
      "merge_sorted": ("    out, i, j = [], 0, 0\n    while i < len($a) and j < len($b):\n"
                       "        if $a[i] <= $b[j]:\n            out.append($a[i])\n"
                       "            i += 1\n"
                       "        else:\n            out.append($b[j])\n            j += 1\n"
                       "    return out + $a[i:] + $b[j:]\n",
                       lambda xs, ys: sorted(xs + ys), "list[int]",
                       "one sorted list with all elements of the sorted lists $a and $b"),
      "add": ("    return [x + y for x, y in zip($a, $b)]\n",
              lambda xs, ys: [x + y for x, y in zip(xs, ys)], "list[int]",
              "the element-wise sums of $a and $b (as long as the shorter list)"),
      "max": ("    return [max(x, y) for x, y in zip($a, $b)]\n",
              lambda xs, ys: [max(x, y) for x, y in zip(xs, ys)], "list[int]",
              "the element-wise maxima of $a and $b (as long as the shorter list)"),
      "dot": ("    total = 0\n    for x, y in zip($a, $b):\n        total += x * y\n"
              "    return total\n",
              lambda xs, ys: sum(x * y for x, y in zip(xs, ys)), "int",
              "the dot product of $a and $b (pairs beyond the shorter list are ignored)"),
  }[mode]
  draw = (lambda: sorted(_ints(rng))) if mode == "merge_sorted" else (lambda: _ints(rng))
  return _Task(_names(rng, ["merge", "combine", "join", "zip"], [mode, "lists", "pairs"]),
               [("ints", "list[int]"), ("ints", "list[int]")], ret, f"Return {text}.", body,
               ref, [([], draw())] + [(draw(), draw()) for _ in range(3)], (mode,))


def _dedupe(rng):
  mode = rng.choice(["unique", "once", "repeated", "distinct"])
  body, ref, ret, text = {
      "unique": ("    seen = set()\n    out = []\n    for x in $a:\n        if x not in seen:\n"
                 "            seen.add(x)\n            out.append(x)\n    return out\n",
                 lambda xs: list(dict.fromkeys(xs)), "list[int]",
                 "$a without duplicates, keeping the first occurrence of each value in order"),
      "once": ("    return [x for x in $a if $a.count(x) == 1]\n",
               lambda xs: [x for x in xs if xs.count(x) == 1], "list[int]",
               "the elements of $a that occur exactly once, in order"),
      "repeated": ("    out = []\n    for x in $a:\n        if $a.count(x) > 1 and x not in out:\n"
                   "            out.append(x)\n    return out\n",
                   lambda xs: [x for x in dict.fromkeys(xs) if xs.count(x) > 1], "list[int]",
                   "the values that occur more than once in $a, each once, in order of first "
                   "appearance"),
      "distinct": ("    return len(set($a))\n", lambda xs: len(set(xs)), "int",
                   "the number of distinct values in $a"),
  }[mode]
  verbs, objects = {"unique": (["remove", "drop", "strip"], ["duplicates", "repeats"]),
                    "once": (["find", "get", "keep"], ["singletons", "unique_values", "loners"]),
                    "repeated": (["find", "get", "list"], ["repeated", "duplicates", "repeats"]),
                    "distinct": (["count", "num"], ["distinct", "unique_values"])}[mode]
  return _Task(_names(rng, verbs, objects),
               [("ints", "list[int]")], ret, f"Return {text}.", body, ref,
               _list_inputs(rng, lo=0, hi=6, n=(3, 9)), (mode,))


def _pair_count(rng):
  k = rng.randint(1, 5)
  mode = rng.choice(["sum_to", "diff_k", "even_product"])
  cond, ref_cond, text = {
      "sum_to": (f"$a[i] + $a[j] == {3 * k}", lambda x, y: x + y == 3 * k,
                 f"$a[i] + $a[j] == {3 * k}"),
      "diff_k": (f"abs($a[i] - $a[j]) == {k}", lambda x, y: abs(x - y) == k,
                 f"the two values differ by exactly {k}"),
      "even_product": ("$a[i] * $a[j] % 2 == 0", lambda x, y: x * y % 2 == 0,
                       "$a[i] * $a[j] is even"),
  }[mode]
  body = (f"    count = 0\n    for i in range(len($a)):\n        for j in range(i + 1, len($a)):\n"
          f"            if {cond}:\n                count += 1\n    return count\n")
  return _Task(_names(rng, ["count", "num", "find"], ["pairs", "matching_pairs", "couples"]),
               [("ints", "list[int]")], "int",
               f"Return the number of index pairs i < j such that {text}.", body,
               lambda xs: sum(ref_cond(xs[i], xs[j]) for i in range(len(xs))
                              for j in range(i + 1, len(xs))),
               _list_inputs(rng, lo=0, hi=3 * k, n=(2, 8)),
               (mode, k if mode != "even_product" else 0))


# ---------------------------------------------------------------------------------------------
# Dicts

def _dict_filter(rng):
  k = rng.randint(1, 20)
  c = rng.choice("abcdefgmpst")
  mode = rng.choice(["above", "sum_prefix", "argmax", "invert", "sorted_keys"])
  body, ref, ret, text = {
      "above": (f"    return {{key: v for key, v in $a.items() if v > {k}}}\n",
                lambda d: {key: v for key, v in d.items() if v > k}, "dict[str, int]",
                f"a new dict with only the items of $a whose value is greater than {k}"),
      "sum_prefix": (f"    total = 0\n    for key, v in $a.items():\n"
                     f"        if key.startswith('{c}'):\n"
                     "            total += v\n    return total\n",
                     lambda d: sum(v for key, v in d.items() if key.startswith(c)), "int",
                     f"the sum of the values of $a whose key starts with '{c}'"),
      "argmax": ("    best = None\n    for key, v in $a.items():\n"
                 "        if best is None or v > $a[best]:\n            best = key\n"
                 "    return best\n",
                 lambda d: max(d, key=d.get) if d else None, "str | None",
                 "the key of $a with the largest value (the first such key in order; None if $a "
                 "is empty)"),
      "invert": ("    return {v: key for key, v in $a.items()}\n",
                 lambda d: {v: key for key, v in d.items()}, "dict[int, str]",
                 "$a inverted: a dict mapping each value to its key (values are distinct)"),
      "sorted_keys": ("    return sorted($a, key=lambda key: ($a[key], key))\n",
                      lambda d: sorted(d, key=lambda key: (d[key], key)), "list[str]",
                      "the keys of $a sorted by their value, ties broken alphabetically"),
  }[mode]
  def draw():
    keys = rng.sample(_WORDS, rng.randint(1, 5))
    values = rng.sample(range(0, 30), len(keys))
    return dict(zip(keys, values))
  return _Task(_names(rng, ["filter", "select", "summarise", "query"], [mode, "table", "entries"]),
               [("dict", "dict[str, int]")], ret, f"Return {text}.", body, ref,
               [({},)] + [(draw(),) for _ in range(3)] + [({f"{c}x": 3, "zz": 5, f"{c}y": 4},)],
               (mode, k if mode == "above" else 0, c if mode == "sum_prefix" else ""))


def _group_by(rng):
  mode = rng.choice(["first_letter", "length", "count_by_length"])
  body, ref, ret, text = {
      "first_letter": ("    groups = {}\n    for w in $a:\n"
                       "        groups.setdefault(w[0], []).append(w)\n"
                       "    return groups\n", lambda ws: _group(ws, lambda w: w[0]),
                       "dict[str, list[str]]",
                       "a dict mapping each first letter to the words of $a that start with it, "
                       "in order"),
      "length": ("    groups = {}\n    for w in $a:\n"
                 "        groups.setdefault(len(w), []).append(w)\n"
                 "    return groups\n", lambda ws: _group(ws, len), "dict[int, list[str]]",
                 "a dict mapping each word length to the words of $a of that length, in order"),
      "count_by_length": ("    counts = {}\n    for w in $a:\n"
                          "        counts[len(w)] = counts.get(len(w), 0) + 1\n    return counts\n",
                          lambda ws: {n: len(g) for n, g in _group(ws, len).items()},
                          "dict[int, int]", "a dict mapping each word length to how many words "
                          "of $a have it"),
  }[mode]
  return _Task(_names(rng, ["group", "bucket", "index"], ["words", "by_" + mode.split("_")[-1],
                                                          "names"]),
               [("words", "list[str]")], ret, f"Return {text}.", body, ref,
               [([],)] + [(rng.sample(_WORDS, rng.randint(2, 6)),) for _ in range(3)], (mode,))


def _group(items, key):
  out = {}
  for item in items:
    out.setdefault(key(item), []).append(item)
  return out


def _word_count(rng):
  k = rng.randint(1, 2)
  mode = rng.choice(["counts", "most_common", "more_than"])
  prelude = ("    counts = {}\n    for w in $a.lower().split():\n"
             "        counts[w] = counts.get(w, 0) + 1\n")
  body, ref, ret, text = {
      "counts": (prelude + "    return counts\n", lambda s: dict(_counts(s)), "dict[str, int]",
                 "a dict mapping each lower-cased word of $a to its number of occurrences"),
      "most_common": (prelude + "    best = ''\n    for w, n in counts.items():\n"
                      "        if best == '' or n > counts[best]:\n            best = w\n"
                      "    return best\n",
                      lambda s: max(_counts(s), key=_counts(s).get) if s.split() else "", "str",
                      "the most frequent lower-cased word of $a (the first to appear on a tie; '' "
                      "if there are no words)"),
      "more_than": (prelude + f"    return [w for w, n in counts.items() if n > {k}]\n",
                    lambda s: [w for w, n in _counts(s).items() if n > k], "list[str]",
                    f"the lower-cased words that occur more than {k} time(s) in $a, in order of "
                    "first appearance"),
  }[mode]
  def draw():
    pool = rng.sample(_WORDS, 3)
    return " ".join(rng.choice(pool).capitalize() if rng.random() < 0.2 else rng.choice(pool)
                    for _ in range(rng.randint(2, 8)))
  return _Task(_names(rng, ["count", "tally", "find"], ["words", mode, "frequent_words"]),
               [("text", "str")], ret, f"Return {text}.", body, ref,
               [("",)] + [(draw(),) for _ in range(4)], (mode, k if mode == "more_than" else 0))


def _counts(s):
  out = {}
  for w in s.lower().split():
    out[w] = out.get(w, 0) + 1
  return out


# ---------------------------------------------------------------------------------------------
# Conditionals, loops, nested data

def _grade(rng):
  cuts = sorted(rng.sample(range(10, 100, 5), 3), reverse=True)
  labels = rng.choice([("A", "B", "C", "F"), ("high", "medium", "low", "none"),
                       ("gold", "silver", "bronze", "none"), ("great", "good", "fair", "poor")])
  body = "".join(f"    {'if' if i == 0 else 'elif'} $a >= {c}:\n        return '{labels[i]}'\n"
                 for i, c in enumerate(cuts)) + f"    return '{labels[3]}'\n"
  ref = lambda x: next((labels[i] for i, c in enumerate(cuts) if x >= c), labels[3])
  text = ", ".join(f"'{labels[i]}' if $a >= {c}" for i, c in enumerate(cuts))
  return _Task(_names(rng, ["grade", "rate", "classify", "label"], ["score", "result", "level"]),
               [("int", "int")], "str", f"Return {text} (checked in that order), else "
               f"'{labels[3]}'.", body, ref,
               [(c,) for c in cuts] + [(cuts[-1] - 1,), (rng.randint(0, 100),)],
               (tuple(cuts), labels))


def _piecewise(rng):
  a = rng.randint(-5, 5)
  b = a + rng.randint(3, 10)
  p, q, r = rng.randint(2, 5), rng.randint(1, 9), rng.randint(10, 40)
  body = (f"    if $a < {a}:\n        return $a * {p}\n    elif $a < {b}:\n"
          f"        return $a + {q}\n"
          f"    else:\n        return {r} - $a\n")
  ref = lambda x: x * p if x < a else x + q if x < b else r - x
  return _Task(_names(rng, ["piecewise", "compute", "adjust"], ["value", "rule", "response"]),
               [("int", "int")], "int",
               f"Return $a * {p} if $a < {a}; $a + {q} if {a} <= $a < {b}; otherwise {r} - $a.",
               body, ref, [(a - 1,), (a,), (b - 1,), (b,), (rng.randint(-20, 20),)],
               (a, b, p, q, r))


def _loop_until(rng):
  k = rng.randint(2, 9)
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
  return _Task(_names(rng, ["count", "num", "steps"], ["steps", "iterations", "rounds"]),
               [("int", "int")], "int", f"Return {text}.", body, ref,
               [(1,)] + [(rng.randint(1, 200),) for _ in range(3)] + [(27,)],
               (mode, k if mode in ("halve_below", "subtract") else 0))


def _steps(n, cond, update):
  steps = 0
  while cond(n):
    n, steps = update(n), steps + 1
  return steps


def _matrix(rng):
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
  return _Task(_names(rng, ["grid", "matrix", "compute"], [mode, "table", "rows"]),
               [("grid", "list[list[int]]")], ret, f"Return {text}.", body, ref, inputs, (mode,))


FAMILIES: dict[str, Callable[[random.Random], _Task]] = {
    "arith_linear": _arith_linear, "arith_poly": _arith_poly, "clamp": _clamp, "digits": _digits,
    "divisible": _divisible, "fizzbuzz": _fizzbuzz, "range_sum": _range_sum, "gcd_lcm": _gcd_lcm,
    "count_chars": _count_chars, "string_transform": _string_transform,
    "palindrome": _palindrome, "word_stats": _word_stats, "caesar": _caesar,
    "run_length": _run_length, "char_frequency": _char_frequency, "string_case": _string_case,
    "filter_map_reduce": _filter_map_reduce, "running": _running, "pairwise": _pairwise,
    "windows": _windows, "kth": _kth, "rotate": _rotate, "merge": _merge, "dedupe": _dedupe,
    "pair_count": _pair_count, "dict_filter": _dict_filter, "group_by": _group_by,
    "word_count": _word_count, "grade": _grade, "piecewise": _piecewise,
    "loop_until": _loop_until, "matrix": _matrix,
}


# ---------------------------------------------------------------------------------------------
# Drawing, splits, verification, evaluation

def _unit_hash(text: str) -> float:
  return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big") / 2.0**64


def check_split(split: str, families: Optional[Sequence[str]] = None) -> list[str]:
  """The families `split` draws from (all of them, or `families` after checking they belong)."""
  if split not in SPLITS:
    raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
  allowed = [f for f in FAMILIES if split == "all" or
             (f in HELDOUT_FAMILIES) == (split == "test")]
  if families is None:
    return allowed
  unknown = sorted(set(families) - set(FAMILIES))
  if unknown:
    raise ValueError(f"Unknown task families {unknown}; known: {sorted(FAMILIES)}")
  wrong = sorted(set(families) - set(allowed))
  if wrong:
    raise ValueError(f"Families {wrong} are not in split {split!r} (held-out families "
                     f"{HELDOUT_FAMILIES} are only in 'test' and 'all')")
  if not families:
    raise ValueError("families must name at least one family (or be None for all)")
  return [f for f in FAMILIES if f in families]


def _in_split(family: str, key: str, split: str) -> bool:
  if split == "all":
    return True
  if family in HELDOUT_FAMILIES:
    return split == "test"
  if split == "test":
    return False
  return (_unit_hash(key) < VALIDATION_FRACTION) == (split == "validation")


def _render(family: str, task: _Task, rng: random.Random) -> Exercise:
  name = rng.choice(list(task.names))
  argnames: list[str] = []
  for pool, _ in task.args:
    argnames.append(rng.choice([a for a in _ARGS[pool] if a not in argnames and a != name]))
  mapping = dict(zip("abc", argnames))
  params = ", ".join(f"{a}: {t}" for a, (_, t) in zip(argnames, task.args))
  body = string.Template(task.body).substitute(mapping)
  tests, example = [], None
  for args in task.inputs:
    expected = task.ref(*copy.deepcopy(args))
    call = f"{name}({', '.join(repr(a) for a in args)})"
    tests.append(f"assert {call} == {expected!r}")
    if example is None or (not example[2] and any(args)):
      example = (call, repr(expected), any(args))
  doc = textwrap.fill(string.Template(task.doc).substitute(mapping), width=92,
                      initial_indent="    ", subsequent_indent="    ")
  prompt = (f"def {name}({params}) -> {task.returns}:\n    \"\"\"{doc[4:]}\n\n"
            f"    >>> {example[0]}\n    {example[1]}\n    \"\"\"\n")
  key = f"{family}:{task.params!r}"
  digest = hashlib.sha256((prompt + body + "\n".join(tests)).encode("utf-8")).hexdigest()
  return Exercise(id=f"{family}-{digest[:12]}", family=family, prompt=prompt, solution=body,
                  tests=tuple(tests), entry_point=name, key=key)


def generate(n: int, seed: int = 0, split: str = "train",
             families: Optional[Sequence[str]] = None) -> list[Exercise]:
  """`n` distinct exercises of `split` (see the module doc), deterministic in all arguments.

  Families are drawn uniformly; a draw outside the split or equal to an earlier one is skipped.
  Raises ValueError when the split cannot yield `n` distinct exercises.
  """
  names = check_split(split, families)
  if n < 0:
    raise ValueError(f"n must be >= 0, got {n}")
  rng = random.Random(f"phi_jax.procedural:{VERSION}:{seed}:{split}")
  out: list[Exercise] = []
  seen: set[str] = set()
  attempts = 0
  while len(out) < n:
    attempts += 1
    if attempts > 100 * n + 1000:
      raise ValueError(f"Only {len(out)} distinct exercises of split {split!r} (families "
                       f"{names}) in {attempts - 1} draws; ask for fewer or allow more families")
    family = rng.choice(names)
    draw = random.Random(rng.getrandbits(64))
    task = FAMILIES[family](draw)
    if not _in_split(family, f"{family}:{task.params!r}", split):
      continue
    exercise = _render(family, task, draw)
    text = exercise.prompt + exercise.solution
    if text not in seen:
      seen.add(text)
      out.append(exercise)
  return out


def format_response(exercise: Exercise) -> str:
  """The exercise as a teacher is asked to write one: a ```python block with the function
  (signature, docstring, body) and then its asserts."""
  return ("```python\n" + exercise.prompt + exercise.solution + "\n\n" + "\n".join(exercise.tests)
          + "\n```\n")


def run_programs(programs: Sequence[str], *, workers: Optional[int] = None,
                 timeout_s: float = 10.0) -> list[Any]:
  """Runs programs in the sandbox (`phi_jax.evals.execution.execute_many`), each followed by a
  line printing a random sentinel that 'passed' requires: a program that exits early (e.g.
  `sys.exit(0)` in a completion, before the asserts) fails."""
  from phi_jax.evals import execution  # pylint: disable=g-import-not-at-top
  sentinel = f"__phi_jax_exercise_done_{secrets.token_hex(8)}__"
  return execution.execute_many([p + f"\nprint({sentinel!r})\n" for p in programs],
                                workers=workers, sentinels=[sentinel] * len(programs),
                                timeout_s=timeout_s)


def verify(exercises: Sequence[Exercise], *, workers: Optional[int] = None,
           timeout_s: float = 10.0) -> list[Any]:
  """Runs each reference solution against its asserts in the sandbox -> one ExecResult each
  (`.passed`, `.status`, `.stderr`)."""
  return run_programs([ex.program() for ex in exercises], workers=workers, timeout_s=timeout_s)


def evaluate_exercises(exercises: Sequence[Exercise], completions: Sequence[Any], *,
                       k: Sequence[int] = (1,), workers: Optional[int] = None,
                       timeout_s: float = 10.0) -> dict[str, Any]:
  """Execution-based pass@k on procedural exercises (HumanEval protocol; the unbiased
  estimator of `phi_jax.evals.passk`).

  Args:
    exercises: the problems.
    completions: per exercise, one completion (str) or a list of n samples; a completion
      continues the prompt (the function body), as in HumanEval.
    k: the pass@k values to report; each needs k <= the number of samples of every problem.

  Returns:
    {'pass@1': float, ..., 'num_problems', 'samples_per_problem' (min),
     'per_family': {family: pass@1}, 'problems': [{'id', 'family', 'passed': [bool], 'status':
     [str]}]}.
  """
  if len(completions) != len(exercises):
    raise ValueError(f"{len(completions)} completions for {len(exercises)} exercises: pass one "
                     "entry (a string or a list of samples) per exercise")
  samples = [[c] if isinstance(c, str) else list(c) for c in completions]
  if not exercises or min(len(s) for s in samples) == 0:
    raise ValueError("every exercise needs at least one completion")
  n_min = min(len(s) for s in samples)
  if any(kk < 1 or kk > n_min for kk in k):
    raise ValueError(f"k={tuple(k)} needs 1 <= k <= the fewest samples per problem ({n_min})")
  from phi_jax.evals.passk import pass_at_k  # pylint: disable=g-import-not-at-top
  programs = [ex.program(c) for ex, cs in zip(exercises, samples) for c in cs]
  results = iter(run_programs(programs, workers=workers, timeout_s=timeout_s))
  problems = []
  for ex, cs in zip(exercises, samples):
    rs = [next(results) for _ in cs]
    problems.append({"id": ex.id, "family": ex.family, "passed": [bool(r.passed) for r in rs],
                     "status": [r.status for r in rs]})
  out: dict[str, Any] = {}
  for kk in k:
    out[f"pass@{kk}"] = sum(pass_at_k(len(p["passed"]), sum(p["passed"]), kk)
                            for p in problems) / len(problems)
  per_family: dict[str, list[float]] = {}
  for p in problems:
    per_family.setdefault(p["family"], []).append(sum(p["passed"]) / len(p["passed"]))
  out.update(num_problems=len(problems), samples_per_problem=n_min,
             per_family={f: sum(v) / len(v) for f, v in sorted(per_family.items())},
             problems=problems)
  return out
