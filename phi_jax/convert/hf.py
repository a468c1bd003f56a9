"""Hugging Face `phi` / `phi3` checkpoints <-> phi_jax (ModelConfig + Flax params). No torch.

    cfg, params = hf.load('/models/phi-2')                    # float32 params, numpy arrays
    logits = Transformer(cfg).apply({'params': params}, tokens)
    hf.save(cfg, params, '/tmp/phi-2-hf')    # transformers.AutoModelForCausalLM.from_pretrained reads it

    python -m phi_jax.convert.hf --hf_dir=/models/phi-2 --out=/ckpt/phi-2 [--param_dtype=float32]

'phi' is phi-1/1.5/2 (parallel block, gelu, LayerNorm, biases everywhere); 'phi3' is phi-3 mini /
medium (serial pre-norm, SwiGLU, RMSNorm, no biases, fused qkv_proj and gate_up_proj, LongRoPE).
PyTorch Linear weights are [out, in]; Flax kernels are [in, out] with the heads split out, and every
per-layer leaf is stacked on a leading [num_layers] axis (the layer scan).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import pathlib
from typing import Any, Optional, Sequence

from flax import traverse_util
import numpy as np
import safetensors
from safetensors import safe_open
import safetensors.numpy

from phi_jax.convert import checkpoint_io
from phi_jax.models.config import DTYPES, ModelConfig

SUPPORTED_MODEL_TYPES = ("phi", "phi3")
_PHI_ACTS = {"gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "gelu_fast": "gelu_tanh",
             "gelu": "gelu"}
_PHI3_ACTS = {"silu": "swiglu", "swish": "swiglu"}
# transformers' defaults for keys a config.json may leave out (PhiConfig / Phi3Config).
_DEFAULTS = {
    "phi": dict(vocab_size=51200, hidden_size=2048, intermediate_size=8192, num_hidden_layers=24,
                num_attention_heads=32, max_position_embeddings=2048, bos_token_id=1,
                eos_token_id=2, pad_token_id=None, hidden_act="gelu_new", partial_rotary_factor=0.5),
    "phi3": dict(vocab_size=32064, hidden_size=3072, intermediate_size=8192, num_hidden_layers=32,
                 num_attention_heads=32, max_position_embeddings=4096, bos_token_id=1,
                 eos_token_id=32000, pad_token_id=32000, hidden_act="silu",
                 partial_rotary_factor=1.0, original_max_position_embeddings=4096),
}
_ST_DTYPES = {"F32": "float32", "BF16": "bfloat16", "F16": "float16"}

Path = tuple[str, ...]


# ---- config.json <-> ModelConfig ---------------------------------------------------------------

# The type every config.json field that phi_jax reads must have (null is allowed where listed).
_INT, _FLOAT, _BOOL, _STR = "an integer", "a number", "true or false", "a string"
_FIELD_TYPES: dict[str, tuple[str, bool]] = {  # field: (expected, null allowed)
    "model_type": (_STR, False), "hidden_act": (_STR, False),
    "vocab_size": (_INT, False), "hidden_size": (_INT, False),
    "intermediate_size": (_INT, False), "num_hidden_layers": (_INT, False),
    "num_attention_heads": (_INT, False), "num_key_value_heads": (_INT, True),
    "head_dim": (_INT, True), "max_position_embeddings": (_INT, False),
    "original_max_position_embeddings": (_INT, True), "sliding_window": (_INT, True),
    "bos_token_id": (_INT, True), "pad_token_id": (_INT, True),
    "rope_theta": (_FLOAT, False), "partial_rotary_factor": (_FLOAT, False),
    "layer_norm_eps": (_FLOAT, False), "rms_norm_eps": (_FLOAT, False),
    "embd_pdrop": (_FLOAT, True), "resid_pdrop": (_FLOAT, True),
    "attention_dropout": (_FLOAT, True),
    "tie_word_embeddings": (_BOOL, True), "qk_layernorm": (_BOOL, True),
}


def _has_type(value: Any, expected: str) -> bool:
  if expected == _INT:  # JSON has no int/bool confusion, Python does: True is not a size
    return isinstance(value, int) and not isinstance(value, bool)
  if expected == _FLOAT:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
  return isinstance(value, bool if expected == _BOOL else str)


def check_config_types(hf: dict[str, Any], source: str = "config.json") -> None:
  """ValueError naming the first field of `hf` whose value has the wrong JSON type."""
  if not isinstance(hf, dict):
    raise ValueError(f"{source} must hold a JSON object, got {type(hf).__name__}")
  for key, (expected, nullable) in _FIELD_TYPES.items():
    if key not in hf or (hf[key] is None and nullable):
      continue
    if not _has_type(hf[key], expected):
      raise ValueError(f"{source}: field {key!r} is {hf[key]!r} ({type(hf[key]).__name__}); "
                       f"expected {expected}{' or null' if nullable else ''}. Fix the value "
                       "in config.json (e.g. 2048, not \"2048\")")
  eos = hf.get("eos_token_id")
  if eos is not None and not (_has_type(eos, _INT) or (
      isinstance(eos, list) and all(_has_type(e, _INT) for e in eos))):
    raise ValueError(f"{source}: field 'eos_token_id' is {eos!r} ({type(eos).__name__}); "
                     "expected an integer, a list of integers or null")
  for key in ("rope_scaling", "rope_parameters"):
    if hf.get(key) is not None and not isinstance(hf[key], dict):
      raise ValueError(f"{source}: field {key!r} is {hf[key]!r} ({type(hf[key]).__name__}); "
                       "expected a JSON object or null")


def _rope_from_hf(hf: dict[str, Any], model_type: str, head_dim: int) -> dict[str, Any]:
  """RoPE fields of ModelConfig from the released layout or transformers-5's `rope_parameters`."""
  defaults = _DEFAULTS[model_type]
  rope = dict(hf.get("rope_scaling") or hf.get("rope_parameters") or {})  # transformers' priority
  theta = float(rope.get("rope_theta", hf.get("rope_theta", 10000.0)))
  factor = rope.get("partial_rotary_factor",
                    hf.get("partial_rotary_factor", defaults["partial_rotary_factor"]))
  rot = int(head_dim * factor)
  out: dict[str, Any] = dict(rope_theta=theta, rotary_dim=None if rot == head_dim else rot)
  rope_type = rope.get("rope_type", rope.get("type", "default"))
  if model_type == "phi3" and rope_type in ("su", "yarn"):  # old phi-3 names of LongRoPE
    rope_type = "longrope"
  if rope_type == "default":
    return out
  if rope_type != "longrope":
    raise ValueError(f"RoPE type {rope_type!r} is not supported; phi_jax reads 'default' and "
                     "'longrope' ('su' / 'yarn' in old phi3 configs)")
  missing = [k for k in ("short_factor", "long_factor") if not rope.get(k)]
  if missing:
    raise ValueError(f"LongRoPE config lacks {missing} (expected lists of rotary_dim / 2 = "
                     f"{rot // 2} numbers in rope_scaling or rope_parameters)")
  original = (hf.get("original_max_position_embeddings")  # transformers prefers the top level
              or rope.get("original_max_position_embeddings")
              or defaults.get("original_max_position_embeddings")
              or hf.get("max_position_embeddings", defaults["max_position_embeddings"]))
  attention = rope.get("attention_factor")
  if attention is None and rope.get("factor") is not None:  # transformers uses it, not the ratio
    scale = float(rope["factor"])
    attention = 1.0 if scale <= 1.0 else math.sqrt(1.0 + math.log(scale) / math.log(original))
  out.update(rope_short_factor=tuple(float(f) for f in rope["short_factor"]),
             rope_long_factor=tuple(float(f) for f in rope["long_factor"]),
             rope_original_max_len=int(original),
             rope_attention_factor=None if attention is None else float(attention))
  return out


