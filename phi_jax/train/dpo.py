"""Direct Preference Optimization (Rafailov et al., arXiv 2305.18290): the loss, sequence log-probs
of packed preference batches, the sharded DPO train / eval steps and their reference model.

    loss, metrics = dpo_loss(pc, pr, rc, rr, beta=0.1, label_smoothing=0.0)
    loss, metrics = dpo_loss(pc, pr, rc, rr, nll_weight=1.0, chosen_lengths=n)  # DPO + NLL

For a pair (prompt x, chosen y_w, rejected y_l), p = log pi(y | x) of the policy and r = log
pi_ref(y | x) of the frozen reference (sums over the completion's tokens), with
h = (p_w - r_w) - (p_l - r_l):

    loss = -(1 - ls) * log sigmoid(beta * h) - ls * log sigmoid(-beta * h)

ls = label_smoothing is the conservative DPO form (each label flipped with probability ls; 0 = the
paper's sigmoid loss). Reference-free (dpo.reference='none'): r_w = r_l = 0.

dpo.nll_weight = alpha > 0 adds alpha x the chosen reply's negative log-likelihood per token,
-p_w / |y_w|, to each pair's loss: the DPO + NLL objective of Pang et al., "Iterative Reasoning
Preference Optimization" (arXiv 2404.19733), who found it needed on execution/answer-verified
pairs, where plain DPO lowers the chosen replies' likelihood along with the rejected ones'.

Metrics (means over pairs): reward_chosen = beta (p_w - r_w), reward_rejected = beta (p_l - r_l),
reward_margin (their difference), reward_accuracy (share of pairs with reward_chosen >
reward_rejected), logp_chosen, logp_rejected, nll_chosen (-p_w / |y_w|, whatever the weight;
`dpo_loss` reports it when given chosen_lengths, the train step always).

Batches are data.format='preference' (phi_jax/data/posttrain_formats.py): segment 2k-1 / 2k of a
row are pair k's chosen / rejected sequence, loss_mask marks completion targets. The reference
(config.dpo.reference):
  'model'        the reference params (dpo.reference_from, else init_from) enter the same jitted
                 step, in the policy's shardings, and are never updated;
  'precomputed'  the reference's sequence log-probs are computed once, before training, over every
                 train and validation record (saved as WORKDIR/reference_logps_<split>.npy with
                 a fingerprint of the reference params in reference_logps_<split>.json; reused
                 on resume only while both match) and travel in the batch (`reference_logps`);
                 the reference params are then dropped;
  'none'         reference-free.
The train state, checkpoints and resume are the ordinary ones (train/step.py, train/loop.py): only
the policy is trained and saved.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import pathlib
from typing import Any, Callable, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from phi_jax.data import files, pipeline, posttrain_formats
from phi_jax.models import ModelConfig, Transformer
from phi_jax.train import sharding
from phi_jax.train.step import TrainState

REFERENCES = ("model", "precomputed", "none")
METRICS = ("reward_chosen", "reward_rejected", "reward_margin", "reward_accuracy", "logp_chosen",
           "logp_rejected", "nll_chosen")


def _dpo_sums(pc, pr, rc, rr, beta: float, label_smoothing: float, weights, nll_weight=0.0,
              chosen_lengths=None):
  """(sum of pair losses, pair count, {metric: sum over pairs}) over pairs with weight 1."""
  h = (pc - rc) - (pr - rr)
  losses = (-(1.0 - label_smoothing) * jax.nn.log_sigmoid(beta * h)
            - label_smoothing * jax.nn.log_sigmoid(-beta * h))
  chosen, rejected = beta * (pc - rc), beta * (pr - rr)
  values = {"reward_chosen": chosen, "reward_rejected": rejected,
            "reward_margin": chosen - rejected,
            "reward_accuracy": (chosen > rejected).astype(jnp.float32),
            "logp_chosen": pc, "logp_rejected": pr}
  if chosen_lengths is not None:  # the chosen reply's NLL per token: logged, and in the loss
    values["nll_chosen"] = -pc / jnp.maximum(chosen_lengths, 1.0)  # when nll_weight > 0
    losses = losses + nll_weight * values["nll_chosen"]
  return (jnp.sum(losses * weights), jnp.sum(weights),
          {k: jnp.sum(v * weights) for k, v in values.items()})


def dpo_loss(policy_chosen_logps: jax.Array, policy_rejected_logps: jax.Array,
             reference_chosen_logps: Optional[jax.Array],
             reference_rejected_logps: Optional[jax.Array], *, beta: float = 0.1,
             label_smoothing: float = 0.0,
             weights: Optional[jax.Array] = None, nll_weight: float = 0.0,
             chosen_lengths: Optional[jax.Array] = None) -> tuple[jax.Array, dict[str, jax.Array]]:
  """The DPO sigmoid loss (module doc) and its metrics, as means over pairs.

  Args:
    policy_chosen_logps, policy_rejected_logps: [N] sequence log-probs of the policy.
    reference_chosen_logps, reference_rejected_logps: [N] of the reference; None = 0
      (reference-free).
    beta: the KL coefficient (temperature of the implicit reward).
    label_smoothing: in [0, 0.5): the conservative DPO label-flip probability.
    weights: [N] 1 for real pairs, 0 for padding (default all 1).
    nll_weight: alpha >= 0 of the DPO + NLL objective (module doc; 0 = plain DPO).
    chosen_lengths: [N] completion tokens of each chosen reply (the NLL's per-token
      normalisation); required when nll_weight > 0.
  Returns: (scalar loss, {metric: scalar}).
  """
  if not 0.0 <= label_smoothing < 0.5:
    raise ValueError(f"label_smoothing={label_smoothing} must be in [0, 0.5)")
  if nll_weight < 0 or (nll_weight and chosen_lengths is None):
    raise ValueError(f"nll_weight={nll_weight}: must be >= 0, and > 0 needs chosen_lengths "
                     "(the chosen replies' token counts)")
  pc, pr = jnp.asarray(policy_chosen_logps), jnp.asarray(policy_rejected_logps)
  zero = jnp.zeros_like(pc)
  rc = zero if reference_chosen_logps is None else jnp.asarray(reference_chosen_logps)
  rr = zero if reference_rejected_logps is None else jnp.asarray(reference_rejected_logps)
  weights = jnp.ones_like(pc) if weights is None else jnp.asarray(weights, pc.dtype)
  lengths = None if chosen_lengths is None else jnp.asarray(chosen_lengths, pc.dtype)
  total, count, sums = _dpo_sums(pc, pr, rc, rr, beta, label_smoothing, weights, nll_weight,
                                 lengths)
  norm = jnp.maximum(count, 1.0)
  return total / norm, {k: v / norm for k, v in sums.items()}


def max_pairs(seq_len: int) -> int:
  """Pairs a row of seq_len tokens can hold (each sequence has >= 2 tokens)."""
  return max(1, seq_len // posttrain_formats.MAX_PAIRS_DIVISOR)


def _per_pair(values: jax.Array, segment_ids: jax.Array, num_pairs: int):
  """values [B, T] summed per (pair, half): ([B, P] chosen, [B, P] rejected)."""
  real = segment_ids > 0
  pair = jnp.where(real, (segment_ids - 1) // 2, -1)
  half = (segment_ids - 1) % 2
  onehot = (pair[..., None] == jnp.arange(num_pairs)).astype(values.dtype)  # [B, T, P]
  chosen = jnp.einsum("bt,btp->bp", values * (real & (half == 0)), onehot)
  rejected = jnp.einsum("bt,btp->bp", values * (real & (half == 1)), onehot)
  return chosen, rejected


def sequence_logps(logits: jax.Array, batch: dict[str, jax.Array], num_pairs: int):
  """Sums of the completion tokens' log-probs per sequence of a packed preference batch.

  logits [B, T, V] float32; batch: targets, loss_mask, segment_ids [B, T]. Returns (chosen [B, P],
  rejected [B, P], valid [B, P]: 1 where both sequences of pair p have completion tokens).
  """
  chosen, rejected = _logp_sums(logits, batch, num_pairs)
  return chosen, rejected, _valid_pairs(*completion_lengths(batch, num_pairs))


def _logp_sums(logits: jax.Array, batch: dict[str, jax.Array], num_pairs: int):
  """([B, P] chosen, [B, P] rejected): sums of the completion tokens' log-probs."""
  logp = -optax.softmax_cross_entropy_with_integer_labels(logits, batch["targets"])
  return _per_pair(logp * batch["loss_mask"].astype(jnp.float32), batch["segment_ids"], num_pairs)


