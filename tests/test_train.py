"""Training: sharded steps match one device; a stop + rerun resumes bitwise (after kill -9 too);
SIGTERM saves; NaN stops with the step named; bad configs fail clearly; a rerun with another config
is refused leaving the earlier run byte-identical; the logged loss is the interval's mean.

No test here depends on timing: processes are waited on (with generous hang guards only), and
the assertions are about what a run recorded (metrics.jsonl, summary.json, checkpoints), not when.
"""

import hashlib
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

from phi_jax.config_args import load_config
from phi_jax.train import config_base, loop, mesh as mesh_lib, optim, step as step_lib

REPO = pathlib.Path(__file__).resolve().parents[1]


def _batch(cfg, batch=8, length=16, seed=0):
  rng = np.random.RandomState(seed)
  return dict(inputs=rng.randint(0, cfg.vocab_size, (batch, length)).astype(np.int32),
              targets=rng.randint(0, cfg.vocab_size, (batch, length)).astype(np.int32),
              segment_ids=np.ones((batch, length), np.int32),
              positions=np.tile(np.arange(length, dtype=np.int32), (batch, 1)),
              loss_mask=(rng.rand(batch, length) > 0.1).astype(np.float32))


def _run_steps(cfg, spec, grad_accum, devices=None, steps=3):
  tx, schedule = optim.make_optimizer(config_base.optimizer(learning_rate=1e-2, warmup_steps=1),
                                      10)
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
  opt = config_base.optimizer
  lin = optim.make_schedule(opt(learning_rate=1.0, schedule="linear", warmup_steps=10), 110)
  assert float(lin(0)) == 0.0 and float(lin(10)) == 1.0 and abs(float(lin(60)) - 0.5) < 1e-6
  const = optim.make_schedule(opt(learning_rate=2e-4, schedule="constant"), 100)
  assert float(const(0)) == float(const(99)) == pytest.approx(2e-4)
  cos = optim.make_schedule(opt(learning_rate=1.0, schedule="cosine", warmup_steps=0,
                                end_lr_fraction=0.1), 100)
  assert float(cos(50)) == pytest.approx(0.55, abs=1e-6) and float(cos(100)) == pytest.approx(0.1)
  with pytest.raises(ValueError, match="schedule 'step'"):
    optim.make_schedule(opt(learning_rate=1.0, schedule="step"), 10)
  with pytest.raises(ValueError, match="lacks .*'b1'"):  # the schema, not hidden defaults
    optim.make_schedule(dict(learning_rate=1.0, schedule="linear", warmup_steps=1), 10)
  mask = optim.decay_mask({"a": {"kernel": 1, "bias": 2}, "n": {"scale": 3}, "e": {"embedding": 4}})
  assert mask == {"a": {"kernel": True, "bias": False}, "n": {"scale": False},
                  "e": {"embedding": True}}


def test_durations_are_steps_or_fractions_of_the_run():
  quickstart = f"{REPO}/configs/quickstart.py"
  # A smoke run is one flag (it failed with "warmup_steps=30 must be in [0, decay_steps=5)").
  short = load_config(quickstart, ["total_steps=5"])
  tx, schedule = optim.make_optimizer(short.optimizer, short.total_steps)
  assert loop.intervals(short) == loop.Intervals(log=1, eval=5, checkpoint=2, evals=0)
  full = load_config(quickstart)
  assert full.total_steps == 950  # 5% of 950 = 47.5 rounds to 48
  assert optim.warmup_steps(full.optimizer, full.total_steps) == 48
  assert loop.intervals(full) == loop.Intervals(log=25, eval=950, checkpoint=475, evals=0)
  lr = optim.make_schedule(config_base.optimizer(learning_rate=1.0, warmup_fraction=0.1), 200)
  assert float(lr(10)) == pytest.approx(0.5) and float(lr(20)) == pytest.approx(1.0)
  with pytest.raises(ValueError, match=r"both optimizer.warmup_steps=30 and "
                                       r"optimizer.warmup_fraction=0.05 are set"):
    optim.make_optimizer(load_config(quickstart, ["optimizer.warmup_steps=30"]).optimizer, 300)
  with pytest.raises(ValueError, match="both log_every=5 and log_every_fraction=0.0263158"):
    loop.intervals(load_config(quickstart, ["log_every=5"]))
  with pytest.raises(ValueError, match=r"optimizer.warmup_fraction=1.5 must be in \(0, 1\]"):
    optim.make_optimizer(load_config(quickstart, ["optimizer.warmup_fraction=1.5"]).optimizer,
                         300)
  # Steps still work (the fraction set to 0), and 0 of both means: only at the end.
  steps = load_config(quickstart, ["log_every=7", "log_every_fraction=0",
                                   "checkpoint_every_fraction=0"])
  assert loop.intervals(steps) == loop.Intervals(log=7, eval=950, checkpoint=0, evals=0)


