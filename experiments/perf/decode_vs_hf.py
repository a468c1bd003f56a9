"""Greedy decoding speed on ONE CPU core: phi_jax.decoding.generate vs transformers' generate.

Both sides run the same random weights: a ~17M-parameter phi-1-shaped model (parallel block,
gelu_tanh, LayerNorm, partial rotary 0.5; 6 layers, d_model 384, 6 heads of 64, mlp 1536,
vocab 8192, context 2048) is built in transformers with a fixed seed (biases and norms perturbed),
saved with save_pretrained and read back with phi_jax.convert.hf.load. Decoding is greedy, fp32,
exactly `new_tokens` new tokens per row (HF: do_sample=False, min_new_tokens=max_new_tokens,
eos_token_id=None, KV cache). Batch 1 is one prompt of 32 random tokens; batch 8 has prompts of
16..32 tokens (left-padded with an attention_mask for HF; phi_jax pads them itself).

    python experiments/perf/decode_vs_hf.py                    # ~1-2 minutes on one core
    python experiments/perf/decode_vs_hf.py --quick            # tiny model, a few seconds
    python experiments/perf/decode_vs_hf.py --dtype=bfloat16   # phi_jax decodes in bf16

--dtype=bfloat16: phi_jax decodes with bfloat16 weights and compute (decoding.prepare_weights;
norms, softmax and logits in float32), transformers stays float32; each batch then also reports
`vs_phi_jax_float32`: whether phi_jax's bf16 greedy tokens equal its float32 ones, else the first
step (and row) where they differ.

Layout reuse: `generate` copies the params into its decode layout once and reuses that copy while
the same params come back (decoding/weights.py), so the timed calls do not include it; the copy's
time is reported once as phi_jax_prepare_weights_s.

Single core: the process pins itself to one CPU with os.sched_setaffinity BEFORE numpy, torch or
jax are imported (threads inherit the mask), sets torch.set_num_threads(1) and
OMP/MKL/OpenBLAS_NUM_THREADS=1, and adds --xla_cpu_multi_thread_eigen=false to XLA_FLAGS. In jax
0.10 XLA_FLAGS accepts --xla_cpu_multi_thread_eigen=false; `intra_op_parallelism_threads=1` is not
an XLA flag: written without dashes XLA's flag parser silently ignores it, with dashes it aborts
("Unknown flag in XLA_FLAGS"). The affinity mask is what guarantees one core; the JSON reports the
process' CPU-time / wall-time ratio during the timed runs as a check (<= 1.0 means one core).

Timing: both sides are warmed up first (phi_jax's first call, which compiles, is reported as
phi_jax_compile_s = first call - median call). Then `reps` rounds, interleaving the two sides, and
the median is taken. tokens/s = batch * new_tokens / seconds of one whole generate call
(prefill included). Each side is also timed with one new token (phi_jax: the same compiled
program, run with max_new_tokens=1): *_prefill_ms is that (setup + prefill), and *_step_ms, the
time of one decode step, is (t(new_tokens) - t(1)) / (new_tokens - 1).

Bandwidth (batch 1): weight bytes streamed per decode step are every parameter except the
embedding table (a decode step gathers B rows of it, not the table). phi_jax_weight_bytes_per_s =
weight_bytes / decode-step seconds. The machine's single-core bandwidth is measured in the same
process on the same pinned core by numpy: copying a 512 MB float32 array, counted as read + write
(2 * 512 MB per copy, the convention of STREAM's Copy), and summing it (read only, 512 MB).
fraction = phi_jax_weight_bytes_per_s / single_core_copy_bytes_per_s. Both are best of 5.

The last line of stdout is one JSON object; measured figures are in BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import os
import sys


def _parse(argv=None) -> argparse.Namespace:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--batch_sizes", default="1,8", help="comma-separated, e.g. 1,8")
  p.add_argument("--new_tokens", type=int, default=128)
  p.add_argument("--reps", type=int, default=5, help="timed repetitions; the median is reported")
  p.add_argument("--quick", action="store_true",
                 help="tiny model, 8 new tokens, 1 rep, 32 MB bandwidth array (smoke test)")
  p.add_argument("--cpu", type=int, default=None,
                 help="CPU to pin to (default: the last one this process may use)")
  p.add_argument("--hf_attn", default="sdpa", choices=["sdpa", "eager"],
                 help="transformers attention implementation (its default is sdpa)")
  p.add_argument("--init_std", type=float, default=0.02, help="HF initializer_range")
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--bandwidth_mb", type=int, default=512)
  p.add_argument("--decode_layout", default="auto",
                 choices=["auto", "stacked", "per_layer", "per_layer_t"],
                 help="phi_jax's decode-loop layout (auto: generation.default_decode_layout; "
                      "stacked: the scanned model, as before the per-layer decode path)")
  p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"],
                 help="phi_jax's decode dtype (weights and compute); transformers stays float32")
  return p.parse_args(argv)


ARGS = _parse()
# ---- one core, before any numerical library is imported ----------------------------------------
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import one_core  # noqa: E402

CPU = one_core.pin(ARGS.cpu)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import datetime  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import resource  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
import jax  # noqa: E402
from flax import traverse_util  # noqa: E402

from phi_jax.convert import hf  # noqa: E402
from phi_jax.decoding import generate, generation, prepare_weights  # noqa: E402
from phi_jax.decoding.generation import bucket  # noqa: E402

torch.set_num_threads(1)
try:
  torch.set_num_interop_threads(1)
except RuntimeError:
  pass
transformers.logging.set_verbosity_error()
transformers.utils.logging.disable_progress_bar()
warnings.filterwarnings("ignore")

LAYOUT = None  # phi_jax's decode layout, set in main (--decode_layout)
DTYPE = None  # phi_jax's decode dtype, set in main (--dtype; None = float32, the params')
FULL = dict(vocab_size=8192, hidden_size=384, intermediate_size=1536, num_hidden_layers=6,
            num_attention_heads=6, max_position_embeddings=2048)
TINY = dict(vocab_size=257, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
            num_attention_heads=4, max_position_embeddings=128)


# ---- model ---------------------------------------------------------------------------------------

def build_models(shape: dict, init_std: float, seed: int, attn: str, tmp: str):
  """The HF model (fp32, eval) and the same weights in phi_jax: (hf_model, cfg, params)."""
  config = transformers.PhiConfig(
      **shape, partial_rotary_factor=0.5, hidden_act="gelu_new", initializer_range=init_std,
      bos_token_id=None, eos_token_id=None, pad_token_id=0, use_cache=True)
  config._attn_implementation = attn
  torch.manual_seed(seed)
  model = transformers.PhiForCausalLM(config).eval()
  with torch.no_grad():
    for name, param in model.named_parameters():
      if name.endswith("bias") or "layernorm" in name:
        param.add_(0.2 * torch.randn_like(param))
  model.save_pretrained(tmp)
  cfg, params = hf.load(tmp)
  params = jax.device_put(params)  # once, as a user would: numpy params are re-sent every call
  return model, cfg, params


def make_prompts(batch: int, vocab: int, max_len: int, rng: np.random.Generator) -> list[list[int]]:
  """Batch 1: one prompt of max_len tokens. Otherwise lengths spread over max_len/2 .. max_len."""
  if batch == 1:
    lengths = [max_len]
  else:
    lengths = np.linspace(max_len // 2, max_len, batch).round().astype(int).tolist()
    lengths = rng.permutation(lengths).tolist()
  return [rng.integers(3, vocab, n).tolist() for n in lengths]


# ---- the two generators --------------------------------------------------------------------------

def jax_generate(cfg, params, prompts, new: int, dtype=False) -> list[list[int]]:
  """phi_jax's greedy tokens (dtype: the decode dtype; False = --dtype's)."""
  return generate(cfg, params, prompts, max_new_tokens=new, decode_layout=LAYOUT,
                  dtype=DTYPE if dtype is False else dtype)


def hf_inputs(prompts: list[list[int]]):
  """Left-padded input_ids and attention_mask (pad id 0)."""
  width = max(len(p) for p in prompts)
  ids = torch.zeros((len(prompts), width), dtype=torch.long)
  mask = torch.zeros((len(prompts), width), dtype=torch.long)
  for row, p in enumerate(prompts):
    ids[row, width - len(p):] = torch.tensor(p)
    mask[row, width - len(p):] = 1
  return ids, mask


def hf_generate(model, inputs, new: int) -> list[list[int]]:
  ids, mask = inputs
  config = transformers.GenerationConfig(
      max_new_tokens=new, min_new_tokens=new, do_sample=False, eos_token_id=None, pad_token_id=0,
      use_cache=True)
  with torch.no_grad():
    out = model.generate(input_ids=ids, attention_mask=mask, generation_config=config)
  return out[:, ids.shape[1]:].tolist()


def hf_step_logits(model, inputs, tokens: list[list[int]]) -> np.ndarray:
  """HF logits [B, new, V] of the sequence prompt + tokens (for diagnosing a mismatch)."""
  ids, mask = inputs
  new = torch.tensor(tokens, dtype=torch.long)
  full_ids = torch.cat([ids, new], 1)
  full_mask = torch.cat([mask, torch.ones_like(new)], 1)
  pos = (full_mask.cumsum(-1) - 1).clamp(min=0)
  with torch.no_grad():
    logits = model(input_ids=full_ids, attention_mask=full_mask, position_ids=pos).logits
  return logits[:, ids.shape[1] - 1:-1].float().numpy()


def compare(ours, ref, model, inputs) -> dict:
  """tokens_identical, and where they first differ with HF's top-2 logit gap there."""
  if ours == ref:
    return {"tokens_identical": True}
  rows = [r for r in range(len(ours)) if ours[r] != ref[r]]
  row = rows[0]
  step = next(i for i, (a, b) in enumerate(zip(ours[row], ref[row])) if a != b)
  logits = hf_step_logits(model, inputs, ref)[row, step]
  top2 = np.sort(logits)[-2:]
  return {"tokens_identical": False, "rows_differing": len(rows), "first_row": row,
          "first_step": step, "hf_top2_gap_there": float(top2[1] - top2[0])}


