"""SkipDecode (Del Corro et al., arXiv 2307.02628): fine-tune a model with a position-wise layer
schedule so that batched, KV-cached decoding can skip layers (docs/SKIPDECODE.md).

Variants (comma-separated, e.g. `:finetune,coder,speedup=3,decay_len=40`):

    pretrain        a base language model. Alone: on this machine's Python stdlib (code_corpus),
                    a phi-3-style serial model, 12 layers x d_model 96, 2,048-token SentencePiece
                    (the previous run: experiments/skipdecode/RESULTS.md).
    coder           the base is a tiny coder instead (the recipe of configs/quickstart.py:long,
                    12 layers deep): phi-1's block, 12 layers x d_model 96 (3 heads of 32, MLP
                    384, partial rotary 16, tied embeddings), 1,024-token SentencePiece, trained
                    on the textbook-quality mixture (`data.source_dir`: made by
                    experiments/skipdecode/make_data.py) with the loss on each record's target,
                    700 steps x 16 x 256 = 2.9M tokens, the tiny coder's step forms ('auto'
                    attention in blocks of 64, the loss in chunks of 64) and its 2026-12-02
                    optimizer (AdamW 5e-3, linear). With finetune: the fine-tune set is
                    procedural train-split exercises (make_data.py), loss on the bodies.
    finetune        fine-tune `init_from` (a training workdir or a Hugging Face folder: weights,
                    architecture and tokenizer come from it) on `docstring_code` (prompt =
                    signature + docstring, target = body, held out by file), or with `coder` on
                    the exercises; loss on targets only (data.format='prompt_completion'); with
                    the schedule of `speedup`.
    speedup=S       the nominal speedup of the schedule (1 = no skipping, the 1x baseline; 2, 3, 5
                    as in the paper), chosen by SkipSchedule.for_speedup(L, S, warmup_layers=1,
                    decay_len=D).
    decay_len=D     D, the schedule's decay length in generated tokens: the paper sets it to the
                    task's median target length. Default 64 (~ docstring_code's median body
                    length with the stdlib tokenizer); with `coder` it must be given for S > 1:
                    `make_data.py --decay_len=BASE_WORKDIR` measures it with the base's tokenizer.
    tiny            test scale (4 layers x 64, 512-token vocab, a few steps; with coder 12 layers
                    x 32, so that 5x stays reachable).

    python -m phi_jax.main --config=configs/skipdecode.py:pretrain --workdir=workdirs/sd_base
    python -m phi_jax.main --config=configs/skipdecode.py:finetune,speedup=2 \\
        --config.init_from=workdirs/sd_base --workdir=workdirs/sd_ft_2x

The tiny-coder experiment (data, base, fine-tunes over seeds, evaluation) is one command,
`bash experiments/skipdecode/run.sh` (SMOKE=1: a few minutes, test scale). At full scale, point
init_from at a released model (e.g. a phi-1.5 HF folder) and data.source_dir at the task's data.
"""

from __future__ import annotations

import ml_collections