def test_logged_loss_is_the_token_weighted_mean_of_its_interval():
  steps = [{"loss": np.float32(4.0), "tokens": np.float32(100), "grad_norm": np.float32(1.0)},
           {"loss": np.float32(2.0), "tokens": np.float32(300), "grad_norm": np.float32(0.5)}]
  m = loop.interval_metrics(steps)
  assert m == {"loss": 2.5, "loss_last_batch": 2.0, "tokens": 300.0, "grad_norm": 0.5}


# ---- end to end through the CLI ------------------------------------------------------------------

@pytest.fixture(scope="module")
def shared(tmp_path_factory):
  """A prepared dataset and tokenizer shared by the CLI runs (built by a first short run, which
  logs every step: total_steps=3 x log_every_fraction 1/3)."""
  root = tmp_path_factory.mktemp("train_shared")
  run = _main(root / "seed_run", root / "data", None, ["--config.total_steps=3"])
  assert run.returncode == 0, run.stderr[-3000:]
  return root / "data", root / "seed_run" / "tokenizer" / "sp.model"


HANG_GUARD_S = 1800  # only against a hung child; no assertion here depends on speed


def _main(workdir, data_dir, tokenizer, extra=(), popen=False, xla_flags="", extra_env=None,
          log_name=None):
  args = [sys.executable, "-m", "phi_jax.main", "--config=configs/quickstart.py:smoke,arm=raw",
          f"--workdir={workdir}", f"--config.data.data_dir={data_dir}",
          "--config.data.max_files=12", "--config.report=False", *extra]
  if tokenizer:
    args.append(f"--config.data.tokenizer={tokenizer}")
  # One persistent compilation cache for all runs of this module: the same programs compile once.
  env = dict(os.environ, XLA_FLAGS=f"--xla_backend_optimization_level=0 {xla_flags}",
             JAX_COMPILATION_CACHE_DIR=str(pathlib.Path(data_dir).parent / "jax_cache"),
             JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
             JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0", **(extra_env or {}))
  if popen:  # output to files, not pipes: a child never blocks on a full pipe nobody reads
    log = pathlib.Path(f"{workdir}.{log_name or 'log'}")
    with open(f"{log}.out", "w") as out, open(f"{log}.err", "w") as err:
      proc = subprocess.Popen(args, cwd=REPO, env=env, stdout=out, stderr=err, text=True)
    proc.out_path, proc.err_path = pathlib.Path(f"{log}.out"), pathlib.Path(f"{log}.err")
    return proc
  return subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True,
                        timeout=HANG_GUARD_S)


def _records(workdir):
  """metrics.jsonl (a line cut by kill -9 skipped)."""
  out = []
  for line in (pathlib.Path(workdir) / "metrics.jsonl").read_text().splitlines():
    try:
      out.append(json.loads(line))
    except ValueError:
      pass
  return out


def _losses(workdir, key="loss"):
  return {r["step"]: r[key] for r in _records(workdir) if key in r}


def _wait_for_checkpoint(workdir, step, proc):
  """Until checkpoints/<step> exists (orbax renames a finished save into place) or proc ends."""
  path = pathlib.Path(workdir) / "checkpoints" / str(step)
  waited = 0.0
  while not path.is_dir() and proc.poll() is None:
    time.sleep(0.05)
    waited += 0.05
    if waited > HANG_GUARD_S:
      raise TimeoutError(f"no checkpoint {step} in {workdir} and the run is still going")


def _hashes(root):
  return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
          for p in sorted(pathlib.Path(root).rglob("*")) if p.is_file()}


# Steps, not fractions: these runs change total_steps, and their schedule must not follow it.
FIXED = ["--config.optimizer.decay_steps=16", "--config.optimizer.warmup_fraction=0",
         "--config.optimizer.warmup_steps=2", "--config.checkpoint_every_fraction=0",
         "--config.checkpoint_every=4", "--config.log_every_fraction=0", "--config.log_every=2"]


