"""phi_jax.convert.load: one loader for training workdirs, phi_jax checkpoints and HF folders, and
the command lines that use it (`python -m phi_jax.generate`, `python -m phi_jax.eval`)."""

import json
import logging
import pathlib
import shutil

import jax
import numpy as np
import pytest
from conftest import run_eval_cli, tiny

from phi_jax import generate as generate_cli
from phi_jax.convert import checkpoint_io, hf, load
from phi_jax.data import tokenizer as tokenizers
from phi_jax.evals import tasks
from phi_jax.models import Transformer
from phi_jax.train import checkpoint

TEXT = [f"def function_{i}(x, y):\n    return x * {i} + y  # item {i}\n" for i in range(200)]
MC = [{"context": "def function_1(x, y):", "choices": ["\n    return x", " pass"], "label": 0},
      {"context": "The cat sat on the", "choices": [" mat", " dog"], "label": 0}]


def _workdir(root: pathlib.Path, cfg, steps: dict, sp_path=None) -> pathlib.Path:
  """A run folder as phi_jax.main writes it: model_config.json, checkpoints/<step>/state."""
  workdir = root / "run"
  workdir.mkdir(parents=True)
  (workdir / "model_config.json").write_text(checkpoint_io.config_to_json(cfg))
  if sp_path is not None:
    (workdir / "tokenizer").mkdir()
    shutil.copy(sp_path, workdir / "tokenizer" / "sp.model")
  ckpt = checkpoint.Checkpointer(workdir / "checkpoints", async_save=False)
  for step, params in steps.items():
    ckpt.save(step, {"params": params, "opt_state": {"mu": params}, "step": step})
  ckpt.close()
  return workdir


@pytest.fixture(scope="module")
def models(tmp_path_factory):
  """The same tiny model in all three formats, plus a second step in the workdir."""
  root = tmp_path_factory.mktemp("formats")
  sp = tokenizers.train_sentencepiece(TEXT, root / "sp" / "sp", vocab_size=300)
  cfg, params = tiny("tiny-serial", vocab_size=300)
  _, later = tiny("tiny-serial", seed=1, vocab_size=300)
  workdir = _workdir(root, cfg, {3: params, 5: later}, sp.path)
  checkpoint_io.save_model(cfg, later, root / "ckpt")
  hf.save(cfg, later, root / "hf")
  shutil.copy(sp.path, root / "hf" / "tokenizer.model")
  return dict(cfg=cfg, params=params, later=later, sp=sp, workdir=workdir, ckpt=root / "ckpt",
              hf=root / "hf", root=root)


def _logits(cfg, params):
  tokens = np.arange(24, dtype=np.int32).reshape(2, 12) * 7 % cfg.vocab_size
  return np.asarray(Transformer(cfg).apply({"params": params}, tokens))


def test_three_formats_give_identical_params_and_logits(models):
  got = {name: load.load_model(models[name], tokenizer=models["sp"].path if name == "ckpt"
                               else None) for name in ("workdir", "ckpt", "hf")}
  assert [m.format for m in got.values()] == ["workdir", "checkpoint", "hf"]
  assert got["workdir"].step == 5  # the newest
  reference = _logits(models["cfg"], models["later"])
  for name, m in got.items():
    jax.tree.map(np.testing.assert_array_equal, m.params, models["later"])
    np.testing.assert_array_equal(_logits(m.cfg, m.params), reference, err_msg=name)
    assert m.tokenizer.encode("def f(x):") == models["sp"].encode("def f(x):"), name
  assert got["workdir"].meta() == {"model": str(models["workdir"]), "format": "workdir",
                                   "step": 5, "tokenizer": str(models["workdir"] / "tokenizer"
                                                               / "sp.model")}
  # The older readers are this loader too.
  cfg, params, tok = checkpoint.load_run(models["workdir"], step=3)
  jax.tree.map(np.testing.assert_array_equal, params, models["params"])


def test_workdir_steps_and_tokenizer_sources(models, tmp_path):
  m = load.load_model(models["workdir"], step=3)
  assert m.step == 3
  jax.tree.map(np.testing.assert_array_equal, m.params, models["params"])
  with pytest.raises(ValueError, match=r"no checkpoint at step 4; it has steps \[3, 5\]"):
    load.load_model(models["workdir"], step=4)
  with pytest.raises(ValueError, match="applies to a training workdir"):
    load.load_model(models["hf"], step=3)
  # No tokenizer/ of its own: the run's config.json data.tokenizer, else None (or an error).
  bare = _workdir(tmp_path, models["cfg"], {1: models["params"]})
  assert load.load_model(bare).tokenizer is None
  with pytest.raises(ValueError, match="has no tokenizer.*--tokenizer"):
    load.load_model(bare, require_tokenizer=True)
  (bare / "config.json").write_text(json.dumps({"data": {"tokenizer": models["sp"].path}}))
  assert load.load_model(bare).tokenizer_source == models["sp"].path
  # --tokenizer may name a file, a workdir or its tokenizer/ folder; add_bos reaches it.
  for source in (models["workdir"], models["workdir"] / "tokenizer"):
    m = load.load_model(models["ckpt"], tokenizer=source, add_bos=True)
    assert m.tokenizer.encode("def")[0] == models["sp"].bos_id


