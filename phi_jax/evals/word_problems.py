"""Grade-school word problems, generated from templates, scored by running the model's Python.

phi-1.5 (arXiv 2309.05463, section 3) scores GSM8K by having the model write a Python function
whose return value is the answer. GSM8K cannot be downloaded here, so this is its offline stand-in:
each TEMPLATE is one kind of problem (a story with names, items and numbers drawn per problem, the
answer computed from them, and a worked solution in Python); the problems are held out BY
TEMPLATE: `split='train'` templates may appear (with their worked solutions) in training data,
`split='test'` templates never do, so passing a test problem needs the arithmetic structure
carried over to a story it has not seen.

    problems = make(n=200, split='test', seed=0)       # [WordProblem]
    problems[0].prompt      # def solution(): + the question as its docstring
    problems[0].solution    # a worked body: one named variable per step, then `return`
    problems[0].program(body)  # prompt + body + 'assert solution() == 23'
    result = functions.evaluate(problems, bodies)      # pass@1 with a Wilson interval

Every worked solution is checked against its own answer in `tests/test_phi1_5_ablation.py`.
"""

from __future__ import annotations

import dataclasses
import random
from typing import Callable, Optional

NAMES = ("Mia", "Tom", "Ava", "Leo", "Zoe", "Sam", "Ivy", "Max", "Nia", "Ben", "Ada", "Eli",
         "Kai", "Uma", "Ray", "Liv")
ITEMS = ("apples", "pens", "stickers", "marbles", "books", "cards", "shells", "coins",
         "cookies", "stamps", "beads", "balloons")
CONTAINERS = ("boxes", "bags", "jars", "packs", "baskets", "crates")


@dataclasses.dataclass(frozen=True)
class WordProblem:
  """One problem: `prompt` (signature + docstring), `solution` (a worked body), `answer`."""
  id: str
  family: str  # the template's name
  question: str
  answer: int
  solution: str

  @property
  def prompt(self) -> str:
    return f'def solution():\n    """{self.question}"""\n'

  def program(self, completion: Optional[str] = None) -> str:
    """prompt + body (the worked solution by default) + the assert on the answer."""
    body = self.solution if completion is None else completion
    return f"{self.prompt}{body}\n\nassert solution() == {self.answer!r}\n"

  @property
  def text(self) -> str:
    """The problem with its worked solution, as a training document."""
    return self.prompt + self.solution


Template = Callable[[random.Random], tuple[str, int, list[tuple[str, str]]]]


def _body(steps: list[tuple[str, str]]) -> str:
  """`name = expression` lines, then `return` of the last name."""
  lines = [f"    {name} = {expr}" for name, expr in steps]
  return "\n".join(lines + [f"    return {steps[-1][0]}"]) + "\n"


def _two(rng: random.Random) -> tuple[str, str]:
  a, b = rng.sample(NAMES, 2)
  return a, b


# ---- train templates -----------------------------------------------------------------------------

def buy_more(rng):
  name, item = rng.choice(NAMES), rng.choice(ITEMS)
  have, packs, per = rng.randint(2, 30), rng.randint(2, 9), rng.randint(2, 12)
  box = rng.choice(CONTAINERS)
  q = (f"{name} has {have} {item}. {name} buys {packs} {box} with {per} {item} in each. "
       f"How many {item} does {name} have now?")
  return q, have + packs * per, [("start", str(have)), ("bought", f"{packs} * {per}"),
                                 ("total", "start + bought")]


