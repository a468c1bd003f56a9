"""Batched, KV-cached generation: one prefill, then a decode loop compiled once per shape bucket.

Prompts of different lengths are left-padded to a common bucket length P (padding has segment id
0 and is never attended), so generated token t sits in the same cache slot P + t for every row.
The whole generation (prefill + `lax.while_loop` over new tokens) is one jitted program whose
shapes depend only on buckets: batch -> next power of two, prompt length and number of new tokens
-> next power of two (at least 16). Within a bucket nothing recompiles: the real number of new
tokens, temperature, top-k and top-p are traced values.

On CPU the decode loop runs an unscanned copy of the model (per-layer, transposed weights and a
per-layer head-major KV cache, made once per call; see `_generate_tokens`), which reads weights
and cache in place. On a 17M-parameter model its decode steps are 1.3x (batch 1) and 2.4x
(batch 8) faster than the scanned model's (experiments/perf/decode_vs_hf.py, BENCHMARKS.md). It
costs a second copy of the layer weights during the call (skipped when that would not fit:
`default_decode_layout`) and a longer compile (the layers are unrolled in the loop body).

LongRoPE rule: the factors (short or long) are chosen once, up front, from the longest prompt plus
max_new_tokens (long when that exceeds the original length). transformers instead switches midway
and re-encodes the sequence when the length first crosses it; results differ only for generations
that cross the boundary.
"""

from __future__ import annotations

import functools
import os
from typing import Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from phi_jax.decoding import early_exit as early_exit_lib
from phi_jax.decoding import sampling
from phi_jax.decoding import skipdecode
from phi_jax.decoding.cache import init_cache
from phi_jax.models.config import ModelConfig
from phi_jax.models.transformer import Transformer, unscanned_cache, unscanned_params


def bucket(n: int, minimum: int = 16) -> int:
  """Smallest power of two >= max(n, minimum)."""
  size = minimum
  while size < n:
    size *= 2
  return size


def _check_prompts(cfg: ModelConfig, prompts: Sequence[Sequence[int]], max_new_tokens: int) -> None:
  if isinstance(prompts, (str, bytes)) or not len(prompts):
    raise ValueError("prompts must be a non-empty list of token-id lists")
  if not isinstance(max_new_tokens, (int, np.integer)) or max_new_tokens < 1:
    raise ValueError(f"max_new_tokens must be a positive int, got {max_new_tokens!r}")
  for i, prompt in enumerate(prompts):
    if isinstance(prompt, (str, bytes)) or len(prompt) == 0:
      raise ValueError(f"prompt {i} is empty or not a list of token ids; tokenize it first")
    ids = np.asarray(prompt)
    if ids.ndim != 1 or not np.issubdtype(ids.dtype, np.integer):
      raise ValueError(f"prompt {i} must be a flat list of int token ids, got dtype {ids.dtype} "
                       f"shape {ids.shape}")
    if ids.min() < 0 or ids.max() >= cfg.vocab_size:
      raise ValueError(f"prompt {i} has token ids outside [0, vocab_size={cfg.vocab_size}): "
                       f"min {ids.min()}, max {ids.max()}")
    if len(prompt) + max_new_tokens > cfg.max_seq_len:
      raise ValueError(
          f"prompt {i} has {len(prompt)} tokens; with max_new_tokens={max_new_tokens} that is "
          f"{len(prompt) + max_new_tokens} > the model's context max_seq_len={cfg.max_seq_len}. "
          "Shorten the prompt or lower max_new_tokens.")


def left_pad(prompts: Sequence[Sequence[int]], batch: int, length: int):
  """Right-aligns prompts in [batch, length] int32; returns (tokens, pad_lens [batch]).

  Rows beyond len(prompts) repeat prompt 0 (their output is discarded).
  """
  tokens = np.zeros((batch, length), np.int32)
  pads = np.zeros((batch,), np.int32)
  for row in range(batch):
    prompt = prompts[row] if row < len(prompts) else prompts[0]
    pads[row] = length - len(prompt)
    tokens[row, pads[row]:] = prompt
  return tokens, pads


DECODE_LAYOUTS = ("stacked", "per_layer", "per_layer_t")


def default_decode_layout(params=None) -> str:
  """'per_layer_t' on the CPU backend (where it measured fastest), else 'stacked'.

  Also 'stacked' when the second copy of the layer weights that the per-layer layouts make would
  take more than a quarter of the machine's physical memory (e.g. phi-2 in float32 on 24 GB).
  """
  if jax.default_backend() != "cpu":
    return "stacked"
  if params is not None:
    layers = params.get("layers", {}) if hasattr(params, "get") else {}
    nbytes = sum(x.size * x.dtype.itemsize for x in jax.tree_util.tree_leaves(layers))
    try:
      memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
      memory = None
    if memory and nbytes > memory / 4:
      return "stacked"
  return "per_layer_t"


