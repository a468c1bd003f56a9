"""phi-1: "Textbooks Are All You Need" (Gunasekar et al., arXiv 2306.11644).

Two stages, two sizes:

    stage=pretrain  phi-1-base on CodeTextbook: AdamW, peak lr 1e-3, 750 warmup steps then linear
                    decay to 0, weight decay 0.1, dropout 0.1 (attention and residual), 36k steps of
                    1024 x 2048 tokens (2,097,152 tokens per step; 75.5B tokens scheduled, the
                    paper keeps the 24k checkpoint, ~50B tokens).
    stage=finetune  phi-1 on CodeExercises: batch 256 x 2048 (524,288 tokens per step), lr 1e-4,
                    50 warmup steps, weight decay 0.01, 6k steps, a checkpoint every 1k (the paper
                    takes the best of them).
    size=1.3b       preset 'phi-1' (24 layers, d_model 2048, 1.42B parameters with embeddings).
    size=350m       preset 'phi-1-small' (20 layers, d_model 1024; never released).

Precision: the paper trained in fp16; here compute is bf16 with fp32 master weights and fp32
optimizer state (no loss scaling needed). Not published by phi-1 and chosen here: Adam betas
(0.9, 0.98) and eps 1e-7 (what the same authors published for phi-1.5, same architecture), gradient
clipping at global norm 1.0, and the linear decay ending at 0.

Tokens per optimizer step = data.batch_size x data.seq_len, whatever grad_accum is: grad_accum only
splits the global batch into microbatches (per-device microbatch = batch_size / (grad_accum x
data x fsdp) rows). The defaults (8 rows of 2048 per device per microbatch on 8 devices for 1.3b,
16 for 350m) fit an 80 GiB GPU: `python -m phi_jax.aot --config=configs/phi1.py:size=1.3b --devices=8
--device_memory_gb=80` measured here 12.0 GiB per device for 1.3b pretraining (2.0 GiB of
params + Adam state, 10.0 GiB of temporaries as estimated by XLA:CPU, compiled with the layer scan
rolled, model.scan_unroll=1, as on a GPU). loss_chunk_len=512 computes the LM head and loss in
chunks of 512 positions; with the full logits (loss_chunk_len=0) it was 19.2 GiB (17.2 GiB of
temporaries, mostly the [8, 2048, 51200] float32 logits and their gradient), and with
attention_impl='xla' as well 49.3 GiB (the [8, 32, 2048, 2048] attention scores and their dropout
mask); with 'xla' and full logits, 52.2 GiB for the 1.3b finetune and 46.2 GiB for 350m.
batch_size must stay divisible by grad_accum x data x fsdp devices: on 64 devices use
--config.grad_accum=2, say.

Full scale (the data is not shipped: point data.source_dir at a folder of .py files, e.g. the
filtered Stack + synthetic textbooks; data.tokenizer at the CodeGen tokenizer.json the paper used, or
leave it '' to train a 51,200-token SentencePiece BPE on the data):

    python -m phi_jax.main --config=configs/phi1.py:size=1.3b --workdir=workdirs/phi1_base \\
        --config.data.source_dir=/data/code_textbook --config.data.tokenizer=/tok/tokenizer.json
    python -m phi_jax.main --config=configs/phi1.py:size=1.3b,stage=finetune \\
        --workdir=workdirs/phi1_ft --config.data.source_dir=/data/code_exercises ...

Expected at full scale (paper): HumanEval pass@1 29% for phi-1-base (1.3B), 50.6% for phi-1 after
the finetune (MBPP 55.5%); phi-1-small (350M) 45% after its finetune. The paper publishes no losses.
stage=finetune is the finetune recipe: point `--config.init_from=` at the base run (any folder
`phi_jax.convert.load.load_model` reads) to fine-tune it, else it trains from random init. Known
gap: the code_corpus pipeline trains on every token (the paper's loss on exercise completions only
needs `--config.data.format=prompt_completion` on an exercises dataset).

Tiny (this 2-core CPU, 1-2 minutes; stdlib .py files, a 1,024-token SentencePiece, a 2-layer
d_model 128 phi-1-shaped model, the paper's optimizer numbers and dropout, steps scaled down):

    python -m phi_jax.main --config=configs/phi1.py:tiny --workdir=workdirs/phi1_tiny

Measured here (seed 0, 1 CPU device, 2m07s including the dataset build, 1m12s after): train loss
6.46 at step 10 -> 5.29 at step 80, held-out 5.34 (ln 1024 = 6.93 at init); bitwise the same on a
rerun. `:tiny,stage=finetune` (lr 1e-4, from scratch, 2m00s): 6.85 at step 10 -> 6.49, held-out 6.51.

Sweep (the learning rate of the tiny variant; see `sweep()` below):

    python -m phi_jax.sweep --config=configs/phi1.py:tiny --workdir=workdirs/phi1_lr_sweep \
        --parallel=2

Measured here (3m18s with --parallel=2): train / held-out loss at step 80 for lr 3e-4: 6.00 / 5.99,
1e-3: 5.29 / 5.34 (identical to the single run above), 3e-3: 4.83 / 4.98; still falling at 3e-3.
"""

from __future__ import annotations

from typing import Any

import ml_collections

from phi_jax.config_args import parse_arg
from phi_jax.train import config_base

