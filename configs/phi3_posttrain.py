"""phi-3 post-training: SFT on chat conversations, then DPO on preference pairs ("Phi-3 Technical
Report", Abdin et al., arXiv 2404.14219, section 3: the pretrained model is finetuned with SFT and
then DPO, in the chat format `<|user|>\\n...<|end|>\\n<|assistant|>`).

Variants (comma-separated): `sft` or `dpo` (one of them), `tiny` or `coder` (the tiny coder of
configs/quickstart.py:long, post-trained by experiments/phi3_posttrain: 150 SFT steps at 5e-4,
200 DPO steps at 2e-5, 16 rows of 256 tokens, float32), `init_from=PATH`,
`reference=model|precomputed|none` (DPO's reference, see phi_jax/train/dpo.py).

    sft   data.format='chat': multi-turn {"messages": [...]} JSONL (the `conversations` dataset),
          rendered with the phi-3 chat template, loss on the assistant turns only (each reply and
          its <|end|>), whole conversations packed first-fit with segment ids (none attends into
          another); warm start from init_from (a HF folder, a phi_jax checkpoint or a training
          workdir); the ordinary sharded train step.
    dpo   objective='dpo': {"prompt" | "messages", "chosen", "rejected"} JSONL (the `preferences`
          dataset), each pair packed whole; the policy starts from init_from (the SFT model),
          which is also the frozen reference unless dpo.reference_from is set;
          --config.dpo.nll_weight=ALPHA adds ALPHA x the chosen reply's NLL per token (DPO + NLL,
          Pang et al. 2024; 0 = plain DPO, the default).

What the report publishes about post-training: SFT then DPO, on chat data in the format above
(math, coding, reasoning, conversation, model identity and safety). It publishes NO hyperparameters,
data sizes or schedules for either stage. Everything numeric below is this repo's choice: beta 0.1
is the DPO paper's default (Rafailov et al., arXiv 2305.18290); learning rates 2e-5 (SFT) and 5e-7
(DPO) with cosine decay, warmup 3% / 10%, AdamW (0.9, 0.95) without weight decay on the DPO stage,
4096-token rows, 128 rows per SFT step and 64 per DPO step (each packed row holds several pairs),
3,000 SFT and 1,000 DPO steps: common open recipes' orders of magnitude, not phi-3's.

Full scale (phi-3-mini; no data ships: point data.source_dir at your JSONL):

    python -m phi_jax.main --config=configs/phi3_posttrain.py:sft,init_from=/models/phi3_base \\
        --config.data.source_dir=/data/sft.jsonl --workdir=workdirs/phi3_sft
    python -m phi_jax.main --config=configs/phi3_posttrain.py:dpo,init_from=workdirs/phi3_sft \\
        --config.data.source_dir=/data/prefs.jsonl --workdir=workdirs/phi3_dpo

Expected at full scale (the report, after SFT + DPO with its data): MMLU 68.8, MT-bench 8.38. This
config has not been run at that scale.

Tiny (this CPU, under a minute each; data.source_dir='' = the built-in demo sets: arithmetic
conversations and, for DPO, correct vs off-by-one answers; the SFT model is trained from scratch
at 2 layers x d_model 64 with a 320-token SentencePiece):

    python -m phi_jax.main --config=configs/phi3_posttrain.py:sft,tiny --workdir=workdirs/sft_tiny
    python -m phi_jax.main --workdir=workdirs/dpo_tiny \\
        --config=configs/phi3_posttrain.py:dpo,tiny,init_from=workdirs/sft_tiny

Measured here (seed 0, 1 CPU device; SFT :tiny shortened to 20 steps, then DPO :tiny's 30 steps
from it): SFT train loss 5.45 (step 5) -> 3.17 (step 20), held-out 3.15; DPO held-out loss 0.693
(log 2: policy = reference) -> 0.680 (step 15) -> 0.677 (step 30); the train reward_margin per
5-step interval is noisy at 8 pairs per step (-0.02 .. 0.13). tests/test_posttrain.py runs both,
shortened, and checks DPO's exact resume.
"""

from __future__ import annotations

import ml_collections

from phi_jax.config_args import parse_arg
from phi_jax.train import config_base

