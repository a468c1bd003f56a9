"""Quickstart: a ~2M-parameter phi-1-style code model trained on this machine's Python stdlib.

The main job of the README, for a fresh 2-core CPU machine (3m24s measured on an idle one):
builds the standard-library code dataset (TFDS, array_record), trains a SentencePiece tokenizer,
trains a tiny phi-1-shaped model (parallel block, partial rotary), evaluates held-out loss on files it
never saw, samples completions of a few Python prompts, and writes WORKDIR/report.md with loss.png.

    python -m phi_jax.main --config=configs/quickstart.py --workdir=workdirs/quickstart

Expected: the train loss falls from ~8.3 (ln 4096) to ~3 within the run, held-out loss close to it;
samples are Python-looking but not yet meaningful at this scale.
Durations are fractions of the run (warmup 10%, a log every 1/30, held-out loss and a checkpoint
every third), so a shorter run is one flag: `--config.total_steps=5`.
Variants: `:smoke` (a 1-minute version for tests).
"""

import ml_collections

from phi_jax.train import config_base


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  c = config_base.get_config()
  c.seed = 0
  c.total_steps = 300
  c.log_every, c.log_every_fraction = 0, 1 / 30                # every 10 of 300 steps
  c.eval_every, c.eval_every_fraction = 0, 1 / 3               # every 100
  c.checkpoint_every, c.checkpoint_every_fraction = 0, 1 / 3  # every 100
  c.keep_checkpoints = 2
  c.grad_accum = 1
  c.report = True  # report.md, loss.png and samples at the end
  c.mesh.update(data=-1, fsdp=1, tensor=1)

  # phi-1's block at toy size; vocab_size -1 = the tokenizer's.
  c.model = config_base.model(
      "phi-1", vocab_size=-1, d_model=128, num_layers=4, num_heads=4, mlp_dim=512, rotary_dim=16,
      max_seq_len=512, dtype="float32", param_dtype="float32")

  c.data.update(dataset="code_corpus", source_dir="", max_files=0, validation_fraction=0.02,
                data_dir="", tokenizer="", tokenizer_vocab_size=4096,
                tokenizer_train_bytes=4_000_000, seq_len=128, batch_size=16, eval_batches=8,
                worker_count=0)

  # phi-1's recipe shape (AdamW, warmup + linear decay, wd 0.1) at toy scale; warmup 30 of 300.
  c.optimizer.update(learning_rate=3e-3, schedule="linear", warmup_steps=0, warmup_fraction=0.1,
                     decay_steps=0, end_lr_fraction=0.1, b1=0.9, b2=0.95, eps=1e-8,
                     weight_decay=0.1, grad_clip_norm=1.0)

  # Task evaluations during training (phi_jax.evals.periodic): e.g. every=100,
  # tasks=("humaneval", "mc:piqa:/data/piqa.jsonl"), limit=20. Off here.
  c.sample.update(prompts=("def fibonacci(n):\n", "import os\n\n\ndef list_python_files(path):\n",
                           "class Stack:\n    def __init__(self):\n"),
                  max_new_tokens=48, temperature=0.0)

  if arg == "smoke":
    c.total_steps = 12
    c.log_every_fraction = 1 / 3         # every 4 steps
    c.eval_every_fraction = 1 / 2        # every 6
    c.checkpoint_every_fraction = 1 / 2  # every 6
    c.optimizer.warmup_fraction = 1 / 6  # 2 steps
    c.model.update(d_model=64, num_layers=2, mlp_dim=128, rotary_dim=8)
    c.data.update(max_files=40, tokenizer_vocab_size=512, seq_len=64, batch_size=8, eval_batches=2)
    c.sample.max_new_tokens = 8
  elif arg:
    raise ValueError(f"Unknown quickstart variant {arg!r}; use '' or 'smoke'")
  return c
