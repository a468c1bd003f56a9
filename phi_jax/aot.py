"""Will it fit? Compile a config's full-size train step ahead of time on a fake mesh of N devices.

    python -m phi_jax.aot --config=configs/phi1.py:size=1.3b --devices=8 --device_memory_gb=80
    python -m phi_jax.aot --config=configs/phi3.py:size=medium --devices=64 --layers=4

Nothing is allocated: the train state is `jax.eval_shape`d (`step.abstract_state`), the batch is a
dict of `ShapeDtypeStruct`s carrying their shardings, and `jax.jit(train_step).lower(...).compile()`
runs exactly the program `phi_jax.main` would run (same shardings, donation, grad accumulation).
`compiled.memory_analysis()` then gives per-device bytes: arguments (params + optimizer state +
batch), outputs (aliased onto the donated state), and temporaries (activations, gradients, ...).

Without the hardware the devices are N simulated CPU devices (`--xla_force_host_platform_device_count`,
set by this CLI from --devices before jax starts). Arguments and outputs are exact; TEMPORARIES ARE
ESTIMATED BY THE CPU BACKEND, whose fusion, layout and buffer reuse differ from XLA:GPU/TPU (treat the
total as a ballpark, and leave headroom for the runtime's own workspaces). `--platform=default`
compiles for the real devices jax finds instead (e.g. on the 8-GPU machine itself).

`--layers=K` compiles a K-layer cut of the model (and a 2K-layer one) and extrapolates every figure
linearly to the real depth: per-layer memory is the difference of the two compiles. The layer stack
is an `nn.scan`, so compile time hardly depends on depth; the default (no --layers) is the real
config and is what to trust.

Library use (jax already initialised with enough devices, e.g. in tests):

    report = memory_report(config, num_devices=8)   # dict of per-device byte counts, see below
"""

from __future__ import annotations

import math
import os
import sys
import time
from typing import Any, Optional, Sequence

GiB = float(2**30)


def _shard_bytes(tree: Any) -> int:
  """Bytes on one device of a tree of ShapeDtypeStructs with NamedShardings (its largest shard)."""
  import jax
  total = 0
  for leaf in jax.tree.leaves(tree):
    shape = leaf.sharding.shard_shape(leaf.shape) if leaf.sharding is not None else leaf.shape
    total += math.prod(shape) * leaf.dtype.itemsize
  return total


def _compile(config: Any, cfg: Any, mesh: Any) -> dict[str, Any]:
  """Lowers and compiles the train step of (config, cfg) on `mesh`; returns the raw figures."""
  import flax.linen as nn
  import jax
  import jax.numpy as jnp
  from phi_jax.train import optim, sharding
  from phi_jax.train import step as step_lib

  seq_len, batch_size = int(config.data.seq_len), int(config.data.batch_size)
  grad_accum = int(config.grad_accum)
  tx, schedule = optim.make_optimizer(config.optimizer, config.total_steps)
  state, shardings = step_lib.abstract_state(cfg, tx, seq_len, mesh, jax.random.key(config.seed))
  batch_sh = sharding.batch_sharding(mesh)
  batch = {k: jax.ShapeDtypeStruct((batch_size, seq_len), jnp.int32, sharding=batch_sh)
           for k in ("inputs", "targets", "segment_ids", "positions")}
  batch["loss_mask"] = jax.ShapeDtypeStruct((batch_size, seq_len), jnp.float32, sharding=batch_sh)
  train_step = step_lib.jit_train_step(
      step_lib.make_train_step(cfg, tx, schedule, grad_accum,
                               loss_chunk_len=int(config.loss_chunk_len)), shardings, mesh)

  t0 = time.perf_counter()
  with jax.set_mesh(mesh), nn.logical_axis_rules(sharding.LOGICAL_RULES):
    lowered = train_step.jitted.lower(state, batch)
  t1 = time.perf_counter()
  compiled = lowered.compile()
  t2 = time.perf_counter()
  mem = compiled.memory_analysis()
  if mem is None:
    raise RuntimeError(f"the {jax.devices()[0].platform} backend gives no memory analysis")
  return {
      "num_params": sum(math.prod(x.shape) for x in jax.tree.leaves(state.params)),
      "params_bytes": _shard_bytes(state.params),
      "opt_state_bytes": _shard_bytes(state.opt_state),
      "batch_bytes": _shard_bytes(batch),
      "argument_bytes": int(mem.argument_size_in_bytes),
      "output_bytes": int(mem.output_size_in_bytes),
      "alias_bytes": int(mem.alias_size_in_bytes),
      "temp_bytes": int(mem.temp_size_in_bytes),
      "generated_code_bytes": int(mem.generated_code_size_in_bytes),
      "lower_seconds": t1 - t0,
      "compile_seconds": t2 - t1,
  }


_LINEAR = ("num_params", "params_bytes", "opt_state_bytes", "batch_bytes", "argument_bytes",
           "output_bytes", "alias_bytes", "temp_bytes", "generated_code_bytes")


