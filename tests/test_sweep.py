"""phi_jax.sweep as the scaling experiments use it: grids over sizes and budgets, tokens as the
budget, '{workdir}' in overrides, fitted columns in the table, failed runs reported and rerun."""

import csv
import json
import pathlib
import sys

import numpy as np
import pytest

from phi_jax import sweep, sweep_table
from phi_jax.study import scaling

CONFIGS = pathlib.Path(__file__).resolve().parents[1] / "configs"


def test_grid_is_the_product_of_named_and_plain_axes():
  runs = sweep.grid(size={"s": {"model.d_model": 64}, "l": {"model.d_model": 128,
                                                           "model.num_layers": 4}},
                    tokens=(1000, 2000), seed=(0,))
  assert len(runs) == 4
  assert [r[sweep.TAGS] for r in runs] == [
      {"size": "s", "tokens": 1000, "seed": 0}, {"size": "s", "tokens": 2000, "seed": 0},
      {"size": "l", "tokens": 1000, "seed": 0}, {"size": "l", "tokens": 2000, "seed": 0}]
  assert runs[3] == {"model.d_model": 128, "model.num_layers": 4, "tokens": 2000, "seed": 0,
                     sweep.TAGS: {"size": "l", "tokens": 2000, "seed": 0}}
  assert sweep.slugs(runs) == ["size=s,tokens=1000,seed=0", "size=s,tokens=2000,seed=0",
                               "size=l,tokens=1000,seed=0", "size=l,tokens=2000,seed=0"]
  with pytest.raises(ValueError, match="grid axis 'seed'"):
    sweep.grid(seed=())


