"""Paper configs (configs/*.py), the config schema, the AOT memory report and the sweep runner.

Every variant builds from the base schema (phi_jax/train/config_base.py), locks and validates; the
optimizer numbers are the papers'; full-size presets match the published parameter counts;
`memory_report` shards params over fsdp; a 2-run sweep runs, is skipped on rerun, and writes its
table and plot; main, sweep and aot parse --config.KEY=VALUE with one parser.
"""

import csv
import dataclasses
import json
import os
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import pytest

from phi_jax import aot, config_args, sweep, sweep_table
from phi_jax.models import ModelConfig, Transformer, presets
from phi_jax.train import config_base, loop, optim
from phi_jax.train import mesh as mesh_lib

REPO = pathlib.Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"
BASE = config_base.get_config()

VARIANTS = [
    ("phi1.py", ""), ("phi1.py", "size=350m"), ("phi1.py", "stage=finetune"),
    ("phi1.py", "size=350m,stage=finetune"), ("phi1.py", "tiny"), ("phi1.py", "tiny,stage=finetune"),
    ("phi1_5.py", ""), ("phi1_5.py", "tiny"),
    ("phi3.py", "size=mini"), ("phi3.py", "size=small"), ("phi3.py", "size=medium"),
    ("phi3.py", "tiny"), ("phi3.py", "size=small,tiny"), ("phi3.py", "size=medium,tiny"),
    ("quickstart.py", ""), ("quickstart.py", "smoke"), ("quickstart.py", "smoke,arm=raw"),
    ("quickstart.py", "long"), ("quickstart.py", "long,arm=textbook"),
    ("phi1_ablation.py", "stage=pretrain"), ("phi1_ablation.py", "stage=finetune,tiny"),
    ("skipdecode.py", "pretrain"), ("skipdecode.py", "finetune,speedup=2,tiny"),
    ("skipdecode.py", "pretrain,coder"), ("skipdecode.py", "pretrain,coder,tiny"),
    ("skipdecode.py", "finetune,coder,speedup=5,decay_len=40"),
    ("phi3_scaling.py", ""), ("phi3_scaling.py", "size=xxl,mixture=textbook,tokens=204800"),
    ("phi3_scaling.py", "smoke"),
]


def _config(name, arg=""):
  return config_args.load_config(f"{CONFIGS / name}:{arg}" if arg else str(CONFIGS / name))


def _schema(config):
  """Every key with its type (None: any), except the model section (a preset's name + field
  overrides, checked against ModelConfig)."""
  return {k: None if v is None else type(v) if not isinstance(v, int) or isinstance(v, bool)
          else "number" for k, v in config_base.flatten(config_base.as_json(config)).items()
          if not k.startswith(("model.", "arms."))}  # arms: checked by study.arms.check


def _same_schema(a, b):
  return a.keys() == b.keys() and all(a[k] == b[k] for k in a if a[k] and b[k])


@pytest.mark.parametrize("name,arg", VARIANTS)
def test_variant_builds_locks_and_validates(name, arg):
  config = _config(name, arg)
  assert config.is_locked and config.model.is_locked and config.evals.is_locked
  with pytest.raises(AttributeError):
    config.total_step = 3  # a misspelled field fails
  with pytest.raises(AttributeError):
    config.model.d_modle = 3
  assert _same_schema(_schema(config), _schema(BASE)), "a config is the base schema + values"
  fields = {f.name for f in dataclasses.fields(ModelConfig)}
  assert set(config.model.keys()) - {"name"} <= fields
  optim.make_optimizer(config.optimizer, config.total_steps)
  loop.intervals(config)
  if config.arms:  # a study: its arms name real data fields
    from phi_jax.study import arms  # pylint: disable=g-import-not-at-top
    assert len(arms.check(config)) >= 2
  if config.model.name == "init":  # the architecture comes from init_from
    return
  cfg = loop.model_config(config, vocab_size=config.data.tokenizer_vocab_size)
  assert cfg.name == config.model.name
  if name not in ("phi1.py", "phi1_5.py", "phi3.py"):
    return
  if "tiny" in arg:
    assert cfg.num_layers <= 4 and cfg.d_model <= 128 and config.data.source_dir == ""
    assert config.total_steps <= 100 and 0 < config.data.max_files <= 100
  else:
    assert cfg.dtype == "bfloat16" and cfg.param_dtype == "float32"
    assert config.mesh.fsdp == -1 and cfg.vocab_size == presets.get(cfg.name).vocab_size
    assert config.data.seq_len <= cfg.max_seq_len
  data, fsdp, _ = mesh_lib.mesh_shape(dict(config.mesh), 8)
  assert config.data.batch_size % (config.grad_accum * data * fsdp) == 0
  json.loads(config.to_json_best_effort())
  # Shortening a run is one flag: the warmup is a fraction of the run.
  short = config_args.load_config(f"{CONFIGS / name}:{arg}" if arg else str(CONFIGS / name),
                                  {"total_steps": 5})
  optim.make_optimizer(short.optimizer, short.total_steps)


