"""Evaluations: pass@k, HumanEval, MBPP, multiple choice, perplexity, the eval CLI and the periodic
hook, on tiny random models and a SentencePiece tokenizer trained here."""

import fractions
import functools
import gzip
import json
import math
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import run_eval_cli, tiny

from phi_jax.data import tokenizer as tokenizers
from phi_jax.decoding import generate
from phi_jax.evals import (codegen, humaneval, mbpp, multiple_choice as mc, passk, periodic,
                           perplexity, tasks)
from phi_jax.models import Transformer

REPO = pathlib.Path(__file__).resolve().parents[1]
VOCAB = 320
TEXT = ([f"def function_{i}(x, y):\n    return x * {i} + y  # item {i}\n" for i in range(120)]
        + ["Question: is the sky blue? Answer: yes. The cat sat on the mat, the dog ran.\n"] * 40)


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
  return tokenizers.train_sentencepiece(TEXT, tmp_path_factory.mktemp("sp") / "sp",
                                        vocab_size=VOCAB, user_defined_symbols=["yes"])


@pytest.fixture(scope="module")
def model():
  return tiny("tiny-parallel", vocab_size=VOCAB)


@functools.lru_cache(maxsize=4)
def _forward(cfg):
  return jax.jit(lambda params, tokens: Transformer(cfg).apply({"params": params}, tokens))


def direct_logprob(cfg, params, ids, start):
  """sum_{t >= start} log p(ids[t] | ids[:t]) from one forward pass over this sequence alone (no
  packing, no segments). It is right-padded to max_seq_len so one compiled program serves every
  length: causal attention keeps the padding out of the positions read."""
  assert len(ids) - 1 <= cfg.max_seq_len
  tokens = np.zeros((1, cfg.max_seq_len), np.int32)
  tokens[0, :len(ids) - 1] = ids[:-1]
  logp = np.asarray(jax.nn.log_softmax(_forward(cfg)(params, tokens)[0], -1), np.float64)
  return sum(logp[t - 1, ids[t]] for t in range(max(start, 1), len(ids)))


# ---------------------------------------------------------------------------------------------
# pass@k


def test_pass_at_k_matches_the_binomial_formula():
  for n in range(1, 12):
    for c in range(n + 1):
      for k in range(1, n + 1):
        exact = 1 - fractions.Fraction(math.comb(n - c, k), math.comb(n, k))
        assert passk.pass_at_k(n, c, k) == pytest.approx(float(exact), abs=1e-12)
  assert passk.pass_at_k(200, 13, 1) == pytest.approx(13 / 200)
  assert passk.pass_at_k(200, 0, 100) == 0.0 and passk.pass_at_k(200, 150, 100) == 1.0
  with pytest.raises(ValueError, match="at least 10 samples"):
    passk.pass_at_k(5, 1, 10)
  means = passk.mean_pass_at_k([(4, 1), (4, 4), (10, 0)], [1, 4, 10])
  assert means == {"pass@1": pytest.approx((0.25 + 1 + 0) / 3), "pass@4": pytest.approx(2 / 3)}


# ---------------------------------------------------------------------------------------------
# HumanEval


def test_humaneval_problems_load(tmp_path):
  problems = humaneval.load_problems()
  assert len(problems) == 164 and problems[0]["task_id"] == "HumanEval/0"
  assert set(problems[0]) == {"task_id", "prompt", "canonical_solution", "test", "entry_point"}
  path = tmp_path / "two.jsonl.gz"
  with gzip.open(path, "wt") as f:
    f.writelines(json.dumps(p) + "\n" for p in problems[:2])
  assert humaneval.load_problems(path) == problems[:2]
  (tmp_path / "bad.jsonl").write_text(json.dumps({"task_id": "x"}) + "\n")
  with pytest.raises(ValueError, match="missing"):
    humaneval.load_problems(tmp_path / "bad.jsonl")


