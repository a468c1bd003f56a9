"""A study (the README's main job): two arms, one tokenizer, the same tokens, one report."""

import json
import pathlib

import pytest

from phi_jax.config_args import load_config
from phi_jax.convert.load import load_model
from phi_jax.study import arms
from phi_jax.train import loop

REPO = pathlib.Path(__file__).resolve().parent.parent
QUICKSTART = str(REPO / "configs" / "quickstart.py")


def _smoke(**overrides):
  return load_config(QUICKSTART + ":smoke", {"arms.raw.data.max_files": 12, **overrides})


def test_arm_checks_and_configs():
  config = _smoke()
  assert arms.check(config) == ["raw", "textbook"]
  c = arms.arm_config(config, "textbook", "/tok/sp.model", {"source_dir": "/d"})
  assert not c.arms and c.data.dataset == "synthetic_exercises" and c.data.source_dir == "/d"
  assert c.data.format == "prompt_completion"
  assert c.data.tokenizer == "/tok/sp.model" and c.model == config.model
  assert c.total_steps == config.total_steps and c.optimizer == config.optimizer
  with pytest.raises(ValueError, match="is a study of arms"):
    loop.train(config, "/nonexistent/never/written")
  bad = _smoke()
  with bad.arms.unlocked():
    bad.arms.raw.data.no_such_field = 1
  with pytest.raises(ValueError, match=r"arms.raw.data.no_such_field: config.data has no field"):
    arms.check(bad)
  one = _smoke()
  with one.unlocked():
    del one.arms["raw"]
  with pytest.raises(ValueError, match="at least two arms"):
    arms.check(one)


