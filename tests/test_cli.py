"""The command lines: tokenizers, `python -m phi_jax.generate` from HF folders and checkpoints."""

import pathlib
import subprocess
import sys

import pytest
from conftest import tiny

from phi_jax import generate as generate_cli
from phi_jax.convert import checkpoint_io, hf
from phi_jax.data import tokenizer as tokenizers

REPO = pathlib.Path(__file__).resolve().parents[1]
TEXT = [f"def function_{i}(x, y):\n    return x * {i} + y  # item {i}\n" for i in range(200)]


@pytest.fixture(scope="module")
def sp_model(tmp_path_factory):
  return tokenizers.train_sentencepiece(TEXT, tmp_path_factory.mktemp("sp") / "sp", vocab_size=300)


@pytest.fixture(scope="module")
def hf_json(tmp_path_factory):
  from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
  tok = Tokenizer(models.BPE(unk_token="<unk>"))
  tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
  tok.decoder = decoders.ByteLevel()
  tok.train_from_iterator(TEXT, trainers.BpeTrainer(vocab_size=280, special_tokens=[
      "<unk>", "<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
  path = tmp_path_factory.mktemp("hfjson") / "tokenizer.json"
  tok.save(str(path))
  return path


def test_sentencepiece_train_and_roundtrip(sp_model):
  assert sp_model.vocab_size == 300 and sp_model.eos_id == 3 and sp_model.bos_id == 2
  text = "def function_7(x, y):\n    return x * 7 + y\n"
  assert sp_model.decode(sp_model.encode(text)) == text  # whitespace and newlines preserved
  with_bos = tokenizers.load(sp_model.path, add_bos=True)
  assert with_bos.encode(text)[0] == 2 and with_bos.encode(text)[1:] == sp_model.encode(text)


def test_load_finds_tokenizer_files(hf_json, sp_model, tmp_path):
  tok = tokenizers.load(hf_json.parent)
  assert isinstance(tok, tokenizers.HFTokenizer)
  assert tok.decode(tok.encode("return x * 3")) == "return x * 3"
  assert tok.eos_id == tok.tok.token_to_id("<|endoftext|>")
  assert isinstance(tokenizers.load(sp_model.path), tokenizers.SentencePieceTokenizer)
  with pytest.raises(FileNotFoundError, match="No tokenizer.model or tokenizer.json"):
    tokenizers.load(tmp_path)


def _hf_folder(tmp_path, tokenizer_file, preset, vocab):
  cfg, params = tiny(preset, vocab_size=vocab)
  hf.save(cfg, params, tmp_path / "model")
  name = "tokenizer.json" if tokenizer_file.suffix == ".json" else "tokenizer.model"
  (tmp_path / "model" / name).write_bytes(tokenizer_file.read_bytes())
  return cfg, params, tmp_path / "model"


def test_generate_cli_with_sentencepiece(sp_model, tmp_path, capsys):
  _, _, folder = _hf_folder(tmp_path, pathlib.Path(sp_model.path), "tiny-serial", 300)
  prompt = "def function_3(x, y):"
  assert generate_cli.main(["--hf_dir", str(folder), "--prompt", prompt, "--prompt", "def",
                            "--max_new_tokens", "8"]) == 0
  out = capsys.readouterr().out
  assert out.count("-" * 40) == 2 and out.startswith(prompt)
  # SkipDecode from the command line (tiny-serial has 2 layers: 2 -> 2 with 1 warm-up layer
  # runs both; the stats line shows it), and a bad schedule is an error, not a traceback.
  assert generate_cli.main(["--hf_dir", str(folder), "--prompt", prompt, "--max_new_tokens", "4",
                            "--no_eos", "--skip", "2,2,1,4", "--stats"]) == 0
  assert "layers per token: [2, 2, 2, 2]" in capsys.readouterr().err
  assert generate_cli.main(["--hf_dir", str(folder), "--prompt", prompt, "--skip", "1,2,0,4"]) == 2
  assert "not monotone" in capsys.readouterr().err


def test_generate_cli_subprocess_from_checkpoint(hf_json, tmp_path):
  cfg, params, folder = _hf_folder(tmp_path, hf_json, "tiny-parallel", 280)
  checkpoint_io.save_model(cfg, params, tmp_path / "ckpt")
  run = subprocess.run(
      [sys.executable, "-m", "phi_jax.generate", f"--ckpt_dir={tmp_path / 'ckpt'}",
       f"--tokenizer={folder}", "--prompt=def function_", "--max_new_tokens=6",
       "--temperature=0.9", "--top_k=20", "--seed=3"],
      capture_output=True, text=True, cwd=REPO, timeout=300)
  assert run.returncode == 0, run.stderr
  assert run.stdout.startswith("def function_")


def test_generate_cli_errors(tmp_path, sp_model, capsys):
  assert generate_cli.main(["--hf_dir", str(tmp_path), "--prompt", "x"]) == 2
  assert "config.json" in capsys.readouterr().err
  _, _, folder = _hf_folder(tmp_path, pathlib.Path(sp_model.path), "tiny-serial", 300)
  assert generate_cli.main(["--hf_dir", str(folder), "--prompt", "x " * 200,
                            "--max_new_tokens", "8"]) == 2
  assert "max_seq_len=128" in capsys.readouterr().err


# ---- main, sweep and aot: one --config.KEY=VALUE parser (phi_jax.config_args) -------------------

def test_sweep_and_aot_parse_overrides_like_main(tmp_path, capsys):
  from phi_jax import sweep
  spec = f"--config={REPO / 'configs' / 'phi1.py'}:tiny"
  assert sweep.main([spec, f"--workdir={tmp_path}", "--dry_run", "--config.total_steps=5"]) == 0
  commands = [line for line in capsys.readouterr().out.splitlines() if "phi_jax.main" in line]
  assert len(commands) == 3 and all("--config.total_steps=5" in c for c in commands)
  assert "--config.optimizer.learning_rate=0.0003" in commands[0]
  assert sweep.main([spec, f"--workdir={tmp_path}", "--dry_run", "--config.optimizer.lr=1"]) == 1
  assert "the config has no field 'optimizer.lr'; valid fields at optimizer" in \
      capsys.readouterr().err
  run = subprocess.run([sys.executable, "-m", "phi_jax.aot", spec, "--config.total_step=3"],
                       capture_output=True, text=True, cwd=REPO, timeout=600)
  assert run.returncode == 1 and "the config has no field 'total_step'" in run.stderr
  assert "Traceback" not in run.stderr
