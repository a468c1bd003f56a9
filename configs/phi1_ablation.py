"""phi-1's data ablation (Figure 2.1 of arXiv 2306.11644), tiny coder scale: experiments/phi1/.

The paper trains the same model for the same number of tokens on The Stack+ (unfiltered) and on
CodeTextbook (classifier-filtered code + GPT-3.5 textbooks), fine-tunes on CodeExercises, and
reports HumanEval pass@1. Here the model, tokenizer approach, exercise generator, prompt format
and evaluation are the tiny coder's (configs/quickstart.py, experiments/tinycoder/RESULTS.md), and
the three pretraining arms are phi-1's:

  unfiltered  this Python's standard library (`code_corpus`, train split; its validation split is
              the held-out code every model is scored on)
  filtered    those files -> MinHash dedup -> quality classifier (a random forest on an
              embedder's features, fit to heuristic STAND-IN labels) -> decontamination
  textbook    filtered + procedural textbook sections (`curation.mixture`, train-split families
              only; 20% of the bytes), a STAND-IN for GPT-3.5's textbooks

each pretrained, then fine-tuned on the tiny coder's exercises + binding drills (procedural
VERSION 2, train split only), for 3 seeds. Stages (`stage=`), all reading ROOT (`root=`, made
by experiments/phi1/prepare_data.py):

  embedder  one plain run on the stdlib (its own tokenizer): the quality classifier's features
  pretrain  a study (`phi_jax.study.arms`) of the three arms: same model, shared tokenizer
            ROOT/tokenizer/sp.model, same PRETRAIN_STEPS x 16 x 256 tokens per arm; the study
            measures each base model's pass@1 (held-out exercises: unseen variants, held-out
            families; hand-written problems). `sweep()`: the study for seeds 0, 1, 2
  finetune  a plain run from one base model (`init_from`): the exercises in prompt_completion
            format (loss on the body + EOS), FINETUNE_STEPS x 16 x 256 tokens. `sweep()`: every
            arm x seed, init_from = ROOT/pretrain/seed=S/ARM

    bash experiments/phi1/run.sh                  # everything, resumable (see RESULTS.md)
    python -m phi_jax.sweep --config=configs/phi1_ablation.py:stage=pretrain,root=ROOT \\
        --workdir=ROOT/pretrain --parallel=2
    python -m phi_jax.sweep --config=configs/phi1_ablation.py:stage=finetune,root=ROOT \\
        --workdir=ROOT/finetune --parallel=2

`tiny`: the smoke scale (2 layers x d_model 64, 64-token rows, a few steps, 2 seeds, 40 stdlib
files); `SMOKE=1 bash experiments/phi1/run.sh` runs the whole chain with it.

Scale (experiments/phi1/RESULTS.md has the results and wall times): the tiny coder's block and
step forms (configs/quickstart.py: d_model 96, 4 layers, 0.55M parameters, tied embeddings,
1,024-token SentencePiece; 'auto' attention in blocks of 64, the loss in chunks of 64
positions); 500 pretraining + 700 fine-tuning steps of 16 x 256 tokens (2.05M + 2.87M tokens
per arm and seed), the tiny coder's schedule (AdamW, peak 1e-2, 5% warmup, linear decay to 10%)
for both stages; the fine-tune's exercises are the quickstart's 30k exercises + 15k drills. The
2026-12-02 run (300 + 400 steps, peak 5e-3, 20k + 10k) is kept in RESULTS.md.
"""

from __future__ import annotations

import os
from typing import Any

import ml_collections

from phi_jax.config_args import parse_arg
from phi_jax.train import config_base

ARMS = ("unfiltered", "filtered", "textbook")
STAGES = ("embedder", "pretrain", "finetune")
SEEDS = (0, 1, 2)
TINY_SEEDS = (0, 1)
STEPS = {"embedder": 100, "pretrain": 500, "finetune": 700}
TINY_STEPS = {"embedder": 4, "pretrain": 8, "finetune": 6}
# The fine-tune's exercises (the tiny coder's: exercises + binding drills, train split) and the
# textbook sections' share of the textbook arm's bytes (experiments/phi1/prepare_data.py).
EXERCISES = dict(n_exercises=30_000, n_drills=15_000, seed=0)
TINY_EXERCISES = dict(n_exercises=200, n_drills=50, seed=0)
TEXTBOOK_FRACTION = 0.2
CODE_VALIDATION_FRACTION = 0.05  # the stdlib files held out from every arm (and the filter)
TINY_MAX_FILES = 40


def paths(root: str) -> dict[str, str]:
  """Where experiments/phi1/prepare_data.py writes what the runs read (absolute)."""
  root = os.path.abspath(root)
  return {
      "root": root,
      "tfds": f"{root}/tfds",                               # code_corpus and the corpora
      "embedder": f"{root}/embedder",                       # the classifier's feature model
      "stdlib_train": f"{root}/data/stdlib_train",          # code_corpus's train split, JSONL
      "filtered": f"{root}/data/filtered",                  # the filter pipeline
      "filtered_dataset": f"{root}/data/filtered/dataset",  # ... its records (filtered arm)
      "textbooks": f"{root}/data/textbooks",                # the textbook-sections pipeline
      "code_textbook": f"{root}/data/code_textbook",        # filtered + textbooks (textbook arm)
      "exercises": f"{root}/data/exercises",                # the fine-tune's exercise pipeline
      "exercises_dataset": f"{root}/data/exercises/dataset",
      "heldout": f"{root}/data/heldout",                    # the evaluation exercises, for decontam
      "tokenizer": f"{root}/tokenizer/sp.model",            # one tokenizer for every run
      "pretrain": f"{root}/pretrain",                       # the pretraining sweep (studies)
      "finetune": f"{root}/finetune",                       # the fine-tuning sweep
  }


