"""Training throughput on ONE CPU core: a phi_jax train step vs a PyTorch AdamW step on transformers.

Same config and batch on both sides: the decode benchmark's ~17M-parameter phi-1-shaped model
(parallel block, gelu_tanh, LayerNorm, partial rotary 0.5; 6 layers, d_model 384, 6 heads of 64,
mlp 1536, vocab 8192), fp32, batch 8 x 128 tokens, next-token cross-entropy, AdamW (lr 1e-4,
wd 0.1, betas 0.9/0.95, global-norm clipping at 1.0). phi_jax: `phi_jax.train.step` jitted on one
device with the state donated. transformers: `PhiForCausalLM(labels=...)`, `loss.backward()`,
`clip_grad_norm_`, `torch.optim.AdamW.step()`, `zero_grad(set_to_none=True)`.

    python experiments/perf/train_vs_hf.py            # ~1-2 minutes
    python experiments/perf/train_vs_hf.py --quick    # tiny model, seconds

Pinned to one core before numpy/torch/jax load (os.sched_setaffinity; torch.set_num_threads(1);
--xla_cpu_multi_thread_eigen=false). tokens/s = batch * seq / median step seconds over `reps`
steps after warm-up (phi_jax's compile excluded and reported). The last stdout line is JSON.
"""

from __future__ import annotations

import argparse
import os
import sys


def _parse(argv=None) -> argparse.Namespace:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--batch", type=int, default=8)
  p.add_argument("--seq", type=int, default=128)
  p.add_argument("--reps", type=int, default=10)
  p.add_argument("--quick", action="store_true", help="tiny model, 3 reps (smoke test)")
  p.add_argument("--cpu", type=int, default=None, help="CPU to pin to (default: the last one)")
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


def model_config():
  if ARGS.quick:
    return presets.get("tiny-parallel", vocab_size=512, max_seq_len=2048)
  return presets.get("phi-1", vocab_size=8192, d_model=384, num_layers=6, num_heads=6,
                     mlp_dim=1536, rotary_dim=32)


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


def time_phi_jax(cfg, inputs, targets, reps):
  opt = config_base.optimizer(learning_rate=1e-4, schedule="constant", weight_decay=0.1, b1=0.9,
                              b2=0.95, eps=1e-8, grad_clip_norm=1.0)
  tx, schedule = optim.make_optimizer(opt, 1000)
  mesh = mesh_lib.make_mesh({"data": 1}, jax.devices()[:1])
  state, shardings = step_lib.create_sharded_state(cfg, tx, ARGS.seq, mesh, jax.random.key(0))
  train_step = step_lib.jit_train_step(step_lib.make_train_step(cfg, tx, schedule), shardings, mesh)
  b, t = inputs.shape
  batch = dict(inputs=inputs, targets=targets, segment_ids=np.ones((b, t), np.int32),
               positions=np.tile(np.arange(t, dtype=np.int32), (b, 1)),
               loss_mask=np.ones((b, t), np.float32))
  batch = jax.device_put(batch)
  start = time.perf_counter()
  state, metrics = train_step(state, batch)
  jax.block_until_ready(metrics)
  first = time.perf_counter() - start
  times, losses = [], [float(metrics["loss"])]
  for _ in range(reps):
    start = time.perf_counter()
    state, metrics = train_step(state, batch)
    jax.block_until_ready(metrics)
    times.append(time.perf_counter() - start)
    losses.append(float(metrics["loss"]))
  return statistics.median(times), first - statistics.median(times), losses


def time_torch(model, inputs, targets, reps):
  opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95), eps=1e-8,
                          weight_decay=0.1)
  x = torch.from_numpy(inputs.astype(np.int64))
  y = torch.from_numpy(targets.astype(np.int64))
  times, losses = [], []
  for i in range(reps + 1):
    start = time.perf_counter()
    logits = model(input_ids=x).logits
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    opt.zero_grad(set_to_none=True)
    if i:  # the first step is warm-up
      times.append(time.perf_counter() - start)
    losses.append(float(loss))
  return statistics.median(times), losses


def main() -> None:
  reps = 3 if ARGS.quick else ARGS.reps
  cfg = model_config()
  inputs, targets = batch_arrays(cfg)
  jax_s, compile_s, jax_losses = time_phi_jax(cfg, inputs, targets, reps)
  torch_s, torch_losses = time_torch(hf_model(cfg), inputs, targets, reps)
  tokens = ARGS.batch * ARGS.seq
  result = {
      "benchmark": "train_vs_hf", "machine": f"{platform.processor() or platform.machine()}, "
      f"pinned to cpu {CPU}", "date": datetime.date.today().isoformat(), "threads": 1,
      "model": {"layers": cfg.num_layers, "d_model": cfg.d_model, "vocab": cfg.vocab_size},
      "batch": ARGS.batch, "seq": ARGS.seq, "phi_jax": tokens / jax_s, "reference": tokens / torch_s,
      "ratio": torch_s / jax_s, "phi_jax_step_s": jax_s, "reference_step_s": torch_s,
      "phi_jax_compile_s": compile_s,
      "loss_first_step": {"phi_jax": jax_losses[0], "reference": torch_losses[0]},
      "loss_last_step": {"phi_jax": jax_losses[-1], "reference": torch_losses[-1]},
      "versions": {"jax": jax.__version__, "torch": torch.__version__,
                   "transformers": transformers.__version__},
  }
  print(f"phi_jax {result['phi_jax']:,.0f} tok/s ({jax_s * 1e3:.0f} ms/step), transformers "
        f"{result['reference']:,.0f} tok/s ({torch_s * 1e3:.0f} ms/step): ratio {result['ratio']:.2f}",
        file=sys.stderr)
  print(json.dumps(result))


if __name__ == "__main__":
  main()
