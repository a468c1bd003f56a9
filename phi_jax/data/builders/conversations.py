"""`conversations` (SFT) and `preferences` (DPO): TFDS datasets of chat JSONL.

    builder = builders.build('conversations', '/tmp/tfds', source_dir='/data/chats.jsonl')
    builder.as_data_source('train')[0]  # {'messages': b'[{"role": "user", ...}]', 'text': ...}
    builders.build('preferences', '/tmp/tfds', source_dir='/data/prefs')  # prefs/records.jsonl

source_dir is a .jsonl file or a folder holding records.jsonl; one JSON object per line:
  conversations  {"messages": [{"role": "system" | "user" | "assistant", "content": str}, ...]}
  preferences    {"prompt": str, "chosen": str, "rejected": str}, or "messages" (the
                 conversation so far, ending with a user turn) instead of "prompt"
An optional "id" names a record (default: its line number) and decides its split (a hash, as the
synthetic datasets do). A malformed line fails with its path and line number.
source_dir='' builds a small built-in demo set (arithmetic questions, answered; for preferences
the rejected answer is off by one): what the `:tiny` post-training configs run on.

Features (text): id; messages (the JSON list; '' for a prompt-only preference record); text (the
contents joined by newlines: what a tokenizer is trained on); preferences also prompt, chosen,
rejected. Train with data.format='chat' / 'preference' (phi_jax/data/posttrain_formats.py).
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import random
from typing import Any, Iterator, Optional, Sequence

from phi_jax.data.builders import jsonl
from phi_jax.data.builders.jsonl import RECORDS_FILE

ROLES = ("system", "user", "assistant", "tool")
DEMO_SIZE = 400


def demo_records(kind: str, n: int = DEMO_SIZE, seed: int = 0) -> list[dict[str, Any]]:
  """The built-in demo set: 'conversations' (one or two arithmetic turns) or 'preferences'."""
  rng = random.Random(seed)
  records = []
  for i in range(n):
    a, b = rng.randint(0, 20), rng.randint(0, 20)
    question, answer = f"What is {a} plus {b}?", f"{a} plus {b} is {a + b}."
    if kind == "preferences":
      wrong = f"{a} plus {b} is {a + b + rng.choice((-1, 1))}."
      records.append({"id": f"demo{i}", "prompt": f"Question: {question}\nAnswer: ",
                      "chosen": answer, "rejected": wrong})
      continue
    messages = [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
    if i % 2:
      c = rng.randint(0, 20)
      messages += [{"role": "user", "content": f"And plus {c}?"},
                   {"role": "assistant", "content": f"{a + b} plus {c} is {a + b + c}."}]
    if i % 3 == 0:
      messages.insert(0, {"role": "system", "content": "Answer in one sentence."})
    records.append({"id": f"demo{i}", "messages": messages})
  return records


def _check_messages(messages: Any, where: str, last_role: Optional[str] = None) -> None:
  if not isinstance(messages, list) or not messages:
    raise ValueError(f"{where}: 'messages' must be a non-empty list of {{'role', 'content'}}")
  for j, m in enumerate(messages):
    if (not isinstance(m, dict) or m.get("role") not in ROLES
        or not isinstance(m.get("content"), str)):
      raise ValueError(f"{where}: message {j} must be {{'role': one of {ROLES}, 'content': str}}, "
                       f"got {str(m)[:120]}")
  if last_role and messages[-1]["role"] != last_role:
    raise ValueError(f"{where}: the messages of a preference record must end with a "
                     f"{last_role!r} turn (chosen / rejected are the assistant's reply)")


def _jsonl_path(source_dir: str) -> pathlib.Path:
  path = pathlib.Path(source_dir)
  return path if path.suffix == ".jsonl" else path / RECORDS_FILE


def read_jsonl(source_dir: str | os.PathLike, kind: str) -> list[dict[str, Any]]:
  """The checked records of a conversations / preferences JSONL ('' = the demo set)."""
  if not source_dir:
    return demo_records(kind)
  path = _jsonl_path(os.fspath(source_dir))
  if not path.is_file():
    raise ValueError(f"{path} does not exist: source_dir must be a .jsonl file or a folder with "
                     f"{RECORDS_FILE} (or '' for the built-in demo set)")
  records = []
  for n, record in jsonl.iter_jsonl(path):
    where = f"{path}:{n}"
    if not isinstance(record, dict):
      raise ValueError(f"{where}: each line must be a JSON object")
    if kind == "conversations":
      _check_messages(record.get("messages"), where)
      if not any(m["role"] == "assistant" for m in record["messages"]):
        raise ValueError(f"{where}: a conversation needs an assistant turn to train on")
    else:
      for key in ("chosen", "rejected"):
        if not isinstance(record.get(key), str):
          raise ValueError(f"{where}: a preference record needs a string {key!r}")
      if "messages" in record:
        _check_messages(record["messages"], where, last_role="user")
      elif not isinstance(record.get("prompt"), str) or not record["prompt"]:
        raise ValueError(f"{where}: a preference record needs a non-empty string 'prompt' or "
                         "a 'messages' list")
    record = dict(record, id=str(record.get("id") or f"line{n}"))
    records.append(record)
  return records


@dataclasses.dataclass(eq=False)
class ChatJsonlConfig(jsonl.JsonlConfig):
  """source_dir: the .jsonl file or its folder ('' = demo); validation_fraction; max_files: the
  first N records (None = all); fingerprint: sha256 of the file and knobs."""


class _ChatJsonl(jsonl.JsonlBuilder, skip_registration=True):
  CONFIG = ChatJsonlConfig
  KIND = ""

  @classmethod
  def read_records(cls, source: str) -> list[dict[str, Any]]:
    return read_jsonl(source, cls.KIND)

  @classmethod
  def source_chunks(cls, source: str) -> Iterator[bytes]:
    return (jsonl.file_chunks(_jsonl_path(source)) if source
            else iter([f"demo{DEMO_SIZE}".encode()]))

  @classmethod
  def make_config(cls, source_dir: Optional[str | os.PathLike] = None, *,
                  validation_fraction: float = 0.02, max_files: Optional[int] = None,
                  max_bytes: Optional[int] = None) -> ChatJsonlConfig:
    if max_bytes:
      raise ValueError(f"{cls.KIND} does not filter by max_bytes; leave data.max_bytes unset")
    jsonl.check_validation_fraction(validation_fraction)
    source = os.path.abspath(os.fspath(source_dir)) if source_dir else ""
    return cls._fingerprinted_config(source, validation_fraction=validation_fraction,
                                     max_files=max_files, knobs=(validation_fraction, max_files),
                                     slug=pathlib.Path(source).stem, empty_slug="demo")

  def _generate_examples(self, records: Sequence[dict[str, Any]]
                         ) -> Iterator[tuple[str, dict[str, str]]]:
    for record in records:
      messages = record.get("messages") or []
      texts = [m["content"] for m in messages] + [record.get(k, "") for k in
                                                  ("prompt", "chosen", "rejected")]
      out = {"id": record["id"], "text": "\n".join(t for t in texts if t),
             "messages": json.dumps(messages, ensure_ascii=False) if messages else ""}
      for k in self.FEATURES:
        if k not in out:
          out[k] = str(record.get(k, ""))
      yield record["id"], out


class Conversations(_ChatJsonl):
  """Multi-turn chat conversations ({"messages": [...]}) for supervised fine-tuning."""
  KIND = "conversations"
  FEATURES = ("id", "messages", "text")


class Preferences(_ChatJsonl):
  """Preference pairs ({"prompt" or "messages", "chosen", "rejected"}) for DPO."""
  KIND = "preferences"
  FEATURES = ("id", "messages", "text", "prompt", "chosen", "rejected")
