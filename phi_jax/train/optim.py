"""AdamW with the papers' learning-rate schedules, a weight-decay mask and gradient clipping.

    schedule: 'linear'   warmup then linear decay to end_lr_fraction * lr  (phi-1: 750 warmup, 1e-3)
              'constant' warmup (optional) then constant                   (phi-1.5: 2e-4, no warmup)
              'cosine'   warmup then cosine decay to end_lr_fraction * lr
Weight decay applies to kernels and embeddings only (not to biases or norm scales).
"""

from __future__ import annotations

from typing import Any, Mapping

import jax
import optax
from flax import traverse_util

SCHEDULES = ("linear", "constant", "cosine")


def make_schedule(opt: Mapping[str, Any], total_steps: int) -> optax.Schedule:
  """Learning rate as a function of the step."""
  name = opt.get("schedule", "linear")
  if name not in SCHEDULES:
    raise ValueError(f"optimizer.schedule {name!r} is not one of {SCHEDULES}")
  lr = float(opt["learning_rate"])
  warmup = int(opt.get("warmup_steps", 0))
  decay_steps = int(opt.get("decay_steps") or total_steps)
  end = lr * float(opt.get("end_lr_fraction", 0.0))
  if lr <= 0:
    raise ValueError(f"optimizer.learning_rate must be positive, got {lr}")
  if warmup < 0 or (name != "constant" and warmup >= decay_steps):
    raise ValueError(f"optimizer.warmup_steps={warmup} must be in [0, decay_steps={decay_steps})")
  warm = optax.linear_schedule(0.0, lr, warmup) if warmup else None
  if name == "constant":
    rest = optax.constant_schedule(lr)
  elif name == "linear":
    rest = optax.linear_schedule(lr, end, decay_steps - warmup)
  else:
    rest = optax.cosine_decay_schedule(lr, decay_steps - warmup, alpha=end / lr)
  if warm is None:
    return rest
  return optax.join_schedules([warm, rest], [warmup])


def decay_mask(params: Any) -> Any:
  """True for kernels and embeddings (weight decay), False for biases and norm scales."""
  flat = traverse_util.flatten_dict(params)
  return traverse_util.unflatten_dict(
      {path: path[-1] in ("kernel", "embedding") for path in flat})


def make_optimizer(opt: Mapping[str, Any], total_steps: int) -> tuple[optax.GradientTransformation,
                                                                      optax.Schedule]:
  """(AdamW with clipping and the decay mask, its schedule)."""
  schedule = make_schedule(opt, total_steps)
  parts = []
  clip = opt.get("grad_clip_norm", 1.0)
  if clip:
    parts.append(optax.clip_by_global_norm(float(clip)))
  parts.append(optax.adamw(schedule, b1=float(opt.get("b1", 0.9)), b2=float(opt.get("b2", 0.95)),
                           eps=float(opt.get("eps", 1e-8)),
                           weight_decay=float(opt.get("weight_decay", 0.1)), mask=decay_mask))
  return optax.chain(*parts), schedule


def global_norm(tree: Any) -> jax.Array:
  return optax.global_norm(tree)
