"""SkipDecode schedules: how many layers run at each generated position, and which.

    sched = SkipSchedule(num_layers=16, max_layers=12, min_layers=4, warmup_layers=1, decay_len=64)
    sched.n(0), sched.n(63)          # 12, 4
    sched.active(10)                 # (0, 6, 7, ..., 15): the warm-up layer + the top n - w
    sched.nominal_speedup(64)        # L / mean n(t) over 64 generated tokens
    generate(cfg, params, prompts, max_new_tokens=64, skip=sched)   # phi_jax.decoding

The method (docs/SKIPDECODE.md, Del Corro et al. 2023), with t = 0, 1, ... the index of the
generated token being processed (the prompt's last position produces g_0 at full depth; step t
feeds g_t back and produces g_{t+1}):

    tau(t)    = clip(t / (decay_len - 1), 0, 1)
    n(t)      = round((1 - tau) * max_layers + tau * min_layers)       shape='linear' (the paper)
              = round(min_layers + (max_layers - min_layers) * (1 - tau) ** power)   shape='power'
    active(t) = {0 .. w-1}  U  {L - (n(t) - w) .. L-1}

n(t) never increases, so the first active upper layer s(t) = L - (n(t) - w) never decreases: a
layer active at step t was active at every earlier step, and the keys/values it attends to exist
in the cache. Python's round() (half to even) is the rounding, here and in the jnp versions.

Training uses the same schedule teacher-forced (`layer_mask`): the input token at position
P + t of an example whose target starts at P runs the layers in active(t); prompt positions run
every layer.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np

from phi_jax.decoding import layouts

SHAPES = ("linear", "power")


@dataclasses.dataclass(frozen=True)
class SkipSchedule:
  """A position-wise layer budget (frozen and hashable: it is a static argument of jitted code).

  Attributes:
    num_layers: L, the model's layer count.
    max_layers: n(0), layers run for the first generated token (<= L).
    min_layers: n at and after the end of the decay (> warmup_layers).
    warmup_layers: w, bottom layers that always run (>= 0).
    decay_len: generated tokens over which n decays (>= 1; the paper used the task's median
      target length).
    shape: 'linear' (the paper) or 'power' (a documented extension: decays faster early for
      power > 1, later for power < 1).
    power: the exponent of shape='power'.
  """

  num_layers: int
  max_layers: int
  min_layers: int
  warmup_layers: int = 0
  decay_len: int = 32
  shape: str = "linear"
  power: float = 2.0

  def __post_init__(self):
    self.validate()

  def validate(self) -> None:
    """Raises ValueError naming the rule a field breaks."""
    for name in ("num_layers", "max_layers", "min_layers", "warmup_layers", "decay_len"):
      value = getattr(self, name)
      if not isinstance(value, (int, np.integer)) or isinstance(value, bool):
        raise ValueError(f"SkipSchedule.{name} must be an int, got {value!r}")
    L, mx, mn, w = self.num_layers, self.max_layers, self.min_layers, self.warmup_layers
    if L < 1:
      raise ValueError(f"SkipSchedule.num_layers must be >= 1, got {L}")
    if w < 0:
      raise ValueError(f"SkipSchedule.warmup_layers must be >= 0, got {w}")
    if mx > L:
      raise ValueError(f"SkipSchedule.max_layers={mx} exceeds num_layers={L}")
    if mn > mx:
      raise ValueError(
          f"SkipSchedule is not monotone: min_layers={mn} > max_layers={mx} would make n(t) grow "
          "with t, so a layer could become active after skipping positions whose keys/values it "
          "would need. Use min_layers <= max_layers.")
    if mn <= w:
      raise ValueError(
          f"SkipSchedule.min_layers={mn} must exceed warmup_layers={w}: at least one top layer "
          "must always run so that the final layers and the head see an upper-layer state")
    if self.decay_len < 1:
      raise ValueError(f"SkipSchedule.decay_len must be >= 1, got {self.decay_len}")
    if self.shape not in SHAPES:
      raise ValueError(f"SkipSchedule.shape {self.shape!r} is not one of {SHAPES}")
    if self.shape == "power" and not (isinstance(self.power, (int, float)) and self.power > 0):
      raise ValueError(f"SkipSchedule.power must be > 0 for shape='power', got {self.power!r}")

  # ---- the schedule, host side ------------------------------------------------------------------

  def tau(self, t: int) -> float:
    if self.decay_len == 1:
      return 1.0
    return min(max(t / (self.decay_len - 1), 0.0), 1.0)

  def n(self, t: int) -> int:
    """Layers run when processing generated token t (t >= 0)."""
    if t < 0:
      raise ValueError(f"generated-token index t must be >= 0, got {t}")
    tau = self.tau(t)
    if self.shape == "linear":
      value = (1 - tau) * self.max_layers + tau * self.min_layers
    else:
      value = self.min_layers + (self.max_layers - self.min_layers) * (1 - tau) ** self.power
    return int(round(value))

  def first_upper(self, t: int) -> int:
    """s(t) = L - (n(t) - w): the lowest active layer above the warm-up block."""
    return self.num_layers - (self.n(t) - self.warmup_layers)

  def active(self, t: int) -> tuple[int, ...]:
    """The layers run at step t, ascending: warm-up layers, then the top n(t) - w."""
    return tuple(range(self.warmup_layers)) + tuple(range(self.first_upper(t), self.num_layers))

  def counts(self, num_tokens: int) -> np.ndarray:
    """[num_tokens] n(t) for t = 0 .. num_tokens - 1."""
    return np.array([self.n(t) for t in range(num_tokens)], np.int32)

  def table(self, num_tokens: Optional[int] = None) -> np.ndarray:
    """[T, L] bool, row t = the layers active at step t (T defaults to decay_len; every row
    from decay_len - 1 on is the same)."""
    num_tokens = self.decay_len if num_tokens is None else num_tokens
    start = np.array([self.first_upper(t) for t in range(max(num_tokens, 1))])[:num_tokens]
    layers = np.arange(self.num_layers)
    return (layers[None] < self.warmup_layers) | (layers[None] >= start[:, None])

  def nominal_speedup(self, num_new_tokens: int) -> float:
    """L / mean n(t) over the generated positions t = 0 .. num_new_tokens - 1.

    Attention over the cache, the embedding and the LM head are not reduced by skipping, so the
    measured wall-clock speedup is lower (experiments/perf/skipdecode_speed.py).
    """
    if num_new_tokens < 1:
      raise ValueError(f"num_new_tokens must be >= 1, got {num_new_tokens}")
    return self.num_layers / float(np.mean(self.counts(num_new_tokens)))

  @property
  def static_upper(self) -> tuple[int, int]:
    """(lowest upper layer ever active, lowest upper layer always active) during decoding:
    layers in [w, lo) never run after the prefill, layers >= hi always run, and only layers in
    [lo, hi) need a per-step decision."""
    return (self.num_layers - (self.max_layers - self.warmup_layers),
            self.num_layers - (self.min_layers - self.warmup_layers))

  # ---- traced versions (inside jit) -------------------------------------------------------------

  def first_upper_jnp(self, t: jax.Array) -> jax.Array:
    """s(t) for a traced int t (scalar or array), via the host table (exact same rounding)."""
    starts = np.array([self.first_upper(i) for i in range(self.decay_len)], np.int32)
    return jnp.asarray(starts)[jnp.clip(t, 0, self.decay_len - 1)]

  def layer_mask(self, target_index: jax.Array) -> jax.Array:
    """Teacher-forced training mask: target_index [..., T] int -> [..., T, L] bool.

    target_index is t for the input token g_t of a target (0 at the first target token, so the
    input at position P + t of an example whose target starts at P), and negative on prompt
    tokens and padding, which run every layer.
    """
    target_index = jnp.asarray(target_index, jnp.int32)
    start = self.first_upper_jnp(target_index)
    layers = jnp.arange(self.num_layers, dtype=jnp.int32)
    on = (layers < self.warmup_layers) | (layers >= start[..., None])
    return on | (target_index[..., None] < 0)

  # ---- choosing a schedule ----------------------------------------------------------------------

  @classmethod
  def for_speedup(cls, num_layers: int, target: float, warmup_layers: int = 0,
                  decay_len: int = 32, *, ratio: float = 2.0, shape: str = "linear",
                  power: float = 2.0) -> "SkipSchedule":
    """The linear schedule whose nominal speedup over `decay_len` tokens is closest to `target`.

    Among the (max_layers, min_layers) pairs within 2% of the best speedup, picks the one whose
    max/min ratio is closest to `ratio` (2.0 by default: the first tokens get twice the depth of
    the last, a decay in the spirit of the paper's schedules; ratio=1 asks for constant depth),
    then the larger max_layers. Raises if no valid schedule reaches within 10% of the target.
    """
    if target < 1:
      raise ValueError(f"target speedup must be >= 1, got {target}")
    candidates = []
    for mx in range(warmup_layers + 1, num_layers + 1):
      for mn in range(warmup_layers + 1, mx + 1):
        s = cls(num_layers, mx, mn, warmup_layers, decay_len, shape, power)
        candidates.append((abs(s.nominal_speedup(decay_len) - target) / target, s))
    if not candidates:
      raise ValueError(f"no valid schedule for num_layers={num_layers}, "
                       f"warmup_layers={warmup_layers}")
    best = min(err for err, _ in candidates)
    if best > 0.1:
      reachable = max(s.nominal_speedup(decay_len) for _, s in candidates)
      raise ValueError(f"no schedule of {num_layers} layers with warmup_layers={warmup_layers} "
                       f"comes within 10% of a {target}x speedup (the most is {reachable:.2f}x); "
                       "lower the target or the warm-up layers")
    near = [s for err, s in candidates if err <= best + 0.02]
    return min(near, key=lambda s: (abs(math.log(s.max_layers / s.min_layers) - math.log(ratio)),
                                    -s.max_layers))

  def describe(self) -> str:
    return (f"SkipSchedule(L={self.num_layers}, n: {self.max_layers} -> {self.min_layers} over "
            f"{self.decay_len} tokens ({self.shape}), warm-up {self.warmup_layers}; nominal "
            f"{self.nominal_speedup(self.decay_len):.2f}x over {self.decay_len} tokens)")

  @classmethod
  def no_skip(cls, num_layers: int, decay_len: int = 1) -> "SkipSchedule":
    """The schedule that runs every layer at every step (nominal speedup 1)."""
    return cls(num_layers, num_layers, num_layers, 0, decay_len)


def from_config(skip_config, num_layers: int) -> Optional[SkipSchedule]:
  """A schedule from an ml_collections `skip` section (None when absent or disabled).

  Either explicit layers (max_layers, min_layers, warmup_layers, decay_len[, shape, power]) or
  target_speedup (+ warmup_layers, decay_len[, ratio]) via `SkipSchedule.for_speedup`.
  """
  if skip_config is None or not skip_config.get("enabled", True):
    return None
  fields = dict(skip_config.to_dict() if hasattr(skip_config, "to_dict") else skip_config)
  fields.pop("enabled", None)
  target = fields.pop("target_speedup", None)
  if target:
    return SkipSchedule.for_speedup(
        num_layers, float(target), int(fields.get("warmup_layers", 0)),
        int(fields.get("decay_len", 32)), ratio=float(fields.get("ratio", 2.0)))
  fields.pop("ratio", None)
  unknown = set(fields) - {f.name for f in dataclasses.fields(SkipSchedule)}
  if unknown:
    raise ValueError(f"unknown fields in config.skip: {sorted(unknown)}")
  fields.pop("num_layers", None)
  return SkipSchedule(num_layers=num_layers, **fields)


# ---- decoding: one step that really skips ---------------------------------------------------------


def decode_step(cfg, params: layouts.PerLayerParams, token: jax.Array, positions: jax.Array,
                cache: layouts.PerLayerCache, t: jax.Array, schedule: SkipSchedule, long_rope
                ) -> tuple[jax.Array, layouts.PerLayerCache, jax.Array]:
  """Processes generated token g_t with the layers in active(t) only.

  Args:
    cfg: the model's config.
    params: its per-layer weights (`layouts.per_layer_params`).
    token: [B] int32 g_t.  positions: [B, 1] its positions.
    cache: the per-layer cache (`layouts.per_layer_cache`).
    t: int32 scalar, the generated-token index (the same for every row).

  Returns:
    (logits [B, V] float32, the updated cache, layers run (int32 scalar)).

  Layers below the warm-up block's end and above s(t) run; the rest are bypassed: no block, no
  cache write. Which layers can change from step to step is static ([lo, hi) of
  `schedule.static_upper`): layers outside it are unrolled as always-run or left out of the
  program, and each layer inside it is one `lax.cond` on the scalar predicate l >= s(t) (a scalar
  outside any vmap, so a real branch, not a select that runs both sides).
  """
  if schedule.num_layers != cfg.num_layers:
    raise ValueError(f"the schedule is for {schedule.num_layers} layers; the model has "
                     f"{cfg.num_layers}")
  x, ctx, k_pos, k_seg = layouts.step_inputs(cfg, params, token, positions, cache, long_rope)
  start = schedule.first_upper_jnp(t)
  lo, hi = schedule.static_upper
  kvs = list(cache.layers)
  for layer in range(cfg.num_layers):
    if schedule.warmup_layers <= layer < lo:
      continue  # never active after the prefill

    def run(x, kv, layer=layer):
      return layouts.run_layer(cfg, params, layer, x, kv, ctx)

    if layer < schedule.warmup_layers or layer >= hi:
      x, kvs[layer] = run(x, kvs[layer])
    else:
      x, kvs[layer] = jax.lax.cond(layer >= start, run, lambda x, kv: (x, kv), x, kvs[layer])
  logits = layouts.step_logits(cfg, params, x)
  layers_run = schedule.warmup_layers + cfg.num_layers - start
  return logits, layouts.finish_step(cache, kvs, k_pos, k_seg), layers_run.astype(jnp.int32)