def config_from_hf(hf: dict[str, Any], *, name: str = "hf", dtype: str = "float32") -> ModelConfig:
  """A validated ModelConfig from a parsed HF config.json (model_type 'phi' or 'phi3')."""
  check_config_types(hf)
  model_type = hf.get("model_type")
  if model_type not in SUPPORTED_MODEL_TYPES:
    raise ValueError(f"model_type {model_type!r} is not supported; phi_jax.convert.hf reads "
                     f"{list(SUPPORTED_MODEL_TYPES)} (phi-3-small's 'phi3small' is remote code)")
  get = lambda key: hf[key] if key in hf else _DEFAULTS[model_type].get(key)
  acts = _PHI3_ACTS if model_type == "phi3" else _PHI_ACTS
  act = get("hidden_act")
  if act not in acts:
    raise ValueError(f"{model_type} hidden_act {act!r} is not supported; expected one of "
                     f"{sorted(acts)}")
  if hf.get("qk_layernorm"):
    raise ValueError("phi qk_layernorm=true (LayerNorm on queries and keys) is not supported by "
                     "phi_jax's Attention; only checkpoints with qk_layernorm=false convert")
  d_model, heads = get("hidden_size"), get("num_attention_heads")
  head_dim = hf.get("head_dim") or d_model // heads
  tie = bool(hf.get("tie_word_embeddings", False))
  if tie and model_type == "phi":
    raise ValueError("phi with tie_word_embeddings=true is not supported: its lm_head has a bias, "
                     "and a tied phi_jax head has none")
  eos = get("eos_token_id")
  if isinstance(eos, (list, tuple)):
    eos = eos[0] if eos else None
  fields: dict[str, Any] = dict(
      name=name, vocab_size=get("vocab_size"), d_model=d_model,
      num_layers=get("num_hidden_layers"), num_heads=heads,
      num_kv_heads=hf.get("num_key_value_heads") or heads,
      head_dim=None if head_dim == d_model // heads else head_dim,
      mlp_dim=get("intermediate_size"), mlp=acts[act], tie_embeddings=tie,
      max_seq_len=get("max_position_embeddings"),
      embd_dropout=float(hf.get("embd_pdrop") or 0.0),
      resid_dropout=float(hf.get("resid_pdrop") or 0.0),
      attn_dropout=float(hf.get("attention_dropout") or 0.0),
      bos_id=get("bos_token_id"), eos_id=eos, pad_id=get("pad_token_id"),
      dtype=dtype, param_dtype=dtype, **_rope_from_hf(hf, model_type, head_dim))
  if model_type == "phi3":
    fields.update(block="serial", norm="rmsnorm", norm_eps=float(hf.get("rms_norm_eps", 1e-5)),
                  norm_bias=False, attn_bias=False, mlp_bias=False, lm_head_bias=False,
                  sliding_window=hf.get("sliding_window"))
  else:
    fields.update(block="parallel", norm="layernorm", norm_eps=float(hf.get("layer_norm_eps", 1e-5)),
                  norm_bias=True, attn_bias=True, mlp_bias=True, lm_head_bias=True)
  return ModelConfig(**fields).validate()


