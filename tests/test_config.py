"""ModelConfig validation and presets (parameter counts from eval_shape, nothing allocated)."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from phi_jax.models import ModelConfig, Transformer, presets


def count_params(cfg: ModelConfig) -> int:
  shapes = jax.eval_shape(Transformer(cfg).init, jax.random.key(0), jnp.zeros((1, 8), jnp.int32))
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(nn.unbox(shapes["params"])))


def test_phi3_mini_parameter_count_is_exact():
  assert count_params(presets.get("phi-3-mini-4k")) == 3_821_079_552


@pytest.mark.parametrize("name", ["phi-1", "phi-1.5", "phi-2", "phi-3-mini-128k", "phi-3-small-8k",
                                  "phi-3-medium-4k"])
def test_published_parameter_totals(name):
  published = presets.PUBLISHED_PARAMS[name]
  assert abs(count_params(presets.get(name)) - published) / published < 0.005


def test_phi1_small_is_about_350m():
  assert 340e6 < count_params(presets.get("phi-1-small")) < 360e6


def test_every_preset_validates():
  for name in presets.names():
    assert presets.get(name).name == name


def test_overrides_apply_and_unknown_fields_fail():
  assert presets.get("phi-2", num_layers=3).num_layers == 3
  with pytest.raises(ValueError, match="no field.*num_layer"):
    presets.get("phi-2", num_layer=3)
  with pytest.raises(ValueError, match="Unknown model preset 'phi-9'"):
    presets.get("phi-9")


@pytest.mark.parametrize("overrides,match", [
    (dict(d_model=100, num_heads=3), "num_heads=3 does not divide d_model=100"),
    (dict(num_kv_heads=3), "num_kv_heads=3 must .*divide num_heads=4"),
    (dict(rotary_dim=7), "rotary_dim: must be a positive even number, got 7"),
    (dict(rotary_dim=32), "rotary_dim=32 is larger than head_dim=16"),
    (dict(block="diagonal"), "block: 'diagonal' is not one of"),
    (dict(mlp="relu"), "mlp: 'relu' is not one of"),
    (dict(norm="batchnorm"), "norm: 'batchnorm' is not one of"),
    (dict(dtype="float8"), "dtype: 'float8'"),
    (dict(sliding_window=0), "sliding_window"),
    (dict(resid_dropout=1.0), "resid_dropout"),
    (dict(rope_short_factor=(1.0,) * 4, rope_long_factor=(1.0,) * 4, rope_original_max_len=8),
     "rope_short_factor: has 4 entries, expected rotary_dim / 2 = 8"),
    (dict(rope_long_factor=(1.0,) * 8), "needs both"),
    (dict(vocab_size=0), "vocab_size"),
])
def test_invalid_configs_name_the_problem(overrides, match):
  with pytest.raises(ValueError, match=match):
    presets.get("tiny-serial", **overrides)


def test_longrope_attention_factor_matches_models_md():
  cfg = presets.get("phi-3-mini-128k")
  assert cfg.rope_scaling_factor == pytest.approx(np.sqrt(1 + np.log(131072 / 4096) / np.log(4096)))
  assert 1.18 < cfg.rope_scaling_factor < 1.20
