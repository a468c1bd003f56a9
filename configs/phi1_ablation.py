"""phi-1's data ablation (Figure 2.1 of arXiv 2306.11644) at CPU scale: experiments/phi1/.

The paper trains the same model for the same number of tokens on The Stack+ (unfiltered), on
CodeTextbook (classifier-filtered code + GPT-3.5 textbooks), and fine-tunes on CodeExercises,
then reports HumanEval pass@1. Here every run shares one tiny phi-1-shaped model, one tokenizer
and one token budget; only the data differs (experiments/phi1/run.sh gives every command):

    stage=pretrain  a 4-layer d_model 128 phi-1-shaped model (parallel block, partial rotary), a
                    2,048-token SentencePiece, 300 steps of 8 x 256 tokens (2,048 tokens per
                    step: 614,400 tokens). data.dataset / data.source_dir / data.data_dir / data.tokenizer are set
                    by run.sh per arm: code_corpus (the stdlib, unfiltered), filtered_corpus (the
                    classifier-filtered subset, or that subset + procedural textbooks).
    stage=finetune  init_from a pretraining workdir (architecture, weights and tokenizer come
                    from it); procedural train-split exercises (`synthetic_exercises`),
                    data.format='prompt_completion' (loss on the function body and EOS only),
                    120 steps of 8 x 256 tokens.
    tiny            test scale: 2 layers x 64, 512-token vocab, a few steps.

    python -m phi_jax.main --config=configs/phi1_ablation.py:stage=pretrain \\
        --workdir=workdirs/phi1_ablation/pretrain_unfiltered --config.data.data_dir=...
    python -m phi_jax.main --config=configs/phi1_ablation.py:stage=finetune \\
        --config.init_from=workdirs/phi1_ablation/pretrain_unfiltered \\
        --config.data.source_dir=workdirs/phi1_ablation/data/exercises/dataset ...

Scale choices (not the paper's; see experiments/phi1/RESULTS.md): AdamW with linear warmup and
linear decay like phi-1, but the peak learning rates of this repo's tiny runs (3e-3 pretraining,
as configs/quickstart.py and the configs/phi1.py:tiny sweep, where 3e-3 beat 1e-3; 1e-3
fine-tuning), no dropout (every run sees < 1 epoch of its data), fp32 on CPU.
"""

from __future__ import annotations

import ml_collections

from phi_jax.config_args import parse_arg
from phi_jax.train import config_base

STAGES = ("pretrain", "finetune")


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  v = parse_arg(arg, {"stage": "pretrain", "tiny": False})
  if v["stage"] not in STAGES:
    raise ValueError(f"stage={v['stage']!r}: choose one of {STAGES}")
  finetune = v["stage"] == "finetune"

  c = config_base.get_config()
  c.seed = 0
  c.total_steps = 120 if finetune else 300
  c.log_every = 25
  c.eval_every = c.total_steps  # once, at the end (the evaluation is experiments/phi1/evaluate.py)
  c.checkpoint_every = 50 if finetune else 100
  c.keep_checkpoints = 1
  c.grad_accum = 1
  c.report = False
  c.mesh.update(data=-1, fsdp=1, tensor=1)
  c.init_from = ""

  if finetune:  # the architecture is init_from's; only training-time fields may be set
    c.model = config_base.model("init", dtype="float32", param_dtype="float32")
  else:
    c.model = config_base.model(
        "phi-1", vocab_size=-1, d_model=128, num_layers=4, num_heads=4, mlp_dim=512,
        rotary_dim=16, max_seq_len=512, dtype="float32", param_dtype="float32",
        attn_dropout=0.0, resid_dropout=0.0, embd_dropout=0.0, remat_policy="none")

  c.data.update(
      dataset="synthetic_exercises" if finetune else "code_corpus", source_dir="", max_files=0,
      validation_fraction=0.02 if finetune else 0.05, data_dir="", tokenizer="",
      tokenizer_vocab_size=2048, tokenizer_train_bytes=4_000_000, seq_len=256, batch_size=8,
      eval_batches=8, worker_count=0, format="prompt_completion" if finetune else "lm")

  # The warmup as a fraction of the run: 15 of 120 and 40 of 300 steps (experiments/phi1/run.sh
  # sets total_steps to those), scaled with a shortened run.
  c.optimizer.update(
      learning_rate=1e-3 if finetune else 3e-3, schedule="linear",
      warmup_steps=0, warmup_fraction=15 / 120 if finetune else 40 / 300, decay_steps=0,
      end_lr_fraction=0.0 if finetune else 0.1, b1=0.9, b2=0.95, eps=1e-8,
      weight_decay=0.01 if finetune else 0.1, grad_clip_norm=1.0)

  c.sample.update(
      prompts=('def count_even(nums: list[int]) -> int:\n    """Return how many numbers in nums '
               'are even."""\n',), max_new_tokens=48, temperature=0.0)

  if v["tiny"]:
    c.total_steps = 4
    c.log_every = 2
    c.eval_every = 4
    c.checkpoint_every = 4
    c.optimizer.warmup_fraction = 1 / 4
    if not finetune:
      c.model.update(d_model=64, num_layers=2, num_heads=2, mlp_dim=128, rotary_dim=8)
    c.data.update(max_files=30, tokenizer_vocab_size=512, seq_len=128, batch_size=4,
                  eval_batches=2)
    c.sample.max_new_tokens = 8
  return c
