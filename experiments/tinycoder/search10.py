"""The 2026-12-03 search at the 10-minute budget: the quickstart's textbook arm alone, two runs at
once (one pinned core each, as the study trains its arms), one change per run.

    python experiments/tinycoder/search10.py make_mix DIR/mix_long 30000 15000 300
    python -m phi_jax.sweep --config=experiments/tinycoder/search10.py:p3 --workdir=DIR/p3 \\
        --parallel=2 --config.data.tokenizer=TOKENIZER --config.data.source_dir=DIR/mix_long/dataset \\
        --config.data.data_dir=DIR/mix_long/dataset/tfds
    python experiments/tinycoder/search10.py measure DIR/p3/RUN [...]   # -> one JSON line each

TOKENIZER is a study's DIR/tokenizer/sp.model (the search used the one of a 700-step quickstart
study). `measure` is the study's own measurement (`study.measure`) on 200 unseen variants
(`procedural.generate(200, seed=2024, split='validation')`) and the hand-written problems.
The runs and what they gave are in RESULTS.md ("The 10-minute search").
"""

from __future__ import annotations

import json
import pathlib
import sys

import ml_collections

_QUICKSTART = pathlib.Path(__file__).resolve().parents[2] / "configs" / "quickstart.py"
# the step of 2026-12-03's quickstart: blockwise attention in blocks of 64, the loss in chunks
FAST = {"model.attention_impl": "auto", "model.attention_block": 64, "loss_chunk_len": 64}
XLA = {"model.attention_impl": "xla", "model.attention_block": 0, "loss_chunk_len": 0}
D128 = {"model.d_model": 128, "model.num_heads": 4, "model.mlp_dim": 512}


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  del arg
  from phi_jax.config_args import load_config  # pylint: disable=g-import-not-at-top
  c = load_config(f"{_QUICKSTART}:arm=textbook")
  c.optimizer.learning_rate = 5e-3  # the 2026-12-01 recipe; the runs below change it
  return c


def sweep(arg: str = "") -> list[dict]:
  runs = {
      # before the faster step: 700 steps = 2.9M tokens per arm in ~430 s
      "p1": [{**XLA, "total_steps": 700}, {**XLA, **D128, "total_steps": 470}],
      "p2": [{**XLA, "total_steps": 700, "optimizer.learning_rate": 1e-2}],  # + mix_d30 by flag
      # the faster step: 950 steps = 3.9M tokens per arm in ~455 s
      "p3": [{**FAST, "total_steps": 950}, {**FAST, "total_steps": 950,
                                             "optimizer.learning_rate": 1e-2}],
      "p4": [{**FAST, "total_steps": 950, "optimizer.learning_rate": r} for r in (1.5e-2, 2e-2)],
      "p5": [{**FAST, "total_steps": 950, "optimizer.learning_rate": 3e-2},
             {**FAST, "total_steps": 950, "optimizer.learning_rate": 2e-2, "seed": 1}],
  }
  if arg not in runs:
    raise ValueError(f"search10.py:{arg!r}: the searches are {sorted(runs)}")
  return runs[arg]


def _make_mix(out: str, n_exercises: str, n_drills: str, n_textbooks: str) -> None:
  from phi_jax.curation import mixture, stages  # pylint: disable=g-import-not-at-top
  config = mixture.pipeline_config(int(n_exercises), int(n_textbooks), int(n_drills), seed=0)
  print(stages.run(config, pathlib.Path(out), progress=False, log=print)["train_config"])


def _measure(runs: list[str]) -> None:
  from phi_jax.study import measure  # pylint: disable=g-import-not-at-top
  study = ml_collections.ConfigDict(dict(
      n_validation=200, n_test=0, handwritten=True, humaneval_limit=0, eval_seed=2024,
      max_new_tokens=128, batch_size=50, workers=0))
  for run in runs:
    result = measure.measure(pathlib.Path(run), study)
    summary = json.loads((pathlib.Path(run) / "summary.json").read_text())
    print(json.dumps({"run": run, "eval_loss": summary.get("eval_loss"),
                      **{k: [v["passed"], v["n"], v.get("parse_rate")]
                         for k, v in result["sets"].items()}}), flush=True)


if __name__ == "__main__":
  if sys.argv[1:2] == ["make_mix"] and len(sys.argv) == 6:
    _make_mix(*sys.argv[2:])
  elif sys.argv[1:2] == ["measure"] and len(sys.argv) > 2:
    _measure(sys.argv[2:])
  else:
    raise SystemExit(__doc__)