@pytest.mark.slow
def test_humaneval_canonical_solutions_pass_and_empty_completions_fail():
  problems = humaneval.load_problems()
  samples = ([{"task_id": p["task_id"], "completion": p["canonical_solution"]} for p in problems]
             + [{"task_id": p["task_id"], "completion": ""} for p in problems])
  result = humaneval.evaluate(samples, k=(1, 2), problems=problems, timeout_s=20)
  assert result["num_problems"] == 164 and result["num_samples"] == 328
  for row in result["problems"]:
    canonical, empty = row["samples"]
    assert canonical["passed"], (row["task_id"], canonical["reason"], canonical["stderr"])
    assert not empty["passed"], row["task_id"]
  assert result["pass@1"] == pytest.approx(0.5) and result["pass@2"] == 1.0
  assert result["statuses"]["passed"] == 164


def test_humaneval_scoring_counts_and_early_exits():
  problems = humaneval.load_problems()[:2]
  right = problems[0]["canonical_solution"]
  samples = [{"task_id": "HumanEval/0", "completion": c} for c in (
      right, "    return False\n", "    import os; os._exit(0)\n", "    exit(0)\n",
      "    while True:\n        pass\n")]
  samples.append({"task_id": "HumanEval/1", "completion": problems[1]["canonical_solution"]})
  # The endless loop ends on the 1 s CPU limit; the wall limit is one no correct program nears
  # on a loaded machine (load stretches wall time, not CPU time).
  result = humaneval.evaluate(samples, k=(1, 5), problems=problems, timeout_s=60, cpu_s=1)
  first, second = result["problems"]
  assert (first["n"], first["correct"], second["n"], second["correct"]) == (5, 1, 1, 1)
  statuses = [s["status"] for s in first["samples"]]
  assert statuses == ["passed", "failed", "failed", "failed", "timeout"]
  assert first["samples"][4]["reason"] == "CPU time limit of 1 s"
  assert "sentinel" in first["samples"][2]["reason"] and "sentinel" in first["samples"][3]["reason"]
  assert first["pass@1"] == pytest.approx(0.2) and first["pass@5"] == 1.0
  assert "pass@5" not in result and result["pass@1"] == pytest.approx((0.2 + 1.0) / 2)
  with pytest.raises(ValueError, match="unknown task_id"):
    humaneval.evaluate([{"task_id": "HumanEval/999", "completion": ""}], problems=problems)


def test_stop_sequences_truncate():
  text = "    return x\n\ndef other():\n    pass\n"
  assert codegen.truncate(text, humaneval.STOP_SEQUENCES) == "    return x\n"
  assert codegen.truncate("    y = 1\nprint(y)", humaneval.STOP_SEQUENCES) == "    y = 1"
  assert codegen.truncate("a\nif b\n#c", humaneval.STOP_SEQUENCES) == "a"
  assert codegen.truncate("no stop", humaneval.STOP_SEQUENCES) == "no stop"


def test_generation_matches_generate_and_is_seeded(tok, model):
  cfg, params = model
  problems = humaneval.load_problems()[:3]
  samples = humaneval.generate_samples(cfg, params, tok, problems=problems, max_new_tokens=12,
                                       batch_size=1)
  assert [s["task_id"] for s in samples] == [p["task_id"] for p in problems]
  for p, s in zip(problems, samples):  # greedy: the same tokens as one direct generate() call
    ids = tok.encode(p["prompt"])[-(cfg.max_seq_len - 12):]  # long prompts keep their end
    new = generate(cfg, params, [ids], max_new_tokens=12, eos_id=tok.eos_id)[0]
    expected = codegen.decode_continuation(tok, ids, new, tok.eos_id)
    assert s["completion"] == codegen.truncate(expected, humaneval.STOP_SEQUENCES)
  kwargs = dict(stop=(), num_samples=2, max_new_tokens=6, temperature=1.0)
  first = codegen.complete(cfg, params, tok, ["def f(", "x ="], seed=1, **kwargs)
  assert first == codegen.complete(cfg, params, tok, ["def f(", "x ="], seed=1, **kwargs)
  assert first != codegen.complete(cfg, params, tok, ["def f(", "x ="], seed=2, **kwargs)
  with pytest.raises(ValueError, match="greedy"):
    codegen.complete(cfg, params, tok, ["x"], stop=(), num_samples=2)
  result = humaneval.evaluate(samples, problems=problems)
  assert result["num_samples"] == 3 and 0.0 <= result["pass@1"] <= 1.0


