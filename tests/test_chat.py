"""Chat format (phi_jax.chat): rendering equals transformers' apply_chat_template for a local
tokenizer folder, the built-in templates, the assistant mask, special tokens as single ids, end ids,
multi-eos generation and `python -m phi_jax.generate --chat`."""

import json
import pathlib

import pytest
from conftest import tiny

from phi_jax import chat
from phi_jax.data import tokenizer as tokenizers
from phi_jax.decoding import generate

SPECIALS = ["<unk>", "<|endoftext|>", "<|system|>", "<|user|>", "<|assistant|>", "<|end|>"]
TEXT = ["You are brief. Say hi. Hello there! What is two plus two? It is four.",
        "def add(a, b):\n    return a + b\n", "The user asks and the assistant answers."] * 5
# The released phi-3.5-mini template (tokenizer_config.json's chat_template), as data.
PHI3_RELEASED = (
    "{% for message in messages %}{% if message['role'] == 'system' and message['content'] %}"
    "{{'<|system|>\n' + message['content'] + '<|end|>\n'}}{% elif message['role'] == 'user' %}"
    "{{'<|user|>\n' + message['content'] + '<|end|>\n'}}{% elif message['role'] == 'assistant' %}"
    "{{'<|assistant|>\n' + message['content'] + '<|end|>\n'}}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% else %}{{ eos_token }}{% endif %}")
CHATS = {
    "one_turn": [{"role": "user", "content": "Say hi."}],
    "system": [{"role": "system", "content": "You are brief."},
               {"role": "user", "content": "Say hi."},
               {"role": "assistant", "content": "Hello there!"}],
    "multi_turn": [{"role": "system", "content": "You are brief."},
                   {"role": "user", "content": "Say hi."},
                   {"role": "assistant", "content": "Hello there!"},
                   {"role": "user", "content": "What is two plus two?"},
                   {"role": "assistant", "content": "It is four.\n"}],
}


def _hf_tokenizer():
  from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
  from transformers import PreTrainedTokenizerFast
  tok = Tokenizer(models.BPE(unk_token="<unk>"))
  tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
  tok.decoder = decoders.ByteLevel()
  tok.train_from_iterator(TEXT, trainers.BpeTrainer(
      vocab_size=320, special_tokens=SPECIALS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
      show_progress=False))
  return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|endoftext|>",
                                 eos_token="<|endoftext|>", unk_token="<unk>",
                                 additional_special_tokens=SPECIALS[2:])


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
  """Two saved tokenizer folders with the phi-3 template: in tokenizer_config.json (as the
  released microsoft folders keep it) and in chat_template.jinja (as transformers 5 saves it)."""
  hf = _hf_tokenizer()
  hf.chat_template = PHI3_RELEASED
  jinja_dir = tmp_path_factory.mktemp("jinja")
  hf.save_pretrained(jinja_dir)
  config_dir = tmp_path_factory.mktemp("config")
  hf.save_pretrained(config_dir)
  (config_dir / "chat_template.jinja").unlink(missing_ok=True)
  config = json.loads((config_dir / "tokenizer_config.json").read_text())
  config["chat_template"] = PHI3_RELEASED
  (config_dir / "tokenizer_config.json").write_text(json.dumps(config))
  assert (jinja_dir / "chat_template.jinja").is_file()
  assert "chat_template" not in json.loads((jinja_dir / "tokenizer_config.json").read_text())
  return {"tokenizer_config": config_dir, "jinja": jinja_dir}


@pytest.fixture(scope="module")
def sp_tok(tmp_path_factory):
  return tokenizers.train_sentencepiece(TEXT * 4, tmp_path_factory.mktemp("sp") / "sp",
                                        vocab_size=300, user_defined_symbols=SPECIALS[1:])


@pytest.mark.parametrize("where", ["tokenizer_config", "jinja"])
@pytest.mark.parametrize("name", sorted(CHATS))
@pytest.mark.parametrize("gen", [False, True])
def test_render_equals_transformers_apply_chat_template(folders, where, name, gen):
  from transformers import AutoTokenizer
  folder = folders[where]
  hf = AutoTokenizer.from_pretrained(folder)
  expected = hf.apply_chat_template(CHATS[name], tokenize=False, add_generation_prompt=gen)
  assert chat.render(CHATS[name], folder, add_generation_prompt=gen) == expected
  assert chat.render(CHATS[name], "phi-3", add_generation_prompt=gen) == expected
  if not gen:
    assert expected.endswith("<|end|>\n<|endoftext|>")  # eos_token came from the folder


