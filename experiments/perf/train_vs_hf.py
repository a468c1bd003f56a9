"""Training throughput on ONE CPU core: a phi_jax train step vs a PyTorch AdamW step on transformers.

Same config and batch on both sides: the decode benchmark's ~17M-parameter phi-1-shaped model
(parallel block, gelu_tanh, LayerNorm, partial rotary 0.5; 6 layers, d_model 384, 6 heads of 64,
mlp 1536, vocab 8192), fp32, batch 8 x 128 tokens, next-token cross-entropy, AdamW (lr 1e-4,
wd 0.1, betas 0.9/0.95, global-norm clipping at 1.0). phi_jax: `phi_jax.train.step` jitted on one
device with the state donated. transformers: `PhiForCausalLM(labels=...)`, `loss.backward()`,
`clip_grad_norm_`, `torch.optim.AdamW.step()`, `zero_grad(set_to_none=True)`.

    python experiments/perf/train_vs_hf.py                 # ~3-4 minutes
    python experiments/perf/train_vs_hf.py --model=quickstart   # quickstart step, phi_jax only
    python experiments/perf/train_vs_hf.py --quick         # tiny model, seconds

Two phi_jax steps are timed: `phi_jax` (the model's defaults: on CPU the layer scan unrolled and
the projections' weight gradients as plain GEMMs, `scan_unroll=0`/`weight_grad='auto'`) and
`phi_jax_before` (`scan_unroll=1, weight_grad='autodiff'`, 'xla' attention, the whole loss: the
step as it was before those defaults). With `--model=quickstart` phi_jax also takes the
quickstart's attention (`attention_impl='auto'` with `attention_block`: causal blocks skipped) and
`loss_chunk_len`; `--attention_block` / `--loss_chunk_len` set them for the bench model; a third
step, `phi_jax_xla_attention`, is then the same step with 'xla' attention and the whole loss. Repetitions are interleaved (one step of each side per round), since the machine is
shared and its load drifts; the JSON has medians, min/max and the interquartile range of each.

Pinned to one core before numpy/torch/jax load (os.sched_setaffinity; torch.set_num_threads(1);
--xla_cpu_multi_thread_eigen=false). tokens/s = batch * seq / median step seconds after warm-up
(phi_jax's compile excluded and reported). The last stdout line is JSON.
"""

from __future__ import annotations

import argparse
import os
import sys


def _parse(argv=None) -> argparse.Namespace:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--batch", type=int, default=8)
  p.add_argument("--seq", type=int, default=128)
  p.add_argument("--reps", type=int, default=15)
  p.add_argument("--quick", action="store_true", help="tiny model, 3 reps (smoke test)")
  p.add_argument("--model", choices=("bench", "quickstart"), default="bench",
                 help="bench: the 17M phi-1-shaped model against transformers; quickstart: the "
                 "quickstart config's model, batch and sequence (phi_jax before/after only)")
  p.add_argument("--cpu", type=int, default=None, help="CPU to pin to (default: the last one)")
  p.add_argument("--attention_block", type=int, default=0,
                 help="bench: phi_jax with attention_impl='auto' and this block size (0: 'xla')")
  p.add_argument("--loss_chunk_len", type=int, default=0, help="bench: phi_jax's loss chunks")
  return p.parse_args(argv)


ARGS = _parse()
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import one_core  # noqa: E402

CPU = one_core.pin(ARGS.cpu)

import datetime  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

import jax  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402

from phi_jax.models import presets  # noqa: E402
from phi_jax.train import config_base, mesh as mesh_lib, optim, step as step_lib  # noqa: E402

torch.set_num_threads(1)


BEFORE = dict(scan_unroll=1, weight_grad="autodiff")  # the step before the CPU defaults


