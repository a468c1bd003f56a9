"""Smoke tests of the benchmark scripts: they run end to end at tiny sizes and print their JSON.

Timings are never asserted (they depend on the machine and its load); only the output's shape and
the correctness checks the benchmarks carry (identical greedy tokens).
"""

from __future__ import annotations

import json
import math
import os
import pathlib
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]


def _run_json(script: str, *args: str, timeout: int = 600) -> dict:
  """Runs `script` with `args` in a fresh process; returns its last stdout line parsed as JSON."""
  env = dict(os.environ)
  env.pop("XLA_FLAGS", None)  # not conftest's 8 fake devices: the script sets its own flags
  env["PYTHONPATH"] = f"{REPO}{os.pathsep}{env.get('PYTHONPATH', '')}"
  proc = subprocess.run([sys.executable, str(REPO / script), *args], cwd=REPO, env=env,
                        capture_output=True, text=True, timeout=timeout)
  assert proc.returncode == 0, f"{script} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
  lines = proc.stdout.strip().splitlines()
  assert lines, f"{script} printed nothing; stderr:\n{proc.stderr[-3000:]}"
  return json.loads(lines[-1])


def test_decode_benchmark_smoke():
  pytest.importorskip("torch")
  pytest.importorskip("transformers")
  result = _run_json("experiments/perf/decode_vs_hf.py", "--quick")
  for key in ("benchmark", "machine", "date", "threads", "new_tokens", "batch_1", "batch_8",
              "bandwidth"):
    assert key in result, f"missing {key!r} in {sorted(result)}"
  assert result["benchmark"] == "decode_vs_hf"
  assert result["threads"] == 1
  for batch in ("batch_1", "batch_8"):
    entry = result[batch]
    for key in ("phi_jax", "reference", "ratio", "tokens_identical", "phi_jax_compile_s"):
      assert key in entry, f"missing {batch}.{key}"
    assert entry["phi_jax"] > 0 and entry["reference"] > 0
    assert entry["tokens_identical"] is True, entry
  for key in ("weight_bytes", "phi_jax_weight_bytes_per_s", "single_core_copy_bytes_per_s",
              "fraction"):
    assert key in result["bandwidth"], f"missing bandwidth.{key}"


def test_train_benchmark_smoke():
  pytest.importorskip("torch")
  pytest.importorskip("transformers")
  result = _run_json("experiments/perf/train_vs_hf.py", "--quick")
  assert result["benchmark"] == "train_vs_hf" and result["threads"] == 1
  assert result["phi_jax"] > 0 and result["reference"] > 0 and result["ratio"] > 0
  # Both start at ~ln(vocab) (small random init: near-uniform predictions), so a wrong loss
  # (another normalisation, shifted targets, a mask) shows here; then the same 3 AdamW steps on
  # the same batch lower both by about the same amount (a wrong optimizer / lr / mask shows).
  ln_vocab = math.log(result["model"]["vocab"])
  first, last = result["loss_first_step"], result["loss_last_step"]
  for side in ("phi_jax", "reference"):
    assert abs(first[side] - ln_vocab) < 0.1, (side, first[side], ln_vocab)
    assert last[side] < first[side] - 0.01, (side, first[side], last[side])
  drop_jax, drop_ref = first["phi_jax"] - last["phi_jax"], first["reference"] - last["reference"]
  assert abs(drop_jax - drop_ref) < 0.3 * drop_ref, (drop_jax, drop_ref)
