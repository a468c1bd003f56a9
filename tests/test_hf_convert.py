"""HF phi / phi3 <-> phi_jax conversion: logit parity with transformers on random tiny models.

Nothing is downloaded: every HF model is built from a config with a fixed torch seed, its biases and
norm weights perturbed (HF initialises them to 0 / 1, which would hide mapping mistakes), and saved
with save_pretrained into a pytest tmp dir.
"""

from __future__ import annotations

import json
import math
import os
import pathlib
import shutil
import subprocess
import sys
from typing import Any, NamedTuple

from flax import traverse_util
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import safetensors.numpy

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from phi_jax.convert import checkpoint_io, hf  # noqa: E402
from phi_jax.models import Transformer, presets  # noqa: E402

torch.set_num_threads(1)
TOL = 1e-4
REPO = pathlib.Path(__file__).resolve().parents[1]


class HFModel(NamedTuple):
  path: pathlib.Path
  model: Any  # the torch model, float32, eval mode


def _build(tmp_path_factory, name: str, config, dtype=None) -> HFModel:
  config._attn_implementation = "eager"
  cls = transformers.PhiForCausalLM if config.model_type == "phi" else transformers.Phi3ForCausalLM
  torch.manual_seed(0)
  model = cls(config).eval()
  with torch.no_grad():
    for pname, param in model.named_parameters():
      if pname.endswith("bias") or "norm" in pname:
        param.add_(0.2 * torch.randn_like(param))
  path = tmp_path_factory.mktemp(name)
  if dtype is not None:
    model = model.to(dtype)
  model.save_pretrained(path)
  return HFModel(path, model.float())


def _tokens(vocab: int, length: int, batch: int = 2, seed: int = 0) -> np.ndarray:
  return np.random.default_rng(seed).integers(0, vocab, (batch, length)).astype(np.int64)


def _hf_logits(model, tokens: np.ndarray) -> np.ndarray:
  with torch.no_grad():
    return model(input_ids=torch.from_numpy(tokens)).logits.float().numpy()


def _jax_logits(cfg, params, tokens: np.ndarray) -> np.ndarray:
  fn = jax.jit(lambda p, t: Transformer(cfg).apply({"params": p}, t))
  return np.asarray(fn(params, jnp.asarray(tokens, jnp.int32)))


def _max_diff(a: np.ndarray, b: np.ndarray) -> float:
  assert a.shape == b.shape, (a.shape, b.shape)
  return float(np.max(np.abs(a - b)))


def _phi(**kw):
  base = dict(vocab_size=257, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
              num_attention_heads=4, max_position_embeddings=128, initializer_range=0.1,
              rope_theta=500.0)
  return transformers.PhiConfig(**{**base, **kw})


def _phi3(**kw):
  base = dict(vocab_size=263, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
              num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=128,
              initializer_range=0.1, bos_token_id=1, eos_token_id=2, pad_token_id=0)
  return transformers.Phi3Config(**{**base, **kw})


SHORT = [1.0, 1.1, 1.2, 1.3, 1.5, 1.8, 2.0, 2.5]
LONG = [1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0]


@pytest.fixture(scope="module")
def phi_half(tmp_path_factory):  # head_dim 16, rotary 8
  return _build(tmp_path_factory, "phi_half", _phi(partial_rotary_factor=0.5))


@pytest.fixture(scope="module")
def phi_04(tmp_path_factory):  # head_dim 20, rotary 8 (phi-2's factor); erf gelu; GQA 4/2
  return _build(tmp_path_factory, "phi_04", _phi(
      vocab_size=263, hidden_size=80, intermediate_size=96, partial_rotary_factor=0.4,
      num_key_value_heads=2, hidden_act="gelu"))


@pytest.fixture(scope="module")
def phi3_gqa(tmp_path_factory):
  return _build(tmp_path_factory, "phi3_gqa", _phi3(num_key_value_heads=2, eos_token_id=[2, 3]))