@pytest.mark.slow
def test_stopped_or_killed_runs_resume_bitwise(shared, tmp_path):
  data_dir, tok = shared
  ref = _main(tmp_path / "ref", data_dir, tok, FIXED + ["--config.total_steps=16"])
  assert ref.returncode == 0, ref.stderr[-3000:]
  ref_losses = _losses(tmp_path / "ref")
  assert sorted(ref_losses) == list(range(2, 17, 2)) and ref_losses[16] < ref_losses[2]

  # Deterministic: a run that ends at step 8, rerun to 16 (total_steps may change on resume).
  short = _main(tmp_path / "short", data_dir, tok, FIXED + ["--config.total_steps=8"])
  assert short.returncode == 0, short.stderr[-3000:]
  longer = _main(tmp_path / "short", data_dir, tok, FIXED + ["--config.total_steps=16"])
  assert longer.returncode == 0, longer.stderr[-3000:]
  assert "at step 8" in longer.stdout
  assert _losses(tmp_path / "short") == ref_losses  # bitwise: the same floats in the JSON

  # kill -9 wherever it lands after the first checkpoint (even after the end): the rerun ends
  # with the reference's losses and a finished summary.
  proc = _main(tmp_path / "killed", data_dir, tok, FIXED + ["--config.total_steps=16"], popen=True)
  _wait_for_checkpoint(tmp_path / "killed", 4, proc)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  rerun = _main(tmp_path / "killed", data_dir, tok, FIXED + ["--config.total_steps=16"])
  assert rerun.returncode == 0, rerun.stderr[-3000:]
  assert "Resumed from" in rerun.stdout
  assert _losses(tmp_path / "killed") == ref_losses
  summary = json.loads((tmp_path / "killed" / "summary.json").read_text())
  assert summary["step"] == 16 and summary["stopped_by"] is None


def test_rerun_with_another_config_is_refused_and_changes_nothing(shared, tmp_path):
  """A changed model on an existing workdir: one message naming the field and both values, exit 1,
  every file of the earlier run byte-identical (it used to be 'unreadable', restarted at step 1,
  overwrote config.json, mixed metrics and died with 'Checkpoint for step 3 already exists')."""
  data_dir, tok = shared
  work = tmp_path / "run"
  steps = ["--config.total_steps=6", "--config.checkpoint_every_fraction=0",
           "--config.checkpoint_every=3"]
  first = _main(work, data_dir, tok, steps)
  assert first.returncode == 0, first.stderr[-3000:]
  before = _hashes(work)
  again = _main(work, data_dir, tok, steps + ["--config.model.d_model=32",
                                              "--config.optimizer.learning_rate=0.003"])
  assert again.returncode == 1, again.stderr[-3000:]
  err = again.stderr
  assert f"model.d_model: 64 in {work}/config.json, 32 requested" in err, err[-3000:]
  rate = load_config(f"{REPO}/configs/quickstart.py:smoke,arm=raw").optimizer.learning_rate
  assert f"optimizer.learning_rate: {rate} in" in err and "0.003 requested" in err
  assert "pass a new --workdir" in err and err.count("error:") == 1
  assert "Traceback" not in err and "unreadable" not in again.stdout + err
  assert _hashes(work) == before
  # A resumable change (a longer run, other intervals) continues the same run.
  longer = _main(work, data_dir, tok, ["--config.total_steps=8", "--config.log_every_fraction=0",
                                       "--config.log_every=4", "--config.checkpoint_every=0"])
  assert longer.returncode == 0, longer.stderr[-3000:]
  assert "at step 6" in longer.stdout and max(_losses(work)) == 8


def test_logged_loss_is_the_mean_over_the_interval_end_to_end(shared, tmp_path):
  """The seed run logged every step of 3; one log at the end of the same 3 steps is their
  token-weighted mean, and its last-batch loss is step 3's."""
  data_dir, tok = shared
  per_step = {r["step"]: r for r in _records(data_dir.parent / "seed_run") if "loss" in r}
  assert sorted(per_step) == [1, 2, 3]
  assert all(r["loss"] == r["loss_last_batch"] for r in per_step.values())
  run = _main(tmp_path / "one_log", data_dir, tok, ["--config.total_steps=3",
                                                    "--config.log_every_fraction=1"])
  assert run.returncode == 0, run.stderr[-3000:]
  (record,) = [r for r in _records(tmp_path / "one_log") if "loss" in r]
  want = (sum(r["loss"] * r["tokens"] for r in per_step.values())
          / sum(r["tokens"] for r in per_step.values()))
  assert record["step"] == 3 and record["loss"] == pytest.approx(want, rel=1e-12)
  assert record["loss_last_batch"] == per_step[3]["loss"] != record["loss"]