def test_builtin_formats():
  msgs = CHATS["system"]
  assert chat.render(msgs, "phi-3") == ("<|system|>\nYou are brief.<|end|>\n<|user|>\nSay hi."
                                        "<|end|>\n<|assistant|>\nHello there!<|end|>\n"
                                        "<|endoftext|>")
  assert chat.render(msgs[:2], "phi-4-mini", add_generation_prompt=True) == (
      "<|system|>You are brief.<|end|><|user|>Say hi.<|end|><|assistant|>")
  tools = [{"role": "system", "content": "Use tools.", "tools": '[{"name": "f"}]'}]
  assert chat.render(tools, "phi-4-mini") == (
      '<|system|>Use tools.<|tool|>[{"name": "f"}]<|/tool|><|end|><|endoftext|>')
  assert chat.render(msgs, "phi-3", eos_token="</s>").endswith("<|end|>\n</s>")


def _id(tok, special):
  if isinstance(tok, tokenizers.HFTokenizer):
    return tok.tok.token_to_id(special)
  return tok.sp.piece_to_id(special)


def _masked_runs(tok, ids, mask):
  runs, run = [], []
  for i, m in zip(ids + [None], mask + [0]):
    if m:
      run.append(i)
    elif run:
      runs.append(tok.decode(run))
      run = []
  return runs


@pytest.mark.parametrize("kind", ["hf", "sp"])
@pytest.mark.parametrize("template", ["phi-3", "phi-4-mini"])
def test_assistant_mask_covers_exactly_the_assistant_tokens(folders, sp_tok, kind, template):
  tok = tokenizers.load(folders["jinja"] / "tokenizer.json") if kind == "hf" else sp_tok
  msgs = CHATS["multi_turn"]
  ids, mask = chat.encode_with_assistant_mask(msgs, template, tok)
  assert len(ids) == len(mask) and set(mask) == {0, 1}
  assert tok.decode(ids) == chat.render(msgs, template)
  assert _masked_runs(tok, ids, mask) == ["Hello there!<|end|>", "It is four.\n<|end|>"]
  end = _id(tok, "<|end|>")
  assert ids.count(end) == 5 and [i for i, m in zip(ids, mask) if m].count(end) == 2
  # The prompt a model generates after is the prefix of the training ids.
  prompt = chat.encode_prompt(msgs[:4], template, tok)
  n = len(prompt)
  assert ids[:n] == prompt and mask[n - 1] == 0
  assert _masked_runs(tok, ids[n:], mask[n:]) == ["It is four.\n<|end|>"]


def test_ids_equal_transformers_tokenization(folders):
  from transformers import AutoTokenizer
  hf = AutoTokenizer.from_pretrained(folders["jinja"])
  ours = tokenizers.load(folders["jinja"] / "tokenizer.json")
  msgs = CHATS["multi_turn"]
  ids, _ = chat.encode_with_assistant_mask(msgs, folders["jinja"], ours)
  assert ids == hf.apply_chat_template(msgs, tokenize=True, return_dict=False)
  assert chat.encode_prompt(msgs[:2], folders["jinja"], ours) == hf.apply_chat_template(
      msgs[:2], tokenize=True, add_generation_prompt=True, return_dict=False)


def test_special_tokens_are_single_ids(folders, sp_tok, tmp_path):
  text = "<|user|>\nSay hi.<|end|>\n<|assistant|>\n"
  hf = tokenizers.load(folders["jinja"] / "tokenizer.json")
  for tok in (hf, sp_tok):
    ids = tok.encode(text)
    for special in ("<|user|>", "<|end|>", "<|assistant|>"):
      one = _id(tok, special)
      assert ids.count(one) == 1 and tok.decode([one]) == special
    assert tok.decode(ids) == text
    assert all(tok.decode([i]) in SPECIALS for i in ids if "|" in tok.decode([i]))  # none split
  # A SentencePiece folder with added_tokens.json (as phi-3's): chat tokens beyond the model.
  plain = tokenizers.train_sentencepiece(TEXT * 4, tmp_path / "plain", vocab_size=300)
  folder = tmp_path / "folder"
  folder.mkdir()
  (folder / "tokenizer.model").write_bytes((tmp_path / "plain.model").read_bytes())
  (folder / "added_tokens.json").write_text(json.dumps({"<|end|>": 300, "<|user|>": 301}))
  before = plain.encode("Say hi. What is two plus two?")
  tok = tokenizers.load(folder)
  assert tok.encode("Say hi. What is two plus two?") == before  # plain text unchanged
  assert tok.encode("<|user|>") == [301] and tok.vocab_size == 302
  assert tok.encode("Say hi.<|end|>") == plain.encode("Say hi.") + [300]
  assert tok.decode(tok.encode("<|user|>\nSay hi.<|end|>")) == "<|user|>\nSay hi.<|end|>"
  assert len(plain.encode("<|end|>")) > 1


