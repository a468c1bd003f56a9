"""grain input pipeline: documents -> tokens -> packed rows -> batches, sharded per process.

    cfg = DataConfig(name='code_corpus', data_dir='/tmp/tfds', seq_len=256, batch_size=32,
                     builder_kwargs={'max_files': 200})
    it = make_iterator(cfg, tokenizer)             # a grain DatasetIterator; next(it) -> batch
    state = it.get_state(); it.set_state(state)    # exact resume (or grain.checkpoint)
    evals = make_eval_batches(cfg, tokenizer)      # finite list of validation batches

Stages: source (one TFDS split, or any sequence of records / strings) -> seeded shuffle of
documents, reshuffled each epoch -> repeat `num_epochs` (None = forever) -> tokenize, EOS appended
-> concat-then-split packing into rows of `seq_len` (grain's `ConcatThenSplitIterDataset`: no
padding except in the very last row of a finite stream; a document longer than the remaining room
continues at the start of the next row) -> batch of `batch_size` (global) rows -> this process's
slice.

Each document d = [t_0 .. t_{n-1}] becomes the stream [t_0 .. t_{n-1}, EOS] with, per token,
    input = the token,  target = the next token of the SAME document,  loss_mask = 1,
except that the EOS has target 0 and loss_mask 0 (its successor is the next document's first
token, unrelated). So t_{n-1} -> EOS is trained (the model learns to end documents), a document's
first token is never a target, and no target crosses a document boundary. Input and target travel
together, so a document split across two rows loses no pair. Every batch is a dict of numpy arrays:

    inputs       [B, T] int32    token ids (EOS separates documents)
    targets      [B, T] int32    next token within the document (0 where loss_mask == 0)
    segment_ids  [B, T] int32    1, 2, 3, ... per document piece in the row; 0 = padding
    positions    [B, T] int32    0, 1, 2, ... restarting at each piece (a continued document
                                 restarts at 0 in its new row: attention never sees the old row)
    loss_mask    [B, T] float32  1 where `targets` is a real next token; 0 at EOS and padding

format='prompt_completion' (conditional generation: records with a prompt and a target) instead
tokenizes each example as [prompt ids] + [target ids] + [EOS], trains only on predicting the
target and the EOS (loss_mask 1 from the last prompt token on), never splits an example (grain's
first-fit packing: whole examples per row, the rest padded; an example longer than seq_len keeps
its first seq_len tokens, its prompt cut from the left to at most seq_len / 2 if needed), and adds

    target_index [B, T] int32    t for the input token g_t of a target (0 at the first target
                                 token), negative on prompt tokens and padding: the position
                                 SkipDecode's schedule is counted from (decoding.skipdecode)

format='chat' (SFT on conversations) and format='preference' (DPO pairs) pack whole conversations
/ pairs first-fit the same way; their tokenization, masks and extra features are in
posttrain_formats.py (`encode_chat=` gives the chat template's encoder; phi_jax.chat makes one).

B is the per-process batch (`batch_size // process_count`). By default every process runs the same
global pipeline and keeps rows [p*B, (p+1)*B) of each global batch: the data, and the iterator
state, do not depend on the number of processes. `shard_documents=True` instead gives each process
every P-th document and packs them on its own (P times less tokenizing per host; the data then
depends on P).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Mapping, Optional, Sequence

import grain
import numpy as np

from phi_jax.data import posttrain_formats

FEATURES = ("inputs", "targets", "segment_ids", "positions", "loss_mask")
FORMATS = ("lm", "prompt_completion", "chat", "preference")


@dataclasses.dataclass(frozen=True)
class DataConfig:
  """Where the documents come from and how they are batched.

  Attributes:
    name: a `phi_jax.data.builders` dataset ('code_corpus' | 'text_corpus').
    data_dir: TFDS data dir (prepared there on first use).
    split: 'train' | 'validation'.
    seq_len: T, tokens per row (>= 2).
    batch_size: global rows per step; must divide by the process count.
    seed: document shuffle seed, in [0, 2**32).
    num_epochs: passes over the documents; None = forever.
    shuffle: shuffle documents (reshuffled every epoch).
    worker_count: grain worker processes (0 = in this process). The order of the data depends
      on it; restore a state with the same worker_count.
    builder_kwargs: passed to `builders.build` (source_dir, max_files, validation_fraction...).
    text_key: the record field holding the text.
    drop_remainder: drop a last, short global batch of a finite stream; False pads it to full
      shape with all-zero rows (segment_ids 0, loss_mask 0).
    shard_documents: shard documents instead of batch rows across processes (see module doc).
      With a finite num_epochs, processes may then run out after different numbers of batches.
    read_threads / prefetch_buffer_size: grain `ReadOptions` for reading and tokenizing.
    format: 'lm' (documents, concat-then-split), 'prompt_completion', 'chat' or 'preference'
      (see module doc).
    prompt_key / target_key: the record fields of a prompt_completion example.
    packing_bins: first-fit packing bins of the packed formats (0 = batch_size).
  """

  name: str = "code_corpus"
  data_dir: Optional[str] = None
  split: str = "train"
  seq_len: int = 256
  batch_size: int = 8
  seed: int = 0
  num_epochs: Optional[int] = None
  shuffle: bool = True
  worker_count: int = 0
  builder_kwargs: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  text_key: str = "text"
  drop_remainder: bool = True
  shard_documents: bool = False
  read_threads: int = 4
  prefetch_buffer_size: int = 64
  format: str = "lm"
  prompt_key: str = "prompt"
  target_key: str = "target"
  packing_bins: int = 0

  def validate(self, process_count: int = 1) -> None:
    """Raises ValueError naming the field and the rule."""
    if self.seq_len < 2:
      raise ValueError(f"seq_len must be >= 2, got {self.seq_len}")
    if self.batch_size < 1:
      raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
    if process_count < 1:
      raise ValueError(f"process_count must be >= 1, got {process_count}")
    if self.batch_size % process_count:
      raise ValueError(f"batch_size (global) {self.batch_size} must be divisible by the process "
                       f"count {process_count}: each process takes batch_size / process_count rows")
    if not 0 <= self.seed < 2**32:
      raise ValueError(f"seed must be in [0, 2**32), got {self.seed}")
    if self.num_epochs is not None and self.num_epochs < 1:
      raise ValueError(f"num_epochs must be >= 1 or None (forever), got {self.num_epochs}")
    if self.worker_count < 0:
      raise ValueError(f"worker_count must be >= 0, got {self.worker_count}")
    if self.format not in FORMATS:
      raise ValueError(f"format must be one of {FORMATS}, got {self.format!r}")
    if self.format == "prompt_completion" and self.seq_len < 4:
      raise ValueError(f"seq_len must be >= 4 for prompt_completion, got {self.seq_len}")
    if self.format == "preference" and self.seq_len < 8:
      raise ValueError(f"seq_len must be >= 8 for preference pairs, got {self.seq_len}")


class TokenizeDocument(grain.transforms.Map):
  """record -> {'tokens': [n + 1, 3] int32}: columns input, target, loss_mask (see module doc)."""

  def __init__(self, tokenizer: Any, text_key: str = "text"):
    self.eos_id = getattr(tokenizer, "eos_id", None)
    if self.eos_id is None:
      raise ValueError(f"The tokenizer {tokenizer!r} has no eos_id: packing needs an EOS separator")
    self.tokenizer = tokenizer
    self.text_key = text_key

  def map(self, record: Any) -> dict[str, np.ndarray]:
    text = record if isinstance(record, (str, bytes)) else record[self.text_key]
    if isinstance(text, bytes):
      text = text.decode("utf-8", errors="replace")
    ids = np.asarray(list(self.tokenizer.encode(text)) + [self.eos_id], np.int32)
    tokens = np.zeros((len(ids), 3), np.int32)
    tokens[:, 0] = ids
    tokens[:-1, 1] = ids[1:]
    tokens[:-1, 2] = 1
    return {"tokens": tokens}


def _text(record: Any, key: str) -> str:
  if not isinstance(record, Mapping) or key not in record:
    raise ValueError(f"a prompt_completion record must be a mapping with {key!r}; got "
                     f"{type(record).__name__} with keys {list(record)[:8] if isinstance(record, Mapping) else '-'}")
  text = record[key]
  return text.decode("utf-8", errors="replace") if isinstance(text, bytes) else str(text)


class TokenizeExample(grain.transforms.Map):
  """{prompt, target} -> {'tokens': [n, 4] int32}: columns input, target, loss_mask,
  target_index (see the module doc), n <= seq_len."""

  def __init__(self, tokenizer: Any, seq_len: int, prompt_key: str = "prompt",
               target_key: str = "target"):
    self.eos_id = getattr(tokenizer, "eos_id", None)
    if self.eos_id is None:
      raise ValueError(f"The tokenizer {tokenizer!r} has no eos_id: examples end with EOS")
    self.tokenizer, self.seq_len = tokenizer, seq_len
    self.prompt_key, self.target_key = prompt_key, target_key

  def map(self, record: Any) -> dict[str, np.ndarray]:
    prompt_text = _text(record, self.prompt_key)
    prompt = list(self.tokenizer.encode(prompt_text))
    # The target's ids as they follow the prompt when the whole text is encoded (as a decoder
    # continuing the prompt will see them: no tokenizer dummy prefix at the seam); encoded on
    # its own only when the prompt's ids are not a prefix of the whole.
    joint = list(self.tokenizer.encode(prompt_text + _text(record, self.target_key)))
    if joint[:len(prompt)] == prompt and len(joint) > len(prompt):
      target = joint[len(prompt):] + [self.eos_id]
    else:
      target = list(self.tokenizer.encode(_text(record, self.target_key))) + [self.eos_id]
    if len(prompt) + len(target) > self.seq_len and len(prompt) > self.seq_len // 2:
      prompt = prompt[-max(self.seq_len // 2, self.seq_len - len(target)):]
    if not prompt:
      raise ValueError("an example has an empty prompt: prompt_completion needs at least one "
                       "prompt token to predict the first target token from")
    ids = np.asarray(prompt + target, np.int32)[:self.seq_len]
    n, start = len(ids), len(prompt)
    tokens = np.zeros((n, 4), np.int32)
    tokens[:, 0] = ids
    tokens[:-1, 1] = ids[1:]
    tokens[start - 1:n - 1, 2] = 1  # predict every target token and the EOS
    tokens[:, 3] = np.arange(n) - start
    return {"tokens": tokens}


class _RestorableIterDataset(grain.IterDataset):
  """Passes elements through; makes the packer's state survive a JSON round trip.

  grain 0.2.18's ConcatThenSplit compares `remainder_slices` values with the tuple (-1, -1); after
  `grain.checkpoint` writes and reads the state as JSON they are lists, the comparison fails, and
  the restored iterator silently drops a document. This turns them back into tuples.
  """

  def __iter__(self) -> grain.DatasetIterator:
    return _RestorableIterator(self._parent.__iter__())


class _RestorableIterator(grain.DatasetIterator):

  def __next__(self) -> Any:
    return next(self._parent)

  def get_state(self) -> dict[str, Any]:
    return self._parent.get_state()

  def set_state(self, state: dict[str, Any]) -> None:
    if isinstance(state, Mapping) and isinstance(state.get("remainder_slices"), Mapping):
      state = dict(state, remainder_slices={k: tuple(v) for k, v in
                                            state["remainder_slices"].items()})
    self._parent.set_state(state)


def _finalize(batch: Mapping[str, np.ndarray], *, rows: slice,
              pad_to: int = 0) -> dict[str, np.ndarray]:
  """Packed batch -> the five features, rows `rows` of the (zero-padded to `pad_to`) batch."""
  tokens, segment_ids, positions = (batch["tokens"], batch["tokens_segment_ids"],
                                    batch["tokens_positions"])
  if len(tokens) < pad_to:
    extra = pad_to - len(tokens)
    tokens, segment_ids, positions = (np.concatenate([x, np.zeros((extra,) + x.shape[1:], x.dtype)])
                                      for x in (tokens, segment_ids, positions))
  out = {"inputs": tokens[rows, :, 0], "targets": tokens[rows, :, 1],
         "segment_ids": segment_ids[rows].astype(np.int32),
         "positions": positions[rows].astype(np.int32),
         "loss_mask": tokens[rows, :, 2].astype(np.float32)}
  if tokens.shape[-1] == posttrain_formats.PAIR_COLUMNS:  # preference pairs
    return posttrain_formats.pair_features(tokens[rows], segment_ids[rows])
  if tokens.shape[-1] == 4:  # prompt_completion: padding gets target_index -1 (full depth)
    out["target_index"] = np.where(out["segment_ids"] > 0, tokens[rows, :, 3], -1).astype(np.int32)
  return out


def load_source(config: DataConfig) -> Sequence[Any]:
  """The TFDS data source of `config.split`, preparing the dataset if needed."""
  if config.data_dir is None:
    raise ValueError("DataConfig.data_dir is required to read a TFDS dataset (or pass source=)")
  from phi_jax.data import builders  # pylint: disable=g-import-not-at-top
  builder = builders.build(config.name, config.data_dir, **dict(config.builder_kwargs))
  if config.split not in builder.info.splits:
    raise ValueError(f"Split {config.split!r} not in {config.name}: {list(builder.info.splits)}")
  return builder.as_data_source(config.split)


def _process(process_index: Optional[int], process_count: Optional[int]) -> tuple[int, int]:
  if process_index is None or process_count is None:
    import jax  # pylint: disable=g-import-not-at-top
    process_index = jax.process_index() if process_index is None else process_index
    process_count = jax.process_count() if process_count is None else process_count
  if not 0 <= process_index < process_count:
    raise ValueError(f"process_index must be in [0, {process_count}), got {process_index}")
  return process_index, process_count


def make_dataset(config: DataConfig, tokenizer: Any, *, source: Optional[Sequence[Any]] = None,
                 process_index: Optional[int] = None, process_count: Optional[int] = None,
                 encode_chat: Optional[posttrain_formats.EncodeChat] = None) -> grain.IterDataset:
  """The pipeline as a grain IterDataset of per-process batches (see the module doc for features).

  Args:
    config: what to read and how to batch it.
    tokenizer: has `.encode(str) -> list[int]` and `.eos_id`.
    source: random-access records (dicts with `config.text_key`, or str/bytes); default: the TFDS
      split `config.split` of `config.name` under `config.data_dir`.
    process_index, process_count: default `jax.process_index()` / `jax.process_count()`.
    encode_chat: messages -> (ids, assistant mask), for format 'chat' (and 'preference' records
      with messages); see posttrain_formats.
  """
  process_index, process_count = _process(process_index, process_count)
  config.validate(process_count)
  source = load_source(config) if source is None else source
  if len(source) == 0:  # pylint: disable=g-explicit-length-test
    raise ValueError(f"The source of split {config.split!r} has no records")
  ds = grain.MapDataset.source(source)
  if config.shuffle:
    # grain shuffles epoch e with seed + e: mix the seed so seeds s and s + 1 stay unrelated.
    ds = ds.shuffle(seed=int(np.random.SeedSequence([config.seed, 0x5EED]).generate_state(1)[0]))
  if config.num_epochs != 1:
    ds = ds.repeat(config.num_epochs)
  batch_size, rows = config.batch_size, slice(None)
  if config.shard_documents:
    ds = ds[process_index::process_count]
    batch_size //= process_count
  else:
    per_process = config.batch_size // process_count
    rows = slice(process_index * per_process, (process_index + 1) * per_process)
  read = grain.ReadOptions(num_threads=config.read_threads,
                           prefetch_buffer_size=config.prefetch_buffer_size)
  if config.format in ("prompt_completion", "chat", "preference"):
    if config.format == "chat":
      ds = ds.map(posttrain_formats.TokenizeChat(encode_chat, config.seq_len))
    elif config.format == "preference":
      ds = ds.map(posttrain_formats.TokenizePair(tokenizer, config.seq_len, encode_chat,
                                                 config.prompt_key))
    else:
      ds = ds.map(TokenizeExample(tokenizer, config.seq_len, config.prompt_key, config.target_key))
    it_ds = grain.experimental.FirstFitPackIterDataset(
        ds.to_iter_dataset(read), length_struct={"tokens": config.seq_len},
        num_packing_bins=config.packing_bins or batch_size, shuffle_bins=False)
  else:
    ds = ds.map(TokenizeDocument(tokenizer, config.text_key))
    it_ds = grain.experimental.ConcatThenSplitIterDataset(
        ds.to_iter_dataset(read), length_struct={"tokens": config.seq_len})
    it_ds = _RestorableIterDataset(it_ds)
  it_ds = it_ds.batch(batch_size, drop_remainder=config.drop_remainder)
  it_ds = it_ds.map(functools.partial(_finalize, rows=rows, pad_to=batch_size))
  if config.worker_count > 0:
    it_ds = it_ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=config.worker_count))
  return it_ds


def make_iterator(config: DataConfig, tokenizer: Any, *, source: Optional[Sequence[Any]] = None,
                  process_index: Optional[int] = None, process_count: Optional[int] = None,
                  encode_chat: Optional[posttrain_formats.EncodeChat] = None
                  ) -> grain.DatasetIterator:
  """A checkpointable iterator of training batches: `get_state()` / `set_state()`, or
  `grain.checkpoint.CheckpointSave(it)` / `CheckpointRestore(it)` inside an orbax Composite.

  grain.checkpoint names its file `process_<i>-of-<n>.json`: restoring on another process count
  needs that (process-independent, by default) state copied by hand.
  """
  return iter(make_dataset(config, tokenizer, source=source, process_index=process_index,
                           process_count=process_count, encode_chat=encode_chat))


def make_eval_batches(config: DataConfig, tokenizer: Any, *, split: str = "validation",
                      max_batches: Optional[int] = None, source: Optional[Sequence[Any]] = None,
                      process_index: Optional[int] = None, process_count: Optional[int] = None,
                      encode_chat: Optional[posttrain_formats.EncodeChat] = None
                      ) -> list[dict[str, np.ndarray]]:
  """Every document of `split` once, in stored order, as full-shape batches (the last padded).

  Deterministic and finite: same list on every call; `max_batches` keeps the first few.
  """
  # Rows of the global batch (never shard_documents): every process gets the same batch count.
  config = dataclasses.replace(config, split=split, shuffle=False, num_epochs=1, worker_count=0,
                               drop_remainder=False, shard_documents=False)
  ds = make_dataset(config, tokenizer, source=source, process_index=process_index,
                    process_count=process_count, encode_chat=encode_chat)
  batches = []
  for batch in ds:
    if max_batches is not None and len(batches) >= max_batches:
      break
    batches.append(batch)
  return batches


def lm_batches_from_texts(texts: Sequence[str], tokenizer: Any, seq_len: int, batch_size: int,
                          seed: int = 0, *, num_epochs: Optional[int] = None,
                          shuffle: bool = True) -> grain.DatasetIterator:
  """Batches from an in-memory list of documents, on a single process (tests, notebooks)."""
  config = DataConfig(seq_len=seq_len, batch_size=batch_size, seed=seed, num_epochs=num_epochs,
                      shuffle=shuffle, read_threads=0, prefetch_buffer_size=1)
  return make_iterator(config, tokenizer, source=list(texts), process_index=0, process_count=1)