def training_forms(cfg: Any, target: str) -> Any:
  """cfg with its 'auto' training forms (scan_unroll 0, weight_grad 'auto') resolved as they
  would be on `target` ('cpu', 'gpu', 'tpu'): an estimate for accelerators compiled on simulated
  CPU devices must not take the CPU forms (every layer unrolled would multiply the temporaries)."""
  from phi_jax.models import layers as layers_lib
  from phi_jax.models import transformer
  return cfg.replace(scan_unroll=transformer.resolve_scan_unroll(cfg, target),
                     weight_grad=layers_lib.resolve_weight_grad(cfg, target))


def memory_report(config: Any, num_devices: int, *, layers: Optional[int] = None,
                  devices: Optional[Sequence[Any]] = None,
                  device_memory_gb: Optional[float] = None,
                  target: Optional[str] = None) -> dict[str, Any]:
  """Per-device memory of the train step of `config` (an ml_collections ConfigDict) on a mesh of
  `num_devices` devices (`config.mesh`, -1 filled), compiled ahead of time without allocating.

  Args:
    config: a training config (configs/*.py); model.vocab_size -1 is taken as
      data.tokenizer_vocab_size.
    num_devices: mesh size; the first `num_devices` of `devices` (default `jax.devices()`).
    layers: compile K-layer and 2K-layer cuts and extrapolate linearly to the real depth.
    device_memory_gb: if given, `fits` says whether `total_bytes` fits in that many GiB.
    target: the backend the estimate is for, whose 'auto' training forms the compile uses
      (`training_forms`): default 'gpu' on CPU devices (the simulated mesh stands in for
      accelerators), else the devices' own platform. 'cpu' estimates a CPU run.

  Returns a dict: model, num_params, mesh, platform, num_devices, layers_compiled, and per-device
  bytes params_bytes, opt_state_bytes, batch_bytes, argument_bytes, output_bytes, alias_bytes
  (outputs written into donated arguments), temp_bytes, total_bytes (= argument + output - alias +
  temp), plus lower_seconds, compile_seconds, temp_estimated_by_cpu, fits (or None).
  """
  import jax
  from phi_jax.train import loop
  from phi_jax.train import mesh as mesh_lib

  available = list(jax.devices() if devices is None else devices)
  if len(available) < num_devices:
    raise ValueError(
        f"{num_devices} devices requested but jax sees {len(available)} "
        f"({available[0].platform}). On CPU set XLA_FLAGS=--xla_force_host_platform_device_count="
        f"{num_devices} before jax is imported (the `python -m phi_jax.aot` CLI does it).")
  mesh = mesh_lib.make_mesh(dict(config.mesh), available[:num_devices])
  batch_size, grad_accum = int(config.data.batch_size), int(config.grad_accum)
  data_devices = mesh.shape["data"] * mesh.shape["fsdp"]
  if batch_size % (grad_accum * data_devices):
    raise ValueError(f"data.batch_size={batch_size} must be divisible by grad_accum={grad_accum} "
                     f"x data x fsdp mesh size ({data_devices}); change --config.grad_accum, "
                     "--config.data.batch_size or the device count")
  vocab = int(config.data.tokenizer_vocab_size) or None
  platform = available[0].platform
  target = target or ("gpu" if platform == "cpu" else platform)
  cfg = training_forms(loop.model_config(config, vocab), target)
  full_layers = cfg.num_layers
  if layers is None or layers >= full_layers:
    figures = _compile(config, cfg, mesh)
    compiled_layers = [full_layers]
  else:
    if layers < 1:
      raise ValueError(f"--layers must be >= 1, got {layers}")
    k2 = min(2 * layers, full_layers)
    a = _compile(config, cfg.replace(num_layers=layers), mesh)
    b = _compile(config, cfg.replace(num_layers=k2), mesh)
    figures = {key: a[key] + (b[key] - a[key]) * (full_layers - layers) // (k2 - layers)
               for key in _LINEAR}
    figures["lower_seconds"] = a["lower_seconds"] + b["lower_seconds"]
    figures["compile_seconds"] = a["compile_seconds"] + b["compile_seconds"]
    compiled_layers = [layers, k2]
  total = (figures["argument_bytes"] + figures["output_bytes"] - figures["alias_bytes"]
           + figures["temp_bytes"])
  return {
      "model": cfg.name, "num_layers": full_layers, "layers_compiled": compiled_layers,
      "mesh": dict(mesh.shape), "num_devices": num_devices, "platform": platform,
      "batch_size": batch_size, "seq_len": int(config.data.seq_len), "grad_accum": grad_accum,
      "dtype": cfg.dtype, "param_dtype": cfg.param_dtype, "remat_policy": cfg.remat_policy,
      "target": target, "scan_unroll": cfg.scan_unroll, "weight_grad": cfg.weight_grad,
      **figures, "total_bytes": total, "temp_estimated_by_cpu": platform == "cpu",
      "device_memory_gb": device_memory_gb,
      "fits": None if device_memory_gb is None else total <= device_memory_gb * GiB,
  }