def hf_model_type(cfg: ModelConfig) -> str:
  """'phi' or 'phi3': the transformers architecture that represents `cfg`, else ValueError."""
  problems = []
  if cfg.block_sparse:
    problems.append("block_sparse=True")
  for field in ("embedding_multiplier", "logit_multiplier"):
    if getattr(cfg, field) != 1.0:
      problems.append(f"{field}={getattr(cfg, field)} (must be 1.0)")
  if cfg.attn_scale is not None and not math.isclose(cfg.attn_scale, cfg.dim_per_head ** -0.5):
    problems.append(f"attn_scale={cfg.attn_scale} (must be 1/sqrt(head_dim))")
  if cfg.block == "parallel" and cfg.mlp in ("gelu_tanh", "gelu") and cfg.norm == "layernorm":
    model_type = "phi"
    for field in ("norm_bias", "attn_bias", "mlp_bias", "lm_head_bias"):
      if not getattr(cfg, field):
        problems.append(f"{field}=False (HF phi has biases everywhere)")
    if cfg.sliding_window is not None:
      problems.append("sliding_window is set (HF phi has none)")
  elif cfg.block == "serial" and cfg.mlp == "swiglu" and cfg.norm == "rmsnorm":
    model_type = "phi3"
    for field in ("attn_bias", "mlp_bias", "lm_head_bias"):
      if getattr(cfg, field):
        problems.append(f"{field}=True (HF phi3 has no biases)")
  else:
    model_type = "?"
    problems.append(f"block={cfg.block!r}, mlp={cfg.mlp!r}, norm={cfg.norm!r}: HF 'phi' is "
                    "parallel + gelu_tanh|gelu + layernorm, 'phi3' is serial + swiglu + rmsnorm")
  if problems:
    raise ValueError(f"ModelConfig {cfg.name!r} cannot be saved as a transformers phi/phi3 "
                     f"checkpoint: {'; '.join(problems)}")
  return model_type


