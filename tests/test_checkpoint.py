"""Checkpointer: keep N, restore into shardings, fall back past a corrupt newest checkpoint."""

import pathlib

import jax
import jax.numpy as jnp
import numpy as np

from phi_jax.train.checkpoint import Checkpointer


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
  ckpt.close()


def test_partial_save_directory_is_ignored(tmp_path):
  ckpt = Checkpointer(tmp_path / "ckpt")
  ckpt.save(1, _state(1.0), force=True)
  ckpt.close()
  # A save killed mid-way leaves a tmp directory, which is not a step.
  (tmp_path / "ckpt" / "2.orbax-checkpoint-tmp-123").mkdir()
  ckpt = Checkpointer(tmp_path / "ckpt")
  assert ckpt.all_steps() == [1]
  ckpt.close()
