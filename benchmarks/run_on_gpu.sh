#!/usr/bin/env bash
# One call on a lent GPU machine (no network there): install without dependencies, print the card,
# run the GPU tests, the benchmarks and the demo; exit non-zero on any failure. Results go to $OUT.
set -euo pipefail
OUT=${OUT:-/tmp/xstereo_gpu_out}
mkdir -p "$OUT"
nvidia-smi | tee "$OUT/nvidia-smi.txt"
python3 -m pip install --no-deps --no-build-isolation -e . >/dev/null
python3 -c "import xstereo_gpu.backend as b; print(b.device_info())" | tee "$OUT/device.txt"
python3 -m pytest -m gpu -q -p no:cacheprovider 2>&1 | tee "$OUT/pytest_gpu.txt"
XSTEREO_BACKEND=cupy python3 -m pytest benchmarks/ --benchmark-only --benchmark-json "$OUT/bench.json" -q \
  -p no:cacheprovider 2>&1 | tee "$OUT/bench.txt"
xstereo bench --json "$OUT/xstereo_bench.json" 2>&1 | tee "$OUT/xstereo_bench.txt"
xstereo demo -o "$OUT/demo" --overwrite 2>&1 | tee "$OUT/demo.txt"
cp "$OUT/demo/summary.json" "$OUT/demo_summary.json"
