"""The package as users install it: every folder is in the wheel, and the installed package trains.

A folder under phi_jax/ without `__init__.py` is skipped by `find_packages`, so an editable
install (which puts the checkout on the path) works while `pip install .` or a wheel lacks it:
`python -m phi_jax.main` then fails outside the checkout. These tests build the wheel from a copy
of the sources and run the main job from the installed files in a directory outside the checkout.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import sys
import zipfile

import pytest

REPO = pathlib.Path(__file__).resolve().parent.parent
PACKAGE = REPO / "phi_jax"


def _source_folders() -> list[pathlib.Path]:
  return sorted(p.parent for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def test_every_folder_with_python_files_is_a_package():
  missing = [str(d.relative_to(REPO)) for d in set(_source_folders())
             if not (d / "__init__.py").exists()]
  assert not missing, f"folders without __init__.py (left out of a wheel): {sorted(missing)}"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> pathlib.Path:
  """A wheel built from a copy of the sources (the checkout gets no build/ or egg-info)."""
  src = tmp_path_factory.mktemp("src")
  shutil.copytree(PACKAGE, src / "phi_jax", ignore=shutil.ignore_patterns("__pycache__"))
  for name in ("setup.py", "README.md"):
    shutil.copy(REPO / name, src / name)
  out = tmp_path_factory.mktemp("wheel")
  subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                  "--no-index", "-q", "-w", str(out), str(src)], check=True,
                 capture_output=True, text=True)
  (whl,) = out.glob("phi_jax-*.whl")
  return whl


@pytest.mark.slow
def test_wheel_contains_every_module(wheel):
  names = set(zipfile.ZipFile(wheel).namelist())
  expected = {str(p.relative_to(REPO)) for p in PACKAGE.rglob("*.py")
              if "__pycache__" not in p.parts}
  assert expected - names == set(), f"modules missing from the wheel: {sorted(expected - names)}"
  assert "phi_jax/train/loop.py" in names and "phi_jax/curation/procedural/grammar.py" in names


@pytest.mark.slow
def test_installed_package_trains_outside_the_checkout(wheel, tmp_path):
  site = tmp_path / "site"
  subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "-q",
                  "--target", str(site), str(wheel)], check=True, capture_output=True, text=True)
  elsewhere = tmp_path / "elsewhere"
  elsewhere.mkdir()
  workdir = elsewhere / "run"
  # PYTHONPATH puts the installed copy ahead of the editable checkout; -P keeps the cwd off it.
  env = dict(os.environ, PYTHONPATH=str(site), JAX_PLATFORMS="cpu")
  env.pop("XLA_FLAGS", None)
  where = subprocess.run([sys.executable, "-P", "-c", "import phi_jax.train.loop as m;"
                          "print(m.__file__)"], cwd=elsewhere, env=env, check=True,
                         capture_output=True, text=True).stdout.strip()
  assert pathlib.Path(where).is_relative_to(site), where
  run = subprocess.run(
      [sys.executable, "-P", "-m", "phi_jax.main",
       f"--config={REPO / 'configs' / 'quickstart.py'}:smoke", f"--workdir={workdir}",
       f"--config.data.data_dir={tmp_path / 'tfds'}", "--config.arms.raw.data.max_files=12",
       "--config.total_steps=4", "--config.report=False"],
      cwd=elsewhere, env=env, capture_output=True, text=True, timeout=900)
  assert run.returncode == 0, run.stderr[-3000:]
  assert (workdir / "report.md").exists()  # the README's main job: a study of two arms
  for arm in ("raw", "textbook"):
    assert (workdir / arm / "config.json").exists()
    metrics = (workdir / arm / "metrics.jsonl").read_text().splitlines()
    assert any('"step": 4' in line for line in metrics), metrics[-3:]
