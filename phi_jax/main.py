"""Train (or resume) a run: python -m phi_jax.main --config=configs/FILE.py[:ARG] --workdir=DIR.

Single fields are overridden on the command line (--config.total_steps=300); the config is locked,
so a misspelled field fails with the list of valid ones. Rerunning the same command on a workdir that
has checkpoints resumes from the newest complete one.
"""

from __future__ import annotations

import sys

from absl import app, flags, logging
from ml_collections import config_flags

from phi_jax.train import loop

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file (a .py with "
                                          "get_config(arg)), optionally followed by :ARG.",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and reports.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  logging.set_verbosity(logging.ERROR)
  import tensorflow_datasets as tfds
  tfds.disable_progress_bar()
  try:
    summary = loop.train(_CONFIG.value, _WORKDIR.value)
  except (ValueError, FileNotFoundError, loop.NonFiniteLossError) as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(1)
  if summary.get("report"):
    print(f"Report: {summary['report']}")


if __name__ == "__main__":
  app.run(main)
