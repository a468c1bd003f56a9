#!/bin/bash
# The device checks for a session that is lent a GPU (run from the repo root; results in $OUT).
# The GPU machine has jax + CUDA, flax, optax, orbax, transformers, torch, but not ml-collections,
# tensorflow-datasets or grain: these benchmarks import none of them.
#   skipdecode_speed (small): the CPU benchmark's model (16 layers x d_model 256), unpinned.
#   skipdecode_speed (wide):  16 layers x d_model 2048 (~0.8B params), where the GPU is busy.
set -u
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
export PYTHONPATH=$PWD
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
python -c "import jax, flax; print('jax', jax.__version__, 'flax', flax.__version__, jax.devices())" \
  | tee -a "$OUT/gpu.txt"
run() {  # name, timeout, args...
  local name=$1 limit=$2; shift 2
  timeout "$limit" python experiments/perf/skipdecode_speed.py --no_pin "$@" > "$OUT/$name.log" 2>&1
  echo "$name: rc=$?"; grep -v '^{' "$OUT/$name.log" | tail -12; tail -1 "$OUT/$name.log" > "$OUT/$name.json"
}
run skip_small 150 --reps 5
run skip_wide 240 --reps 5 --d_model 2048 --vocab 512 --new_tokens 128
