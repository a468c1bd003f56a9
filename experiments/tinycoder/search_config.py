import ml_collections
from phi_jax.train import config_base
def get_config(arg=""):
  c = config_base.get_config()
  c.total_steps = 700; c.log_every = 50; c.eval_every = 0; c.checkpoint_every = 0; c.keep_checkpoints = 1; c.report = False
  c.model = config_base.model("phi-1", vocab_size=-1, d_model=64, num_layers=4, num_heads=2, mlp_dim=256, rotary_dim=16,
      max_seq_len=512, dtype="float32", param_dtype="float32", attn_dropout=0.0, resid_dropout=0.0, embd_dropout=0.0,
      remat_policy="none", tie_embeddings=False, lm_head_bias=True)
  c.data.update(dataset="synthetic_exercises", source_dir="/work/scratch/v2ex40k", data_dir="/work/scratch/tfds",
      tokenizer="/work/scratch/r1/tokenizer/sp.model", seq_len=256, batch_size=16)
  c.optimizer.update(learning_rate=5e-3, warmup_fraction=0.05, end_lr_fraction=0.1)
  return c
