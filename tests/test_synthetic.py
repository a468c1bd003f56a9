"""Synthetic textbooks and exercises: prompt diversity, validation with counted rejections,
TFDS datasets the training pipeline reads, and resuming from the teacher's cache."""

import http.server
import json
import threading

import pytest

from phi_jax.data import builders, pipeline
from phi_jax.curation import synthetic
from phi_jax.curation import teacher as teachers
from phi_jax.data import tokenizer as tokenizers

PASSAGE = ("A list keeps items in order. You can add to it with append and read any item by "
           "its index, counting from zero.\n\n```python\nshelf = ['atlas', 'novel']\n"
           "shelf.append('poems')\nprint(shelf[2])\n```\n\nLoops visit every item in turn. ")
GOOD_EXERCISE = '''Here it is:

```python
def {name}(values: list[int]) -> int:
    """Return the sum of the even numbers in values.

    >>> {name}([1, 2, 4])
    6
    """
    return sum(v for v in values if is_even(v))


def is_even(v: int) -> bool:
    return v % 2 == 0


assert {name}([1, 2, 4]) == 6
assert {name}([]) == 0
print("done")
```
'''


class ScriptedTeacher:
  """Answers by the prompt's position in the run (a fake teacher for the tests)."""

  name = "scripted"
  fingerprint = "scripted-v1"

  def __init__(self, script):
    self.script = script
    self.calls = 0
    self.index = {}

  def complete(self, prompts, *, max_tokens, temperature, stop=None):
    del max_tokens, temperature, stop
    out = []
    for p in prompts:
      i = self.index.setdefault(p, len(self.index))
      self.calls += 1
      out.append(self.script(i, p))
    return out


def test_textbook_prompts_are_diverse_and_deterministic():
  prompts = synthetic.textbook_prompts(300, seed=0)
  assert prompts == synthetic.textbook_prompts(300, seed=0)
  assert synthetic.textbook_prompts(40, seed=0) == prompts[:40]
  assert [p.prompt for p in synthetic.textbook_prompts(40, seed=1)] != [p.prompt
                                                                       for p in prompts[:40]]
  assert len({p.prompt for p in prompts}) == len({p.id for p in prompts}) == 300
  axes = {k: {p.meta[k] for p in prompts} for k in ("topic", "audience", "style", "domain")}
  assert len(axes["topic"]) > 40 and axes["audience"] == set(synthetic.AUDIENCES)
  assert axes["style"] == set(synthetic.STYLES) and len(axes["domain"]) > 20
  for p in prompts[:20]:
    assert p.meta["topic"] in p.prompt and p.meta["audience"] in p.prompt
  general = synthetic.textbook_prompts(10, seed=0, subject="general", topics=["tides", "rust"])
  assert {p.meta["topic"] for p in general} <= {"tides", "rust"}
  assert "Python" not in general[0].prompt
  with pytest.raises(ValueError, match="allow only"):
    synthetic.textbook_prompts(10**9, seed=0)


def test_exercise_prompts_constrain_function_names():
  prompts = synthetic.exercise_prompts(200, seed=3)
  assert prompts == synthetic.exercise_prompts(200, seed=3)
  assert len({p.prompt for p in prompts}) == 200
  assert len({p.meta["function_name"] for p in prompts}) > 150
  assert all(f"`{p.meta['function_name']}`" in p.prompt for p in prompts)


def test_parse_exercise():
  parsed = synthetic.parse_exercise(GOOD_EXERCISE.format(name="sum_even"), "sum_even")
  assert parsed["entry_point"] == "sum_even" and parsed["name_matches"]
  assert parsed["prompt"].startswith("def sum_even(") and parsed["prompt"].endswith('    """\n')
  assert parsed["target"].startswith("    return sum(") and "def is_even" in parsed["target"]
  assert parsed["tests"] == ["assert sum_even([1, 2, 4]) == 6", "assert sum_even([]) == 0"]
  assert "print" not in parsed["target"]
  unfenced = synthetic.parse_exercise('def f(x):\n    """Double."""\n    return 2 * x\n', "g")
  assert unfenced["entry_point"] == "f" and not unfenced["name_matches"]
  for text, reason in [("```python\ndef f(:\n```", "syntax_error"),
                       ("def f(x):\n    return x\n", "no_documented_function"),
                       ("No code, sorry.", "no_code"),
                       ('def f(x):\n    """Doc."""\n    pass\n', "empty_solution"),
                       ("   \n", "empty")]:
    with pytest.raises(synthetic.Rejected) as info:
      synthetic.parse_exercise(text)
    assert info.value.reason == reason


