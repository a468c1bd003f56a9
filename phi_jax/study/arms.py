"""A study: the same model and token budget trained on several datasets ("arms"), then compared.

    python -m phi_jax.main --config=configs/quickstart.py --workdir=DIR   # config.arms is set

A config with `arms` describes the shared run (model, optimizer, steps, data.seq_len /
batch_size / tokenizer_vocab_size) once; each arm overrides `data` (which dataset) and may ask
for data made first (`mixture`: phi_jax's textbook-quality mixture, `curation.mixture`). The
study then, resuming whatever is done:

  1. makes each arm's data: `python -m phi_jax.curation`'s pipeline in DIR/data/<arm>/
     (`mixture.pipeline_config`: generate + verify -> decontaminate -> TFDS dataset)
  2. trains ONE SentencePiece tokenizer, DIR/tokenizer/sp.model, on equal shares of every arm's
     training text (so both arms count the same tokens the same way)
  3. trains each arm as an ordinary run in DIR/<arm>/ (`train.loop.train`: loadable by
     `load_model`, `python -m phi_jax.eval --model=DIR/<arm>`, resumable on its own)
  4. measures each arm (`study.measure`) -> DIR/<arm>/study_eval.json
  5. writes DIR/report.md, DIR/loss.png and DIR/results.json (`study.report`)

DIR/study_config.json records the study's config; a rerun whose config differs in anything
but the measurement settings (`study.*`) and the run's RESUMABLE keys is refused before
anything is written.
"""

from __future__ import annotations

import copy
import json
import os
import pathlib
import re
import sys
import time
from typing import Any, Callable

import ml_collections

from phi_jax import cpus
from phi_jax.curation.stages import write_json
from phi_jax.train import config_base

STUDY_CONFIG = "study_config.json"
EVAL_FILE = "study_eval.json"
ARM_TIMINGS = "arm_timings.json"  # seconds an arm's own process spent: {"train": s, "measure": s}
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
MIXTURE_FIELDS = ("n_exercises", "n_textbooks", "n_drills", "seed")


class ArmFailedError(RuntimeError):
  """An arm trained in its own process (`study.parallel` > 1) exited with an error."""


def check(config: ml_collections.ConfigDict) -> list[str]:
  """The arm names, after checking each arm's fields; ValueError with what is wrong."""
  names = list(config.arms.keys())
  if len(names) < 2:
    raise ValueError(f"a study needs at least two arms to compare, got {names}")
  for name in names:
    if not _NAME.match(name):
      raise ValueError(f"arm name {name!r}: use lower-case letters, digits and '_' (it names "
                       "the arm's folder)")
    arm = config.arms[name]
    unknown = sorted(set(arm.keys()) - {"data", "mixture"})
    if unknown:
      raise ValueError(f"arms.{name} has unknown field(s) {unknown}: an arm sets 'data' "
                       "(overrides of config.data) and optionally 'mixture'")
    for key in arm.get("data", {}).keys():
      if key not in config.data:
        raise ValueError(f"arms.{name}.data.{key}: config.data has no field {key!r}")
    if "mixture" in arm:
      extra = sorted(set(arm.mixture.keys()) - set(MIXTURE_FIELDS))
      if extra:
        raise ValueError(f"arms.{name}.mixture has unknown field(s) {extra}; known: "
                         f"{', '.join(MIXTURE_FIELDS)}")
  return names


def check_resume(config: ml_collections.ConfigDict, workdir: pathlib.Path) -> None:
  """Refuses a rerun in `workdir` whose config defines a different study."""
  path = workdir / STUDY_CONFIG
  if not path.exists():
    return
  conflicts = config_base.resume_conflicts(json.loads(path.read_text()), config)
  if conflicts:
    lines = config_base.describe_conflicts(conflicts, str(workdir))
    raise ValueError(f"{workdir} holds a study with a different config:\n{lines}\nUse a new "
                     "workdir, or rerun with the original config")


def arm_config(config: ml_collections.ConfigDict, name: str, tokenizer: str,
               data: dict[str, Any]) -> ml_collections.ConfigDict:
  """The ordinary training config of arm `name`: the shared config, no arms, the arm's data."""
  c = copy.deepcopy(config)
  with c.unlocked():
    c.arms = ml_collections.ConfigDict()
  c.data.update(dict(config.arms[name].get("data", {})))
  c.data.update(data)
  c.data.tokenizer = tokenizer
  c.report = False  # the study writes one report for all arms
  return c


