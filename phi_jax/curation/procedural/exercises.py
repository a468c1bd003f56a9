"""Drawing exercises from the families, the splits, and verification / pass@k in the sandbox."""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import random
import string
import textwrap
from typing import Any, Callable, Optional, Sequence

from phi_jax.curation.procedural import control, dicts, drills, lists, numbers, strings
from phi_jax.curation.procedural.grammar import (ARG_NAMES, HELDOUT_FAMILIES, SPLITS,
                                                VALIDATION_FRACTION,
                                                VERSION, Exercise, Task)

FAMILIES: dict[str, Callable[[random.Random], Task]] = {  # the draw order: keep it
    "arith_linear": numbers.arith_linear,
    "arith_poly": numbers.arith_poly,
    "clamp": numbers.clamp,
    "digits": numbers.digits,
    "divisible": numbers.divisible,
    "fizzbuzz": numbers.fizzbuzz,
    "range_sum": numbers.range_sum,
    "gcd_lcm": numbers.gcd_lcm,
    "count_chars": strings.count_chars,
    "string_transform": strings.string_transform,
    "palindrome": strings.palindrome,
    "word_stats": strings.word_stats,
    "caesar": strings.caesar,
    "run_length": strings.run_length,
    "char_frequency": strings.char_frequency,
    "string_case": strings.string_case,
    "filter_map_reduce": lists.filter_map_reduce,
    "running": lists.running,
    "pairwise": lists.pairwise,
    "windows": lists.windows,
    "kth": lists.kth,
    "rotate": lists.rotate,
    "merge": lists.merge,
    "dedupe": lists.dedupe,
    "pair_count": lists.pair_count,
    "dict_filter": dicts.dict_filter,
    "group_by": dicts.group_by,
    "word_count": dicts.word_count,
    "grade": control.grade,
    "piecewise": control.piecewise,
    "loop_until": control.loop_until,
    "matrix": control.matrix,
}


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


def variant_constants(params: tuple) -> tuple:
  """The constants of a parameterisation: what two exercises of one task shape differ in. A
  leading str / bool names the shape (the family's mode); '', 0 and None are placeholders."""
  rest = params[1:] if params and isinstance(params[0], (str, bool)) else params
  return tuple(p for p in rest if not (isinstance(p, (str, int, type(None))) and not p))


def split_of(family: str, params: tuple) -> str:
  """'test' for a held-out family; 'validation' for a parameterisation with constants whose hash
  is below VALIDATION_FRACTION (an unseen variant of a task shape that 'train' has); else 'train'.
  A shape without constants (e.g. gcd_lcm's 'lcm') is always 'train': holding it out would make
  a new task, not a variant."""
  if family in HELDOUT_FAMILIES:
    return "test"
  if variant_constants(params) and _unit_hash(f"{family}:{params!r}") < VALIDATION_FRACTION:
    return "validation"
  return "train"


def _in_split(family: str, params: tuple, split: str) -> bool:
  return split == "all" or split_of(family, params) == split


MAX_REDRAWS = 200  # draws of one family to find one in the split

# Docstring variety (VERSION 2): how the summary opens, and what follows it.
OPENINGS = ("Return ", "Return ", "Returns ", "Compute and return ", "This function returns ")
DOC_STYLES = ("doctest", "doctest", "example", "args", "summary")


def _render(family: str, task: Task, rng: random.Random) -> Exercise:
  name = rng.choice(list(task.names))
  argnames: list[str] = []
  for pool, _ in task.args:
    argnames.append(rng.choice([a for a in ARG_NAMES[pool] if a not in argnames and a != name]))
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
  summary = string.Template(task.doc).substitute(mapping)
  if summary.startswith("Return "):
    summary = rng.choice(OPENINGS) + summary[len("Return "):]
  doc = textwrap.fill(summary, width=92, initial_indent="    ", subsequent_indent="    ")
  style = rng.choice(DOC_STYLES)
  if style == "doctest":
    tail = f"\n\n    >>> {example[0]}\n    {example[1]}\n    "
  elif style == "example":
    tail = f"\n\n    Example: {example[0]} returns {example[1]}.\n    "
  elif style == "args":
    lines = "".join(f"        {a}: {t}\n" for a, (_, t) in zip(argnames, task.args))
    tail = (f"\n\n    Args:\n{lines}\n    Returns:\n        {task.returns}\n\n"
            f"    >>> {example[0]}\n    {example[1]}\n    ")
  else:  # 'summary': the docstring alone
    tail = ""
  prompt = f"def {name}({params}) -> {task.returns}:\n    \"\"\"{doc[4:]}{tail}\"\"\"\n"
  key = f"{family}:{task.params!r}"
  digest = hashlib.sha256((prompt + body + "\n".join(tests)).encode("utf-8")).hexdigest()
  return Exercise(id=f"{family}-{digest[:12]}", family=family, prompt=prompt, solution=body,
                  tests=tuple(tests), entry_point=name, key=key,
                  split=split_of(family, task.params), summary=summary,
                  example=(example[0], example[1]))