def test_the_base_schema_matches_the_eval_options():
  from phi_jax.evals import tasks
  options = {f.name: f.default for f in dataclasses.fields(tasks.Options)}
  for name, default in options.items():
    if name in ("progress", "builder_kwargs"):  # not settable from a config
      continue
    assert name in BASE.evals, f"evals.{name} (a tasks.Options field) is missing from the schema"
    value = BASE.evals[name]
    assert (tuple(value) if isinstance(value, tuple) else value) == default, name
  assert config_base.resumable("evals.tasks") and not config_base.resumable("model.d_model")
  assert not config_base.resumable("optimizer.learning_rate")
  assert not config_base.resumable("data.tokenizer_vocab_size")


def test_resume_conflicts_name_the_fields_that_define_the_run():
  saved = config_base.as_json(_config("quickstart.py", "smoke"))
  same = _config("quickstart.py", "smoke")
  assert config_base.resume_conflicts(saved, same) == []
  resumable = config_args.load_config(f"{CONFIGS / 'quickstart.py'}:smoke", {
      "total_steps": 50, "log_every_fraction": 0.1, "mesh.data": 2, "evals.every": 5,
      "data.data_dir": "/elsewhere", "keep_checkpoints": 9, "optimizer.decay_steps": 40})
  assert config_base.resume_conflicts(saved, resumable) == []
  changed = config_args.load_config(f"{CONFIGS / 'quickstart.py'}:smoke", {
      "model.d_model": 32, "seed": 1, "data.tokenizer_vocab_size": 1024,
      "optimizer.b2": 0.99, "total_steps": 99})
  assert config_base.resume_conflicts(saved, changed) == [
      ("data.tokenizer_vocab_size", 512, 1024), ("model.d_model", 64, 32),
      ("optimizer.b2", 0.95, 0.99), ("seed", 0, 1)]
  # A config.json written before a key existed compares against the key's base default.
  del saved["skip"]
  assert config_base.resume_conflicts(saved, same) == []


@pytest.mark.parametrize("name,arg,match", [
    ("phi1.py", "size=2b", "size='2b'"), ("phi1.py", "stage=sft", "stage"),
    ("phi1.py", "tiyn", "Unknown config variant 'tiyn'"), ("phi3.py", "size=large", "size"),
    ("phi1_5.py", "size=1.3b", "Unknown config variant 'size'")])
def test_bad_variants_fail_clearly(name, arg, match):
  with pytest.raises(ValueError, match=match):
    _config(name, arg)


def test_phi1_recipe_matches_the_paper():
  base, ft = _config("phi1.py"), _config("phi1.py", "stage=finetune")
  o = base.optimizer
  assert (o.learning_rate, o.schedule, o.weight_decay) == (1e-3, "linear", 0.1)
  assert optim.warmup_steps(o, base.total_steps) == 750
  assert o.end_lr_fraction == 0.0 and base.total_steps == 36_000
  assert (base.data.batch_size, base.data.seq_len) == (1024, 2048)  # tokens/step = 1024 x 2048
  assert base.model.attn_dropout == base.model.resid_dropout == 0.1
  o = ft.optimizer
  assert (o.learning_rate, o.weight_decay, ft.total_steps) == (1e-4, 0.01, 6_000)
  assert optim.warmup_steps(o, ft.total_steps) == 50
  assert ft.data.batch_size == 256 and ft.checkpoint_every == 1_000
  assert _config("phi1.py", "size=350m").model.name == "phi-1-small"
  kept = base.checkpoint_every * (base.keep_checkpoints - 1)
  assert kept >= base.total_steps - 24_000  # the 24k checkpoint the paper uses survives
  lr = optim.make_schedule(o.to_dict(), ft.total_steps)
  assert float(lr(50)) == pytest.approx(1e-4) and float(lr(6_000)) == pytest.approx(0.0, abs=1e-12)


