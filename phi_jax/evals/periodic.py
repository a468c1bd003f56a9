"""Evaluations during training, every N steps.

    evals = ml_collections.ConfigDict(dict(
        every=1000, tasks=['humaneval', 'mc:piqa:/data/piqa.jsonl'], limit=50))
    hook = make_periodic_eval(evals)
    metrics = hook(cfg, params, tokenizer, step)   # {} unless step % every == 0
    # -> {'eval/humaneval/pass@1': 0.12, 'eval/mc_piqa/acc': 0.61, ...}

Config fields: every (int; 0 = never), tasks (list of task strings as for `python -m phi_jax.eval`),
limit (problems / examples / documents per task; None = all), and optionally any field of
`tasks.Options` (num_samples, temperature, max_new_tokens, timeout_s, batch_size, num_fewshot,
data_dir, seq_len, ...) and out_dir (per-step results.json / results.md / *.jsonl under
out_dir/step_N). Greedy decoding by default, so successive evaluations are comparable.

In a multi-process run every process must call it (the parameters are gathered to every host
first and each evaluates them); only process 0 writes files.
"""

from __future__ import annotations

import dataclasses
import pathlib
from typing import Any, Callable

from phi_jax.evals import tasks as tasks_lib


def make_periodic_eval(evals_config: Any) -> Callable[..., dict[str, float]]:
  """A function (cfg, params, tokenizer, step) -> {'eval/<task>/<metric>': float}. Task strings
  are parsed here, so a bad one fails at startup rather than at the first evaluation."""
  every = int(evals_config.get("every", 0) or 0)
  specs = [tasks_lib.parse(t) for t in (evals_config.get("tasks") or [])]
  fields = {f.name for f in dataclasses.fields(tasks_lib.Options)}
  overrides = {k: evals_config.get(k) for k in fields
               if evals_config.get(k) is not None and k != "progress"}
  if "k" in overrides:
    overrides["k"] = tuple(overrides["k"])
  options = tasks_lib.Options(**overrides)
  if any(t.kind in ("humaneval", "mbpp") for t in specs):  # a too-weak sandbox fails at startup
    from phi_jax.evals import execution
    execution.log_isolation(execution.isolation(options.isolation,
                                                require=options.require_isolation))
  out_dir = evals_config.get("out_dir")

  def periodic_eval(cfg, params, tokenizer, step: int) -> dict[str, float]:
    if not every or not specs or step % every:
      return {}
    import jax
    if jax.process_count() > 1:  # global arrays -> full host copies on every process
      from jax.experimental import multihost_utils
      params = multihost_utils.process_allgather(params, tiled=True)
    metrics, results = {}, []
    for task in specs:
      result = tasks_lib.run(task, cfg, params, tokenizer, options)
      results.append(result)
      for name, value in tasks_lib.scalars(result).items():
        metrics[f"eval/{task.name}/{name}"] = value
    if out_dir and jax.process_index() == 0:
      tasks_lib.write_results(pathlib.Path(out_dir) / f"step_{step}", results, {"step": step})
    return metrics

  return periodic_eval
