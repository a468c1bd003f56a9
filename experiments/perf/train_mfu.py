"""MFU of the phi-1 1.3B train step (seq 2048, bf16 compute) on one accelerator, and its memory.

    python experiments/perf/train_mfu.py                  # GPU: phi-1 1.3B, batch 8 x 2048
    python experiments/perf/train_mfu.py --batch 16       # e.g. on a 141 GB H200
    python experiments/perf/train_mfu.py --tiny           # CPU smoke test, a few seconds

The model is configs/phi1.py:size=1.3b's (preset 'phi-1': 24 layers, d_model 2048, 32 heads,
vocab 51200; bf16 compute, fp32 params and AdamW state, remat 'full', dropout 0.1 on attention
and residual; --no_dropout sets both to 0), built here from phi_jax.models.presets, not from the
config file: the GPU machine has no ml-collections (configs/ and phi_jax.train.optim import it).
The optimizer is the config's AdamW (b1 0.9, b2 0.98, eps 1e-7, weight decay 0.1 on kernels
and embeddings only, clip at global norm 1.0) at a constant lr, made here with optax. The step is
phi_jax.train.step's (make_train_step / jit_train_step, state donated) on a 1-device mesh.

Timing: the step is compiled ahead of time (lower().compile(), the compile time is reported),
run --warmup times, then --steps times, each step waited for; the median step time is used.

MFU = model FLOPs per step / (step seconds x peak dense bf16 FLOP/s of the card).
Model FLOPs per step (PaLM, Chowdhery et al. 2022, appendix B; what MaxText reports):
    tokens x (6 x N + 12 x L x T x d_model)
N = the parameters that take part in matmuls (all but the embedding table, which is gathered;
phi-1's untied LM head is counted), L layers, T = seq_len, d_model = heads x head_dim. The
12 L T d term is attention's QK^T and AV (forward 2 x 2 T d per token per layer, x 3 with the
backward) over all T keys; `mfu_causal` counts half of it (what a causal kernel needs). Remat's
recomputation is not counted (model FLOPs, not hardware FLOPs).
Peaks (dense bf16, NVIDIA datasheets): H100 SXM and H200 989 TFLOP/s, H100 NVL 835, H100 PCIe
756, A100 312; another card needs --peak_tflops (on CPU the MFU is left out without it).

Memory: `compiled.memory_analysis()` of this very step is the AOT estimate phi_jax.aot makes
(`python -m phi_jax.aot --platform=default`): arguments + outputs - aliased + temporaries.
--estimate_platform=cpu compiles the same step for one CPU device instead, the estimate the aot
CLI gives without the hardware (XLA:CPU's temporaries). The measured figure is
`jax.devices()[0].memory_stats()['peak_bytes_in_use']` after the timed steps (None on CPU).

The last line of stdout is one JSON object.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import sys
import time

from device_specs import PEAK_BF16_TFLOPS, lookup  # experiments/perf/, beside this script


def _parse(argv=None) -> argparse.Namespace:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--tiny", action="store_true", help="a 2-layer d_model 64 model, seq 64, batch 2")
  p.add_argument("--batch", type=int, default=None, help="rows per step (default 8; tiny 2)")
  p.add_argument("--seq_len", type=int, default=None, help="default 2048 (tiny 64)")
  p.add_argument("--steps", type=int, default=None, help="timed steps (default 10; tiny 3)")
  p.add_argument("--warmup", type=int, default=2)
  p.add_argument("--no_dropout", action="store_true", help="attn/resid dropout 0 (config: 0.1)")
  p.add_argument("--remat_policy", default="full", help="the config's: full")
  p.add_argument("--peak_tflops", type=float, default=None,
                 help="peak dense bf16 TFLOP/s of the device (default: looked up by its name)")
  p.add_argument("--estimate_platform", default="device", choices=["device", "cpu", "none"],
                 help="where the AOT memory estimate is compiled (cpu: as `python -m phi_jax.aot`"
                      " does without the hardware)")
  p.add_argument("--aot_only", action="store_true", help="only the memory estimate, no steps")
  p.add_argument("--model_override", action="append", default=[], metavar="FIELD=VALUE",
                 help="ModelConfig field overrides, e.g. attention_impl=blockwise (repeatable)")
  return p.parse_args(argv)


def model_flops_per_step(num_layers: int, seq_len: int, d_attn: int, num_params: int,
                         embed_params: int, tokens: int) -> dict:
  """PaLM's model FLOPs per step: tokens x (6 N + 12 L T d), N without the embedding table,
  d_attn = heads x head_dim."""
  n = num_params - embed_params
  attention = 12 * num_layers * seq_len * d_attn
  return {"matmul_params": n, "flops": tokens * (6 * n + attention),
          "flops_causal": tokens * (6 * n + attention // 2)}


def _value(text: str):
  for cast in (int, float):
    try:
      return cast(text)
    except ValueError:
      pass
  return {"true": True, "false": False, "none": None}.get(text.lower(), text)


def main(args: argparse.Namespace) -> dict:
  import jax
  import jax.numpy as jnp
  import flax.linen as nn
  import optax

  from phi_jax import aot
  from phi_jax.models import presets
  from phi_jax.train import mesh as mesh_lib
  from phi_jax.train import sharding
  from phi_jax.train import step as step_lib

  batch = args.batch or (2 if args.tiny else 8)
  seq_len = args.seq_len or (64 if args.tiny else 2048)
  steps = args.steps or (3 if args.tiny else 10)
  dropout = 0.0 if args.no_dropout else 0.1
  fields = dict(dtype="bfloat16", param_dtype="float32", attn_dropout=dropout,
                resid_dropout=dropout, embd_dropout=0.0, remat_policy=args.remat_policy)
  if args.tiny:
    fields.update(vocab_size=512, d_model=64, num_layers=2, num_heads=4, mlp_dim=256,
                  rotary_dim=16, max_seq_len=max(seq_len, 128))
  for item in args.model_override:
    key, _, text = item.partition("=")
    fields[key] = _value(text)
  cfg = presets.get("phi-1", **fields)
  if seq_len > cfg.max_seq_len:
    raise SystemExit(f"--seq_len {seq_len} exceeds the model's max_seq_len {cfg.max_seq_len}")

  device = jax.devices()[0]
  kind = device.device_kind
  peak = lookup(PEAK_BF16_TFLOPS, kind, args.peak_tflops, device.platform,
                "peak bf16 FLOP/s", "--peak_tflops=<dense bf16 TFLOP/s>")

  tx = optax.chain(
      optax.clip_by_global_norm(1.0),
      optax.adamw(1e-4, b1=0.9, b2=0.98, eps=1e-7, weight_decay=0.1,
                  mask=lambda params: jax.tree.map(lambda x: x.ndim > 1, params)))
  schedule = optax.constant_schedule(1e-4)
  rng = jax.random.key(0)

  def batch_of(shardings=None):
    shape = (batch, seq_len)
    ids = jax.random.randint(jax.random.key(1), shape, 0, cfg.vocab_size, jnp.int32)
    out = {"inputs": ids, "targets": jnp.roll(ids, -1, axis=1),
           "segment_ids": jnp.ones(shape, jnp.int32),
           "positions": jnp.broadcast_to(jnp.arange(seq_len, dtype=jnp.int32), shape),
           "loss_mask": jnp.ones(shape, jnp.float32)}
    return out if shardings is None else jax.device_put(out, shardings)

  def compile_step(devices):
    mesh = mesh_lib.make_mesh({"data": 1, "fsdp": -1, "tensor": 1}, devices[:1])
    state_shapes, shardings = step_lib.abstract_state(cfg, tx, seq_len, mesh, rng)
    batch_sh = sharding.batch_sharding(mesh)
    batch_shapes = {k: jax.ShapeDtypeStruct((batch, seq_len), v.dtype, sharding=batch_sh)
                    for k, v in jax.eval_shape(batch_of).items()}
    train_step = step_lib.jit_train_step(step_lib.make_train_step(cfg, tx, schedule), shardings,
                                         mesh)
    t0 = time.perf_counter()
    with jax.set_mesh(mesh), nn.logical_axis_rules(sharding.LOGICAL_RULES):
      compiled = train_step.jitted.lower(state_shapes, batch_shapes).compile()
    seconds = time.perf_counter() - t0
    mem = compiled.memory_analysis()
    estimate = None
    if mem is not None:
      estimate = {"argument_bytes": int(mem.argument_size_in_bytes),
                  "output_bytes": int(mem.output_size_in_bytes),
                  "alias_bytes": int(mem.alias_size_in_bytes),
                  "temp_bytes": int(mem.temp_size_in_bytes)}
      estimate["total_bytes"] = (estimate["argument_bytes"] + estimate["output_bytes"]
                                 - estimate["alias_bytes"] + estimate["temp_bytes"])
      estimate["params_bytes"] = aot._shard_bytes(state_shapes.params)
      estimate["opt_state_bytes"] = aot._shard_bytes(state_shapes.opt_state)
    return mesh, shardings, batch_sh, compiled, seconds, estimate, state_shapes

  result = {"benchmark": "train_mfu", "device_kind": kind, "platform": device.platform,
            "jax": jax.__version__,
            "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "model": {"preset": "phi-1", "num_layers": cfg.num_layers, "d_model": cfg.d_model,
                      "vocab": cfg.vocab_size, "tiny": args.tiny, **fields},
            "batch": batch, "seq_len": seq_len, "tokens_per_step": batch * seq_len}
  if args.estimate_platform == "cpu":
    cpu = compile_step(jax.devices("cpu"))
    result["aot_estimate_cpu"] = cpu[5]
    result["compile_s_cpu"] = cpu[4]
  if args.aot_only:
    if args.estimate_platform == "device":
      result["aot_estimate"] = compile_step(jax.devices())[5]
    return result

  mesh, shardings, batch_sh, compiled, compile_s, estimate, shapes = compile_step(jax.devices())
  result["compile_s"] = compile_s
  if args.estimate_platform == "device":
    result["aot_estimate"] = estimate
  num_params = sum(x.size for x in jax.tree.leaves(shapes.params))
  embed_params = shapes.params["embed"]["embedding"].size
  flops = model_flops_per_step(cfg.num_layers, seq_len, cfg.num_heads * cfg.dim_per_head,
                               num_params, embed_params, batch * seq_len)

  state, _ = step_lib.create_sharded_state(cfg, tx, seq_len, mesh, rng)
  data = batch_of(batch_sh)
  times, losses = [], []
  with jax.set_mesh(mesh), nn.logical_axis_rules(sharding.LOGICAL_RULES):
    for i in range(args.warmup + steps):
      t0 = time.perf_counter()
      state, metrics = compiled(state, data)
      loss = float(metrics["loss"])  # waits for the step
      if i >= args.warmup:
        times.append(time.perf_counter() - t0)
        losses.append(loss)
  step_s = statistics.median(times)
  stats = device.memory_stats() or {}
  peak_bytes = stats.get("peak_bytes_in_use")
  result.update(
      num_params=int(num_params), embedding_params=int(embed_params), **flops,
      step_s=step_s, step_s_all=[round(t, 5) for t in times],
      tokens_per_s=batch * seq_len / step_s, losses=losses,
      model_tflops_per_s=flops["flops"] / step_s / 1e12,
      peak_tflops=None if peak is None else peak / 1e12,
      mfu=None if peak is None else flops["flops"] / step_s / peak,
      mfu_causal=None if peak is None else flops["flops_causal"] / step_s / peak,
      peak_bytes_in_use=peak_bytes,
      bytes_limit=stats.get("bytes_limit"),
      measured_over_estimate=(peak_bytes / estimate["total_bytes"]
                              if peak_bytes and estimate else None),
      formula="flops = tokens * (6 * matmul_params + 12 * layers * seq_len * d_model); "
              "mfu = flops / (step_s * peak); mfu_causal halves the attention term")
  return result


if __name__ == "__main__":
  ARGS = _parse()
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
  print(json.dumps(main(ARGS)))
  sys.stdout.flush()