def test_phi1_5_recipe_matches_the_paper():
  c = _config("phi1_5.py")
  o = c.optimizer
  assert (o.learning_rate, o.schedule, o.warmup_steps, o.weight_decay) == (2e-4, "constant", 0, 0.1)
  assert (o.b1, o.b2, o.eps) == (0.9, 0.98, 1e-7)
  assert (c.data.batch_size, c.data.seq_len) == (2048, 2048)
  tokens = c.total_steps * c.data.batch_size * c.data.seq_len
  assert 150e9 <= tokens < 150e9 + c.data.batch_size * c.data.seq_len
  lr = optim.make_schedule(o.to_dict(), c.total_steps)
  assert float(lr(0)) == float(lr(c.total_steps)) == pytest.approx(2e-4)


def test_phi3_sizes_tokens_and_documented_defaults():
  doc = (CONFIGS / "phi3.py").read_text()
  assert "publishes NO optimizer" in doc and "2307.09288" in doc
  for size, name, tokens in [("mini", "phi-3-mini-4k", 3.3e12), ("small", "phi-3-small-8k", 4.8e12),
                             ("medium", "phi-3-medium-4k", 4.8e12)]:
    c = _config("phi3.py", f"size={size}")
    assert c.model.name == name and c.model.dtype == "bfloat16"
    per_step = c.data.batch_size * c.data.seq_len
    assert per_step == 4_194_304 and 0 <= c.total_steps * per_step - tokens < per_step
    o = c.optimizer
    assert (o.learning_rate, o.schedule) == (3e-4, "cosine")
    assert optim.warmup_steps(o, c.total_steps) == 2000
    assert (o.b1, o.b2, o.eps, o.weight_decay) == (0.9, 0.95, 1e-5, 0.1)


@pytest.mark.parametrize("name,arg", [("phi1.py", ""), ("phi1_5.py", ""), ("phi3.py", "size=mini"),
                                      ("phi3.py", "size=small"), ("phi3.py", "size=medium")])
def test_full_size_parameter_counts_match_published(name, arg):
  cfg = loop.model_config(_config(name, arg))
  shapes = jax.eval_shape(Transformer(cfg).init, jax.random.key(0), jnp.zeros((1, 8), jnp.int32))
  count = sum(x.size for x in jax.tree.leaves(shapes))
  published = presets.PUBLISHED_PARAMS[cfg.name]
  assert abs(count - published) / published < 0.005, (cfg.name, count, published)


def test_docstrings_give_paper_command_and_results():
  papers = [("phi1.py", "2306.11644"), ("phi1_5.py", "2309.05463"), ("phi3.py", "2404.14219")]
  for name, arxiv in papers:
    doc = (CONFIGS / name).read_text().split('"""')[1]
    assert arxiv in doc and f"configs/{name}" in doc and "python -m phi_jax.main" in doc
    assert "Measured here" in doc and "Expected at full scale" in doc


# ---- AOT memory report --------------------------------------------------------------------------

def _small_config(**mesh):
  c = _config("phi1.py", "tiny")
  c.mesh.update(dict(data=1, fsdp=8, tensor=1, **mesh))
  c.model.update(d_model=128, num_layers=2, mlp_dim=512, vocab_size=512)
  c.data.update(batch_size=8, seq_len=32)
  c.grad_accum = 1
  return c


