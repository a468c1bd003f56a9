"""Parsing the variant argument of a config file (`configs/FILE.py:ARG`)."""

from __future__ import annotations

from typing import Any


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

