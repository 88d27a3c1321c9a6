#!/usr/bin/env bash
# Everything that needs a GPU, in one call of at most 8 minutes on a lent machine (issue 12, item 6):
#
#   1. nvidia-smi (printed), the device as CuPy sees it, and a self-test of the host-read counter
#      (timing.HostReadCounter: one .get() and one bool() of a device array must count 2);
#   2. nvcc -ptx of every kernel for sm_80 and sm_90, where nvcc exists;
#   3. the GPU parity tests: pytest -m gpu (a test module whose optional dependency is missing,
#      such as dask/distributed, xraydb or extra-data on the lent image, skips itself);
#   4. xstereo bench --backend cupy --json: copy and FFT limits, DM / block matching / kNN (twins
#      and kernels) with their host reads per call, the whole pipeline with its host reads per stage;
#   5. xstereo bench --shots N (issue 9's goal: >= 20 hit shots/s at 2 x 256^2 with the cpu
#      profile's iterations); no Dask rows (--workers 0): distributed is not on the lent image.
#
# No network and no install: the package runs from this checkout (PYTHONPATH, and an `xstereo`
# shim on PATH that runs python3 -m xstereo_gpu.cli), so the kernels are this checkout's kernels/.
# Each step has its own time limit, cut to what is left of the 8 minutes; a step that fails or
# times out does not stop the others. One JSON lands in $OUT (default /tmp/xstereo_gpu_out):
# $OUT/gpu_run.json with every step's exit status, seconds and output tail, the parsed bench JSONs,
# the commit and nvidia-smi. Exit status: 0 when every step passed, 1 when any failed, 2 when no GPU
# is usable (after writing the JSON that says so).
#
#   OUT=/some/dir bash benchmarks/run_on_gpu.sh           the real run (needs a GPU)
#   bash benchmarks/run_on_gpu.sh --no-gpu                 checks the script's plumbing on a CPU
#                                                          machine: the GPU steps run on NumPy at quick
#                                                          sizes (not results), pytest -m gpu skips
#   SHOTS=N (default 60), BUDGET_S=seconds (default 470) change the shot count and the total limit.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=${OUT:-/tmp/xstereo_gpu_out}
BUDGET_S=${BUDGET_S:-470}
SHOTS=${SHOTS:-60}
NO_GPU=0
for a in "$@"; do
  case "$a" in
    --no-gpu) NO_GPU=1 ;;
    -h | --help) sed -n '2,27p' "$0"; exit 0 ;;
    *) echo "run_on_gpu.sh: unknown argument $a (try --help)" >&2; exit 2 ;;
  esac
done
mkdir -p "$OUT"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
START=$(date +%s)
mkdir -p "$WORK/bin" "$WORK/steps"
printf '#!/bin/sh\nexec python3 -m xstereo_gpu.cli "$@"\n' >"$WORK/bin/xstereo"
chmod +x "$WORK/bin/xstereo"
export PATH="$WORK/bin:$PATH" PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" PYTHONDONTWRITEBYTECODE=1
export CUPY_CACHE_DIR="${CUPY_CACHE_DIR:-$WORK/cupy_cache}"

left() { echo $((BUDGET_S - ($(date +%s) - START))); }

step() {  # step NAME LIMIT_S CMD...: run CMD with min(LIMIT_S, time left), output to the terminal and a log
  local name=$1 limit=$2
  shift 2
  local rem
  rem=$(left)
  [ "$limit" -gt "$rem" ] && limit=$rem
  local dir="$WORK/steps/$(printf '%02d' "$(ls "$WORK/steps" | wc -l)")-$name"
  mkdir -p "$dir"
  printf '%s\n' "$*" >"$dir/cmd"
  if [ "$limit" -lt 5 ]; then
    echo "=== $name: skipped, the $BUDGET_S s budget is spent"
    echo "skipped: the $BUDGET_S s budget was spent" >"$dir/skipped"
    return 0
  fi
  echo "=== $name (limit ${limit}s): $*"
  local t0=$SECONDS
  timeout --kill-after=10 "$limit" "$@" >"$dir/log" 2>&1
  local rc=$?
  echo $((SECONDS - t0)) >"$dir/seconds"
  echo "$rc" >"$dir/rc"
  tail -n 40 "$dir/log"
  if [ "$rc" -ne 0 ]; then
    echo "=== $name FAILED (exit $rc$([ "$rc" -eq 124 ] && echo ', timed out'))"
  fi
  return 0
}

skip() {  # skip NAME REASON
  local dir="$WORK/steps/$(printf '%02d' "$(ls "$WORK/steps" | wc -l)")-$1"
  mkdir -p "$dir"
  echo "$2" >"$dir/skipped"
  echo "=== $1: skipped ($2)"
}

# --- 1. the machine
if command -v nvidia-smi >/dev/null 2>&1; then
  step nvidia-smi 20 nvidia-smi
else
  skip nvidia-smi "nvidia-smi not on PATH"
fi
step device 90 python3 - "$NO_GPU" <<'EOF'
import json, sys
no_gpu = sys.argv[1] == "1"
from xstereo_gpu import _kernels
from xstereo_gpu.backend import cupy_available, device_info
print("kernels from", _kernels.CHECKOUT_KERNELS if _kernels.CHECKOUT_KERNELS.is_dir() else "the package")
if not cupy_available():
    print("NO GPU: CuPy is missing or sees no CUDA device")
    sys.exit(0 if no_gpu else 3)
