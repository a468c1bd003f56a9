"""phi-3 pretraining: "Phi-3 Technical Report" (Abdin et al., arXiv 2404.14219).

Sizes (`:size=mini|small|medium`, presets from phi_jax/models/presets.py):
    mini    'phi-3-mini-4k'   3.82B, 32 layers, d_model 3072, SwiGLU, RMSNorm, 4k context,
            sliding window 2047; 3.3T tokens.
    small   'phi-3-small-8k'  7.39B, GQA 32/8, GEGELU, alternating dense / block-sparse
            attention, muP multipliers, tied head, 8k context; 4.8T tokens.
    medium  'phi-3-medium-4k' 13.96B, 40 layers, d_model 5120, GQA 40/10; 4.8T tokens.

What the report publishes: bf16 training, the token counts above, two pretraining phases (heavily
filtered web, then filtered web + synthetic data), then SFT and DPO. It publishes NO optimizer
settings, batch size or schedule. The defaults chosen here are Llama 2's published pretraining
recipe (Touvron et al., arXiv 2307.09288, section 2.2), a documented recipe for this block and
these sizes: AdamW, betas (0.9, 0.95), eps 1e-5, weight decay 0.1, gradient clipping 1.0, cosine
decay to 10% of the peak after 2,000 warmup steps, peak lr 3e-4 (Llama 2's value for 7B and 13B),
~4M tokens per step: 1024 x 4096 for mini and medium, 512 x 8192 for small (4,194,304 tokens per step
either way), so total_steps = 3.3T / 4,194,304 = 786,782 (mini) and 4.8T / 4,194,304 = 1,144,410
(small, medium). One phase here: the phase-2 data mix is a second run on other data. Precision:
bf16 compute with fp32 master weights and optimizer state; full remat of each block.

grad_accum splits the global batch into microbatches (rows per device per microbatch on 8 devices:
mini 4, small 1, medium 2); tokens per optimizer step = batch_size x seq_len regardless. batch_size
must stay divisible by grad_accum x data x fsdp devices. Check what fits with
`python -m phi_jax.aot --config=configs/phi3.py:size=mini --devices=8 --device_memory_gb=80`;
measured here on 8 simulated devices (temporaries estimated by XLA:CPU) before attention_impl
'auto' (with 'xla', not re-measured since), per device: mini 47.3 GiB,
small 59.8 GiB (98.7 GiB with 2 rows per device: does not fit 80), medium 60.8 GiB.

Full scale (no data or tokenizer ships: set data.source_dir to a folder of text files and
data.tokenizer to the Llama-2 tokenizer.model (+ phi-3 chat tokens, 32064) for mini / medium, or a
tokenizer.json of cl100k_base (100352) for small):

    python -m phi_jax.main --config=configs/phi3.py:size=mini --workdir=workdirs/phi3_mini \\
        --config.data.source_dir=/data/web_phase1 --config.data.tokenizer=/tok/tokenizer.model

Expected at full scale (report, after SFT + DPO, which this config does not do): MMLU 68.8 / MT-bench
8.38 (mini), 75 / 8.7 (small), 78 / 8.9 (medium). The report publishes no losses.

Tiny (this 2-core CPU, 1-1.5 minutes; the chosen size's block at 2 layers x d_model 128, stdlib
.py files, a 1,024-token SentencePiece, the optimizer above with its steps scaled down):

    python -m phi_jax.main --config=configs/phi3.py:tiny --workdir=workdirs/phi3_tiny
    python -m phi_jax.main --config=configs/phi3.py:size=small,tiny --workdir=workdirs/phi3s_tiny

Measured here (seed 0, 1 CPU device, about 1 minute each with the dataset built), train loss at
step 10 -> step 80, held-out at 80: mini 6.81 -> 6.02, 6.00; medium 6.84 -> 6.05, 6.02; small
6.92 -> 6.80, 6.80. small barely moves at 3e-4 because of its muP multipliers (logits / 8,
embeddings x 10): with --config.optimizer.learning_rate=3e-3 it reaches 5.89 (held-out 5.85).
"""

from __future__ import annotations

import ml_collections

from phi_jax.config_args import parse_arg
from phi_jax.train import config_base

