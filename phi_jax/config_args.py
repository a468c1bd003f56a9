"""Config files and their command-line overrides: one path for main, sweep and aot.

    --config=configs/FILE.py[:ARG] --config.KEY=VALUE ...

`--config.KEY=VALUE` is parsed by ml_collections' config_flags everywhere (typed by the field it
replaces: ints, floats, bools (true/false), strings, tuples `"('a', 'b')"`; None-valued fields only
where the config declares their type with a FieldReference). `python -m phi_jax.main` defines the
flag with `define_config_flag`; `python -m phi_jax.sweep` and `python -m phi_jax.aot` (and tests,
notebooks) call `load_config(spec, overrides)`, which runs the same parser on its own flag
registry, so a sweep's run configs are exactly what main will parse from the commands it starts.
A misspelled key fails with the valid keys at its level. Nothing here imports jax.

`parse_arg` parses the variant argument of a config file (`configs/FILE.py:ARG`).
"""

from __future__ import annotations

import os
import sys
from typing import Any, Mapping, Optional, Sequence

import ml_collections
from absl import flags
from ml_collections import config_flags

_HELP = "Experiment config file (a .py with get_config(arg)), optionally followed by :ARG."


def parse_arg(arg: str, defaults: dict[str, Any]) -> dict[str, Any]:
  """'size=350m,stage=finetune,tiny' -> {'size': '350m', 'stage': 'finetune', 'tiny': True}.

  A bare word is a flag set to True; keys must be in `defaults` (else ValueError listing them).
  """
  out = dict(defaults)
  for part in filter(None, (p.strip() for p in (arg or "").split(","))):
    key, sep, value = part.partition("=")
    if key not in out:
      raise ValueError(f"Unknown config variant {key!r} in {arg!r}; valid: {sorted(out)}")
    out[key] = value if sep else True
  return out


def define_config_flag(flag_values: flags.FlagValues = flags.FLAGS,
                       sys_argv: Optional[Sequence[str]] = None) -> flags.FlagHolder:
  """`--config` (+ `--config.KEY=VALUE` overrides, config locked) on `flag_values`."""
  return config_flags.DEFINE_config_file("config", None, _HELP, flag_values=flag_values,
                                         lock_config=True,
                                         sys_argv=None if sys_argv is None else list(sys_argv))


def format_value(value: Any) -> str:
  """A Python value as config_flags parses it back (floats exactly, bools true/false)."""
  if isinstance(value, bool):
    return "true" if value else "false"
  if isinstance(value, float):
    return repr(value)
  if isinstance(value, (tuple, list)):
    return repr(tuple(value))
  return str(value)


def override_flags(overrides: Mapping[str, Any]) -> list[str]:
  """{'optimizer.learning_rate': 1e-3} -> ['--config.optimizer.learning_rate=0.001']."""
  return [f"--config.{key}={format_value(value)}" for key, value in overrides.items()]


def parse_overrides(items: Sequence[str]) -> dict[str, str]:
  """['total_steps=3', 'data.max_files=10'] (or with a leading '--config.') -> a dict."""
  out = {}
  for item in items:
    text = item[len("--config."):] if item.startswith("--config.") else item
    key, sep, value = text.partition("=")
    if not sep or not key:
      raise ValueError(f"override {item!r} is not KEY=VALUE (--config.KEY=VALUE)")
    out[key] = value
  return out


def relock(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """Locks every section, also those a config file assigned after the base was locked."""
  with config.unlocked():
    pass
  return config


def _missing_key(config: ml_collections.ConfigDict, key: str) -> Optional[str]:
  """Why `key` does not name a field of `config`, or None when it does."""
  node: Any = config
  parts = key.split(".")
  for depth, name in enumerate(parts):
    if not isinstance(node, ml_collections.ConfigDict) or name not in node:
      here = ".".join(parts[:depth]) or "the top level"
      valid = sorted(node.keys()) if isinstance(node, ml_collections.ConfigDict) else []
      return f"the config has no field {key!r}; valid fields at {here}: {valid}"
    node = node[name]
  return None


def _explain(spec: str, overrides: Sequence[str], error: Exception) -> str:
  """A message for a failed parse: a misspelled key names the valid ones."""
  try:
    bare = _parse(spec, ())
  except Exception:  # pylint: disable=broad-except  (the config itself fails: say that)
    return f"{type(error).__name__}: {error}"
  for key in parse_overrides(overrides):
    why = _missing_key(bare, key)
    if why:
      return why
  return str(error) or type(error).__name__


def _parse(spec: str, override_args: Sequence[str]) -> ml_collections.ConfigDict:
  argv = ["phi_jax", f"--config={spec}", *override_args]
  flag_values = flags.FlagValues()
  holder = define_config_flag(flag_values, argv)
  flag_values(argv)
  return relock(holder.value)


def load_config(spec: str,
                overrides: Sequence[str] | Mapping[str, Any] = ()) -> ml_collections.ConfigDict:
  """`configs/FILE.py[:ARG]` + overrides -> the locked config `python -m phi_jax.main` would run.

  overrides: {'optimizer.learning_rate': 1e-3} (values formatted by `format_value`) or
  ['optimizer.learning_rate=1e-3', '--config.total_steps=3'] (strings as on the command line).
  Raises ValueError saying what is wrong (a missing file, an unknown key, a bad value).
  """
  if isinstance(overrides, Mapping):
    args = override_flags(overrides)
  else:  # strings: passed on as written
    args = [f"--config.{k}={v}" for k, v in parse_overrides(overrides).items()]
  path = spec.partition(":")[0]
  if not os.path.isfile(path):
    raise ValueError(f"config file {path!r} does not exist")
  try:
    return _parse(spec, args)
  except (flags.Error, AttributeError, KeyError, TypeError) as e:
    raise ValueError(_explain(spec, args, e)) from None


def command_line_error(argv: Sequence[str], error: Exception) -> str:
  """The message main prints for a failed flag parse (`--config.total_step=3`: the valid keys)."""
  spec = next((a.split("=", 1)[1] for a in argv if a.startswith("--config=")), None)
  overrides = [a for a in argv if a.startswith("--config.")]
  if spec is None:
    return str(error)
  return _explain(spec, overrides, error)


def parse_command_line(argv: Sequence[str]) -> list[str]:
  """absl's flag parsing for `app.run(flags_parser=...)`, with messages a user can act on."""
  try:
    return flags.FLAGS(list(argv))
  except (flags.Error, AttributeError, KeyError, TypeError, ValueError) as e:
    print(f"error: {command_line_error(argv, e)}", file=sys.stderr)
    sys.exit(2)