@pytest.mark.slow
def test_sigterm_saves_a_checkpoint_and_exits_cleanly(shared, tmp_path):
  data_dir, tok = shared
  proc = _main(tmp_path / "run", data_dir, tok, ["--config.total_steps=100000",
                                                  "--config.checkpoint_every_fraction=0",
                                                  "--config.checkpoint_every=2"], popen=True)
  _wait_for_checkpoint(tmp_path / "run", 2, proc)
  assert proc.poll() is None, proc.err_path.read_text()[-3000:]  # 100000 steps: still going
  proc.send_signal(signal.SIGTERM)
  proc.wait(timeout=HANG_GUARD_S)
  assert proc.returncode == 0, proc.err_path.read_text()[-3000:]
  assert "Stopped by SIGTERM" in proc.out_path.read_text()
  steps = sorted(int(p.name) for p in (tmp_path / "run" / "checkpoints").iterdir()
                 if p.name.isdigit())
  summary = json.loads((tmp_path / "run" / "summary.json").read_text())
  assert summary["stopped_by"] == "SIGTERM" and steps[-1] == summary["step"] >= 2


def test_nan_loss_stops_and_names_the_step(shared, tmp_path):
  data_dir, tok = shared
  run = _main(tmp_path / "nan", data_dir, tok, ["--config.optimizer.learning_rate=1e30",
                                                 "--config.optimizer.grad_clip_norm=0",
                                                 "--config.total_steps=8"])
  assert run.returncode == 1
  assert "at step" in run.stderr and "last good checkpoint" in run.stderr


def test_misspelled_override_fails_clearly(tmp_path):
  run = _main(tmp_path / "x", tmp_path / "d", None, ["--config.total_step=3"])
  assert run.returncode == 2
  assert "the config has no field 'total_step'" in run.stderr and "'total_steps'" in run.stderr
  assert "Traceback" not in run.stderr and not (tmp_path / "x").exists()


def test_config_json_written(shared):
  data_dir, _ = shared
  config = json.loads((data_dir.parent / "seed_run" / "config.json").read_text())
  assert config["total_steps"] == 3 and config["model"]["name"] == "phi-1"
  assert config_base.resume_conflicts(config, load_config(
      f"{REPO}/configs/quickstart.py:smoke,arm=raw",
      {"total_steps": 3, "data.max_files": 12, "report": False,
       "data.data_dir": str(data_dir)})) == []


def _free_port() -> int:
  import socket
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


@pytest.mark.slow
def test_two_process_distributed_run_matches_single_process(shared, tmp_path):
  """2 processes x 2 CPU devices (jax.distributed on 127.0.0.1, gloo collectives) == 1 x 4."""
  data_dir, tok = shared
  steps = ["--config.total_steps=6", "--config.checkpoint_every_fraction=0",
           "--config.checkpoint_every=3", "--config.log_every_fraction=0", "--config.log_every=2"]
  single = _main(tmp_path / "single", data_dir, tok, steps,
                 xla_flags="--xla_force_host_platform_device_count=4")
  assert single.returncode == 0, single.stderr[-3000:]
  port = _free_port()
  procs = [_main(tmp_path / "multi", data_dir, tok, steps, popen=True,
                 xla_flags="--xla_force_host_platform_device_count=2",
                 extra_env={"JAX_COORDINATOR_ADDRESS": f"127.0.0.1:{port}",
                            "JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": str(i)},
                 log_name=f"process{i}")
           for i in range(2)]
  for proc in procs:
    proc.wait(timeout=HANG_GUARD_S)
    assert proc.returncode == 0, proc.err_path.read_text()[-3000:]
  # Process 0 reports the global mesh over both processes' 2 devices (it would say 2 if the
  # processes had not joined); process 1 prints no model line. The single run has 4 local ones.
  out0, out1 = (proc.out_path.read_text() for proc in procs)
  assert "mesh {'data': 4, 'fsdp': 1, 'tensor': 1}" in out0, out0[-2000:]
  assert "Model phi-1" not in out1
  assert "mesh {'data': 4, 'fsdp': 1, 'tensor': 1}" in single.stdout
  multi, ref = _losses(tmp_path / "multi"), _losses(tmp_path / "single")
  assert sorted(multi) == sorted(ref) == [2, 4, 6]
  for step in ref:
    assert multi[step] == pytest.approx(ref[step], rel=1e-5)