def _partial_factor(head_dim: int, rot: int) -> float:
  """A float f with int(head_dim * f) == rot (transformers' rule), nudged up if rounding bites."""
  factor = rot / head_dim
  for _ in range(8):
    if int(head_dim * factor) == rot:
      return factor
    factor = float(np.nextafter(factor, 2.0))
  raise ValueError(f"no partial_rotary_factor gives rotary_dim={rot} for head_dim={head_dim}")


def config_to_hf(cfg: ModelConfig, dtype: str) -> dict[str, Any]:
  """The released-layout config.json dict (top-level rope_theta / partial_rotary_factor)."""
  model_type = hf_model_type(cfg)
  hf: dict[str, Any] = dict(
      architectures=["PhiForCausalLM" if model_type == "phi" else "Phi3ForCausalLM"],
      model_type=model_type, vocab_size=cfg.vocab_size, hidden_size=cfg.d_model,
      intermediate_size=cfg.mlp_dim, num_hidden_layers=cfg.num_layers,
      num_attention_heads=cfg.num_heads, num_key_value_heads=cfg.kv_heads,
      max_position_embeddings=cfg.max_seq_len, rope_theta=cfg.rope_theta,
      partial_rotary_factor=_partial_factor(cfg.dim_per_head, cfg.rot_dim), rope_scaling=None,
      tie_word_embeddings=cfg.tie_embeddings, embd_pdrop=cfg.embd_dropout,
      resid_pdrop=cfg.resid_dropout, attention_dropout=cfg.attn_dropout,
      bos_token_id=cfg.bos_id, eos_token_id=cfg.eos_id, pad_token_id=cfg.pad_id,
      initializer_range=0.02, use_cache=True, torch_dtype=dtype)
  if cfg.head_dim is not None and cfg.head_dim != cfg.d_model // cfg.num_heads:
    hf["head_dim"] = cfg.head_dim
  if model_type == "phi":
    hf.update(hidden_act="gelu_new" if cfg.mlp == "gelu_tanh" else "gelu",
              layer_norm_eps=cfg.norm_eps, qk_layernorm=False)
  else:
    hf.update(hidden_act="silu", rms_norm_eps=cfg.norm_eps, sliding_window=cfg.sliding_window)
  if cfg.long_rope:
    scaling = dict(type="longrope", short_factor=list(cfg.rope_short_factor),
                   long_factor=list(cfg.rope_long_factor),
                   original_max_position_embeddings=cfg.rope_original_max_len)
    if cfg.rope_attention_factor is not None:
      scaling["attention_factor"] = cfg.rope_attention_factor
    hf.update(rope_scaling=scaling, original_max_position_embeddings=cfg.rope_original_max_len)
  return hf