def _valid_pairs(n_chosen: jax.Array, n_rejected: jax.Array) -> jax.Array:
  """[B, P] 1.0 where both sequences of the pair have completion tokens."""
  return ((n_chosen > 0) & (n_rejected > 0)).astype(jnp.float32)


def completion_lengths(batch: dict[str, jax.Array], num_pairs: int):
  """Completion tokens per sequence of a packed preference batch: ([B, P] chosen, [B, P]
  rejected)."""
  return _per_pair(batch["loss_mask"].astype(jnp.float32), batch["segment_ids"], num_pairs)


def reference_from_batch(batch: dict[str, jax.Array], num_pairs: int):
  """The precomputed reference log-probs of a batch: ([B, P] chosen, [B, P] rejected)."""
  return _per_pair(batch["reference_logps"], batch["segment_ids"], num_pairs)


@dataclasses.dataclass(frozen=True)
class DPOConfig:
  beta: float = 0.1
  label_smoothing: float = 0.0
  reference: str = "model"
  nll_weight: float = 0.0

  def validate(self) -> None:
    if self.reference not in REFERENCES:
      raise ValueError(f"dpo.reference={self.reference!r} must be one of {REFERENCES}")
    if self.beta <= 0:
      raise ValueError(f"dpo.beta={self.beta} must be > 0")
    if not 0.0 <= self.label_smoothing < 0.5:
      raise ValueError(f"dpo.label_smoothing={self.label_smoothing} must be in [0, 0.5)")
    if self.nll_weight < 0:
      raise ValueError(f"dpo.nll_weight={self.nll_weight} must be >= 0 (0 = plain DPO)")