def generate(n: int, seed: int = 0, split: str = "train",
             families: Optional[Sequence[str]] = None) -> list[Exercise]:
  """`n` distinct exercises of `split` (see the module doc), deterministic in all arguments.

  Families are drawn uniformly, so every split is balanced across its families: a family is
  chosen, then drawn from until a draw falls in the split (up to MAX_REDRAWS times; a family that
  never does, e.g. one without constants in 'validation', leaves the candidates). A draw equal
  to an earlier one is skipped. Raises ValueError when the split cannot yield `n` distinct
  exercises.
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
    if attempts > 100 * n + 1000 or not names:
      raise ValueError(f"Only {len(out)} distinct exercises of split {split!r} (families "
                       f"{names}) in {attempts - 1} draws; ask for fewer or allow more families")
    family = rng.choice(names)
    for _ in range(MAX_REDRAWS):
      draw = random.Random(rng.getrandbits(64))
      task = FAMILIES[family](draw)
      if _in_split(family, task.params, split):
        break
    else:
      names = [f for f in names if f != family]
      continue
    exercise = _render(family, task, draw)
    text = exercise.prompt + exercise.solution
    if text not in seen:
      seen.add(text)
      out.append(exercise)
  return out


def generate_drills(n: int, seed: int = 0) -> list[Exercise]:
  """`n` distinct binding drills (`drills`: training-only, never evaluated), rendered like the
  exercises (names, docstring styles); deterministic in (n, seed)."""
  rng = random.Random(f"phi_jax.procedural.drills:{VERSION}:{seed}")
  names = sorted(drills.DRILLS)
  out: list[Exercise] = []
  seen: set[str] = set()
  for _ in range(100 * n + 1000):
    if len(out) == n:
      return out
    family = rng.choice(names)
    draw = random.Random(rng.getrandbits(64))
    exercise = dataclasses.replace(_render(family, drills.DRILLS[family](draw), draw),
                                   split="train")
    if exercise.text not in seen:
      seen.add(exercise.text)
      out.append(exercise)
  raise ValueError(f"only {len(out)} distinct drills in {100 * n + 1000} draws")


def format_response(exercise: Exercise) -> str:
  """The exercise as a teacher is asked to write one: a ```python block with the function
  (signature, docstring, body) and then its asserts."""
  return ("```python\n" + exercise.prompt + exercise.solution + "\n\n" + "\n".join(exercise.tests)
          + "\n```\n")


def run_programs(programs: Sequence[str], *, workers: Optional[int] = None,
                 timeout_s: float = 10.0, cpu_s: Optional[float] = None) -> list[Any]:
  """Runs programs in the sandbox with a sentinel after them (`evals.functions.run_programs`)."""
  from phi_jax.evals import functions  # pylint: disable=g-import-not-at-top
  return functions.run_programs(programs, workers=workers, timeout_s=timeout_s, cpu_s=cpu_s)


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
     'per_family': {family: pass@1}, 'isolation': {'level', 'reason', ...} (the sandbox's),
     'problems': [{'id', 'family', 'passed': [bool], 'status': [str]}]}.
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
  from phi_jax.evals import execution  # pylint: disable=g-import-not-at-top
  out.update(num_problems=len(problems), samples_per_problem=n_min,
             per_family={f: sum(v) / len(v) for f, v in sorted(per_family.items())},
             isolation=execution.isolation().as_dict(),  # the sandbox level and why
             problems=problems)
  return out