# ---- parameter layout ---------------------------------------------------------------------------

def param_shapes(cfg: ModelConfig) -> dict[Path, tuple[int, ...]]:
  """Flat {path: shape} of the tree `Transformer(cfg).init` makes (layer leaves lead with [L])."""
  L, D, V, F = cfg.num_layers, cfg.d_model, cfg.vocab_size, cfg.mlp_dim
  H, K, Dh = cfg.num_heads, cfg.kv_heads, cfg.dim_per_head
  shapes: dict[Path, tuple[int, ...]] = {("embed", "embedding"): (V, D)}
  for name, heads in (("q", H), ("k", K), ("v", K)):
    shapes[("layers", "attn", name, "kernel")] = (L, D, heads, Dh)
    if cfg.attn_bias:
      shapes[("layers", "attn", name, "bias")] = (L, heads, Dh)
  shapes[("layers", "attn", "o", "kernel")] = (L, H, Dh, D)
  if cfg.attn_bias:
    shapes[("layers", "attn", "o", "bias")] = (L, D)
  norms = [("layers", "input_norm"), ("final_norm",)]
  if cfg.block == "serial":
    norms.append(("layers", "mlp_norm"))
  for norm in norms:
    lead = (L,) if norm[0] == "layers" else ()
    shapes[norm + ("scale",)] = lead + (D,)
    if cfg.norm == "layernorm" and cfg.norm_bias:
      shapes[norm + ("bias",)] = lead + (D,)
  mlp = ((("gate", D, F), ("up", D, F), ("down", F, D)) if cfg.gated_mlp
         else (("fc1", D, F), ("fc2", F, D)))
  for name, fan_in, fan_out in mlp:
    shapes[("layers", "mlp", name, "kernel")] = (L, fan_in, fan_out)
    if cfg.mlp_bias:
      shapes[("layers", "mlp", name, "bias")] = (L, fan_out)
  if not cfg.tie_embeddings:
    shapes[("lm_head", "kernel")] = (D, V)
    if cfg.lm_head_bias:
      shapes[("lm_head", "bias")] = (V,)
  return shapes


# (HF name, HF shape, parts): each part is (Flax path, (row start, row end) or None for all rows).
# '{i}' in a name is the layer index; those parts index the leading [L] axis of the Flax leaf.
Entry = tuple[str, tuple[int, ...], list[tuple[Path, Optional[tuple[int, int]]]]]


