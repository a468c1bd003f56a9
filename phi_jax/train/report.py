"""End-of-run report: loss curves (PNG), held-out loss, and sample completions in report.md."""

from __future__ import annotations

import os
import pathlib
from typing import Any, Optional

import jax
import ml_collections

from phi_jax.data import files
from phi_jax.decoding import generate, skipdecode
from phi_jax.models import ModelConfig
from phi_jax.train import metrics as metrics_lib


def new_figure(figsize: tuple[float, float]) -> Any:
  """A matplotlib Figure not registered with pyplot: drawing it neither switches the backend
  nor shows it in a notebook that called us."""
  from matplotlib.figure import Figure  # pylint: disable=g-import-not-at-top
  return Figure(figsize=figsize, dpi=100)


def save_figure(fig: Any, path: pathlib.Path) -> None:
  """fig -> PNG at path (written to a temp name, then renamed)."""
  fig.tight_layout()
  tmp = path.with_suffix(".tmp.png")
  fig.savefig(tmp)
  os.replace(tmp, path)


def plot_losses(records: list[dict[str, Any]], path: pathlib.Path) -> Optional[pathlib.Path]:
  """Train loss (the mean over each logging interval) and held-out loss against step -> PNG;
  None when there is nothing to plot."""
  train = [(r["step"], r["loss"]) for r in records if "loss" in r]
  evals = [(r["step"], r["eval_loss"]) for r in records if "eval_loss" in r]
  if not train:
    return None
  fig = new_figure((6, 4))
  ax = fig.subplots()
  ax.plot(*zip(*train), label="train loss (mean over each logging interval)")
  if evals:
    ax.plot(*zip(*evals), "o-", label="held-out loss")
  ax.set_xlabel("step")
  ax.set_ylabel("cross-entropy (nats/token)")
  ax.grid(alpha=0.3)
  ax.legend()
  save_figure(fig, path)
  return path


def sample_completions(config: ml_collections.ConfigDict, cfg: ModelConfig, params: Any,
                       tokenizer: Any) -> list[tuple[str, str]]:
  sample = config.sample
  if tokenizer is None or not sample.prompts:
    return []
  prompts = list(sample.prompts)
  ids = [tokenizer.encode(p) for p in prompts]
  host_params = jax.device_get(params)
  # a SkipDecode run samples with its schedule
  outs = generate(cfg, host_params, ids, max_new_tokens=sample.max_new_tokens,
                  temperature=sample.temperature, eos_id=tokenizer.eos_id,
                  rng=jax.random.key(config.seed),
                  skip=skipdecode.from_config(config.skip, cfg.num_layers))
  return [(p, tokenizer.decode(i + o)[len(tokenizer.decode(i)):]) for p, i, o in
          zip(prompts, ids, outs)]


def write_report(config: ml_collections.ConfigDict, workdir: pathlib.Path, cfg: ModelConfig,
                 params: Any, tokenizer: Any) -> dict[str, Any]:
  """Writes report.md (+ loss.png) into the workdir; returns {'report': path, ...}."""
  records = metrics_lib.read_metrics(workdir)
  plot = plot_losses(records, workdir / "loss.png")
  train = [r for r in records if "loss" in r]
  evals = [r for r in records if "eval_loss" in r]
  samples = sample_completions(config, cfg, params, tokenizer)
  lines = [f"# Run report: {workdir.name}", "",
           f"Model `{cfg.name}`: {cfg.num_layers} layers, d_model {cfg.d_model}, "
           f"{cfg.num_heads} heads, vocab {cfg.vocab_size}.", ""]
  if train:
    first, last = train[0], train[-1]
    lines += ["Train losses are means over each logging interval.", "",
              "| | step | loss |", "|---|---|---|",
              f"| first logged train loss | {first['step']} | {first['loss']:.4f} |",
              f"| last train loss | {last['step']} | {last['loss']:.4f} |"]
    if evals:
      lines.append(f"| held-out loss | {evals[-1]['step']} | {evals[-1]['eval_loss']:.4f} |")
    lines += ["", f"Throughput (last log): {last.get('tokens_per_sec', 0):,.0f} tokens/s, "
              f"{last.get('gflops_per_sec', 0):.1f} GFLOP/s per device.", ""]
  if plot:
    lines += ["![loss](loss.png)", ""]
  if samples:
    lines += ["## Samples (greedy)" if not config.sample.temperature else "## Samples", ""]
    for prompt, completion in samples:
      lines += ["```python", prompt + completion, "```", ""]
  path = workdir / "report.md"
  files.write_text(path, "\n".join(lines))
  return {"report": str(path), "samples": [p + c for p, c in samples]}
