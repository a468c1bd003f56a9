"""Batched, KV-cached generation: one prefill, then a decode loop compiled once per shape bucket.

Prompts of different lengths are left-padded to a common bucket length P (padding has segment id
0 and is never attended), so generated token t sits in the same cache slot P + t for every row.
The whole generation (prefill + `lax.while_loop` over new tokens) is one jitted program whose
shapes depend only on buckets: batch -> next power of two, prompt length and number of new tokens
-> next power of two (at least 16). Within a bucket nothing recompiles: the real number of new
tokens, temperature, top-k and top-p are traced values.

The program is public: `prepare` makes the exact call `generate` runs (`Program.run()`), for
benchmarks and experiments that time it or read its per-token layer counts, and
`generate_tokens` is the jitted function itself.

On CPU the decode loop runs a per-layer copy of the model (per-layer, transposed weights and a
per-layer head-major KV cache; decoding/layouts.py), which reads weights and cache in place. On a
17M-parameter model its decode steps are 1.3x (batch 1) and 2.4x (batch 8) faster than the scanned
model's (experiments/perf/decode_vs_hf.py, BENCHMARKS.md). The weight copy is made once per
(model, params), not per call: `generate` keeps the copy of the last params it saw
(decoding/weights.py; `prepare_weights` makes one explicitly, and `generate` takes it in place
of params, e.g. in bfloat16). It costs a second copy of the layer weights (skipped when that would
not fit: `layouts.default_decode_layout`) and a longer compile (the layers are unrolled).

LongRoPE rule: the factors (short or long) are chosen once, up front, from the longest prompt plus
max_new_tokens (long when that exceeds the original length). transformers instead switches midway
and re-encodes the sequence when the length first crosses it; results differ only for generations
that cross the boundary.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from phi_jax.decoding import early_exit as early_exit_lib
from phi_jax.decoding import layouts
from phi_jax.decoding import sampling
from phi_jax.decoding import skipdecode
from phi_jax.decoding import weights as weights_lib
from phi_jax.decoding.cache import init_cache
from phi_jax.decoding.layouts import DECODE_LAYOUTS, default_decode_layout  # noqa: F401
from phi_jax.decoding.weights import DecodeWeights
from phi_jax.models.config import ModelConfig
from phi_jax.models.transformer import Transformer


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


def _eos_list(eos_id: Optional[int | Sequence[int]]) -> list[int]:
  if eos_id is None:
    return []
  ids = [eos_id] if isinstance(eos_id, (int, np.integer)) else eos_id
  if isinstance(ids, (str, bytes)) or not all(isinstance(i, (int, np.integer)) for i in ids):
    raise ValueError(f"eos_id must be None, a token id or a list of token ids, got {eos_id!r}")
  return [int(i) for i in ids if i >= 0]  # a negative id (-1) is no end id


def _eos_arg(eos_id: Optional[int | Sequence[int]]) -> jax.Array:
  """generate_tokens' eos_id: an int32 scalar for None (-1) or one id, else [E] int32 padded
  with -1 to a power of two (so 2 to 4 end ids share one compiled program)."""
  ids = _eos_list(eos_id)
  if isinstance(eos_id, (int, np.integer)) or len(ids) <= 1:
    return jnp.int32(ids[0] if ids else -1)
  return jnp.asarray(ids + [-1] * (bucket(len(ids), minimum=1) - len(ids)), jnp.int32)


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


@functools.partial(jax.jit,
                   static_argnames=("cfg", "mode", "cache_len", "out_len", "skip", "early_exit",
                                    "decode_block", "return_cache"))
def generate_tokens(weights: DecodeWeights, tokens: jax.Array, pads: jax.Array,
                    max_new: jax.Array, rng: jax.Array,
                    sampling_params: sampling.SamplingParams, eos_id: jax.Array,
                    long_rope: jax.Array, *, cfg: ModelConfig, mode: sampling.SamplingMode,
                    cache_len: int, out_len: int,
                    skip: Optional[skipdecode.SkipSchedule] = None,
                    early_exit: Optional[early_exit_lib.EarlyExit] = None,
                    decode_block: Optional[int] = None, return_cache: bool = False):
  """The generation program (jitted; `prepare` makes its arguments as `generate` does).

  Args:
    weights: the model's `DecodeWeights` (weights.prepare_weights); their layout (one of
      layouts.DECODE_LAYOUTS) says how the loop holds weights and cache: 'stacked' runs the
      scanned model on the stacked params and cache (prefill and decode), 'per_layer' /
      'per_layer_t' run the layers one by one (layouts.forward) on per-layer weights and a
      per-layer head-major cache, prefill included.
    tokens: [B, P] int32 prompts, left-padded (`left_pad`); pads: [B] int32 padding per row.
    max_new: int32 scalar, new tokens to make (<= out_len); rng: PRNG key.
    sampling_params: traced sampling values (`sampling.make_sampling`); eos_id: int32 scalar
      or [E] of end ids (-1: none; a row stops at any of them); long_rope: bool scalar, LongRoPE
      factor choice.
    cfg, mode, cache_len (>= P + out_len), out_len: static. The program runs in
      weights.decode_cfg(cfg) (the compute dtype of the weights).
    skip / early_exit (per-layer layouts only): each decode step runs layer by layer
      (`skipdecode.decode_step` / `early_exit.decode_step`), leaving layers out.
    decode_block (static; per-layer layouts): None = the decode loop's cache is one buffer of
      all cache_len slots per layer, read whole every step; an int = the prefill fills a cache
      of the prompt's P slots, which the loop continues in blocks of at least decode_block slots
      (layouts.extend_to_blocks), and each step attends over the filled blocks only (`prepare`
      passes layouts.DECODE_BLOCK). Same tokens.
    return_cache: also return the final cache (a KVCache, or a layouts.PerLayerCache of
      HeadMajorKV layers, [B * K, cache_len, Dh]).

  Returns:
    (new tokens [B, out_len] int32, number of steps run, layers run for each new token
    [out_len] int32) (+ the final cache if return_cache).
  """
  decode_layout = weights.layout
  layouts.check_layout(decode_layout)
  if (skip or early_exit) and decode_layout == "stacked":
    raise ValueError("skip / early_exit decode layer by layer from per-layer weights: use "
                     "decode_layout='per_layer' or 'per_layer_t'")
  cfg = weights.decode_cfg(cfg)
  model = Transformer(cfg)
  params = step_params = weights.params
  batch, prompt_len = tokens.shape
  slots = jnp.arange(prompt_len, dtype=jnp.int32)[None, :]
  segment_ids = (slots >= pads[:, None]).astype(jnp.int32)
  positions = jnp.maximum(slots - pads[:, None], 0)
  lengths = prompt_len - pads  # real prompt lengths [B]

  if decode_layout == "stacked":
    cache = init_cache(cfg, batch, cache_len)
    logits, cache = model.apply({"params": params}, tokens, positions=positions,
                                segment_ids=segment_ids, cache=cache, long_rope=long_rope,
                                last_only=True)
    logits = logits[:, -1]
  elif decode_block is None:  # the prefill layer by layer, into the per-layer cache
    cache = layouts.init_per_layer_cache(cfg, batch, cache_len)
    logits, cache = layouts.forward(cfg, step_params, tokens, positions, segment_ids, cache,
                                    long_rope)
  else:  # the prefill into a cache of the prompt's slots, then decode in blocks after them
    cache = layouts.init_per_layer_cache(cfg, batch, prompt_len)
    logits, cache = layouts.forward(cfg, step_params, tokens, positions, segment_ids, cache,
                                    long_rope)
    cache = layouts.extend_to_blocks(cache, cache_len - prompt_len, decode_block)
  rng, step_rng = jax.random.split(rng)
  token = sampling.sample(logits, step_rng, mode, sampling_params)
  out = jnp.zeros((batch, out_len), jnp.int32).at[:, 0].set(token)
  layers_used = jnp.zeros((out_len,), jnp.int32).at[0].set(cfg.num_layers)  # g_0: the prefill
  eos_ids = jnp.atleast_1d(eos_id)  # [E]; -1 entries are no end id

  def is_end(t):  # [B] -> [B] bool
    return jnp.any((t[:, None] == eos_ids[None, :]) & (eos_ids[None, :] >= 0), axis=-1)

  done = is_end(token)

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
    elif decode_layout == "stacked":
      logits, cache = model.apply({"params": params}, token[:, None], positions=positions,
                                  segment_ids=jnp.ones((batch, 1), jnp.int32), cache=cache,
                                  long_rope=long_rope)
      logits, layers = logits[:, -1], jnp.int32(cfg.num_layers)
    else:
      logits, cache = layouts.decode_step(cfg, step_params, token, positions, cache, long_rope)
      layers = jnp.int32(cfg.num_layers)
    rng, step_rng = jax.random.split(rng)
    new = sampling.sample(logits, step_rng, mode, sampling_params)
    new = jnp.where(done, jnp.maximum(eos_ids[0], 0), new)
    out = jax.lax.dynamic_update_slice(out, new[:, None], (0, step))
    layers_used = jax.lax.dynamic_update_slice(layers_used, layers[None], (step,))
    done = done | is_end(new)
    return step + 1, new, cache, out, layers_used, done, rng

  state = (jnp.int32(1), token, cache, out, layers_used, done, rng)
  steps, _, cache, out, layers_used, _, _ = jax.lax.while_loop(cond, body, state)
  if return_cache:
    if decode_layout != "stacked":
      cache = layouts.merged_cache(cache)  # [B * K, S, Dh] per layer, blocked or not
    return out, steps, layers_used, cache
  return out, steps, layers_used


@dataclasses.dataclass(frozen=True)
class Program:
  """One run of `generate_tokens` with the arguments `generate` gives it (made by `prepare`).

  weights: the `DecodeWeights` it decodes with (their layout and dtype are static too).
  args: (tokens [B, P], pads [B], max_new, rng, sampling_params, eos_id, long_rope).
  static: its static keyword arguments (cfg, mode, cache_len, out_len, skip, early_exit,
    decode_block); two Programs with equal `static`, weight layout and dtype and array shapes
    share one compiled program.
  """
  weights: DecodeWeights
  args: tuple
  static: dict

  def run(self, return_cache: bool = False):
    """generate_tokens(weights, *args, **static): (new tokens [B, out_len], steps run, layers run
    per new token [out_len]) (+ the final cache if return_cache). Asynchronous (jax arrays)."""
    return generate_tokens(self.weights, *self.args, **self.static, return_cache=return_cache)


def prepare(cfg: ModelConfig, params, prompts: Sequence[Sequence[int]], *, max_new_tokens: int,
            out_len: Optional[int] = None, temperature: float = 0.0, top_k: Optional[int] = None,
            top_p: Optional[float] = None, eos_id: Optional[int | Sequence[int]] = None,
            rng: Optional[jax.Array] = None, decode_layout: Optional[str] = None,
            skip: Optional[skipdecode.SkipSchedule] = None,
            early_exit: Optional[early_exit_lib.EarlyExit] = None,
            dtype: Optional[Any] = None) -> Program:
  """The generation program `generate` runs for these arguments (see `generate`), validated and
  bucketed, not yet run. params: the model's params or its `DecodeWeights`.

  out_len: the new-token bucket (default bucket(max_new_tokens)); a larger one (>=
  max_new_tokens) runs the program of a longer generation for fewer tokens, e.g. the same
  compiled program with max_new_tokens=1 to time its prefill.
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
  weights = _decode_weights(cfg, params, decode_layout, dtype,
                            layered=skip is not None or early_exit is not None)
  out_len = bucket(max_new_tokens) if out_len is None else out_len
  if out_len < max_new_tokens:
    raise ValueError(f"out_len={out_len} is smaller than max_new_tokens={max_new_tokens}; pass "
                     "out_len >= max_new_tokens (or None for its bucket)")
  mode, sampling_params = sampling.make_sampling(cfg.vocab_size, temperature, top_k, top_p)
  longest = max(len(p) for p in prompts)
  batch = bucket(len(prompts), minimum=1)
  prompt_len = bucket(longest)
  tokens, pads = left_pad(prompts, batch, prompt_len)
  long_rope = cfg.long_rope and longest + max_new_tokens > cfg.rope_original_max_len
  rng = jax.random.key(0) if rng is None else rng
  args = (jnp.asarray(tokens), jnp.asarray(pads), jnp.int32(max_new_tokens), rng,
          sampling_params, _eos_arg(eos_id), jnp.bool_(long_rope))
  static = dict(cfg=cfg, mode=mode, cache_len=prompt_len + out_len, out_len=out_len,
                skip=skip, early_exit=early_exit,
                decode_block=None if weights.layout == "stacked" else layouts.DECODE_BLOCK)
  return Program(weights, args, static)