def _make_sums_fn(cfg: ModelConfig, dpo: DPOConfig, seq_len: int) -> Callable:
  """(params, ref_params, batch, rng, deterministic) -> (loss sum, pair count, metric sums)."""
  model = Transformer(cfg)
  num_pairs = max_pairs(seq_len)

  def logps(params, batch, rng, deterministic):
    logits = model.apply({"params": params}, batch["inputs"], positions=batch["positions"],
                         segment_ids=batch["segment_ids"], deterministic=deterministic,
                         rngs=None if deterministic else {"dropout": rng})
    return _logp_sums(logits, batch, num_pairs)

  def sums(params, ref_params, batch, rng, deterministic):
    n_chosen, n_rejected = completion_lengths(batch, num_pairs)  # the batch's, not a model's
    pc, pr = logps(params, batch, rng, deterministic)
    if dpo.reference == "model":
      rc, rr = jax.lax.stop_gradient(logps(ref_params, batch, None, True))
    elif dpo.reference == "precomputed":
      rc, rr = reference_from_batch(batch, num_pairs)
    else:
      rc = rr = jnp.zeros_like(pc)
    return _dpo_sums(pc, pr, rc, rr, dpo.beta, dpo.label_smoothing,
                     _valid_pairs(n_chosen, n_rejected), dpo.nll_weight, n_chosen)

  return sums


