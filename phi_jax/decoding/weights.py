"""Decode weights: the params in the layout (and dtype) a decode loop reads, made once and reused.

    weights = decoding.prepare_weights(cfg, params)                  # default layout, own dtype
    weights = decoding.prepare_weights(cfg, params, dtype="bfloat16")  # bf16 weights and compute
    decoding.generate(cfg, weights, prompts, max_new_tokens=64)      # in place of params

Making a per-layer layout copies (and, for 'per_layer_t', transposes) every layer weight: ~80 ms
for a 17M-parameter model on one CPU core, far more for phi-2. `generate` therefore keeps the
weights it made for the last params it saw (`cached_weights`), keyed on the identity of the
params' leaves: a later call with the same leaf objects reuses them; any new leaf (updated or
restored params, a different model) makes new ones. Only jax arrays are cached (they are
immutable; a numpy leaf could be changed in place, so numpy params are converted on every call),
the cache holds weak references to them (it never keeps the user's params alive) and drops its
entry as soon as one of them is freed. The cached copy is a second copy of the layer weights,
alive as long as the params are: `clear_cache()` frees it.

dtype: the compute dtype of the decode loop (cfg.dtype) and of the weights' floating leaves.
'bfloat16' halves the bytes a decode step streams; norms, softmax and logits stay float32 as in
the model's bf16 training. Greedy tokens may then differ from float32's after some steps
(experiments/perf/decode_vs_hf.py --dtype=bfloat16 reports the first divergence).
"""

from __future__ import annotations

import weakref
from typing import Any, Mapping, Optional, Union

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import struct

from phi_jax.decoding import layouts
from phi_jax.models.config import ModelConfig

DTypeLike = Union[str, Any]


@struct.dataclass
class DecodeWeights:
  """The weights of a decode loop (a pytree; pass it to `generate` in place of params).

  params: the model's stacked params (layout 'stacked') or a `layouts.PerLayerParams`.
  layout: one of layouts.DECODE_LAYOUTS (static).
  dtype: the compute dtype the loop runs in (static; the weights' floating leaves have it too
    unless None = the params' own dtypes and cfg.dtype).
  num_layers: the model's depth (static; checked against the cfg `generate` gets).
  """
  params: Any
  layout: str = struct.field(pytree_node=False, default="stacked")
  dtype: Optional[str] = struct.field(pytree_node=False, default=None)
  num_layers: int = struct.field(pytree_node=False, default=0)

  def decode_cfg(self, cfg: ModelConfig) -> ModelConfig:
    """The config the decode program runs: cfg with the compute dtype of these weights."""
    if self.num_layers != cfg.num_layers:
      raise ValueError(f"these DecodeWeights are of a {self.num_layers}-layer model but the cfg "
                       f"has num_layers={cfg.num_layers}; prepare them from this model's params")
    return cfg if self.dtype is None or self.dtype == cfg.dtype else cfg.replace(dtype=self.dtype)


def _dtype_name(dtype: Optional[DTypeLike]) -> Optional[str]:
  if dtype is None:
    return None
  try:
    name = jnp.dtype(dtype).name
  except TypeError as e:
    raise ValueError(f"dtype {dtype!r} is not a dtype; use e.g. 'float32' or 'bfloat16'") from e
  if not jnp.issubdtype(jnp.dtype(name), jnp.floating):
    raise ValueError(f"dtype {dtype!r} is not a floating dtype; use 'float32' or 'bfloat16'")
  return name


def _cast(tree: Any, dtype: Optional[str]) -> Any:
  if dtype is None:
    return tree
  return jax.tree_util.tree_map(
      lambda x: x.astype(dtype) if jnp.issubdtype(x.dtype, jnp.floating) else x, tree)


def prepare_weights(cfg: ModelConfig, params: Mapping[str, Any], *,
                    layout: Optional[str] = None,
                    dtype: Optional[DTypeLike] = None) -> DecodeWeights:
  """The decode weights of `params` (the model's 'params' collection): copied into `layout`
  (default layouts.default_decode_layout(params)) and cast to `dtype` (default: as they are).
  Copies: make them once per (model, params), e.g. before a loop of generate calls."""
  if isinstance(params, DecodeWeights):
    raise ValueError("params are already DecodeWeights; pass them to generate as they are")
  params = nn.unbox(params)
  if "layers" not in params:
    raise ValueError(f"params have no 'layers' (keys {sorted(params)}); pass the model's "
                     "'params' collection, e.g. variables['params']")
  layout = layouts.default_decode_layout(params) if layout is None else layout
  layouts.check_layout(layout)
  name = _dtype_name(dtype)
  num_layers = jax.tree_util.tree_leaves(params["layers"])[0].shape[0]
  if num_layers != cfg.num_layers:
    raise ValueError(f"params have {num_layers} layers but cfg.num_layers={cfg.num_layers}")
  if layout == "stacked":
    cast = params if name is None else _jit_cast(params, name)
    return DecodeWeights(cast, layout, name, num_layers)
  per_layer = _jit_per_layer(params, name, layouts.KERNEL_LAYOUT[layout])
  return DecodeWeights(per_layer, layout, name, num_layers)