def first_difference(ours, ref) -> dict:
  """identical, else the first differing (row, step) of two token lists [rows][steps]."""
  if ours == ref:
    return {"identical": True}
  firsts = [(next(i for i, (a, b) in enumerate(zip(o, r)) if a != b), row)
            for row, (o, r) in enumerate(zip(ours, ref)) if o != r]
  step, row = min(firsts)
  return {"identical": False, "first_step": step, "first_row": row, "rows_differing": len(firsts),
          "steps_per_row": len(ours[0])}


# ---- timing --------------------------------------------------------------------------------------

def timed(fn):
  t = time.perf_counter()
  out = fn()
  return time.perf_counter() - t, out


def jax_prefill_only(cfg, params, prompts: list[list[int]], new: int) -> None:
  """The program generate(cfg, params, prompts, max_new_tokens=new) runs, with max_new_tokens=1:
  its setup and prefill (and the first token), no decode step. Same compiled program."""
  program = generation.prepare(cfg, params, prompts, max_new_tokens=1, out_len=bucket(new),
                               decode_layout=LAYOUT, dtype=DTYPE)
  np.asarray(program.run()[0])


def bench_batch(batch: int, model, cfg, params, args, rng) -> dict:
  new = args.new_tokens
  prompts = make_prompts(batch, cfg.vocab_size, 32 if not args.quick else 8, rng)
  inputs = hf_inputs(prompts)

  compile_s, ours = timed(lambda: jax_generate(cfg, params, prompts, new))
  ref = hf_generate(model, inputs, new)  # warm-up
  result = compare(ours, ref, model, inputs)
  if DTYPE is not None:  # the same generation in float32: where do bf16's greedy tokens diverge?
    f32 = jax_generate(cfg, params, prompts, new, dtype=None)
    result["vs_phi_jax_float32"] = first_difference(ours, f32)
  programs = generation.compiled_programs()
  jax_prefill_only(cfg, params, prompts, new)
  assert generation.compiled_programs() == programs, "prefill-only run compiled a new program"
  hf_generate(model, inputs, 1)

  times = {k: [] for k in ("jax", "hf", "jax_prefill", "hf_prefill")}
  r0, w0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
  for _ in range(args.reps):  # interleaved, so that load changes hit both sides alike
    times["jax"].append(timed(lambda: jax_generate(cfg, params, prompts, new))[0])
    times["hf"].append(timed(lambda: hf_generate(model, inputs, new))[0])
    times["jax_prefill"].append(timed(lambda: jax_prefill_only(cfg, params, prompts, new))[0])
    times["hf_prefill"].append(timed(lambda: hf_generate(model, inputs, 1))[0])
  r1, w1 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
  cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
  med = {k: statistics.median(v) for k, v in times.items()}

  out = {"phi_jax": batch * new / med["jax"], "reference": batch * new / med["hf"]}
  out["ratio"] = out["phi_jax"] / out["reference"]
  out.update(result)
  out["phi_jax_compile_s"] = max(compile_s - med["jax"], 0.0)
  out["phi_jax_s"] = med["jax"]
  out["reference_s"] = med["hf"]
  # Setup + prefill + first token (max_new_tokens=1), then per decode step: the rest / (new - 1).
  out["phi_jax_prefill_ms"] = 1e3 * med["jax_prefill"]
  out["reference_prefill_ms"] = 1e3 * med["hf_prefill"]
  if new > 1:
    out["phi_jax_step_ms"] = 1e3 * (med["jax"] - med["jax_prefill"]) / (new - 1)
    out["reference_step_ms"] = 1e3 * (med["hf"] - med["hf_prefill"]) / (new - 1)
  out["prompt_lengths"] = [len(p) for p in prompts]
  out["cpu_per_wall"] = cpu / (w1 - w0)
  out["all_s"] = {k: [round(x, 4) for x in v] for k, v in times.items()}
  return out


