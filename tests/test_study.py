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