def _layout(cfg: ModelConfig, model_type: str) -> list[Entry]:
  """How every HF tensor maps onto Flax leaves; kernels are transposed, then reshaped."""
  D, V, F = cfg.d_model, cfg.vocab_size, cfg.mlp_dim
  Hd, Kd = cfg.num_heads * cfg.dim_per_head, cfg.kv_heads * cfg.dim_per_head
  lay, attn, mlp = "model.layers.{i}.", ("layers", "attn"), ("layers", "mlp")
  out: list[Entry] = [("model.embed_tokens.weight", (V, D), [(("embed", "embedding"), None)])]

  def add(name: str, shape: tuple[int, ...], path: Path) -> None:
    out.append((name, shape, [(path, None)]))

  if model_type == "phi":
    for hf_name, ours, rows in (("q_proj", "q", Hd), ("k_proj", "k", Kd), ("v_proj", "v", Kd)):
      add(lay + f"self_attn.{hf_name}.weight", (rows, D), attn + (ours, "kernel"))
      add(lay + f"self_attn.{hf_name}.bias", (rows,), attn + (ours, "bias"))
    add(lay + "self_attn.dense.weight", (D, Hd), attn + ("o", "kernel"))
    add(lay + "self_attn.dense.bias", (D,), attn + ("o", "bias"))
    add(lay + "mlp.fc1.weight", (F, D), mlp + ("fc1", "kernel"))
    add(lay + "mlp.fc1.bias", (F,), mlp + ("fc1", "bias"))
    add(lay + "mlp.fc2.weight", (D, F), mlp + ("fc2", "kernel"))
    add(lay + "mlp.fc2.bias", (D,), mlp + ("fc2", "bias"))
    add(lay + "input_layernorm.weight", (D,), ("layers", "input_norm", "scale"))
    add(lay + "input_layernorm.bias", (D,), ("layers", "input_norm", "bias"))
    add("model.final_layernorm.weight", (D,), ("final_norm", "scale"))
    add("model.final_layernorm.bias", (D,), ("final_norm", "bias"))
  else:
    out.append((lay + "self_attn.qkv_proj.weight", (Hd + 2 * Kd, D), [
        (attn + ("q", "kernel"), (0, Hd)), (attn + ("k", "kernel"), (Hd, Hd + Kd)),
        (attn + ("v", "kernel"), (Hd + Kd, Hd + 2 * Kd))]))
    add(lay + "self_attn.o_proj.weight", (D, Hd), attn + ("o", "kernel"))
    out.append((lay + "mlp.gate_up_proj.weight", (2 * F, D), [
        (mlp + ("gate", "kernel"), (0, F)), (mlp + ("up", "kernel"), (F, 2 * F))]))
    add(lay + "mlp.down_proj.weight", (D, F), mlp + ("down", "kernel"))
    add(lay + "input_layernorm.weight", (D,), ("layers", "input_norm", "scale"))
    add(lay + "post_attention_layernorm.weight", (D,), ("layers", "mlp_norm", "scale"))
    add("model.norm.weight", (D,), ("final_norm", "scale"))
  if not cfg.tie_embeddings:
    add("lm_head.weight", (V, D), ("lm_head", "kernel"))
    if cfg.lm_head_bias:
      add("lm_head.bias", (V,), ("lm_head", "bias"))
  return out


def _expand(cfg: ModelConfig, layout: list[Entry]):
  """Yields (concrete HF name, layer index or None, shape, parts) for every tensor."""
  for name, shape, parts in layout:
    for i in (range(cfg.num_layers) if "{i}" in name else [None]):
      yield name.format(i=i), i, shape, parts


# ---- load ---------------------------------------------------------------------------------------

def _read_json(file: pathlib.Path) -> Any:
  try:
    return json.loads(file.read_text())
  except json.JSONDecodeError as e:
    raise ValueError(f"{file} is not valid JSON ({e}); is the file truncated or corrupt? "
                     "Download or save it again") from e


@contextlib.contextmanager
def _safetensors_errors(file: pathlib.Path):
  """Re-raises safetensors' errors (which do not name the file) as a ValueError that does."""
  try:
    yield
  except safetensors.SafetensorError as e:
    size = file.stat().st_size if file.exists() else 0
    raise ValueError(f"{file} ({size:,} bytes) could not be read: it looks truncated or corrupt "
                     f"(safetensors: {e}). Download or save it again") from e


def _open(file: pathlib.Path, stack: contextlib.ExitStack) -> Any:
  with _safetensors_errors(file):
    return stack.enter_context(safe_open(file, framework="np"))


def _tensor_files(path: pathlib.Path) -> dict[str, pathlib.Path]:
  """{tensor name: safetensors file} of a single-file or sharded checkpoint."""
  single, index = path / "model.safetensors", path / "model.safetensors.index.json"
  if single.is_file():
    with contextlib.ExitStack() as stack:
      return {name: single for name in _open(single, stack).keys()}
  if index.is_file():
    weight_map = _read_json(index)
    if not isinstance(weight_map, dict) or not isinstance(weight_map.get("weight_map"), dict):
      raise ValueError(f"{index} has no 'weight_map' object (tensor name -> shard file)")
    files = {name: path / f for name, f in weight_map["weight_map"].items()}
    absent = sorted({f.name for f in files.values() if not f.is_file()})
    if absent:
      raise ValueError(f"{index} names shard(s) that are not in the folder: {absent}")
    return files
  raise ValueError(f"{path} has no model.safetensors or model.safetensors.index.json "
                   "(pytorch_model.bin is not read: re-save it with save_pretrained, which "
                   "writes safetensors)")