# ---------------------------------------------------------------------------------------------
# MBPP

MBPP_PROBLEMS = [
    {"task_id": 11, "text": "Write a function to add two numbers.",
     "code": "def add(a, b):\n    return a + b", "test_setup_code": "",
     "test_list": ["assert add(1, 2) == 3", "assert add(-1, 1) == 0", "assert add(0, 0) == 0"],
     "challenge_test_list": ["assert add(10**20, 1) == 10**20 + 1"]},
    {"task_id": 12, "text": "Write a function to return the largest of a list, using heapq.",
     "code": "def largest(xs):\n    return heapq.nlargest(1, xs)[0]",
     "test_setup_code": "import heapq",
     "test_list": ["assert largest([1, 5, 2]) == 5", "assert largest([-3]) == -3",
                   "assert largest([2, 2]) == 2"], "challenge_test_list": []},
    {"task_id": 13, "text": "Write a function to reverse a string.",
     "code": "def rev(s):\n    return s[::-1]", "test_setup_code": "",
     "test_list": ["assert rev('ab') == 'ba'", "assert rev('') == ''", "assert rev('x') == 'x'"],
     "challenge_test_list": ["assert rev('abc') == 'cbb'"]},
    {"task_id": 700, "text": "A training problem.", "code": "x = 1", "test_setup_code": "",
     "test_list": ["assert x == 1"], "challenge_test_list": []},
]


@pytest.fixture(scope="module")
def mbpp_file(tmp_path_factory):
  path = tmp_path_factory.mktemp("mbpp") / "mbpp.jsonl"
  path.write_text("".join(json.dumps(p) + "\n" for p in MBPP_PROBLEMS))
  return path


def test_mbpp_load_prompt_and_splits(mbpp_file, tmp_path):
  problems = mbpp.load_problems(mbpp_file)
  assert [p["task_id"] for p in problems] == [11, 12, 13]
  assert len(mbpp.load_problems(mbpp_file, "all")) == 4
  assert [p["task_id"] for p in mbpp.load_problems(mbpp_file, "train")] == [700]
  with pytest.raises(ValueError, match="split='all'"):
    mbpp.load_problems(mbpp_file, "validation")
  assert mbpp.prompt(problems[0]) == ('"""\nWrite a function to add two numbers.\n'
                                      'assert add(1, 2) == 3\n"""\n')
  sanitized = tmp_path / "sanitized.json"  # a JSON list with `prompt` and `test_imports`
  sanitized.write_text(json.dumps([{
      "task_id": 12, "prompt": MBPP_PROBLEMS[1]["text"], "code": MBPP_PROBLEMS[1]["code"],
      "test_imports": ["import heapq"], "test_list": MBPP_PROBLEMS[1]["test_list"]}]))
  loaded = mbpp.load_problems(sanitized)[0]
  assert loaded["text"] == MBPP_PROBLEMS[1]["text"] and loaded["test_setup_code"] == "import heapq"


def test_mbpp_reference_code_passes_and_wrong_code_fails(mbpp_file):
  problems = mbpp.load_problems(mbpp_file)
  samples = [{"task_id": p["task_id"], "completion": p["code"]} for p in problems]
  samples.append({"task_id": 11, "completion": "def add(a, b):\n    return a - b"})
  result = mbpp.evaluate(samples, problems, k=(1,))
  counts = [(r["task_id"], r["n"], r["correct"]) for r in result["problems"]]
  assert counts == [(11, 2, 1), (12, 1, 1), (13, 1, 1)]  # 12 needs its test_setup_code
  challenged = mbpp.evaluate(samples[:3], problems, include_challenge=True)
  assert [r["correct"] for r in challenged["problems"]] == [1, 1, 0]  # 13's challenge is wrong
  assert "assert rev('abc') == 'cbb'" in mbpp.make_program(True)(problems[2], "", "S")


