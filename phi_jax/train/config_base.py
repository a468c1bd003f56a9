"""The schema of a training config: every key a run reads, with its meaning and its default.

Every config in configs/ starts from `get_config()` (locked) and sets what its paper or setting
changes, so the locked config IS the schema: a misspelled key fails, in a config file
(`c.total_step = 3`: AttributeError) and on the command line (`--config.total_step=3`). Nothing in
phi_jax/train reads a key with a hidden default.

    from phi_jax.train import config_base
    c = config_base.get_config()
    c.total_steps = 300
    c.model = config_base.model("phi-1", vocab_size=-1, d_model=128, num_layers=4)

Durations (warmup, and the log / eval / checkpoint / task-eval intervals) are given in steps or as
a fraction of total_steps (big_vision's `*_percent` idea): `optimizer.warmup_steps=30` or
`optimizer.warmup_fraction=0.1`; `log_every=10` or `log_every_fraction=0.05`. Set one of the two
(the other 0); `duration()` resolves them. A config written with fractions is shortened with one
flag: `--config.total_steps=5`.

Resuming: a run started on a workdir that holds a run compares the two configs first
(`resume_conflicts`). Keys matching RESUMABLE may differ (they change how long the run goes and what
it logs, not what its state means); any other difference is refused before anything is written.

This module imports no jax (config files and the CLIs load it before jax starts).
"""

from __future__ import annotations

import fnmatch
import json
from typing import Any, Mapping, Optional

import ml_collections
from ml_collections import FieldReference

# Keys (dotted, fnmatch patterns) that may differ between a workdir's config.json and the config a
# rerun asks for. Everything else defines the train state or the meaning of its steps:
#   model.*                   architecture (parameter shapes) and numerics (dtype, dropout, remat)
#   init_from                 where the weights came from
#   seed, data.seed           init, dropout stream and data order
#   data.* (below excepted)   dataset, files, split, tokenizer, sequence and batch: the token stream
#   optimizer.* (below exc.)  AdamW's structure and hyperparameters, the schedule's shape and warmup
#   skip.*                    the SkipDecode layer schedule trained with
#   objective, dpo.*          what is optimised (the DPO loss and its reference)
RESUMABLE = (
    "total_steps",                    # train longer or stop earlier
    "optimizer.decay_steps",          # the schedule's length (0 = total_steps, which may change)
    "log_every", "log_every_fraction", "eval_every", "eval_every_fraction",
    "checkpoint_every", "checkpoint_every_fraction", "keep_checkpoints",
    "grad_accum",                     # same tokens per step, split differently (memory)
    "loss_chunk_len",                 # the same loss, computed in chunks (memory)
    "mesh.*", "distributed.*",        # placement, not content: checkpoints reshard on restore
    "report", "sample.*", "evals.*",  # what is measured and written, not what is trained
    "study.*",                        # what a study measures (phi_jax.study)
    "data.data_dir",                  # where the prepared dataset lives (its content is the same)
    "data.worker_count", "data.eval_batches",
)


