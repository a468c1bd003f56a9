"""Evaluates the phi-1.5 ablation: word problems by running the model's Python, prose perplexity.

    python experiments/phi1_5/evaluate.py DIR [--out experiments/phi1_5] [--n_test 200]

DIR is the sweep's directory (`python -m phi_jax.sweep --config=configs/phi1_5.py:ablation
--workdir=DIR`). For every finished run DIR/arm=ARM,seed=S (cached in its phi15_eval.json):

  word problems, held-out templates   `evals.word_problems` split 'test': templates that are in
                                      no arm's training data; the model completes
                                      `def solution():` + the question as its docstring
                                      (greedy), and the body runs in the sandbox
                                      against `assert solution() == answer`
  word problems, training templates   split 'train' with another seed: the templates the
                                      synthetic data teaches, numbers and names not seen
  held-out prose                      loss per token and bits per byte on DIR/corpus/
                                      heldout_web.jsonl (python3.11-doc files no arm trains on)

then per arm the mean over seeds with a 95% Student-t interval across seeds
(`functions.seed_interval`), into --out/results.json and --out/results.md.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
from typing import Any

ROOT = pathlib.Path(__file__).resolve().parents[2]
ARMS = ("phi-1.5", "phi-1.5-web", "phi-1.5-web-only")
METRICS = ("test_pass@1", "train_templates_pass@1", "prose_loss", "prose_bits_per_byte")


def evaluate_run(workdir: pathlib.Path, corpus: pathlib.Path, n_test: int,
                 n_train: int, max_new_tokens: int) -> dict[str, Any]:
  """The measurements of one run (see the module doc); cached in workdir/phi15_eval.json."""
  from phi_jax.convert.load import load_model  # pylint: disable=g-import-not-at-top
  # pylint: disable=g-import-not-at-top
  from phi_jax.evals import functions, perplexity, word_problems
  settings = {"n_test": n_test, "n_train": n_train, "max_new_tokens": max_new_tokens,
              "step": json.loads((workdir / "summary.json").read_text()).get("step")}
  cache = workdir / "phi15_eval.json"
  if cache.exists():
    cached = json.loads(cache.read_text())
    if cached.get("settings") == settings:
      return cached
  model = load_model(workdir)
  out: dict[str, Any] = {"settings": settings}
  for key, split, n, seed in (("test", "test", n_test, 0), ("train_templates", "train", n_train,
                                                             7)):
    problems = word_problems.make(n, split=split, seed=seed)
    bodies = functions.complete_bodies(model.cfg, model.params, model.tokenizer,
                                       [p.prompt for p in problems],
                                       max_new_tokens=max_new_tokens, batch_size=32)
    result = functions.evaluate(problems, bodies)
    out[f"{key}_pass@1"] = result["pass@1"]
    out[f"{key}_ci95"] = result["ci95"]
    out[f"{key}_parse_rate"] = result["parse_rate"]
    out[f"{key}_per_family"] = result["per_family"]
    out[f"{key}_samples"] = [{"prompt": p.prompt, "completion": r["completion"],
                              "passed": r["passed"]}
                             for p, r in zip(problems[:3], result["problems"][:3])]
  texts = [json.loads(line)["text"] for line in
           (corpus / "heldout_web.jsonl").read_text().splitlines() if line.strip()]
  prose = perplexity.evaluate_texts(model.cfg, model.params, model.tokenizer, texts,
                                    seq_len=256, batch_size=8)
  out["prose_loss"] = prose["loss"]
  out["prose_bits_per_byte"] = prose["bits_per_byte"]
  out["prose_tokens"] = prose["tokens"]
  cache.write_text(json.dumps(out, indent=1) + "\n")
  return out


def aggregate(per_run: dict[str, dict[str, Any]]) -> dict[str, Any]:
  """Per arm: each metric's mean over seeds and its 95% t-interval, and the per-seed values."""
  from phi_jax.evals import functions  # pylint: disable=g-import-not-at-top
  out = {}
  for arm in ARMS:
    runs = {k: v for k, v in per_run.items() if k.startswith(f"arm={arm},")}
    if not runs:
      continue
    out[arm] = {"seeds": len(runs), "runs": sorted(runs)}
    for metric in METRICS:
      values = [r[metric] for r in runs.values()]
      rate = metric.endswith("pass@1")  # clipped to [0, 1]; losses are not bounded above
      mean, lo, hi = functions.seed_interval(values, bounds=(0.0, 1.0) if rate else None)
      out[arm][metric] = {"mean": mean, "ci95_seeds": [lo, hi], "values": values}
  return out


def table(summary: dict[str, Any]) -> str:
  lines = ["| arm | seeds | word problems, held-out templates | training templates | "
           "held-out prose loss | prose bits/byte |", "|---|---|---|---|---|---|"]
  for arm, r in summary.items():
    def cell(metric: str, pct: bool) -> str:
      m = r[metric]
      f = (lambda x: f"{100 * x:.1f}%") if pct else (lambda x: f"{x:.3f}")  # noqa: E731
      return f"{f(m['mean'])} [{f(m['ci95_seeds'][0])}, {f(m['ci95_seeds'][1])}]"
    lines.append(f"| {arm} | {r['seeds']} | {cell('test_pass@1', True)} | "
                 f"{cell('train_templates_pass@1', True)} | {cell('prose_loss', False)} | "
                 f"{cell('prose_bits_per_byte', False)} |")
  return "\n".join(lines) + "\n"


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("workdir")
  parser.add_argument("--out", default=str(ROOT / "experiments" / "phi1_5"))
  parser.add_argument("--n_test", type=int, default=200)
  parser.add_argument("--n_train", type=int, default=100)
  parser.add_argument("--max_new_tokens", type=int, default=96)
  args = parser.parse_args(argv)
  from phi_jax import sweep_table  # pylint: disable=g-import-not-at-top
  workdir, out = pathlib.Path(args.workdir).absolute(), pathlib.Path(args.out)
  per_run, missing = {}, []
  for run_dir in sorted(workdir.glob("arm=*")):
    summary = sweep_table.read_summary(run_dir) or {}
    config = json.loads((run_dir / "config.json").read_text()) if (
        run_dir / "config.json").exists() else {}
    if not summary or summary.get("step") != config.get("total_steps"):
      missing.append(run_dir.name)
      continue
    per_run[run_dir.name] = evaluate_run(run_dir, workdir / "corpus", args.n_test, args.n_train,
                                         args.max_new_tokens)
    r = per_run[run_dir.name]
    print(f"{run_dir.name}: held-out templates {100 * r['test_pass@1']:.1f}%, training "
          f"templates {100 * r['train_templates_pass@1']:.1f}%, prose {r['prose_loss']:.3f} "
          "nats/token", flush=True)
  if not per_run:
    print(f"no finished runs in {workdir}", file=sys.stderr)
    return 1
  summary = aggregate(per_run)
  out.mkdir(parents=True, exist_ok=True)
  (out / "results.json").write_text(json.dumps(
      {"sweep": str(workdir), "unfinished": missing, "arms": summary, "runs": per_run},
      indent=1) + "\n")
  (out / "results.md").write_text(table(summary))
  print(table(summary))
  return 0


if __name__ == "__main__":
  sys.exit(main())
