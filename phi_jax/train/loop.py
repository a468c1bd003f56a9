"""The training loop: mesh -> data -> init or resume -> steps (log, eval, checkpoint) -> report.

Reads top to bottom like big_vision's train.py. Everything a run writes goes to its workdir:
config.json, metrics.jsonl, tensorboard/, checkpoints/, report.md and plots. A rerun on the same
workdir resumes; with a config that differs outside config_base.RESUMABLE it is refused before
anything is written. The logged `loss` is the mean over the logging interval.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import pathlib
import signal
import time
from typing import Any, Optional

import jax
import ml_collections
import numpy as np

from phi_jax.data import files
from phi_jax.decoding import skipdecode
from phi_jax.models import ModelConfig, presets
from phi_jax.train import checkpoint as ckpt_lib
from phi_jax.train import config_base
from phi_jax.train import inputs, metrics as metrics_lib, optim, sharding
from phi_jax.train import mesh as mesh_lib
from phi_jax.train import step as step_lib


class NonFiniteLossError(FloatingPointError):
  """Raised when the training loss becomes NaN or inf."""


def model_config(config: ml_collections.ConfigDict, vocab_size: Optional[int] = None) -> ModelConfig:
  """The preset named by config.model.name with the other config.model fields as overrides.

  vocab_size -1 in the config means "the tokenizer's vocabulary size".
  """
  fields = dict(config.model.to_dict())
  name = fields.pop("name")
  if fields.get("vocab_size", None) == -1:
    if vocab_size is None:
      raise ValueError("config.model.vocab_size=-1 needs a tokenizer to take the size from")
    fields["vocab_size"] = vocab_size
  return presets.get(name, **fields)


INIT_OVERRIDABLE = ("embd_dropout", "resid_dropout", "attn_dropout", "dtype", "param_dtype",
                    "remat_policy", "scan_unroll", "weight_grad", "attention_impl",
                    "attention_block")


def load_init(init_from: str) -> tuple[ModelConfig, Any]:
  """(ModelConfig, host params) to fine-tune from: a phi_jax training workdir (its newest
  checkpoint), a converted phi_jax checkpoint or a Hugging Face folder (phi_jax.convert.load)."""
  from phi_jax.convert import load
  try:
    loaded = load.load_model(init_from)  # float32 params; _place_params casts them
  except (ValueError, FileNotFoundError) as e:
    raise ValueError(f"init_from={init_from!r}: {e}") from e
  return loaded.cfg, loaded.params


def init_model_config(config: ml_collections.ConfigDict, source: ModelConfig) -> ModelConfig:
  """With config.init_from the architecture is the source's; config.model may only change the
  training-time fields in INIT_OVERRIDABLE (its 'name' is ignored)."""
  fields = {k: v for k, v in config.model.to_dict().items() if k not in ("name", "vocab_size")}
  bad = sorted(k for k, v in fields.items()
               if k not in INIT_OVERRIDABLE and getattr(source, k, None) != v)
  if bad:
    raise ValueError(f"config.model sets {bad}, which would change the architecture of "
                     f"init_from={config.init_from!r}; with init_from only {INIT_OVERRIDABLE} "
                     "may be set")
  return source.replace(**fields)


class ConfigMismatchError(ValueError):
  """The config asks for a different run than the one its workdir holds."""


def check_resume(config: ml_collections.ConfigDict, workdir: pathlib.Path) -> None:
  """Raises ConfigMismatchError if `workdir` holds a run (config.json) whose config differs from
  `config` in a key outside config_base.RESUMABLE. Reads only; writes nothing."""
  path = workdir / "config.json"
  if not path.exists():
    return
  try:
    saved = json.loads(path.read_text())
  except ValueError as e:
    raise ConfigMismatchError(f"{path} is not valid JSON ({e}); it is the record of the run in "
                              f"{workdir}: fix or remove it, or use a new --workdir") from None
  conflicts = config_base.resume_conflicts(saved, config)
  if conflicts:
    keys = ", ".join(k for k, _, _ in conflicts)
    raise ConfigMismatchError(
        f"{workdir} holds a run whose config differs in {keys}, which define the run's state "
        "or the meaning of its steps, so it cannot be resumed with this config:\n"
        f"{config_base.describe_conflicts(conflicts, str(workdir))}\n"
        "Nothing was written. To start a new run, pass a new --workdir; to continue the earlier "
        "run, drop those overrides (only " + ", ".join(config_base.RESUMABLE) + " may change on "
        "resume).")


def write_config(config: ml_collections.ConfigDict, workdir: pathlib.Path) -> None:
  if jax.process_index() == 0:
    files.write_text(workdir / "config.json",
                     config.to_json_best_effort(indent=2, sort_keys=True) + "\n")


@dataclasses.dataclass(frozen=True)
class Intervals:
  """Steps between logs, held-out evaluations, checkpoints and task evaluations (0 = none; the
  last step always logs and checkpoints, and evaluates when eval is set)."""
  log: int
  eval: int
  checkpoint: int
  evals: int


def intervals(config: ml_collections.ConfigDict) -> Intervals:
  """The config's intervals in steps (each given as steps or as a fraction of total_steps)."""
  total = config.total_steps
  if total < 1:
    raise ValueError(f"total_steps={total} must be >= 1")

  def get(section, key, where=""):
    return config_base.duration(section, key, f"{key}_fraction", total, where=where, minimum=1)

  return Intervals(log=get(config, "log_every"), eval=get(config, "eval_every"),
                   checkpoint=get(config, "checkpoint_every"),
                   evals=get(config.evals, "every", where="evals."))