def get_config() -> ml_collections.ConfigDict:
  """The base training config: every key with its default (locked). See the module docstring."""
  c = ml_collections.ConfigDict()
  c.seed = 0              # named PRNG streams (init, dropout) and, unless data.seed, the data order
  c.total_steps = 1_000   # optimizer steps; tokens per step = data.batch_size x data.seq_len
  # Intervals: in steps, or as a fraction of total_steps (the other 0). The last step always logs,
  # evaluates (if eval_every / eval_every_fraction is set) and checkpoints.
  c.log_every = 50        # metrics.jsonl / TensorBoard / progress; 0 (and no fraction): at the end
  c.log_every_fraction = 0.0
  c.eval_every = 0        # held-out loss on data.eval_batches batches; 0 (and no fraction): never
  c.eval_every_fraction = 0.0
  c.checkpoint_every = 1_000  # 0 (and no fraction): at the end (and on SIGTERM / SIGINT)
  c.checkpoint_every_fraction = 0.0
  c.keep_checkpoints = 3  # newest N kept
  c.grad_accum = 1        # microbatches per step (memory); grad_accum x data x fsdp | batch_size
  # The LM head + next-token loss (objective 'lm') over chunks of this many sequence positions
  # (train/chunked_loss.py): memory for one chunk's float32 logits [rows, loss_chunk_len, vocab]
  # instead of the full [rows, seq_len, vocab] and their gradient; the head's matmul runs once more.
  # 0: the full logits. Same loss and gradients up to float rounding.
  c.loss_chunk_len = 0
  c.report = True         # report.md, loss.png and samples at the end
  c.init_from = ""        # fine-tune from a training workdir or a Hugging Face folder ('': none)
  c.objective = "lm"      # 'lm' (next-token loss on loss_mask) | 'dpo' (train/dpo.py: preferences)

  # Device mesh (train/mesh.py); -1 fills with the remaining devices.
  c.mesh = ml_collections.ConfigDict(dict(
      data=-1,    # data parallel: the batch is split, everything else replicated
      fsdp=1,     # the batch and the parameters' embedding dimension are split
      tensor=1,   # heads, MLP and vocabulary are split
  ))
  # Multi-host (jax.distributed.initialize); the empty values defer to JAX_COORDINATOR_ADDRESS /
  # JAX_NUM_PROCESSES / JAX_PROCESS_ID or SLURM, and none of those means one process.
  c.distributed = ml_collections.ConfigDict(dict(
      coordinator_address="",  # host:port of process 0
      num_processes=0,         # 0: from the environment
      process_id=-1,           # -1: from the environment
      local_device_ids=(),     # (): all local devices
  ))

  # The architecture: a preset of phi_jax/models/presets.py (`name`) plus any ModelConfig fields
  # as overrides; set it with `model(name, **fields)`. vocab_size=-1 = the tokenizer's size. With
  # init_from the architecture is the source's: only training-time fields may be set (name ignored).
  c.model = model("tiny-serial")

  c.data = ml_collections.ConfigDict(dict(
      dataset="code_corpus",      # a phi_jax.data.builders name (code_corpus, text_corpus, ...)
      source_dir="",              # the builder's source folder ('' = its default, e.g. the stdlib)
      max_files=0,                # use the first N source files (0 = all)
      validation_fraction=0.02,   # files held out for the held-out loss
      max_bytes=0,                # skip source files larger than this (0 = the builder's default)
      data_dir="",                # prepared TFDS data ('' = WORKDIR/data)
      tokenizer="",               # a tokenizer file / folder to load; '': train SentencePiece BPE
      tokenizer_vocab_size=4096,  # ... of this size
      tokenizer_train_bytes=4_000_000,  # ... on up to this much training text (once per workdir)
      seq_len=128,                # tokens per row (rows are packed documents, EOS-separated)
      batch_size=16,              # rows per optimizer step, over all devices and microbatches
      num_epochs=FieldReference(None, field_type=int),  # None: repeat forever
      eval_batches=8,             # held-out batches per evaluation
      seed=FieldReference(None, field_type=int),        # data order; None: config.seed
      worker_count=0,             # grain worker processes (0: in-process)
      format="lm",                # 'lm' (every token), 'prompt_completion' (loss on completions),
                                  # 'chat' (SFT: loss on assistant turns), 'preference' (DPO pairs)
      chat_template="phi-3",      # for 'chat' / messages: a built-in name, model folder or .jinja
  ))

  c.optimizer = ml_collections.ConfigDict(dict(
      learning_rate=1e-3,     # peak
      schedule="linear",      # linear | constant | cosine (after the warmup); see train/optim.py
      warmup_steps=0,         # linear warmup from 0, in steps ...
      warmup_fraction=0.0,    # ... or as a fraction of total_steps (set one of the two)
      decay_steps=0,          # the decay's end step (0 = total_steps)
      end_lr_fraction=0.0,    # the learning rate at decay_steps, as a fraction of the peak
      b1=0.9, b2=0.95, eps=1e-8,  # AdamW
      weight_decay=0.1,       # on kernels and embeddings only
      grad_clip_norm=1.0,     # global-norm clipping (0 = off)
  ))

  # Task evaluations during training (phi_jax.evals.periodic): tasks as for `python -m phi_jax.eval`
  # (e.g. ('humaneval', 'mc:piqa:/data/piqa.jsonl')); the other fields are tasks.Options' (same
  # defaults: tests/test_configs.py checks them). every 0 (and no fraction): never.
  c.evals = ml_collections.ConfigDict(dict(
      every=0, every_fraction=0.0, tasks=(),
      limit=FieldReference(None, field_type=int),  # first N problems / examples (None: all)
      num_samples=1, temperature=0.0, top_p=FieldReference(None, field_type=float),
      max_new_tokens=FieldReference(None, field_type=int),  # None: the task's default
      k=(1, 10, 100), timeout_s=10.0, workers=FieldReference(None, field_type=int),
      isolation="auto",  # the code tasks' sandbox level (evals.execution)
      require_isolation=FieldReference(None, field_type=str),  # refuse to run below this level
      batch_size=16, num_fewshot=0,
      fewshot_path=FieldReference(None, field_type=str), mbpp_split="test", seq_len=512,
      data_dir=FieldReference(None, field_type=str), seed=0,
      out_dir="",  # per-evaluation results under out_dir/step_N ('' = none)
  ))

  # Completions of these prompts in report.md at the end (greedy at temperature 0).
  c.sample = ml_collections.ConfigDict(dict(prompts=(), max_new_tokens=64, temperature=0.0))

  # DPO (objective='dpo', train/dpo.py): the sigmoid loss with conservative label smoothing.
  c.dpo = ml_collections.ConfigDict(dict(
      beta=0.1,              # the KL coefficient
      label_smoothing=0.0,   # in [0, 0.5): assumed label-flip probability (0 = plain DPO)
      reference="model",     # 'model' (in the step) | 'precomputed' (once, into the batch) | 'none'
      reference_from="",     # the frozen reference model ('': init_from's weights)
      nll_weight=0.0,        # alpha of DPO + NLL (chosen reply's NLL per token; 0 = plain DPO)
  ))

  # SkipDecode training (decoding.skipdecode.from_config): the schedule for target_speedup.
  c.skip = ml_collections.ConfigDict(dict(
      enabled=False, target_speedup=1.0, warmup_layers=0, decay_len=32, ratio=2.0))

  # A study (phi_jax.study.arms): the run above trained on each arm's data, then compared.
  # arms = {name: {'data': {config.data overrides}, 'mixture': {n_exercises, n_textbooks,
  # seed} (optional: the textbook-quality mixture the study makes first)}}; empty = one run.
  c.arms = ml_collections.ConfigDict()
  c.study = ml_collections.ConfigDict(dict(
      n_validation=100,      # held-out exercises: unseen variants of the training families
      n_test=100,            # ... and whole held-out families
      handwritten=True,      # phi_jax.evals.problems.HANDWRITTEN
      humaneval_limit=164,   # the first N HumanEval problems (0: skip)
      eval_seed=2024,        # which exercises
      max_new_tokens=128, batch_size=50, workers=0,  # greedy decoding; sandbox threads (0: CPUs)
      decontam=("humaneval", "handwritten"),  # benchmarks a made mixture is cleaned against
      smooth=0.9,            # EMA of the plotted train loss (per logged interval)
      parallel=1,            # arms trained at once, one process each (pinned to a CPU each
                             # when the machine has that many); 1: one after another, in-process
  ))

  c.lock()
  return c


