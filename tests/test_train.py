"""Training: sharded steps match one device; kill -9 + rerun resumes bitwise; SIGTERM saves;
NaN stops with the step named; bad configs fail clearly."""

import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest
from conftest import tiny

from phi_jax.train import mesh as mesh_lib, optim, step as step_lib

REPO = pathlib.Path(__file__).resolve().parents[1]


def _batch(cfg, batch=8, length=16, seed=0):
  rng = np.random.RandomState(seed)
  return dict(inputs=rng.randint(0, cfg.vocab_size, (batch, length)).astype(np.int32),
              targets=rng.randint(0, cfg.vocab_size, (batch, length)).astype(np.int32),
              segment_ids=np.ones((batch, length), np.int32),
              positions=np.tile(np.arange(length, dtype=np.int32), (batch, 1)),
              loss_mask=(rng.rand(batch, length) > 0.1).astype(np.float32))


def _run_steps(cfg, spec, grad_accum, devices=None, steps=3):
  tx, schedule = optim.make_optimizer(dict(learning_rate=1e-2, warmup_steps=1), 10)
  mesh = mesh_lib.make_mesh(spec, devices)
  state, shardings = step_lib.create_sharded_state(cfg, tx, 16, mesh, jax.random.key(0))
  train_step = step_lib.jit_train_step(step_lib.make_train_step(cfg, tx, schedule, grad_accum),
                                       shardings, mesh)
  losses = []
  for i in range(steps):
    state, metrics = train_step(state, _batch(cfg, seed=i))
    losses.append(float(metrics["loss"]))
  return np.asarray(losses), jax.device_get(state.params), state


@pytest.fixture(scope="module")
def single_device_run():
  cfg, _ = tiny("tiny-serial", num_kv_heads=4, vocab_size=256)
  return cfg, _run_steps(cfg, {"data": 1}, 1, devices=jax.devices()[:1])


@pytest.mark.parametrize("spec,grad_accum", [
    ({"data": -1}, 1), ({"data": 2, "fsdp": 2, "tensor": 2}, 1),
    ({"data": 1, "fsdp": 4, "tensor": 2}, 2), ({"data": 1}, 4)])
def test_sharded_train_step_matches_one_device(single_device_run, spec, grad_accum):
  cfg, (ref_losses, ref_params, _) = single_device_run
  devices = jax.devices()[:1] if spec == {"data": 1} else None
  losses, params, state = _run_steps(cfg, spec, grad_accum, devices)
  np.testing.assert_allclose(losses, ref_losses, rtol=1e-5)
  for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(ref_params)):
    np.testing.assert_allclose(a, b, atol=5e-5)
  kernel = state.params["layers"]["attn"]["q"]["kernel"]  # [L, D, H, Dh]: embed->fsdp, heads->tensor
  if spec.get("tensor", 1) > 1:
    assert kernel.sharding.spec[1:3] == ("fsdp", "tensor")
    assert kernel.addressable_shards[0].data.shape[2] == cfg.num_heads // spec["tensor"]


def test_mesh_errors():
  assert mesh_lib.mesh_shape({"data": -1, "tensor": 2}, 8) == (4, 1, 2)
  with pytest.raises(ValueError, match="do not divide the 8 available"):
    mesh_lib.mesh_shape({"data": -1, "tensor": 3}, 8)
  with pytest.raises(ValueError, match="needs 4 devices but 8 are available"):
    mesh_lib.mesh_shape({"data": 2, "tensor": 2}, 8)
  with pytest.raises(ValueError, match="unknown axes"):
    mesh_lib.mesh_shape({"model": 2}, 8)


