"""`docstring_code`: a conditional generation task from local code — signature + docstring ->
function body — with one example per documented function of a folder of Python files (default:
the running interpreter's standard library), held out by file.

    builder = builders.build('docstring_code', '/tmp/tfds', max_files=200)
    ex = builder.as_data_source('validation')[0]
    ex['prompt']   # b'def dedent(text):\\n    <the docstring>\\n'
    ex['target']   # b'    # Look for the longest leading string of spaces and tabs ...\\n'
    ex['text']     # prompt + target (what a tokenizer trains on)

Each function (top level, nested or a method; `def` or `async def`, decorators not included) whose
first statement is a docstring and which has at least one more statement becomes
{prompt: the source from `def` to the end of the docstring line, target: the rest of its body},
dedented so that the `def` starts at column 0. Functions whose prompt or target is outside the
length limits are skipped. The split is the file-level split of `code_corpus` (a hash of the
relative path), so no file contributes to both train and validation.
"""

from __future__ import annotations

import ast
import textwrap
from typing import Any, Iterator, Sequence

import tensorflow_datasets as tfds

from phi_jax.data.builders.code_corpus import (CodeCorpus, FileCorpusConfig, list_files, read_text,
                                               split_files)

MIN_TARGET_CHARS = 16
MAX_PROMPT_CHARS = 1500
MAX_TARGET_CHARS = 1500


def extract_functions(source: str) -> list[dict[str, str]]:
  """[{name, prompt, target, line}] for every documented function of `source` (see module doc).

  Source that does not parse gives [].
  """
  try:
    tree = ast.parse(source)
  except (SyntaxError, ValueError):
    return []
  lines = source.splitlines(keepends=True)
  examples = []
  for node in ast.walk(tree):
    if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) or len(node.body) < 2:
      continue
    first = node.body[0]
    if not (isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant)
            and isinstance(first.value.value, str)):
      continue
    start, doc_end, end = node.lineno - 1, first.end_lineno, node.end_lineno
    if node.body[1].lineno <= doc_end:  # `"""doc"""; x = 1` on one line
      continue
    indent = node.col_offset
    chunk = lines[start:end]
    if any(line.strip() and not line[:indent].isspace() and indent for line in chunk):
      continue  # a line less indented than the def (e.g. a continuation string): skip
    dedented = [line[indent:] if len(line) > indent else line.lstrip(" \t") for line in chunk]
    prompt = "".join(dedented[:doc_end - start])
    target = "".join(dedented[doc_end - start:])
    if not prompt.endswith("\n"):
      prompt += "\n"
    if not target.endswith("\n"):
      target += "\n"
    if (len(prompt) > MAX_PROMPT_CHARS or not MIN_TARGET_CHARS <= len(target.strip())
        or len(target) > MAX_TARGET_CHARS):
      continue
    examples.append({"name": node.name, "prompt": prompt, "target": target,
                     "line": node.lineno})
  examples.sort(key=lambda e: e["line"])
  return examples


class DocstringCode(CodeCorpus):
  """Documented functions: prompt = signature + docstring, target = body (see module doc)."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "signature + docstring -> body, per function, split by file."}
  DESCRIPTION = ("Documented Python functions as (prompt = def line + docstring, target = body) "
                 "pairs, held out by file (default: this interpreter's standard library).")

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
        description=self.DESCRIPTION,
        features=tfds.features.FeaturesDict({
            "text": tfds.features.Text(doc="prompt + target."),
            "prompt": tfds.features.Text(doc="From `def` to the end of the docstring."),
            "target": tfds.features.Text(doc="The rest of the function body."),
            "path": tfds.features.Text(doc="The file, relative to source_dir."),
            "name": tfds.features.Text(doc="The function's name."),
        }),
        supervised_keys=None,
    )

  def _split_generators(self, dl_manager: Any) -> dict[str, Iterator[tuple[str, dict[str, str]]]]:
    """code_corpus's split by path hash, over the files that have at least one example (so that
    neither split is empty). With the same source, max_files and validation_fraction, the
    held-out files are a subset of code_corpus's: a model pretrained on code_corpus's train split
    never saw the held-out functions."""
    del dl_manager  # Nothing to download.
    config = self.builder_config
    if not isinstance(config, FileCorpusConfig) or not config.fingerprint:
      raise ValueError(f"{self.name}: make the config with {type(self).__name__}.make_config(...)")
    relpaths = []
    for relpath, _ in list_files(config):
      text = read_text(config.source_dir, relpath)
      if text is not None and extract_functions(text):
        relpaths.append(relpath)
    splits = split_files(relpaths, config.validation_fraction)
    return {name: self._generate_examples(files) for name, files in splits.items()}

  def _generate_examples(self, relpaths: Sequence[str]) -> Iterator[tuple[str, dict[str, str]]]:
    for relpath in relpaths:
      text = read_text(self.builder_config.source_dir, relpath)
      if text is None:
        continue
      for ex in extract_functions(text):
        yield f"{relpath}:{ex['line']}", {"text": ex["prompt"] + ex["target"],
                                          "prompt": ex["prompt"], "target": ex["target"],
                                          "path": relpath, "name": ex["name"]}