@pytest.fixture(scope="module")
def phi3_longrope(tmp_path_factory):
  return _build(tmp_path_factory, "phi3_longrope", _phi3(
      original_max_position_embeddings=32,
      rope_scaling=dict(type="longrope", short_factor=SHORT, long_factor=LONG)))


@pytest.fixture(scope="module")
def phi3_sliding(tmp_path_factory):
  return _build(tmp_path_factory, "phi3_sliding", _phi3(sliding_window=8))


# ---- load: parity with transformers ------------------------------------------------------------

@pytest.mark.parametrize("fixture,length", [
    ("phi_half", 16), ("phi_04", 16), ("phi3_gqa", 16), ("phi3_longrope", 24),
    ("phi3_longrope", 48), ("phi3_sliding", 32)])
def test_load_matches_transformers(fixture, length, request):
  m: HFModel = request.getfixturevalue(fixture)
  cfg, params = hf.load(m.path)
  abstract = jax.eval_shape(lambda: Transformer(cfg).init(
      jax.random.key(0), jnp.zeros((1, 4), jnp.int32)))
  want = jax.tree.map(lambda x: (x.shape, x.dtype), nn.unbox(abstract)["params"])
  assert jax.tree.map(lambda x: (x.shape, x.dtype), params) == want
  tokens = _tokens(cfg.vocab_size, length)
  assert _max_diff(_jax_logits(cfg, params, tokens), _hf_logits(m.model, tokens)) <= TOL


def test_config_fields(phi_04, phi3_gqa, phi3_longrope, phi3_sliding):
  cfg, _ = hf.load(phi_04.path)
  assert (cfg.block, cfg.mlp, cfg.norm, cfg.rot_dim, cfg.dim_per_head) == (
      "parallel", "gelu", "layernorm", 8, 20)
  assert (cfg.kv_heads, cfg.rope_theta, cfg.vocab_size, cfg.max_seq_len) == (2, 500.0, 263, 128)
  cfg, _ = hf.load(phi3_gqa.path)
  assert (cfg.block, cfg.mlp, cfg.norm, cfg.kv_heads, cfg.rotary_dim) == (
      "serial", "swiglu", "rmsnorm", 2, None)
  assert (cfg.bos_id, cfg.eos_id, cfg.pad_id) == (1, 2, 0)  # eos list -> first
  cfg, _ = hf.load(phi3_longrope.path)
  assert cfg.rope_short_factor == tuple(SHORT) and cfg.rope_long_factor == tuple(LONG)
  assert cfg.rope_original_max_len == 32 and cfg.rope_attention_factor is None
  assert hf.load(phi3_sliding.path)[0].sliding_window == 8


def _released_layout(raw: dict) -> dict:
  out = {k: v for k, v in raw.items() if k != "rope_parameters"}
  rope = raw["rope_parameters"]
  out.update(rope_theta=rope["rope_theta"], partial_rotary_factor=rope["partial_rotary_factor"])
  if rope["rope_type"] == "longrope":
    out["rope_scaling"] = dict(type="longrope", short_factor=rope["short_factor"],
                               long_factor=rope["long_factor"])
    out["original_max_position_embeddings"] = rope["original_max_position_embeddings"]
  return out


def _rope_parameters_only(raw: dict) -> dict:
  drop = ("rope_theta", "partial_rotary_factor", "rope_scaling", "original_max_position_embeddings")
  return {k: v for k, v in raw.items() if k not in drop}


@pytest.mark.parametrize("fixture", ["phi_04", "phi3_longrope"])
def test_config_layouts_agree(fixture, request):
  raw = json.loads((request.getfixturevalue(fixture).path / "config.json").read_text())
  assert "rope_parameters" in raw  # what transformers 5 writes
  want = hf.config_from_hf(raw)
  assert hf.config_from_hf(_released_layout(raw)) == want
  assert hf.config_from_hf(_rope_parameters_only(raw)) == want