def test_check_textbook():
  synthetic.check_textbook(PASSAGE * 2, min_chars=100)
  synthetic.check_textbook(PASSAGE + "```python\n>>> 1 +\n```\n", min_chars=10)  # a REPL session
  for text, reason in [("", "empty"), ("short", "too_short"),
                       ("I'm sorry, I can't write that." * 20, "refusal"),
                       (PASSAGE + "```python\ndef broken(:\n```", "code_syntax_error")]:
    with pytest.raises(synthetic.Rejected) as info:
      synthetic.check_textbook(text, min_chars=100)
    assert info.value.reason == reason


@pytest.fixture(scope="module")
def sp(tmp_path_factory):
  texts = [PASSAGE, GOOD_EXERCISE.format(name="count_words")] * 20
  return tokenizers.train_sentencepiece(texts, tmp_path_factory.mktemp("sp") / "sp",
                                        vocab_size=400)


def test_textbooks_from_a_scripted_teacher_train_through_the_pipeline(tmp_path, sp):
  def script(i, prompt):
    kind = i % 5
    if kind == 1:
      return "Too short."
    if kind == 2:
      return PASSAGE + "```python\ndef broken(:\n```\n"
    if kind == 3:
      return PASSAGE * 3  # the same passage every time: the first copy is kept
    return f"Passage {i} on {prompt[30:60]}.\n\n" + PASSAGE * 3
  teacher = ScriptedTeacher(script)
  stats = synthetic.generate_textbooks(teacher, 20, seed=0, out_dir=tmp_path / "tb", batch_size=6,
                                       min_chars=200)
  assert stats.kept == 8 + 1 and stats.rejected == {"too_short": 4, "code_syntax_error": 4,
                                                    "duplicate": 3}
  records = [json.loads(line) for line in (tmp_path / "tb" / "records.jsonl").open()]
  assert len(records) == 9 and all(r["topic"] and r["audience"] and r["style"] for r in records)
  rejected = [json.loads(line) for line in (tmp_path / "tb" / "rejected.jsonl").open()]
  assert sorted({r["reason"] for r in rejected}) == ["code_syntax_error", "duplicate", "too_short"]
  assert json.loads((tmp_path / "tb" / "stats.json").read_text())["kept"] == 9

  builder = builders.build(stats.dataset, stats.data_dir, **stats.builder_kwargs)
  train, validation = builder.as_data_source("train"), builder.as_data_source("validation")
  assert len(train) + len(validation) == 9 and len(validation) >= 1
  example = train[0]
  assert example["text"].decode().startswith("Passage") and example["topic"]
  assert json.loads(example["meta"])["domain"]
  config = pipeline.DataConfig(name=stats.dataset, data_dir=stats.data_dir, seq_len=32,
                               batch_size=2, builder_kwargs=stats.builder_kwargs, read_threads=0)
  batch = next(pipeline.make_iterator(config, sp, process_index=0, process_count=1))
  assert batch["inputs"].shape == (2, 32) and batch["loss_mask"].sum() > 0


