"""Train (or resume) a run: python -m phi_jax.main --config=configs/FILE.py[:ARG] --workdir=DIR.

A config with `arms` (configs/quickstart.py) is a study: the same run trained on each arm's data,
then compared in WORKDIR/report.md (`phi_jax.study.arms`); each arm is an ordinary run in
WORKDIR/<arm>/.

Single fields are overridden on the command line (--config.total_steps=300); the config is locked,
so a misspelled field fails with the list of valid ones (`phi_jax.config_args`: the same parser as
`python -m phi_jax.sweep` and `python -m phi_jax.aot`). Rerunning the same command on a workdir
that has checkpoints resumes from the newest complete one; a config that differs from the
workdir's config.json in a field that defines the run (model, data, optimizer, seed; see
`phi_jax.train.config_base.RESUMABLE` for what may change) is refused before anything is written.
"""

from __future__ import annotations

import sys

from absl import app, flags, logging

from phi_jax import config_args
from phi_jax.train import loop

_CONFIG = config_args.define_config_flag()
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and reports.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  logging.set_verbosity(logging.ERROR)
  import tensorflow_datasets as tfds
  tfds.disable_progress_bar()
  config = config_args.relock(_CONFIG.value)
  try:
    if config.arms:
      from phi_jax.study import arms  # pylint: disable=g-import-not-at-top
      try:
        arms.run(config, _WORKDIR.value)
      except arms.ArmFailedError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
      return
    summary = loop.train(config, _WORKDIR.value)
  except (ValueError, FileNotFoundError, loop.NonFiniteLossError) as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(1)
  if summary.get("report"):
    print(f"Report: {summary['report']}")


if __name__ == "__main__":
  app.run(main, flags_parser=config_args.parse_command_line)