def _mixture_data(config: ml_collections.ConfigDict, name: str, workdir: pathlib.Path,
                  log: Callable[[str], None]) -> dict[str, Any]:
  from phi_jax.curation import mixture, stages  # pylint: disable=g-import-not-at-top
  m = config.arms[name].mixture
  pipeline = mixture.pipeline_config(m.n_exercises, m.n_textbooks, m.get("n_drills", 0),
                                     seed=m.seed,
                                     benchmarks=tuple(config.study.decontam))
  summary = stages.run(pipeline, workdir / "data" / name, progress=False, log=log)
  train = summary["train_config"]
  return {k.split(".", 1)[1]: v for k, v in train.items()}


def _train_texts(config: ml_collections.ConfigDict, name: str, data: dict[str, Any],
                 budget: int) -> list[str]:
  """Up to `budget` bytes of arm `name`'s training text, in source order."""
  from phi_jax.data import builders  # pylint: disable=g-import-not-at-top
  d = dict(config.data)
  d.update(dict(config.arms[name].get("data", {})))
  d.update(data)
  kwargs = {k: d[k] for k in ("source_dir", "max_files", "validation_fraction", "max_bytes")
            if d.get(k) not in (None, "", 0)}
  source = builders.build(d["dataset"], d["data_dir"], **kwargs).as_data_source("train")
  return builders.leading_texts(source, budget)


def _tokenizer(config: ml_collections.ConfigDict, names: list[str], data: dict[str, dict],
               workdir: pathlib.Path, log: Callable[[str], None]) -> pathlib.Path:
  from phi_jax.data import tokenizer as tokenizers  # pylint: disable=g-import-not-at-top
  if config.data.tokenizer:
    return pathlib.Path(config.data.tokenizer)
  model = workdir / "tokenizer" / "sp.model"
  if not model.exists():
    share = config.data.tokenizer_train_bytes // len(names)
    texts = [t for n in names for t in _train_texts(config, n, data[n], share)]
    log(f"Training one SentencePiece tokenizer ({config.data.tokenizer_vocab_size} tokens) on "
        f"{sum(len(t) for t in texts) / 1e6:.1f} MB: equal shares of {', '.join(names)}")
    model.parent.mkdir(parents=True, exist_ok=True)
    tokenizers.train_sentencepiece(texts, workdir / "tokenizer" / "sp",
                                   vocab_size=config.data.tokenizer_vocab_size)
  return model


def _study_json(study: ml_collections.ConfigDict) -> dict[str, Any]:
  return json.loads(json.dumps(study.to_dict()))  # as stored (tuples become lists)


def measured(arm_dir: pathlib.Path, study: ml_collections.ConfigDict) -> dict[str, Any] | None:
  """The arm's DIR/<arm>/study_eval.json if it was measured with these `study` settings at the
  step its run ended, else None."""
  path = arm_dir / EVAL_FILE
  if not path.exists():
    return None
  cached = json.loads(path.read_text())
  trained = json.loads((arm_dir / "summary.json").read_text()).get("step")
  if cached.get("study") == _study_json(study) and cached.get("step") == trained:
    return cached
  return None


def _trained_and_measured(arm_dir: pathlib.Path, config: ml_collections.ConfigDict) -> bool:
  """The arm's run reached total_steps unstopped and was measured with config.study there."""
  path = arm_dir / "summary.json"
  summary = json.loads(path.read_text()) if path.exists() else {}
  return (summary.get("step") == config.total_steps and summary.get("stopped_by") is None
          and measured(arm_dir, config.study) is not None)


def measure_arm(arm_dir: pathlib.Path, study: ml_collections.ConfigDict) -> dict[str, Any]:
  """`study.measure` of one trained arm, written to DIR/<arm>/study_eval.json (temp + rename);
  what was measured before with the same settings at the same step is returned as is."""
  from phi_jax.study import measure  # pylint: disable=g-import-not-at-top
  cached = measured(arm_dir, study)
  if cached is not None:
    return cached
  result = measure.measure(arm_dir, study)
  result["study"] = _study_json(study)
  write_json(arm_dir / EVAL_FILE, result)
  return result