def test_memory_report_shards_params_over_fsdp():
  r = aot.memory_report(_small_config(), 8, device_memory_gb=1.0)
  total_param_bytes = r["num_params"] * 4  # float32
  assert r["mesh"] == {"data": 1, "fsdp": 8, "tensor": 1} and r["platform"] == "cpu"
  assert r["params_bytes"] == pytest.approx(total_param_bytes / 8, rel=0.10)
  assert r["opt_state_bytes"] == pytest.approx(2 * r["params_bytes"], rel=0.05)  # Adam mu, nu
  assert r["argument_bytes"] >= r["params_bytes"] + r["opt_state_bytes"]
  assert r["alias_bytes"] > 0.9 * (r["params_bytes"] + r["opt_state_bytes"])  # state donated
  assert 0 < r["total_bytes"] < 2**30 and r["fits"] and r["temp_estimated_by_cpu"]
  assert "ESTIMATED BY THE CPU BACKEND" in aot.format_report(r)
  # The simulated mesh stands in for accelerators: the 'auto' forms compile as on a GPU.
  assert (r["target"], r["scan_unroll"], r["weight_grad"]) == ("gpu", 1, "autodiff")
  cpu = aot.training_forms(presets.get("tiny-parallel"), "cpu")
  assert (cpu.scan_unroll, cpu.weight_grad) == (cpu.num_layers, "nn_gemm")
  with pytest.raises(ValueError, match="16 devices requested"):
    aot.memory_report(_small_config(), 16)


@pytest.mark.slow
def test_memory_report_layer_extrapolation_matches_full_compile():
  config = _small_config()
  config.model.num_layers = 4
  full = aot.memory_report(config, 8)
  cut = aot.memory_report(config, 8, layers=1)
  assert cut["layers_compiled"] == [1, 2] and full["layers_compiled"] == [4]
  for key in ("num_params", "params_bytes", "opt_state_bytes", "argument_bytes"):
    assert cut[key] == full[key], key
  assert cut["total_bytes"] == pytest.approx(full["total_bytes"], rel=0.25)


