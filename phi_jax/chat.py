"""Chat format: render a conversation with a model's chat template, encode it for SFT with a mask
of the assistant tokens, and read a model folder's end-of-turn ids.

    messages = [{'role': 'system', 'content': 'Be brief.'}, {'role': 'user', 'content': 'Hi'}]
    text = chat.render(messages, '/models/phi-3-mini', add_generation_prompt=True)
    text = chat.render(messages, 'phi-3', add_generation_prompt=True)   # built-in template
    ids, mask = chat.encode_with_assistant_mask(messages + [reply], 'phi-3', tokenizer)
    prompt = chat.encode_prompt(messages, 'phi-3', tokenizer)            # ends '<|assistant|>\\n'
    stops = chat.end_ids('/models/phi-3-mini', tokenizer)                # [32000, 32001, 32007]

`template` is a model folder (its `chat_template.jinja`, as transformers 5 saves it, else the
`chat_template` of its `tokenizer_config.json`, as the released microsoft folders keep it), a
`.jinja` file, a built-in name (BUILTIN: 'phi-3', 'phi-4-mini') or a `ChatTemplate`. Rendering is
transformers' `apply_chat_template(messages, tokenize=False)`: the same sandboxed Jinja settings
(trim_blocks, lstrip_blocks, loop controls, `raise_exception`, `tojson`, `strftime_now`, the
`{% generation %}` block) and the same variables (`messages`, `add_generation_prompt`, `tools`,
`documents`, and the folder's `bos_token`, `eos_token`, ... from tokenizer_config.json, then
special_tokens_map.json).

Token ids are those of `apply_chat_template(..., tokenize=True)`: the rendered text encoded with
no automatic BOS/EOS (the template writes the special tokens it wants), special tokens as single
ids (HF added tokens; SentencePiece user-defined symbols and a folder's added_tokens.json).
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import json
import os
import pathlib
from typing import Any, Mapping, Optional, Sequence

from phi_jax.data import tokenizer as tokenizers

ROLES = ("system", "user", "assistant")
TEMPLATE_FILE = "chat_template.jinja"  # where transformers 5 saves a folder's template
SPECIAL_TOKEN_KEYS = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token",
                      "mask_token")

# phi-3 / phi-3.5 mini (and medium): '<|role|>\n' + content + '<|end|>\n' for each message; the
# generation prompt is '<|assistant|>\n', a finished chat ends with eos_token. Like phi-3.5's
# template, an empty system message is left out.
_PHI3 = (
    "{% for m in messages %}"
    "{% if m['role'] not in ['system', 'user', 'assistant'] %}"
    "{{ raise_exception('phi-3 chat has roles system, user and assistant; got ' + m['role']) }}"
    "{% endif %}"
    "{% if m['role'] != 'system' or m['content'] %}"
    "{{ '<|' ~ m['role'] ~ '|>\\n' ~ m['content'] ~ '<|end|>\\n' }}"
    "{% endif %}"
    "{% endfor %}"
    "{{ '<|assistant|>\\n' if add_generation_prompt else eos_token }}")

# phi-4-mini: '<|role|>' + content + '<|end|>' with no newlines; a system message with `tools`
# (a JSON string) carries them as '<|tool|>' + tools + '<|/tool|>' before its '<|end|>'.
_PHI4_MINI = (
    "{% for m in messages %}"
    "{% if m['role'] not in ['system', 'user', 'assistant', 'tool'] %}"
    "{{ raise_exception('phi-4-mini chat has roles system, user, assistant and tool; got '"
    " + m['role']) }}"
    "{% endif %}"
    "{{ '<|' ~ m['role'] ~ '|>' ~ m['content'] }}"
    "{% if m['role'] == 'system' and m.get('tools') is not none %}"
    "{{ '<|tool|>' ~ m['tools'] ~ '<|/tool|>' }}"
    "{% endif %}"
    "{{ '<|end|>' }}"
    "{% endfor %}"
    "{{ '<|assistant|>' if add_generation_prompt else eos_token }}")


@dataclasses.dataclass(frozen=True)
class ChatTemplate:
  """A Jinja chat template with its variables.

  source: the Jinja text. name: where it came from (a built-in name or a path), for errors.
  variables: rendered with it (bos_token, eos_token, ...). roles: the roles it accepts (None: any
  of ROLES + 'tool'). end_of_turn: the token that ends a message, if known (built-ins: '<|end|>').
  """
  source: str
  name: str
  variables: Mapping[str, str] = dataclasses.field(default_factory=dict)
  roles: Optional[tuple[str, ...]] = None
  end_of_turn: Optional[str] = None


BUILTIN = {
    "phi-3": ChatTemplate(_PHI3, "phi-3", {"bos_token": "<s>", "eos_token": "<|endoftext|>"},
                          ROLES, "<|end|>"),
    "phi-4-mini": ChatTemplate(_PHI4_MINI, "phi-4-mini",
                               {"bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>"},
                               ROLES + ("tool",), "<|end|>"),
}


# ---- templates -----------------------------------------------------------------------------------

def _read_json(path: pathlib.Path) -> dict[str, Any]:
  if not path.is_file():
    return {}
  try:
    data = json.loads(path.read_text(encoding="utf-8"))
  except json.JSONDecodeError as e:
    raise ValueError(f"{path} is not valid JSON ({e}); fix or remove the file") from e
  return data if isinstance(data, dict) else {}


def _token_text(value: Any) -> Optional[str]:
  """A special token as tokenizer_config.json writes it: a string or {'content': ...}."""
  if isinstance(value, dict):
    value = value.get("content")
  return value if isinstance(value, str) else None


def special_tokens(folder: str | os.PathLike) -> dict[str, str]:
  """bos_token, eos_token, ... of a model folder: its tokenizer_config.json, with
  special_tokens_map.json filling the ones it lacks."""
  folder = pathlib.Path(folder)
  out: dict[str, str] = {}
  for name in ("tokenizer_config.json", "special_tokens_map.json"):
    data = _read_json(folder / name)
    for key in SPECIAL_TOKEN_KEYS:
      text = _token_text(data.get(key))
      if text is not None and key not in out:
        out[key] = text
  return out


def _folder_template(folder: pathlib.Path) -> str:
  if (folder / TEMPLATE_FILE).is_file():
    return (folder / TEMPLATE_FILE).read_text(encoding="utf-8")
  found = _read_json(folder / "tokenizer_config.json").get("chat_template")
  if isinstance(found, list):  # [{'name': ..., 'template': ...}]: the default one
    named = {t.get("name"): t.get("template") for t in found if isinstance(t, dict)}
    found = named.get("default")
    if found is None:
      raise ValueError(f"{folder}/tokenizer_config.json has several chat templates "
                       f"({sorted(map(str, named))}) and none named 'default'; pass one as a "
                       f"ChatTemplate, or a built-in name: {sorted(BUILTIN)}")
  if not isinstance(found, str):
    raise ValueError(f"{folder} has no chat template: neither {TEMPLATE_FILE} nor a "
                     "'chat_template' in tokenizer_config.json. Use a built-in one "
                     f"({', '.join(sorted(BUILTIN))}; --chat_template=phi-3 on the command line) "
                     f"or copy the model's {TEMPLATE_FILE} into the folder")
  return found


def load_template(template: str | os.PathLike | ChatTemplate) -> ChatTemplate:
  """A ChatTemplate from a built-in name, a model folder or a .jinja file (see the module doc)."""
  if isinstance(template, ChatTemplate):
    return template
  if isinstance(template, str) and template in BUILTIN:
    return BUILTIN[template]
  path = pathlib.Path(template)
  if path.is_dir():
    return ChatTemplate(_folder_template(path), str(path), special_tokens(path))
  if path.is_file() and path.suffix == ".jinja":
    return ChatTemplate(path.read_text(encoding="utf-8"), str(path), special_tokens(path.parent))
  raise ValueError(f"chat template {str(template)!r} is not a built-in name ({sorted(BUILTIN)}), "
                   "a model folder or a .jinja file" +
                   (" (that path is a file, not a .jinja template)" if path.exists() else ""))


@functools.lru_cache(maxsize=32)
def _compile(source: str):
  import jinja2  # pylint: disable=g-import-not-at-top
  from jinja2 import ext, nodes  # pylint: disable=g-import-not-at-top
  from jinja2.sandbox import ImmutableSandboxedEnvironment  # pylint: disable=g-import-not-at-top

  class _Generation(ext.Extension):
    """`{% generation %}...{% endgeneration %}` (transformers marks assistant text with it):
    renders its body unchanged."""
    tags = {"generation"}

    def parse(self, parser):
      lineno = next(parser.stream).lineno
      body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
      return nodes.Scope(body).set_lineno(lineno)

  def raise_exception(message):
    raise jinja2.exceptions.TemplateError(message)

  def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                      sort_keys=sort_keys)

  env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                      extensions=[ext.loopcontrols, _Generation])
  env.filters["tojson"] = tojson
  env.globals["raise_exception"] = raise_exception
  env.globals["strftime_now"] = lambda fmt: datetime.datetime.now().strftime(fmt)
  return env.from_string(source)


def _check_messages(messages: Sequence[Mapping[str, Any]], tpl: ChatTemplate) -> None:
  if isinstance(messages, (str, bytes, Mapping)) or not len(messages):
    raise ValueError("messages must be a non-empty list of {'role': ..., 'content': ...} dicts")
  roles = tpl.roles or ROLES + ("tool",)
  for i, m in enumerate(messages):
    if not isinstance(m, Mapping) or "role" not in m or "content" not in m:
      raise ValueError(f"message {i} must be a dict with 'role' and 'content', got {m!r}")
    if m["role"] not in roles:
      raise ValueError(f"message {i} has role {m['role']!r}; the {tpl.name} chat template "
                       f"takes roles {', '.join(roles)}")
    if not isinstance(m["content"], str):
      raise ValueError(f"message {i} content must be a string, got {type(m['content']).__name__}")


def _render(tpl: ChatTemplate, messages, add_generation_prompt: bool, variables) -> str:
  import jinja2  # pylint: disable=g-import-not-at-top
  try:
    compiled = _compile(tpl.source)
  except jinja2.exceptions.TemplateSyntaxError as e:
    raise ValueError(f"chat template {tpl.name} is not valid Jinja: {e} (line {e.lineno})") from e
  values = {**tpl.variables, **variables}
  try:
    return compiled.render(messages=[dict(m) for m in messages], tools=None, documents=None,
                           add_generation_prompt=add_generation_prompt, **values)
  except jinja2.exceptions.TemplateError as e:
    raise ValueError(f"chat template {tpl.name} refused the messages: {e}") from e


def render(messages: Sequence[Mapping[str, Any]], template: str | os.PathLike | ChatTemplate,
           add_generation_prompt: bool = False, **variables: Any) -> str:
  """The conversation as the model reads it: transformers' `apply_chat_template(messages,
  tokenize=False, add_generation_prompt=...)` for the same folder.

  messages: [{'role': 'system' | 'user' | 'assistant', 'content': str}, ...].
  add_generation_prompt: end with the header of an assistant turn (for generation).
  variables: extra template variables; they override the folder's bos_token, eos_token, ...
  """
  tpl = load_template(template)
  _check_messages(messages, tpl)
  return _render(tpl, messages, add_generation_prompt, variables)


# ---- encoding ------------------------------------------------------------------------------------

def _sp_user_defined(sp) -> list[str]:
  from sentencepiece import sentencepiece_model_pb2  # pylint: disable=g-import-not-at-top
  proto = sentencepiece_model_pb2.ModelProto()
  proto.ParseFromString(sp.serialized_model_proto())
  user_defined = sentencepiece_model_pb2.ModelProto.SentencePiece.USER_DEFINED
  return [p.piece for p in proto.pieces if p.type == user_defined]


def special_strings(tokenizer: Any) -> list[str]:
  """The strings that encode as one special id: a HF tokenizer's added tokens; a SentencePiece
  model's user-defined symbols and added tokens (tokenizer.py)."""
  if isinstance(tokenizer, tokenizers.HFTokenizer):
    return [t.content for t in tokenizer.tok.get_added_tokens_decoder().values()]
  if isinstance(tokenizer, tokenizers.SentencePieceTokenizer):
    return _sp_user_defined(tokenizer.sp) + list(getattr(tokenizer, "added_tokens", {}) or {})
  return []


def _sp_with_offsets(sp, text: str, start: int):
  """SentencePiece ids of `text` with char spans (offset by `start`); byte pieces of one char
  share that char."""
  char_at = [i for i, c in enumerate(text) for _ in c.encode("utf-8")] + [len(text)]
  ids, spans = [], []
  for piece in sp.encode(text, return_type="proto").pieces:
    begin, end = char_at[piece.begin], char_at[piece.end]
    ids.append(piece.id)
    spans.append((start + begin, start + max(end, begin + 1)))
  return ids, spans


def _tokenize(tokenizer: Any, text: str):
  """(ids, char spans [(start, end)] or None): the text's ids with no automatic BOS/EOS."""
  if isinstance(tokenizer, tokenizers.HFTokenizer):
    enc = tokenizer.tok.encode(text, add_special_tokens=False)
    return list(enc.ids), [tuple(o) for o in enc.offsets]
  if isinstance(tokenizer, tokenizers.SentencePieceTokenizer):
    ids, spans = [], []
    split = getattr(tokenizer, "split_added", None)
    for start, piece, added in (split(text) if split else [(0, text, None)]):
      if added is not None:
        ids.append(added)
        spans.append((start, start + len(piece)))
      elif piece:
        more_ids, more_spans = _sp_with_offsets(tokenizer.sp, piece, start)
        ids += more_ids
        spans += more_spans
    return ids, spans
  return list(tokenizer.encode(text)), None


def _single_id(tokenizer: Any, token: str) -> Optional[int]:
  """The id `token` encodes as on its own (an added token or user-defined symbol), or None."""
  if isinstance(tokenizer, tokenizers.HFTokenizer):
    return tokenizer.tok.token_to_id(token)
  if isinstance(tokenizer, tokenizers.SentencePieceTokenizer):
    added = getattr(tokenizer, "added_tokens", {}) or {}
    if token in added:
      return added[token]
    return tokenizer.sp.piece_to_id(token) if token in _sp_user_defined(tokenizer.sp) else None
  ids = list(tokenizer.encode(token))
  return ids[0] if len(ids) == 1 else None


def _assistant_spans(tpl: ChatTemplate, messages, text: str, specials: Sequence[str]):
  """Char spans of `text` (the whole chat, rendered) to train on: each assistant message's
  content and the end-of-turn token after it.

  How it splits: for assistant message i, the chat up to it is rendered with the generation
  prompt (else without) and must be a prefix of `text`; the content is its first occurrence
  after that prefix (stripped, if the template strips it); the span then runs to the end of the
  first special token after the content, if only whitespace separates them. Exact for multi-turn
  chats whose template writes each message's content as given.
  """
  spans = []
  for i, m in enumerate(messages):
    if m["role"] != "assistant":
      continue
    head = _render(tpl, messages[:i], True, {})
    if not text.startswith(head):
      head = _render(tpl, messages[:i], False, {})
      if not text.startswith(head):
        raise ValueError(f"chat template {tpl.name}: the chat up to message {i} does not render as "
                         "a prefix of the whole chat, so its assistant tokens cannot be located")
    content = m["content"]
    at = text.find(content, len(head)) if content else len(head)
    if at < 0:  # a template that strips the content
      content = content.strip()
      at = text.find(content, len(head))
    if at < 0:
      raise ValueError(f"chat template {tpl.name} changes assistant message {i}'s content, so its "
                       "tokens cannot be located in the rendered chat")
    end = at + len(content)
    found = [(text.find(s, end), s) for s in specials]
    found = [f for f in found if f[0] >= 0]
    if found:
      pos, token = min(found, key=lambda f: (f[0], -len(f[1])))
      if not text[end:pos].strip():
        end = pos + len(token)
    spans.append((at, end))
  return spans


def encode_with_assistant_mask(messages: Sequence[Mapping[str, Any]],
                               template: str | os.PathLike | ChatTemplate,
                               tokenizer: Any) -> tuple[list[int], list[int]]:
  """A finished chat as SFT trains on it: (ids [n], assistant_mask [n]).

  ids: the rendered chat (add_generation_prompt=False) encoded once, whole (no BOS/EOS added).
  assistant_mask: 1 on the tokens of every assistant message's content and its end-of-turn
  token (phi-3: '<|end|>'; not the newline after it, nor the final eos_token), 0 elsewhere.
  Tokens are mapped to the text by their character offsets (HF tokenizers, SentencePiece); a
  token that straddles a boundary counts as assistant. Other tokenizers (only `.encode`) are
  encoded piece by piece at the boundaries, exact only when the pieces tokenize independently.
  """
  tpl = load_template(template)
  _check_messages(messages, tpl)
  text = _render(tpl, messages, False, {})
  specials = set(special_strings(tokenizer)) | {tpl.end_of_turn or "",
                                                str(tpl.variables.get("eos_token") or "")}
  spans = _assistant_spans(tpl, messages, text, sorted(s for s in specials if s))
  ids, offsets = _tokenize(tokenizer, text)
  if offsets is None:  # piece by piece at the span boundaries
    ids, mask, pos = [], [], 0
    for start, end in spans + [(len(text), len(text))]:
      for piece, flag in ((text[pos:start], 0), (text[start:end], 1)):
        piece_ids = list(tokenizer.encode(piece)) if piece else []
        ids += piece_ids
        mask += [flag] * len(piece_ids)
      pos = end
    return ids, mask
  mask = [int(any(t_end > s and t_start < e for s, e in spans)) for t_start, t_end in offsets]
  return ids, mask


def encode_prompt(messages: Sequence[Mapping[str, Any]], template: str | os.PathLike | ChatTemplate,
                  tokenizer: Any) -> list[int]:
  """The ids a model generates its next assistant turn after: render(..., add_generation_prompt=
  True), encoded as encode_with_assistant_mask encodes (no BOS/EOS added)."""
  return _tokenize(tokenizer, render(messages, template, add_generation_prompt=True))[0]


# ---- end ids -------------------------------------------------------------------------------------

def _ids(value: Any) -> list[int]:
  if isinstance(value, bool):
    return []
  if isinstance(value, int):
    return [value]
  if isinstance(value, (list, tuple)):
    return [v for v in value if isinstance(v, int) and not isinstance(v, bool)]
  return []


def end_ids(model_dir: Optional[str | os.PathLike], tokenizer: Any = None,
            template: Optional[str | os.PathLike | ChatTemplate] = None) -> list[int]:
  """Every id that ends a reply, in order, without repeats: the folder's generation_config.json
  `eos_token_id` (an int or a list: phi-3-mini's is [32000, 32001, 32007]), its config.json
  `eos_token_id` (a phi_jax checkpoint's config.json / a workdir's model_config.json: `eos_id`),
  then `tokenizer.eos_id` and the template's end-of-turn token when it encodes as one id."""
  found: list[int] = []
  if model_dir is not None:
    folder = pathlib.Path(model_dir)
    for name in ("generation_config.json", "config.json", "model_config.json"):
      data = _read_json(folder / name)
      found += _ids(data.get("eos_token_id")) + _ids(data.get("eos_id"))
  if tokenizer is not None:
    found += _ids(getattr(tokenizer, "eos_id", None))
    tpl = load_template(template) if template is not None else None
    if tpl is not None and tpl.end_of_turn:
      found += _ids(_single_id(tokenizer, tpl.end_of_turn))
  return list(dict.fromkeys(i for i in found if i >= 0))


__all__ = ["BUILTIN", "ChatTemplate", "ROLES", "encode_prompt", "encode_with_assistant_mask",
           "end_ids", "load_template", "render", "special_strings", "special_tokens"]
