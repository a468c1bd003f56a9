"""What a study measures on each arm's model: pass@1 (with 95% intervals) on held-out exercises,
hand-written problems and HumanEval, and greedy samples of shared prompts.

    result = measure(workdir, config.study)      # one arm's trained run -> a JSON-ready dict

Sets (`config.study`):
  validation    `n_validation` procedural exercises of the 'validation' split (seed `eval_seed`):
                unseen constants / characters / words of task shapes the training data has
  test          `n_test` exercises of the 'test' split: the HELDOUT_FAMILIES, task types no
                training set contains
  handwritten   `phi_jax.evals.problems.HANDWRITTEN`: simple tasks phrased unlike any generator
  humaneval     the 164 HumanEval problems (`humaneval_limit` first ones; 0 = skip)
Greedy decoding, `max_new_tokens`; bodies are cut where the function ends
(`evals.functions.function_body`) and run with their asserts in the sandbox.
"""

from __future__ import annotations

import pathlib
import time
from typing import Any

import jax
import ml_collections

from phi_jax.convert.load import load_model
from phi_jax.curation import procedural
from phi_jax.evals import functions, humaneval, problems

SAMPLES_PER_SET = 3  # completions kept per set for the report


def problem_sets(study: ml_collections.ConfigDict) -> dict[str, list[Any]]:
  """The evaluation problems of a study, by set name (see the module doc)."""
  sets: dict[str, list[Any]] = {}
  if study.n_validation:
    sets["validation"] = procedural.generate(study.n_validation, seed=study.eval_seed,
                                             split="validation")
  if study.n_test:
    sets["test"] = procedural.generate(study.n_test, seed=study.eval_seed, split="test")
  if study.handwritten:
    sets["handwritten"] = list(problems.HANDWRITTEN)
  return sets


def measure(workdir: str | pathlib.Path, study: ml_collections.ConfigDict) -> dict[str, Any]:
  """pass@1 of the run in `workdir` on every set of `study`, and its greedy samples."""
  start = time.time()
  model = load_model(workdir, require_tokenizer=True)
  cfg, params, tok = model.cfg, model.params, model.tokenizer
  out: dict[str, Any] = {"workdir": str(workdir), "step": model.step,
                         "num_params": int(sum(x.size for x in jax.tree.leaves(params))), "sets": {}}
  for name, items in problem_sets(study).items():
    bodies = functions.complete_bodies(cfg, params, tok, [p.prompt for p in items],
                                       max_new_tokens=study.max_new_tokens,
                                       batch_size=study.batch_size)
    result = functions.evaluate(items, bodies, workers=study.workers or None)
    rows = result.pop("problems")
    result["samples"] = [{"id": p.id, "prompt": p.prompt, "completion": r["completion"],
                          "passed": r["passed"]} for p, r in zip(items, rows)][:SAMPLES_PER_SET]
    result["passed_ids"] = [r["id"] for r in rows if r["passed"]]
    out["sets"][name] = result
  if study.humaneval_limit:
    he = humaneval.run(cfg, params, tok, k=(1,), limit=study.humaneval_limit, temperature=0.0,
                       num_samples=1, max_new_tokens=study.max_new_tokens,
                       batch_size=study.batch_size, workers=study.workers or None)
    n = he.get("num_problems", study.humaneval_limit)
    passed = round(he["pass@1"] * n)
    out["sets"]["humaneval"] = {"pass@1": he["pass@1"], "passed": passed, "n": n,
                                "ci95": functions.wilson(passed, n)}
  out["seconds"] = round(time.time() - start, 1)
  return out

