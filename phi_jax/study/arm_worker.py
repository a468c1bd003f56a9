"""One arm of a study, trained in its own process (`study.parallel` > 1 in `phi_jax.study.arms`).

    python -m phi_jax.study.arm_worker CONFIG_JSON WORKDIR [--cpu=K]

CONFIG_JSON is the arm's ordinary training config as `arms.arm_config` makes it, written as JSON
by the study; WORKDIR is the arm's run directory (`train.loop.train`: resumable, SIGTERM saves a
checkpoint first). `--cpu=K` pins the process to CPU K before JAX starts (one XLA and one BLAS thread),
so concurrent arms do not contend for the same cores.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
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
  args = parser.parse_args(argv)
  if args.cpu is not None:
    cpus.pin(args.cpu)  # before jax is imported
  from absl import logging  # pylint: disable=g-import-not-at-top
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  from phi_jax.train import loop  # pylint: disable=g-import-not-at-top
  logging.set_verbosity(logging.ERROR)
  tfds.disable_progress_bar()
  config = config_from_json(args.config_json)
  try:
    loop.train(config, args.workdir)
  except (ValueError, FileNotFoundError, loop.NonFiniteLossError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 1
  return 0


if __name__ == "__main__":
  sys.exit(main())
