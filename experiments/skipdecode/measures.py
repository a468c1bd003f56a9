"""The measurements of the SkipDecode experiment (evaluate.py): ROUGE-L over code tokens, CALM's
confidence without a sort, the teacher-forced held-out loss under a schedule, batched greedy
generations cut to function bodies, and interleaved decode-step timing.

Every function takes a model (cfg, params) and token lists; nothing here reads a workdir.
"""

from __future__ import annotations

import contextlib
import functools
import re
import statistics
import time
from typing import Any, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from phi_jax.data import pipeline
from phi_jax.decoding import early_exit as early_exit_lib
from phi_jax.decoding import DecodeWeights, generation, prepare_weights
from phi_jax.decoding.early_exit import EarlyExit
from phi_jax.decoding.skipdecode import SkipSchedule
from phi_jax.evals import codegen, functions
from phi_jax.models import Transformer
from phi_jax.train import step as step_lib

# ---- ROUGE-L over code tokens --------------------------------------------------------------------

CODE_TOKEN = re.compile(r"\w+|[^\w\s]")


def code_tokens(text: str) -> list[str]:
  """Code tokens: maximal runs of word characters (identifiers, keywords, numbers) and single
  punctuation characters; whitespace (hence indentation) is dropped.

      code_tokens("return x+1  # ok") == ['return', 'x', '+', '1', '#', 'ok']
  """
  return CODE_TOKEN.findall(text)


def lcs_length(a: Sequence[Any], b: Sequence[Any]) -> int:
  """Length of the longest common subsequence of a and b (O(len(a) * len(b)) time, O(len(b))
  memory)."""
  if len(a) < len(b):
    a, b = b, a
  previous = [0] * (len(b) + 1)
  for x in a:
    current = [0]
    for j, y in enumerate(b):
      current.append(previous[j] + 1 if x == y else max(previous[j + 1], current[j]))
    previous = current
  return previous[-1]


def rouge_l(candidate: str, reference: str) -> float:
  """ROUGE-L F1 of candidate against reference over `code_tokens`: with L = LCS length,
  P = L / |candidate|, R = L / |reference|, F1 = 2PR / (P + R); 0 when L = 0, and 1 when both
  have no tokens."""
  cand, ref = code_tokens(candidate), code_tokens(reference)
  if not cand and not ref:
    return 1.0
  common = lcs_length(cand, ref)
  if common == 0:
    return 0.0
  precision, recall = common / len(cand), common / len(ref)
  return 2 * precision * recall / (precision + recall)


# ---- CALM's confidence without a sort ------------------------------------------------------------


def argmax_confidence(logits: jax.Array) -> jax.Array:
  """logits [..., V] -> top-1 minus top-2 softmax probability [...], as
  `early_exit.confidence`, from two max reductions instead of lax.top_k (ties: the second max
  equals the first, 0 as with top_k)."""
  probs = jax.nn.softmax(logits.astype(jnp.float32), axis=-1)
  first = jnp.argmax(probs, axis=-1)
  rest = jnp.where(jnp.arange(probs.shape[-1]) == first[..., None], -jnp.inf, probs)
  return jnp.max(probs, axis=-1) - jnp.max(rest, axis=-1)


@contextlib.contextmanager
def calm_confidence(kind: str):
  """Within the block, CALM programs traced use `argmax_confidence` (kind 'argmax') or the
  library's (kind 'library')."""
  if kind not in ("argmax", "library"):
    raise ValueError(f"calm_confidence must be 'argmax' or 'library', got {kind!r}")
  saved = early_exit_lib.confidence
  if kind == "argmax":
    early_exit_lib.confidence = argmax_confidence
  try:
    yield
  finally:
    early_exit_lib.confidence = saved


# ---- examples ------------------------------------------------------------------------------------


def encode(tokenizer, examples: Sequence[dict[str, str]], seq_len: int,
           prompt_room: Optional[int] = None):
  """examples {'prompt', 'target'} -> (prompts: token lists of at most prompt_room tokens (the
  tail of longer prompts; default seq_len // 2); rows: [n, 4] int32 arrays of TokenizeExample at
  seq_len (input, target, loss_mask, target_index): the target's ids as they follow the prompt,
  + EOS, the prompt cut as training cuts it)."""
  room = seq_len // 2 if prompt_room is None else prompt_room
  if room < 1:
    raise ValueError(f"prompt_room={prompt_room} leaves no room for a prompt")
  tokenize = pipeline.TokenizeExample(tokenizer, seq_len)
  prompts = [tokenizer.encode(ex["prompt"])[-room:] for ex in examples]
  rows = [tokenize.map(ex)["tokens"] for ex in examples]
  return prompts, rows


# ---- (a) held-out loss under a schedule ----------------------------------------------------------