@functools.partial(jax.jit,
                   static_argnames=("cfg", "mode", "cache_len", "out_len", "decode_layout",
                                    "skip", "early_exit", "return_cache"))
def _generate_tokens(params, tokens, pads, max_new, rng, sampling_params, eos_id, long_rope, *,
                     cfg: ModelConfig, mode: sampling.SamplingMode, cache_len: int, out_len: int,
                     decode_layout: str = "stacked",
                     skip: Optional[skipdecode.SkipSchedule] = None,
                     early_exit: Optional[early_exit_lib.EarlyExit] = None,
                     return_cache: bool = False):
  """tokens [B, P] left-padded -> (new tokens [B, out_len] int32, number of steps run,
  layers run for each new token [out_len] int32) (+ the final KV cache if return_cache).

  decode_layout (the prefill always runs the scanned model on the stacked params and cache):
    'stacked': the decode loop runs the same scanned model.
    'per_layer': the loop runs Transformer(cfg, scan_layers=False) on per-layer copies of the
      weights and a per-layer, head-major copy of the KV cache, made once after the prefill, so
      that every step reads weights and cache in place (a scan over stacked weights copies each
      layer's slice every step on XLA:CPU, and attention transposes the stacked cache).
    'per_layer_t': the same, with the kernels stored transposed (faster small-batch GEMMs on
      XLA:CPU). Both copy the layer weights once per call: peak memory holds them twice.

  skip / early_exit (per-layer layouts only): each decode step runs layer by layer
  (`skipdecode.decode_step` / `early_exit.decode_step`), leaving layers out of the computation.
  """
  if decode_layout not in DECODE_LAYOUTS:
    raise ValueError(f"decode_layout {decode_layout!r} is not one of {DECODE_LAYOUTS}")
  if (skip or early_exit) and decode_layout == "stacked":
    raise ValueError("skip / early_exit decode layer by layer from per-layer weights: use "
                     "decode_layout='per_layer' or 'per_layer_t'")
  model = Transformer(cfg)
  step_model, step_params = model, params
  if decode_layout != "stacked":
    step_model = Transformer(cfg, scan_layers=False)
    step_params = unscanned_params(params, transpose_kernels=decode_layout == "per_layer_t")
  batch, prompt_len = tokens.shape
  slots = jnp.arange(prompt_len, dtype=jnp.int32)[None, :]
  segment_ids = (slots >= pads[:, None]).astype(jnp.int32)
  positions = jnp.maximum(slots - pads[:, None], 0)
  lengths = prompt_len - pads  # real prompt lengths [B]

  cache = init_cache(cfg, batch, cache_len)
  logits, cache = model.apply({"params": params}, tokens, positions=positions,
                              segment_ids=segment_ids, cache=cache, long_rope=long_rope,
                              last_only=True)
  if decode_layout != "stacked":
    cache = unscanned_cache(cache)
  rng, step_rng = jax.random.split(rng)
  token = sampling.sample(logits[:, -1], step_rng, mode, sampling_params)
  out = jnp.zeros((batch, out_len), jnp.int32).at[:, 0].set(token)
  layers_used = jnp.zeros((out_len,), jnp.int32).at[0].set(cfg.num_layers)  # g_0: the prefill
  done = (token == eos_id) & (eos_id >= 0)

  def cond(state):
    step, _, _, _, _, done, _ = state
    return (step < max_new) & ~jnp.all(done)

  def body(state):
    step, token, cache, out, layers_used, done, rng = state
    positions = (lengths + step - 1)[:, None]
    if skip is not None:  # step processes generated token t = step - 1
      logits, cache, layers = skipdecode.decode_step(cfg, step_params, token, positions, cache,
                                                     step - 1, skip, long_rope)
    elif early_exit is not None:
      logits, cache, layers = early_exit_lib.decode_step(cfg, step_params, token, positions,
                                                         cache, done, early_exit, long_rope)
    else:
      logits, cache = step_model.apply({"params": step_params}, token[:, None],
                                       positions=positions,
                                       segment_ids=jnp.ones((batch, 1), jnp.int32), cache=cache,
                                       long_rope=long_rope)
      logits, layers = logits[:, -1], jnp.int32(cfg.num_layers)
    rng, step_rng = jax.random.split(rng)
    new = sampling.sample(logits, step_rng, mode, sampling_params)
    new = jnp.where(done, jnp.maximum(eos_id, 0), new)
    out = jax.lax.dynamic_update_slice(out, new[:, None], (0, step))
    layers_used = jax.lax.dynamic_update_slice(layers_used, layers[None], (step,))
    done = done | ((new == eos_id) & (eos_id >= 0))
    return step + 1, new, cache, out, layers_used, done, rng

  state = (jnp.int32(1), token, cache, out, layers_used, done, rng)
  steps, _, cache, out, layers_used, _, _ = jax.lax.while_loop(cond, body, state)
  if return_cache:
    return out, steps, layers_used, cache
  return out, steps, layers_used