def _decode_weights(cfg: ModelConfig, params, decode_layout: Optional[str], dtype,
                    layered: bool) -> DecodeWeights:
  """params as DecodeWeights: given ones checked against decode_layout / dtype, otherwise the
  cached ones of these params (weights.cached_weights) in decode_layout (default: the backend's,
  a per-layer one for skip / early exit)."""
  if decode_layout is not None:
    layouts.check_layout(decode_layout)
  if isinstance(params, DecodeWeights):
    weights = params
    weights_lib.check_weights(cfg, weights, layout=decode_layout, dtype=dtype,
                              layout_arg="decode_layout")
  else:
    if decode_layout is None:
      decode_layout = default_decode_layout(params)
      if layered and decode_layout == "stacked":
        decode_layout = "per_layer"
    weights = weights_lib.cached_weights(cfg, params, layout=decode_layout, dtype=dtype)
  if layered and weights.layout == "stacked":
    raise ValueError("skip / early_exit decode layer by layer from per-layer weights: use "
                     "decode_layout='per_layer' or 'per_layer_t' (or DecodeWeights in one)")
  return weights


def generate(cfg: ModelConfig, params, prompts: Sequence[Sequence[int]], *, max_new_tokens: int,
             temperature: float = 0.0, top_k: Optional[int] = None, top_p: Optional[float] = None,
             eos_id: Optional[int | Sequence[int]] = None, rng: Optional[jax.Array] = None,
             decode_layout: Optional[str] = None,
             skip: Optional[skipdecode.SkipSchedule] = None,
             early_exit: Optional[early_exit_lib.EarlyExit] = None,
             dtype: Optional[Any] = None, return_stats: bool = False):
  """Generates up to `max_new_tokens` tokens after each prompt.

  Args:
    cfg: the model's config.
    params: its parameters (the 'params' collection), or `DecodeWeights` made from them
      (`decoding.prepare_weights`). Plain params are copied into the decode layout once and the
      copy reused while the same (jax array) params come back (decoding/weights.py).
    prompts: token-id lists, of different lengths.
    temperature: 0 = greedy; otherwise sample from softmax(logits / temperature) after the
      top_k / top_p filters.
    eos_id: an end id, or several (phi-3's [32000, 32001, 32007]): a row stops after producing
      any of them (that token is included in its output).
    rng: a jax PRNG key for sampling (default key 0).
    decode_layout: how the decode loop holds weights and cache, one of DECODE_LAYOUTS (same
      tokens, different speed and memory; see decoding/layouts.py); None =
      default_decode_layout (with skip / early_exit: a per-layer layout).
    skip: a `SkipSchedule` (SkipDecode): generated token t runs only the layers in
      skip.active(t); the prompt runs every layer. Skipped layers are not executed.
    early_exit: an `EarlyExit` policy (the CALM baseline). At most one of skip / early_exit.
    dtype: the decode loop's compute and weight dtype (e.g. 'bfloat16'); None = cfg.dtype and
      the params' own (see decoding/weights.py).
    return_stats: also return {'layers_per_token': [n] layers run for each generated position
      (the prompt's full-depth pass for g_0 included), 'mean_layers', 'steps'}.

  Returns:
    The new tokens of each prompt, in order (and the stats dict if return_stats).
  """
  program = prepare(cfg, params, prompts, max_new_tokens=max_new_tokens, temperature=temperature,
                    top_k=top_k, top_p=top_p, eos_id=eos_id, rng=rng,
                    decode_layout=decode_layout, skip=skip, early_exit=early_exit, dtype=dtype)
  out, steps, layers_used = program.run()
  out = np.asarray(out)
  stops = set(_eos_list(eos_id))
  results = []
  for row in range(len(prompts)):
    new = out[row, :max_new_tokens].tolist()
    end = next((t for t, tok in enumerate(new) if tok in stops), None)
    results.append(new if end is None else new[:end + 1])
  if not return_stats:
    return results
  steps = int(steps)
  per_token = np.asarray(layers_used)[:steps].tolist()
  return results, {"layers_per_token": per_token, "mean_layers": float(np.mean(per_token)),
                   "steps": steps}


def compiled_programs() -> int:
  """How many generation programs have been compiled so far (for recompilation tests)."""
  return generate_tokens._cache_size()
