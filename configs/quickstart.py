"""Quickstart: phi-1's story at laptop scale. The same tiny model, tokenizer and token budget
trained on textbook-quality data and on raw code, then compared.

    python -m phi_jax.main --config=configs/quickstart.py --workdir=workdirs/quickstart

A study (`phi_jax.study.arms`) of two arms, each an ordinary run directory:
  DIR/textbook/  phi_jax's textbook-quality mixture (`curation.mixture`): verified procedural
                 exercises (train split only: no held-out family, no held-out variant) and
                 procedural textbook sections with worked examples, decontaminated against
                 HumanEval and the hand-written problems
  DIR/raw/       this Python's standard library, as is (`code_corpus`)
then DIR/report.md: pass@1 on held-out exercises (unseen variants; whole held-out families),
on hand-written problems and on HumanEval, with 95% intervals; both loss curves (loss.png);
greedy samples of both arms for the same prompts. The two arms train at once, each in its own
process pinned to one core (`study.parallel=2`: 1.2x the throughput of one after another,
BENCHMARKS.md), and each process measures its arm when it is trained. Attention skips the causal
blocks (`attention_block=64`) and the loss is computed in chunks of 64 positions: 1.26x the step
with 'xla' attention. Measured on the idle 2-core machine (Intel Xeon, 2026-12-03): see
experiments/tinycoder/RESULTS.md for the wall time, the search that chose these settings and
the pass@1 across seeds.

Variants: `:smoke` (a one-minute version for tests); `:long` (the 2026-12-01 recipe: d_model
128, 700 steps = 2.9M tokens per arm at lr 5e-3, one arm after the other; 28 minutes on that
day's idle 2-core machine); `:arm=raw` (with
or without the others) is one arm's ordinary training run on its own (`arm=textbook` too, given
the made mixture: `--config.data.source_dir=DIR/data/textbook/dataset`).

Seeds: `sweep()` runs the study for seeds 0, 1, 2 (model init and data order; the mixture is the
same), and experiments/tinycoder/report.py gives the spread across them:

    python -m phi_jax.sweep --config=configs/quickstart.py:long --workdir=DIR   # see run.sh
"""

import ml_collections

from phi_jax.config_args import parse_arg
from phi_jax.train import config_base


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  v = parse_arg(arg, {"smoke": False, "long": False, "arm": ""})
  c = config_base.get_config()
  c.seed = 0
  c.total_steps = 950
  c.log_every, c.log_every_fraction = 0, 1 / 38                # every 25 of 950 steps
  c.eval_every, c.eval_every_fraction = 0, 1.0                 # once, at the end
  c.checkpoint_every, c.checkpoint_every_fraction = 0, 1 / 2  # every 475
  c.keep_checkpoints = 1
  c.grad_accum = 1
  c.mesh.update(data=-1, fsdp=1, tensor=1)

  # phi-1's block (parallel attention + MLP, partial rotary) at toy size; vocab -1 = the
  # tokenizer's. Tied embeddings: copying a name from the prompt is then one attention head
  # (experiments/tinycoder/RESULTS.md).
  c.model = config_base.model(
      "phi-1", vocab_size=-1, d_model=96, num_layers=4, num_heads=3, mlp_dim=384, rotary_dim=16,
      max_seq_len=512, dtype="float32", param_dtype="float32", attn_dropout=0.0,
      resid_dropout=0.0, embd_dropout=0.0, remat_policy="none", tie_embeddings=True,
      lm_head_bias=False, attention_impl="auto", attention_block=64)
  c.loss_chunk_len = 64

  c.data.update(dataset="code_corpus", source_dir="", max_files=0, validation_fraction=0.02,
                data_dir="", tokenizer="", tokenizer_vocab_size=1024,
                tokenizer_train_bytes=4_000_000, seq_len=256, batch_size=16, eval_batches=8,
                worker_count=0)

  c.optimizer.update(learning_rate=1e-2, schedule="linear", warmup_steps=0, warmup_fraction=0.05,
                     decay_steps=0, end_lr_fraction=0.1, b1=0.9, b2=0.95, eps=1e-8,
                     weight_decay=0.1, grad_clip_norm=1.0)

  c.arms = ml_collections.ConfigDict(dict(
      # loss on each record's target: an exercise's body, a textbook piece after its first line
      textbook=dict(data=dict(dataset="synthetic_exercises", format="prompt_completion"),
                    mixture=dict(n_exercises=30_000, n_drills=15_000, n_textbooks=300, seed=0)),
      raw=dict(data=dict(dataset="code_corpus")),
  ))
  c.study.update(n_validation=100, n_test=100, handwritten=True, humaneval_limit=164,
                 eval_seed=2024, max_new_tokens=128, batch_size=50, parallel=2)

  if v["long"]:
    c.total_steps = 700
    c.log_every_fraction = 1 / 35                                # every 20 of 700 steps
    c.model.update(d_model=128, num_heads=4, mlp_dim=512, attention_impl="xla",
                   attention_block=0)
    c.loss_chunk_len = 0
    c.optimizer.learning_rate = 5e-3
    c.study.parallel = 1
  if v["smoke"]:
    c.total_steps = 12
    c.log_every_fraction = 1 / 3         # every 4 steps
    c.checkpoint_every_fraction = 1.0
    c.model.update(d_model=64, num_layers=2, num_heads=2, mlp_dim=128, rotary_dim=8)
    c.arms.textbook.mixture.n_drills = 50
    c.data.update(tokenizer_vocab_size=512, seq_len=64, batch_size=8,
                  eval_batches=2)
    c.arms.textbook.mixture.update(n_exercises=200, n_textbooks=10)
    c.arms.raw.data.max_files = 40
    c.study.update(n_validation=6, n_test=4, humaneval_limit=2, max_new_tokens=16, batch_size=8)
  if v["arm"]:
    if v["arm"] not in c.arms:
      raise ValueError(f"arm={v['arm']!r}: the quickstart's arms are {sorted(c.arms.keys())}")
    c.data.update(dict(c.arms[v["arm"]].data))
    c.arms = ml_collections.ConfigDict()
  return c


def sweep(arg: str = "") -> list[dict[str, int]]:
  """Three seeds of the study (python -m phi_jax.sweep --config=configs/quickstart.py[:ARG])."""
  del arg  # every variant sweeps the same seeds
  return [{"seed": seed} for seed in (0, 1, 2)]
