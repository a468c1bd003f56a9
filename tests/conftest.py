"""Test setup: 8 simulated CPU devices (set before jax is imported), absl flags parsed, and
cached tiny models."""

import os

os.environ.setdefault("XLA_FLAGS", "")
if "xla_force_host_platform_device_count" not in os.environ["XLA_FLAGS"]:
  os.environ["XLA_FLAGS"] += " --xla_force_host_platform_device_count=8"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import functools  # noqa: E402

import flax.linen as nn  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import pytest  # noqa: E402
from absl import flags  # noqa: E402

flags.FLAGS.mark_as_parsed()


@functools.lru_cache(maxsize=None)
def _init(cfg, seed):
  from phi_jax.models import Transformer
  model = Transformer(cfg)
  variables = jax.jit(model.init)(jax.random.key(seed), jnp.zeros((1, 8), jnp.int32))
  return nn.unbox(variables["params"])


def tiny(name: str, seed: int = 0, **overrides):
  """(cfg, params) for a tiny preset with overrides; params are random (std 0.02 kernels, plus
  random norms/biases so that every parameter matters)."""
  from phi_jax.models import presets
  cfg = presets.get(name, **overrides)
  params = _init(cfg, seed)
  return cfg, perturb(params, seed)


def perturb(params, seed: int):
  """Makes norm scales/biases non-trivial so that tests see every parameter."""
  leaves, treedef = jax.tree_util.tree_flatten_with_path(params)
  keys = jax.random.split(jax.random.key(seed + 1000), len(leaves))
  out = []
  for (path, leaf), key in zip(leaves, keys):
    names = [getattr(p, "key", "") for p in path]
    if names[-1] in ("scale", "bias"):
      base = 1.0 if names[-1] == "scale" else 0.0
      leaf = (base + 0.1 * jax.random.normal(key, leaf.shape)).astype(leaf.dtype)
    out.append(leaf)
  return jax.tree_util.tree_unflatten(treedef, out)


@pytest.fixture
def tiny_model():
  return tiny