def test_longrope_attention_factor_matches_transformers():
  from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS
  for extra in (dict(factor=2.0), dict(attention_factor=1.3), {}):
    config = _phi3(original_max_position_embeddings=32, rope_scaling=dict(
        type="longrope", short_factor=SHORT, long_factor=LONG, **extra))
    _, hf_factor = ROPE_INIT_FUNCTIONS["longrope"](config)
    cfg = hf.config_from_hf(config.to_dict())
    assert math.isclose(cfg.rope_scaling_factor, hf_factor, rel_tol=1e-12), extra


# ---- dtypes ------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype,name", [(torch.bfloat16, "bfloat16"), (torch.float16, "float16")])
def test_half_precision_checkpoints(dtype, name, tmp_path_factory):
  m = _build(tmp_path_factory, f"phi3_{name}", _phi3(num_key_value_heads=2), dtype=dtype)
  cfg, params = hf.load(m.path, param_dtype=None)
  assert (cfg.param_dtype, cfg.dtype) == (name, name)
  assert {str(x.dtype) for x in jax.tree.leaves(params)} == {name}
  cfg32, params32 = hf.load(m.path)
  assert cfg32.param_dtype == "float32"
  jax.tree.map(lambda a, b: np.testing.assert_array_equal(a.astype(np.float32), b),
               params, params32)
  # HF's fp32 upcast of the same weights. (Not m.model.float(): `.to(bf16)` also rounded its
  # rotary inv_freq buffer, which a fresh from_pretrained recomputes in fp32.)
  tokens = _tokens(cfg.vocab_size, 16)
  hf_logits = _hf_logits(_from_pretrained(m.path), tokens)
  assert _max_diff(_jax_logits(cfg32, params32, tokens), hf_logits) <= TOL


# ---- save: transformers reads what phi_jax writes -----------------------------------------------

def _from_pretrained(path):
  return transformers.AutoModelForCausalLM.from_pretrained(
      path, dtype=torch.float32, attn_implementation="eager").eval()


@pytest.mark.parametrize("fixture,length", [
    ("phi_half", 16), ("phi_04", 16), ("phi3_gqa", 16), ("phi3_longrope", 48),
    ("phi3_sliding", 32)])
def test_save_roundtrip_through_transformers(fixture, length, request, tmp_path):
  m: HFModel = request.getfixturevalue(fixture)
  cfg, params = hf.load(m.path)
  hf.save(cfg, params, tmp_path / "out")
  assert sorted(os.listdir(tmp_path)) == ["out"]  # no temp dirs left behind
  saved = json.loads((tmp_path / "out" / "config.json").read_text())
  assert "rope_theta" in saved and "partial_rotary_factor" in saved  # released layout
  tokens = _tokens(cfg.vocab_size, length, seed=1)
  assert _max_diff(_hf_logits(_from_pretrained(tmp_path / "out"), tokens),
                   _hf_logits(m.model, tokens)) <= TOL
  cfg2, params2 = hf.load(tmp_path / "out")
  assert cfg2.replace(name=cfg.name) == cfg
  jax.tree.map(np.testing.assert_array_equal, params2, params)


@pytest.mark.parametrize("preset,overrides,length", [
    ("tiny-parallel", {}, 16), ("tiny-serial", dict(sliding_window=6), 16),
    ("tiny-longrope", dict(rope_attention_factor=1.25), 40)])
def test_save_random_phi_jax_model(preset, overrides, length, tmp_path):
  """Models that never came from HF: presets with random params."""
  cfg = presets.get(preset, **overrides)
  rng = np.random.default_rng(0)
  params = {path: rng.normal(0, 0.1, shape).astype(np.float32) + (path[-1] == "scale")
            for path, shape in hf.param_shapes(cfg).items()}
  params = traverse_util.unflatten_dict(params)
  hf.save(cfg, params, tmp_path / "out")
  tokens = _tokens(cfg.vocab_size, length)
  assert _max_diff(_hf_logits(_from_pretrained(tmp_path / "out"), tokens),
                   _jax_logits(cfg, params, tokens)) <= TOL