def test_an_unreadable_newest_checkpoint_falls_back_to_the_previous(models, tmp_path, caplog):
  root = tmp_path / "copy"
  shutil.copytree(models["workdir"], root)
  shutil.rmtree(root / "checkpoints" / "5" / "state")
  (root / "checkpoints" / "5" / "state").mkdir()
  with caplog.at_level(logging.WARNING):
    m = load.load_model(root)
  assert m.step == 3 and "step 5" in caplog.text
  jax.tree.map(np.testing.assert_array_equal, m.params, models["params"])


def test_unknown_folders_name_the_three_formats(models, tmp_path):
  (tmp_path / "notes.txt").write_text("x")
  with pytest.raises(ValueError) as e:
    load.load_model(tmp_path)
  for words in ("training workdir", "phi_jax checkpoint", "Hugging Face folder", "notes.txt"):
    assert words in str(e.value)
  with pytest.raises(ValueError, match="checkpoints folder: pass the workdir"):
    load.load_model(models["workdir"] / "checkpoints")
  with pytest.raises(ValueError, match="does not exist"):
    load.load_model(tmp_path / "nope")
  big = tokenizers.train_sentencepiece(TEXT, tmp_path / "big" / "sp", vocab_size=340)
  with pytest.raises(ValueError, match="340 tokens but the model .* only 300"):
    load.load_model(models["hf"], tokenizer=big.path)


def test_generate_cli_reads_every_format(models, capsys):
  prompt = "def function_3(x, y):"
  for argv in (["--model", str(models["workdir"]), "--step", "3"],
               ["--ckpt_dir", str(models["ckpt"]), "--tokenizer", str(models["workdir"])],
               ["--hf_dir", str(models["hf"])], ["--workdir", str(models["workdir"])]):
    assert generate_cli.main(argv + ["--prompt", prompt, "--max_new_tokens", "4",
                                     "--no_eos"]) == 0, argv
    out = capsys.readouterr()
    assert out.out.startswith(prompt) and "[" + ("workdir" if "--step" in argv else "") in out.err
  assert generate_cli.main(["--model", str(models["ckpt"]), "--prompt", "x"]) == 2
  assert "no tokenizer" in capsys.readouterr().err


def test_eval_cli_reads_every_format_with_the_same_results(models, tmp_path):
  mc_file = tmp_path / "mc.jsonl"
  mc_file.write_text("".join(json.dumps(r) + "\n" for r in MC))
  results = {}
  for flag, path, extra in (("--model", models["workdir"], []),
                            ("--model", models["ckpt"], [f"--tokenizer={models['sp'].path}"]),
                            ("--hf_dir", models["hf"], [])):
    out = tmp_path / path.name
    run_eval_cli([f"{flag}={path}", f"--task=mc:generic:{mc_file}", f"--out={out}"] + extra)
    report = json.loads((out / "results.json").read_text())
    results[report["meta"]["format"]] = report["results"][0]
  assert sorted(results) == ["checkpoint", "hf", "workdir"]
  assert len({json.dumps({k: r[k] for k in ("acc", "acc_norm")}) for r in results.values()}) == 1


def test_fit_max_new_tokens():
  assert tasks.fit_max_new_tokens(None, 4096) == (512, None)
  fitted, note = tasks.fit_max_new_tokens(None, 512)
  assert fitted == 256 and "capped to 256" in note
  assert tasks.fit_max_new_tokens(300, 512) == (300, None)
  with pytest.raises(ValueError, match="max_new_tokens=512 leaves no room .* at most 511"):
    tasks.fit_max_new_tokens(512, 512)


def test_eval_humaneval_default_fits_a_short_context(models, tmp_path, capsys):
  """Regression: the default max_new_tokens=512 left no room for a prompt in a 512-token (here
  128-token) context, so `--task=humaneval` failed on the quickstart run."""
  out = tmp_path / "he"
  run_eval_cli([f"--model={models['workdir']}", "--task=humaneval", "--limit=1", f"--out={out}",
             "--timeout_s=5"])
  assert "capped to 64 (half the model's 128-token context)" in capsys.readouterr().err
  report = json.loads((out / "results.json").read_text())
  assert report["meta"]["max_new_tokens"] == 64 and report["results"][0]["num_problems"] == 1
  with pytest.raises(SystemExit):
    run_eval_cli([f"--model={models['workdir']}", "--task=humaneval", "--limit=1",
               "--max_new_tokens=128", f"--out={out}"])
  assert "max_new_tokens=128 leaves no room" in capsys.readouterr().err


def test_teacher_and_quality_stage_load_through_the_loader(models):
  import ml_collections
  from phi_jax.curation import stages
  from phi_jax.curation import teacher as teachers
  for path in (models["workdir"], models["ckpt"], models["hf"]):
    t = teachers.LocalTeacher(path, tokenizer=models["sp"].path if path == models["ckpt"] else None)
    jax.tree.map(np.testing.assert_array_equal, t.params, models["later"])
  assert '"origin": "run:' in teachers.LocalTeacher(models["workdir"]).fingerprint

  def quality(kind, path):
    s = ml_collections.ConfigDict({"tokenizer": "", "model": {"kind": kind, "path": str(path)}})
    return stages._model_and_tokenizer(None, s, [], models["root"])

  for kind, path in (("run", models["workdir"]), ("auto", models["hf"]), ("hf", models["hf"])):
    cfg, params, tok = quality(kind, path)
    jax.tree.map(np.testing.assert_array_equal, params, models["later"])
  with pytest.raises(ValueError, match="kind='hf' but .* is a workdir folder"):
    quality("hf", models["workdir"])
  with pytest.raises(ValueError, match="has no tokenizer"):
    quality("checkpoint", models["ckpt"])