# ---------------------------------------------------------------------------------------------
# Multiple choice


def test_adapters_on_hand_written_records():
  ex = mc.arc({"question": "Which is a mammal?", "answerKey": "B",
               "choices": {"text": ["trout", "whale", "crow"], "label": ["A", "B", "C"]}})
  assert ex.contexts[0] == "Question: Which is a mammal?\nAnswer:"
  assert ex.choices == (" trout", " whale", " crow") and ex.label == 1
  ex = mc.hellaswag({"activity_label": "Cooking", "ctx_a": "He cuts onions.", "ctx_b": "then he",
                     "endings": ["fries them [title] well.", "sleeps."], "label": "0"})
  assert ex.contexts[0] == "Cooking: He cuts onions. Then he"
  assert ex.choices == (" fries them. well.", " sleeps.") and ex.label == 0
  ex = mc.piqa({"goal": "Open a jar", "sol1": "twist the lid", "sol2": "eat it", "label": 0})
  assert ex.contexts[1] == "Question: Open a jar\nAnswer:" and ex.choices[1] == " eat it"
  ex = mc.winogrande({"sentence": "The trophy did not fit in the case because _ was big.",
                      "option1": "the trophy", "option2": "the case", "answer": "1"})
  assert ex.contexts == ("The trophy did not fit in the case because the trophy",
                         "The trophy did not fit in the case because the case")
  assert ex.choices == (" was big.", " was big.") and ex.label == 0
  ex = mc.boolq({"passage": "Cats are mammals.", "question": "are cats mammals", "answer": True})
  assert ex.contexts[0] == "Cats are mammals.\nQuestion: are cats mammals?\nAnswer:"
  assert ex.choices == (" no", " yes") and ex.label == 1
  ex = mc.siqa({"context": "Sam gave a gift.", "question": "How does Sam feel?", "answerA": "kind",
                "answerB": "sad", "answerC": "angry", "label": "1"})
  assert ex.contexts[0] == "Question: Sam gave a gift. How does Sam feel?\nAnswer:"
  assert ex.choices == (" kind", " sad", " angry") and ex.label == 0
  ex = mc.openbookqa({"question_stem": "The sun is a", "answerKey": "D", "choices": {
      "text": ["moon", "planet", "comet", "star"], "label": ["A", "B", "C", "D"]}})
  assert ex.contexts[0] == "The sun is a" and ex.choices[3] == " star" and ex.label == 3
  ex = mc.mmlu({"question": "2 + 2 = ?", "choices": ["3", "4", "5", "6"], "answer": 1,
                "subject": "elementary_mathematics"})
  assert ex.contexts[0] == "2 + 2 = ?\nA. 3\nB. 4\nC. 5\nD. 6\nAnswer:"
  assert ex.choices == (" A", " B", " C", " D") and ex.label == 1
  assert ex.description.startswith("The following are multiple choice questions (with answers) "
                                   "about elementary mathematics.")
  assert mc.mmlu({"question": "q", "choices": ["a", "b"], "answer": "B"}).label == 1
  ex = mc.generic({"context": ["x", "y"], "choices": [" a", " b"], "label": 1})
  assert ex.contexts == ("x", "y") and ex.label == 1
  with pytest.raises(ValueError, match="out of range"):
    mc.generic({"context": "x", "choices": [" a", " b"], "label": 2})


def test_load_reports_records_that_do_not_fit(tmp_path):
  path = tmp_path / "piqa.jsonl"
  path.write_text(json.dumps({"goal": "g", "sol1": "a"}) + "\n")
  with pytest.raises(ValueError, match="record 0 does not fit the 'piqa' format"):
    mc.load("piqa", path)
  csv_path = tmp_path / "mmlu.csv"
  csv_path.write_text('"1 + 1 = ?",1,2,3,4,B\n')
  assert mc.load("mmlu", csv_path)[0].label == 1


