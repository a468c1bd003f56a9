"""Decode speed of SkipDecode at 2x, 3x and 5x nominal vs the full model (phi_jax both sides).

A random model whose layers dominate the cost: 16 serial (phi-3-style) layers, d_model 256,
4 heads of 64, SwiGLU mlp 1024, vocab 512 (17.0M parameters; the embedding and head 0.26M).
Prompts of 16..32 random tokens, exactly `new_tokens` greedy new tokens (no eos), fp32.
Schedules: `SkipSchedule.for_speedup(16, target, warmup_layers=1, decay_len=new_tokens)`.

What is timed: decode steps only. Each setting's generate call is timed whole and again with
max_new_tokens=1 (the same compiled program: setup + full-depth prefill + g_0); the difference
over new_tokens - 1 steps is the decode step time, and decode tok/s = batch / step time.
Nominal speedup over those steps = 16 / mean n(t) for t = 0 .. new_tokens - 2 (the decode steps
run exactly these; the prefill is full depth for every setting). measured speedup = full step
time / SkipDecode step time, in the same run; efficiency = measured / nominal.

    python experiments/perf/skipdecode_speed.py             # ~2 minutes on one CPU core
    python experiments/perf/skipdecode_speed.py --quick     # tiny, seconds (smoke test)
    python experiments/perf/skipdecode_speed.py --no_pin    # all cores / the GPU

Pinned to one CPU core by default (experiments/perf/one_core.py). Medians of `reps` interleaved
rounds. The last line of stdout is one JSON object; figures are recorded in BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import os
import sys


def _parse(argv=None) -> argparse.Namespace:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--batch_sizes", default="1,8")
  p.add_argument("--targets", default="2,3,5")
  p.add_argument("--new_tokens", type=int, default=128)
  p.add_argument("--reps", type=int, default=5)
  p.add_argument("--layers", type=int, default=16)
  p.add_argument("--d_model", type=int, default=256)
  p.add_argument("--vocab", type=int, default=512)
  p.add_argument("--warmup_layers", type=int, default=1)
  p.add_argument("--quick", action="store_true", help="tiny model, 16 tokens, 1 rep")
  p.add_argument("--no_pin", action="store_true", help="do not pin to one CPU core")
  p.add_argument("--decode_layout", default="auto", choices=["auto", "per_layer", "per_layer_t"])
  return p.parse_args(argv)


ARGS = _parse() if __name__ == "__main__" else None
if ARGS is not None and not ARGS.no_pin:
  sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
  from one_core import pin  # noqa: E402
  CPU = pin()
else:
  CPU = None

import datetime  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from phi_jax.decoding import generation  # noqa: E402
from phi_jax.decoding.skipdecode import SkipSchedule  # noqa: E402
from phi_jax.models import Transformer, presets  # noqa: E402


def build(args):
  cfg = presets.get("tiny-serial", vocab_size=args.vocab, d_model=args.d_model,
                    num_layers=args.layers, num_heads=args.d_model // 64, num_kv_heads=None,
                    head_dim=64, mlp_dim=4 * args.d_model, max_seq_len=1024)
  params = jax.jit(Transformer(cfg).init)(jax.random.key(0), jnp.zeros((1, 8), jnp.int32))
  return cfg, jax.device_get(params["params"])


def run(cfg, params, prompts, max_new, out_len, skip, layout):
  """One generate program (bucketed as `generate` would), blocking; returns new tokens."""
  program = generation.prepare(cfg, params, prompts, max_new_tokens=max_new, out_len=out_len,
                               decode_layout=layout, skip=skip)
  return np.asarray(program.run()[0])


def timed(fn) -> float:
  start = time.perf_counter()
  fn()
  return time.perf_counter() - start


def main(args) -> dict:
  if args.quick:
    args.layers, args.d_model, args.vocab, args.new_tokens, args.reps = 6, 64, 128, 16, 1
    args.targets = "2,3"
  cfg, params = build(args)
  params = jax.device_put(params)
  layout = "per_layer_t" if args.decode_layout == "auto" and jax.default_backend() == "cpu" \
      else ("per_layer" if args.decode_layout == "auto" else args.decode_layout)
  new = args.new_tokens
  out_len = generation.bucket(new)
  n_params = sum(x.size for x in jax.tree_util.tree_leaves(params))
  device = jax.devices()[0]
  result = {"benchmark": "skipdecode_speed", "date": datetime.datetime.now().astimezone()
            .isoformat(timespec="seconds"),
            "device": f"{device.platform}: {getattr(device, 'device_kind', '')}",
            "pinned_cpu": CPU, "loadavg_start": [round(x, 2) for x in os.getloadavg()],
            "python": platform.python_version(), "jax": jax.__version__,
            "model": {"layers": cfg.num_layers, "d_model": cfg.d_model, "vocab": cfg.vocab_size,
                      "mlp": cfg.mlp_dim, "params": int(n_params)},
            "new_tokens": new, "reps": args.reps, "decode_layout": layout, "dtype": "float32"}
  schedules = {"full": None}
  for target in [float(x) for x in args.targets.split(",")]:
    schedules[f"{target:g}x"] = SkipSchedule.for_speedup(
        cfg.num_layers, target, warmup_layers=args.warmup_layers, decay_len=new)
  rng = np.random.default_rng(0)
  for batch in [int(b) for b in args.batch_sizes.split(",")]:
    prompts = [rng.integers(4, cfg.vocab_size, rng.integers(16, 33)).tolist()
               for _ in range(batch)]
    for skip in schedules.values():  # compile + warm up
      run(cfg, params, prompts, new, out_len, skip, layout)
      run(cfg, params, prompts, 1, out_len, skip, layout)
    times = {name: {"whole": [], "prefill": []} for name in schedules}
    for _ in range(args.reps):
      for name, skip in schedules.items():
        times[name]["whole"].append(timed(lambda: run(cfg, params, prompts, new, out_len, skip,
                                                      layout)))
        times[name]["prefill"].append(timed(lambda: run(cfg, params, prompts, 1, out_len, skip,
                                                        layout)))
    entry = {}
    for name, skip in schedules.items():
      whole = statistics.median(times[name]["whole"])
      prefill = statistics.median(times[name]["prefill"])
      step = max(whole - prefill, 1e-9) / (new - 1)
      counts = (np.full(new - 1, cfg.num_layers) if skip is None
                else skip.counts(new - 1))
      entry[name] = {"decode_tok_per_s": batch / step, "step_ms": 1e3 * step,
                     "prefill_ms": 1e3 * prefill, "mean_layers": float(np.mean(counts)),
                     "nominal_speedup": cfg.num_layers / float(np.mean(counts))}
      if skip is not None:
        entry[name]["schedule"] = {"max_layers": skip.max_layers, "min_layers": skip.min_layers,
                                   "warmup_layers": skip.warmup_layers,
                                   "decay_len": skip.decay_len}
    for name in schedules:
      e = entry[name]
      e["measured_speedup"] = entry["full"]["step_ms"] / e["step_ms"]
      e["efficiency"] = e["measured_speedup"] / e["nominal_speedup"]
      print(f"batch {batch} {name:>5}: {e['decode_tok_per_s']:8.1f} tok/s  step "
            f"{e['step_ms']:.2f} ms  measured {e['measured_speedup']:.2f}x  nominal "
            f"{e['nominal_speedup']:.2f}x  ({e['efficiency']:.0%})", flush=True)
    result[f"batch_{batch}"] = entry
  # the headline figures: phi_jax (SkipDecode) vs the reference (the full model), same run
  result["summary"] = {
      f"batch_{b}_{name}": {"phi_jax_tok_per_s": result[f"batch_{b}"][name]["decode_tok_per_s"],
                            "reference_tok_per_s": result[f"batch_{b}"]["full"]["decode_tok_per_s"],
                            "ratio": result[f"batch_{b}"][name]["measured_speedup"],
                            "nominal": result[f"batch_{b}"][name]["nominal_speedup"]}
      for b in [int(x) for x in args.batch_sizes.split(",")] for name in schedules
      if name != "full"}
  result["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
  return result


if __name__ == "__main__":
  print(json.dumps(main(ARGS)))
