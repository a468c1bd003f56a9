"""Orbax checkpoints of the train state and the data iterator, with exact resume.

    ckpt = Checkpointer(workdir / 'checkpoints', max_to_keep=3)
    restored = ckpt.restore_latest(abstract_state, data_iter)   # None on a fresh workdir
    ckpt.save(step, state, data_iter)                            # async; ckpt.wait() to finish

A save interrupted by a crash leaves `<step>.orbax-checkpoint-tmp*`, which orbax ignores. A
finalized but unreadable newest checkpoint (disk error, truncated file) is reported with a warning
and the previous one is used.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Optional

import pathlib

import grain
import jax
import orbax.checkpoint as ocp


class Checkpointer:
  """A CheckpointManager over {'state': train state, 'data_iter': grain iterator state}."""

  def __init__(self, directory: str | os.PathLike, max_to_keep: int = 3, async_save: bool = True):
    self.directory = os.path.abspath(os.fspath(directory))
    self.manager = ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep,
                                             enable_async_checkpointing=async_save, create=True))

  def latest_step(self) -> Optional[int]:
    return self.manager.latest_step()

  def all_steps(self) -> list[int]:
    return sorted(self.manager.all_steps())

  def save(self, step: int, state: Any, data_iter: Any = None, force: bool = False) -> bool:
    items = {"state": ocp.args.StandardSave(state)}
    if data_iter is not None:
      items["data_iter"] = grain.checkpoint.CheckpointSave(data_iter)
    return self.manager.save(step, args=ocp.args.Composite(**items), force=force)

  def restore(self, step: int, abstract_state: Any, data_iter: Any = None) -> Any:
    items = {"state": ocp.args.StandardRestore(abstract_state)}
    if data_iter is not None:
      items["data_iter"] = grain.checkpoint.CheckpointRestore(data_iter)
    return self.manager.restore(step, args=ocp.args.Composite(**items))["state"]

  def restore_latest(self, abstract_state: Any, data_iter: Any = None) -> Optional[tuple[int, Any]]:
    """(step, state) from the newest readable checkpoint, restoring data_iter in place; or None."""
    for step in reversed(self.all_steps()):
      try:
        return step, self.restore(step, abstract_state, data_iter)
      except Exception as e:  # pylint: disable=broad-except
        logging.warning("checkpoint at step %d in %s is unreadable (%s: %s); falling back to the "
                        "previous one", step, self.directory, type(e).__name__, e)
        print(f"WARNING: checkpoint step {step} is unreadable ({type(e).__name__}: {e}); "
              "trying the previous one", flush=True)
    return None

  def wait(self) -> None:
    self.manager.wait_until_finished()

  def close(self) -> None:
    self.manager.wait_until_finished()
    self.manager.close()


def load_run(workdir: str | os.PathLike, step: Optional[int] = None):
  """(ModelConfig, params, tokenizer or None) of a training run's checkpoint (newest by default).

  For notebooks and evaluation: the params come back as host arrays.
  """
  from phi_jax.convert import checkpoint_io
  from phi_jax.data import tokenizer as tokenizers
  workdir = pathlib.Path(workdir)
  cfg = checkpoint_io.config_from_json((workdir / "model_config.json").read_text())
  tok_file = workdir / "tokenizer" / "sp.model"
  tokenizer = tokenizers.load(tok_file) if tok_file.exists() else None
  manager = ocp.CheckpointManager(os.path.abspath(workdir / "checkpoints"),
                                  options=ocp.CheckpointManagerOptions(read_only=True))
  step = manager.latest_step() if step is None else step
  if step is None:
    raise FileNotFoundError(f"No checkpoint in {workdir / 'checkpoints'}")
  restored = manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore()))
  params = jax.device_get(restored["state"]["params"])
  manager.close()
  return cfg, params, tokenizer