def model(name: str, **fields: Any) -> ml_collections.ConfigDict:
  """The `model` section: preset `name` with ModelConfig `fields` as overrides."""
  return ml_collections.ConfigDict(dict(name=name, **fields))


def optimizer(**overrides: Any) -> ml_collections.ConfigDict:
  """The base `optimizer` section with `overrides` (a KeyError names an unknown key)."""
  opt = get_config().optimizer
  for key, value in overrides.items():
    if key not in opt:
      raise KeyError(f"optimizer has no field {key!r}; fields: {sorted(opt)}")
    opt[key] = value
  return opt


def duration(section: Mapping[str, Any], steps_key: str, fraction_key: str, total_steps: int,
             where: str = "", minimum: int = 0, max_fraction: float = 1.0) -> int:
  """A duration in steps, given as `section[steps_key]` or as a fraction of total_steps.

  Args:
    section: the config section holding both keys.
    steps_key, fraction_key: e.g. 'warmup_steps' and 'warmup_fraction'.
    total_steps: the run's length.
    where: the section's dotted prefix for messages ('optimizer.').
    minimum: the least number of steps a set fraction resolves to (1 for intervals).
    max_fraction: the largest fraction allowed (inclusive).
  Raises ValueError naming both flags when both are set, or a fraction out of range.
  """
  steps, fraction = section[steps_key], float(section[fraction_key])
  if steps and fraction:
    raise ValueError(
        f"both {where}{steps_key}={steps} and {where}{fraction_key}={fraction:g} are set; set "
        f"one of them and the other to 0, e.g. --config.{where}{fraction_key}=0 to use "
        f"{steps} steps")
  if fraction:
    if not 0 < fraction <= max_fraction:
      raise ValueError(f"{where}{fraction_key}={fraction:g} must be in (0, {max_fraction:g}] (a "
                       f"fraction of total_steps; {where}{steps_key} gives steps)")
    return max(minimum, round(fraction * total_steps))
  if steps < 0:
    raise ValueError(f"{where}{steps_key}={steps} must be >= 0")
  return int(steps)


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
  """{'a': {'b': 1}} -> {'a.b': 1}."""
  out = {}
  for key, value in tree.items():
    if isinstance(value, Mapping):
      out.update(flatten(value, f"{prefix}{key}."))
    else:
      out[f"{prefix}{key}"] = value
  return out


