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


def _run_json(script: str, *args: str, timeout: int = 1800) -> dict:
  """Runs `script` with `args` in a fresh process; returns its last stdout line parsed as JSON."""
  # The timeout only catches a hang: pinned to one core of a heavily loaded machine (load ~15),
  # the --quick train benchmark took over 600 s.
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
  result = _run_json("experiments/perf/train_vs_hf.py", "--quick", "--attention_block=16",
                     "--loss_chunk_len=32")
  assert result["benchmark"] == "train_vs_hf" and result["threads"] == 1
  assert result["attention"] == {"impl": "auto", "block": 16} and result["loss_chunk_len"] == 32
  # blockwise attention in blocks of 16 and the chunked loss: the same step as 'xla' + whole loss
  assert result["phi_jax_xla_attention"] > 0
  for key in ("loss_first_step", "loss_last_step"):
    assert result[key]["phi_jax"] == pytest.approx(result[key]["phi_jax_xla_attention"], abs=1e-4)
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


def test_train_mfu_tiny_reports_the_formula_and_the_aot_estimate():
  """experiments/perf/train_mfu.py --tiny (the CPU rehearsal of the GPU MFU run)."""
  result = _run_json("experiments/perf/train_mfu.py", "--tiny", "--peak_tflops", "1")
  assert result["benchmark"] == "train_mfu" and result["platform"] == "cpu"
  model = result["model"]
  tokens = result["batch"] * result["seq_len"]
  assert tokens == result["tokens_per_step"] == 2 * 64
  # PaLM's model FLOPs: tokens x (6 N + 12 L T d), N = params without the embedding table.
  n = result["num_params"] - result["embedding_params"]
  assert result["embedding_params"] == model["vocab"] * model["d_model"]
  attention = 12 * model["num_layers"] * result["seq_len"] * model["d_model"]
  assert result["flops"] == tokens * (6 * n + attention)
  assert result["flops_causal"] == tokens * (6 * n + attention // 2)
  assert math.isclose(result["mfu"], result["flops"] / result["step_s"] / 1e12, rel_tol=1e-9)
  est = result["aot_estimate"]
  assert est["total_bytes"] == (est["argument_bytes"] + est["output_bytes"] - est["alias_bytes"]
                                + est["temp_bytes"])
  # fp32 params + two fp32 Adam moments: the state the step takes and donates.
  assert est["params_bytes"] == 4 * result["num_params"]
  assert est["opt_state_bytes"] >= 2 * est["params_bytes"]
  assert est["alias_bytes"] >= est["params_bytes"] + est["opt_state_bytes"] - 64
  assert all(math.isfinite(x) for x in result["losses"]) and len(result["losses"]) == 3
  assert abs(result["losses"][0] - math.log(model["vocab"])) < 0.5


def test_decode_roofline_tiny_counts_the_bytes_a_step_reads():
  """experiments/perf/decode_roofline.py --tiny (the CPU rehearsal of the GPU roofline run)."""
  result = _run_json("experiments/perf/decode_roofline.py", "--tiny", "--hbm_tbps", "1")
  assert result["benchmark"] == "decode_roofline" and result["dtype"] == "bfloat16"
  model = result["model"]
  embed = model["vocab"] * model["d_model"]
  assert result["weight_bytes"] == 2 * (model["num_params"] - embed)  # bf16, no embedding table
  # k and v of every layer, 4 heads x 16 dims, over prompt bucket 32 + new-token bucket 64 slots
  assert result["kv_bytes_read"] == (32 + 64) * 2 * model["num_layers"] * 64 * 2
  assert result["kv_bytes_filled"] < result["kv_bytes_read"]
  per_s = (result["weight_bytes"] + result["kv_bytes_read"]) / result["step_s"]
  assert math.isclose(result["bytes_per_s"], per_s, rel_tol=1e-9)
  assert math.isclose(result["fraction"], per_s / 1e12, rel_tol=1e-9)
  assert result["layout"] in ("stacked", "per_layer", "per_layer_t")


def test_decode_benchmark_bfloat16_reports_its_divergence_from_float32():
  pytest.importorskip("torch")
  pytest.importorskip("transformers")
  result = _run_json("experiments/perf/decode_vs_hf.py", "--quick", "--dtype=bfloat16",
                     "--batch_sizes=1")
  assert result["dtype"] == "bfloat16" and result["reference_dtype"] == "float32"
  assert result["phi_jax_prepare_weights_s"] > 0
  vs = result["batch_1"]["vs_phi_jax_float32"]
  assert vs["identical"] or 0 <= vs["first_step"] < result["new_tokens"], vs


def test_decontam_prefilter_benchmark_smoke():
  """experiments/perf/decontam_prefilter.py: both configs flag the same documents; the filtered one
  parses fewer (its timings are not asserted)."""
  result = _run_json("experiments/perf/decontam_prefilter.py", "--num_docs=400", "--reps=1")
  assert result["same_flags"] is True
  ref, new = result["reference"], result["phi_jax"]
  assert ref["num_parsed"] == 400 and new["num_parsed"] < ref["num_parsed"]
  assert ref["num_flagged"] == new["num_flagged"]
  assert len(ref["cpu_ms_per_doc"]) == len(new["cpu_ms_per_doc"]) == 1
  assert math.isclose(result["ratio"], ref["median"] / new["median"], rel_tol=0.02)