MC_RECORDS = [
    {"context": "Question: is the sky blue?\nAnswer:", "choices": [" yes", " no"], "label": 0},
    {"context": "The cat sat on the", "choices": [" mat", " dog ran", " item"], "label": 0},
    {"context": ["def function_1(x, y):", "def function_2(x, y):"],
     "choices": ["\n    return x", "\n    return x"], "label": 1},
    {"context": "", "choices": ["def", "The"], "label": 0},
    {"context": "Answer: ", "choices": ["yes.", "no."], "label": 1},
]


def test_scores_equal_a_direct_computation(tok, model):
  cfg, params = model
  examples = [mc.generic(r) for r in MC_RECORDS]
  result = mc.evaluate(cfg, params, tok, examples, num_fewshot=2, seed=3, batch_size=2)
  pairs = mc.prompts(examples, num_fewshot=2, seed=3)
  for row, ex_pairs in zip(result["examples"], pairs):
    for score, (context, continuation) in zip(row["logprobs"], ex_pairs):
      ctx, cont = mc.encode_pair(tok, context, continuation)
      assert score == pytest.approx(direct_logprob(cfg, params, ctx + cont, len(ctx)), abs=2e-4)
  for row, ex in zip(result["examples"], examples):
    s = np.array(row["logprobs"])
    assert row["pred"] == int(np.argmax(s))
    assert row["pred_norm"] == int(np.argmax(s / np.array([len(c) for c in ex.choices])))
  assert result["acc"] == np.mean([r["pred"] == r["label"] for r in result["examples"]])


def test_fewshot_prompts_are_deterministic_and_exclude_the_question():
  examples = [mc.generic({"context": f"Q{i}:", "choices": [f" a{i}", f" b{i}"], "label": i % 2})
              for i in range(6)]
  first = mc.prompts(examples, num_fewshot=3, seed=0)
  assert first == mc.prompts(examples, num_fewshot=3, seed=0)
  assert first != mc.prompts(examples, num_fewshot=3, seed=1)
  for i, pairs in enumerate(first):
    context = pairs[0][0]
    assert context.endswith(f"Q{i}:") and context.count("\n\n") == 3
    assert f"Q{i}:" not in context[:-len(f"Q{i}:")]   # never its own shot
    shots = context.split("\n\n")[:3]
    for shot in shots:  # each shot is its gold context + gold continuation
      j = int(shot.split(":")[0][1:])
      assert shot == f"Q{j}:" + (f" a{j}" if j % 2 == 0 else f" b{j}")
  pool = [mc.generic({"context": "P:", "choices": [" x", " y"], "label": 1})]
  assert mc.prompts(examples[:1], num_fewshot=1, fewshot_pool=pool)[0][0][0] == "P: y\n\nQ0:"
  with pytest.raises(ValueError, match="few-shot pool"):
    mc.prompts(examples, num_fewshot=6)


def test_a_model_built_to_prefer_a_token_picks_it(tok, model):
  cfg, params = model
  yes = tok.sp.piece_to_id("yes")  # a user-defined piece: " yes" is ["▁", "yes"]
  assert yes in tok.encode(" yes")
  # A head that ignores the input and puts almost all mass on "yes": every other token costs
  # about 20 nats, so the choice with the fewest other tokens wins.
  params = jax.tree.map(lambda x: x, params)
  params["lm_head"]["kernel"] = jnp.zeros_like(params["lm_head"]["kernel"])
  params["lm_head"]["bias"] = jnp.zeros_like(params["lm_head"]["bias"]).at[yes].set(20.0)
  examples = [mc.generic({"context": "Question: is the sky blue?\nAnswer:",
                          "choices": [" no", " maybe", " yes"], "label": 2}),
              mc.generic({"context": "The cat sat on the", "choices": [" yes", " mat"],
                          "label": 0}),
              mc.boolq({"passage": "The sky is blue.", "question": "is the sky blue",
                        "answer": True})]
  result = mc.evaluate(cfg, params, tok, examples)
  assert result["acc"] == 1.0 and [r["pred"] for r in result["examples"]] == [2, 0, 1]


