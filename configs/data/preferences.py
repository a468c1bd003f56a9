"""Execution-verified preference pairs for DPO: sample from the SFT model, run, pair pass / fail.

Paper: "Phi-3 Technical Report" (arXiv 2404.14219), section 3: DPO after SFT, on chat-formatted
pairs (the report does not say how its pairs were made). Here, offline and judge-free: for each
held-in ('train' split) procedural exercise, `samples` replies are sampled from `model` in the
phi-3 chat format at `temperature`, run against the exercise's asserts in the sandbox, and a
passing reply (chosen) is paired with a failing one (rejected) where both exist
(`phi_jax.curation.preferences`). Prompts and chosen replies are decontaminated against HumanEval,
the hand-written problems and the held-out exercises. Sampling is seeded (`seed`).

    python -m phi_jax.curation --config=configs/data/preferences.py:model=workdirs/sft \\
        --workdir=workdirs/prefs
    python -m phi_jax.main --config=configs/phi3_posttrain.py:dpo,coder,init_from=workdirs/sft \\
        --config.data.source_dir=workdirs/prefs/dataset --workdir=workdirs/dpo

WORKDIR/preferences/counts.json: prompts, samples, sample pass rate, prompts with a pass / a fail
/ both, pairs, pairs flagged by decontamination. Rerunning skips the stage unless the settings or
the model's checkpoints changed.

Variants (comma-separated): `model=PATH` (required: a training workdir, phi_jax checkpoint or HF
folder), `n=N` prompts (default 1024), `samples=K` (8), `seed=S` (0), `tiny` (16 prompts, 4
samples, 32 new tokens, and include_reference: a random-init model never passes, so the reference
solution stands in for chosen; such rows say chosen_source='reference'); `pairs=K` up to K
distinct pairs per prompt (default 1; all of a prompt's pairs in one split); `greedy`: also
decode each prompt greedily (how the evaluation prompts the model) and, where that reply fails,
make it the rejected reply of the prompt's first pair (rejected_source='greedy').
Measured here: see experiments/phi3_posttrain/RESULTS.md.
"""

import ml_collections

from phi_jax.config_args import parse_arg
from phi_jax.curation import preferences


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  v = parse_arg(arg, {"model": "", "tiny": False, "n": 1024, "samples": 8, "seed": 0,
                      "pairs": 1, "greedy": False})
  c = ml_collections.ConfigDict()
  c.stages = ("preferences", "dataset")
  c.tokenizer = ""
  c.progress = True
  c.preferences = ml_collections.ConfigDict(dict(
      model=str(v["model"]), chat_template="phi-3", instruction=preferences.INSTRUCTION,
      n_prompts=int(v["n"]), prompt_seed=1, samples=int(v["samples"]), temperature=0.8,
      top_p=0.95, max_new_tokens=128, batch_size=64, seed=int(v["seed"]), workers=0,
      timeout_s=10.0, cpu_s=5.0, include_reference=False, pairs_per_prompt=int(v["pairs"]),
      greedy_rejected=bool(v["greedy"]), **preferences.decontam_defaults()))
  c.dataset = ml_collections.ConfigDict(dict(builder="preferences", validation_fraction=0.05))
  if v["tiny"]:
    c.progress = False
    c.preferences.update(n_prompts=16, samples=4, max_new_tokens=32, batch_size=32,
                         include_reference=True, heldout_n_validation=20, heldout_n_test=10)
    c.dataset.validation_fraction = 0.2
  return c
