"""Tokenizers: train and load SentencePiece models; load a Hugging Face `tokenizer.json`.

    tok = tokenizer.load('/models/phi-3-mini')       # a folder with tokenizer.model or tokenizer.json
    ids = tok.encode('def f(x):')
    text = tok.decode(ids)
    tokenizer.train_sentencepiece(texts, '/tmp/sp', vocab_size=8000)   # -> /tmp/sp.model
"""

from __future__ import annotations

import json
import os
import pathlib
import re
from typing import Iterable, Optional, Protocol

import sentencepiece as spm


class Tokenizer(Protocol):
  """What phi_jax needs of a tokenizer."""

  vocab_size: int
  bos_id: Optional[int]
  eos_id: Optional[int]

  def encode(self, text: str) -> list[int]: ...

  def decode(self, ids: list[int]) -> str: ...


class SentencePieceTokenizer:
  """A SentencePiece model file; `add_bos` prepends BOS (Llama / phi-3 convention).

  User-defined symbols of the model encode as one id each (SentencePiece does that). `added_tokens`
  ({text: id}, e.g. phi-3's added_tokens.json: '<|end|>': 32007) are split out of the text first
  and encode as their id; the text between them is encoded piece by piece.
  """

  def __init__(self, path: str | os.PathLike, add_bos: bool = False,
               added_tokens: Optional[dict[str, int]] = None):
    self.path = str(path)
    self.sp = spm.SentencePieceProcessor(model_file=self.path)
    self.add_bos = add_bos
    self.vocab_size = self.sp.get_piece_size()
    self.bos_id = self.sp.bos_id() if self.sp.bos_id() >= 0 else None
    self.eos_id = self.sp.eos_id() if self.sp.eos_id() >= 0 else None
    self.pad_id = self.sp.pad_id() if self.sp.pad_id() >= 0 else None
    self.added_tokens = dict(added_tokens or {})
    self._added_text = {i: t for t, i in self.added_tokens.items()}
    longest_first = sorted(self.added_tokens, key=len, reverse=True)
    self._added_re = re.compile("|".join(map(re.escape, longest_first))) if longest_first else None
    if self.added_tokens:
      self.vocab_size = max(self.vocab_size, max(self.added_tokens.values()) + 1)

  def split_added(self, text: str) -> list[tuple[int, str, Optional[int]]]:
    """(start char, piece, added-token id or None) for the text between and the added tokens."""
    out, pos = [], 0
    for m in (self._added_re.finditer(text) if self._added_re else ()):
      if m.start() > pos:
        out.append((pos, text[pos:m.start()], None))
      out.append((m.start(), m.group(), self.added_tokens[m.group()]))
      pos = m.end()
    return out + ([(pos, text[pos:], None)] if pos < len(text) or not out else [])

  def encode(self, text: str) -> list[int]:
    if not self.added_tokens:
      ids = self.sp.encode(text)
    else:
      ids = [i for _, piece, added in self.split_added(text)
             for i in ([added] if added is not None else self.sp.encode(piece))]
    return [self.bos_id] + ids if self.add_bos and self.bos_id is not None else ids

  def decode(self, ids: list[int]) -> str:
    if not self._added_text:
      return self.sp.decode(list(ids))
    out, run = [], []
    for i in list(ids) + [None]:
      if i is None or i in self._added_text:
        out.append(self.sp.decode(run) if run else "")
        out.append(self._added_text.get(i, ""))
        run = []
      else:
        run.append(i)
    return "".join(out)


class HFTokenizer:
  """A Hugging Face `tokenizer.json` (the `tokenizers` library; no transformers needed)."""

  def __init__(self, path: str | os.PathLike, eos_token: Optional[str] = None):
    from tokenizers import Tokenizer as _Tok
    self.path = str(path)
    self.tok = _Tok.from_file(self.path)
    self.vocab_size = self.tok.get_vocab_size(with_added_tokens=True)
    self.bos_id = self._first_id(["<s>", "<|endoftext|>", "<|begin_of_text|>"])
    self.eos_id = (self.tok.token_to_id(eos_token) if eos_token else
                   self._first_id(["<|endoftext|>", "</s>", "<|end|>", "<|end_of_text|>"]))

  def _first_id(self, candidates: list[str]) -> Optional[int]:
    for token in candidates:
      idx = self.tok.token_to_id(token)
      if idx is not None:
        return idx
    return None

  def encode(self, text: str) -> list[int]:
    return self.tok.encode(text).ids

  def decode(self, ids: list[int]) -> str:
    return self.tok.decode(list(ids), skip_special_tokens=False)