def load(path: str | os.PathLike, *, param_dtype: Optional[str] = "float32"
         ) -> tuple[ModelConfig, dict[str, Any]]:
  """Reads a local HF folder (config.json + safetensors) -> (cfg, params of numpy arrays).

  param_dtype: cast every parameter to it; None keeps the checkpoint's dtype (fp32/bf16/fp16).
  cfg.param_dtype and cfg.dtype are set to the resulting dtype.
  """
  path = pathlib.Path(path)
  if param_dtype is not None and param_dtype not in DTYPES:
    raise ValueError(f"param_dtype {param_dtype!r} is not one of {DTYPES} (or None)")
  if not (path / "config.json").is_file():
    raise ValueError(f"{path} has no config.json: expected a Hugging Face model folder "
                     "(config.json + model.safetensors or model.safetensors.index.json)")
  hf = _read_json(path / "config.json")
  check_config_types(hf, str(path / "config.json"))
  cfg = config_from_hf(hf, name=path.absolute().name)
  layout = _layout(cfg, hf["model_type"])
  files = _tensor_files(path)
  expected = {name: shape for name, _, shape, _ in _expand(cfg, layout)}
  missing = [name for name in expected if name not in files]
  if missing:
    raise ValueError(f"{path}: {len(missing)} tensor(s) missing from the checkpoint: {missing}")
  ignored = {"lm_head.weight"} if cfg.tie_embeddings else set()
  extra = sorted(n for n in files if n not in expected and n not in ignored
                 and not n.endswith("inv_freq"))
  if extra:
    raise ValueError(f"{path}: unexpected tensor(s) for a {hf['model_type']} model with this "
                     f"config.json: {extra}")

  with contextlib.ExitStack() as stack:
    handles = {f: _open(f, stack) for f in sorted(set(files.values()))}
    bad, dtypes = [], {}
    for name, shape in expected.items():
      info = handles[files[name]].get_slice(name)
      if tuple(info.get_shape()) != shape:
        bad.append(f"{name}: expected shape {shape}, got {tuple(info.get_shape())}")
      dtypes[name] = info.get_dtype()
    if bad:
      raise ValueError(f"{path}: tensor(s) with the wrong shape for config.json: {bad}")
    unknown = sorted({d for d in dtypes.values() if d not in _ST_DTYPES})
    if unknown:
      raise ValueError(f"{path}: tensor dtype(s) {unknown} are not supported; expected "
                       f"{sorted(_ST_DTYPES)} (quantized checkpoints do not convert)")
    if param_dtype is None:
      param_dtype = _ST_DTYPES[dtypes["model.embed_tokens.weight"]]
    cfg = cfg.replace(dtype=param_dtype, param_dtype=param_dtype)
    out = {p: np.empty(s, np.dtype(param_dtype)) for p, s in param_shapes(cfg).items()}
    for name, i, _, parts in _expand(cfg, layout):
      with _safetensors_errors(files[name]):
        weight = handles[files[name]].get_tensor(name)
      for leaf, rows in parts:
        piece = weight if rows is None else weight[rows[0]:rows[1]]
        if leaf[-1] == "kernel":
          piece = piece.T
        dest = out[leaf] if i is None else out[leaf][i]
        dest[...] = piece.reshape(dest.shape).astype(dest.dtype)
  return cfg, traverse_util.unflatten_dict(out)


# ---- save ---------------------------------------------------------------------------------------

