"""Functional correctness of sampled programs: run each completion with its problem's tests in
the sandbox (`execution.execute_many`), count passing samples per problem, report pass@k.

Shared by HumanEval and MBPP. A program passes only if it exits 0 within the limits AND prints a
random per-run sentinel line that the harness appends after the tests, so a completion that
exits early (`exit()`, `sys.exit(0)`, `os._exit(0)`) before the tests ran does not pass. The
sentinel is in the program text, so code written to forge it could; it guards against accidents,
which is what sampled programs do (see README "Sandbox threat model").
"""

from __future__ import annotations

import collections
import secrets
from typing import Any, Callable, Optional, Sequence

from phi_jax.evals import execution, passk


def sentinel_line() -> str:
  return "phi-jax-tests-done-" + secrets.token_hex(16)


def score(problems: Sequence[dict[str, Any]], samples: Sequence[dict[str, Any]],
          build: Callable[[dict[str, Any], str, str], str], *, k: Sequence[int] = (1,),
          timeout_s: float = 10.0, cpu_s: Optional[float] = None, memory_mb: int = 1024,
          workers: Optional[int] = None, isolation_level: str = "auto",
          require_isolation: Optional[str] = None, progress: bool = False) -> dict[str, Any]:
  """Scores `samples` ({'task_id', 'completion'}) against `problems` (with 'task_id').

  build(problem, completion, sentinel) -> the program to run.
  timeout_s / cpu_s: wall / CPU limits per program (cpu_s default: timeout_s).
  isolation_level / require_isolation: the sandbox level ('auto' = strongest available) and the
  weakest one accepted (`execution.isolation`); IsolationError before anything runs if unmet.
  Returns {'pass@k': ..., 'num_problems', 'num_samples', 'statuses': {status: count},
  'isolation': {'level', 'reason', ...} (execution.Isolation.as_dict), 'problems': [{'task_id',
  'n', 'correct', 'pass@k'..., 'samples': [{'completion', 'status', 'reason', 'stderr'}]}]} over
  the problems that have samples, in problem order.
  """
  iso = execution.isolation(isolation_level, require=require_isolation)
  by_id = {str(p["task_id"]): p for p in problems}
  for s in samples:
    if str(s.get("task_id")) not in by_id:
      raise ValueError(f"sample for unknown task_id {s.get('task_id')!r}; known ids look like "
                       f"{next(iter(by_id), None)!r}")
    if not isinstance(s.get("completion"), str):
      raise ValueError(f"sample for {s['task_id']!r} has no string 'completion'")
  sentinels = [sentinel_line() for _ in samples]
  programs = [build(by_id[str(s["task_id"])], s["completion"], sentinel)
              for s, sentinel in zip(samples, sentinels)]
  results = execution.execute_many(programs, sentinels=sentinels, workers=workers,
                                   timeout_s=timeout_s, cpu_s=cpu_s, memory_mb=memory_mb,
                                   isolation_level=isolation_level,
                                   require_isolation=require_isolation, progress=progress)
  grouped: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)
  for s, r in zip(samples, results):
    grouped[str(s["task_id"])].append({
        "completion": s["completion"], "status": r.status, "passed": r.passed,
        "reason": r.reason, "stderr": r.stderr[-2000:]})
  per_problem = []
  for task_id in (str(p["task_id"]) for p in problems):
    if task_id not in grouped:
      continue
    rows = grouped[task_id]
    n, c = len(rows), sum(row["passed"] for row in rows)
    per_problem.append({"task_id": by_id[task_id]["task_id"], "n": n, "correct": c,
                        **passk.mean_pass_at_k([(n, c)], k), "samples": rows})
  counts = [(row["n"], row["correct"]) for row in per_problem]
  return {**passk.mean_pass_at_k(counts, k), "num_problems": len(per_problem),
          "num_samples": len(samples),
          "statuses": dict(collections.Counter(r.status for r in results)),
          "isolation": iso.as_dict(),
          "problems": per_problem}
