"""Train state, loss, and the jitted, sharded train / eval steps.

Batches are dicts of [B, T] arrays: inputs, targets, segment_ids, positions (int32) and loss_mask
(float32; 0 on padding, on document boundaries, and on prompts when finetuning on completions only).
Gradient accumulation splits B into `grad_accum` microbatches scanned in sequence: tokens per
optimizer step = B x T, whatever the accumulation.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import optax

from phi_jax.models import ModelConfig, Transformer
from phi_jax.train import chunked_loss, sharding


@flax.struct.dataclass
class TrainState:
  step: jax.Array
  params: Any
  opt_state: Any
  rng: jax.Array  # uint32 key data of the dropout stream; folded with the step


def cross_entropy(logits: jax.Array, targets: jax.Array,
                  mask: jax.Array) -> tuple[jax.Array, jax.Array]:
  """(sum of masked token losses, number of masked tokens). logits [B, T, V] float32."""
  losses = optax.softmax_cross_entropy_with_integer_labels(logits, targets)
  mask = mask.astype(jnp.float32)
  return jnp.sum(losses * mask), jnp.sum(mask)


def check_loss_chunk_len(loss_chunk_len: int) -> int:
  """Validates `config.loss_chunk_len` (0: full logits; N >= 1: chunks of N positions)."""
  if isinstance(loss_chunk_len, bool) or not isinstance(loss_chunk_len, int) or loss_chunk_len < 0:
    raise ValueError(f"loss_chunk_len={loss_chunk_len!r} must be an integer >= 0: 0 computes the "
                     "full [batch, seq, vocab] logits, N >= 1 the LM head and loss over chunks of "
                     "N sequence positions (e.g. --config.loss_chunk_len=256)")
  return int(loss_chunk_len)


def _forward_loss(model: Transformer, params, batch, rng: Optional[jax.Array], deterministic: bool,
                  skip: Optional[Any] = None, loss_chunk_len: int = 0):
  """(mean masked token loss, (sum, count)); loss_chunk_len > 0: without the full logits
  (train/chunked_loss.py)."""
  if skip is not None:  # SkipDecode, teacher-forced: layers by position within the target
    if "target_index" not in batch:
      raise ValueError("training with a skip schedule needs prompt_completion batches "
                       "(config.data.format='prompt_completion'), which carry target_index")
    batch = {**batch, "layer_mask": skip.layer_mask(batch["target_index"])}
  out = model.apply({"params": params}, batch["inputs"], positions=batch["positions"],
                    segment_ids=batch["segment_ids"], layer_mask=batch.get("layer_mask"),
                    deterministic=deterministic, return_hidden=loss_chunk_len > 0,
                    rngs=None if deterministic else {"dropout": rng})
  if loss_chunk_len > 0:  # out: the residual stream [B, T, D] before the final norm
    total, count = chunked_loss.chunked_cross_entropy(
        model.cfg, params, out, batch["targets"], batch["loss_mask"], loss_chunk_len)
  else:  # out: the logits [B, T, V]
    total, count = cross_entropy(out, batch["targets"], batch["loss_mask"])
  return total / jnp.maximum(count, 1.0), (total, count)


def make_init_fn(cfg: ModelConfig, tx: optax.GradientTransformation, seq_len: int) -> Callable:
  """rng -> TrainState with boxed (logically annotated) params and optimizer state."""
  model = Transformer(cfg)

  def init(rng: jax.Array) -> TrainState:
    init_rng, dropout_rng = jax.random.split(rng)
    params = model.init(init_rng, jnp.zeros((1, seq_len), jnp.int32))["params"]
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params),
                      rng=jax.random.key_data(dropout_rng))

  return init


def create_sharded_state(cfg: ModelConfig, tx: optax.GradientTransformation, seq_len: int,
                         mesh: jax.sharding.Mesh, rng: jax.Array) -> tuple[TrainState, Any]:
  """Initialises the state directly into its shardings (eval_shape + jit(out_shardings)).

  Returns (state, state_shardings); the state's leaves are plain (unboxed) arrays.
  """
  init = make_init_fn(cfg, tx, seq_len)
  _, shardings = abstract_state(cfg, tx, seq_len, mesh, rng)
  with jax.set_mesh(mesh), nn.logical_axis_rules(sharding.LOGICAL_RULES):
    state = jax.jit(lambda r: nn.unbox(init(r)), out_shardings=shardings)(rng)
  return state, shardings


def abstract_state(cfg: ModelConfig, tx: optax.GradientTransformation, seq_len: int,
                   mesh: jax.sharding.Mesh, rng: jax.Array) -> tuple[Any, Any]:
  """(ShapeDtypeStructs of the unboxed state with shardings, shardings) — nothing allocated."""
  init = make_init_fn(cfg, tx, seq_len)
  abstract = jax.eval_shape(init, rng)
  shardings = sharding.logical_shardings(abstract, mesh)
  shapes = jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                        nn.unbox(abstract), shardings)
  return shapes, shardings


def make_train_step(cfg: ModelConfig, tx: optax.GradientTransformation,
                    schedule: optax.Schedule, grad_accum: int = 1,
                    skip: Optional[Any] = None, loss_chunk_len: int = 0) -> Callable:
  """(state, batch) -> (state, metrics). Not jitted here: see `jit_train_step`.

  skip: a `decoding.skipdecode.SkipSchedule` to train with (SkipDecode fine-tuning): each target
  token's input runs only the layers its position in the target is scheduled for.
  loss_chunk_len: `config.loss_chunk_len`: 0 computes the full [B, T, V] logits; N >= 1 the LM
  head and loss over chunks of N sequence positions (train/chunked_loss.py: one chunk's logits
  held at a time; the same loss and gradients up to float rounding).
  """
  model = Transformer(cfg)
  deterministic = not (cfg.embd_dropout or cfg.resid_dropout or cfg.attn_dropout)
  loss_chunk_len = check_loss_chunk_len(loss_chunk_len)
  grad_fn = jax.value_and_grad(
      lambda p, b, r: _forward_loss(model, p, b, r, deterministic, skip, loss_chunk_len),
      has_aux=True)

  def train_step(state: TrainState, batch: dict[str, jax.Array]):
    rng = jax.random.fold_in(jax.random.wrap_key_data(state.rng), state.step)
    if grad_accum == 1:
      (_, (total, count)), grads = grad_fn(state.params, batch, rng)
      # grads of the mean over this batch's tokens
    else:
      micro = jax.tree.map(
          lambda x: x.reshape(grad_accum, x.shape[0] // grad_accum, *x.shape[1:]), batch)

      def body(carry, xs):
        grad_sum, total, count = carry
        mb, i = xs
        # Sum-of-losses gradients, normalised once by the total token count below.
        (_, (t, c)), g = grad_fn(state.params, mb, jax.random.fold_in(rng, i))
        g = jax.tree.map(lambda a: a * c, g)
        return (jax.tree.map(jnp.add, grad_sum, g), total + t, count + c), None

      zeros = jax.tree.map(lambda p: jnp.zeros(p.shape, jnp.float32), state.params)
      (grad_sum, total, count), _ = jax.lax.scan(
          body, (zeros, jnp.float32(0), jnp.float32(0)), (micro, jnp.arange(grad_accum)))
      grads = jax.tree.map(lambda g: g / jnp.maximum(count, 1.0), grad_sum)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics = {"loss": total / jnp.maximum(count, 1.0), "tokens": count,
               "grad_norm": optax.global_norm(grads), "param_norm": optax.global_norm(params),
               "learning_rate": schedule(state.step)}
    return state.replace(step=state.step + 1, params=params, opt_state=opt_state), metrics

  return train_step


def jit_train_step(train_step: Callable, state_shardings: Any, mesh: jax.sharding.Mesh) -> Callable:
  """Jits with explicit shardings (batch over data x fsdp) and the state donated."""
  batch_sh = sharding.batch_sharding(mesh)
  jitted = jax.jit(train_step, in_shardings=(state_shardings, batch_sh),
                   out_shardings=(state_shardings, sharding.replicated(mesh)), donate_argnums=0)

  def step(state, batch):
    with jax.set_mesh(mesh), nn.logical_axis_rules(sharding.LOGICAL_RULES):
      return jitted(state, batch)

  step.jitted = jitted
  return step


def make_eval_step(cfg: ModelConfig, mesh: jax.sharding.Mesh, param_shardings: Any,
                   skip: Optional[Any] = None, loss_chunk_len: int = 0) -> Callable:
  """(params, batch) -> (sum of token losses, token count), jitted and sharded (under the skip
  schedule and loss_chunk_len, if given, as in training)."""
  model = Transformer(cfg)
  loss_chunk_len = check_loss_chunk_len(loss_chunk_len)

  def eval_step(params, batch):
    _, (total, count) = _forward_loss(model, params, batch, None, True, skip, loss_chunk_len)
    return total, count

  jitted = jax.jit(eval_step, in_shardings=(param_shardings, sharding.batch_sharding(mesh)),
                   out_shardings=sharding.replicated(mesh))

  def step(params, batch):
    with jax.set_mesh(mesh), nn.logical_axis_rules(sharding.LOGICAL_RULES):
      return jitted(params, batch)

  return step
