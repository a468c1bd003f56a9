"""Run (or resume) a data pipeline: python -m phi_jax.curation --config=configs/data/FILE.py[:ARG] --workdir=DIR.

The config's `stages` run in order (see `phi_jax.curation.stages`); each writes WORKDIR/<stage>/ and a
stage.json marker, so rerunning the command skips what is finished and redoes what changed.
Single fields are overridden on the command line (--config.quality.keep_fraction=0.3); the config
is locked, so a misspelled field fails with the valid ones. At the end it prints a table of the
documents and tokens each stage kept and the flags that train on the result.
"""

from __future__ import annotations

import sys

from absl import app, flags, logging
from phi_jax import config_args

_CONFIG = config_args.define_config_flag()  # the same --config / --config.KEY=VALUE as main
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for the stages' outputs.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  logging.set_verbosity(logging.ERROR)
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  tfds.disable_progress_bar()
  from phi_jax.curation import stages  # pylint: disable=g-import-not-at-top
  try:
    stages.run(_CONFIG.value, _WORKDIR.value)
  except (ValueError, FileNotFoundError) as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(1)


if __name__ == "__main__":
  app.run(main)
