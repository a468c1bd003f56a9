"""Orbax checkpoints of the train state and the data iterator, with exact resume.

    ckpt = Checkpointer(workdir / 'checkpoints', max_to_keep=3)
    restored = ckpt.restore_latest(abstract_state, data_iter)   # None on a fresh workdir
    ckpt.save(step, state, data_iter)                            # async; ckpt.wait() to finish

A save interrupted by a crash leaves `<step>.orbax-checkpoint-tmp*`, which orbax ignores. A
finalized but unreadable newest checkpoint (disk error, truncated file) is reported with a warning,
moved aside to `<step>.unreadable`, and the previous one is used. A readable checkpoint of another
state (other shapes: a changed model or optimizer) is not corruption: CheckpointMismatchError.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Optional

import grain
import jax
import orbax.checkpoint as ocp


class CheckpointMismatchError(ValueError):
  """A readable checkpoint whose state tree or shapes are not the ones the run expects."""


def _key_name(key: Any) -> str:
  for attr in ("key", "name", "idx"):
    if hasattr(key, attr):
      return str(getattr(key, attr))
  return str(key)


def _shapes(tree: Any) -> dict[str, tuple[int, ...]]:
  """'/'-joined leaf paths -> shapes, of a state, its abstract version or a checkpoint's metadata."""
  leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
  return {"/".join(_key_name(k) for k in path): tuple(leaf.shape) for path, leaf in leaves}


def _mismatch_message(directory: str, step: int, stored: dict, want: dict, limit: int = 6) -> str:
  lines = [f"the checkpoint at step {step} in {directory} is readable but holds a different "
           "train state than this config builds (it is not corrupt; nothing was changed):"]
  diffs = [f"  {k}: {stored[k]} stored, {want[k]} expected" for k in sorted(set(stored) & set(want))
           if stored[k] != want[k]]
  diffs += [f"  {k}: stored, not expected" for k in sorted(set(stored) - set(want))]
  diffs += [f"  {k}: expected, not stored" for k in sorted(set(want) - set(stored))]
  lines += diffs[:limit] + ([f"  ... and {len(diffs) - limit} more"] if len(diffs) > limit else [])
  lines.append("Resume with the config that wrote it, or start a new run in a new --workdir.")
  return "\n".join(lines)


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

  def _step_path(self, step: int):
    name_format = self.manager._step_name_format  # pylint: disable=protected-access
    return ocp.step.build_step_path(self.directory, name_format, step)

  def stored_shapes(self, step: int) -> dict[str, tuple[int, ...]]:
    """{'params/embed/embedding': shape, ...} of a checkpoint's state, from its metadata (no
    array is read). Raises if the metadata is unreadable."""
    tree = ocp.StandardCheckpointHandler().metadata(self._step_path(step) / "state").tree
    return _shapes(tree)

  def restore_latest(self, abstract_state: Any, data_iter: Any = None) -> Optional[tuple[int, Any]]:
    """(step, state) from the newest readable checkpoint, restoring data_iter in place; or None.

    A checkpoint whose files cannot be read (truncated, missing, garbage) is corrupt: a warning
    names it, it is moved aside to `<step>.unreadable` (kept for inspection, and out of the way of
    the step the resumed run will save again), and the previous one is tried. A readable checkpoint
    whose tree or shapes differ from `abstract_state` is not corruption: CheckpointMismatchError
    names the first differences and nothing is moved.
    """
    want = _shapes(abstract_state)
    for step in reversed(self.all_steps()):
      try:
        stored = self.stored_shapes(step)
      except Exception as e:  # pylint: disable=broad-except
        self._set_aside(step, e)
        continue
      if stored != want:
        raise CheckpointMismatchError(_mismatch_message(self.directory, step, stored, want))
      try:
        return step, self.restore(step, abstract_state, data_iter)
      except Exception as e:  # pylint: disable=broad-except
        self._set_aside(step, e)
    return None

  def _set_aside(self, step: int, error: Exception) -> None:
    path = self._step_path(step)
    aside = f"{path}.unreadable"
    n = 1
    while os.path.exists(aside):
      n += 1
      aside = f"{path}.unreadable{n}"
    logging.warning("checkpoint at step %d in %s is unreadable (%s: %s); moved to %s, falling "
                    "back to the previous one", step, self.directory, type(error).__name__, error,
                    aside)
    print(f"WARNING: checkpoint step {step} is unreadable ({type(error).__name__}: {error}); "
          f"moved to {aside}; trying the previous one", flush=True)
    os.replace(path, aside)
    self.manager.reload()

  def wait(self) -> None:
    self.manager.wait_until_finished()

  def close(self) -> None:
    self.manager.wait_until_finished()
    self.manager.close()


def load_run(workdir: str | os.PathLike, step: Optional[int] = None):
  """(ModelConfig, params, tokenizer or None) of a training run's checkpoint (newest by default).

  For notebooks and evaluation: the params come back as host arrays. A thin wrapper over
  `phi_jax.convert.load.load_model`, which reads every model format.
  """
  from phi_jax.convert import load
  if load.detect(workdir) != "workdir":
    raise ValueError(f"{workdir} is not a training workdir (model_config.json + checkpoints/); "
                     "phi_jax.convert.load.load_model reads the other model formats")
  m = load.load_model(workdir, step=step, param_dtype=None)
  return m.cfg, m.params, m.tokenizer