@functools.partial(jax.jit, static_argnames=("cfg", "schedule"))
def _loss_sums(params, batch, *, cfg, schedule: Optional[SkipSchedule]):
  mask = None if schedule is None else schedule.layer_mask(batch["target_index"])
  logits = Transformer(cfg).apply({"params": params}, batch["inputs"],
                                  positions=batch["positions"],
                                  segment_ids=batch["segment_ids"], layer_mask=mask)
  return step_lib.cross_entropy(logits, batch["targets"], batch["loss_mask"])


def heldout_loss(cfg, params, rows: Sequence[np.ndarray], schedule: Optional[SkipSchedule],
                 batch_size: int = 16) -> dict[str, float]:
  """Mean target-token loss (nats) of TokenizeExample rows, one example per row, teacher-forced
  with schedule.layer_mask(target_index) (None: every layer). -> {'loss', 'tokens'}."""
  length = max(len(r) for r in rows)
  total, count = 0.0, 0.0
  params = nn.unbox(params)
  for start in range(0, len(rows), batch_size):
    chunk = rows[start:start + batch_size]
    batch = {k: np.zeros((batch_size, length), np.int32)
             for k in ("inputs", "targets", "segment_ids", "positions")}
    batch["loss_mask"] = np.zeros((batch_size, length), np.float32)
    batch["target_index"] = np.full((batch_size, length), -1, np.int32)
    for i, row in enumerate(chunk):
      n = len(row)
      batch["inputs"][i, :n], batch["targets"][i, :n] = row[:, 0], row[:, 1]
      batch["loss_mask"][i, :n], batch["target_index"][i, :n] = row[:, 2], row[:, 3]
      batch["segment_ids"][i, :n], batch["positions"][i, :n] = 1, np.arange(n)
    s, c = _loss_sums(params, batch, cfg=cfg, schedule=schedule)
    total, count = total + float(s), count + float(c)
  return {"loss": total / max(count, 1.0), "tokens": int(count)}


# ---- (b) generations, cut to function bodies -----------------------------------------------------


def decode_weights(cfg, params, layered: bool = True):
  """params in the decode layout generation uses (a per-layer one if `layered`: skip / early
  exit need it), made now. generate's own cache keeps the weights of the LAST params it saw
  only, so alternating between models would re-make them inside a timed call."""
  if isinstance(params, DecodeWeights):
    return params
  layout = generation.default_decode_layout()
  if layered and layout == "stacked":
    layout = "per_layer"
  return prepare_weights(cfg, nn.unbox(params), layout=layout)


def generate_all(cfg, params, prompts: Sequence[Sequence[int]], *, max_new_tokens: int, eos_id: int,
                 batch_size: int, skip: Optional[SkipSchedule] = None,
                 early_exit: Optional[EarlyExit] = None) -> tuple[list[list[int]], float]:
  """Greedy generations in batches -> (token lists without the EOS, mean layers per generated
  token over every step of every batch). The decode layout is made once, before the batches
  (`decode_weights`)."""
  weights = decode_weights(cfg, params, layered=skip is not None or early_exit is not None)
  outputs, layers = [], []
  for start in range(0, len(prompts), batch_size):
    out, stats = generation.generate(cfg, weights, prompts[start:start + batch_size],
                                     max_new_tokens=max_new_tokens, eos_id=eos_id, skip=skip,
                                     early_exit=early_exit, return_stats=True)
    outputs += [o[:-1] if o and o[-1] == eos_id else o for o in out]
    layers += stats["layers_per_token"]
  return outputs, float(np.mean(layers))


def function_bodies(tokenizer, prompts: Sequence[Sequence[int]],
                    outputs: Sequence[Sequence[int]], eos_id: Optional[int]) -> list[str]:
  """The function body each generation writes, cut as the tiny coder's evaluation cuts it
  (`phi_jax.evals.functions.complete_bodies`): the new tokens decoded jointly with their prompt
  (`codegen.decode_continuation`: word-boundary spaces survive), cut at the first stop sequence
  (`functions.STOP`) and where the function ends (`functions.function_body`)."""
  if len(prompts) != len(outputs):
    raise ValueError(f"{len(outputs)} generations for {len(prompts)} prompts")
  return [functions.function_body(codegen.truncate(
      codegen.decode_continuation(tokenizer, p, o, eos_id), functions.STOP))
          for p, o in zip(prompts, outputs)]


def sem(values: Sequence[float]) -> float:
  """Standard error of the mean (sample standard deviation / sqrt(n)); 0 for n < 2."""
  values = np.asarray(values, np.float64)
  return float(values.std(ddof=1) / np.sqrt(len(values))) if len(values) > 1 else 0.0


# ---- (c) decode speed ----------------------------------------------------------------------------