def give_away(rng):
  a, b = _two(rng)
  item = rng.choice(ITEMS)
  have = rng.randint(20, 90)
  given = rng.randint(2, have // 2)
  lost = rng.randint(1, have - given - 1)
  q = (f"{a} had {have} {item}. {a} gave {given} {item} to {b} and then lost {lost}. "
       f"How many {item} does {a} have left?")
  return q, have - given - lost, [("start", str(have)), ("after_gift", f"start - {given}"),
                                  ("left", f"after_gift - {lost}")]


def share_equally(rng):
  name, item = rng.choice(NAMES), rng.choice(ITEMS)
  friends, each = rng.randint(2, 9), rng.randint(2, 15)
  q = (f"{name} shares {friends * each} {item} equally among {friends} friends. "
       f"How many {item} does each friend get?")
  return q, each, [("total", str(friends * each)), ("friends", str(friends)),
                   ("each", "total // friends")]


def price_total(rng):
  name, item = rng.choice(NAMES), rng.choice(ITEMS)
  count, price, paid_extra = rng.randint(2, 12), rng.randint(2, 9), rng.randint(1, 20)
  q = (f"{name} buys {count} {item} that cost {price} dollars each, and pays {paid_extra} "
       f"dollars more for a bag. How many dollars does {name} spend?")
  return q, count * price + paid_extra, [("items_cost", f"{count} * {price}"),
                                         ("total", f"items_cost + {paid_extra}")]


def weekly_savings(rng):
  name = rng.choice(NAMES)
  per_week, weeks, spent = rng.randint(3, 20), rng.randint(2, 10), rng.randint(1, 15)
  q = (f"{name} saves {per_week} dollars every week for {weeks} weeks, then spends {spent} "
       f"dollars on a game. How many dollars does {name} have left?")
  return q, per_week * weeks - spent, [("saved", f"{per_week} * {weeks}"),
                                       ("left", f"saved - {spent}")]


def combine_two(rng):
  a, b = _two(rng)
  item = rng.choice(ITEMS)
  x, more = rng.randint(3, 40), rng.randint(2, 25)
  q = (f"{a} has {x} {item}. {b} has {more} more {item} than {a}. How many {item} do they "
       f"have together?")
  return q, x + (x + more), [("first", str(x)), ("second", f"first + {more}"),
                             ("together", "first + second")]


def rows_and_columns(rng):
  name, item = rng.choice(NAMES), rng.choice(ITEMS)
  rows, cols, removed = rng.randint(2, 12), rng.randint(2, 12), rng.randint(1, 5)
  q = (f"{name} puts {item} in {rows} rows of {cols}, then takes away {removed}. How many "
       f"{item} are left in the rows?")
  return q, rows * cols - removed, [("placed", f"{rows} * {cols}"),
                                    ("left", f"placed - {removed}")]


def half_then_add(rng):
  name, item = rng.choice(NAMES), rng.choice(ITEMS)
  have, found = 2 * rng.randint(5, 40), rng.randint(1, 20)
  q = (f"{name} had {have} {item} and gave half of them away. Then {name} found {found} "
       f"more. How many {item} does {name} have now?")
  return q, have // 2 + found, [("start", str(have)), ("kept", "start // 2"),
                                ("now", f"kept + {found}")]


# ---- test templates (never in training data) -------------------------------------------------

def times_as_many(rng):
  a, b = _two(rng)
  item = rng.choice(ITEMS)
  x, k = rng.randint(2, 15), rng.randint(2, 6)
  q = (f"{a} has {x} {item}. {b} has {k} times as many {item} as {a}. How many {item} does "
       f"{b} have?")
  return q, x * k, [("first", str(x)), ("second", f"first * {k}")]


def trips(rng):
  name, item = rng.choice(NAMES), rng.choice(ITEMS)
  per_trip, trips_, left = rng.randint(3, 12), rng.randint(2, 8), rng.randint(1, 10)
  q = (f"{name} carries {per_trip} {item} on each trip and makes {trips_} trips. {left} {item} "
       f"are still waiting. How many {item} were there at the start?")
  return q, per_trip * trips_ + left, [("carried", f"{per_trip} * {trips_}"),
                                       ("start", f"carried + {left}")]


def change_back(rng):
  name, item = rng.choice(NAMES), rng.choice(ITEMS)
  count, price = rng.randint(2, 6), rng.randint(2, 8)
  paid = count * price + rng.randint(1, 30)
  q = (f"{name} pays {paid} dollars for {count} {item} at {price} dollars each. How many "
       f"dollars of change does {name} get?")
  return q, paid - count * price, [("cost", f"{count} * {price}"), ("change", f"{paid} - cost")]


def groups_left_over(rng):
  name, item = rng.choice(NAMES), rng.choice(ITEMS)
  size, groups, extra = rng.randint(2, 9), rng.randint(2, 9), 0
  extra = rng.randint(1, size - 1) if size > 1 else 0
  total = size * groups + extra
  q = (f"{name} packs {total} {item} into groups of {size}. How many {item} are left over "
       f"after making as many full groups as possible?")
  return q, extra, [("total", str(total)), ("left_over", f"total % {size}")]


TEMPLATES: dict[str, dict[str, Template]] = {
    "train": {f.__name__: f for f in (buy_more, give_away, share_equally, price_total,
                                      weekly_savings, combine_two, rows_and_columns,
                                      half_then_add)},
    "test": {f.__name__: f for f in (times_as_many, trips, change_back, groups_left_over)},
}


def make(n: int, split: str = "test", seed: int = 0) -> list[WordProblem]:
  """`n` problems from the `split` templates, round robin over templates; deterministic, and
  distinct seeds give distinct problems (the seed is mixed into each problem's generator)."""
  if split not in TEMPLATES:
    raise ValueError(f"split={split!r}: choose one of {sorted(TEMPLATES)}")
  templates = list(TEMPLATES[split].items())
  out, seen = [], set()
  i = 0
  while len(out) < n:
    name, template = templates[i % len(templates)]
    rng = random.Random(f"{split}:{seed}:{i}")
    question, answer, steps = template(rng)
    i += 1
    if question in seen:
      if i > 50 * n + 100:
        raise ValueError(f"cannot make {n} distinct {split} problems")
      continue
    seen.add(question)
    out.append(WordProblem(id=f"{split}/{name}/{len(out)}", family=name, question=question,
                           answer=answer, solution=_body(steps)))
  return out
