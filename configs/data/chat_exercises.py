"""SFT data for phi-3-style post-training of the tiny coder: held-in exercises as chat.

Paper: "Phi-3 Technical Report" (arXiv 2404.14219), section 3: SFT on chat-formatted data
(`<|user|>\\n...<|end|>\\n<|assistant|>\\n...<|end|>`) before DPO; coding is one of its domains.
The report publishes no data; here the conversations are `phi_jax.curation.procedural` exercises
of the held-in 'train' split: the user asks to complete the function (signature + docstring), the
assistant answers with the reference body (`phi_jax.curation.preferences.conversation`).

    python -m phi_jax.curation --config=configs/data/chat_exercises.py --workdir=workdirs/chat_ex
    # then: --config.data.dataset=conversations --config.data.source_dir=.../dataset ...

Stages: `conversations` (n exercises of seed `seed`; decontaminated against HumanEval and the
hand-written problems by 13-grams and AST, and against the held-out 'validation' / 'test'
exercises by split, parameterisation key and prompt; decontam_report.json lists what it
dropped) -> `dataset` (the `conversations` TFDS dataset that configs/phi3_posttrain.py:sft reads).
Add MBPP with --config.conversations.benchmarks='("humaneval","handwritten","mbpp:/data/mbpp.jsonl")'.

Variants: `n=N` (default 6000), `seed=S`, `tiny` (60 exercises, for tests).
Measured here (n=6000, seed 0): see experiments/phi3_posttrain/RESULTS.md.
"""

import ml_collections

from phi_jax.config_args import parse_arg
from phi_jax.curation import preferences


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  v = parse_arg(arg, {"tiny": False, "n": 6000, "seed": 0})
  c = ml_collections.ConfigDict()
  c.stages = ("conversations", "dataset")
  c.tokenizer = ""
  c.progress = False
  c.conversations = ml_collections.ConfigDict(dict(
      n=int(v["n"]), seed=int(v["seed"]), split="train", instruction=preferences.INSTRUCTION,
      **preferences.decontam_defaults()))
  c.dataset = ml_collections.ConfigDict(dict(builder="conversations", validation_fraction=0.02))
  if v["tiny"]:
    c.conversations.n = 60
    c.conversations.update(heldout_n_validation=20, heldout_n_test=10)
    c.dataset.validation_fraction = 0.1
  return c
