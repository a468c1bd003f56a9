"""Named model configurations: every published phi size, plus tiny ones of each block type.

    cfg = presets.get('phi-2')
    cfg = presets.get('tiny-serial', num_layers=4)     # overrides are validated

Numbers are from docs/MODELS.md (read from the released config.json files and the papers).
LongRoPE factors of phi-3-mini-128k ship with its config.json: the preset carries neutral (1.0)
factors of the right length, and `phi_jax.convert.hf.load` reads the real ones.
"""

from __future__ import annotations

from typing import Any

from phi_jax.models.config import ModelConfig

_PHI1 = dict(
    vocab_size=51200, d_model=2048, num_layers=24, num_heads=32, mlp_dim=8192, block="parallel",
    mlp="gelu_tanh", norm="layernorm", norm_eps=1e-5, rotary_dim=32, rope_theta=10000.0,
    max_seq_len=2048, attn_bias=True, mlp_bias=True, lm_head_bias=True)

_PHI3_MINI = dict(
    vocab_size=32064, d_model=3072, num_layers=32, num_heads=32, num_kv_heads=32, mlp_dim=8192,
    block="serial", mlp="swiglu", norm="rmsnorm", norm_eps=1e-5, norm_bias=False, attn_bias=False,
    mlp_bias=False, lm_head_bias=False, rope_theta=10000.0, max_seq_len=4096, sliding_window=2047,
    bos_id=1, eos_id=32000, pad_id=32000)

_PRESETS: dict[str, dict[str, Any]] = {
    "phi-1": dict(_PHI1),
    "phi-1-small": dict(_PHI1, d_model=1024, num_layers=20, num_heads=16, mlp_dim=4096),
    "phi-1.5": dict(_PHI1),
    "phi-2": dict(_PHI1, d_model=2560, num_layers=32, num_heads=32, mlp_dim=10240),
    "phi-3-mini-4k": dict(_PHI3_MINI),
    "phi-3-mini-128k": dict(
        _PHI3_MINI, max_seq_len=131072, sliding_window=262144, rope_original_max_len=4096,
        rope_short_factor=(1.0,) * 48, rope_long_factor=(1.0,) * 48),
    "phi-3-small-8k": dict(
        vocab_size=100352, d_model=4096, num_layers=32, num_heads=32, num_kv_heads=8, mlp_dim=14336,
        block="serial", mlp="gegelu", norm="layernorm", norm_eps=1e-5, norm_bias=True,
        attn_bias=True, mlp_bias=True, lm_head_bias=False, tie_embeddings=True,
        rope_theta=1e6, max_seq_len=8192, block_sparse=True, sparse_block_size=64,
        sparse_local_blocks=16, sparse_vert_stride=8, embedding_multiplier=10.0,
        attn_scale=1.0 / 128, logit_multiplier=1.0 / 8),
    "phi-3-medium-4k": dict(
        _PHI3_MINI, d_model=5120, num_layers=40, num_heads=40, num_kv_heads=10, mlp_dim=17920),
    # Tiny models of each block type, for tests and CPU experiments.
    "tiny-parallel": dict(
        _PHI1, vocab_size=257, d_model=64, num_layers=2, num_heads=4, mlp_dim=128, rotary_dim=8,
        max_seq_len=128),
    "tiny-serial": dict(
        _PHI3_MINI, vocab_size=263, d_model=64, num_layers=2, num_heads=4, num_kv_heads=2,
        mlp_dim=96, max_seq_len=128, sliding_window=None, bos_id=None, eos_id=None, pad_id=None),
    "tiny-longrope": dict(
        _PHI3_MINI, vocab_size=263, d_model=64, num_layers=2, num_heads=4, num_kv_heads=4,
        mlp_dim=96, max_seq_len=256, sliding_window=None, rope_original_max_len=32,
        rope_short_factor=(1.0, 1.1, 1.2, 1.3, 1.5, 1.8, 2.0, 2.5),
        rope_long_factor=(1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0),
        bos_id=None, eos_id=None, pad_id=None),
    "tiny-small": dict(
        vocab_size=271, d_model=64, num_layers=2, num_heads=4, num_kv_heads=2, mlp_dim=96,
        block="serial", mlp="gegelu", norm="layernorm", norm_eps=1e-5, norm_bias=True,
        attn_bias=True, mlp_bias=True, lm_head_bias=False, tie_embeddings=True, rope_theta=1e6,
        max_seq_len=128, block_sparse=True, sparse_block_size=4, sparse_local_blocks=2,
        sparse_vert_stride=2, embedding_multiplier=10.0, attn_scale=1.0 / 16,
        logit_multiplier=1.0 / 8),
}

# Published parameter totals (MODELS.md), for the preset tests.
PUBLISHED_PARAMS = {
    "phi-1": 1.42e9, "phi-1.5": 1.42e9, "phi-2": 2.78e9, "phi-3-mini-4k": 3_821_079_552,
    "phi-3-mini-128k": 3_821_079_552, "phi-3-small-8k": 7.39e9, "phi-3-medium-4k": 13.96e9,
}


def names() -> list[str]:
  """All preset names."""
  return list(_PRESETS)


def get(name: str, **overrides: Any) -> ModelConfig:
  """The preset `name` with `overrides` applied, validated."""
  if name not in _PRESETS:
    raise ValueError(f"Unknown model preset {name!r}; choose one of {names()}")
  fields = dict(_PRESETS[name], name=name)
  return ModelConfig(**fields).replace(**overrides).validate()