SIZES = {"1.3b": "phi-1", "350m": "phi-1-small"}
STAGES = ("pretrain", "finetune")
# grad_accum per size and stage: 8 rows of 2048 tokens per device per microbatch on 8 devices.
_GRAD_ACCUM = {("1.3b", "pretrain"): 16, ("1.3b", "finetune"): 4,
               ("350m", "pretrain"): 8, ("350m", "finetune"): 2}


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  """The phi-1 config for `arg` (see the module docstring): size=1.3b|350m, stage, tiny."""
  v = parse_arg(arg, {"size": "1.3b", "stage": "pretrain", "tiny": False})
  if v["size"] not in SIZES:
    raise ValueError(f"size={v['size']!r}: choose one of {sorted(SIZES)}")
  if v["stage"] not in STAGES:
    raise ValueError(f"stage={v['stage']!r}: choose one of {STAGES}")
  finetune = v["stage"] == "finetune"

  c = config_base.get_config()
  c.seed = 0
  c.total_steps = 6_000 if finetune else 36_000
  c.log_every = 50
  c.eval_every = 1_000
  # Pretraining keeps 24k..36k (the paper uses 24k); the finetune keeps every 1k (best of them).
  c.checkpoint_every = 1_000 if finetune else 2_000
  c.keep_checkpoints = 6 if finetune else 7
  c.grad_accum = _GRAD_ACCUM[(v["size"], v["stage"])]
  c.report = True
  c.mesh.update(data=1, fsdp=-1, tensor=1)
  # The LM head + loss over chunks of 512 positions (train/chunked_loss.py): one chunk's float32
  # logits at a time instead of all [rows, seq_len, vocab] and their gradient.
  c.loss_chunk_len = 512

  # Architecture from the preset; bf16 compute, fp32 master weights; dropout 0.1 attn + residual.
  # Attention 'auto': blockwise O(T) attention at 2048 tokens on CPU and GPU (cuDNN has no
  # attention dropout, so the GPU runs blockwise too), splash on TPU; plain XLA below 1k tokens.
  c.model = config_base.model(
      SIZES[v["size"]], dtype="bfloat16", param_dtype="float32", attn_dropout=0.1,
      resid_dropout=0.1, embd_dropout=0.0, remat_policy="full", attention_impl="auto")

  c.data.update(
      dataset="code_corpus",
      # Set on the command line: a folder of .py files (CodeTextbook / CodeExercises).
      source_dir="/path/to/CodeExercises" if finetune else "/path/to/CodeTextbook",
      max_files=0, validation_fraction=0.01, data_dir="",
      tokenizer="",  # the CodeGen tokenizer.json / .model path; '' trains a SentencePiece BPE
      tokenizer_vocab_size=51200, tokenizer_train_bytes=200_000_000,
      seq_len=2048, batch_size=256 if finetune else 1024, eval_batches=8, worker_count=0)

  # The warmup as a fraction of the run: the paper's 750 of 36k (pretraining) and 50 of 6k
  # (finetune) steps, which a shortened run (--config.total_steps=N) scales with it.
  c.optimizer.update(
      learning_rate=1e-4 if finetune else 1e-3, schedule="linear", warmup_steps=0,
      warmup_fraction=50 / 6_000 if finetune else 750 / 36_000, decay_steps=0,
      end_lr_fraction=0.0, b1=0.9, b2=0.98, eps=1e-7, weight_decay=0.01 if finetune else 0.1,
      grad_clip_norm=1.0)

  # HumanEval pass@1 (greedy) on the 164 problems at every checkpoint, as the paper reports it.
  c.evals.update(every=c.checkpoint_every, tasks=("humaneval",))

  c.sample.update(
      prompts=("def fibonacci(n):\n",
               "def is_prime(n):\n    \"\"\"Return True if n is prime.\"\"\"\n",
               "import os\n\n\ndef list_python_files(path):\n"),
      max_new_tokens=128, temperature=0.0)

  if v["tiny"]:
    # Same recipe shape at CPU scale: 80 steps of 16 x 128 tokens (2 microbatches of 8), warmup
    # 8 and 2 steps (750/36k and 50/6k of the run kept at >= 2 steps, as fractions); the paper's
    # lr, decay and dropout.
    c.total_steps = 80
    c.log_every = 10
    c.eval_every = 40
    c.checkpoint_every = 40
    c.keep_checkpoints = 2
    c.grad_accum = 2
    c.loss_chunk_len = 0  # full logits (a 1,024-token vocabulary)
    c.optimizer.warmup_fraction = 2 / 80 if finetune else 8 / 80
    c.model.update(vocab_size=-1, d_model=128, num_layers=2, num_heads=4, mlp_dim=512,
                   rotary_dim=16, max_seq_len=512, dtype="float32", remat_policy="none")
    c.data.update(source_dir="", max_files=60, validation_fraction=0.05,
                  tokenizer_vocab_size=1024, tokenizer_train_bytes=2_000_000, seq_len=128,
                  batch_size=16, eval_batches=4)
    c.sample.max_new_tokens = 24
    # HumanEval's first 16 at the end of the run
    c.evals.update(every=0, every_fraction=1.0, limit=16, max_new_tokens=128)
  return c


def sweep(arg: str = "") -> list[dict[str, Any]]:
  """Runs for `python -m phi_jax.sweep`: the peak learning rate around the paper's 1e-3."""
  del arg  # the same grid for every variant
  return [{"optimizer.learning_rate": lr} for lr in (3e-4, 1e-3, 3e-3)]
