r'''MBPP (Austin et al. 2021, "Program Synthesis with Large Language Models"): short Python tasks
with three assert tests each, scored by pass@k in the sandbox.

    problems = load_problems('/data/mbpp.jsonl')           # split='test': task ids 11..510
    result = run(cfg, params, tokenizer, path='/data/mbpp.jsonl', num_samples=1)

Data: the standard `mbpp.jsonl` (one JSON object a line with task_id, text, code, test_list,
test_setup_code, challenge_test_list) from a path you give; nothing is downloaded. The
"sanitized" release (a JSON list, `prompt` instead of `text`) loads too. Splits by task id, as
released: prompt 1-10, test 11-510, validation 511-600, train 601-974; 'all' keeps every problem.

Prompt (the phi-1 / bigcode-evaluation-harness template: the description and the first test in a
docstring, the model writes the code after it):

    '"""\n' + text + '\n' + test_list[0] + '\n"""\n'

The completion is cut at the stop sequences below. The program run is

    test_setup_code + '\n' + prompt + completion + '\n' + '\n'.join(test_list)
    (+ challenge_test_list if asked) + '\nprint(SENTINEL)\n'

and passes iff it exits 0 and printed the sentinel line (see correctness.py).
'''

from __future__ import annotations

import json
import os
import pathlib
from typing import Any, Optional, Sequence

from phi_jax.evals import correctness

STOP_SEQUENCES = ("\nclass", "\nassert", '\n"""', "\nprint", "\nif", "\n<|/", "\n```")
SPLITS = {"prompt": (1, 10), "test": (11, 510), "validation": (511, 600), "train": (601, 974)}


def load_problems(path: str | os.PathLike, split: str = "test") -> list[dict[str, Any]]:
  """Problems from an MBPP file (.jsonl, or a .json list), in file order, restricted to `split`
  ('all' or one of SPLITS). Each has task_id, text, code, test_list, test_setup_code,
  challenge_test_list."""
  if split != "all" and split not in SPLITS:
    raise ValueError(f"unknown MBPP split {split!r}; expected 'all' or one of {list(SPLITS)}")
  path = pathlib.Path(path)
  raw = path.read_text(encoding="utf-8")
  if raw.lstrip().startswith("["):
    records = [(i + 1, r) for i, r in enumerate(json.loads(raw))]
  else:
    records = [(i + 1, json.loads(line)) for i, line in enumerate(raw.splitlines()) if line.strip()]
  problems = []
  for line_no, r in records:
    text = r.get("text", r.get("prompt"))
    if text is None or "task_id" not in r or not r.get("test_list"):
      raise ValueError(f"{path}:{line_no}: an MBPP problem needs task_id, text (or prompt) and a "
                       f"non-empty test_list; got keys {sorted(r)}")
    setup = r.get("test_setup_code") or ""
    if r.get("test_imports"):  # the sanitized release lists imports separately
      setup = "\n".join(r["test_imports"]) + ("\n" + setup if setup else "")
    problems.append({"task_id": r["task_id"], "text": text, "code": r.get("code", ""),
                     "test_list": list(r["test_list"]), "test_setup_code": setup,
                     "challenge_test_list": list(r.get("challenge_test_list") or [])})
  if split != "all":
    lo, hi = SPLITS[split]
    kept = [p for p in problems if isinstance(p["task_id"], int) and lo <= p["task_id"] <= hi]
    if not kept:
      raise ValueError(f"{path} has no problems with task ids {lo}..{hi} (MBPP's {split!r} "
                       "split); pass split='all' to use every problem in the file")
    problems = kept
  return problems


def prompt(problem: dict[str, Any]) -> str:
  return f'"""\n{problem["text"]}\n{problem["test_list"][0]}\n"""\n'


def make_program(include_challenge: bool = False):
  def program(problem: dict[str, Any], completion: str, sentinel: str) -> str:
    tests = problem["test_list"] + (problem["challenge_test_list"] if include_challenge else [])
    return (problem["test_setup_code"] + "\n" + prompt(problem) + completion + "\n"
            + "\n".join(tests) + "\n" + f"print({sentinel!r})\n")
  return program


program = make_program(False)


def evaluate(samples: Sequence[dict[str, Any]], problems: Sequence[dict[str, Any]],
             k: Sequence[int] = (1,), *, include_challenge: bool = False, timeout_s: float = 10.0,
             cpu_s: Optional[float] = None, workers: Optional[int] = None,
             isolation_level: str = "auto", require_isolation: Optional[str] = None,
             progress: bool = False) -> dict[str, Any]:
  """pass@k of `samples` ({'task_id', 'completion'}) against `problems` (from load_problems)."""
  return correctness.score(problems, samples, make_program(include_challenge), k=k,
                           timeout_s=timeout_s, cpu_s=cpu_s, workers=workers,
                           isolation_level=isolation_level, require_isolation=require_isolation,
                           progress=progress)


def generate_samples(cfg, params, tokenizer, problems: Sequence[dict[str, Any]], *,
                     num_samples: int = 1, temperature: float = 0.0, top_p: Optional[float] = None,
                     max_new_tokens: int = 512, batch_size: int = 16, seed: int = 0,
                     progress: bool = False) -> list[dict[str, Any]]:
  from phi_jax.evals import codegen
  completions = codegen.complete(cfg, params, tokenizer, [prompt(p) for p in problems],
                                 stop=STOP_SEQUENCES, num_samples=num_samples,
                                 max_new_tokens=max_new_tokens, temperature=temperature,
                                 top_p=top_p, batch_size=batch_size, seed=seed, progress=progress)
  return [{"task_id": p["task_id"], "completion": c}
          for p, cs in zip(problems, completions) for c in cs]


def run(cfg, params, tokenizer, *, path: str | os.PathLike, split: str = "test",
        k: Sequence[int] = (1,), limit: Optional[int] = None, timeout_s: float = 10.0,
        workers: Optional[int] = None, isolation_level: str = "auto",
        require_isolation: Optional[str] = None, **generation) -> dict[str, Any]:
  """Generates samples for the split's problems (the first `limit`) and evaluates them."""
  problems = load_problems(path, split)[:limit]
  samples = generate_samples(cfg, params, tokenizer, problems, **generation)
  return evaluate(samples, problems, k, timeout_s=timeout_s, workers=workers,
                  isolation_level=isolation_level, require_isolation=require_isolation,
                  progress=generation.get("progress", False))
