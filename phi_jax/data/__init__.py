"""The training input: tokenizers (tokenizer.py), TFDS dataset builders (builders/) and the grain
pipeline that packs them into batches (pipeline.py). Imports nothing else of phi_jax, so models,
training and evaluation can all build on it; the data-*making* application is `phi_jax.curation`.
files.py: whole-file text writes, all or nothing (temp file + rename), for every package above.
"""