def train_concurrently(configs: dict[str, ml_collections.ConfigDict], workdir: pathlib.Path,
                       parallel: int, timings: dict[str, float],
                       log: Callable[[str], None] = print, *,
                       study: ml_collections.ConfigDict | None = None) -> None:
  """Trains each arm (`configs`: name -> its training config) in its own process
  (`python -m phi_jax.study.arm_worker`), up to `parallel` at a time (`cpus.run_pool`: each
  pinned to a CPU of its own when there are `parallel`); each arm's log is DIR/<arm>/train.log.
  With `study` (the study's `config.study`), each process then also measures its arm
  (`measure_arm`, on the same pinned CPU). Seconds go into `timings` as train_<arm> (and
  measure_<arm>). Ctrl-C or SIGTERM stop every arm at its next step (each saves a checkpoint; a
  rerun resumes). ArmFailedError names the arms that failed."""
  jobs = []
  for name, c in configs.items():
    path = workdir / name / "arm_config.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, config_base.as_json(c))
    command = [sys.executable, "-m", "phi_jax.study.arm_worker", str(path), str(workdir / name)]
    if study is not None:
      study_path = workdir / name / "arm_study.json"
      write_json(study_path, _study_json(study))
      command.append(f"--study={study_path}")
    (workdir / name / ARM_TIMINGS).unlink(missing_ok=True)
    jobs.append((name, command, workdir / name / "train.log"))
  failed = []

  def start(name: str, cpu: int | None) -> None:
    c = configs[name]
    log(f"== {name}: training ({c.total_steps} steps x {c.data.batch_size} x "
        f"{c.data.seq_len} tokens) in its own process"
        + (f" on CPU {cpu}" if cpu is not None else "")
        + f": log in {workdir / name / 'train.log'}")

  def finish(name: str, returncode: int, seconds: float) -> None:
    spent = workdir / name / ARM_TIMINGS  # what the worker did this time, if it got that far
    if spent.exists():
      timings.update({f"{k}_{name}": v for k, v in json.loads(spent.read_text()).items()})
    else:
      timings[f"train_{name}"] = round(seconds, 1)
    if returncode:
      failed.append(name)
      log(f"== {name}: training failed (exit {returncode}); see {workdir / name / 'train.log'}")
    else:
      log(f"== {name}: trained in {seconds:.0f} s")

  def stop(running: int) -> None:
    log(f"stopping {running} arm(s) at their next step (each saves a checkpoint); rerun the "
        "same command to continue")

  cpus.run_pool(jobs, parallel, on_start=start, on_finish=finish, on_stop=stop)
  if failed:
    raise ArmFailedError(f"arm(s) {', '.join(failed)} failed to train: see train.log in "
                         + ", ".join(str(workdir / n) for n in failed))


def run(config: ml_collections.ConfigDict, workdir: str | os.PathLike, *,
        log: Callable[[str], None] = print) -> dict[str, Any]:
  """Runs (or resumes) the study `config` in `workdir` (see the module doc); returns the
  results (also DIR/results.json)."""
  from phi_jax.study import report  # pylint: disable=g-import-not-at-top
  from phi_jax.train import loop  # pylint: disable=g-import-not-at-top
  names = check(config)
  workdir = pathlib.Path(workdir).absolute()
  check_resume(config, workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  write_json(workdir / STUDY_CONFIG, json.loads(config.to_json_best_effort()))
  timings: dict[str, float] = {}

  def timed(key: str, fn: Callable[[], Any]) -> Any:
    start = time.time()
    value = fn()
    timings[key] = round(time.time() - start, 1)
    return value

  data: dict[str, dict[str, Any]] = {}
  for name in names:
    data[name] = {"data_dir": config.data.data_dir or str(workdir / "data" / "tfds")}
    if "mixture" in config.arms[name]:
      log(f"== {name}: making its data (the textbook-quality mixture)")
      data[name].update(timed(f"data_{name}", lambda n=name: _mixture_data(config, n, workdir,
                                                                          log)))
  tokenizer = timed("tokenizer", lambda: _tokenizer(config, names, data, workdir, log))
  configs = {n: arm_config(config, n, str(tokenizer), data[n]) for n in names}
  if config.study.parallel > 1:
    todo = {n: c for n, c in configs.items() if not _trained_and_measured(workdir / n, c)}
    if todo:
      timed("train_concurrent", lambda: train_concurrently(todo, workdir, config.study.parallel,
                                                           timings, log, study=config.study))
  else:
    for name in names:
      log(f"== {name}: training ({config.total_steps} steps x {config.data.batch_size} x "
          f"{config.data.seq_len} tokens)")
      timed(f"train_{name}", lambda n=name: loop.train(configs[n], workdir / n))
  results: dict[str, Any] = {}
  for name in names:
    results[name] = measured(workdir / name, config.study)  # by its own process, or before
    if results[name] is None:
      log(f"== {name}: measuring pass@1")
      results[name] = timed(f"measure_{name}", lambda n=name: measure_arm(workdir / n,
                                                                          config.study))
  out = report.write(config, workdir, names, results, timings)
  log(f"Report: {out['report']}")
  return out
