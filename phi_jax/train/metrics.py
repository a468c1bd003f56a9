"""Metrics: metrics.jsonl + TensorBoard events (tensorboardX, no TensorFlow), a progress line,
and analytic FLOPs / MFU against a per-device peak table.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from typing import Any, Mapping, Optional

import jax

from phi_jax.models import ModelConfig

# Dense bf16 peak FLOP/s per device (vendor datasheets). Keys are matched against device_kind.
PEAK_FLOPS = {
    "H200": 989e12, "H100": 989e12, "A100": 312e12, "L4": 121e12, "A10": 125e12,
    "TPU v6": 918e12, "TPU v5p": 459e12, "TPU v5 lite": 197e12, "TPU v5e": 197e12,
    "TPU v4": 275e12, "TPU v3": 123e12,
}


def peak_flops(device: Optional[Any] = None) -> Optional[float]:
  """Peak bf16 FLOP/s of a device, or None when unknown (CPUs: report achieved GFLOP/s instead)."""
  kind = (device or jax.devices()[0]).device_kind
  for key, value in PEAK_FLOPS.items():
    if key.lower() in kind.lower():
      return value
  return None


def param_count(cfg: ModelConfig, include_embedding: bool = True) -> int:
  d, f, layers = cfg.d_model, cfg.mlp_dim, cfg.num_layers
  hd, h, k = cfg.dim_per_head, cfg.num_heads, cfg.kv_heads
  attn = d * hd * (h + 2 * k) + h * hd * d
  mlp = d * f * (3 if cfg.gated_mlp else 2)
  total = layers * (attn + mlp)
  if include_embedding:
    total += cfg.vocab_size * d * (1 if cfg.tie_embeddings else 2)
  return total


def train_flops_per_token(cfg: ModelConfig, seq_len: int) -> float:
  """Training FLOPs per token: 6 x (matmul params incl. the LM head) + attention scores/values.

  Attention: QK^T and PV cost 2 x 2 x T x H x Dh per token forward (causal halves it; counted
  in full, as MaxText and PaLM do), x3 for forward + backward.
  """
  matmul_params = param_count(cfg, include_embedding=False) + cfg.vocab_size * cfg.d_model
  attention = 2 * 2 * seq_len * cfg.num_heads * cfg.dim_per_head * cfg.num_layers
  return 6.0 * matmul_params + 3.0 * attention


class MetricWriter:
  """Appends one JSON object per logged step to metrics.jsonl and mirrors scalars to TensorBoard."""

  def __init__(self, workdir: str | os.PathLike, enabled: bool = True):
    self.enabled = enabled
    self.path = os.path.join(os.fspath(workdir), "metrics.jsonl")
    self.tb = None
    if enabled:
      try:
        from tensorboardX import SummaryWriter
        self.tb = SummaryWriter(os.path.join(os.fspath(workdir), "tensorboard"))
      except ImportError:  # TensorBoard events are optional
        self.tb = None

  def write(self, step: int, scalars: Mapping[str, float]) -> None:
    if not self.enabled:
      return
    record = {"step": int(step), **{k: _plain(v) for k, v in scalars.items()}}
    with open(self.path, "a") as f:
      f.write(json.dumps(record) + "\n")
    if self.tb is not None:
      for key, value in record.items():
        if key != "step" and isinstance(value, (int, float)) and math.isfinite(value):
          self.tb.add_scalar(key, value, step)

  def close(self) -> None:
    if self.tb is not None:
      self.tb.close()


def _plain(value: Any) -> Any:
  try:
    return float(value)
  except (TypeError, ValueError):
    return value


def read_metrics(workdir: str | os.PathLike) -> list[dict[str, Any]]:
  """The records of metrics.jsonl in order; a line cut short by a kill is skipped. Train records'
  `loss` is the mean over their logging interval (`loss_last_batch`: the last step's)."""
  path = os.path.join(os.fspath(workdir), "metrics.jsonl")
  if not os.path.exists(path):
    return []
  records = []
  with open(path) as f:
    for line in f:
      try:
        records.append(json.loads(line))
      except ValueError:
        continue
  return records


class Progress:
  """A one-line progress display: step/total, ETA, loss, tokens/s, MFU or GFLOP/s."""

  def __init__(self, total_steps: int, start_step: int, enabled: bool = True):
    self.total, self.start, self.enabled = total_steps, start_step, enabled
    self.t0 = time.perf_counter()
    self.tty = sys.stderr.isatty()

  def update(self, step: int, scalars: Mapping[str, float]) -> None:
    if not self.enabled:
      return
    done = step - self.start
    elapsed = time.perf_counter() - self.t0
    eta = elapsed / max(done, 1) * (self.total - step)
    parts = [f"step {step}/{self.total}", f"eta {_hms(eta)}", f"loss {scalars['loss']:.4f}",
             f"{scalars.get('tokens_per_sec', 0):,.0f} tok/s"]
    if scalars.get("mfu") is not None:
      parts.append(f"MFU {100 * scalars['mfu']:.1f}%")
    elif scalars.get("gflops_per_sec") is not None:
      parts.append(f"{scalars['gflops_per_sec']:.1f} GFLOP/s")
    if "eval_loss" in scalars:
      parts.append(f"eval {scalars['eval_loss']:.4f}")
    line = " | ".join(parts)
    if self.tty:
      print("\r" + line.ljust(100), end="", file=sys.stderr, flush=True)
    else:
      print(line, file=sys.stderr, flush=True)

  def close(self) -> None:
    if self.enabled and self.tty:
      print(file=sys.stderr)


def _hms(seconds: float) -> str:
  seconds = int(max(seconds, 0))
  return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