def test_scaling_sweep_plans_sizes_budgets_mixtures_and_the_holdout(tmp_path):
  runs = sweep.plan_sweep(str(CONFIGS / "phi3_scaling.py"), tmp_path)
  fitted = [r for r in runs if not r.tags.get("holdout")]
  held = [r for r in runs if r.tags.get("holdout")]
  assert len(fitted) == 2 * 5 * 3 and len(held) == 2  # 2 mixtures x 5 sizes x 3 budgets
  assert {r.tags["mixture"] for r in runs} == {"raw", "textbook"}
  for run in runs:  # tokens -> total_steps = ceil(tokens / (8 x 128))
    assert run.total_steps == -(-run.tags["tokens"] // 1024) == run.config.total_steps
    assert run.config.optimizer.schedule == "cosine" and run.config.eval_every_fraction == 1.0
    assert run.config.optimizer.decay_steps == 0  # decayed to the end of its own budget
    assert run.config.data.tokenizer == str(tmp_path / "tokenizer" / "sp.model")
    assert "tokens" not in run.config and f"--config.total_steps={run.total_steps}" in run.command
  textbook = [r for r in runs if r.tags["mixture"] == "textbook"]
  assert all(r.config.data.source_dir == str(tmp_path / "mixture" / "dataset") for r in textbook)
  assert all(r.config.data.dataset == "synthetic_exercises" for r in textbook)
  sizes = {r.tags["size"]: sweep_table.run_size(r)["params"] for r in runs}
  assert sizes["w32"] < sizes["w48"] < sizes["w64"] < sizes["w96"] < sizes["w128"]
  assert sizes["w192"] > 2 * sizes["w128"]  # the held-out run is beyond the fitted range
  assert {r.config.model.num_layers for r in runs} == {4}  # the default ladder: width only
  assert held[0].tags["mixture"] == "textbook"  # the one that must finish first
  with pytest.raises(ValueError, match="less than one step"):
    sweep.plan_sweep(str(CONFIGS / "phi3_scaling.py"), tmp_path, runs=[{"tokens": 100}])
  assert sweep.plan_sweep(str(CONFIGS / "phi3_scaling.py"), tmp_path,
                          runs=[{"tokens": 1025}])[0].total_steps == 2  # rounded up


def test_scaling_sweep_mixed_ladder_and_the_rate_rule(tmp_path):
  spec = str(CONFIGS / "phi3_scaling.py")
  runs = sweep.plan_sweep(spec + ":ladder=mixed", tmp_path)
  held = [r for r in runs if r.tags.get("holdout")]
  assert len(runs) == 32 and len(held) == 2
  assert {r.config.model.num_layers for r in runs} == {2, 4, 5}  # width and depth together
  sizes = {r.tags["size"]: sweep_table.run_size(r)["params"] for r in runs}
  assert sizes["xs"] < sizes["s"] < sizes["m"] < sizes["l"] < sizes["xl"] < sizes["xxl"]
  # the rule's rate falls with N, and the shapes both ladders share train at the same rate
  mixed = {r.tags["size"]: r.config.optimizer.learning_rate for r in runs}
  rates = [mixed[s] for s in sorted(mixed, key=sizes.get)]
  assert rates == sorted(rates, reverse=True)
  width = {r.tags["size"]: r.config.optimizer.learning_rate
           for r in sweep.plan_sweep(spec, tmp_path / "d")}
  assert width["w64"] == mixed["m"] and width["w128"] == mixed["xl"]
  with pytest.raises(ValueError, match="ladder="):
    sweep.plan_sweep(spec + ":ladder=deep", tmp_path / "e")


def _rows(law: scaling.Law, mixture: str) -> list[dict]:
  rows = []
  for n in (5e4, 1e5, 2e5, 4e5):
    for d in (1e5, 2e5, 4e5):
      rows.append({"run": f"{mixture}-{n:g}-{d:g}", "tag:mixture": mixture, "params": n,
                   "tokens": d, "eval_loss": float(law.predict(n, d)), "status": "done"})
  rows.append({"run": f"{mixture}-big", "tag:mixture": mixture, "tag:holdout": True,
               "params": 1.6e6, "tokens": 2e5, "eval_loss": 99.0, "status": "done"})
  return rows


def test_fit_columns_one_law_per_mixture_holdout_left_out(tmp_path):
  raw = scaling.Law(E=1.5, A=50.0, B=300.0, alpha=0.4, beta=0.4)
  book = scaling.Law(E=0.8, A=30.0, B=500.0, alpha=0.3, beta=0.5)
  rows = _rows(raw, "raw") + _rows(book, "textbook")
  rows[0]["status"] = "failed (exit 1)"  # a failed run is not fit
  laws = sweep_table.fit_rows(rows, "eval_loss", by=("mixture",))
  assert set(laws) == {"mixture=raw", "mixture=textbook"}
  assert laws["mixture=raw"]["E"] == pytest.approx(1.5, rel=1e-3)
  assert laws["mixture=textbook"]["beta"] == pytest.approx(0.5, rel=1e-3)
  assert len(laws["mixture=raw"]["runs"]) == 11  # 12 grid rows less the failed one, no holdout
  big = [r for r in rows if r.get("tag:holdout")]
  assert big[0]["fit_loss"] == pytest.approx(float(raw.predict(1.6e6, 2e5)), rel=1e-3)
  assert big[0]["fit_error"] == pytest.approx(99.0 / big[0]["fit_loss"] - 1)
  sweep_table.write_table(rows, tmp_path)
  header = (tmp_path / "sweep.md").read_text().splitlines()[0]
  assert "| mixture |" in header and "fit_loss" in header and "fit_error" in header
  assert "overrides" not in header  # tagged runs are named by their tags
  with open(tmp_path / "sweep.csv") as f:
    assert "fit_loss" in next(csv.reader(f))
  # every evaluation as a point: one run per size, its budgets along its curve
  curves = [{"run": f"n{n:g}", "params": n, "tokens": 4e5, "status": "done",
             "evals": [(d, float(raw.predict(n, d))) for d in (1e5, 2e5, 3e5, 4e5)]}
            for n in (5e4, 1e5, 2e5, 4e5)]
  law = sweep_table.fit_rows(curves, "eval_loss", points="evals")["all"]
  assert law["alpha"] == pytest.approx(0.4, rel=1e-3) and law["points"] == "evals"
  assert sweep_table.fit_rows(curves, "eval_loss", points="final")["all"]["error"].startswith("no fit")
  too_few = sweep_table.fit_rows(rows[:3], "eval_loss", by=("mixture",))
  assert "at least 5 points" in too_few["mixture=raw"]["error"]


def test_failed_runs_are_reported_and_rerun_on_the_next_call(tmp_path, monkeypatch, capsys):
  config = tmp_path / "cfg.py"
  config.write_text(f"from importlib.machinery import SourceFileLoader\n"
                    f"get_config = SourceFileLoader('q', {str(CONFIGS / 'quickstart.py')!r})"
                    ".load_module().get_config\n"
                    "def prepare(arg, workdir):  # shared data: once per call with runs to do\n"
                    "  with open(workdir / 'prepared.txt', 'a') as f:\n"
                    "    f.write(repr(arg) + '\\n')\n")
  real_plan = sweep.plan_sweep
  behaviour = {"a": "exit3", "b": "ok"}

  def plan(spec, workdir, **kwargs):
    runs = real_plan(spec, workdir, **kwargs)
    for run in runs:  # a stand-in for main: fail, or write the summary of a finished run
      name = run.tags["run"]
      finish = ("import json,pathlib,sys; p=pathlib.Path(sys.argv[1]); "
                f"p.mkdir(parents=True, exist_ok=True); (p/'summary.json').write_text("
                f"json.dumps({{'step': {run.total_steps}, 'stopped_by': None, "
                "'final_loss': 1.5}))")
      code = "import sys; sys.exit(3)" if behaviour[name] == "exit3" else finish
      run.command = [sys.executable, "-c", code, str(run.workdir)]
    return runs

  monkeypatch.setattr(sweep, "plan_sweep", plan)
  monkeypatch.setattr(sweep, "_prepare_data", lambda configs: None)
  runs = sweep.grid(run={"a": {}, "b": {}}, tokens=(8192,))
  rows = sweep.run_sweep(str(config), tmp_path, runs=runs, poll_seconds=0.05)
  assert [r["status"] for r in rows] == ["failed (exit 3)", "done"]
  out = capsys.readouterr().out
  assert "1 of 2 run(s) failed: run=a,tokens=8192" in out and "rerun the same command" in out
  assert json.loads((tmp_path / "run=a,tokens=8192" / sweep_table.STATUS_FILE).read_text())[
      "returncode"] == 3
  assert (tmp_path / "prepared.txt").read_text() == "''\n"
  # the next call: the finished run is skipped, the failed one is announced and runs again
  behaviour["a"] = "ok"
  dry = sweep.run_sweep(str(config), tmp_path, runs=runs, dry_run=True)
  assert dry[0]["status"] == "failed (exit 3), not rerun yet"
  rows = sweep.run_sweep(str(config), tmp_path, runs=runs, poll_seconds=0.05)
  out = capsys.readouterr().out
  assert "run=a,tokens=8192: failed (exit 3) on the last call; it runs again" in out
  assert [r["status"] for r in rows] == ["done", "done (skipped)"]
  assert np.isclose(rows[0]["final_loss"], 1.5) and "run(s) failed" not in out
  assert (tmp_path / "prepared.txt").read_text() == "''\n''\n"  # not on the dry run
  sweep.run_sweep(str(config), tmp_path, runs=runs, poll_seconds=0.05)  # nothing to do
  assert (tmp_path / "prepared.txt").read_text().count("\n") == 2


def test_process_pool_runs_in_order_and_stops_its_children(tmp_path):
  import sys
  from phi_jax import cpus
  done = []
  jobs = [(f"j{i}", [sys.executable, "-c", f"print('job {i}')"], tmp_path / f"j{i}" / "log")
          for i in range(3)]
  cpus.run_pool(jobs, 2, on_finish=lambda key, code, s: done.append((key, code)),
                poll_seconds=0.01)
  assert sorted(done) == [("j0", 0), ("j1", 0), ("j2", 0)]
  assert (tmp_path / "j2" / "log").read_text() == "job 2\n"
  started = []

  def start(key, cpu):
    started.append(key)
    if len(started) == 2:  # Ctrl-C while the first job runs
      raise KeyboardInterrupt

  stops = []
  slow = [("slow", [sys.executable, "-c", "import time; time.sleep(600)"], tmp_path / "slow.log"),
          ("next", [sys.executable, "-c", "pass"], tmp_path / "next.log")]
  with pytest.raises(cpus.Stopped) as stopped:
    cpus.run_pool(slow, 2, on_start=start, on_stop=stops.append, poll_seconds=0.01)
  assert stopped.value.keys == ["slow"] and stops == [1]  # SIGTERMed and waited for