def bandwidth(megabytes: int, reps: int = 5) -> dict:
  """Single-core copy (read + write counted) and sum (read) of a float32 array, best of reps."""
  n = megabytes * 2**20 // 4
  src = np.ones(n, np.float32)
  dst = np.empty(n, np.float32)
  dst.fill(0.0)  # touch every page: no page faults in the timed copies
  copy, read = [], []
  for _ in range(reps):
    copy.append(timed(lambda: np.copyto(dst, src))[0])
    read.append(timed(lambda: src.sum())[0])
  nbytes = n * 4
  return {"array_bytes": nbytes, "single_core_copy_bytes_per_s": 2 * nbytes / min(copy),
          "single_core_read_bytes_per_s": nbytes / min(read)}


def machine() -> dict:
  model = "unknown"
  try:
    with open("/proc/cpuinfo") as f:
      model = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
  except (OSError, StopIteration):
    pass
  return {"cpu_model": model, "cores": os.cpu_count(), "pinned_cpu": CPU,
          "loadavg_start": [round(x, 2) for x in os.getloadavg()],
          "python": platform.python_version(), "jax": jax.__version__, "torch": torch.__version__,
          "transformers": transformers.__version__,
          "xla_flags": os.environ["XLA_FLAGS"], "torch_threads": torch.get_num_threads()}