def load(path: str | os.PathLike, *, add_bos: bool = False) -> Tokenizer:
  """Loads `tokenizer.model` (SentencePiece) or `tokenizer.json` (HF) from a folder, or a file."""
  path = pathlib.Path(path)
  if path.is_dir():
    for name in ("tokenizer.model", "tokenizer.json"):
      if (path / name).exists():
        return load(path / name, add_bos=add_bos)
    raise FileNotFoundError(f"No tokenizer.model or tokenizer.json in {path}; pass --tokenizer=FILE "
                            "or copy the model's tokenizer files into that folder")
  if not path.exists():
    raise FileNotFoundError(f"Tokenizer file {path} does not exist")
  if path.suffix == ".json":
    return HFTokenizer(path)
  return SentencePieceTokenizer(path, add_bos=add_bos, added_tokens=_added_tokens(path))


def _added_tokens(model_file: pathlib.Path) -> dict[str, int]:
  """The added_tokens.json next to a SentencePiece model (HF folders keep the chat tokens there),
  less the ones the model already has as pieces."""
  added = model_file.parent / "added_tokens.json"
  if not added.is_file():
    return {}
  sp = spm.SentencePieceProcessor(model_file=str(model_file))
  pieces = {sp.id_to_piece(i) for i in range(sp.get_piece_size())}
  return {t: int(i) for t, i in json.loads(added.read_text(encoding="utf-8")).items()
          if t not in pieces}


def find(model_dir: str | os.PathLike) -> Optional[Tokenizer]:
  """The tokenizer that goes with a model folder, or None: a training workdir's
  `tokenizer/sp.model`, or a HF folder's `tokenizer.model` / `tokenizer.json`."""
  model_dir = pathlib.Path(model_dir)
  for candidate in (model_dir / "tokenizer" / "sp.model", model_dir / "tokenizer.model",
                    model_dir / "tokenizer.json"):
    if candidate.exists():
      return load(candidate)
  return None


def train_sentencepiece(texts: Iterable[str], model_prefix: str | os.PathLike, *,
                        vocab_size: int = 8000, model_type: str = "bpe",
                        character_coverage: float = 1.0, max_sentence_length: int = 1 << 16,
                        num_threads: int = 2, seed_sentencepiece_size: int = 1_000_000,
                        user_defined_symbols: Optional[list[str]] = None) -> SentencePieceTokenizer:
  """Trains a SentencePiece model on `texts` (one document per item) -> `<model_prefix>.model`.

  Ids: pad 0, unk 1, bos 2, eos 3. Whitespace is kept as is (code needs its indentation):
  no NFKC normalisation, no collapsing of spaces, digits split.
  """
  prefix = pathlib.Path(model_prefix)
  prefix.parent.mkdir(parents=True, exist_ok=True)
  tmp_prefix = prefix.with_name(prefix.name + ".tmp")
  try:
    _train(texts, tmp_prefix, vocab_size, model_type, character_coverage, max_sentence_length,
           num_threads, seed_sentencepiece_size, user_defined_symbols)
  except RuntimeError as e:  # SentencePiece reports bad settings as RuntimeError
    raise ValueError(f"SentencePiece training failed: {e}. With byte_fallback the vocabulary "
                     "needs at least 256 byte pieces + 4 specials + the required characters; "
                     "raise tokenizer_vocab_size or give it more text.") from e
  for ext in (".model", ".vocab"):  # publish atomically
    os.replace(f"{tmp_prefix}{ext}", f"{prefix}{ext}")
  return SentencePieceTokenizer(f"{prefix}.model")


def _train(texts, tmp_prefix, vocab_size, model_type, character_coverage, max_sentence_length,
           num_threads, seed_sentencepiece_size, user_defined_symbols) -> None:
  spm.SentencePieceTrainer.train(
      sentence_iterator=iter(texts), model_prefix=str(tmp_prefix), vocab_size=vocab_size,
      model_type=model_type, character_coverage=character_coverage,
      max_sentence_length=max_sentence_length, num_threads=num_threads,
      seed_sentencepiece_size=seed_sentencepiece_size, pad_id=0, unk_id=1, bos_id=2, eos_id=3,
      normalization_rule_name="identity", remove_extra_whitespaces=False, split_digits=True,
      allow_whitespace_only_pieces=True, byte_fallback=True,
      user_defined_symbols=user_defined_symbols or [], minloglevel=2)