def _run(cfg, params, prompts, max_new: int, out_len: int, skip, early_exit, layout):
  """One generate program as `generate` buckets it (greedy, no EOS), blocking ->
  layers run per position [out_len]."""
  program = generation.prepare(cfg, params, prompts, max_new_tokens=max_new, out_len=out_len,
                               decode_layout=layout, skip=skip, early_exit=early_exit)
  return np.asarray(program.run()[2])


def decode_times(cfg, settings: dict[str, tuple[Any, Optional[SkipSchedule], Optional[EarlyExit]]],
                 prompts: Sequence[Sequence[int]], *, new_tokens: int, out_len: int, reps: int,
                 reference: str) -> dict[str, dict[str, float]]:
  """Decode step times and speedups against settings[reference], for settings {name: (params,
  skip, early_exit)}.

  A step time is (the whole call - the max_new_tokens=1 call of the same program, the least of
  3 such calls) / (new_tokens - 1). Each of `reps` rounds times every setting right next to the reference (in alternating
  order), so that a speedup is a ratio of two measurements taken within about a second of each
  other: on a shared machine the load changes on longer time scales. A round in which either
  whole call was not slower than its one-token call (a stall of the machine; it happens when
  new_tokens is small) measured nothing: it is dropped and counted. Returns {name: {'step_ms':
  median step time, 'speedup': median over rounds of reference step / this step, 'speedup_q25',
  'speedup_q75': its quartiles (NaN when every round was dropped), 'rounds': the rounds kept,
  'dropped': those dropped, 'decode_layers': mean layers over the timed decode steps}}.

  out_len: the program's output bucket; pass bucket(M) of the generations to reuse their
  compiled programs (the number of new tokens is a traced value)."""
  if new_tokens < 2:
    raise ValueError(f"new_tokens must be >= 2 to time decode steps, got {new_tokens}")
  if reference not in settings:
    raise ValueError(f"reference {reference!r} is not one of the settings {sorted(settings)}")
  # Every setting's weights made up front, each its own copy, in one per-layer layout (skip /
  # early_exit need one; the full model runs the same loop): a timed call never makes weights.
  params = {name: decode_weights(cfg, jax.device_put(nn.unbox(p)), layered=True)
            for name, (p, _, _) in settings.items()}
  layout = next(iter(params.values())).layout
  layers = {}
  for name, (_, skip, early) in settings.items():  # compile + warm up
    layers[name] = _run(cfg, params[name], prompts, new_tokens, out_len, skip, early, layout)
    _run(cfg, params[name], prompts, 1, out_len, skip, early, layout)

  def elapsed(name: str, n: int) -> float:
    _, skip, early = settings[name]
    start = time.perf_counter()
    _run(cfg, params[name], prompts, n, out_len, skip, early, layout)
    return time.perf_counter() - start

  def step_ms(name: str) -> float:
    whole = elapsed(name, new_tokens)
    # the one-token call (prefill + g_0): the least of 3, as a stall of the machine only adds time
    decode = whole - min(elapsed(name, 1) for _ in range(3))
    return 1e3 * decode / (new_tokens - 1) if decode > 0 else float("nan")

  steps = {name: [] for name in settings}
  ratios = {name: [] for name in settings}
  dropped = {name: 0 for name in settings}
  for rep in range(reps):
    for name in settings:
      if name == reference:
        continue
      pair = (reference, name) if rep % 2 == 0 else (name, reference)
      measured = {n: step_ms(n) for n in pair}
      if any(np.isnan(v) for v in measured.values()):
        dropped[name] += 1
        continue
      for n in pair:
        steps[n].append(measured[n])
      ratios[name].append(measured[reference] / measured[name])
  ratios[reference] = [1.0]
  result = {}
  for name in settings:
    q25, q50, q75 = (np.percentile(ratios[name], [25, 50, 75]) if ratios[name]
                     else (float("nan"),) * 3)
    result[name] = {"step_ms": statistics.median(steps[name]) if steps[name] else float("nan"),
                    "speedup": float(q50), "speedup_q25": float(q25), "speedup_q75": float(q75),
                    "rounds": len(ratios[name]) if name != reference else reps,
                    "dropped": dropped[name],
                    "decode_layers": float(np.mean(layers[name][1:new_tokens]))}
  return result


def closest(entries: Sequence[dict[str, Any]], target: float) -> Optional[dict[str, Any]]:
  """The entry whose measured speedup is closest to target (in ratio: |log(measured/target)|);
  entries without a measured speedup (NaN: no timing round kept) are left out."""
  entries = [e for e in entries if np.isfinite(e["measured_speedup"])]
  if not entries:
    return None
  return min(entries, key=lambda e: abs(np.log(e["measured_speedup"] / target)))