def test_sharded_save(phi3_gqa, tmp_path):
  cfg, params = hf.load(phi3_gqa.path)
  hf.save(cfg, params, tmp_path / "out", max_shard_bytes=40_000)
  out = tmp_path / "out"
  index = json.loads((out / "model.safetensors.index.json").read_text())
  shards = sorted(p.name for p in out.glob("model-*.safetensors"))
  assert len(shards) > 2 and not (out / "model.safetensors").exists()
  assert set(index["weight_map"].values()) == set(shards)
  assert index["metadata"]["total_size"] == sum(
      x.nbytes for s in shards for x in safetensors.numpy.load_file(out / s).values())
  cfg2, params2 = hf.load(out)
  jax.tree.map(np.testing.assert_array_equal, params2, params)
  tokens = _tokens(cfg.vocab_size, 16)
  assert _max_diff(_hf_logits(_from_pretrained(out), tokens),
                   _hf_logits(phi3_gqa.model, tokens)) <= TOL


def test_save_in_bfloat16(phi_half, tmp_path):
  cfg, params = hf.load(phi_half.path)
  hf.save(cfg, params, tmp_path / "out", dtype="bfloat16")
  assert json.loads((tmp_path / "out" / "config.json").read_text())["torch_dtype"] == "bfloat16"
  cfg2, params2 = hf.load(tmp_path / "out", param_dtype=None)
  assert cfg2.param_dtype == "bfloat16"
  jax.tree.map(lambda a, b: np.testing.assert_array_equal(a, b.astype(a.dtype)), params2, params)


def test_failed_save_leaves_nothing(phi_half, tmp_path, monkeypatch):
  cfg, params = hf.load(phi_half.path)

  def broken_writer(tensors, filename, metadata=None):
    pathlib.Path(filename).write_bytes(b"half a file")
    raise OSError("disk full")

  monkeypatch.setattr(safetensors.numpy, "save_file", broken_writer)
  with pytest.raises(OSError, match="disk full"):
    hf.save(cfg, params, tmp_path / "new")
  assert os.listdir(tmp_path) == []
  (tmp_path / "old").mkdir()
  (tmp_path / "old" / "keep.txt").write_text("precious")
  with pytest.raises(OSError, match="disk full"):
    hf.save(cfg, params, tmp_path / "old")
  assert os.listdir(tmp_path) == ["old"]
  assert os.listdir(tmp_path / "old") == ["keep.txt"]
  monkeypatch.undo()
  hf.save(cfg, params, tmp_path / "old")  # a successful save replaces the folder
  assert sorted(os.listdir(tmp_path)) == ["old"]
  assert sorted(os.listdir(tmp_path / "old")) == ["config.json", "model.safetensors"]


def test_save_rejects_unrepresentable_configs(tmp_path):
  cfg = presets.get("tiny-small")  # gegelu, muP, block-sparse: phi-3-small is not in transformers
  with pytest.raises(ValueError, match="cannot be saved"):
    hf.save(cfg, {}, tmp_path / "out")
  cfg = presets.get("tiny-serial", attn_bias=True)
  with pytest.raises(ValueError, match="attn_bias=True"):
    hf.save(cfg, {}, tmp_path / "out")
  assert not (tmp_path / "out").exists()


# ---- errors ------------------------------------------------------------------------------------

def _copy_with(src: pathlib.Path, dst: pathlib.Path, edit) -> pathlib.Path:
  shutil.copytree(src, dst)
  tensors = safetensors.numpy.load_file(dst / "model.safetensors")
  edit(tensors)
  safetensors.numpy.save_file(tensors, dst / "model.safetensors", metadata={"format": "pt"})
  return dst


