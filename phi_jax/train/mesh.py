"""Device mesh ('data', 'fsdp', 'tensor') from a config, and multi-host initialisation.

    mesh = make_mesh({'data': -1, 'fsdp': 1, 'tensor': 1})   # -1 fills with the remaining devices
"""

from __future__ import annotations

import logging
import os
from typing import Any, Mapping, Optional, Sequence

import jax
import numpy as np

MESH_AXES = ("data", "fsdp", "tensor")


def mesh_shape(spec: Mapping[str, int], num_devices: int) -> tuple[int, ...]:
  """Resolves a {'data': -1, 'fsdp': 2, 'tensor': 1} spec into sizes that multiply to num_devices."""
  unknown = sorted(set(spec) - set(MESH_AXES))
  if unknown:
    raise ValueError(f"mesh has unknown axes {unknown}; the axes are {MESH_AXES}")
  sizes = [int(spec.get(axis, 1)) for axis in MESH_AXES]
  if sum(s == -1 for s in sizes) > 1:
    raise ValueError(f"mesh {dict(spec)}: at most one axis may be -1 (fill)")
  if any(s == 0 or s < -1 for s in sizes):
    raise ValueError(f"mesh {dict(spec)}: sizes must be positive or -1")
  known = int(np.prod([s for s in sizes if s != -1]))
  if -1 in sizes:
    if num_devices % known:
      raise ValueError(f"mesh {dict(spec)}: the fixed axes ({known} devices) do not divide the "
                       f"{num_devices} available devices")
    sizes[sizes.index(-1)] = num_devices // known
  if int(np.prod(sizes)) != num_devices:
    raise ValueError(f"mesh {dict(spec)} needs {int(np.prod(sizes))} devices but "
                     f"{num_devices} are available; use -1 on one axis to fill")
  return tuple(sizes)


def make_mesh(spec: Mapping[str, int], devices: Optional[Sequence[Any]] = None) -> jax.sharding.Mesh:
  """A mesh with Auto axis types (flax.linen logical constraints need them)."""
  devices = list(jax.devices() if devices is None else devices)
  shape = mesh_shape(spec, len(devices))
  try:
    from jax.experimental import mesh_utils
    grid = mesh_utils.create_device_mesh(shape, devices=devices)
  except Exception:  # pylint: disable=broad-except  (unusual topologies: plain order)
    grid = np.asarray(devices).reshape(shape)
  return jax.sharding.Mesh(grid, MESH_AXES,
                           axis_types=(jax.sharding.AxisType.Auto,) * len(MESH_AXES))


def maybe_initialize_distributed(cfg: Optional[Mapping[str, Any]] = None) -> bool:
  """Calls jax.distributed.initialize when the config or the environment asks for several processes.

  cfg: the config's `distributed` section (config_base: coordinator_address '', num_processes 0,
  process_id -1, local_device_ids (): each empty value defers to the environment), or None for the
  environment only: JAX_COORDINATOR_ADDRESS / JAX_NUM_PROCESSES / JAX_PROCESS_ID, or SLURM
  (SLURM_NTASKS > 1, detected by jax itself). Returns True when initialised here.
  """
  env = os.environ
  address = (cfg["coordinator_address"] if cfg else "") or env.get("JAX_COORDINATOR_ADDRESS")
  num = (cfg["num_processes"] if cfg else 0) or env.get("JAX_NUM_PROCESSES")
  pid = cfg["process_id"] if cfg and cfg["process_id"] >= 0 else env.get("JAX_PROCESS_ID")
  local_ids = tuple(cfg["local_device_ids"]) if cfg else ()
  slurm = int(env.get("SLURM_NTASKS", "1")) > 1
  if not (address or slurm) or (num is not None and int(num) <= 1 and not slurm):
    return False
  try:  # CPU processes need a collectives backend (no effect on GPU/TPU)
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
  except Exception:  # pylint: disable=broad-except
    logging.warning("could not select gloo CPU collectives")
  kwargs = {}
  if address:
    if num is None or pid is None:
      raise ValueError(f"distributed: coordinator_address {address!r} needs num_processes and "
                       "process_id (config.distributed.* or JAX_NUM_PROCESSES / JAX_PROCESS_ID)")
    kwargs = dict(coordinator_address=address, num_processes=int(num), process_id=int(pid))
  if local_ids:
    kwargs["local_device_ids"] = list(local_ids)
  jax.distributed.initialize(**kwargs)
  logging.info("jax.distributed: process %d of %d", jax.process_index(), jax.process_count())
  return True
