"""AdamW with the papers' learning-rate schedules, a weight-decay mask and gradient clipping.

    schedule: 'linear'   warmup then linear decay to end_lr_fraction * lr  (phi-1: 750 warmup, 1e-3)
              'constant' warmup (optional) then constant                   (phi-1.5: 2e-4, no warmup)
              'cosine'   warmup then cosine decay to end_lr_fraction * lr
Weight decay applies to kernels and embeddings only (not to biases or norm scales).

`opt` is a config's `optimizer` section: every key of `config_base.get_config().optimizer` (build
one with `config_base.optimizer(learning_rate=..., ...)`). The warmup is `warmup_steps` or
`warmup_fraction` x total_steps (`config_base.duration`).
"""

from __future__ import annotations

from typing import Any, Mapping

import optax
from flax import traverse_util

from phi_jax.train import config_base

SCHEDULES = ("linear", "constant", "cosine")


def _check_keys(opt: Mapping[str, Any]) -> None:
  want = set(config_base.get_config().optimizer.keys())
  have = set(opt.keys())
  if have != want:
    raise ValueError(
        f"the optimizer section has unknown keys {sorted(have - want)} and lacks "
        f"{sorted(want - have)}; start from config_base.optimizer(**overrides) (the schema)")


def warmup_steps(opt: Mapping[str, Any], total_steps: int) -> int:
  """The warmup in steps: optimizer.warmup_steps or optimizer.warmup_fraction x total_steps."""
  return config_base.duration(opt, "warmup_steps", "warmup_fraction", total_steps,
                              where="optimizer.")


def make_schedule(opt: Mapping[str, Any], total_steps: int) -> optax.Schedule:
  """Learning rate as a function of the step."""
  _check_keys(opt)
  name = opt["schedule"]
  if name not in SCHEDULES:
    raise ValueError(f"optimizer.schedule {name!r} is not one of {SCHEDULES}")
  lr = float(opt["learning_rate"])
  warmup = warmup_steps(opt, total_steps)
  decay_steps = int(opt["decay_steps"] or total_steps)
  end = lr * float(opt["end_lr_fraction"])
  if lr <= 0:
    raise ValueError(f"optimizer.learning_rate must be positive, got {lr}")
  if name != "constant" and warmup >= decay_steps:
    raise ValueError(f"optimizer.warmup_steps={warmup} must be in [0, decay_steps={decay_steps}) "
                     "(decay_steps 0 = total_steps); give the warmup as a fraction of the run "
                     "with optimizer.warmup_fraction (and warmup_steps=0)")
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
  clip = opt["grad_clip_norm"]
  if clip:
    parts.append(optax.clip_by_global_norm(float(clip)))
  parts.append(optax.adamw(schedule, b1=float(opt["b1"]), b2=float(opt["b2"]),
                           eps=float(opt["eps"]), weight_decay=float(opt["weight_decay"]),
                           mask=decay_mask))
  return optax.chain(*parts), schedule