def _due(step: int, every: int) -> bool:
  return every > 0 and step % every == 0


def interval_metrics(steps: list[dict[str, Any]]) -> dict[str, float]:
  """The metrics logged for an interval of step metrics (host values, oldest first): `loss` is the
  mean token loss over the interval (token-weighted), `loss_last_batch` the last step's; the other
  metrics (grad_norm, learning_rate, ...) are the last step's."""
  last = {k: float(v) for k, v in steps[-1].items()}
  tokens = sum(float(s["tokens"]) for s in steps)
  total = sum(float(s["loss"]) * float(s["tokens"]) for s in steps)
  out = dict(last)
  out["loss_last_batch"] = last["loss"]
  out["loss"] = total / tokens if tokens else last["loss"]
  return out


class _StopFlag:
  """SIGTERM / SIGINT set a flag; the loop saves a checkpoint at the next step and exits cleanly."""

  def __init__(self):
    self.signal: Optional[int] = None
    self._previous = {}

  def __enter__(self):
    for sig in (signal.SIGTERM, signal.SIGINT):
      self._previous[sig] = signal.signal(sig, self._handle)
    return self

  def _handle(self, signum, frame):  # pylint: disable=unused-argument
    if self.signal is not None and signum == signal.SIGINT:  # a second Ctrl-C: stop now
      raise KeyboardInterrupt
    self.signal = signum

  def __exit__(self, *exc):
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)


def _global_batch(batch: dict[str, np.ndarray], mesh: jax.sharding.Mesh) -> dict[str, jax.Array]:
  """Each process's slice of the global batch -> global arrays sharded over data x fsdp."""
  sh = sharding.batch_sharding(mesh)
  return {k: jax.make_array_from_process_local_data(sh, np.asarray(v)) for k, v in batch.items()}


def _place_params(loaded: Any, fresh: Any, shardings: Any) -> Any:
  """The loaded params, checked against the fresh ones' tree and shapes, in their shardings."""
  loaded = jax.tree.map(np.asarray, loaded)
  want = jax.tree_util.tree_structure(fresh)
  if jax.tree_util.tree_structure(loaded) != want:
    raise ValueError("init_from's parameters do not have the model's structure: "
                     f"{jax.tree_util.tree_structure(loaded)} vs {want}")
  for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(loaded), jax.tree.leaves(fresh)):
    if a.shape != b.shape:
      raise ValueError(f"init_from's {jax.tree_util.keystr(path)} has shape {a.shape}; the "
                       f"model expects {b.shape}")
  return jax.tree.map(lambda a, b, s: jax.device_put(a.astype(b.dtype), s), loaded, fresh,
                      shardings)


def evaluate(eval_step, params, batches, mesh) -> Optional[float]:
  """Mean token loss over the held-out batches (None without any)."""
  total, count = 0.0, 0.0
  for batch in batches:
    t, c = eval_step(params, _global_batch(batch, mesh))
    total, count = total + float(t), count + float(c)
  return total / count if count else None


