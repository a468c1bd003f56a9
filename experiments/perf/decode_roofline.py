"""phi-1.5 greedy decode at batch 1 in bfloat16, as a fraction of the accelerator's HBM roofline.

    python experiments/perf/decode_roofline.py                 # GPU: phi-1.5 shape, 256 tokens
    python experiments/perf/decode_roofline.py --tiny          # CPU smoke test, a few seconds

The model has phi-1.5's shape (preset 'phi-1.5': 24 layers, d_model 2048, 32 heads, mlp 8192,
vocab 51200, 1.42B parameters) with random weights (N(0, 0.02); the speed does not depend on
them), decoded by phi_jax.decoding.generate from `prepare_weights(cfg, params, dtype='bfloat16')`
(bf16 weights, compute and KV cache; --layout picks the decode layout, default the backend's).
One prompt of --prompt_len random tokens, --new_tokens greedy tokens, no eos.

Step time: t(new_tokens) and t(1 token) of the same compiled program (decoding.generation.prepare
with the same out_len), medians of --reps; step = (t(new) - t(1)) / (new - 1).
Bytes a step must read: every weight but the embedding table (a step gathers one row of it),
in bf16, plus the KV cache it attends over. The decode loop attends over all the cache's slots
(prompt bucket + new-token bucket, filled or not): kv_bytes_read counts those; kv_bytes_filled
counts only the filled slots, averaged over the steps (what an ideal kernel reads).
fraction = (weight_bytes + kv_bytes_read) / step seconds / HBM bandwidth; fraction_filled uses
kv_bytes_filled. HBM bandwidth by device kind (NVIDIA datasheets): H200 4.8 TB/s, H100 SXM
3.35, H100 NVL 3.9, H100 PCIe 2.0, A100 80GB 2.04; another card needs --hbm_tbps (on CPU the
fraction is left out without it).

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

from device_specs import HBM_TBPS, lookup  # experiments/perf/, beside this script


def _parse(argv=None) -> argparse.Namespace:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--tiny", action="store_true", help="a 2-layer d_model 64 model, 64 tokens")
  p.add_argument("--new_tokens", type=int, default=None, help="default 256 (tiny 64)")
  p.add_argument("--prompt_len", type=int, default=32)
  p.add_argument("--reps", type=int, default=None, help="default 5 (tiny 3)")
  p.add_argument("--layout", default=None, choices=["stacked", "per_layer", "per_layer_t"],
                 help="decode layout (default: layouts.default_decode_layout)")
  p.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float32"])
  p.add_argument("--hbm_tbps", type=float, default=None,
                 help="HBM bandwidth in TB/s (default: looked up by the device's name)")
  return p.parse_args(argv)


def main(args: argparse.Namespace) -> dict:
  import jax
  import jax.numpy as jnp
  import numpy as np

  from phi_jax.decoding import generation, prepare_weights
  from phi_jax.models import Transformer, presets

  new = args.new_tokens or (64 if args.tiny else 256)
  reps = args.reps or (3 if args.tiny else 5)
  overrides = {}
  if args.tiny:
    overrides = dict(vocab_size=512, d_model=64, num_layers=2, num_heads=4, mlp_dim=256,
                     rotary_dim=16, max_seq_len=512)
  cfg = presets.get("phi-1.5", **overrides)
  device = jax.devices()[0]
  kind = device.device_kind
  bandwidth = lookup(HBM_TBPS, kind, args.hbm_tbps, device.platform, "HBM bandwidth",
                     "--hbm_tbps=<TB/s>")

  shapes = jax.eval_shape(Transformer(cfg).init, jax.random.key(0), jnp.zeros((1, 8), jnp.int32))
  shapes = jax.tree_util.tree_map(lambda x: getattr(x, "value", x), shapes["params"],
                                  is_leaf=lambda x: hasattr(x, "value"))
  leaves, treedef = jax.tree_util.tree_flatten(shapes)
  keys = jax.random.split(jax.random.key(0), len(leaves))
  params = jax.tree_util.tree_unflatten(treedef, [
      (0.02 * jax.random.normal(k, x.shape, jnp.float32)).astype(args.dtype)
      for k, x in zip(keys, leaves)])
  weights = prepare_weights(cfg, params, layout=args.layout, dtype=args.dtype)
  del params
  jax.block_until_ready(weights)

  rng = np.random.default_rng(0)
  prompt = [rng.integers(3, cfg.vocab_size, args.prompt_len).tolist()]
  out_len = generation.bucket(new)

  def run(max_new: int) -> float:
    program = generation.prepare(cfg, weights, prompt, max_new_tokens=max_new, out_len=out_len)
    t0 = time.perf_counter()
    tokens = program.run()[0]
    np.asarray(tokens)
    return time.perf_counter() - t0

  t0 = time.perf_counter()
  run(new)
  compile_s = time.perf_counter() - t0
  full, one = [], []
  for _ in range(reps):
    full.append(run(new))
    one.append(run(1))
  t_full, t_one = statistics.median(full), statistics.median(one)
  step_s = (t_full - t_one) / (new - 1)

  itemsize = jnp.dtype(args.dtype).itemsize
  num_params = sum(x.size for x in leaves)
  embed = shapes["embed"]["embedding"].size
  weight_bytes = (num_params - embed) * itemsize
  prompt_len = generation.bucket(args.prompt_len)
  slots = prompt_len + out_len
  per_slot = 2 * cfg.num_layers * cfg.kv_heads * cfg.dim_per_head * itemsize  # k and v
  kv_read = slots * per_slot
  kv_filled = (args.prompt_len + new / 2) * per_slot  # mean filled slots over the steps
  step_bytes = weight_bytes + kv_read
  result = {
      "benchmark": "decode_roofline", "device_kind": kind, "platform": device.platform,
      "jax": jax.__version__,
      "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
      "model": {"preset": "phi-1.5", "tiny": args.tiny, "num_layers": cfg.num_layers,
                "d_model": cfg.d_model, "vocab": cfg.vocab_size, "num_params": int(num_params)},
      "dtype": args.dtype, "layout": weights.layout, "batch": 1, "prompt_len": args.prompt_len,
      "new_tokens": new, "reps": reps, "compile_s": max(compile_s - t_full, 0.0),
      "generate_s": t_full, "prefill_s": t_one, "step_s": step_s, "tokens_per_s": 1 / step_s,
      "weight_bytes": int(weight_bytes), "kv_bytes_read": int(kv_read),
      "kv_bytes_filled": int(kv_filled), "bytes_per_s": step_bytes / step_s,
      "hbm_bytes_per_s": bandwidth,
      "fraction": None if bandwidth is None else step_bytes / step_s / bandwidth,
      "fraction_filled": (None if bandwidth is None
                          else (weight_bytes + kv_filled) / step_s / bandwidth),
      "all_s": {"full": [round(t, 5) for t in full], "one": [round(t, 5) for t in one]},
  }
  return result


if __name__ == "__main__":
  ARGS = _parse()
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
  print(json.dumps(main(ARGS)))
  sys.stdout.flush()
