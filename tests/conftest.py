"""Test setup: 8 simulated CPU devices (set before jax is imported), absl flags parsed, and
random tiny models (`tiny`)."""

import os

os.environ.setdefault("XLA_FLAGS", "")
if "xla_force_host_platform_device_count" not in os.environ["XLA_FLAGS"]:
  os.environ["XLA_FLAGS"] += " --xla_force_host_platform_device_count=8"
# Tiny test programs are dominated by compile time; LLVM's backend optimisations cost ~3x in
# compile time and buy nothing here. (Benchmarks never run under this flag.)
if "xla_backend_optimization_level" not in os.environ["XLA_FLAGS"]:
  os.environ["XLA_FLAGS"] += " --xla_backend_optimization_level=0"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import flax.linen as nn  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from absl import flags  # noqa: E402

flags.FLAGS.mark_as_parsed()


def run_eval_cli(argv):
  """Runs `python -m phi_jax.eval` in-process with `argv` (absl flags restored afterwards)."""
  from phi_jax import eval as eval_cli
  flags.FLAGS.unparse_flags()
  try:
    flags.FLAGS(["phi_jax.eval"] + list(argv))
    eval_cli.main(["phi_jax.eval"])
  finally:
    flags.FLAGS.unparse_flags()
    flags.FLAGS.mark_as_parsed()


def tiny(name: str, seed: int = 0, **overrides):
  """(cfg, params) for a tiny preset with overrides.

  Parameters are drawn with numpy from the shapes of `Transformer(cfg).init` (traced, not
  compiled): kernels and embeddings N(0, 0.1), norm scales 1 + N(0, 0.1), biases N(0, 0.1), so that
  every parameter matters and logits are well spread.
  """
  from phi_jax.models import presets
  cfg = presets.get(name, **overrides)
  return cfg, random_params(cfg, seed)


def random_params(cfg, seed: int = 0):
  from phi_jax.models import Transformer
  shapes = nn.unbox(jax.eval_shape(Transformer(cfg).init, jax.random.key(0),
                                   jnp.zeros((1, 8), jnp.int32))["params"])
  leaves, treedef = jax.tree_util.tree_flatten_with_path(shapes)
  rng = np.random.default_rng(seed)
  out = []
  for path, leaf in leaves:
    value = 0.1 * rng.standard_normal(leaf.shape)
    if getattr(path[-1], "key", "") == "scale":
      value = value + 1.0
    out.append(jnp.asarray(value, leaf.dtype))
  return jax.tree_util.tree_unflatten(treedef, out)
