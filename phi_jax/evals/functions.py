"""Function-writing problems scored by execution: greedy bodies, pass@1 with a 95% interval.

A problem is anything with `id`, `family`, `prompt` (a signature and docstring ending in a
newline) and `program(body) -> str` (prompt + body + its asserts): the procedural exercises
(`phi_jax.curation.procedural.Exercise`) and the hand-written `problems.HANDWRITTEN`.

    bodies = complete_bodies(cfg, params, tokenizer, [p.prompt for p in problems])
    result = evaluate(problems, bodies)
    result['pass@1'], result['ci95'], result['parse_rate'], result['per_family']

Generation is greedy (`codegen.complete`, prompts batched in length order, joint decoding of
prompt + new tokens so word-boundary spaces survive), cut at HumanEval-style stop sequences and
at the first non-empty line that starts at column 0: the function body ends there. Execution is
`run_programs`: the sandbox (`execution.execute_many`) with a random sentinel printed after the
asserts, so a body that exits early (`sys.exit(0)`) fails.
"""

from __future__ import annotations

import ast
import math
import secrets
from typing import Any, Optional, Protocol, Sequence

from phi_jax.evals import codegen

STOP = ("\ndef ", "\nclass ", "\nif __name__", "\nprint(", "\nassert", "\n#", '\n"""', "\n```")


class Problem(Protocol):
  id: str
  family: str
  prompt: str

  def program(self, completion: Optional[str] = None) -> str: ...


def function_body(completion: str) -> str:
  """The completion up to the first non-empty line that starts at column 0 (the body ends)."""
  out = []
  for line in completion.split("\n"):
    if line.strip() and not line[0].isspace():
      break
    out.append(line)
  return "\n".join(out).rstrip() + "\n"


def wilson(passed: int, n: int, z: float = 1.96) -> tuple[float, float]:
  """The 95% Wilson score interval of a binomial proportion passed / n."""
  if n == 0:
    return (0.0, 0.0)
  p = passed / n
  denom = 1 + z * z / n
  centre = (p + z * z / (2 * n)) / denom
  half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
  return (max(0.0, centre - half), min(1.0, centre + half))


def seed_interval(values: Sequence[float], bounds: Optional[tuple[float, float]] = None
                  ) -> tuple[float, float, float]:
  """(mean, lo, hi): the 95% Student-t interval of the mean of per-seed values (lo = hi = mean
  for one value; it says nothing about the spread then). `bounds`, e.g. (0, 1) for a rate: the
  interval is clipped to them (the t-interval of three rates near 0 reaches below 0)."""
  from scipy import stats  # pylint: disable=g-import-not-at-top
  values = [float(v) for v in values]
  if not values:
    raise ValueError("seed_interval needs at least one value")
  mean = sum(values) / len(values)
  if len(values) == 1:
    return (mean, mean, mean)
  var = sum((v - mean) ** 2 for v in values) / (len(values) - 1)
  half = float(stats.t.ppf(0.975, len(values) - 1)) * math.sqrt(var / len(values))
  lo, hi = mean - half, mean + half
  if bounds is not None:
    lo, hi = max(lo, bounds[0]), min(hi, bounds[1])
  return (mean, lo, hi)


def complete_bodies(cfg: Any, params: Any, tokenizer: Any, prompts: Sequence[str], *,
                    max_new_tokens: int = 128, batch_size: int = 32) -> list[str]:
  """One greedy function body per prompt (see the module doc)."""
  max_new_tokens = min(max_new_tokens, cfg.max_seq_len - 1)
  completions = codegen.complete(cfg, params, tokenizer, list(prompts), stop=STOP,
                                 max_new_tokens=max_new_tokens, batch_size=batch_size)
  return [function_body(c[0]) for c in completions]


def parses(prompt: str, body: str) -> bool:
  """Whether the body is not empty and prompt + body is valid Python."""
  if not body.strip():
    return False
  try:
    ast.parse(prompt + body)
  except (SyntaxError, ValueError):
    return False
  return True


def run_programs(programs: Sequence[str], *, workers: Optional[int] = None,
                 timeout_s: float = 10.0, cpu_s: Optional[float] = None) -> list[Any]:
  """Runs programs in the sandbox, each followed by a line printing a random sentinel that
  'passed' requires: a program that exits early (e.g. `sys.exit(0)` before the asserts) fails.

  timeout_s: wall-clock limit per program; cpu_s: CPU-time limit (default: timeout_s). A CPU
  limit well under the wall limit ends an endless loop the same way however loaded the machine
  is (a busy machine stretches wall time, not the CPU time a program uses)."""
  from phi_jax.evals import execution  # pylint: disable=g-import-not-at-top
  sentinel = f"__phi_jax_problem_done_{secrets.token_hex(8)}__"
  return execution.execute_many([p + f"\nprint({sentinel!r})\n" for p in programs],
                                workers=workers, sentinels=[sentinel] * len(programs),
                                timeout_s=timeout_s, cpu_s=cpu_s)


def evaluate(problems: Sequence[Problem], bodies: Sequence[str], *,
             workers: Optional[int] = None, timeout_s: float = 10.0,
             cpu_s: Optional[float] = 5.0) -> dict[str, Any]:
  """pass@1 of one body per problem.

  Returns {'pass@1', 'passed', 'n', 'ci95' (Wilson), 'parse_rate', 'per_family':
  {family: [passed, n]}, 'statuses': {status: count}, 'isolation' (the sandbox's level),
  'problems': [{'id', 'family', 'passed', 'status', 'parses', 'completion'}]}.
  """
  if len(bodies) != len(problems):
    raise ValueError(f"{len(bodies)} bodies for {len(problems)} problems: pass one per problem")
  if not problems:
    raise ValueError("no problems to evaluate")
  from phi_jax.evals import execution  # pylint: disable=g-import-not-at-top
  results = run_programs([p.program(b) for p, b in zip(problems, bodies)], workers=workers,
                         timeout_s=timeout_s, cpu_s=cpu_s)
  rows, per_family, statuses = [], {}, {}
  for p, b, r in zip(problems, bodies, results):
    ok = bool(r.passed)
    rows.append({"id": p.id, "family": p.family, "passed": ok, "status": r.status,
                 "parses": parses(p.prompt, b), "completion": b})
    fam = per_family.setdefault(p.family, [0, 0])
    fam[0] += ok
    fam[1] += 1
    statuses[r.status] = statuses.get(r.status, 0) + 1
  passed, n = sum(r["passed"] for r in rows), len(rows)
  return {"pass@1": passed / n, "passed": passed, "n": n, "ci95": wilson(passed, n),
          "parse_rate": sum(r["parses"] for r in rows) / n,
          "per_family": dict(sorted(per_family.items())), "statuses": statuses,
          "isolation": execution.isolation().as_dict(), "problems": rows}
