"""CALM-style confidence early exit (Schuster et al. 2022): the baseline SkipDecode is compared to.

    policy = EarlyExit(threshold=0.9, exit_layers=(3, 7, 11))
    generate(cfg, params, prompts, max_new_tokens=64, early_exit=policy, return_stats=True)

At each exit point (after layer l in `exit_layers`) the hidden state goes through the final norm
and the shared LM head; the confidence of a row is the top-1 minus the top-2 softmax probability.
The token exits when every row still generating is at least `threshold` confident (in a batch the
whole step waits for its least confident row: the weakness SkipDecode removes). The token is then
taken from the exit point's logits, and the layers above are not run: their keys/values for this
position are filled from the exited hidden state (CALM's state propagation: each skipped layer's
own input norm and k/v projections applied to that state), so later tokens that do run those
layers find an entry for every earlier position.

The prompt (prefill) always runs at full depth. Costs per exit point checked: one LM-head product
(which is why exit points are usually a few layers, not all).
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import jax
import jax.numpy as jnp

from phi_jax.decoding import layouts


@dataclasses.dataclass(frozen=True)
class EarlyExit:
  """Attributes:
    threshold: exit when top-1 minus top-2 probability >= threshold for every active row
      (in [0, 1]; 1.0 never exits before the last layer... unless a row is one-hot-certain).
    exit_layers: 0-based layers after which to test (each < num_layers - 1); None = every layer
      from min_layers - 1 on.
    min_layers: with exit_layers=None, the first exit point is after this many layers.
  """

  threshold: float
  exit_layers: Optional[tuple[int, ...]] = None
  min_layers: int = 1

  def points(self, num_layers: int) -> tuple[int, ...]:
    """The exit layers for a model of num_layers, validated, ascending."""
    if not 0.0 <= self.threshold <= 1.0:
      raise ValueError(f"EarlyExit.threshold must be in [0, 1], got {self.threshold}")
    if self.exit_layers is None:
      if not 1 <= self.min_layers <= num_layers:
        raise ValueError(f"EarlyExit.min_layers must be in [1, {num_layers}], got "
                         f"{self.min_layers}")
      return tuple(range(self.min_layers - 1, num_layers - 1))
    points = tuple(sorted(set(int(l) for l in self.exit_layers)))
    bad = [l for l in points if not 0 <= l < num_layers - 1]
    if bad:
      raise ValueError(f"EarlyExit.exit_layers {bad} are not in [0, num_layers - 1 = "
                       f"{num_layers - 1}): an exit after the last layer is not an early exit")
    return points


def confidence(logits: jax.Array) -> jax.Array:
  """logits [..., V] -> top-1 minus top-2 softmax probability [...]."""
  # max and a masked max, not lax.top_k: inside the decode loop XLA:CPU compiles top_k into a full
  # sort of each row (~25 ms per exit point at [16, 2048]). Ties give 0, as top_k does.
  probs = jax.nn.softmax(logits.astype(jnp.float32), axis=-1)
  first = jnp.argmax(probs, axis=-1)
  rest = jnp.where(jnp.arange(probs.shape[-1]) == first[..., None], -jnp.inf, probs)
  return jnp.max(probs, axis=-1) - jnp.max(rest, axis=-1)


def decode_step(cfg, params: layouts.PerLayerParams, token: jax.Array, positions: jax.Array,
                cache: layouts.PerLayerCache, done: jax.Array, policy: EarlyExit, long_rope
                ) -> tuple[jax.Array, layouts.PerLayerCache, jax.Array]:
  """Processes one token per row, exiting at the first exit point where all rows not `done`
  ([B] bool) are confident.

  Args as `skipdecode.decode_step` (per-layer params and cache).

  Returns:
    (logits [B, V] of the exit point (or of the last layer), the updated cache, layers run).
  """
  points = set(policy.points(cfg.num_layers))
  batch = token.shape[0]
  x, ctx, k_pos, k_seg = layouts.step_inputs(cfg, params, token, positions, cache, long_rope)
  kvs = list(cache.layers)
  exited = jnp.bool_(False)
  exit_logits = jnp.zeros((batch, cfg.vocab_size), jnp.float32)
  layers_run = jnp.int32(0)
  for layer in range(cfg.num_layers):

    def run(x, kv, layer=layer):
      return layouts.run_layer(cfg, params, layer, x, kv, ctx)

    def fill(x, kv, layer=layer):  # the exited state's keys/values, no block
      return x, layouts.fill_layer(cfg, params, layer, x, kv, ctx)

    if layer == 0:
      x, kvs[0] = run(x, kvs[0])
    else:
      x, kvs[layer] = jax.lax.cond(exited, fill, run, x, kvs[layer])
    layers_run = layers_run + (~exited).astype(jnp.int32)
    if layer in points:

      def check(x):
        logits = layouts.step_logits(cfg, params, x)
        sure = (confidence(logits) >= policy.threshold) | done
        return jnp.all(sure), logits

      new_exit, logits = jax.lax.cond(exited, lambda x: (exited, exit_logits), check, x)
      exit_logits = jnp.where(new_exit & ~exited, logits, exit_logits)
      exited = new_exit
  logits = jax.lax.cond(exited, lambda x: exit_logits,
                        lambda x: layouts.step_logits(cfg, params, x), x)
  return logits, layouts.finish_step(cache, kvs, k_pos, k_seg), layers_run