def test_schedules():
  lin = optim.make_schedule(dict(learning_rate=1.0, schedule="linear", warmup_steps=10), 110)
  assert float(lin(0)) == 0.0 and float(lin(10)) == 1.0 and abs(float(lin(60)) - 0.5) < 1e-6
  const = optim.make_schedule(dict(learning_rate=2e-4, schedule="constant"), 100)
  assert float(const(0)) == float(const(99)) == pytest.approx(2e-4)
  cos = optim.make_schedule(dict(learning_rate=1.0, schedule="cosine", warmup_steps=0,
                                 end_lr_fraction=0.1), 100)
  assert float(cos(50)) == pytest.approx(0.55, abs=1e-6) and float(cos(100)) == pytest.approx(0.1)
  with pytest.raises(ValueError, match="schedule 'step'"):
    optim.make_schedule(dict(learning_rate=1.0, schedule="step"), 10)
  mask = optim.decay_mask({"a": {"kernel": 1, "bias": 2}, "n": {"scale": 3}, "e": {"embedding": 4}})
  assert mask == {"a": {"kernel": True, "bias": False}, "n": {"scale": False},
                  "e": {"embedding": True}}


# ---- end to end through the CLI ------------------------------------------------------------------

@pytest.fixture(scope="module")
def shared(tmp_path_factory):
  """A prepared dataset and tokenizer shared by the CLI runs (built by a first short run)."""
  root = tmp_path_factory.mktemp("train_shared")
  run = _main(root / "seed_run", root / "data", None, ["--config.total_steps=3"])
  assert run.returncode == 0, run.stderr[-3000:]
  return root / "data", root / "seed_run" / "tokenizer" / "sp.model"