def check_weights(cfg: ModelConfig, weights: DecodeWeights, *, layout: Optional[str] = None,
                  dtype: Optional[DTypeLike] = None, layout_arg: str = "layout") -> None:
  """Raises a ValueError unless `weights` are of cfg's depth and, where given, in `layout` and
  running in `dtype` (`layout_arg`: the caller's name of the layout argument, for the error)."""
  weights.decode_cfg(cfg)  # checks the depth
  if layout is not None and layout != weights.layout:
    raise ValueError(f"{layout_arg}={layout!r} but the DecodeWeights given are in "
                     f"layout {weights.layout!r}; pass {layout_arg}=None or prepare them in "
                     f"{layout!r}")
  if dtype is not None and _dtype_name(dtype) != (weights.dtype or cfg.dtype):
    raise ValueError(f"dtype={dtype!r} but the DecodeWeights given run in "
                     f"{weights.dtype or cfg.dtype}; pass dtype=None or prepare them with it")


def ensure_weights(cfg: ModelConfig, params: Union[Mapping[str, Any], DecodeWeights], *,
                   layout: Optional[str] = None,
                   dtype: Optional[DTypeLike] = None) -> DecodeWeights:
  """`params` as DecodeWeights: given ones as they are (checked against cfg and, where given,
  `layout` / `dtype`: `check_weights`), plain params through `prepare_weights(cfg, params,
  layout=layout, dtype=dtype)`.

  For a caller that decodes the same params in many `generate` calls (batches): it makes the
  decode layout once before its loop. generate's own cache (`cached_weights`) keeps only jax-array
  params, and loaded checkpoints are numpy."""
  if isinstance(params, DecodeWeights):
    check_weights(cfg, params, layout=layout, dtype=dtype)
    return params
  return prepare_weights(cfg, params, layout=layout, dtype=dtype)


# Jitted: one program each (XLA:CPU's eager op-by-op copies and transposes are several x slower).
_jit_cast = jax.jit(_cast, static_argnums=1)
_jit_per_layer = jax.jit(lambda p, name, kernel_layout: layouts.per_layer_params(
    _cast(p, name), kernel_layout), static_argnums=(1, 2))


# ---- the cache generate keeps: the weights made for the last params it saw ---------------------

_CACHE: dict = {}  # key -> (weak references to the params' leaves, DecodeWeights); one entry


def _cacheable(leaves) -> bool:
  return bool(leaves) and all(isinstance(x, jax.Array) and not isinstance(x, jax.core.Tracer)
                              and not x.is_deleted() for x in leaves)


def cached_weights(cfg: ModelConfig, params: Mapping[str, Any], *,
                   layout: Optional[str] = None,
                   dtype: Optional[DTypeLike] = None) -> DecodeWeights:
  """`prepare_weights(cfg, params, layout=..., dtype=...)`, reused while `params` holds the same
  jax arrays (see the module docstring). Returns the cached weights or makes (and caches) them."""
  params = nn.unbox(params)
  leaves, treedef = jax.tree_util.tree_flatten(params)
  if not _cacheable(leaves):
    return prepare_weights(cfg, params, layout=layout, dtype=dtype)
  layout = layouts.default_decode_layout(params) if layout is None else layout
  key = (cfg, layout, _dtype_name(dtype), treedef, tuple(id(x) for x in leaves))
  hit = _CACHE.get(key)
  if hit is not None and all(ref() is leaf for ref, leaf in zip(hit[0], leaves)):
    return hit[1]
  _CACHE.clear()  # one entry: the previous params' copy is freed before this one is made
  weights = prepare_weights(cfg, params, layout=layout, dtype=dtype)

  def evict(_ref, key=key, cache=_CACHE):  # a leaf was freed: its id may be reused, so the
    cache.pop(key, None)  # weights are stale (`cache` bound now: no module globals at exit)

  _CACHE[key] = ([weakref.ref(x, evict) for x in leaves], weights)
  return weights


def clear_cache() -> None:
  """Frees the decode weights `generate` keeps for the last params it saw."""
  _CACHE.clear()


def cache_size() -> int:
  """How many decode-weight entries are cached (0 or 1; for tests)."""
  return len(_CACHE)