@pytest.mark.slow
def test_aot_cli_sets_the_device_count_itself(tmp_path):
  env = dict(os.environ, XLA_FLAGS="--xla_backend_optimization_level=0")  # no device count given
  run = subprocess.run([sys.executable, "-m", "phi_jax.aot", "--config=configs/phi1.py:tiny",
                        "--devices=4", "--device_memory_gb=1", "--config.data.batch_size=8",
                        "--config.model.vocab_size=512", "--json"],
                       cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
  assert run.returncode == 0, run.stderr[-3000:]
  report = json.loads(run.stdout.strip().splitlines()[-1])
  assert report["num_devices"] == 4 and report["mesh"]["fsdp"] == 4 and report["fits"]
  assert "simulated CPU devices" in run.stdout and "ESTIMATED BY THE CPU BACKEND" in run.stdout


# ---- sweep runner -------------------------------------------------------------------------------

def test_overrides_slugs_and_finished_runs(tmp_path):
  spec = f"{CONFIGS / 'phi1.py'}:tiny"
  c = config_args.load_config(spec, ["optimizer.learning_rate=3e-3", "data.seed=7",
                                     "report=false", "evals.tasks=('humaneval', 'mbpp:x')"])
  assert c.optimizer.learning_rate == 3e-3 and c.data.seed == 7 and c.report is False
  assert tuple(c.evals.tasks) == ("humaneval", "mbpp:x") and c.is_locked
  # Python values (a sweep's runs) go through the same flags.
  d = config_args.load_config(spec, {"optimizer.learning_rate": 3e-3, "data.seed": 7,
                                     "report": False, "evals.tasks": ("humaneval", "mbpp:x")})
  assert d.to_json_best_effort() == c.to_json_best_effort()
  with pytest.raises(ValueError, match="no field 'optimizer.lr'; valid fields at optimizer: "
                                       r"\['b1'"):
    config_args.load_config(spec, {"optimizer.lr": 1.0})
  with pytest.raises(ValueError, match="no field 'datta.seed'; valid fields at the top level"):
    config_args.load_config(spec, {"datta.seed": 1})
  with pytest.raises(ValueError, match="total_steps=many: invalid literal for int"):
    config_args.load_config(spec, {"total_steps": "many"})
  with pytest.raises(ValueError, match="does not exist"):
    config_args.load_config(str(CONFIGS / "nope.py"))
  assert sweep.slugs([{"optimizer.learning_rate": 1e-3, "model.num_layers": 2}, {}]) == [
      "learning_rate=0.001,num_layers=2", "base"]
  assert sweep.slugs([{"seed": 1}, {"data.seed": 1}]) == ["seed=1", "data.seed=1"]
  with pytest.raises(ValueError, match="duplicate runs"):
    sweep.slugs([{"seed": 1}, {"seed": 1}])
  (tmp_path / "summary.json").write_text(json.dumps({"step": 5, "stopped_by": None}))
  assert sweep_table.is_finished(tmp_path, 5) and not sweep_table.is_finished(tmp_path, 6)
  (tmp_path / "summary.json").write_text(json.dumps({"step": 5, "stopped_by": "SIGTERM"}))
  assert not sweep_table.is_finished(tmp_path, 5)


SWEEP_CONFIG = '''
import importlib.util
_spec = importlib.util.spec_from_file_location("_phi1", {phi1!r})
_phi1 = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_phi1)
get_config = _phi1.get_config


def sweep():
  return [{{"optimizer.learning_rate": 1e-3}}, {{"optimizer.learning_rate": 3e-3}}]
'''


def test_sweep_runs_are_the_configs_main_will_parse(tmp_path):
  config_file = tmp_path / "two_runs.py"
  config_file.write_text(SWEEP_CONFIG.format(phi1=str(CONFIGS / "phi1.py")))
  runs = sweep.plan_sweep(f"{config_file}:tiny", tmp_path / "s", overrides=["total_steps=3"])
  assert [r.config.optimizer.learning_rate for r in runs] == [1e-3, 3e-3]
  assert "--config.optimizer.learning_rate=0.003" in runs[1].command
  for run in runs:  # the command's flags, parsed as main parses them, give the planned config
    flags = [a for a in run.command if a.startswith("--config.")]
    again = config_args.load_config(f"{config_file}:tiny", flags)
    assert again.to_json_best_effort() == run.config.to_json_best_effort()
    assert again.total_steps == 3 and again.data.data_dir == str(tmp_path / "s" / "data")
  with pytest.raises(ValueError, match="no field 'optimizer.lr'"):
    sweep.plan_sweep(f"{config_file}:tiny", tmp_path / "s", runs=[{"optimizer.lr": 1.0}])


@pytest.mark.slow
def test_two_run_sweep_runs_then_skips_and_writes_table(tmp_path):
  config_file = tmp_path / "two_runs.py"
  config_file.write_text(SWEEP_CONFIG.format(phi1=str(CONFIGS / "phi1.py")))
  small = ["total_steps=3", "log_every=1", "eval_every=3", "checkpoint_every=3", "report=False",
           "data.max_files=10", "data.tokenizer_vocab_size=512", "data.seq_len=32",
           "data.batch_size=4", "data.eval_batches=1", "model.d_model=32", "model.mlp_dim=64",
           "model.rotary_dim=8", "grad_accum=1", "evals.every_fraction=0"]
  env = dict(os.environ, XLA_FLAGS="--xla_backend_optimization_level=0")  # one device per run
  out = tmp_path / "sweep"
  rows = sweep.run_sweep(f"{config_file}:tiny", out, overrides=small, parallel=2, env=env)
  assert [r["status"] for r in rows] == ["done", "done"], [
      (r, (out / r["run"] / "sweep_run.log").read_text()[-2000:]) for r in rows]
  assert [r["run"] for r in rows] == ["learning_rate=0.001", "learning_rate=0.003"]
  assert all(r["step"] == 3 and r["final_loss"] > 0 and r["eval_loss"] > 0 for r in rows)
  rows_again = sweep.run_sweep(f"{config_file}:tiny", out, overrides=small, parallel=2, env=env)
  assert [r["status"] for r in rows_again] == ["done (skipped)"] * 2
  assert [r["final_loss"] for r in rows_again] == [r["final_loss"] for r in rows]
  with open(out / "sweep.csv") as f:
    table = list(csv.DictReader(f))
  assert len(table) == 2 and table[0]["overrides"] == "optimizer.learning_rate=0.001"
  assert len((out / "sweep.md").read_text().strip().splitlines()) == 4  # header, rule, 2 rows
  assert (out / "sweep.png").stat().st_size > 0
  config = json.loads((out / "learning_rate=0.003" / "config.json").read_text())
  assert config["optimizer"]["learning_rate"] == 3e-3 and config["total_steps"] == 3