def _variant(arg: str) -> dict[str, Any]:
  v = parse_arg(arg, {"stage": "pretrain", "root": "workdirs/phi1_ablation", "tiny": False})
  if v["stage"] not in STAGES:
    raise ValueError(f"stage={v['stage']!r}: choose one of {STAGES}")
  return v


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  """The config of one stage (`stage=embedder|pretrain|finetune`, `root=ROOT`, `tiny`)."""
  v = _variant(arg)
  stage, tiny, p = v["stage"], bool(v["tiny"]), paths(v["root"])
  c = config_base.get_config()
  c.seed = 0
  c.total_steps = (TINY_STEPS if tiny else STEPS)[stage]
  c.log_every, c.log_every_fraction = 0, 1 / 20
  c.eval_every, c.eval_every_fraction = 0, 1.0                 # once, at the end
  c.checkpoint_every, c.checkpoint_every_fraction = 0, 1 / 2
  c.keep_checkpoints = 1
  c.grad_accum = 1
  c.report = False
  c.mesh.update(data=-1, fsdp=1, tensor=1)

  # The tiny coder's block (configs/quickstart.py): phi-1's parallel attention + MLP, partial
  # rotary, tied embeddings; vocab -1 = the tokenizer's.
  shape = dict(d_model=96, num_layers=4, num_heads=3, mlp_dim=384, rotary_dim=16)
  if tiny:
    shape = dict(d_model=64, num_layers=2, num_heads=2, mlp_dim=128, rotary_dim=8)
  if stage == "finetune":  # the architecture is init_from's
    c.model = config_base.model("init", dtype="float32", param_dtype="float32")
  else:
    c.model = config_base.model(
        "phi-1", vocab_size=-1, max_seq_len=512, dtype="float32", param_dtype="float32",
        attn_dropout=0.0, resid_dropout=0.0, embd_dropout=0.0, remat_policy="none",
        tie_embeddings=True, lm_head_bias=False, attention_impl="auto", attention_block=64,
        **shape)
  c.loss_chunk_len = 64  # the quickstart's step forms (BENCHMARKS.md, blockwise attention)

  c.data.update(dataset="code_corpus", source_dir="", max_files=TINY_MAX_FILES if tiny else 0,
                validation_fraction=CODE_VALIDATION_FRACTION, data_dir=p["tfds"],
                tokenizer=p["tokenizer"], tokenizer_vocab_size=512 if tiny else 1024,
                tokenizer_train_bytes=1_000_000 if tiny else 4_000_000,
                seq_len=64 if tiny else 256, batch_size=8 if tiny else 16,
                eval_batches=2 if tiny else 8, worker_count=0, format="lm")
  if stage == "embedder":
    c.data.tokenizer = ""  # its own, trained on the stdlib in its workdir (before the shared one)
  if stage == "finetune":
    c.data.update(dataset="synthetic_exercises", source_dir=p["exercises_dataset"],
                  data_dir=f"{p['exercises_dataset']}/tfds", max_files=0,
                  validation_fraction=0.02, format="prompt_completion")

  # The tiny coder's schedule (configs/quickstart.py), for pretraining and the fine-tune alike.
  c.optimizer.update(learning_rate=1e-2, schedule="linear", warmup_steps=0, warmup_fraction=0.05,
                     decay_steps=0, end_lr_fraction=0.1, b1=0.9, b2=0.95, eps=1e-8,
                     weight_decay=0.1, grad_clip_norm=1.0)

  # What is measured (the study's measure, for the base models in the studies and for the
  # fine-tuned runs in experiments/phi1/evaluate.py): greedy pass@1 on 100 unseen variants and
  # 100 held-out-family exercises (eval seed 2024) and the hand-written problems.
  c.study.update(n_validation=4 if tiny else 100, n_test=4 if tiny else 100, handwritten=True,
                 humaneval_limit=0, eval_seed=2024, max_new_tokens=16 if tiny else 128,
                 batch_size=8 if tiny else 50, decontam=("humaneval", "handwritten"))

  if stage == "pretrain":
    c.arms = ml_collections.ConfigDict(dict(
        unfiltered=dict(data=dict(dataset="code_corpus")),
        filtered=dict(data=dict(dataset="filtered_corpus", source_dir=p["filtered_dataset"],
                                validation_fraction=0.02, max_files=0)),
        textbook=dict(data=dict(dataset="filtered_corpus", source_dir=p["code_textbook"],
                                validation_fraction=0.02, max_files=0)),
    ))
  return c


def sweep(arg: str = "") -> list[dict[str, Any]]:
  """pretrain: the study for each seed; finetune: every arm x seed from its base model;
  embedder: one run (python -m phi_jax.sweep --config=configs/phi1_ablation.py:ARG)."""
  v = _variant(arg)
  seeds = TINY_SEEDS if v["tiny"] else SEEDS
  if v["stage"] == "pretrain":
    return [{"seed": seed} for seed in seeds]
  if v["stage"] == "finetune":
    pretrain = paths(v["root"])["pretrain"]
    return [{"init_from": f"{pretrain}/seed={seed}/{arm}", "seed": seed}
            for arm in ARMS for seed in seeds]
  return [{"seed": 0}]
