"""ModelConfig: every architectural choice of the phi family in one frozen dataclass.

The config is hashable (all fields are scalars, strings or tuples), so it can be a static argument
of `jax.jit`. `validate()` raises `ValueError` naming the field, the rule, and how to fix it.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Optional

BLOCKS = ("parallel", "serial")
MLPS = ("gelu_tanh", "gelu", "swiglu", "gegelu")
NORMS = ("layernorm", "rmsnorm")
REMAT_POLICIES = ("none", "full", "dots", "dots_no_batch", "save_attn_out")
DTYPES = ("float32", "bfloat16", "float16")
ATTENTION_IMPLS = ("auto", "xla", "blockwise", "cudnn", "splash")
WEIGHT_GRADS = ("auto", "autodiff", "nn_gemm")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  """Architecture of a phi-family decoder. Shapes below: D=d_model, H=num_heads, K=num_kv_heads.

  Attributes:
    name: preset name, informational.
    vocab_size: rows of the embedding and columns of the LM head.
    d_model: residual width D.
    num_layers: number of blocks (stacked on a leading axis with nn.scan).
    num_heads: query heads H.
    num_kv_heads: key/value heads K (GQA when K < H); must divide H.
    head_dim: per-head width; defaults to D // H.
    mlp_dim: inner MLP width F (for gated MLPs, the width of each of gate and up).
    block: 'parallel' (phi-1/1.5/2: x + attn(ln(x)) + mlp(ln(x))) or 'serial' (phi-3: pre-norm).
    mlp: 'gelu_tanh' | 'gelu' (fc1 -> act -> fc2), 'swiglu' (phi-3), 'gegelu' (phi-3-small).
    norm: 'layernorm' or 'rmsnorm'.
    norm_eps: epsilon of every norm.
    norm_bias: LayerNorm has a bias (ignored for RMSNorm).
    attn_bias / mlp_bias / lm_head_bias: linear layers carry biases.
    tie_embeddings: the LM head reuses the embedding matrix (phi-3-small).
    rope_theta: RoPE base.
    rotary_dim: number of leading dims of each head that are rotated (partial rotary); None = head_dim.
    rope_short_factor / rope_long_factor: LongRoPE per-frequency rescaling factors (rotary_dim / 2
      each); None for plain RoPE.
    rope_original_max_len: LongRoPE's pretraining length; the long factors apply when the sequence
      is longer than this (strictly).
    rope_attention_factor: LongRoPE's cos/sin multiplier; None derives sqrt(1 + ln(s) / ln(orig))
      with s = max_seq_len / rope_original_max_len (1.0 when s <= 1).
    max_seq_len: context length.
    sliding_window: a query attends itself and the previous sliding_window - 1 tokens; None = no limit.
    block_sparse: phi-3-small block-sparse attention on layers 0, 2, 4, ... (the others dense).
    sparse_block_size / sparse_local_blocks / sparse_vert_stride: its pattern parameters.
    embedding_multiplier: muP multiplier on the embedding output (phi-3-small: 10).
    attn_scale: softmax scale; None = 1/sqrt(head_dim) (phi-3-small muP: 1/head_dim).
    logit_multiplier: multiplies the logits (phi-3-small muP: 1/8).
    embd_dropout / resid_dropout / attn_dropout: dropout rates, active when deterministic=False.
    dtype: compute dtype of activations, KV cache and RoPE tables.
    param_dtype: storage dtype of parameters.
    remat_policy: rematerialisation of each block in training: 'none', 'full', 'dots',
      'dots_no_batch', 'save_attn_out'.
    scan_unroll: layers unrolled per iteration of the layer scan (1 = rolled); 0 = 'auto': every
      layer on CPU (XLA:CPU then keeps no stacked residual buffers and slices no stacked weights:
      a faster step, see BENCHMARKS.md), 1 on GPU/TPU.
    weight_grad: how training differentiates the projections: 'autodiff', 'nn_gemm' (the weight
      gradient as a plain GEMM on a transposed copy of the input: faster on XLA:CPU,
      layers.matmul_nn_grad), or 'auto' ('nn_gemm' on CPU, 'autodiff' elsewhere).
    attention_impl: how attention is computed (same results, other memory and speed; see
      phi_jax/models/attention.py): 'xla' (full [T, S] scores), 'blockwise' (O(T) memory, any
      backend), 'cudnn' (NVIDIA GPU), 'splash' (TPU), or 'auto' (by backend and sizes).
    attention_block: the 'blockwise' query and key block size; 0 = 512. Set (> 0) with 'auto',
      it also makes CPU calls with more than one block of queries (training, prefill) run
      'blockwise', whose causal block skipping is faster there than 'xla' (the quickstart's step
      at block 64 with loss chunks of 64: 1.26x, BENCHMARKS.md), while decode steps stay 'xla'.
    bos_id / eos_id / pad_id: special token ids, informational (tokenizer side).
  """

  name: str = "custom"
  vocab_size: int = 51200
  d_model: int = 2048
  num_layers: int = 24
  num_heads: int = 32
  num_kv_heads: Optional[int] = None
  head_dim: Optional[int] = None
  mlp_dim: int = 8192
  block: str = "parallel"
  mlp: str = "gelu_tanh"
  norm: str = "layernorm"
  norm_eps: float = 1e-5
  norm_bias: bool = True
  attn_bias: bool = True
  mlp_bias: bool = True
  lm_head_bias: bool = True
  tie_embeddings: bool = False
  rope_theta: float = 10000.0
  rotary_dim: Optional[int] = None
  rope_short_factor: Optional[tuple[float, ...]] = None
  rope_long_factor: Optional[tuple[float, ...]] = None
  rope_original_max_len: Optional[int] = None
  rope_attention_factor: Optional[float] = None
  max_seq_len: int = 2048
  sliding_window: Optional[int] = None
  block_sparse: bool = False
  sparse_block_size: int = 64
  sparse_local_blocks: int = 16
  sparse_vert_stride: int = 8
  embedding_multiplier: float = 1.0
  attn_scale: Optional[float] = None
  logit_multiplier: float = 1.0
  embd_dropout: float = 0.0
  resid_dropout: float = 0.0
  attn_dropout: float = 0.0
  dtype: str = "float32"
  param_dtype: str = "float32"
  remat_policy: str = "none"
  scan_unroll: int = 0
  weight_grad: str = "auto"
  attention_impl: str = "xla"
  attention_block: int = 0
  bos_id: Optional[int] = None
  eos_id: Optional[int] = None
  pad_id: Optional[int] = None

  # ---- derived quantities -------------------------------------------------------------------

  @property
  def kv_heads(self) -> int:
    return self.num_heads if self.num_kv_heads is None else self.num_kv_heads

  @property
  def dim_per_head(self) -> int:
    if self.head_dim is not None:
      return self.head_dim
    return self.d_model // self.num_heads

  @property
  def rot_dim(self) -> int:
    return self.dim_per_head if self.rotary_dim is None else self.rotary_dim

  @property
  def softmax_scale(self) -> float:
    return self.attn_scale if self.attn_scale is not None else self.dim_per_head ** -0.5

  @property
  def long_rope(self) -> bool:
    return self.rope_long_factor is not None

  @property
  def rope_scaling_factor(self) -> float:
    """cos/sin multiplier of LongRoPE (1.0 for plain RoPE)."""
    if not self.long_rope:
      return 1.0
    if self.rope_attention_factor is not None:
      return self.rope_attention_factor
    scale = self.max_seq_len / self.rope_original_max_len
    if scale <= 1.0:
      return 1.0
    return math.sqrt(1.0 + math.log(scale) / math.log(self.rope_original_max_len))

  @property
  def gated_mlp(self) -> bool:
    return self.mlp in ("swiglu", "gegelu")

  def replace(self, **overrides: Any) -> "ModelConfig":
    """A copy with fields changed; unknown fields raise a ValueError listing the valid ones."""
    unknown = sorted(set(overrides) - {f.name for f in dataclasses.fields(self)})
    if unknown:
      valid = ", ".join(f.name for f in dataclasses.fields(self))
      raise ValueError(f"ModelConfig has no field(s) {unknown}; valid fields: {valid}")
    for key in ("rope_short_factor", "rope_long_factor"):
      if isinstance(overrides.get(key), list):
        overrides[key] = tuple(overrides[key])
    return dataclasses.replace(self, **overrides)

  def to_dict(self) -> dict[str, Any]:
    return dataclasses.asdict(self)

  # ---- validation ----------------------------------------------------------------------------

  def validate(self) -> "ModelConfig":
    """Checks every rule; raises ValueError naming the field. Returns self for chaining."""

    def fail(field: str, rule: str) -> None:
      raise ValueError(f"ModelConfig '{self.name}': invalid {field}: {rule}")

    for field in ("vocab_size", "d_model", "num_layers", "num_heads", "mlp_dim", "max_seq_len"):
      value = getattr(self, field)
      if not isinstance(value, int) or value <= 0:
        fail(field, f"must be a positive int, got {value!r}")
    if self.block not in BLOCKS:
      fail("block", f"{self.block!r} is not one of {BLOCKS}")
    if self.mlp not in MLPS:
      fail("mlp", f"{self.mlp!r} is not one of {MLPS}")
    if self.norm not in NORMS:
      fail("norm", f"{self.norm!r} is not one of {NORMS}")
    if self.remat_policy not in REMAT_POLICIES:
      fail("remat_policy", f"{self.remat_policy!r} is not one of {REMAT_POLICIES}")
    for field in ("dtype", "param_dtype"):
      if getattr(self, field) not in DTYPES:
        fail(field, f"{getattr(self, field)!r} is not one of {DTYPES}")
    if self.head_dim is None and self.d_model % self.num_heads:
      fail("num_heads", f"num_heads={self.num_heads} does not divide d_model={self.d_model}; "
           "change one of them or set head_dim explicitly")
    if self.head_dim is not None and self.head_dim <= 0:
      fail("head_dim", f"must be positive, got {self.head_dim}")
    if self.kv_heads <= 0 or self.num_heads % self.kv_heads:
      fail("num_kv_heads", f"num_kv_heads={self.kv_heads} must be positive and divide "
           f"num_heads={self.num_heads}")
    rot = self.rot_dim
    if rot <= 0 or rot % 2:
      fail("rotary_dim", f"must be a positive even number, got {rot}")
    if rot > self.dim_per_head:
      fail("rotary_dim", f"rotary_dim={rot} is larger than head_dim={self.dim_per_head}")
    if self.rope_theta <= 0:
      fail("rope_theta", f"must be positive, got {self.rope_theta}")
    if (self.rope_short_factor is None) != (self.rope_long_factor is None):
      fail("rope_short_factor", "LongRoPE needs both rope_short_factor and rope_long_factor")
    if self.long_rope:
      for field in ("rope_short_factor", "rope_long_factor"):
        factors = getattr(self, field)
        if len(factors) != rot // 2:
          fail(field, f"has {len(factors)} entries, expected rotary_dim / 2 = {rot // 2}")
        if any(f <= 0 for f in factors):
          fail(field, "factors must be positive")
      if not self.rope_original_max_len or self.rope_original_max_len <= 0:
        fail("rope_original_max_len", "LongRoPE needs the positive pretraining length")
    if self.sliding_window is not None and self.sliding_window <= 0:
      fail("sliding_window", f"must be positive or None, got {self.sliding_window}")
    if self.block_sparse:
      for field in ("sparse_block_size", "sparse_local_blocks", "sparse_vert_stride"):
        if getattr(self, field) <= 0:
          fail(field, "must be positive")
    for field in ("embd_dropout", "resid_dropout", "attn_dropout"):
      rate = getattr(self, field)
      if not 0.0 <= rate < 1.0:
        fail(field, f"must be in [0, 1), got {rate}")
    if self.attention_impl not in ATTENTION_IMPLS:
      fail("attention_impl", f"{self.attention_impl!r} is not one of {ATTENTION_IMPLS}")
    if self.attention_block < 0:
      fail("attention_block", f"must be >= 1 (or 0 = 512), got {self.attention_block}")
    if self.scan_unroll < 0:
      fail("scan_unroll", f"must be >= 1 (or 0 = auto), got {self.scan_unroll}")
    if self.weight_grad not in WEIGHT_GRADS:
      fail("weight_grad", f"{self.weight_grad!r} is not one of {WEIGHT_GRADS}")
    if self.tie_embeddings and self.lm_head_bias:
      fail("lm_head_bias", "a tied LM head has no bias; set lm_head_bias=False")
    return self
