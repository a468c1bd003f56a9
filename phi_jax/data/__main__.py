"""`python -m phi_jax.data --config=... --workdir=...`: the data pipeline's CLI, under the name the
data issues use; it runs `python -m phi_jax.curation` with the same arguments.

The data-making application lives in `phi_jax.curation`, a layer above training, and training
imports this package (`phi_jax.data`: tokenizer, builders, input pipeline). So this entry point
does not import curation: it replaces the interpreter with `python -m phi_jax.curation ARGS`
(the same process id, so signals and exit codes are the pipeline's own).
"""

from __future__ import annotations

import os
import sys


def main() -> None:
  argv = [sys.executable, "-m", "phi_jax.curation", *sys.argv[1:]]
  sys.stderr.write("[phi_jax.data] running the data pipeline: python -m phi_jax.curation "
                   + " ".join(sys.argv[1:]) + "\n")
  sys.stderr.flush()
  os.execv(sys.executable, argv)


if __name__ == "__main__":
  main()
