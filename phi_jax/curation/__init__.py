"""Making textbook-quality training data (phi-1's data story), above training and evaluation.

A teacher (`teacher.py`: an OpenAI-compatible endpoint, a local model, or the offline procedural
generator of `procedural/`) writes synthetic textbooks and exercises (`synthetic.py`,
`procedural_textbook.py`); `quality.py` (educational-value classifier), `dedup.py` (MinHash
near-duplicates) and `decontam.py` (n-gram / AST / embedding matches against the evaluation sets)
filter corpora; `stages.py` chains them into a resumable pipeline (`python -m phi_jax.curation`).
The result is a TFDS dataset of `phi_jax.data.builders` that training reads like any corpus.

This package may import models, decoding, convert, train and evals; none of those imports it.
"""
