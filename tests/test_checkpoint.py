"""Checkpointer: keep N, restore into shardings, fall back past a corrupt newest checkpoint (moved
aside, so the resumed run can save that step again); a readable checkpoint of other shapes is a
mismatch, not corruption, and nothing is moved."""

import hashlib
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from phi_jax.train.checkpoint import CheckpointMismatchError, Checkpointer


def _state(value: float):
  return {"params": {"w": jnp.full((4, 3), value, jnp.float32)}, "step": jnp.int32(int(value))}


def test_keep_n_and_restore_latest(tmp_path):
  ckpt = Checkpointer(tmp_path / "ckpt", max_to_keep=2)
  for step in (1, 2, 3):
    ckpt.save(step, _state(step), force=True)
  ckpt.wait()
  assert ckpt.all_steps() == [2, 3]
  abstract = jax.eval_shape(lambda: _state(0.0))
  step, state = ckpt.restore_latest(abstract)
  assert step == 3 and float(state["params"]["w"][0, 0]) == 3.0
  ckpt.close()


def test_corrupt_newest_checkpoint_falls_back_with_a_warning(tmp_path, capsys):
  ckpt = Checkpointer(tmp_path / "ckpt", max_to_keep=3, async_save=False)
  ckpt.save(1, _state(1.0), force=True)
  ckpt.save(2, _state(2.0), force=True)
  ckpt.close()
  # Finalized but unreadable: truncate every data file of step 2.
  files = [p for p in (tmp_path / "ckpt" / "2").rglob("*") if p.is_file() and p.stat().st_size]
  assert files
  for path in files:
    path.write_bytes(b"\0" * 3)
  ckpt = Checkpointer(tmp_path / "ckpt")
  step, state = ckpt.restore_latest(jax.eval_shape(lambda: _state(0.0)))
  assert step == 1
  np.testing.assert_array_equal(state["params"]["w"], np.ones((4, 3), np.float32))
  assert "checkpoint step 2 is unreadable" in capsys.readouterr().out
  # Moved aside (kept), no longer a step: the resumed run saves step 2 again without
  # "Checkpoint for step 2 already exists".
  assert ckpt.all_steps() == [1] and (tmp_path / "ckpt" / "2.unreadable").is_dir()
  ckpt.save(2, _state(5.0), force=True)
  ckpt.wait()
  assert ckpt.all_steps() == [1, 2]
  ckpt.close()


def test_missing_files_are_corruption_too(tmp_path):
  ckpt = Checkpointer(tmp_path / "ckpt", async_save=False)
  ckpt.save(1, _state(1.0), force=True)
  ckpt.save(2, _state(2.0), force=True)
  ckpt.close()
  for path in (tmp_path / "ckpt" / "2" / "state").iterdir():
    if path.is_file():
      path.unlink()
  ckpt = Checkpointer(tmp_path / "ckpt")
  step, _ = ckpt.restore_latest(jax.eval_shape(lambda: _state(0.0)))
  assert step == 1
  ckpt.close()


def _hashes(root: pathlib.Path) -> dict[str, str]:
  return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
          for p in sorted(root.rglob("*")) if p.is_file()}


def test_shape_mismatch_is_not_corruption(tmp_path):
  ckpt = Checkpointer(tmp_path / "ckpt", async_save=False)
  ckpt.save(1, _state(1.0), force=True)
  ckpt.save(2, _state(2.0), force=True)
  ckpt.close()
  before = _hashes(tmp_path)
  other = jax.eval_shape(lambda: {"params": {"w": jnp.zeros((4, 5), jnp.float32)},
                                  "step": jnp.int32(0)})
  ckpt = Checkpointer(tmp_path / "ckpt")
  with pytest.raises(CheckpointMismatchError,
                     match=r"params/w: \(4, 3\) stored, \(4, 5\) expected"):
    ckpt.restore_latest(other)
  extra = jax.eval_shape(lambda: {**_state(0.0), "bias": jnp.zeros((3,))})
  with pytest.raises(CheckpointMismatchError, match="bias: expected, not stored"):
    ckpt.restore_latest(extra)
  ckpt.close()
  assert _hashes(tmp_path) == before and sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == [
      "1", "2"]


def test_partial_save_directory_is_ignored(tmp_path):
  ckpt = Checkpointer(tmp_path / "ckpt")
  ckpt.save(1, _state(1.0), force=True)
  ckpt.close()
  # A save killed mid-way leaves a tmp directory, which is not a step.
  (tmp_path / "ckpt" / "2.orbax-checkpoint-tmp-123").mkdir()
  ckpt = Checkpointer(tmp_path / "ckpt")
  assert ckpt.all_steps() == [1]
  ckpt.close()