def train(config: ml_collections.ConfigDict, workdir: str | os.PathLike) -> dict[str, Any]:
  """Trains (or resumes) the run described by `config` in `workdir`; returns a summary dict.

  A workdir that holds another run's config.json is checked first (`check_resume`): a difference
  outside config_base.RESUMABLE raises ConfigMismatchError before anything is written.
  """
  workdir = pathlib.Path(workdir).absolute()
  if config.get("arms"):
    raise ValueError(f"this config is a study of arms {sorted(config.arms.keys())}: run it with "
                     "`python -m phi_jax.main` (phi_jax.study.arms.run), or train one arm's run "
                     "with phi_jax.study.arms.arm_config(config, ARM, tokenizer, data)")
  check_resume(config, workdir)  # before anything is written
  every = intervals(config)
  workdir.mkdir(parents=True, exist_ok=True)
  mesh_lib.maybe_initialize_distributed(config.distributed)
  mesh = mesh_lib.make_mesh(dict(config.mesh))
  write_config(config, workdir)
  is_main = jax.process_index() == 0

  # ---- data and model ---------------------------------------------------------------------
  seq_len, batch_size = config.data.seq_len, config.data.batch_size
  grad_accum = config.grad_accum
  if batch_size % (grad_accum * mesh.shape["data"] * mesh.shape["fsdp"]):
    raise ValueError(f"data.batch_size={batch_size} must be divisible by grad_accum={grad_accum} "
                     f"x data x fsdp mesh size ({mesh.shape['data'] * mesh.shape['fsdp']})")
  loss_chunk_len = step_lib.check_loss_chunk_len(config.loss_chunk_len)
  if loss_chunk_len and config.objective != "lm":
    raise ValueError(f"loss_chunk_len={loss_chunk_len} applies to objective='lm' only (the "
                     f"{config.objective!r} step computes full logits); set "
                     "--config.loss_chunk_len=0")
  data = inputs.make_inputs(config, workdir, with_eval=bool(every.eval))
  init_from = config.init_from
  init_params = None
  if init_from:
    source_cfg, init_params = load_init(init_from)
    cfg = init_model_config(config, source_cfg)
  else:
    cfg = model_config(config, data.tokenizer.vocab_size if data.tokenizer else None)
  skip = skipdecode.from_config(config.skip, cfg.num_layers)
  if data.tokenizer is not None and data.tokenizer.vocab_size > cfg.vocab_size:
    raise ValueError(f"the tokenizer has {data.tokenizer.vocab_size} tokens but the model's "
                     f"vocab_size is {cfg.vocab_size}; set config.model.vocab_size=-1 (the "
                     "tokenizer's size) or at least the tokenizer's size")
  if is_main:
    from phi_jax.convert import checkpoint_io
    (workdir / "model_config.json").write_text(checkpoint_io.config_to_json(cfg) + "\n")
  tx, schedule = optim.make_optimizer(config.optimizer, config.total_steps)
  rng = jax.random.key(config.seed)

  # ---- init or resume -----------------------------------------------------------------------
  abstract, shardings = step_lib.abstract_state(cfg, tx, seq_len, mesh, rng)
  objective = None
  if config.objective == "dpo":  # before the restore: 'precomputed' rebuilds data.train_iter
    from phi_jax.train import dpo
    objective = dpo.prepare(
        config, cfg, data, mesh, shardings, tx, schedule, init_params, workdir,
        load_params=lambda path: load_init(path)[1],
        place_params=lambda host: _place_params(host, abstract.params, shardings.params))
  elif config.objective != "lm":
    raise ValueError(f"objective={config.objective!r} must be 'lm' or 'dpo'")
  checkpointer = ckpt_lib.Checkpointer(workdir / "checkpoints", config.keep_checkpoints)
  restored = checkpointer.restore_latest(abstract, data.train_iter)
  if restored is not None:
    start_step, state = restored
    print(f"Resumed from {checkpointer.directory} at step {start_step}", flush=True)
  else:
    start_step = 0
    state, _ = step_lib.create_sharded_state(cfg, tx, seq_len, mesh, rng)
    if init_params is not None:  # fine-tune: the source's weights, a fresh optimizer state
      state = state.replace(params=_place_params(init_params, state.params, shardings.params))
      print(f"Initialised the weights from {init_from}", flush=True)
  n_params = sum(x.size for x in jax.tree.leaves(state.params))
  if is_main:
    print(f"Model {cfg.name}: {n_params:,} parameters; mesh {dict(mesh.shape)}; "
          f"{batch_size} x {seq_len} tokens per step; {config.total_steps} steps", flush=True)

  if skip is not None and is_main:
    print(f"Training with SkipDecode: {skip.describe()}", flush=True)
  if objective is not None:
    train_step, eval_step = objective.train_step, objective.eval_step
  else:
    train_step = step_lib.jit_train_step(
        step_lib.make_train_step(cfg, tx, schedule, grad_accum, skip=skip,
                                 loss_chunk_len=loss_chunk_len), shardings, mesh)
    eval_step = step_lib.make_eval_step(cfg, mesh, shardings.params, skip=skip,
                                        loss_chunk_len=loss_chunk_len)
  # Task evaluations (HumanEval, MBPP, multiple choice, perplexity) every `every.evals` steps.
  periodic_eval = None
  if every.evals and config.evals.tasks:
    from phi_jax.evals import periodic
    periodic_eval = periodic.make_periodic_eval({**config.evals.to_dict(), "every": every.evals})
  writer = metrics_lib.MetricWriter(workdir, enabled=is_main)
  progress = metrics_lib.Progress(config.total_steps, start_step, enabled=is_main)
  flops_per_step = metrics_lib.train_flops_per_token(cfg, seq_len) * batch_size * seq_len
  peak = metrics_lib.peak_flops()

  # ---- loop -----------------------------------------------------------------------------------
  step = start_step
  last_log_time, last_log_step = time.perf_counter(), start_step
  last_metrics: dict[str, float] = {}
  interval: list[dict[str, jax.Array]] = []  # the step metrics since the last log (on device)
  stopped_by = None
  with _StopFlag() as stop:
    while step < config.total_steps:
      batch = _global_batch(next(data.train_iter), mesh)
      state, step_metrics = train_step(state, batch)
      interval.append(step_metrics)
      step += 1
      is_last = step == config.total_steps
      log_now = _due(step, every.log) or is_last
      ckpt_now = _due(step, every.checkpoint) or is_last or stop.signal is not None
      eval_now = bool(every.eval) and (_due(step, every.eval) or is_last)
      if log_now or ckpt_now:
        scalars = jax.device_get(interval)  # syncs: every step of the interval is done
        bad = [s for s in scalars if not math.isfinite(float(s["loss"]))]
        if bad:
          checkpointer.wait()
          good = checkpointer.latest_step()
          raise NonFiniteLossError(
              f"loss is {float(bad[0]['loss'])} at step {step}; stopping. The last good "
              f"checkpoint is step {good} in {checkpointer.directory}. Lower the learning rate, "
              "raise warmup, or check the data, then rerun to resume from it.")
      if log_now:
        now = time.perf_counter()
        steps_done = step - last_log_step
        seconds = max(now - last_log_time, 1e-9)
        last_metrics = interval_metrics(scalars)
        last_metrics["tokens_per_sec"] = batch_size * seq_len * steps_done / seconds
        last_metrics["steps_per_sec"] = steps_done / seconds
        achieved = flops_per_step * steps_done / seconds / jax.device_count()
        last_metrics["gflops_per_sec"] = achieved / 1e9
        if peak:
          last_metrics["mfu"] = achieved / peak
        last_log_time, last_log_step = now, step
        interval = []
      if eval_now:
        eval_loss = evaluate(eval_step, state.params, data.eval_batches, mesh)
        if eval_loss is not None:
          last_metrics["eval_loss"] = eval_loss
          writer.write(step, {"eval_loss": eval_loss})
      if periodic_eval is not None:  # every process calls it; {} except every `every.evals` steps
        task_metrics = periodic_eval(cfg, state.params, data.tokenizer, step)
        if task_metrics:
          writer.write(step, task_metrics)
          last_metrics.update(task_metrics)
      if log_now:
        writer.write(step, {k: v for k, v in last_metrics.items() if k != "eval_loss"})
        progress.update(step, last_metrics)
      if ckpt_now:
        checkpointer.save(step, state, data.train_iter, force=True)
      if stop.signal is not None:
        stopped_by = signal.Signals(stop.signal).name
        break
  progress.close()
  checkpointer.close()
  writer.close()
  summary = {"step": step, "stopped_by": stopped_by, "num_params": int(n_params),
             "final_loss": last_metrics.get("loss"), "eval_loss": last_metrics.get("eval_loss"),
             "workdir": str(workdir)}
  if stopped_by:
    print(f"\nStopped by {stopped_by} at step {step}; checkpoint saved. Rerun the same command "
          "to resume.", flush=True)
  elif is_main and config.report:
    from phi_jax.train import report
    summary.update(report.write_report(config, workdir, cfg, state.params, data.tokenizer))
  if is_main:
    (workdir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
  return summary