# ---------------------------------------------------------------------------------------------
# Perplexity

DOCS = ["The cat sat on the mat.", "def function_3(x, y):\n    return x * 3 + y\n",
        "Question: is the sky blue? Answer: yes.", "é ü — unicode bytes count"]


def test_perplexity_matches_a_direct_computation(tok, model):
  cfg, params = model
  result = perplexity.evaluate_texts(cfg, params, tok, DOCS, seq_len=128, batch_size=2)
  nats, tokens = 0.0, 0
  for doc in DOCS:  # every document fits one row: each is scored with its whole context
    ids = tok.encode(doc) + [tok.eos_id]
    nats -= direct_logprob(cfg, params, ids, 1)
    tokens += len(ids) - 1
  assert result["tokens"] == tokens and result["nats"] == pytest.approx(nats, rel=1e-5)
  n_bytes = sum(len(d.encode("utf-8")) for d in DOCS)
  assert result["bytes"] == n_bytes > sum(len(d) for d in DOCS)
  assert result["bits_per_byte"] == pytest.approx(nats / (math.log(2) * n_bytes), rel=1e-5)
  assert result["perplexity"] == pytest.approx(math.exp(nats / tokens), rel=1e-5)


def test_perplexity_on_a_pipeline_dataset(tok, model, tmp_path):
  cfg, params = model
  source = tmp_path / "notes"
  source.mkdir()
  for i in range(6):
    (source / f"note_{i}.txt").write_text(f"Note {i}: the cat sat on the mat {i} times.\n")
  kwargs = {"source_dir": str(source), "validation_fraction": 0.4}
  result = perplexity.evaluate_dataset(cfg, params, tok, "text_corpus", tmp_path / "tfds",
                                       builder_kwargs=kwargs, seq_len=64)
  texts = perplexity.dataset_texts("text_corpus", tmp_path / "tfds", builder_kwargs=kwargs)
  assert result["documents"] == len(texts) >= 1
  again = perplexity.evaluate_texts(cfg, params, tok, texts, seq_len=64)
  assert result["nats"] == pytest.approx(again["nats"]) and result["split"] == "validation"


# ---------------------------------------------------------------------------------------------
# Task strings, the CLI and the periodic hook


def test_task_strings():
  assert tasks.parse("humaneval") == tasks.Task("humaneval", "humaneval")
  assert tasks.parse("mbpp:/d/mbpp.jsonl").path == "/d/mbpp.jsonl"
  task = tasks.parse("mc:arc_easy:/d/arc.jsonl")
  assert (task.name, task.benchmark, task.path) == ("mc_arc_easy", "arc_easy", "/d/arc.jsonl")
  assert tasks.parse("ppl:text_corpus").split == "validation"
  assert tasks.parse("ppl:code_corpus:train").name == "ppl_code_corpus_train"
  for bad in ("mbpp", "mc:arc_easy", "ppl", "gsm8k"):
    with pytest.raises(ValueError, match="bad task"):
      tasks.parse(bad)


@pytest.fixture(scope="module")
def mc_file(tmp_path_factory):
  path = tmp_path_factory.mktemp("mc") / "generic.jsonl"
  path.write_text("".join(json.dumps(r) + "\n" for r in MC_RECORDS))
  return path