def test_end_ids_from_folder_files(tmp_path, sp_tok):
  (tmp_path / "generation_config.json").write_text(json.dumps({"eos_token_id": [32000, 32001,
                                                                                32007]}))
  (tmp_path / "config.json").write_text(json.dumps({"eos_token_id": 32000}))
  assert chat.end_ids(tmp_path) == [32000, 32001, 32007]
  end = _id(sp_tok, "<|end|>")
  assert chat.end_ids(tmp_path, sp_tok, "phi-3") == [32000, 32001, 32007, sp_tok.eos_id, end]
  (tmp_path / "generation_config.json").write_text(json.dumps({"eos_token_id": 7}))
  assert chat.end_ids(tmp_path) == [7, 32000]


def test_generate_stops_at_any_of_several_end_ids():
  cfg, params = tiny("tiny-parallel")
  prompts = [[1, 2, 3], [4, 5, 6, 7]]
  free = generate(cfg, params, prompts, max_new_tokens=12)

  def expected(stops):  # each row cut after its first token in `stops`
    cuts = [next((t for t, x in enumerate(row) if x in stops), None) for row in free]
    return [row if c is None else row[:c + 1] for row, c in zip(free, cuts)]

  unused = next(t for t in range(cfg.vocab_size) if t not in free[0] + free[1])
  k = next((t for t in range(1, 12) if free[0][t] not in free[0][:t]), 0)
  stop = free[0][k]
  out = generate(cfg, params, prompts, max_new_tokens=12, eos_id=[unused, stop])
  assert out[0] == free[0][:k + 1] and out == expected({stop})  # stopped at the second id
  other = free[1][3]  # three ids (padded to four): each row stops at its first of them
  out = generate(cfg, params, prompts, max_new_tokens=12, eos_id=[stop, unused, other])
  assert out == expected({stop, other}) and len(out[1]) <= 4
  assert generate(cfg, params, prompts, max_new_tokens=12, eos_id=[stop]) == \
      generate(cfg, params, prompts, max_new_tokens=12, eos_id=stop)


def test_user_errors():
  with pytest.raises(ValueError, match="role 'tool'.*phi-3 chat template takes roles system"):
    chat.render([{"role": "tool", "content": "x"}], "phi-3")
  with pytest.raises(ValueError, match="not a built-in name.*phi-4-mini"):
    chat.render(CHATS["one_turn"], "phi-5")
  with pytest.raises(ValueError, match="'role' and 'content'"):
    chat.render([{"content": "x"}], "phi-3")
  with pytest.raises(ValueError, match="non-empty list"):
    chat.render([], "phi-3")


def test_folder_without_template_and_raise_exception(tmp_path):
  (tmp_path / "tokenizer_config.json").write_text(json.dumps({"eos_token": "</s>"}))
  with pytest.raises(ValueError, match="has no chat template.*--chat_template=phi-3"):
    chat.render(CHATS["one_turn"], tmp_path)
  (tmp_path / "chat_template.jinja").write_text(
      "{% if messages[0]['role'] != 'user' %}{{ raise_exception('start with a user') }}{% endif %}"
      "{% for m in messages %}{{ m['content'] + eos_token }}{% endfor %}")
  assert chat.render(CHATS["one_turn"], tmp_path) == "Say hi.</s>"
  with pytest.raises(ValueError, match="refused the messages: start with a user"):
    chat.render(CHATS["system"], tmp_path)


def test_generate_cli_chat(tmp_path, sp_tok, capsys):
  from phi_jax import generate as generate_cli
  from phi_jax.convert import hf
  cfg, params = tiny("tiny-serial", vocab_size=sp_tok.vocab_size)
  model = tmp_path / "model"
  hf.save(cfg, params, model)
  (model / "tokenizer.model").write_bytes(pathlib.Path(sp_tok.path).read_bytes())
  # no template in the folder: a clear error, then the built-in one
  assert generate_cli.main(["--model", str(model), "--chat", "--prompt", "Say hi."]) == 2
  assert "has no chat template" in capsys.readouterr().err
  end = _id(sp_tok, "<|end|>")
  (model / "generation_config.json").write_text(json.dumps({"eos_token_id": [end, 3]}))
  argv = ["--model", str(model), "--chat", "--chat_template=phi-3", "--system=You are brief.",
          "--prompt", "Say hi.", "--max_new_tokens=6"]
  assert generate_cli.main(argv) == 0
  captured = capsys.readouterr()
  prompt = chat.encode_prompt([{"role": "system", "content": "You are brief."},
                               {"role": "user", "content": "Say hi."}], "phi-3", sp_tok)
  out = generate(cfg, params, [prompt], max_new_tokens=6, eos_id=[end, 3])[0]
  reply = sp_tok.decode(out[:-1] if out[-1] in (end, 3) else out)
  assert captured.out.split("-" * 40)[0] == reply + "\n"
  assert f"end ids [{end}, 3]" in captured.err
