"""phi-1.5: "Textbooks Are All You Need II: phi-1.5 technical report" (Li et al., arXiv 2309.05463).

phi-1's architecture (preset 'phi-1.5': 24 layers, d_model 2048, 1.42B parameters) trained from
scratch on ~30B tokens (20B of synthetic common-sense "textbooks" + phi-1's 7B of code) for 150B
tokens seen. The recipe as published: AdamW with a constant learning rate 2e-4 and no warmup, weight
decay 0.1, betas (0.9, 0.98), eps 1e-7, batch 2048 x 2048 = 4,194,304 tokens per step, so
total_steps = ceil(150e9 / 4,194,304) = 35,763. fp16 in the paper; here bf16 compute with fp32
master weights and optimizer state. Not published, chosen here: gradient clipping at global norm
1.0, no dropout (the released config.json has 0.0 everywhere).

Tokens per optimizer step = data.batch_size x data.seq_len; grad_accum=32 only splits it into
microbatches of 8 rows of 2048 per device on 8 devices (batch_size must stay divisible by
grad_accum x data x fsdp devices: on 64 devices use --config.grad_accum=4). Check the memory with
`python -m phi_jax.aot --config=configs/phi1_5.py --devices=8 --device_memory_gb=80`: measured here
11.1 GiB per device (temporaries estimated by XLA:CPU, the layer scan rolled: model.scan_unroll=1);
18.5 GiB with the full logits (loss_chunk_len=0), 27.0 GiB with attention_impl='xla' as well.

Full scale (the data is not shipped). The loop reads one dataset: put the synthetic textbooks (and
the code data, as text files) under one folder for the `text_corpus` builder (.txt/.md/.rst), or
switch to code with --config.data.dataset=code_corpus. The ablations phi-1.5-web-only and
phi-1.5-web are the same config on other folders. data.tokenizer: the CodeGen tokenizer.json (vocab
padded to 51200), or '' to train a 51,200-token SentencePiece BPE on the data.

    python -m phi_jax.main --config=configs/phi1_5.py --workdir=workdirs/phi1_5 \\
        --config.data.source_dir=/data/textbooks --config.data.tokenizer=/tok/tokenizer.json

Expected at full scale (paper, phi-1.5): WinoGrande 0.734, ARC-Easy 0.756, PIQA 0.766, HellaSwag
0.476, MMLU 0.376, GSM8K 40.2, HumanEval 34.1, MBPP 37.7. The paper publishes no losses.

Tiny (this 2-core CPU, 1-2 minutes; stdlib .py files as the corpus, a 1,024-token
SentencePiece, a 2-layer d_model 128 model, the paper's optimizer numbers):

    python -m phi_jax.main --config=configs/phi1_5.py:tiny --workdir=workdirs/phi1_5_tiny

Measured here (seed 0, 1 CPU device, 1m16s with the dataset already built): train loss 6.68 at
step 10 -> 5.78 at step 80, held-out 5.80 (slower than phi-1's tiny: constant 2e-4 vs a 1e-3 peak).

The paper's ablation (section 3: phi-1.5 vs phi-1.5-web vs phi-1.5-web-only), at CPU scale:
`:ablation=ARM` is one arm's run, ARM one of `phi_jax.curation.phi15_corpus.ARMS` (phi-1.5:
80% synthetic + 20% code; phi-1.5-web: 40% synthetic + 40% filtered web + 20% code;
phi-1.5-web-only: 80% web + 20% code), each a `filtered_corpus` of 4 MB made by `prepare()`
(offline stand-ins: worked word problems of the train templates + procedural textbook sections,
the standard library ranked by the code filter, python3.11-doc reST ranked by a prose filter),
one tokenizer for all arms; the model: the phi-1.5 block at d_model 96 x 4 layers, 0.8M tokens.
`sweep('ablation')` = 3 arms x seeds 0, 1, 2; `:ablation,smoke` a one-minute version for tests.
The run and its evaluation (word problems held out by template, scored by running the model's
Python; held-out prose perplexity): experiments/phi1_5/ (RESULTS.md, run.sh).

    python -m phi_jax.sweep --config=configs/phi1_5.py:ablation --workdir=DIR --parallel=1
    python experiments/phi1_5/evaluate.py DIR
"""

