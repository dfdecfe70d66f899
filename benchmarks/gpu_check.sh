#!/usr/bin/env bash
# The fast path's GPU checks, as one command that writes everything under $OUT (at most 9 minutes
# on one H100). Copy the figures it prints into benchmarks/RESULTS.md with the device and date.
#
# Part 2 of the benchmark needs Fashion-MNIST, which the GPU machine does not have. Before the
# run, copy the Debian package's four .gz files into data/fashion-mnist-gz/ (ignored by git):
#     mkdir -p data/fashion-mnist-gz && cp /usr/share/datasets/fashion-mnist/*.gz data/fashion-mnist-gz/
# and carry that folder along (device tool: carry=["data/fashion-mnist-gz"]), then run
#     bash benchmarks/gpu_check.sh
set -uo pipefail
OUT=${OUT:-benchmarks/gpu_out}
PY=${PYTHON:-python3}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
status=0
step() {  # step NAME SECONDS COMMAND...: run with a time limit, log to $OUT/NAME.log, keep going on failure
  local name=$1 limit=$2; shift 2
  echo "=== $name (limit ${limit}s): $*"
  timeout "$limit" "$@" 2>&1 | tee "$OUT/$name.log"
  local rc=${PIPESTATUS[0]}
  echo "=== $name: exit $rc"
  [ "$rc" -eq 0 ] || status=1
}

{ nvidia-smi; "$PY" -c "import torch, torchvision; print(torch.__version__, torchvision.__version__, torch.cuda.get_device_name())"; date -u; } \
  > "$OUT/environment.txt" 2>&1
cat "$OUT/environment.txt"

if [ -d data/fashion-mnist-gz ]; then
  "$PY" -c "from pathlib import Path; from icd_lib.data import data_root, install_debian_fashion_mnist as f; print('Fashion-MNIST ready:', f(data_root(), Path('data/fashion-mnist-gz')))"
fi

# 1. the fast path's tests, now with their CUDA cases (the loader on the GPU, BatchNorm under bf16 autocast)
step tests 60 "$PY" -m pytest tests/test_fast.py -q -x -p no:cacheprovider
# 2. throughput, eager fast path (bf16 + channels_last), both pairs of the issue
step throughput_eager 120 "$PY" benchmarks/train_throughput.py --parts throughput --json "$OUT/throughput_eager.json"
# 3. throughput with torch.compile and CUDA graphs (compilation takes a minute or two)
step throughput_graphs 180 "$PY" benchmarks/train_throughput.py --parts throughput --pairs wrn_40_2:wrn_16_2 \
  --cuda-graphs --json "$OUT/throughput_graphs.json"
# 4. learning: plain and fast path, same seeds, on Fashion-MNIST
step learning 180 "$PY" benchmarks/train_throughput.py --parts learning --json "$OUT/learning.json"
exit $status
