"""A study's report: DIR/report.md (arms side by side), DIR/loss.png, DIR/results.json.

results.json: {arms, results (per arm: the measured sets, see study.measure), summaries (each
arm's summary.json), timings (seconds per step of the study), tokens_per_arm, tokens_per_step,
curves (per arm: [[step, train loss], ...], the logged interval means)}.
"""

from __future__ import annotations

import json
import os
import pathlib
import platform
import time
from typing import Any, Sequence

import ml_collections

from phi_jax.curation.stages import write_json
from phi_jax.data import files
from phi_jax.train.report import new_figure, save_figure

SET_LABELS = {
    "validation": "held-out exercises: unseen variants of the training families",
    "test": "held-out exercises: whole held-out families",
    "handwritten": "hand-written problems, phrased unlike the training data",
    "humaneval": "HumanEval",
}


def read_metrics(run_dir: pathlib.Path) -> list[dict[str, Any]]:
  path = run_dir / "metrics.jsonl"
  if not path.exists():
    return []
  return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def smooth(values: Sequence[float], beta: float) -> list[float]:
  """Bias-corrected exponential moving average (beta 0: the values themselves)."""
  out, avg = [], 0.0
  for i, v in enumerate(values):
    avg = beta * avg + (1 - beta) * v
    out.append(avg / (1 - beta ** (i + 1)))
  return out


def plot(curves: dict[str, list[tuple[int, float]]], tokens_per_step: int, beta: float,
         path: pathlib.Path) -> None:
  """Every arm's smoothed train loss against tokens seen, one plot."""
  fig = new_figure((6.5, 4))
  ax = fig.subplots()
  for name, points in curves.items():
    if points:
      steps, losses = zip(*points)
      ax.plot([s * tokens_per_step / 1e6 for s in steps], smooth(losses, beta), label=name)
  ax.set_xlabel("training tokens (millions)")
  ax.set_ylabel(f"train loss, nats/token (EMA {beta})")
  ax.grid(alpha=0.3)
  ax.legend()
  save_figure(fig, path)


def _cell(result: dict[str, Any] | None) -> str:
  if not result:
    return "-"
  lo, hi = result["ci95"]
  return f"{100 * result['pass@1']:.1f}% [{100 * lo:.1f}, {100 * hi:.1f}] ({result['passed']}/{result['n']})"


def _fence(text: str) -> str:
  return "```python\n" + text.rstrip("\n") + "\n```"


def write(config: ml_collections.ConfigDict, workdir: pathlib.Path, names: list[str],
          results: dict[str, dict[str, Any]], timings: dict[str, float]) -> dict[str, Any]:
  """Writes report.md, loss.png and results.json into `workdir`; returns their paths and the
  results."""
  runs = {n: read_metrics(workdir / n) for n in names}
  summaries = {}
  for n in names:
    path = workdir / n / "summary.json"
    summaries[n] = json.loads(path.read_text()) if path.exists() else {}
  tokens_per_step = config.data.batch_size * config.data.seq_len
  curves = {n: [(r["step"], r["loss"]) for r in runs[n] if "loss" in r] for n in names}
  plot(curves, tokens_per_step, config.study.smooth, workdir / "loss.png")

  sets = [s for s in SET_LABELS if any(s in results[n]["sets"] for n in names)]
  lines = [f"# Study: {', '.join(names)}", "",
           f"Same model ({results[names[0]]['num_params']:,} parameters), same tokenizer, same "
           f"{config.total_steps} steps x {config.data.batch_size} x {config.data.seq_len} = "
           f"{config.total_steps * tokens_per_step:,} training tokens per arm; only the data "
           "differs. pass@1 is greedy, one completion per problem, run against its asserts in "
           "the sandbox; [95% Wilson interval] (passed/n).", "",
           "| | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
  for s in sets:
    lines.append(f"| pass@1, {SET_LABELS[s]} | " +
                 " | ".join(_cell(results[n]["sets"].get(s)) for n in names) + " |")
  for s in ("validation", "test", "handwritten"):
    if s in sets:
      lines.append(f"| completions that parse as Python, {s} | " + " | ".join(
          f"{100 * results[n]['sets'][s]['parse_rate']:.0f}%" for n in names) + " |")
  lines.append("| held-out loss of the run's own data (nats/token) | " + " | ".join(
      f"{summaries[n]['eval_loss']:.3f}" if summaries[n].get("eval_loss") is not None else "-"
      for n in names) + " |")
  lines.append("| train loss, last interval | " + " | ".join(
      f"{summaries[n]['final_loss']:.3f}" if summaries[n].get("final_loss") is not None
      else "-" for n in names) + " |")
  lines += ["", "![train loss of every arm](loss.png)", ""]
  if "validation" in sets:
    lines += ["## pass@1 by family (unseen variants)", "",
              "| family | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    families = sorted({f for n in names for f in results[n]["sets"]["validation"]["per_family"]})
    for f in families:
      lines.append(f"| {f} | " + " | ".join(
          "{}/{}".format(*results[n]["sets"]["validation"]["per_family"].get(f, (0, 0)))
          for n in names) + " |")
    lines.append("")
  lines += ["## Greedy samples for the same prompts", ""]
  for s in ("validation", "test", "handwritten"):
    if s not in sets:
      continue
    for k, sample in enumerate(results[names[0]]["sets"][s]["samples"]):
      lines += [f"### {s} {k + 1}: `{sample['id']}`", "", _fence(sample["prompt"]), ""]
      for n in names:
        other = results[n]["sets"][s]["samples"][k]
        verdict = "passes" if other["passed"] else "fails"
        lines += [f"**{n}** ({verdict}):", "", _fence(other["completion"]), ""]
  lines += ["## Where the time went", "", "| step | seconds |", "|---|---|"]
  lines += [f"| {k} | {v:.1f} |" for k, v in timings.items()]
  lines += ["", f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, "
            f"{platform.python_implementation()} {platform.python_version()}; written "
            f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.", ""]
  report = workdir / "report.md"
  files.write_text(report, "\n".join(lines))
  out = {"arms": names, "results": results, "summaries": summaries, "timings": timings,
         "tokens_per_arm": config.total_steps * tokens_per_step,
         "tokens_per_step": tokens_per_step, "curves": curves}
  write_json(workdir / "results.json", out)
  return {"report": str(report), "loss_plot": str(workdir / "loss.png"), **out}
