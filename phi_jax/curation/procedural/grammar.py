"""The pieces every task family is drawn with: the `Exercise` record, a family's `Task`
(before names are chosen), and seeded helpers for names, numbers and text."""

from __future__ import annotations

import dataclasses
import random
from typing import Any, Callable, Optional, Sequence

VERSION = 2
HELDOUT_FAMILIES = ("run_length", "rotate", "grade", "pair_count", "group_by", "string_case")
VALIDATION_FRACTION = 0.1
SPLITS = ("train", "validation", "test", "all")

WORDS = ("apple", "river", "stone", "cloud", "tiger", "lemon", "piano", "rocket", "garden",
          "window", "silver", "orange", "planet", "bridge", "candle", "forest", "pencil", "island",
          "button", "dragon", "yellow", "mirror", "anchor", "basket", "castle", "violet", "pepper",
          "summer", "winter", "bottle", "cotton", "marble", "jungle", "engine", "falcon", "harbor",
          "kitten", "ladder", "meadow", "needle", "oyster", "puzzle", "quartz", "saddle", "tunnel",
          "umbrella", "velvet", "walnut", "zebra", "ant", "bee", "cat", "dog", "egg", "fig", "gum",
          "hat", "ink", "jam", "key", "log", "map", "nut", "owl", "pig", "rag", "sun", "toy", "van")
ARG_NAMES = {
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
  split: str = "train"  # 'train', 'validation' or 'test' (exercises.split_of)
  summary: str = ""     # the docstring's task statement, unwrapped
  example: tuple[str, str] = ("", "")  # (call, repr of its result): the tests' first non-trivial

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
class Task:
  """A family's draw, before names are chosen. `body` uses $a, $b, $c for the arguments."""

  names: Sequence[str]        # candidate function names
  args: Sequence[tuple[str, str]]  # (name pool, annotation)
  returns: str
  doc: str                    # may use $a, $b, $c
  body: str                   # indented 4 spaces, uses $a, $b, $c
  ref: Callable[..., Any]     # Python twin of body
  inputs: Sequence[tuple]     # test arguments
  params: tuple               # the parameterisation (for the split and the key)


def draw_names(rng: random.Random, verbs: Sequence[str], objects: Sequence[str],
           k: int = 6) -> list[str]:
  """k candidate function names verb_object (never the same word twice)."""
  out = []
  while len(out) < k:
    verb, obj = rng.choice(verbs), rng.choice(objects)
    if verb != obj:
      out.append(f"{verb}_{obj}")
  return out


def poly_text(coefs: Sequence[int], var: str, power: str) -> str:
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


def draw_ints(rng: random.Random, lo: int = -9, hi: int = 20,
              n: tuple[int, int] = (3, 8)) -> list[int]:
  return [rng.randint(lo, hi) for _ in range(rng.randint(*n))]


def draw_text(rng: random.Random, k: tuple[int, int] = (2, 5), caps: bool = False) -> str:
  words = [rng.choice(WORDS) for _ in range(rng.randint(*k))]
  if caps:
    words = [w.capitalize() if rng.random() < 0.4 else w for w in words]
  return " ".join(words)


def list_inputs(rng: random.Random, m: int = 4, **kw) -> list[tuple]:
  return [([],)] + [(draw_ints(rng, **kw),) for _ in range(m)]