def as_json(config: ml_collections.ConfigDict) -> dict[str, Any]:
  """The config as the plain JSON types config.json holds (tuples as lists)."""
  return json.loads(config.to_json_best_effort())


def resumable(key: str) -> bool:
  return any(fnmatch.fnmatchcase(key, pattern) for pattern in RESUMABLE)


_ABSENT = "(absent)"


def resume_conflicts(saved: Mapping[str, Any],
                     requested: ml_collections.ConfigDict) -> list[tuple[str, Any, Any]]:
  """(key, saved value, requested value) for each non-RESUMABLE key that differs between a
  workdir's config.json (`saved`, parsed JSON) and `requested`. A key that the saved config lacks
  (written before the key existed) compares against its base default."""
  old, new = flatten(saved), flatten(as_json(requested))
  base = flatten(as_json(get_config()))
  conflicts = []
  for key in sorted(set(old) | set(new)):
    if resumable(key):
      continue
    before = old.get(key, base.get(key, _ABSENT))
    after = new.get(key, _ABSENT)
    if before != after:
      conflicts.append((key, before, after))
  return conflicts


def describe_conflicts(conflicts: list[tuple[str, Any, Any]], workdir: str,
                       limit: Optional[int] = 12) -> str:
  """The lines of a refusal message: one per differing key, both values."""
  shown = conflicts if limit is None else conflicts[:limit]
  lines = [f"  {key}: {before!r} in {workdir}/config.json, {after!r} requested"
           for key, before, after in shown]
  if len(conflicts) > len(shown):
    lines.append(f"  ... and {len(conflicts) - len(shown)} more")
  return "\n".join(lines)