def test_cli_on_a_hf_folder(tok, model, mbpp_file, mc_file, tmp_path, capsys):
  from phi_jax.convert import hf
  cfg, params = model
  hf.save(cfg, params, tmp_path / "model")
  (tmp_path / "model" / "tokenizer.model").write_bytes(pathlib.Path(tok.path).read_bytes())
  out = tmp_path / "out"
  notes = tmp_path / "notes"
  notes.mkdir()
  for i in range(4):
    (notes / f"n{i}.txt").write_text(f"note {i}: the cat sat on the mat.\n")
  kwargs = json.dumps({"source_dir": str(notes), "validation_fraction": 0.5})
  run_eval_cli([f"--hf_dir={tmp_path / 'model'}", "--task=humaneval", f"--task=mbpp:{mbpp_file}",
            f"--task=mc:generic:{mc_file}", "--task=ppl:text_corpus", "--limit=2",
            "--max_new_tokens=8", f"--out={out}", f"--data_dir={tmp_path / 'tfds'}",
            f"--builder_kwargs={kwargs}", "--seq_len=64"])
  report = json.loads((out / "results.json").read_text())
  names = [r["task"] for r in report["results"]]
  assert names == ["humaneval", "mbpp", "mc_generic", "ppl_text_corpus"]
  assert report["results"][3]["bits_per_byte"] > 0 and "details" not in report["results"][3]
  assert report["meta"]["hf_dir"] == str(tmp_path / "model") and "sandbox" in report["meta"]
  assert report["results"][0]["num_problems"] == 2 and "pass@1" in report["results"][0]
  assert report["results"][2]["num_examples"] == 2 and "acc_norm" in report["results"][2]
  rows = [json.loads(l) for l in (out / "humaneval.jsonl").read_text().splitlines()]
  assert [r["task_id"] for r in rows] == ["HumanEval/0", "HumanEval/1"]
  table = (out / "results.md").read_text()
  assert "| mc_generic | acc |" in table and "| humaneval | pass@1 |" in table
  assert "Results:" in capsys.readouterr().out


def test_cli_on_a_training_workdir(tok, model, mc_file, tmp_path):
  """A hand-made run directory (model_config.json, an orbax checkpoint, tokenizer/sp.model), run
  as `python -m phi_jax.eval`."""
  from phi_jax.convert import checkpoint_io
  from phi_jax.train import checkpoint
  cfg, params = model
  workdir = tmp_path / "run"
  (workdir / "tokenizer").mkdir(parents=True)
  (workdir / "tokenizer" / "sp.model").write_bytes(pathlib.Path(tok.path).read_bytes())
  (workdir / "model_config.json").write_text(checkpoint_io.config_to_json(cfg))
  ckpt = checkpoint.Checkpointer(workdir / "checkpoints", async_save=False)
  ckpt.save(7, {"params": params, "step": 7})
  ckpt.close()
  run = subprocess.run([sys.executable, "-m", "phi_jax.eval", f"--workdir={workdir}",
                        f"--task=mc:generic:{mc_file}"], capture_output=True, text=True,
                       cwd=REPO, timeout=300)
  assert run.returncode == 0, run.stderr
  report = json.loads((workdir / "eval" / "step_7" / "results.json").read_text())
  assert report["meta"]["step"] == 7 and report["results"][0]["num_examples"] == len(MC_RECORDS)
  direct = mc.evaluate(cfg, params, tok, [mc.generic(r) for r in MC_RECORDS])
  assert report["results"][0]["acc"] == direct["acc"]
  bad = subprocess.run([sys.executable, "-m", "phi_jax.eval", f"--workdir={workdir}",
                        "--task=mc:nope"], capture_output=True, text=True, cwd=REPO, timeout=300)
  assert bad.returncode == 2 and "bad task" in bad.stderr


def test_periodic_eval(tok, model, mc_file, mbpp_file, tmp_path):
  import ml_collections
  cfg, params = model
  config = ml_collections.ConfigDict(dict(every=2, tasks=[f"mc:generic:{mc_file}",
                                                          f"mbpp:{mbpp_file}"],
                                          limit=3, max_new_tokens=8, out_dir=str(tmp_path)))
  hook = periodic.make_periodic_eval(config)
  assert hook(cfg, params, tok, 1) == {}
  metrics = hook(cfg, params, tok, 2)
  assert metrics["eval/mc_generic/num_examples"] == 3.0
  assert 0.0 <= metrics["eval/mc_generic/acc"] <= 1.0 and "eval/mbpp/pass@1" in metrics
  assert all(isinstance(v, float) for v in metrics.values())
  assert (tmp_path / "step_2" / "results.json").exists()
  with pytest.raises(ValueError, match="bad task"):
    periodic.make_periodic_eval(ml_collections.ConfigDict(dict(every=1, tasks=["nope"])))
