"""The SkipDecode experiment's data on the tiny coder (run.sh): the base mixture, the fine-tune
set, and the schedule's decay length.

    python experiments/skipdecode/make_data.py --root=workdirs/skipdecode_coder
    python experiments/skipdecode/make_data.py --root=ROOT --flags=base       # training flags
    python experiments/skipdecode/make_data.py --root=ROOT --decay_len=ROOT/base

Two `python -m phi_jax.curation` pipelines (`curation.mixture.pipeline_config`: generate +
verify in the sandbox -> decontaminate against HumanEval and the hand-written problems -> the
`synthetic_exercises` TFDS dataset), each resumable:

  ROOT/data/base/      the tiny coder's textbook-quality mixture, the recipe of
                       configs/quickstart.py:long (30,000 exercises + 15,000 binding drills +
                       300 textbook sections, mixture seed 0): what the base model trains on
  ROOT/data/finetune/  the exercise format alone: 10,000 procedural exercises of the train split
                       (mixture seed 1: other draws than the base's), prompt = signature +
                       docstring, target = body; what every schedule is fine-tuned on

Nothing in either is a held-out exercise: the generator draws only the 'train' split (no
'validation' parameterisation, no held-out family), which evaluate.py scores on.

--flags=base|finetune prints the `--config.data.*` flags that train on one of them (making the
data first if needed). --decay_len=WORKDIR prints the median target length in tokens of the
fine-tune set's train split under WORKDIR's tokenizer: the paper sets the schedule's decay
length to the task's median target length (EOS included, as the training target).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import statistics
import sys
from typing import Any, Optional, Sequence

# (n_exercises, n_drills, n_textbooks, mixture seed) of each dataset, full scale and --smoke.
SIZES = {"base": (30_000, 15_000, 300, 0), "finetune": (10_000, 0, 0, 1)}
SMOKE_SIZES = {"base": (300, 80, 6, 0), "finetune": (200, 0, 0, 1)}
BENCHMARKS = ("humaneval", "handwritten")  # config_base's study.decontam


def make(root: str | pathlib.Path, name: str, *, smoke: bool = False,
         log=print) -> dict[str, Any]:
  """Makes (or finds made) dataset `name` ('base' or 'finetune') under ROOT/data/; returns its
  training flags {'data.dataset', 'data.source_dir', 'data.data_dir', ...}."""
  from phi_jax.curation import mixture, stages  # pylint: disable=g-import-not-at-top
  sizes = SMOKE_SIZES if smoke else SIZES
  if name not in sizes:
    raise ValueError(f"dataset {name!r}: expected one of {sorted(sizes)}")
  n_exercises, n_drills, n_textbooks, seed = sizes[name]
  config = mixture.pipeline_config(n_exercises, n_textbooks, n_drills, seed=seed,
                                   benchmarks=BENCHMARKS,
                                   validation_fraction=0.1 if smoke else 0.02)
  summary = stages.run(config, pathlib.Path(root) / "data" / name, progress=False, log=log)
  return dict(summary["train_config"], **{"data.format": "prompt_completion"})


def flags(train_config: dict[str, Any]) -> str:
  """The command-line flags of a training config's data section."""
  return " ".join(f"--config.{k}={v}" for k, v in sorted(train_config.items()))


def targets(train_config: dict[str, Any], limit: int = 2_000) -> list[tuple[str, str]]:
  """(prompt, target) of the first `limit` records of a made dataset's train split."""
  from phi_jax.data import builders  # pylint: disable=g-import-not-at-top
  source = builders.build(train_config["data.dataset"], train_config["data.data_dir"],
                          source_dir=train_config["data.source_dir"],
                          validation_fraction=train_config["data.validation_fraction"]
                          ).as_data_source("train")
  text = lambda v: v.decode("utf-8") if isinstance(v, bytes) else v  # noqa: E731
  return [(text(source[i]["prompt"]), text(source[i]["target"]))
          for i in range(min(limit, len(source)))]


def median_target_tokens(tokenizer: Any, pairs: Sequence[tuple[str, str]]) -> int:
  """The median target length in tokens, EOS included, of (prompt, target) pairs, tokenized as
  training tokenizes them (`pipeline.TokenizeExample`: the target's ids in the joint encoding)."""
  from phi_jax.data import pipeline  # pylint: disable=g-import-not-at-top
  if not pairs:
    raise ValueError("no (prompt, target) pairs to measure: is the dataset's train split empty?")
  tokenize = pipeline.TokenizeExample(tokenizer, seq_len=1 << 20)
  lengths = [int(tokenize.map({"prompt": p, "target": t})["tokens"][:, 2].sum()) for p, t in pairs]
  return int(round(statistics.median(lengths)))


def _parse(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--root", required=True, help="the experiment's folder (run.sh's ROOT)")
  p.add_argument("--smoke", action="store_true", help="a few hundred records (SMOKE=1)")
  p.add_argument("--flags", choices=sorted(SIZES), default=None,
                 help="print the training flags of one dataset (and nothing else)")
  p.add_argument("--decay_len", default="", metavar="WORKDIR",
                 help="print the fine-tune set's median target tokens under WORKDIR's tokenizer")
  return p.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> None:
  args = _parse(argv)
  quiet = lambda *_: None  # noqa: E731  (stdout is the answer)
  if args.flags:
    print(flags(make(args.root, args.flags, smoke=args.smoke, log=quiet)))
  elif args.decay_len:
    from phi_jax.convert import load  # pylint: disable=g-import-not-at-top
    tokenizer, _ = load.load_tokenizer(args.decay_len)
    pairs = targets(make(args.root, "finetune", smoke=args.smoke, log=quiet))
    print(median_target_tokens(tokenizer, pairs))
  else:
    made = {name: make(args.root, name, smoke=args.smoke) for name in SIZES}
    path = pathlib.Path(args.root) / "data" / "datasets.json"
    path.write_text(json.dumps(made, indent=1) + "\n")
    for name, config in made.items():
      print(f"{name}: {flags(config)}")


if __name__ == "__main__":
  sys.exit(main())