def format_report(r: dict[str, Any]) -> str:
  """The report as the lines the CLI prints."""
  def gib(b: float) -> str:
    return f"{b / GiB:10.2f} GiB" if abs(b) >= GiB / 10 else f"{b / 2**20:10.2f} MiB"

  devices = (f"{r['num_devices']} simulated CPU devices" if r["platform"] == "cpu"
             else f"{r['num_devices']} {r['platform']} devices")
  layers = ("the real depth" if r["layers_compiled"] == [r["num_layers"]] else
            f"{r['layers_compiled'][0]}- and {r['layers_compiled'][1]}-layer cuts, extrapolated "
            f"linearly to {r['num_layers']} layers")
  micro = r["batch_size"] // (r["grad_accum"] * r["mesh"]["data"] * r["mesh"]["fsdp"])
  lines = [
      f"{r['model']}: {r['num_params']:,} parameters, {r['num_layers']} layers "
      f"({r['param_dtype']} weights, {r['dtype']} compute, remat {r['remat_policy']})",
      f"train step: batch {r['batch_size']} x {r['seq_len']} tokens, grad_accum {r['grad_accum']} "
      f"({micro} rows per device per microbatch), mesh {r['mesh']}",
      f"compiled for {devices} from {layers}: lowering {r['lower_seconds']:.1f} s, "
      f"compile {r['compile_seconds']:.1f} s",
      f"as on {r['target']}: scan_unroll {r['scan_unroll']}, weight_grad {r['weight_grad']}",
      "",
      "per-device memory",
      f"  parameters                {gib(r['params_bytes'])}",
      f"  optimizer state           {gib(r['opt_state_bytes'])}",
      f"  batch                     {gib(r['batch_bytes'])}",
      f"  arguments (all of these)  {gib(r['argument_bytes'])}",
      f"  outputs                   {gib(r['output_bytes'])}   "
      f"({gib(r['alias_bytes']).strip()} of it reuses the donated state)",
      f"  temporaries               {gib(r['temp_bytes'])}"
      + ("   ESTIMATED BY THE CPU BACKEND (XLA:GPU/TPU differ)" if r["temp_estimated_by_cpu"]
         else ""),
      f"  total                     {gib(r['total_bytes'])}   "
      "(arguments + outputs - reused + temporaries)",
  ]
  if r["fits"] is not None:
    cap = r["device_memory_gb"]
    verdict = "fits" if r["fits"] else "DOES NOT FIT"
    lines.append(f"  {verdict} in {cap:g} GiB per device ({r['total_bytes'] / GiB / cap:.0%} used"
                 "; leave ~10% for the runtime's workspaces)")
  return "\n".join(lines)


def _set_device_count(n: int) -> None:
  """Asks XLA for n CPU devices and keeps jax on the CPU; must run before jax starts a backend."""
  flags = [f for f in os.environ.get("XLA_FLAGS", "").split()
           if not f.startswith("--xla_force_host_platform_device_count")]
  os.environ["XLA_FLAGS"] = " ".join(flags + [f"--xla_force_host_platform_device_count={n}"])
  os.environ["JAX_PLATFORMS"] = "cpu"


def main(argv: Optional[Sequence[str]] = None) -> int:
  """The CLI; see the module docstring. Returns the exit status."""
  import argparse
  parser = argparse.ArgumentParser(
      prog="python -m phi_jax.aot", description=__doc__.split("\n\n")[0],
      formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--config", required=True, help="configs/FILE.py[:ARG]")
  parser.add_argument("--devices", type=int, default=8, help="mesh size (default 8)")
  parser.add_argument("--device_memory_gb", type=float, default=None,
                      help="memory per device in GiB, e.g. 80 (H100), 141 (H200), 16 (v5e)")
  parser.add_argument("--layers", type=int, default=None,
                      help="compile K- and 2K-layer cuts and extrapolate (default: the real depth)")
  parser.add_argument("--platform", choices=("cpu", "default"), default="cpu",
                      help="cpu: N simulated CPU devices (default); default: jax's real devices")
  parser.add_argument("--target", choices=("gpu", "tpu", "cpu"), default=None,
                      help="the backend the estimate is for (its 'auto' scan unroll and weight "
                      "gradient forms); default gpu on simulated CPU devices")
  parser.add_argument("--json", action="store_true", help="print the report as one JSON line too")
  args, overrides = parser.parse_known_args(argv)
  bad = [o for o in overrides if not o.startswith("--config.")]
  if bad:
    parser.error(f"unrecognised arguments {bad}; config fields are set with --config.KEY=VALUE")
  if args.devices < 1:
    parser.error("--devices must be >= 1")
  if args.platform == "cpu":
    _set_device_count(args.devices)  # before jax is imported below

  from phi_jax.config_args import load_config  # imports no jax: main's --config.KEY parser
  try:
    config = load_config(args.config, [o[len("--config."):] for o in overrides])
    report = memory_report(config, args.devices, layers=args.layers,
                           device_memory_gb=args.device_memory_gb, target=args.target)
  except ValueError as e:
    print(f"error: {e}", file=sys.stderr)
    return 1
  print(format_report(report), flush=True)
  if args.json:
    import json
    print(json.dumps(report))
  return 0


if __name__ == "__main__":
  sys.exit(main())