def model_config(quickstart=None):
  """The benchmark's ModelConfig; `quickstart`: the quickstart training config, whose model it is."""
  if ARGS.quick:
    return presets.get("tiny-parallel", vocab_size=512, max_seq_len=2048)
  if quickstart is not None:
    from phi_jax.train import loop
    return loop.model_config(quickstart, vocab_size=quickstart.data.tokenizer_vocab_size)
  return presets.get("phi-1", vocab_size=8192, d_model=384, num_layers=6, num_heads=6,
                     mlp_dim=1536, rotary_dim=32)


def quickstart_config():
  import importlib.util
  path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "../../configs/quickstart.py")
  spec = importlib.util.spec_from_file_location("quickstart_config", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config("")


def hf_model(cfg):
  config = transformers.PhiConfig(
      vocab_size=cfg.vocab_size, hidden_size=cfg.d_model, intermediate_size=cfg.mlp_dim,
      num_hidden_layers=cfg.num_layers, num_attention_heads=cfg.num_heads,
      max_position_embeddings=cfg.max_seq_len, partial_rotary_factor=cfg.rot_dim / cfg.dim_per_head,
      resid_pdrop=0.0, embd_pdrop=0.0, attention_dropout=0.0)
  torch.manual_seed(0)
  return transformers.PhiForCausalLM(config).train()


def batch_arrays(cfg):
  rng = np.random.default_rng(0)
  tokens = rng.integers(0, cfg.vocab_size, (ARGS.batch, ARGS.seq + 1))
  return tokens[:, :-1].astype(np.int32), tokens[:, 1:].astype(np.int32)


def phi_jax_stepper(cfg, inputs, targets, loss_chunk_len=0):
  """() -> loss of one timed train step (state carried between calls); plus compile seconds."""
  opt = config_base.optimizer(learning_rate=1e-4, schedule="constant", weight_decay=0.1, b1=0.9,
                              b2=0.95, eps=1e-8, grad_clip_norm=1.0)
  tx, schedule = optim.make_optimizer(opt, 1000)
  mesh = mesh_lib.make_mesh({"data": 1}, jax.devices()[:1])
  state, shardings = step_lib.create_sharded_state(cfg, tx, ARGS.seq, mesh, jax.random.key(0))
  train_step = step_lib.jit_train_step(
      step_lib.make_train_step(cfg, tx, schedule, loss_chunk_len=loss_chunk_len), shardings, mesh)
  b, t = inputs.shape
  batch = dict(inputs=inputs, targets=targets, segment_ids=np.ones((b, t), np.int32),
               positions=np.tile(np.arange(t, dtype=np.int32), (b, 1)),
               loss_mask=np.ones((b, t), np.float32))
  batch = jax.device_put(batch)
  holder = {"state": state}

  def step() -> float:
    holder["state"], metrics = train_step(holder["state"], batch)
    return float(jax.block_until_ready(metrics)["loss"])

  start = time.perf_counter()
  step()
  return step, time.perf_counter() - start


def torch_stepper(model, inputs, targets):
  opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95), eps=1e-8,
                          weight_decay=0.1)
  x = torch.from_numpy(inputs.astype(np.int64))
  y = torch.from_numpy(targets.astype(np.int64))

  def step() -> float:
    logits = model(input_ids=x).logits
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    opt.zero_grad(set_to_none=True)
    return loss.item()

  return step


def interleaved(steppers: dict, reps: int) -> tuple[dict, dict]:
  """Times one step of each side per round, `reps` rounds after a warm-up round.
  Returns ({side: [seconds]}, {side: [losses, the warm-up round's first]})."""
  times = {name: [] for name in steppers}
  losses = {name: [] for name in steppers}
  for i in range(reps + 1):
    for name, step in steppers.items():
      start = time.perf_counter()
      loss = step()
      if i:  # round 0 is warm-up
        times[name].append(time.perf_counter() - start)
      losses[name].append(loss)
  return times, losses


def spread(seconds: list, tokens: int) -> dict:
  q1, _, q3 = statistics.quantiles(seconds, n=4) if len(seconds) > 1 else (seconds[0],) * 3
  return {"median_s": statistics.median(seconds), "min_s": min(seconds), "max_s": max(seconds),
          "iqr_s": [q1, q3], "tokens_per_s": tokens / statistics.median(seconds)}