def test_unsupported_model_type(phi_half, tmp_path):
  shutil.copytree(phi_half.path, tmp_path / "m")
  raw = json.loads((tmp_path / "m" / "config.json").read_text())
  (tmp_path / "m" / "config.json").write_text(json.dumps({**raw, "model_type": "llama"}))
  with pytest.raises(ValueError, match=r"'llama'.*'phi', 'phi3'"):
    hf.load(tmp_path / "m")


def test_missing_tensor(phi3_gqa, tmp_path):
  name = "model.layers.1.mlp.down_proj.weight"
  path = _copy_with(phi3_gqa.path, tmp_path / "m", lambda t: t.pop(name))
  with pytest.raises(ValueError, match="missing.*" + name.replace(".", r"\.")):
    hf.load(path)


def test_misshapen_tensor(phi3_gqa, tmp_path):
  name = "model.layers.0.self_attn.o_proj.weight"
  path = _copy_with(phi3_gqa.path, tmp_path / "m", lambda t: t.update({name: t[name][:, :-1]}))
  with pytest.raises(ValueError, match=r"o_proj\.weight: expected shape \(64, 64\), got \(64, 63\)"):
    hf.load(path)


def test_unexpected_tensor_and_ignored_inv_freq(phi_half, tmp_path):
  def add(t):
    t["model.layers.0.self_attn.rotary_emb.inv_freq"] = np.ones(4, np.float32)
  cfg, _ = hf.load(_copy_with(phi_half.path, tmp_path / "ok", add))
  assert cfg.num_layers == 2

  def add_bad(t):
    t["model.layers.0.self_attn.q_layernorm.weight"] = np.ones(16, np.float32)
  with pytest.raises(ValueError, match=r"unexpected.*q_layernorm"):
    hf.load(_copy_with(phi_half.path, tmp_path / "bad", add_bad))


def test_unsupported_config_values(phi_half, phi3_gqa):
  raw = json.loads((phi_half.path / "config.json").read_text())
  with pytest.raises(ValueError, match="qk_layernorm"):
    hf.config_from_hf({**raw, "qk_layernorm": True})
  with pytest.raises(ValueError, match="hidden_act 'relu'"):
    hf.config_from_hf({**raw, "hidden_act": "relu"})
  raw3 = json.loads((phi3_gqa.path / "config.json").read_text())
  with pytest.raises(ValueError, match="RoPE type 'dynamic'"):
    hf.config_from_hf({**raw3, "rope_parameters": {"rope_type": "dynamic", "factor": 2.0}})


@pytest.mark.parametrize("field, value, expected", [
    ("hidden_size", "64", "an integer"), ("num_hidden_layers", 2.0, "an integer"),
    ("vocab_size", True, "an integer"), ("rope_theta", "1e4", "a number"),
    ("tie_word_embeddings", "false", "true or false"), ("eos_token_id", "2", "an integer"),
    ("rope_scaling", [1, 2], "a JSON object")])
def test_config_field_types_are_checked(phi_half, tmp_path, field, value, expected):
  """Regression: a string hidden_size gave a raw TypeError from deep inside hf.load."""
  shutil.copytree(phi_half.path, tmp_path / "m")
  raw = json.loads((tmp_path / "m" / "config.json").read_text())
  (tmp_path / "m" / "config.json").write_text(json.dumps({**raw, field: value}))
  with pytest.raises(ValueError) as e:
    hf.load(tmp_path / "m")
  message = str(e.value)
  assert str(tmp_path / "m" / "config.json") in message and f"'{field}'" in message
  assert repr(value) in message and expected in message


@pytest.mark.parametrize("keep", [0.5, 0.999, 100])
def test_truncated_safetensors_names_the_file(phi_half, tmp_path, keep):
  """Regression: a truncated model.safetensors gave safetensors' message without the file name."""
  shutil.copytree(phi_half.path, tmp_path / "m")
  file = tmp_path / "m" / "model.safetensors"
  size = file.stat().st_size
  os.truncate(file, int(size * keep) if keep < 1 else keep)
  with pytest.raises(ValueError, match="truncated or corrupt") as e:
    hf.load(tmp_path / "m")
  assert str(file) in str(e.value)