def save(cfg: ModelConfig, params: Any, path: str | os.PathLike, *, dtype: Optional[str] = None,
         max_shard_bytes: int = 5 * 2**30) -> None:
  """Writes a transformers-loadable folder: config.json + model.safetensors (or shards + index).

  dtype: tensor dtype on disk (default cfg.param_dtype). Atomic: nothing changes at `path` unless
  every file was written.
  """
  model_type = hf_model_type(cfg)
  dtype = dtype or cfg.param_dtype
  if dtype not in DTYPES:
    raise ValueError(f"dtype {dtype!r} is not one of {DTYPES}")
  flat = {p: np.asarray(x) for p, x in traverse_util.flatten_dict(params).items()}
  expected = param_shapes(cfg)
  problems = [f"missing {'/'.join(p)}" for p in expected if p not in flat]
  problems += [f"unexpected {'/'.join(p)}" for p in flat if p not in expected]
  problems += [f"{'/'.join(p)} has shape {flat[p].shape}, expected {s}"
               for p, s in expected.items() if p in flat and flat[p].shape != s]
  if problems:
    raise ValueError(f"params do not match ModelConfig {cfg.name!r}: {problems}")
  hf_config = config_to_hf(cfg, dtype)
  np_dtype = np.dtype(dtype)
  tensors = list(_expand(cfg, _layout(cfg, model_type)))
  shards: list[list[Any]] = [[]]
  size = 0
  for entry in tensors:  # greedy packing in checkpoint order
    nbytes = math.prod(entry[2]) * np_dtype.itemsize
    if shards[-1] and size + nbytes > max_shard_bytes:
      shards.append([])
      size = 0
    shards[-1].append(entry)
    size += nbytes

  def tensor(i: Optional[int], shape: tuple[int, ...], parts) -> np.ndarray:
    pieces = []
    for leaf, _ in parts:
      x = flat[leaf] if i is None else flat[leaf][i]
      pieces.append(x.reshape(shape[1], -1).T if leaf[-1] == "kernel"
                    else x.reshape((-1,) + shape[1:]))
    return np.ascontiguousarray(np.concatenate(pieces, 0).astype(np_dtype))

  with checkpoint_io.atomic_directory(path) as tmp:
    (tmp / "config.json").write_text(json.dumps(hf_config, indent=2))
    weight_map: dict[str, str] = {}
    for k, shard in enumerate(shards):
      file = ("model.safetensors" if len(shards) == 1
              else f"model-{k + 1:05d}-of-{len(shards):05d}.safetensors")
      data = {name: tensor(i, shape, parts) for name, i, shape, parts in shard}
      safetensors.numpy.save_file(data, str(tmp / file), metadata={"format": "pt"})
      weight_map.update({name: file for name in data})
    if len(shards) > 1:
      total = sum(math.prod(shape) * np_dtype.itemsize for _, _, shape, _ in tensors)
      index = {"metadata": {"total_size": total}, "weight_map": weight_map}
      (tmp / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))


# ---- CLI ----------------------------------------------------------------------------------------

def main(argv: Optional[Sequence[str]] = None) -> None:
  parser = argparse.ArgumentParser(
      prog="python -m phi_jax.convert.hf",
      description="Convert a local HF phi/phi3 folder to a phi_jax (orbax) checkpoint.")
  parser.add_argument("--hf_dir", required=True, help="folder with config.json + safetensors")
  parser.add_argument("--out", required=True, help="output folder (config.json + params/)")
  parser.add_argument("--param_dtype", default="float32", choices=[*DTYPES, "checkpoint"],
                      help="parameter dtype; 'checkpoint' keeps the checkpoint's own")
  args = parser.parse_args(argv)
  dtype = None if args.param_dtype == "checkpoint" else args.param_dtype
  cfg, params = load(args.hf_dir, param_dtype=dtype)
  checkpoint_io.save_model(cfg, params, args.out)
  model_type = json.loads((pathlib.Path(args.hf_dir) / "config.json").read_text())["model_type"]
  count = sum(x.size for x in traverse_util.flatten_dict(params).values())
  print(f"converted {model_type}: {cfg.num_layers} layers, {count:,} params, {cfg.param_dtype} "
        f"-> {os.path.abspath(args.out)}")


if __name__ == "__main__":
  main()