def main(args: argparse.Namespace) -> dict:
  if args.quick:
    args.new_tokens, args.reps, args.bandwidth_mb = 8, 1, 32
  info = machine()
  rng = np.random.default_rng(args.seed)
  with tempfile.TemporaryDirectory() as tmp:
    model, cfg, params = build_models(TINY if args.quick else FULL, args.init_std, args.seed,
                                      args.hf_attn, tmp)
  global LAYOUT, DTYPE
  LAYOUT = (generation.default_decode_layout(params) if args.decode_layout == "auto"
            else args.decode_layout)
  DTYPE = None if args.dtype == "float32" else args.dtype
  # The decode-layout copy generate makes once per params (first call compiles it: best of 3).
  prepare_s = min(timed(lambda: jax.block_until_ready(
      prepare_weights(cfg, params, layout=LAYOUT, dtype=DTYPE)))[0] for _ in range(3))
  flat = traverse_util.flatten_dict(jax.tree_util.tree_map(np.asarray, params))
  param_bytes = sum(x.nbytes for x in flat.values())
  n_params = sum(x.size for x in flat.values())
  streamed = param_bytes - flat[("embed", "embedding")].nbytes
  print(f"model: {n_params:,} params ({param_bytes / 1e6:.1f} MB fp32), {cfg.num_layers} layers, "
        f"d_model {cfg.d_model}, heads {cfg.num_heads}x{cfg.dim_per_head}, rotary {cfg.rot_dim}, "
        f"mlp {cfg.mlp_dim}, vocab {cfg.vocab_size}; pinned to CPU {CPU}; HF attn {args.hf_attn}",
        flush=True)

  result = {"benchmark": "decode_vs_hf",
            "machine": f"{info['cpu_model']}, {info['cores']} cores, pinned to cpu {CPU}",
            "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "threads": 1, "new_tokens": args.new_tokens, "reps": args.reps, "dtype": args.dtype,
            "reference_dtype": "float32", "phi_jax_prepare_weights_s": prepare_s,
            "params": int(n_params), "hf_attn": args.hf_attn,
            "decode_layout": LAYOUT}
  for batch in [int(b) for b in args.batch_sizes.split(",")]:
    res = bench_batch(batch, model, cfg, params, args, rng)
    print(f"batch {batch}: phi_jax {res['phi_jax']:.1f} tok/s, transformers "
          f"{res['reference']:.1f} tok/s, ratio {res['ratio']:.2f}, identical "
          f"{res['tokens_identical']}, compile {res['phi_jax_compile_s']:.2f} s", flush=True)
    result[f"batch_{batch}"] = res

  bw = bandwidth(args.bandwidth_mb)
  result["bandwidth"] = {"weight_bytes": int(streamed), "param_bytes": int(param_bytes), **bw,
                         "convention": "copy counts read+write (2 x array bytes per copy); "
                                       "read is a sum over the array; weight_bytes = all params "
                                       "but the embedding table, read once per decode step"}
  # Batch 1 decode steps stream the weights: bytes per step / seconds per step (None when the
  # step time could not be resolved, e.g. --quick's 8 tokens).
  step_ms = result.get("batch_1", {}).get("phi_jax_step_ms")
  per_s = streamed / (step_ms / 1e3) if step_ms and step_ms > 0 else None
  result["bandwidth"].update(
      phi_jax_weight_bytes_per_s=per_s,
      fraction=per_s / bw["single_core_copy_bytes_per_s"] if per_s else None,
      fraction_of_read=per_s / bw["single_core_read_bytes_per_s"] if per_s else None)
  ref_ms = result.get("batch_1", {}).get("reference_step_ms")
  result["bandwidth"]["reference_weight_bytes_per_s"] = (
      streamed / (ref_ms / 1e3) if ref_ms and ref_ms > 0 else None)
  info["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
  result["machine_info"] = info
  return result


if __name__ == "__main__":
  print(json.dumps(main(ARGS)))
  sys.stdout.flush()