def generate(cfg: ModelConfig, params, prompts: Sequence[Sequence[int]], *, max_new_tokens: int,
             temperature: float = 0.0, top_k: Optional[int] = None, top_p: Optional[float] = None,
             eos_id: Optional[int] = None, rng: Optional[jax.Array] = None,
             decode_layout: Optional[str] = None,
             skip: Optional[skipdecode.SkipSchedule] = None,
             early_exit: Optional[early_exit_lib.EarlyExit] = None,
             return_stats: bool = False):
  """Generates up to `max_new_tokens` tokens after each prompt.

  Args:
    cfg: the model's config.
    params: its parameters (the 'params' collection).
    prompts: token-id lists, of different lengths.
    temperature: 0 = greedy; otherwise sample from softmax(logits / temperature) after the
      top_k / top_p filters.
    eos_id: a row stops after producing it (the eos token is included in its output).
    rng: a jax PRNG key for sampling (default key 0).
    decode_layout: how the decode loop holds weights and cache, one of DECODE_LAYOUTS (same
      tokens, different speed and memory; see `_generate_tokens`); None = default_decode_layout
      (with skip / early_exit: a per-layer layout).
    skip: a `SkipSchedule` (SkipDecode): generated token t runs only the layers in
      skip.active(t); the prompt runs every layer. Skipped layers are not executed.
    early_exit: an `EarlyExit` policy (the CALM baseline). At most one of skip / early_exit.
    return_stats: also return {'layers_per_token': [n] layers run for each generated position
      (the prompt's full-depth pass for g_0 included), 'mean_layers', 'steps'}.

  Returns:
    The new tokens of each prompt, in order (and the stats dict if return_stats).
  """
  _check_prompts(cfg, prompts, max_new_tokens)
  if skip is not None and early_exit is not None:
    raise ValueError("pass at most one of skip= and early_exit=")
  if skip is not None and (not isinstance(skip, skipdecode.SkipSchedule)
                           or skip.num_layers != cfg.num_layers):
    raise ValueError(f"skip must be a SkipSchedule for this model's {cfg.num_layers} layers, got "
                     f"{skip!r}")
  if early_exit is not None:
    early_exit.points(cfg.num_layers)  # validates
  layered = skip is not None or early_exit is not None
  if decode_layout is None:
    decode_layout = default_decode_layout(params)
    if layered and decode_layout == "stacked":
      decode_layout = "per_layer"
  params = nn.unbox(params)
  mode, sampling_params = sampling.make_sampling(cfg.vocab_size, temperature, top_k, top_p)
  longest = max(len(p) for p in prompts)
  batch = bucket(len(prompts), minimum=1)
  prompt_len = bucket(longest)
  out_len = bucket(max_new_tokens)
  tokens, pads = left_pad(prompts, batch, prompt_len)
  long_rope = cfg.long_rope and longest + max_new_tokens > cfg.rope_original_max_len
  rng = jax.random.key(0) if rng is None else rng
  out, steps, layers_used = _generate_tokens(
      params, jnp.asarray(tokens), jnp.asarray(pads), jnp.int32(max_new_tokens), rng,
      sampling_params, jnp.int32(-1 if eos_id is None else eos_id), jnp.bool_(long_rope),
      cfg=cfg, mode=mode, cache_len=prompt_len + out_len, out_len=out_len,
      decode_layout=decode_layout, skip=skip, early_exit=early_exit)
  out = np.asarray(out)
  results = []
  for row in range(len(prompts)):
    new = out[row, :max_new_tokens].tolist()
    if eos_id is not None and eos_id in new:
      new = new[:new.index(eos_id) + 1]
    results.append(new)
  if not return_stats:
    return results
  steps = int(steps)
  per_token = np.asarray(layers_used)[:steps].tolist()
  return results, {"layers_per_token": per_token, "mean_layers": float(np.mean(per_token)),
                   "steps": steps}


def compiled_programs() -> int:
  """How many generation programs have been compiled so far (for recompilation tests)."""
  return _generate_tokens._cache_size()