def test_loss_plot_leaves_pyplot_alone(tmp_path):
  """A study run from a notebook must not switch the notebook's matplotlib backend."""
  matplotlib = pytest.importorskip("matplotlib")
  from phi_jax.study import report
  before = matplotlib.get_backend()
  matplotlib.use("svg")  # a backend the old matplotlib.use("Agg") in report.plot would switch
  try:
    report.plot({"a": [(1, 3.0), (2, 2.0)], "b": [(1, 4.0), (2, 1.0)]}, 16, 0.5,
                tmp_path / "loss.png")
    assert matplotlib.get_backend() == "svg"
  finally:
    matplotlib.use(before)
  assert (tmp_path / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
  assert not list(tmp_path.glob("*.tmp*"))
  assert report.smooth([2.0, 4.0], 0.5) == [2.0, pytest.approx((0.5 * 1 + 2.0) / 0.75)]


@pytest.mark.slow
def test_quickstart_smoke_study_end_to_end(tmp_path):
  workdir = tmp_path / "study"
  config = _smoke()
  out = arms.run(config, workdir, log=lambda _: None)
  report = (workdir / "report.md").read_text()
  for needle in ("| | raw | textbook |", "unseen variants", "whole held-out families",
                 "hand-written", "HumanEval", "loss.png", "**raw**", "**textbook**"):
    assert needle in report, needle
  assert (workdir / "loss.png").stat().st_size > 0
  results = json.loads((workdir / "results.json").read_text())
  assert results["arms"] == ["raw", "textbook"] == out["arms"]
  for arm in ("raw", "textbook"):  # the logged train losses, to redraw the plot from the file
    steps = [s for s, _ in results["curves"][arm]]
    assert steps == sorted(steps) and steps[-1] == config.total_steps
  for arm in ("raw", "textbook"):
    sets = results["results"][arm]["sets"]
    assert set(sets) == {"validation", "test", "handwritten", "humaneval"}
    assert sets["validation"]["n"] == config.study.n_validation
    lo, hi = sets["validation"]["ci95"]
    assert 0.0 <= lo <= sets["validation"]["pass@1"] <= hi <= 1.0
    model = load_model(workdir / arm)  # an ordinary run directory
    assert model.tokenizer is not None and model.step == config.total_steps
    run_config = json.loads((workdir / arm / "config.json").read_text())
    assert run_config["data"]["tokenizer"] == str(workdir / "tokenizer" / "sp.model")
  # the same model and token budget, one tokenizer: only the data differs
  a, b = (json.loads((workdir / arm / "config.json").read_text()) for arm in ("raw", "textbook"))
  assert a["model"] == b["model"] and a["total_steps"] == b["total_steps"]
  assert a["data"]["dataset"] == "code_corpus" and b["data"]["dataset"] == "synthetic_exercises"
  # the mixture was decontaminated and has its counts
  decontam = json.loads((workdir / "data" / "textbook" / "decontam" / "stage.json").read_text())
  assert decontam["info"]["benchmarks"] == ["humaneval", "handwritten"]
  # a rerun resumes: nothing is trained or measured again
  before = (workdir / "raw" / "study_eval.json").stat().st_mtime_ns
  again = arms.run(config, workdir, log=lambda _: None)
  assert (workdir / "raw" / "study_eval.json").stat().st_mtime_ns == before
  assert not any(k.startswith(("train_", "measure_", "data_")) and v > 5
                 for k, v in again["timings"].items())
  # a rerun with a different study is refused before anything is written
  with pytest.raises(ValueError, match="different config:\n  model.d_model"):
    arms.run(_smoke(**{"model.d_model": 48}), workdir, log=lambda _: None)


def _fake_study(directory: pathlib.Path, pass_rates: dict[str, float], n: int = 10,
                steps: int = 5) -> None:
  """A finished study's files as study.report / train.loop write them (no training)."""
  results = {}
  for arm, rate in pass_rates.items():
    (directory / arm).mkdir(parents=True)
    (directory / arm / "summary.json").write_text(json.dumps(
        {"step": steps, "stopped_by": None, "eval_loss": 1.0 + rate, "final_loss": 0.5}))
    passed = round(rate * n)
    results[arm] = {"num_params": 1000, "sets": {"validation": {
        "pass@1": passed / n, "passed": passed, "n": n, "ci95": [0.0, 1.0], "parse_rate": 0.9}}}
  (directory / "results.json").write_text(json.dumps({
      "arms": list(pass_rates), "results": results, "timings": {"train_raw": 1.0},
      "tokens_per_arm": 640, "summaries": {a: json.loads((directory / a / "summary.json")
                                                       .read_text()) for a in pass_rates}}))


def test_sweep_of_studies_and_the_seed_report(tmp_path):
  import importlib.util
  from phi_jax import sweep_table
  from phi_jax.evals.functions import seed_interval
  for seed, rates in enumerate(({"raw": 0.0, "textbook": 0.3}, {"raw": 0.1, "textbook": 0.5})):
    _fake_study(tmp_path / f"seed={seed}", rates)
  assert sweep_table.is_finished(tmp_path / "seed=0", 5)
  assert not sweep_table.is_finished(tmp_path / "seed=0", 6)
  (tmp_path / "seed=1" / "textbook" / "summary.json").write_text(json.dumps({"step": 3}))
  assert not sweep_table.is_finished(tmp_path / "seed=1", 5)  # one arm is not done: rerun it
  run = sweep_table.Run({"seed": 0}, "seed=0", tmp_path / "seed=0", 5)
  row = sweep_table.result_row(run)
  assert row["study"] == "raw: validation 0.0%; textbook: validation 30.0%" and row["step"] == 5

  spec = importlib.util.spec_from_file_location("_tinycoder_report",
                                                REPO / "experiments" / "tinycoder" / "report.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  assert module.main(["--sweep", str(tmp_path), "--out", str(tmp_path / "out"),
                      "--copy_seed", "1"]) == 0
  agg = json.loads((tmp_path / "out" / "seeds.json").read_text())
  text = agg["sets"]["validation"]["textbook"]
  assert agg["seeds"] == [0, 1] and text["per_seed"] == [0.3, 0.5]
  assert text["mean"] == pytest.approx(0.4) and text["passed"] == 8 and text["n"] == 20
  lo, hi = text["seed_ci95"]  # t(0.975, 1) = 12.706; sd 0.1414; half = 12.706 * 0.1
  assert (lo, hi) == pytest.approx((0.4 - 1.2706, 0.4 + 1.2706), abs=1e-3)
  assert seed_interval([0.2]) == (0.2, 0.2, 0.2)
  mean, lo, hi = seed_interval([0.0, 0.0, 0.03], bounds=(0.0, 1.0))  # t-interval reaches < 0
  assert mean == pytest.approx(0.01) and lo == 0.0 and hi == pytest.approx(0.01 + 0.0430, abs=1e-3)
  assert seed_interval([0.0, 0.0, 0.03])[1] < 0
  assert json.loads((tmp_path / "out" / "results.json").read_text())["results"]["raw"][
      "sets"]["validation"]["passed"] == 1
  assert "| held-out exercises: unseen variants" in (tmp_path / "out" / "seeds.md").read_text()
  # concurrent arms: train_concurrent spans the arms' own train_ / measure_ times
  assert module.study_seconds({"data_textbook": 30.0, "tokenizer": 2.0, "train_concurrent": 500.0,
                               "train_raw": 400.0, "measure_raw": 60.0}) == 532.0
  assert module.study_seconds({"data_textbook": 30.0, "train_raw": 400.0,
                               "measure_raw": 60.0}) == 490.0
