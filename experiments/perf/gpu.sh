#!/bin/bash
# The device checks for a session that is lent a GPU (run from the repo root; results in $OUT).
# The GPU machine has jax + CUDA, flax, optax, orbax, transformers, torch, but not ml-collections,
# tensorflow-datasets or grain: these benchmarks import none of them. Each step runs under its
# own `timeout`; the default steps take well under 8 minutes in all (compiles included).
#   gpu.txt:            the card's name, memory, driver; jax's devices.
#   train_mfu:          phi-1 1.3B train step, seq 2048, bf16, batch 8 (configs/phi1.py's model):
#                       MFU, and peak memory vs the step's AOT estimate (train_mfu.py).
#   decode_roofline:    phi-1.5 shape, bf16, batch 1 greedy decode: bytes/s vs the HBM roofline,
#                       default layout ('stacked' on GPU), then 'per_layer' (decode_roofline.py).
#   EXTRA=1 adds:       train_mfu without dropout, and the two SkipDecode speed runs
#                       (skipdecode_speed.py at d_model 256 and 2048).
#   TINY=1:             every step at its --tiny size (a CPU rehearsal of this script).
set -u
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
export PYTHONPATH=$PWD
export TF_CPP_MIN_LOG_LEVEL=3
TINY=${TINY:-0}
EXTRA=${EXTRA:-0}
SIZE=()
[ "$TINY" = 1 ] && SIZE=(--tiny)
START=$(date +%s)
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 || true; } \
  | tee "$OUT/gpu.txt"
python -c "import jax, flax; print('jax', jax.__version__, 'flax', flax.__version__, jax.devices(),
  jax.devices()[0].device_kind)" 2>&1 | tee -a "$OUT/gpu.txt"

run() {  # name, timeout (s), script, args...: log in $OUT/name.log, its JSON line in name.json
  local name=$1 limit=$2 script=$3; shift 3
  local t0=$(date +%s)
  timeout "$limit" python "experiments/perf/$script" "$@" > "$OUT/$name.log" 2>&1
  local rc=$?
  echo "$name: rc=$rc ($(( $(date +%s) - t0 )) s, limit $limit s)"
  grep -v '^{' "$OUT/$name.log" | tail -8
  tail -1 "$OUT/$name.log" | grep '^{' > "$OUT/$name.json" && python - "$OUT/$name.json" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
keys = ("device_kind", "step_s", "tokens_per_s", "model_tflops_per_s", "mfu", "mfu_causal",
        "peak_bytes_in_use", "measured_over_estimate", "layout", "bytes_per_s", "fraction",
        "fraction_filled", "compile_s")
print({k: r[k] for k in keys if k in r})
if "aot_estimate" in r and r["aot_estimate"]:
  print("aot_estimate total_bytes", r["aot_estimate"]["total_bytes"])
EOF
}

run train_mfu 200 train_mfu.py "${SIZE[@]}"
run decode_roofline 110 decode_roofline.py "${SIZE[@]}"
run decode_roofline_per_layer 120 decode_roofline.py "${SIZE[@]}" --layout per_layer
if [ "$EXTRA" = 1 ]; then
  run train_mfu_no_dropout 180 train_mfu.py "${SIZE[@]}" --no_dropout
  if [ "$TINY" = 1 ]; then
    run skip_small 150 skipdecode_speed.py --no_pin --quick
  else
    run skip_small 150 skipdecode_speed.py --no_pin --reps 5
    run skip_wide 240 skipdecode_speed.py --no_pin --reps 5 --d_model 2048 --vocab 512 \
      --new_tokens 128
  fi
fi
echo "gpu.sh: $(( $(date +%s) - START )) s in all"