SIZES = {"mini": "phi-3-mini-4k", "small": "phi-3-small-8k", "medium": "phi-3-medium-4k"}
TOKENS = {"mini": 3_300_000_000_000, "small": 4_800_000_000_000, "medium": 4_800_000_000_000}
SEQ = {"mini": 4096, "small": 8192, "medium": 4096}
TOKENS_PER_STEP = 4_194_304  # Llama 2: 4M tokens per step
GRAD_ACCUM = {"mini": 32, "small": 64, "medium": 64}
# Tiny shapes keep each size's head grouping (q heads / kv heads).
TINY_KV_HEADS = {"mini": 4, "small": 1, "medium": 1}


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  """The phi-3 pretraining config for `arg`: size=mini|small|medium, tiny."""
  v = parse_arg(arg, {"size": "mini", "tiny": False})
  size = v["size"]
  if size not in SIZES:
    raise ValueError(f"size={size!r}: choose one of {sorted(SIZES)}")
  seq = SEQ[size]
  batch = TOKENS_PER_STEP // seq

  c = config_base.get_config()
  c.seed = 0
  c.total_steps = -(-TOKENS[size] // TOKENS_PER_STEP)
  c.log_every = 100
  c.eval_every = 5_000
  c.checkpoint_every = 5_000
  c.keep_checkpoints = 3
  c.grad_accum = GRAD_ACCUM[size]
  c.report = True
  c.mesh.update(data=1, fsdp=-1, tensor=1)
  # The LM head + loss over chunks of 512 positions (train/chunked_loss.py): one chunk's float32
  # logits at a time instead of all [rows, seq_len, vocab] and their gradient.
  c.loss_chunk_len = 512

  # attention 'auto': cuDNN on GPU, splash on TPU, blockwise on CPU (block-sparse layers of
  # phi-3-small always blockwise); XLA below 1k tokens
  c.model = config_base.model(SIZES[size], dtype="bfloat16", param_dtype="float32",
                              remat_policy="full", attention_impl="auto")

  c.data.update(
      dataset="text_corpus",
      source_dir="/path/to/phi3_pretraining_text",  # set on the command line
      max_files=0, validation_fraction=0.01, data_dir="",
      tokenizer="",  # Llama-2 tokenizer.model (mini, medium) / cl100k tokenizer.json (small)
      tokenizer_vocab_size=32000, tokenizer_train_bytes=200_000_000,
      seq_len=seq, batch_size=batch, eval_batches=8, worker_count=0)

  # Not from the phi-3 report (it publishes none): Llama 2's recipe, arXiv 2307.09288; its 2,000
  # warmup steps as a fraction of this run (a shortened run scales them).
  c.optimizer.update(
      learning_rate=3e-4, schedule="cosine", warmup_steps=0,
      warmup_fraction=2_000 / c.total_steps, decay_steps=0, end_lr_fraction=0.1, b1=0.9,
      b2=0.95, eps=1e-5, weight_decay=0.1, grad_clip_norm=1.0)

  # Task evaluations during training (phi_jax.evals.periodic): e.g. every=100,
  # tasks=("humaneval", "mc:piqa:/data/piqa.jsonl"), limit=20. Off here.
  c.sample.update(prompts=("The capital of France is", "def binary_search(items, target):\n"),
                  max_new_tokens=128, temperature=0.0)

  if v["tiny"]:
    c.total_steps = 80
    c.log_every = 10
    c.eval_every = 40
    c.checkpoint_every = 40
    c.keep_checkpoints = 2
    c.grad_accum = 2
    c.loss_chunk_len = 0  # full logits (a 1,024-token vocabulary)
    c.optimizer.warmup_fraction = 8 / 80
    c.model.update(vocab_size=-1, d_model=128, num_layers=2, num_heads=4,
                   num_kv_heads=TINY_KV_HEADS[size], mlp_dim=384, max_seq_len=512,
                   dtype="float32", remat_policy="none", bos_id=None, eos_id=None, pad_id=None)
    if size == "small":  # muP attention scale 1/head_dim; block-sparse pattern at 16-token blocks
      c.model.update(attn_scale=1.0 / 32, sparse_block_size=16, sparse_local_blocks=2,
                     sparse_vert_stride=2)
    else:  # a window shorter than the rows, so it matters
      c.model.sliding_window = 64
    c.data.update(dataset="code_corpus", source_dir="", max_files=60, validation_fraction=0.05,
                  tokenizer_vocab_size=1024, tokenizer_train_bytes=2_000_000, seq_len=128,
                  batch_size=16, eval_batches=4)
    c.sample.update(prompts=("def binary_search(items, target):\n",), max_new_tokens=24)
  return c
