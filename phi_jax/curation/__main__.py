"""Run (or resume) a data pipeline: python -m phi_jax.curation --config=configs/data/FILE.py[:ARG] --workdir=DIR.

The config's `stages` run in order (see `phi_jax.curation.stages`); each writes WORKDIR/<stage>/ and a
stage.json marker, so rerunning the command skips what is finished and redoes what changed.
Single fields are overridden on the command line (--config.quality.keep_fraction=0.3); the config
is locked, so a misspelled field fails with the valid ones. At the end it prints a table of the
documents and tokens each stage kept and the flags that train on the result.

`--workers=N` runs the same config streaming over shards on N worker processes (datatrove's local
executor; `--shards`, `--executor=slurm|ray` for a cluster): `phi_jax.curation.sharded`.
"""

from __future__ import annotations

import sys

from absl import app, flags, logging
from phi_jax import config_args

_CONFIG = config_args.define_config_flag()  # the same --config / --config.KEY=VALUE as main
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for the stages' outputs.")
_WORKERS = flags.DEFINE_integer(
    "workers", None, "Run the stages streaming over shards with this many worker processes "
    "(datatrove's local executor; 0 = in memory, one process). Default: config.workers or 0.")
_SHARDS = flags.DEFINE_integer("shards", None, "Shards per stage (sharded path; default: "
                               "config.shards, else 4 x workers).")
_EXECUTOR = flags.DEFINE_enum("executor", None, ["local", "slurm", "ray"],
                              "Where the sharded tasks run (default: config.executor or local); "
                              "slurm / ray take --executor_options (docs/DATA_AT_SCALE.md).")
_EXECUTOR_OPTIONS = flags.DEFINE_list(
    "executor_options", None, "KEY=VALUE,... keyword arguments of datatrove's Slurm / Ray "
    "executor (partition=cpu,time=4:00:00,cpus_per_task=2); numbers are parsed as numbers.")


def _options(items: list[str]) -> dict:
  out = {}
  for item in items:
    key, sep, value = item.partition("=")
    if not sep or not key:
      raise app.UsageError(f"--executor_options wants KEY=VALUE items, got {item!r}")
    for cast in (int, float):
      try:
        value = cast(value)
        break
      except ValueError:
        pass
    out[key] = value
  return out
flags.mark_flags_as_required(["config", "workdir"])


def main(argv) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  logging.set_verbosity(logging.ERROR)
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  tfds.disable_progress_bar()
  from phi_jax.curation import stages  # pylint: disable=g-import-not-at-top
  config = _CONFIG.value
  with config.unlocked():
    for key, flag in (("workers", _WORKERS), ("shards", _SHARDS), ("executor", _EXECUTOR)):
      if flag.value is not None:
        config[key] = flag.value
    if _EXECUTOR_OPTIONS.value is not None:
      config["executor_options"] = _options(_EXECUTOR_OPTIONS.value)
  try:
    stages.run(config, _WORKDIR.value)
  except (ValueError, FileNotFoundError) as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(1)


if __name__ == "__main__":
  app.run(main)