def test_task_evals_run_during_training(shared, tmp_path):
  """config.evals: HumanEval (2 problems) every 2 steps lands in metrics.jsonl, and what is recorded
  is the evaluation of that step's parameters with the configured options."""
  from phi_jax.evals import tasks
  from phi_jax.train import checkpoint
  data_dir, tok = shared
  config = load_config(f"{REPO}/configs/quickstart.py:smoke,arm=raw")
  out_dir = tmp_path / "eval_results"
  with config.unlocked():
    config.total_steps, config.eval_every_fraction, config.report = 4, 0.0, False
    config.data.update(data_dir=str(data_dir), tokenizer=str(tok), max_files=12)
    config.evals.update(every=2, tasks=("humaneval",), limit=2, max_new_tokens=8,
                        out_dir=str(out_dir))
  loop.train(config, tmp_path / "evals")
  evals = {r["step"]: r for r in _records(tmp_path / "evals") if "eval/humaneval/pass@1" in r}
  assert sorted(evals) == [2, 4]
  for step, record in evals.items():
    assert record["eval/humaneval/num_problems"] == 2
    rows = [json.loads(line) for line in (out_dir / f"step_{step}" / "humaneval.jsonl")
            .read_text().splitlines()]
    passed = [row["samples"][0]["passed"] for row in rows]
    assert record["eval/humaneval/pass@1"] == sum(passed) / len(passed)
  # Step 4 is the last checkpoint: evaluating it directly gives the recorded completions.
  cfg, params, tokenizer = checkpoint.load_run(tmp_path / "evals")
  direct = tasks.run(tasks.parse("humaneval"), cfg, params, tokenizer,
                     tasks.Options(limit=2, max_new_tokens=8))
  recorded = [json.loads(line)["samples"][0]["completion"] for line in
              (out_dir / "step_4" / "humaneval.jsonl").read_text().splitlines()]
  assert recorded == [p["samples"][0]["completion"] for p in direct["problems"]]
  assert evals[4]["eval/humaneval/pass@1"] == direct["pass@1"]


def test_arms_trained_in_their_own_processes_match_in_process_runs(shared, tmp_path):
  """study.parallel > 1: each arm in its own (pinned) process trains the run loop.train would."""
  from phi_jax.study import arms
  data_dir, tok = shared
  steps = ["--config.total_steps=8"]
  ref = _main(tmp_path / "ref", data_dir, tok, FIXED + steps)
  assert ref.returncode == 0, ref.stderr[-3000:]
  spec = str(REPO / "configs" / "quickstart.py") + ":smoke,arm=raw"
  overrides = FIXED + steps + [f"--config.data.data_dir={data_dir}", "--config.data.max_files=12",
                               "--config.report=False"]
  config = load_config(spec, overrides + [f"--config.data.tokenizer={tok}"])
  other = load_config(spec, overrides + [f"--config.data.tokenizer={tok}", "--config.seed=1"])
  timings = {}
  study = config.study.copy_and_resolve_references()
  with study.unlocked():
    study.update(n_validation=3, n_test=0, handwritten=False, humaneval_limit=0,
                 max_new_tokens=8)
  arms.train_concurrently({"a": config, "b": other}, tmp_path / "study", 2, timings,
                          log=lambda _: None, study=study)
  assert set(timings) == {"train_a", "train_b", "measure_a", "measure_b"}
  for name in ("a", "b"):  # each process measured its own arm after training it
    evaluated = arms.measured(tmp_path / "study" / name, study)
    assert evaluated is not None and evaluated["step"] == 8
    assert evaluated["sets"]["validation"]["n"] == 3 and set(evaluated["sets"]) == {"validation"}
    assert arms.measure_arm(tmp_path / "study" / name, study) == evaluated  # cached, not redone
  with study.unlocked():
    study.n_validation = 2
  assert arms.measured(tmp_path / "study" / "a", study) is None  # other settings: measure again
  ref_losses, a = _losses(tmp_path / "ref"), _losses(tmp_path / "study" / "a")
  assert sorted(a) == sorted(ref_losses)
  np.testing.assert_allclose([a[s] for s in sorted(a)], [ref_losses[s] for s in sorted(a)],
                             rtol=2e-4)  # one thread vs two: reduction order only
  assert _losses(tmp_path / "study" / "b") != a  # its own seed
  for name in ("a", "b"):
    summary = json.loads((tmp_path / "study" / name / "summary.json").read_text())
    assert summary["step"] == 8 and summary["stopped_by"] is None
  saved = json.loads((tmp_path / "study" / "a" / "config.json").read_text())
  assert saved == json.loads((tmp_path / "ref" / "config.json").read_text())  # through JSON
  # an arm that fails is named, with where its log is; the other still trains
  bad = load_config(spec, overrides + [f"--config.data.tokenizer={tmp_path / 'missing.model'}"])
  with pytest.raises(arms.ArmFailedError, match=r"arm\(s\) bad failed to train"):
    arms.train_concurrently({"bad": bad, "a": config}, tmp_path / "study", 2, {},
                            log=lambda _: None)
  assert "missing.model" in (tmp_path / "study" / "bad" / "train.log").read_text()