REFERENCES = ("model", "precomputed", "none")


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  """The post-training config for `arg`: sft | dpo, tiny, init_from=PATH, reference=..."""
  v = parse_arg(arg, {"sft": False, "dpo": False, "tiny": False, "coder": False,
                      "init_from": "", "reference": "model"})
  if v["sft"] == v["dpo"]:
    raise ValueError(f"choose exactly one of 'sft' and 'dpo' in {arg!r}")
  if v["reference"] not in REFERENCES:
    raise ValueError(f"reference={v['reference']!r}: choose one of {REFERENCES}")
  sft, tiny, coder = bool(v["sft"]), bool(v["tiny"]), bool(v["coder"])
  if tiny and coder:
    raise ValueError(f"choose at most one of 'tiny' and 'coder' in {arg!r}")
  if not v["init_from"] and not tiny:
    raise ValueError("post-training starts from a model: add init_from=PATH (a Hugging Face "
                     "folder, a phi_jax checkpoint or a training workdir; for dpo, the SFT run)")

  c = config_base.get_config()
  c.seed = 0
  c.objective = "lm" if sft else "dpo"
  c.init_from = v["init_from"]
  c.total_steps = 3_000 if sft else 1_000
  c.log_every = 10
  c.eval_every_fraction = 0.1
  c.checkpoint_every = 500
  c.keep_checkpoints = 2
  c.grad_accum = 4 if sft else 8  # 4 rows per device per microbatch on 8 devices (DPO: 1 + ref)
  c.report = True
  c.mesh.update(data=1, fsdp=-1, tensor=1)

  # With init_from the architecture is the source's: only training-time fields are set here.
  c.model = config_base.model("init", dtype="bfloat16", param_dtype="float32",
                              remat_policy="full")

  c.data.update(
      dataset="conversations" if sft else "preferences",
      source_dir="/path/to/chat.jsonl",  # set on the command line
      max_files=0, validation_fraction=0.01, data_dir="", tokenizer="",
      seq_len=4096, batch_size=128 if sft else 64, eval_batches=8, worker_count=0,
      format="chat" if sft else "preference", chat_template="phi-3")

  c.optimizer.update(
      learning_rate=2e-5 if sft else 5e-7, schedule="cosine", warmup_steps=0,
      warmup_fraction=0.03 if sft else 0.1, decay_steps=0, end_lr_fraction=0.0, b1=0.9, b2=0.95,
      eps=1e-8, weight_decay=0.0 if not sft else 0.1, grad_clip_norm=1.0)

  c.dpo.update(beta=0.1, label_smoothing=0.0, reference=v["reference"], reference_from="")

  c.sample.update(prompts=("<|user|>\nWhat is 2 plus 3?<|end|>\n<|assistant|>\n",),
                  max_new_tokens=64, temperature=0.0)

  if tiny:
    c.total_steps = 60 if sft else 30
    c.log_every = 5
    c.eval_every_fraction = 0.5
    c.checkpoint_every = 30
    c.grad_accum = 1
    c.mesh.update(data=-1, fsdp=1, tensor=1)
    if not c.init_from:  # SFT from scratch: a tiny phi-3-style serial model
      c.model = config_base.model(
          "tiny-serial", vocab_size=-1, d_model=64, num_layers=2, num_heads=4, num_kv_heads=4,
          mlp_dim=128, max_seq_len=256, dtype="float32", param_dtype="float32")
    else:
      c.model.update(dtype="float32", remat_policy="none")
    c.data.update(source_dir="", validation_fraction=0.05, tokenizer_vocab_size=320,
                  tokenizer_train_bytes=1_000_000, seq_len=128, batch_size=8, eval_batches=2)
    c.optimizer.update(learning_rate=3e-3 if sft else 1e-3, warmup_fraction=0.1)
    c.sample.update(max_new_tokens=16)
  if coder:  # the tiny coder (configs/quickstart.py:long, d128): experiments/phi3_posttrain
    c.total_steps = 150 if sft else 200  # SFT: seed 0's measured run (RESULTS.md)
    c.log_every = 10
    c.eval_every_fraction = 0.25
    c.checkpoint_every = c.total_steps
    c.keep_checkpoints = 1
    c.grad_accum = 1
    c.report = False
    c.mesh.update(data=-1, fsdp=1, tensor=1)
    c.model.update(dtype="float32", remat_policy="none")
    c.data.update(seq_len=256, batch_size=16, eval_batches=4, validation_fraction=0.02 if sft
                  else 0.05)
    c.optimizer.update(learning_rate=5e-4 if sft else 2e-5, warmup_fraction=0.05,
                       weight_decay=0.0)
    c.sample.update(prompts=(
        "<|user|>\nComplete this Python function.\n\ndef add_two(n: int) -> int:\n"
        "    \"\"\"Return n plus 2.\"\"\"\n<|end|>\n<|assistant|>\n",), max_new_tokens=32)
  return c
