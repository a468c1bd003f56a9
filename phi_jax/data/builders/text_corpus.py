"""`text_corpus`: a TFDS dataset of prose files (`.txt`, `.md`, `.rst`) from a local folder.

Same machinery as `code_corpus` (see `FileCorpusBuilder`): one example per file, features `text`
and `path`, `train` / `validation` split by a hash of the relative path, `array_record` files,
no TensorFlow. There is no default source: pass `source_dir=` (e.g. Debian's `python3.11-doc`
reST sources, or any folder of notes).

    builder = builders.build('text_corpus', '/tmp/tfds', source_dir='/usr/share/doc/python3.11')
"""

from __future__ import annotations

from phi_jax.data.builders.code_corpus import FileCorpusBuilder


class TextCorpus(FileCorpusBuilder):
  """Plain-text / Markdown / reStructuredText files from `source_dir`."""

  DEFAULT_SUFFIXES = (".txt", ".md", ".rst")
  DEFAULT_EXCLUDE_DIRS = ("node_modules", "site-packages")
  DEFAULT_MAX_BYTES = 4_000_000
  DESCRIPTION = ("Prose files (.txt/.md/.rst), one example per file, from a local folder. Split "
                 "into train/validation by a hash of the relative path.")
