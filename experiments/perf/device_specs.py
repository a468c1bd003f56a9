"""Datasheet figures of accelerators, looked up by `jax.Device.device_kind` (NVIDIA datasheets).

Each table lists (substring of device_kind, figure); the first substring found in the device's
kind wins, so more specific names ('H100 NVL') come before general ones ('H100').
"""

from __future__ import annotations

PEAK_BF16_TFLOPS = (("H200", 989.0), ("H100 NVL", 835.0), ("H100 PCIe", 756.0),
                    ("H100", 989.0), ("A100", 312.0))  # dense bf16
HBM_TBPS = (("H200", 4.8), ("H100 NVL", 3.9), ("H100 PCIe", 2.0), ("H100", 3.35),
            ("A100", 2.039))


def lookup(table: tuple[tuple[str, float], ...], kind: str, override: float | None,
           platform: str, what: str, flag: str) -> float | None:
  """The figure x 1e12 (TFLOP/s or TB/s -> per second) for a device of `kind`: `override` if
  given, else the table's. An accelerator missing from the table exits with a message naming
  `flag`; on CPU (no datasheet figure) the result is None."""
  if override is not None:
    return override * 1e12
  for name, value in table:
    if name.lower() in kind.lower():
      return value * 1e12
  if platform != "cpu":
    raise SystemExit(f"unknown device {kind!r}: its {what} is not in the table {table} "
                     f"(experiments/perf/device_specs.py); pass {flag}")
  return None