def test_truncated_shard_and_index_name_the_file(phi3_gqa, tmp_path):
  cfg, params = hf.load(phi3_gqa.path)
  hf.save(cfg, params, tmp_path / "m", max_shard_bytes=20_000)
  shards = sorted((tmp_path / "m").glob("model-*.safetensors"))
  assert len(shards) > 1
  os.truncate(shards[-1], shards[-1].stat().st_size // 2)
  with pytest.raises(ValueError, match=f"{shards[-1].name}.*truncated or corrupt"):
    hf.load(tmp_path / "m")
  index = tmp_path / "m" / "model.safetensors.index.json"
  index.write_text(index.read_text()[:40])
  with pytest.raises(ValueError, match="index.json is not valid JSON"):
    hf.load(tmp_path / "m")


# ---- CLI and orbax checkpoints -----------------------------------------------------------------

def test_cli_converts_to_orbax(phi3_longrope, tmp_path):
  out = tmp_path / "ckpt"
  result = subprocess.run(
      [sys.executable, "-m", "phi_jax.convert.hf", f"--hf_dir={phi3_longrope.path}",
       f"--out={out}"], cwd=REPO, capture_output=True, text=True, timeout=300,
      env={**os.environ, "JAX_PLATFORMS": "cpu"})
  assert result.returncode == 0, result.stderr
  assert "phi3" in result.stdout and str(out) in result.stdout
  cfg, params = checkpoint_io.load_model(out)
  want_cfg, want = hf.load(phi3_longrope.path)
  assert cfg == want_cfg
  jax.tree.map(np.testing.assert_array_equal, params, want)
  assert json.loads((out / "config.json").read_text())["rope_long_factor"] == LONG


def test_checkpoint_io_roundtrip_bfloat16(phi_half, tmp_path):
  cfg, params = hf.load(phi_half.path, param_dtype="bfloat16")
  checkpoint_io.save_model(cfg, params, tmp_path / "ckpt")
  checkpoint_io.save_model(cfg, params, tmp_path / "ckpt")  # overwrite in place
  cfg2, params2 = checkpoint_io.load_model(tmp_path / "ckpt")
  assert cfg2 == cfg and sorted(os.listdir(tmp_path)) == ["ckpt"]
  jax.tree.map(lambda a, b: (a.dtype == b.dtype) and np.testing.assert_array_equal(a, b),
               params2, params)


# ---- generation: greedy tokens identical to transformers' generate ----------------------------

def _hf_greedy(model, prompt: list[int], new: int) -> list[int]:
  config = transformers.GenerationConfig(max_new_tokens=new, min_new_tokens=new, do_sample=False,
                                         eos_token_id=None, pad_token_id=0)
  with torch.no_grad():
    out = model.generate(torch.tensor([prompt]), generation_config=config)
  return out[0, len(prompt):].tolist()


@pytest.mark.parametrize("fixture,lengths", [
    ("phi_half", (8, 3, 13)), ("phi_04", (8, 5)), ("phi3_gqa", (8, 1, 11)),
    ("phi3_sliding", (6, 12)),          # 32 new tokens run far past the window of 8
    ("phi3_longrope", (36, 40)),        # long factors from the first token on
    ("phi3_longrope", (4,)),            # 4 + 28 = 32 = original length: short factors throughout
])
def test_greedy_generation_matches_transformers(fixture, lengths, request):
  from phi_jax.decoding import generate
  m: HFModel = request.getfixturevalue(fixture)
  cfg, params = hf.load(m.path)
  rng = np.random.default_rng(7)
  prompts = [rng.integers(3, cfg.vocab_size, n).tolist() for n in lengths]
  new = 32 if lengths != (4,) else 28
  ours = generate(cfg, params, prompts, max_new_tokens=new)  # one left-padded batch
  for prompt, got in zip(prompts, ours):
    assert got == _hf_greedy(m.model, prompt, new)