def main() -> None:
  reps = 3 if ARGS.quick else ARGS.reps
  quickstart = quickstart_config() if ARGS.model == "quickstart" else None
  cfg = model_config(quickstart)
  if quickstart is not None:
    ARGS.batch, ARGS.seq = quickstart.data.batch_size, quickstart.data.seq_len
  inputs, targets = batch_arrays(cfg)
  plain = cfg.replace(attention_impl="xla", attention_block=0)  # full [T, T] scores, whole loss
  if quickstart is not None:
    chunk = quickstart.loss_chunk_len
  else:
    chunk = ARGS.loss_chunk_len
    if ARGS.attention_block:
      cfg = cfg.replace(attention_impl="auto", attention_block=ARGS.attention_block)
  after, compile_after = phi_jax_stepper(cfg, inputs, targets, chunk)
  before, compile_before = phi_jax_stepper(plain.replace(**BEFORE), inputs, targets)
  steppers = {"phi_jax": after, "phi_jax_before": before}
  if (cfg, chunk) != (plain, 0):  # the step with the CPU defaults, but 'xla' and the whole loss
    steppers["phi_jax_xla_attention"] = phi_jax_stepper(plain, inputs, targets)[0]
  if ARGS.model == "bench":
    steppers["reference"] = torch_stepper(hf_model(cfg), inputs, targets)
  times, losses = interleaved(steppers, reps)
  tokens = ARGS.batch * ARGS.seq
  spreads = {name: spread(t, tokens) for name, t in times.items()}
  med = {name: sp["median_s"] for name, sp in spreads.items()}
  result = {
      "benchmark": "train_vs_hf", "machine": f"{platform.processor() or platform.machine()}, "
      f"pinned to cpu {CPU}", "date": datetime.datetime.now().isoformat(timespec="minutes"),
      "threads": 1, "load_average": os.getloadavg(), "model_set": ARGS.model,
      "model": {"layers": cfg.num_layers, "d_model": cfg.d_model, "vocab": cfg.vocab_size},
      "batch": ARGS.batch, "seq": ARGS.seq, "reps": reps,
      "attention": {"impl": cfg.attention_impl, "block": cfg.attention_block},
      "loss_chunk_len": chunk,
      "phi_jax": tokens / med["phi_jax"], "phi_jax_before": tokens / med["phi_jax_before"],
      "after_over_before": med["phi_jax_before"] / med["phi_jax"],
      "phi_jax_compile_s": compile_after, "phi_jax_before_compile_s": compile_before,
      "spread": spreads,
      "loss_first_step": {name: l[0] for name, l in losses.items()},
      "loss_last_step": {name: l[-1] for name, l in losses.items()},
      "versions": {"jax": jax.__version__, "torch": torch.__version__,
                   "transformers": transformers.__version__},
  }
  line = (f"phi_jax {result['phi_jax']:,.0f} tok/s ({med['phi_jax'] * 1e3:.0f} ms/step), before "
          f"{result['phi_jax_before']:,.0f} tok/s: x{result['after_over_before']:.2f}")
  if "phi_jax_xla_attention" in med:
    result["phi_jax_xla_attention"] = tokens / med["phi_jax_xla_attention"]
    result["after_over_xla_attention"] = med["phi_jax_xla_attention"] / med["phi_jax"]
    line += f"; with 'xla' attention x{result['after_over_xla_attention']:.2f}"
  if "reference" in med:
    result.update(reference=tokens / med["reference"], ratio=med["reference"] / med["phi_jax"],
                  ratio_before=med["reference"] / med["phi_jax_before"])
    line += (f"; transformers {result['reference']:,.0f} tok/s ({med['reference'] * 1e3:.0f} "
             f"ms/step): ratio {result['ratio']:.2f} (before {result['ratio_before']:.2f})")
  print(line, file=sys.stderr)
  print(json.dumps(result))


if __name__ == "__main__":
  main()
