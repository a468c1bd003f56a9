"""Building blocks: norms, projections with logical axis names, and the MLP variants.

Logical axis names used on parameters: 'vocab', 'embed', 'heads', 'kv_heads', 'head_dim', 'mlp',
and 'layers' (the scan axis). On activations: 'activation_batch', 'activation_length',
'activation_embed', 'activation_heads', 'activation_kv_heads', 'activation_mlp', 'activation_vocab'.
The mapping onto mesh axes lives in one rules table (phi_jax.train.sharding).
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from phi_jax.models.config import ModelConfig

INIT_STD = 0.02


def kernel_init(names: Sequence[str]) -> nn.initializers.Initializer:
  return nn.with_logical_partitioning(nn.initializers.normal(INIT_STD), tuple(names))


def zeros_init(names: Sequence[str]) -> nn.initializers.Initializer:
  return nn.with_logical_partitioning(nn.initializers.zeros_init(), tuple(names))


def constrain(x: jax.Array, names: Sequence[str]) -> jax.Array:
  """Logical sharding constraint on an activation (a no-op outside a mesh with rules)."""
  return nn.with_logical_constraint(x, tuple(names))


KERNEL_LAYOUTS = ("in_out", "out_in")


def resolve_weight_grad(cfg: ModelConfig, backend: Optional[str] = None) -> str:
  """The weight-gradient form a training step uses: cfg.weight_grad, or for 'auto' 'nn_gemm' on
  CPU and 'autodiff' on GPU/TPU (where XLA's own transposed GEMMs are fast and a custom VJP would
  only stand in the way of fusion and collective scheduling)."""
  if cfg.weight_grad != "auto":
    return cfg.weight_grad
  backend = jax.default_backend() if backend is None else backend
  return "nn_gemm" if backend == "cpu" else "autodiff"


@jax.custom_vjp
def matmul_nn_grad(x: jax.Array, w: jax.Array) -> jax.Array:
  """x [N, I] @ w [I, O] -> [N, O], differentiated with the weight gradient as a plain GEMM.

  Autodiff computes dW = x^T dy as a dot contracting the leading axis of both operands, a form
  XLA:CPU's YNNPACK path does not take: it falls back to Eigen, which ran these GEMMs at about
  half the speed of the forward ones (BENCHMARKS.md, training). Here one operand is transposed
  into its own row-major array first (optimization_barrier keeps XLA from folding the transpose
  back into the dot), so dW is an ordinary GEMM: x^T [I, N] @ dy [N, O], or, when I > O (an MLP's
  down projection), (dy^T [O, N] @ x [N, I])^T, which transposes the smaller arrays (XLA also
  fuses x's producer, e.g. the gelu, into a transpose of x: a slow strided recompute). dx = dy w^T
  is autodiff's. The values are the same products in the same precision (equal up to fp32
  summation order).
  """
  return x @ w


def _matmul_nn_grad_fwd(x, w):
  return x @ w, (x, w)


def _matmul_nn_grad_bwd(res, dy):
  x, w = res
  if x.shape[1] > dy.shape[1]:  # I > O: transposing dy [N, O] and dW^T [O, I] moves less
    dy_t = jax.lax.optimization_barrier(jnp.transpose(dy))
    return dy @ w.T, jnp.transpose(dy_t @ x)
  x_t = jax.lax.optimization_barrier(jnp.transpose(x))
  return dy @ w.T, x_t @ dy


matmul_nn_grad.defvjp(_matmul_nn_grad_fwd, _matmul_nn_grad_bwd)


class Dense(nn.Module):
  """x [..., *in] @ kernel [*in, *features] (+ bias [*features]) in the compute dtype.

  kernel_layout names how the weight is stored (one representation each; params must match):
    'in_out': param 'kernel' [*in, *features], the model's own layout (init, training,
      checkpoints, conversion). Created at its full shape with its logical axis names (flax's
      DenseGeneral initialises a flattened kernel and reshapes it, which breaks logical
      constraints under a mesh).
    'out_in': param 'kernel_t' = kernel.T [*features reversed, *in reversed], a decoding layout
      (made by phi_jax.decoding.layouts): with the weight as the row-major left operand, XLA:CPU's
      GEMM runs a small batch (M = 2..32 rows) about twice as fast as x @ kernel. The product is
      computed as [*features, *batch] and transposed back (a small copy).
  """

  cfg: ModelConfig
  features: tuple[int, ...]
  in_axes: int
  kernel_axes: tuple[str, ...]
  bias: bool
  kernel_layout: str = "in_out"

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    cfg = self.cfg
    dtype, param_dtype = jnp.dtype(cfg.dtype), jnp.dtype(cfg.param_dtype)
    nf, ni = len(self.features), self.in_axes
    nb = x.ndim - ni
    in_shape = x.shape[nb:]
    if self.kernel_layout == "in_out":
      kernel = self.param("kernel", kernel_init(self.kernel_axes), (*in_shape, *self.features),
                          param_dtype)
      if resolve_weight_grad(cfg) == "nn_gemm":
        size_in = math.prod(in_shape)
        y = matmul_nn_grad(x.astype(dtype).reshape(-1, size_in),
                           kernel.astype(dtype).reshape(size_in, -1))
        y = y.reshape(*x.shape[:nb], *self.features)
      else:
        contract = (tuple(range(nb, x.ndim)), tuple(range(ni)))
        y = jax.lax.dot_general(x.astype(dtype), kernel.astype(dtype), (contract, ((), ())))
    elif self.kernel_layout == "out_in":
      kernel_t = self.param("kernel_t", kernel_init(self.kernel_axes[::-1]),
                            (*self.features[::-1], *in_shape[::-1]), param_dtype)
      contract = (tuple(range(nf, nf + ni)), tuple(range(x.ndim - 1, nb - 1, -1)))
      y = jax.lax.dot_general(kernel_t.astype(dtype), x.astype(dtype), (contract, ((), ())))
      y = jnp.transpose(y, (*range(nf, nf + nb), *range(nf - 1, -1, -1)))  # [*batch, *features]
    else:
      raise ValueError(f"Dense.kernel_layout {self.kernel_layout!r} is not one of "
                       f"{KERNEL_LAYOUTS}")
    if self.bias:
      out_axes = self.kernel_axes[self.in_axes:]
      b = self.param("bias", zeros_init(out_axes), self.features, param_dtype)
      y = y + b.astype(dtype)
    return y


def dense(cfg: ModelConfig, features, axis, kernel_axes: Sequence[str], *, bias: bool,
          name: Optional[str], kernel_layout: str = "in_out") -> Dense:
  """A projection contracting the last `len(axis)` input axes (axis: -1 or (-2, -1)).
  name=None inside a module's setup (the attribute names it)."""
  features = (features,) if isinstance(features, int) else tuple(features)
  in_axes = 1 if isinstance(axis, int) else len(axis)
  return Dense(cfg, features, in_axes, tuple(kernel_axes), bias, kernel_layout, name=name)