from phi_jax.config_args import parse_arg
from phi_jax.train import config_base


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  v = parse_arg(arg, {"pretrain": False, "finetune": False, "speedup": "1", "init_from": "",
                      "coder": False, "decay_len": "", "tiny": False})
  if v["pretrain"] == v["finetune"]:
    raise ValueError(f"choose exactly one of 'pretrain' and 'finetune' in {arg!r}")
  try:
    speedup = float(v["speedup"])
  except ValueError:
    raise ValueError(f"speedup={v['speedup']!r} must be a number >= 1 (1 = no skipping)") from None
  if speedup < 1:
    raise ValueError(f"speedup={speedup} must be >= 1 (1 = no skipping)")
  tiny, coder = bool(v["tiny"]), bool(v["coder"])
  if v["decay_len"]:
    if not v["decay_len"].isdigit() or int(v["decay_len"]) < 1:
      raise ValueError(f"decay_len={v['decay_len']!r} must be a whole number of tokens >= 1")
    decay_len = int(v["decay_len"])
  elif coder and v["finetune"] and speedup > 1 and not tiny:
    raise ValueError("a coder fine-tune with a schedule needs decay_len=N, the median target "
                     "length in tokens: `python experiments/skipdecode/make_data.py --root=ROOT "
                     "--decay_len=BASE_WORKDIR` measures it (run.sh does)")
  else:
    decay_len = 16 if tiny else 64

  c = config_base.get_config()
  c.seed = 0
  c.total_steps = 1200 if v["pretrain"] else 400
  # Durations in steps: experiments/skipdecode/run.sh sets them per run.
  c.log_every = 20
  c.eval_every = 200
  c.checkpoint_every = 200
  c.keep_checkpoints = 1
  c.grad_accum = 1
  c.report = True
  c.mesh.update(data=-1, fsdp=1, tensor=1)
  c.init_from = v["init_from"]

  if v["pretrain"]:
    c.model = config_base.model(
        "tiny-serial", vocab_size=-1, d_model=96, num_layers=12, num_heads=4, num_kv_heads=4,
        mlp_dim=288, max_seq_len=512, dtype="float32", param_dtype="float32")
  else:  # the architecture is init_from's; only training-time fields may be set here
    c.model = config_base.model("init", dtype="float32", param_dtype="float32")

  c.data.update(
      dataset="code_corpus" if v["pretrain"] else "docstring_code", source_dir="", max_files=0,
      validation_fraction=0.05, data_dir="", tokenizer="", tokenizer_vocab_size=2048,
      tokenizer_train_bytes=4_000_000, seq_len=256, batch_size=16, eval_batches=8,
      worker_count=0, format="lm" if v["pretrain"] else "prompt_completion")

  c.optimizer.update(
      learning_rate=3e-3 if v["pretrain"] else 1e-3, schedule="cosine",
      warmup_steps=50 if v["pretrain"] else 20, warmup_fraction=0.0, decay_steps=0,
      end_lr_fraction=0.1, b1=0.9, b2=0.95, eps=1e-8, weight_decay=0.1, grad_clip_norm=1.0)

  c.skip.update(enabled=bool(v["finetune"] and speedup > 1), target_speedup=speedup,
                warmup_layers=1, decay_len=decay_len, ratio=2.0)

  # Task evaluations during training (phi_jax.evals.periodic): e.g. every=100,
  # tasks=("humaneval", "mc:piqa:/data/piqa.jsonl"), limit=20. Off here.
  c.sample.update(
      prompts=('def mean(values):\n    """Return the arithmetic mean of a list of numbers."""\n',
               'def is_palindrome(text):\n'
               '    """Return True if text reads the same backwards."""\n'),
      max_new_tokens=48, temperature=0.0)

  if tiny:
    c.total_steps = 8
    c.log_every = 4
    c.eval_every = 4
    c.checkpoint_every = 4
    c.optimizer.warmup_steps = 2
    if v["pretrain"]:
      c.model.update(d_model=64, num_layers=4, num_heads=2, num_kv_heads=2, mlp_dim=128)
    c.data.update(max_files=30, tokenizer_vocab_size=512, seq_len=128, batch_size=8,
                  eval_batches=2)
    c.sample.max_new_tokens = 8
  if coder:
    _coder(c, pretrain=bool(v["pretrain"]), tiny=tiny)
  return c


def _coder(c: ml_collections.ConfigDict, *, pretrain: bool, tiny: bool) -> None:
  """The `coder` variant: the tiny coder as the base (see the module doc)."""
  if pretrain:  # configs/quickstart.py's block, 12 layers deep (5x needs >= ~10 layers)
    c.total_steps = 700
    c.model = config_base.model(
        "phi-1", vocab_size=-1, d_model=96, num_layers=12, num_heads=3, mlp_dim=384,
        rotary_dim=16, max_seq_len=512, dtype="float32", param_dtype="float32",
        attn_dropout=0.0, resid_dropout=0.0, embd_dropout=0.0, remat_policy="none",
        tie_embeddings=True, lm_head_bias=False, attention_impl="auto", attention_block=64)
    c.optimizer.update(learning_rate=5e-3, schedule="linear", warmup_steps=0,
                       warmup_fraction=0.05, end_lr_fraction=0.1)
  else:  # every schedule fine-tuned alike; seeds change the data order
    c.total_steps = 150
    c.optimizer.update(learning_rate=1e-3, schedule="cosine", warmup_steps=0,
                       warmup_fraction=0.1, end_lr_fraction=0.1)
  # The tiny coder's step forms (configs/quickstart.py; BENCHMARKS.md has their speed): 'auto'
  # attention in blocks of 64 (above; a fine-tune inherits it from the base) and the loss in
  # chunks of 64 positions: the same functions as the plain forms, up to float rounding.
  c.loss_chunk_len = 64
  # data.source_dir / data_dir / validation_fraction: make_data.py's flags (run.sh passes them)
  c.data.update(dataset="synthetic_exercises", format="prompt_completion",
                validation_fraction=0.02, tokenizer_vocab_size=1024, seq_len=256,
                batch_size=16, eval_batches=8)
  c.sample.update(prompts=(
      'def count_vowels(text: str) -> int:\n    """Return how many vowels text has."""\n',
      'def add_seven(values: list[int]) -> list[int]:\n'
      '    """Return a list with 7 added to every number in values."""\n'),
      max_new_tokens=64)
  if tiny:
    c.total_steps = 8
    if pretrain:
      c.model.update(d_model=32, num_heads=2, mlp_dim=64, rotary_dim=8)
    c.data.update(max_files=0, tokenizer_vocab_size=512, seq_len=128, batch_size=8,
                  eval_batches=2, validation_fraction=0.1)
    c.sample.max_new_tokens = 8