from __future__ import annotations

import json
import pathlib
from typing import Any

import ml_collections

from phi_jax.config_args import parse_arg
from phi_jax.train import config_base

TOKENS = 150_000_000_000
BATCH, SEQ = 2048, 2048  # 4,194,304 tokens per step


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  """The phi-1.5 pretraining config; `:tiny` shrinks it to run on a CPU."""
  v = parse_arg(arg, {"tiny": False, "ablation": "", "smoke": False})
  if v["ablation"] is True:
    v["ablation"] = "phi-1.5"

  c = config_base.get_config()
  c.seed = 0
  c.total_steps = -(-TOKENS // (BATCH * SEQ))  # 35,763 steps = 150B tokens
  c.log_every = 50
  c.eval_every = 1_000
  c.checkpoint_every = 1_000
  c.keep_checkpoints = 3
  c.grad_accum = 32  # microbatch: 2048 / (32 x 8 devices) = 8 rows per device
  c.report = True
  c.mesh.update(data=1, fsdp=-1, tensor=1)
  # The LM head + loss over chunks of 512 positions (train/chunked_loss.py): one chunk's float32
  # logits at a time instead of all [rows, seq_len, vocab] and their gradient.
  c.loss_chunk_len = 512

  c.model = config_base.model(
      "phi-1.5", dtype="bfloat16", param_dtype="float32", attn_dropout=0.0, resid_dropout=0.0,
      embd_dropout=0.0, remat_policy="full",
      attention_impl="auto")  # cuDNN on GPU, splash on TPU, blockwise on CPU; XLA below 1k tokens

  c.data.update(
      dataset="text_corpus",
      source_dir="/path/to/phi1_5_corpus",  # set on the command line
      max_files=0, validation_fraction=0.01, data_dir="",
      tokenizer="", tokenizer_vocab_size=51200, tokenizer_train_bytes=200_000_000,
      seq_len=SEQ, batch_size=BATCH, eval_batches=8, worker_count=0)

  c.optimizer.update(
      learning_rate=2e-4, schedule="constant", warmup_steps=0, warmup_fraction=0.0,
      decay_steps=0, end_lr_fraction=1.0, b1=0.9, b2=0.98, eps=1e-7, weight_decay=0.1,
      grad_clip_norm=1.0)

  # Task evaluations during training (phi_jax.evals.periodic): e.g. every=100,
  # tasks=("humaneval", "mc:piqa:/data/piqa.jsonl"), limit=20. Off here.
  c.sample.update(
      prompts=("Alice was so tired when she got back home so she went",
               "def print_prime(n):\n   \"\"\"\n   Print all primes between 1 and n\n   \"\"\"\n"),
      max_new_tokens=128, temperature=0.0)

  if v["tiny"]:
    c.total_steps = 80
    c.log_every = 10
    c.eval_every = 40
    c.checkpoint_every = 40
    c.keep_checkpoints = 2
    c.grad_accum = 2
    c.loss_chunk_len = 0  # full logits (a 1,024-token vocabulary)
    c.model.update(vocab_size=-1, d_model=128, num_layers=2, num_heads=4, mlp_dim=512,
                   rotary_dim=16, max_seq_len=512, dtype="float32", remat_policy="none")
    c.data.update(dataset="code_corpus", source_dir="", max_files=60, validation_fraction=0.05,
                  tokenizer_vocab_size=1024, tokenizer_train_bytes=2_000_000, seq_len=128,
                  batch_size=16, eval_batches=4)
    c.sample.update(prompts=("def print_prime(n):\n", "class Stack:\n"), max_new_tokens=24)
  if v["ablation"]:
    _ablation(c, v["ablation"], v["smoke"])
  return c


ABLATION_TOKENS = 819_200  # 400 steps x 8 x 256
ARMS = ("phi-1.5", "phi-1.5-web", "phi-1.5-web-only")  # = phi15_corpus.ARMS


def _ablation(c: ml_collections.ConfigDict, arm: str, smoke: bool) -> None:
  """The CPU-scale ablation run of `arm` (see the module doc); data made by prepare()."""
  if arm not in ARMS:
    raise ValueError(f"ablation={arm!r}: choose one of {list(ARMS)}")
  steps = ABLATION_TOKENS // (8 * 256)
  c.total_steps = steps
  c.log_every, c.eval_every, c.checkpoint_every = 20, steps, steps // 2
  c.keep_checkpoints = 1
  c.grad_accum = 1
  c.report = False
  c.loss_chunk_len = 0
  c.mesh.update(data=-1, fsdp=1, tensor=1)
  c.model.update(vocab_size=-1, d_model=96, num_layers=4, num_heads=6, mlp_dim=384,
                 rotary_dim=16, max_seq_len=512, dtype="float32", remat_policy="none",
                 attention_impl="xla", tie_embeddings=True, lm_head_bias=False)
  # The paper's constant 2e-4 is for 1.4B parameters; at this size (chosen, not tuned): the
  # quickstart's 5e-3 peak, 5% warmup, linear decay to 10%.
  c.optimizer.update(learning_rate=5e-3, schedule="linear", warmup_fraction=0.05,
                     end_lr_fraction=0.1)
  c.data.update(dataset="filtered_corpus", source_dir=f"/path/to/corpus/{arm}", max_files=0,
                validation_fraction=0.02, tokenizer_vocab_size=1024,
                tokenizer_train_bytes=3_000_000, seq_len=256, batch_size=8, eval_batches=16)
  c.sample.update(prompts=('def solution():\n    """Mia has 3 pens and buys 2 more. How many '
                           'pens does Mia have?"""\n',), max_new_tokens=48)
  if smoke:
    c.total_steps = 6
    c.log_every, c.eval_every, c.checkpoint_every = 2, 6, 6
    c.model.update(d_model=32, num_layers=2, num_heads=2, mlp_dim=64, rotary_dim=8)
    c.data.update(tokenizer_vocab_size=512, tokenizer_train_bytes=200_000, seq_len=64,
                  batch_size=4, eval_batches=2)


def sweep(arg: str = "") -> list[dict[str, Any]]:
  """The ablation: every arm x seeds 0, 1, 2 (`:ablation`; `:ablation,smoke` one seed)."""
  from phi_jax import sweep as sweeps  # pylint: disable=g-import-not-at-top
  v = parse_arg(arg, {"tiny": False, "ablation": "", "smoke": False})
  if not v["ablation"]:
    raise ValueError("the phi-1.5 sweep is the ablation: --config=configs/phi1_5.py:ablation")
  arms = {arm: {"data.source_dir": f"{{workdir}}/corpus/{arm}",
                "data.tokenizer": "{workdir}/tokenizer/sp.model"} for arm in ARMS}
  return sweeps.grid(arm=arms, seed=(0,) if v["smoke"] else (0, 1, 2))


def prepare(arg: str, workdir: pathlib.Path) -> None:
  """The three arms' corpora (DIR/corpus, `phi15_corpus.build`) and one tokenizer on equal
  shares of them (DIR/tokenizer/sp.model)."""
  from phi_jax.curation import phi15_corpus  # pylint: disable=g-import-not-at-top
  from phi_jax.data import tokenizer as tokenizers  # pylint: disable=g-import-not-at-top
  v = parse_arg(arg, {"tiny": False, "ablation": "", "smoke": False})
  workdir = pathlib.Path(workdir)
  if v["smoke"]:
    summary = phi15_corpus.build(workdir / "corpus", arm_bytes=80_000, n_word_problems=500,
                                 n_textbooks=0, code_max_files=40)
  else:
    summary = phi15_corpus.build(workdir / "corpus")
  print(f"[prepare] corpora: {summary['arms']}", flush=True)
  model = workdir / "tokenizer" / "sp.model"
  if model.exists():
    return
  config = get_config(arg if v["ablation"] else "ablation")
  share = config.data.tokenizer_train_bytes // len(ARMS)
  texts = []
  for arm in ARMS:
    used = 0
    for line in (workdir / "corpus" / arm / "records.jsonl").read_text().splitlines():
      text = json.loads(line)["text"]
      texts.append(text)
      used += len(text.encode("utf-8"))
      if used >= share:
        break
  model.parent.mkdir(parents=True, exist_ok=True)
  tokenizers.train_sentencepiece(texts, workdir / "tokenizer" / "sp",
                                 vocab_size=config.data.tokenizer_vocab_size)