class Norm(nn.Module):
  """LayerNorm (mean-centred, optional bias) or RMSNorm over the last axis, statistics in fp32."""

  cfg: ModelConfig

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    cfg = self.cfg
    dtype = jnp.dtype(cfg.dtype)
    xf = x.astype(jnp.float32)
    if cfg.norm == "layernorm":
      xf = xf - jnp.mean(xf, axis=-1, keepdims=True)
    var = jnp.mean(jnp.square(xf), axis=-1, keepdims=True)
    y = (xf * jax.lax.rsqrt(var + cfg.norm_eps)).astype(dtype)
    scale = self.param("scale", nn.with_logical_partitioning(nn.initializers.ones_init(), ("embed",)),
                       (x.shape[-1],), jnp.dtype(cfg.param_dtype))
    y = y * scale.astype(dtype)
    if cfg.norm == "layernorm" and cfg.norm_bias:
      bias = self.param("bias", zeros_init(("embed",)), (x.shape[-1],), jnp.dtype(cfg.param_dtype))
      y = y + bias.astype(dtype)
    return y


def gelu_tanh(x: jax.Array) -> jax.Array:
  return jax.nn.gelu(x, approximate=True)


def gegelu(gate: jax.Array, linear: jax.Array, limit: float = 20.0) -> jax.Array:
  """phi-3-small's GEGELU: quick_gelu(gate clamped <= limit) * (linear clamped to +-limit, + 1).

  Infinite inputs are left unclamped, as in the reference implementation.
  """
  gate = jnp.where(jnp.isinf(gate), gate, jnp.minimum(gate, limit))
  linear = jnp.where(jnp.isinf(linear), linear, jnp.clip(linear, -limit, limit))
  return gate * jax.nn.sigmoid(1.702 * gate) * (linear + 1.0)


class Mlp(nn.Module):
  """fc1 -> gelu -> fc2, or gated: down(act(gate(x)) * up(x)). x: [batch, seq, embed]."""

  cfg: ModelConfig
  kernel_layout: str = "in_out"

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    cfg = self.cfg

    def proj(features, axes, name):
      return dense(cfg, features, -1, axes, bias=cfg.mlp_bias, name=name,
                   kernel_layout=self.kernel_layout)

    if cfg.gated_mlp:
      gate = proj(cfg.mlp_dim, ("embed", "mlp"), "gate")(x)
      up = proj(cfg.mlp_dim, ("embed", "mlp"), "up")(x)
      if cfg.mlp == "swiglu":
        h = jax.nn.silu(gate) * up
      else:
        h = gegelu(gate, up)
      h = constrain(h, ("activation_batch", "activation_length", "activation_mlp"))
      return proj(cfg.d_model, ("mlp", "embed"), "down")(h)
    h = proj(cfg.mlp_dim, ("embed", "mlp"), "fc1")(x)
    h = gelu_tanh(h) if cfg.mlp == "gelu_tanh" else jax.nn.gelu(h, approximate=False)
    h = constrain(h, ("activation_batch", "activation_length", "activation_mlp"))
    return proj(cfg.d_model, ("mlp", "embed"), "fc2")(h)