import cupy
from xstereo_gpu.timing import HostReadCounter
print("cupy", cupy.__version__, json.dumps(device_info(cupy), default=str))
a = cupy.arange(3)
with HostReadCounter(cupy) as c:
    a.get()
    bool(a.all())
print("host-read counter:", c.mechanism, "counted", c.total(), "of 2")
sys.exit(0 if c.total() == 2 else 4)
EOF
DEVICE_RC=$(cat "$WORK"/steps/*-device/rc 2>/dev/null || echo 1)
GPU=1
if [ "$NO_GPU" = 1 ] || [ "$DEVICE_RC" = 3 ]; then GPU=0; fi
if [ "$GPU" = 0 ] && [ "$NO_GPU" = 0 ]; then
  echo "=== no usable GPU (see the device step): nothing else runs"
fi

# --- 2. compile check
if [ "$GPU" = 1 ] || [ "$NO_GPU" = 1 ]; then
  if command -v nvcc >/dev/null 2>&1; then
    step nvcc 90 bash -c 'for f in kernels/*.cu; do for a in sm_80 sm_90; do
      nvcc -std=c++17 -arch=$a -ptx -o /dev/null "$f" || { echo "FAILED: $f $a"; exit 1; }; echo "ok $f $a"; done; done'
  else
    skip nvcc "nvcc not on PATH (the kernels are compiled by NVRTC in the tests)"
  fi
fi

# --- 3.-5. the GPU work (NumPy at quick sizes with --no-gpu: plumbing only)
if [ "$GPU" = 1 ]; then
  step pytest-gpu 200 python3 -m pytest -m gpu -q -p no:cacheprovider -rs \
    --junitxml="$WORK/pytest_gpu.xml" tests
  step bench 150 xstereo bench --backend cupy --json "$WORK/bench.json"
  step bench-shots 120 xstereo bench --backend cupy --shots "$SHOTS" --size 256 --hit-rate 0.3 \
    --workers 0 --blank-shots 20 --json "$WORK/bench_shots.json"
elif [ "$NO_GPU" = 1 ]; then
  step pytest-gpu 200 python3 -m pytest -m gpu -q -p no:cacheprovider -rs \
    --junitxml="$WORK/pytest_gpu.xml" tests/test_dm_kernel.py tests/test_bm_kernel.py
  step bench 150 xstereo bench --backend numpy --quick --no-pipeline --json "$WORK/bench.json"
  step bench-shots 120 xstereo bench --backend numpy --quick --shots 4 --size 128 --hit-rate 0.5 \
    --workers 0 --blank-shots 2 --json "$WORK/bench_shots.json"
fi

# --- the one JSON
python3 - "$WORK" "$OUT/gpu_run.json" "$NO_GPU" "$GPU" "$BUDGET_S" "$(($(date +%s) - START))" <<'EOF'
import json, os, pathlib, subprocess, sys
import xml.etree.ElementTree as ET

work, out, no_gpu, gpu, budget, total = sys.argv[1:7]
work = pathlib.Path(work)
def read(p, default=None):
    return p.read_text() if p.exists() else default
steps, failed = [], []
for d in sorted((work / "steps").iterdir()):
    name = d.name.split("-", 1)[1]
    s = {"name": name, "command": (read(d / "cmd") or "").strip()}
    if (d / "skipped").exists():
        s["skipped"] = read(d / "skipped").strip()
    else:
        rc = int(read(d / "rc", "1"))
        log = read(d / "log", "")
        s.update(rc=rc, timed_out=rc in (124, 137), seconds=int(read(d / "seconds", "0")),
                 output_tail=log[-6000:])
        if rc != 0:
            failed.append(name)
    steps.append(s)
res = {
    "mode": "plumbing check on a CPU machine (--no-gpu): NOT GPU results" if no_gpu == "1" else "GPU run",
    "gpu": gpu == "1",
    "budget_s": int(budget),
    "wall_s": int(total),
    "failed_steps": failed,
    "steps": steps,
}
try:
    res["commit"] = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                                   check=True).stdout.strip()
except Exception:
    res["commit"] = "unknown (no git metadata in this copy)"
for key, f in (("bench", "bench.json"), ("bench_shots", "bench_shots.json")):
    p = work / f
    res[key] = json.loads(p.read_text()) if p.exists() else None
p = work / "pytest_gpu.xml"
if p.exists():
    suites = ET.parse(p).getroot()
    suite = suites if suites.tag == "testsuite" else suites[0]
    res["pytest_gpu"] = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
    res["pytest_gpu"]["failed"] = [
        f"{c.get('classname')}::{c.get('name')}" for c in suite.iter("testcase")
        if c.find("failure") is not None or c.find("error") is not None
    ]
if gpu != "1" and no_gpu != "1":
    res["error"] = "no usable GPU: CuPy is missing or sees no CUDA device (see the device step)"
tmp = out + ".tmp"
with open(tmp, "w") as fh:
    json.dump(res, fh, indent=1, default=str)
os.replace(tmp, out)
print(f"wrote {out}: {len(steps)} steps, failed: {failed or 'none'}")
EOF

if [ "$GPU" = 0 ] && [ "$NO_GPU" = 0 ]; then
  echo "run_on_gpu.sh: no usable GPU" >&2
  exit 2
fi
if grep -q '"failed_steps": \[\]' "$OUT/gpu_run.json"; then
  echo "all steps passed ($(($(date +%s) - START)) s); $OUT/gpu_run.json"
  exit 0
fi
echo "run_on_gpu.sh: some steps failed, see $OUT/gpu_run.json" >&2
exit 1
