"""One arm of a study, trained in its own process (`study.parallel` > 1 in `phi_jax.study.arms`).

    python -m phi_jax.study.arm_worker CONFIG_JSON WORKDIR [--cpu=K] [--study=STUDY_JSON]

CONFIG_JSON is the arm's ordinary training config as `arms.arm_config` makes it, written as JSON
by the study; WORKDIR is the arm's run directory (`train.loop.train`: resumable, SIGTERM saves a
checkpoint first). `--cpu=K` pins the process to CPU K before JAX starts (one XLA and one BLAS thread),
so concurrent arms do not contend for the same cores. `--study=STUDY_JSON` (the study's
`config.study` as JSON) then measures the trained arm in the same process
(`arms.measure_arm` -> WORKDIR/study_eval.json). WORKDIR/arm_timings.json gets the seconds spent
training and measuring.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
import time
from typing import Any, Sequence

import ml_collections

from phi_jax import cpus


def config_from_json(path: str | os.PathLike) -> ml_collections.ConfigDict:
  """The locked ConfigDict written to `path` by `config_base.as_json` (lists stay lists)."""
  values: dict[str, Any] = json.loads(pathlib.Path(path).read_text())
  config = ml_collections.ConfigDict(values)
  config.lock()
  return config


def main(argv: Sequence[str] | None = None) -> int:
  parser = argparse.ArgumentParser(prog="python -m phi_jax.study.arm_worker",
                                   description=__doc__.split("\n\n")[0])
  parser.add_argument("config_json")
  parser.add_argument("workdir")
  parser.add_argument("--cpu", type=int, default=None, help="pin to this CPU (Linux)")
  parser.add_argument("--study", default=None,
                      help="the study's config.study as JSON: measure the arm after training")
  args = parser.parse_args(argv)
  if args.cpu is not None:
    cpus.pin(args.cpu)  # before jax is imported
  from absl import logging  # pylint: disable=g-import-not-at-top
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  from phi_jax.train import loop  # pylint: disable=g-import-not-at-top
  logging.set_verbosity(logging.ERROR)
  tfds.disable_progress_bar()
  from phi_jax.curation.stages import write_json  # pylint: disable=g-import-not-at-top
  from phi_jax.study import arms  # pylint: disable=g-import-not-at-top
  config = config_from_json(args.config_json)
  workdir = pathlib.Path(args.workdir)
  spent: dict[str, float] = {}
  try:
    start = time.perf_counter()
    loop.train(config, workdir)
    spent["train"] = round(time.perf_counter() - start, 1)
    if args.study is not None:
      start = time.perf_counter()
      arms.measure_arm(workdir, config_from_json(args.study))
      spent["measure"] = round(time.perf_counter() - start, 1)
  except (ValueError, FileNotFoundError, loop.NonFiniteLossError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 1
  finally:
    if spent:
      write_json(workdir / arms.ARM_TIMINGS, spent)
  return 0


if __name__ == "__main__":
  sys.exit(main())