def test_exercises_from_a_scripted_teacher(tmp_path, sp):
  def script(i, prompt):
    name = prompt.split("`")[1]
    return [GOOD_EXERCISE.format(name=name),
            GOOD_EXERCISE.format(name=name).replace("== 6", "== 7"),  # a wrong assert
            "```python\ndef oops(:\n    pass\n```",
            f"```python\ndef {name}(x):\n    '''Loop.'''\n    while True:\n        pass\n\n"
            f"assert {name}(1) is None\n```",
            f'```python\ndef {name}(x: int) -> int:\n    """Triple x."""\n    return 3 * x\n```',
            "No code today."][i % 6]
  stats = synthetic.generate_exercises(ScriptedTeacher(script), 12, seed=0,
                                       out_dir=tmp_path / "ex", require_tests=True, workers=2,
                                       timeout_s=60.0, cpu_s=1.0)
  # The endless loops end on the 1 s CPU limit, which a loaded machine does not bring closer
  # (a 1 s wall limit could also cut a correct program that waited for a core).
  assert stats.kept == 2 and stats.rejected == {
      "tests_failed": 2, "syntax_error": 2, "tests_timeout": 2, "no_tests": 2,
      "no_code": 2}
  rejected = [json.loads(line) for line in (tmp_path / "ex" / "rejected.jsonl").open()]
  assert [r["detail"] for r in rejected if r["reason"] == "tests_timeout"] == [
      "CPU time limit of 1 s"] * 2
  untested = synthetic.generate_exercises(
      ScriptedTeacher(lambda i, p: script(4, p)), 3, seed=0, out_dir=tmp_path / "ex2",
      require_tests=False)
  assert untested.kept == 3 and not untested.rejected
  builder = builders.build(untested.dataset, untested.data_dir, **untested.builder_kwargs)
  ds = [builder.as_data_source(s)[i] for s in ("train", "validation")
        for i in range(len(builder.as_data_source(s)))]
  assert all(r["text"] == r["prompt"] + r["target"] for r in ds)
  assert all(json.loads(r["meta"])["difficulty"] in synthetic.DIFFICULTIES for r in ds)
  config = pipeline.DataConfig(name=stats.dataset, data_dir=stats.data_dir, seq_len=48,
                               batch_size=2, builder_kwargs=stats.builder_kwargs, read_threads=0,
                               format="prompt_completion")
  batch = next(pipeline.make_iterator(config, sp, process_index=0, process_count=1))
  assert batch["inputs"].shape == (2, 48) and 0 < batch["loss_mask"].sum() < 96


def test_procedural_exercises_dataset(tmp_path):
  stats = synthetic.generate_exercises(teachers.ProceduralTeacher(seed=1), 24, seed=4,
                                       out_dir=tmp_path / "proc", workers=2)
  assert stats.kept == 24 and not stats.rejected and stats.teacher == "procedural:train"
  builder = builders.build(stats.dataset, stats.data_dir, **stats.builder_kwargs)
  rows = [builder.as_data_source(s)[i] for s in ("train", "validation")
          for i in range(len(builder.as_data_source(s)))]
  assert len(rows) == 24 and all(r["family"] and r["tests"].startswith(b"assert ") for r in rows)
  families = {r["family"].decode() for r in rows}
  assert not families & set(synthetic.procedural.HELDOUT_FAMILIES)


class _Handler(http.server.BaseHTTPRequestHandler):

  def log_message(self, *args):
    pass

  def do_POST(self):  # pylint: disable=invalid-name
    body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
    state = self.server.state
    with state["lock"]:
      state["calls"] += 1
      ok = state["calls"] <= state["fail_after"]
    payload = json.dumps({"choices": [{"message": {"content": PASSAGE + body["messages"][-1][
        "content"]}}]}).encode() if ok else b"down"
    self.send_response(200 if ok else 500)
    self.send_header("Content-Length", str(len(payload)))
    self.end_headers()
    self.wfile.write(payload)


def test_interrupted_generation_resumes_from_the_teacher_cache(tmp_path):
  server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
  server.daemon_threads = True
  server.state = {"lock": threading.Lock(), "calls": 0, "fail_after": 4}
  threading.Thread(target=server.serve_forever, daemon=True).start()
  try:
    make = lambda: teachers.OpenAITeacher(
        "m", base_url=f"http://127.0.0.1:{server.server_address[1]}/v1", api_key="k",
        cache_dir=tmp_path / "cache", max_retries=0, concurrency=2)
    with pytest.raises(teachers.TeacherError, match="every prompt of batch 1.*re-run"):
      synthetic.generate_textbooks(make(), 8, seed=0, out_dir=tmp_path / "tb", batch_size=4,
                                   min_chars=50)
    calls = server.state["calls"]  # 4 answers cached, then 4 failures
    server.state["fail_after"] = 10**9
    stats = synthetic.generate_textbooks(make(), 8, seed=0, out_dir=tmp_path / "tb",
                                         batch_size=4, min_chars=50)
    assert stats.kept == 8 and server.state["calls"] == calls + 4
  finally:
    server.shutdown()
    server.server_close()