def make_dpo_step(cfg: ModelConfig, tx: optax.GradientTransformation, schedule: optax.Schedule,
                  dpo: DPOConfig, seq_len: int, grad_accum: int = 1) -> Callable:
  """(state, batch, ref_params) -> (state, metrics): one DPO step on the policy `state.params`
  (ref_params: the frozen reference, or None unless dpo.reference == 'model'). metrics: loss (mean
  over the batch's pairs), tokens (= the pair count, the weight the loop averages losses with),
  pairs, the METRICS, grad_norm, param_norm, learning_rate. Not jitted: see `jit_dpo_step`."""
  dpo.validate()
  deterministic = not (cfg.embd_dropout or cfg.resid_dropout or cfg.attn_dropout)
  sums_fn = _make_sums_fn(cfg, dpo, seq_len)

  def objective(params, ref_params, batch, rng):
    total, count, sums = sums_fn(params, ref_params, batch, rng, deterministic)
    return total, (count, sums)

  grad_fn = jax.value_and_grad(objective, has_aux=True)

  def train_step(state: TrainState, batch: dict[str, jax.Array], ref_params: Any = None):
    rng = jax.random.fold_in(jax.random.wrap_key_data(state.rng), state.step)
    micro = jax.tree.map(
        lambda x: x.reshape(grad_accum, x.shape[0] // grad_accum, *x.shape[1:]), batch)

    def body(carry, xs):
      grad_sum, total, count, sums = carry
      mb, i = xs
      r = rng if grad_accum == 1 else jax.random.fold_in(rng, i)
      (t, (c, s)), g = grad_fn(state.params, ref_params, mb, r)  # grads of the loss SUM
      return (jax.tree.map(jnp.add, grad_sum, g), total + t, count + c,
              jax.tree.map(jnp.add, sums, s)), None

    zeros = jax.tree.map(lambda p: jnp.zeros(p.shape, jnp.float32), state.params)
    init = (zeros, jnp.float32(0), jnp.float32(0), {k: jnp.float32(0) for k in METRICS})
    (grad_sum, total, count, sums), _ = jax.lax.scan(body, init, (micro, jnp.arange(grad_accum)))
    norm = jnp.maximum(count, 1.0)
    grads = jax.tree.map(lambda g: g / norm, grad_sum)  # of the mean over the batch's pairs
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics = {"loss": total / norm, "tokens": count, "pairs": count,
               **{k: v / norm for k, v in sums.items()},
               "grad_norm": optax.global_norm(grads), "param_norm": optax.global_norm(params),
               "learning_rate": schedule(state.step)}
    return state.replace(step=state.step + 1, params=params, opt_state=opt_state), metrics

  return train_step


def _with_mesh(jitted: Callable, mesh: jax.sharding.Mesh) -> Callable:
  def call(*args):
    with jax.set_mesh(mesh), nn.logical_axis_rules(sharding.LOGICAL_RULES):
      return jitted(*args)
  call.jitted = jitted
  return call


def jit_dpo_step(train_step: Callable, state_shardings: Any, mesh: jax.sharding.Mesh,
                 ref_params: Any = None) -> Callable:
  """(state, batch) -> (state, metrics), jitted with explicit shardings, the state donated; the
  reference params (if any) are an argument in the params' shardings, never donated."""
  batch_sh, rep = sharding.batch_sharding(mesh), sharding.replicated(mesh)
  ref_sh = None if ref_params is None else state_shardings.params
  jitted = _with_mesh(jax.jit(train_step, in_shardings=(state_shardings, batch_sh, ref_sh),
                              out_shardings=(state_shardings, rep), donate_argnums=0), mesh)
  return lambda state, batch: jitted(state, batch, ref_params)


def make_dpo_eval_step(cfg: ModelConfig, dpo: DPOConfig, seq_len: int, mesh: jax.sharding.Mesh,
                       param_shardings: Any, ref_params: Any = None) -> Callable:
  """(params, batch) -> (sum of pair losses, pair count): the held-out DPO loss, as the loop's
  `evaluate` averages it."""
  sums_fn = _make_sums_fn(cfg, dpo, seq_len)
  ref_sh = None if ref_params is None else param_shardings
  jitted = _with_mesh(jax.jit(lambda p, r, b: sums_fn(p, r, b, None, True)[:2],
                              in_shardings=(param_shardings, ref_sh,
                                            sharding.batch_sharding(mesh)),
                              out_shardings=sharding.replicated(mesh)), mesh)
  return lambda params, batch: jitted(params, ref_params, batch)


# ---- the reference model -----------------------------------------------------------------------

def precompute_reference(cfg: ModelConfig, ref_params: Any, source: Any, tokenize: Any,
                         seq_len: int, batch_size: int, mesh: jax.sharding.Mesh,
                         param_shardings: Any) -> np.ndarray:
  """[len(source), 2] float32: the reference's (chosen, rejected) sequence log-probs of every
  record, one pair per row in global batches of `batch_size` (each process feeds its rows)."""
  model = Transformer(cfg)

  def pair_logps(params, batch):
    logits = model.apply({"params": params}, batch["inputs"], positions=batch["positions"],
                         segment_ids=batch["segment_ids"], deterministic=True)
    chosen, rejected, _ = sequence_logps(logits, batch, 1)
    return chosen[:, 0], rejected[:, 0]

  batch_sh = sharding.batch_sharding(mesh)
  jitted = _with_mesh(jax.jit(pair_logps, in_shardings=(param_shardings, batch_sh),
                              out_shardings=sharding.replicated(mesh)), mesh)
  per_process = batch_size // jax.process_count()
  rows = slice(jax.process_index() * per_process, (jax.process_index() + 1) * per_process)
  out = np.zeros((len(source), 2), np.float32)
  for start in range(0, len(source), batch_size):
    pairs = [tokenize.map(source[i])["tokens"]
             for i in range(start, min(start + batch_size, len(source)))]
    batch = posttrain_formats.one_pair_per_row(pairs, seq_len, rows=batch_size)
    batch = {k: jax.make_array_from_process_local_data(batch_sh, v[rows]) for k, v in batch.items()}
    chosen, rejected = jax.device_get(jitted(ref_params, batch))
    out[start:start + len(pairs), 0] = chosen[:len(pairs)]
    out[start:start + len(pairs), 1] = rejected[:len(pairs)]
  return out


def from_config(config: ml_collections.ConfigDict) -> DPOConfig:
  dpo = DPOConfig(beta=float(config.dpo.beta), label_smoothing=float(config.dpo.label_smoothing),
                  reference=config.dpo.reference,
                  nll_weight=float(config.dpo.get("nll_weight", 0.0)))
  dpo.validate()
  return dpo


@dataclasses.dataclass
class Objective:
  """What train/loop.py needs to run DPO: the jitted train step and held-out eval step."""
  train_step: Callable
  eval_step: Callable


def params_fingerprint(params: Any) -> str:
  """A short hash of params' values (per leaf: its path, shape, sum and sum of squares in
  float32, computed where the leaves live): changes when the reference model does."""
  leaves = jax.tree_util.tree_flatten_with_path(params)[0]
  stats = jax.device_get([(jnp.sum(x.astype(jnp.float32)), jnp.sum(jnp.square(x.astype(
      jnp.float32)))) for _, x in leaves])
  h = hashlib.sha256()
  for (path, x), (total, squares) in zip(leaves, stats):
    h.update(f"{jax.tree_util.keystr(path)}{tuple(x.shape)}".encode())
    h.update(np.asarray([total, squares], np.float32).tobytes())
  return h.hexdigest()[:16]


def prepare(config: ml_collections.ConfigDict, cfg: ModelConfig, data: Any,
            mesh: jax.sharding.Mesh, state_shardings: Any, tx: optax.GradientTransformation,
            schedule: optax.Schedule, init_params: Any, workdir: pathlib.Path,
            load_params: Callable[[str], Any], place_params: Callable[[Any], Any]) -> Objective:
  """The DPO objective of a run (config.objective == 'dpo'), before its state is restored.

  Loads the reference (dpo.reference_from with `load_params(path) -> host params`, else the
  init_from params), places it with `place_params(host) -> params in the policy's shardings`, and
  with 'precomputed'
  computes its log-probs once (or reads them from the workdir) and rebuilds `data`'s train
  iterator and held-out batches over records that carry them.
  """
  dpo = from_config(config)
  if config.data.format != "preference":
    raise ValueError(f"objective='dpo' trains on preference pairs: set data.format='preference' "
                     f"(got {config.data.format!r}) and a preferences dataset")
  if config.skip.enabled:
    raise ValueError("objective='dpo' does not train with a SkipDecode schedule; set "
                     "skip.enabled=False")
  seq_len = config.data.seq_len
  ref_params = None
  if dpo.reference != "none":
    source = config.dpo.reference_from or config.init_from
    if not source:
      raise ValueError(f"dpo.reference={dpo.reference!r} needs a reference model: set init_from "
                       "(the SFT model the policy starts from) or dpo.reference_from, or use "
                       "dpo.reference='none' (reference-free)")
    ref_params = place_params(load_params(source) if config.dpo.reference_from else init_params)
  if dpo.reference == "precomputed":
    tokenize = posttrain_formats.TokenizePair(data.tokenizer, seq_len, data.encode_chat,
                                              data.data_config.prompt_key)
    sources = {}
    fingerprint = params_fingerprint(ref_params)
    for split in ("train", "validation"):
      split_source = pipeline.load_source(dataclasses.replace(data.data_config, split=split))
      path = workdir / f"reference_logps_{split}.npy"
      meta_path = path.with_suffix(".json")
      meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
      values = np.load(path) if path.exists() and meta.get("fingerprint") == fingerprint else None
      if values is None or values.shape != (len(split_source), 2):
        print(f"Precomputing the reference log-probs of {len(split_source)} {split} pairs",
              flush=True)
        values = precompute_reference(cfg, ref_params, split_source, tokenize, seq_len,
                                      config.data.batch_size, mesh, state_shardings.params)
        if jax.process_index() == 0:
          np.save(f"{path}.tmp.npy", values)
          pathlib.Path(f"{path}.tmp.npy").replace(path)
          files.write_text(meta_path, json.dumps({"fingerprint": fingerprint,
                                                  "rows": len(split_source)}))
      sources[split] = posttrain_formats.WithReference(split_source, values)
    data.train_iter = pipeline.make_iterator(data.data_config, data.tokenizer,
                                             source=sources["train"], encode_chat=data.encode_chat)
    if data.eval_batches:
      data.eval_batches = pipeline.make_eval_batches(
          data.data_config, data.tokenizer, source=sources["validation"],
          max_batches=config.data.eval_batches, encode_chat=data.encode_chat)
    ref_params = None  # not needed in the step
  step = make_dpo_step(cfg, tx, schedule, dpo, seq_len, config.grad_accum)
  return Objective(
      train_step=jit_dpo_step(step, state_shardings, mesh, ref_params),
      eval_step=make_dpo_eval_step(cfg, dpo, seq_len, mesh, state_shardings.params, ref_params))


__all__ = ["DPOConfig", "METRICS", "Objective", "REFERENCES", "dpo_loss", "from_config",
           "jit_dpo_step", "make_dpo_eval_step", "make_dpo_step", "max_pairs",
           "precompute_reference", "prepare", "reference_from_batch", "sequence_logps"]
