"""The CPU train-step forms (the layer scan unrolled, projections with the weight gradient as a
plain GEMM) compute the same loss and gradients as the rolled, autodiff form they replace."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from phi_jax.models import ModelConfig, presets
from phi_jax.models import layers
from phi_jax.models.transformer import Transformer, resolve_scan_unroll
from phi_jax.train import step as step_lib


def _loss_and_grads(cfg: ModelConfig, params, batch):
  model = Transformer(cfg)
  fn = jax.jit(jax.value_and_grad(
      lambda p: step_lib._forward_loss(model, p, batch, None, True)[0]))
  return fn(params)


def _batch(cfg: ModelConfig, b: int = 2, t: int = 16):
  rng = np.random.default_rng(0)
  ids = rng.integers(0, cfg.vocab_size, (b, t + 1)).astype(np.int32)
  seg = np.ones((b, t), np.int32)
  seg[1, t // 2:] = 2  # a packed second document
  pos = np.tile(np.arange(t, dtype=np.int32), (b, 1))
  pos[1, t // 2:] -= t // 2
  return dict(inputs=ids[:, :-1], targets=ids[:, 1:], segment_ids=seg, positions=pos,
              loss_mask=np.ones((b, t), np.float32))


@pytest.mark.parametrize("preset,extra", [
    ("tiny-parallel", {}),
    ("tiny-serial", {"num_kv_heads": 2}),
])
def test_unrolled_nn_gemm_step_equals_rolled_autodiff(preset, extra):
  base = presets.get(preset, scan_unroll=1, weight_grad="autodiff", **extra)
  assert base.num_layers > 1
  batch = _batch(base)
  params = Transformer(base).init(jax.random.key(0), jnp.zeros((1, 8), jnp.int32))["params"]
  params = nn.unbox(params)
  # Perturb every leaf so that biases and norms carry gradient signal of their own.
  leaves, tree = jax.tree.flatten(params)
  keys = jax.random.split(jax.random.key(1), len(leaves))
  params = tree.unflatten([x + 0.05 * jax.random.normal(k, x.shape, x.dtype)
                           for x, k in zip(leaves, keys)])
  ref_loss, ref_grads = _loss_and_grads(base, params, batch)
  form = dict(scan_unroll=base.num_layers, weight_grad="nn_gemm")
  loss, grads = _loss_and_grads(base.replace(**form), params, batch)
  np.testing.assert_allclose(loss, ref_loss, rtol=1e-6)
  for (path, g), r in zip(jax.tree_util.tree_leaves_with_path(grads), jax.tree.leaves(ref_grads)):
    np.testing.assert_allclose(g, r, rtol=2e-5, atol=1e-6, err_msg=jax.tree_util.keystr(path))


@pytest.mark.parametrize("size_in,size_out", [(5, 7), (7, 5)])  # both transposition branches
def test_matmul_nn_grad_is_the_matmul_and_its_gradient(size_in, size_out):
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(12, size_in)), jnp.float32)
  w = jnp.asarray(rng.normal(size=(size_in, size_out)), jnp.float32)
  dy = jnp.asarray(rng.normal(size=(12, size_out)), jnp.float32)
  y, vjp = jax.vjp(layers.matmul_nn_grad, x, w)
  dx, dw = vjp(dy)
  np.testing.assert_allclose(y, np.asarray(x) @ np.asarray(w), rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(dx, np.asarray(dy) @ np.asarray(w).T, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(dw, np.asarray(x).T @ np.asarray(dy), rtol=1e-5, atol=1e-5)


def test_auto_forms_follow_the_backend():
  cfg = presets.get("tiny-parallel")
  assert cfg.scan_unroll == 0 and cfg.weight_grad == "auto"
  assert resolve_scan_unroll(cfg, "cpu") == cfg.num_layers
  assert resolve_scan_unroll(cfg, "gpu") == resolve_scan_unroll(cfg, "tpu") == 1
  assert resolve_scan_unroll(cfg.replace(scan_unroll=2), "cpu") == 2
  assert layers.resolve_weight_grad(cfg, "cpu") == "nn_gemm"
  assert layers.resolve_weight_grad(cfg, "gpu") == "autodiff"
  assert layers.resolve_weight_grad(cfg.replace(weight_grad="autodiff"), "cpu") == "autodiff"
  with pytest.raises(ValueError, match="weight_grad"):
    cfg.replace(weight_grad="fast").validate()
  with pytest.raises(ValueError, match="scan_unroll"):
    cfg.replace(scan_unroll=-1).validate()