def _main(workdir, data_dir, tokenizer, extra=(), popen=False, xla_flags="", extra_env=None):
  args = [sys.executable, "-m", "phi_jax.main", "--config=configs/quickstart.py:smoke",
          f"--workdir={workdir}", f"--config.data.data_dir={data_dir}",
          "--config.data.max_files=12", "--config.report=False", *extra]
  if tokenizer:
    args.append(f"--config.data.tokenizer={tokenizer}")
  # One persistent compilation cache for all runs of this module: the same programs compile once.
  env = dict(os.environ, XLA_FLAGS=f"--xla_backend_optimization_level=0 {xla_flags}",
             JAX_COMPILATION_CACHE_DIR=str(pathlib.Path(data_dir).parent / "jax_cache"),
             JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
             JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0", **(extra_env or {}))
  if popen:
    return subprocess.Popen(args, cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
  return subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)


def _losses(workdir):
  out = {}
  for line in (pathlib.Path(workdir) / "metrics.jsonl").read_text().splitlines():
    record = json.loads(line)
    if "loss" in record:
      out[record["step"]] = record["loss"]
  return out


def _wait_for_checkpoint(workdir, step, proc, timeout=300):
  deadline = time.time() + timeout
  while time.time() < deadline:
    if (pathlib.Path(workdir) / "checkpoints" / str(step)).is_dir():
      return
    assert proc.poll() is None, proc.communicate()[1][-3000:]
    time.sleep(0.05)
  raise TimeoutError(f"no checkpoint {step} in {workdir}")


@pytest.mark.slow
def test_kill9_then_rerun_matches_uninterrupted_run_bitwise(shared, tmp_path):
  data_dir, tok = shared
  steps = ["--config.total_steps=16", "--config.checkpoint_every=4", "--config.log_every=2"]
  ref = _main(tmp_path / "ref", data_dir, tok, steps)
  assert ref.returncode == 0, ref.stderr[-3000:]
  proc = _main(tmp_path / "killed", data_dir, tok, steps, popen=True)
  _wait_for_checkpoint(tmp_path / "killed", 8, proc)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  rerun = _main(tmp_path / "killed", data_dir, tok, steps)
  assert rerun.returncode == 0, rerun.stderr[-3000:]
  assert "Resumed" in rerun.stdout
  ref_losses, resumed = _losses(tmp_path / "ref"), _losses(tmp_path / "killed")
  assert resumed[16] == ref_losses[16]  # bitwise: same floats in the JSON
  assert all(resumed[s] == ref_losses[s] for s in ref_losses)
  assert ref_losses[16] < ref_losses[2]


@pytest.mark.slow
def test_sigterm_saves_a_checkpoint_and_exits_cleanly(shared, tmp_path):
  data_dir, tok = shared
  proc = _main(tmp_path / "run", data_dir, tok, ["--config.total_steps=100000",
                                                  "--config.checkpoint_every=2"], popen=True)
  _wait_for_checkpoint(tmp_path / "run", 2, proc)
  proc.send_signal(signal.SIGTERM)
  out, err = proc.communicate(timeout=300)
  assert proc.returncode == 0, err[-3000:]
  assert "Stopped by SIGTERM" in out
  steps = sorted(int(p.name) for p in (tmp_path / "run" / "checkpoints").iterdir()
                 if p.name.isdigit())
  summary = json.loads((tmp_path / "run" / "summary.json").read_text())
  assert summary["stopped_by"] == "SIGTERM" and steps[-1] == summary["step"]


def test_nan_loss_stops_and_names_the_step(shared, tmp_path):
  data_dir, tok = shared
  run = _main(tmp_path / "nan", data_dir, tok, ["--config.optimizer.learning_rate=1e30",
                                                 "--config.optimizer.grad_clip_norm=0",
                                                 "--config.total_steps=8", "--config.log_every=1"])
  assert run.returncode == 1
  assert "at step" in run.stderr and "last good checkpoint" in run.stderr


def test_misspelled_override_fails_clearly(tmp_path):
  run = _main(tmp_path / "x", tmp_path / "d", None, ["--config.total_step=3"])
  assert run.returncode != 0 and "total_step" in run.stderr


def test_config_json_written(shared):
  data_dir, _ = shared
  config = json.loads((data_dir.parent / "seed_run" / "config.json").read_text())
  assert config["total_steps"] == 3 and config["model"]["name"] == "phi-1"


def _free_port() -> int:
  import socket
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


@pytest.mark.slow
def test_two_process_distributed_run_matches_single_process(shared, tmp_path):
  """2 processes x 2 CPU devices (jax.distributed on 127.0.0.1, gloo collectives) == 1 x 4."""
  data_dir, tok = shared
  steps = ["--config.total_steps=6", "--config.checkpoint_every=3", "--config.log_every=2"]
  single = _main(tmp_path / "single", data_dir, tok, steps,
                 xla_flags="--xla_force_host_platform_device_count=4")
  assert single.returncode == 0, single.stderr[-3000:]
  port = _free_port()
  procs = [_main(tmp_path / "multi", data_dir, tok, steps, popen=True,
                 xla_flags="--xla_force_host_platform_device_count=2",
                 extra_env={"JAX_COORDINATOR_ADDRESS": f"127.0.0.1:{port}",
                            "JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": str(i)})
           for i in range(2)]
  for proc in procs:
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]
  assert "mesh {'data': 4" in out or "mesh {'data': 4" in single.stdout
  multi, ref = _losses(tmp_path / "multi"), _losses(tmp_path / "single")
  assert multi.keys() == ref.keys()
  for step in ref:
    assert multi[step] == pytest.approx(ref[step], rel=1e-5)


def test_task_evals_run_during_training(shared, tmp_path):
  """config.evals: HumanEval (2 problems) every 2 steps lands in metrics.jsonl."""
  from phi_jax.sweep import load_config
  from phi_jax.train import loop
  data_dir, tok = shared
  config = load_config(f"{REPO}/configs/quickstart.py:smoke")
  with config.unlocked():
    config.total_steps, config.eval_every, config.report = 4, 0, False
    config.data.update(data_dir=str(data_dir), tokenizer=str(tok), max_files=12)
    config.evals.update(every=2, tasks=["humaneval"], limit=2, max_new_tokens=8)
  loop.train(config, tmp_path / "evals")
  records = [json.loads(line) for line in (tmp_path / "evals" / "metrics.jsonl").read_text()
             .splitlines()]
  evals = {r["step"]: r for r in records if "eval/humaneval/pass@1" in r}
  assert sorted(evals) == [2, 4]
  assert all(0.0 <= r["eval/humaneval/pass@1"] <= 1.0 for r in evals.values())
