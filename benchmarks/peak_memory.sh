#!/bin/bash
# Peak memory (max RSS, GNU time) of the paper-size demo on the CPU with block matching and with SGM.
#
#   benchmarks/peak_memory.sh [RUNS] [MAX_MEMORY] [OUTDIR]      (defaults: 16 runs, 2G, /tmp/xstereo_peak)
#
# Prints one line per method: method, max RSS [KiB], wall time, exit status; the full logs and the
# run directories (summary.json with the memory plan) stay under OUTDIR. Needs /usr/bin/time.
set -u
runs=${1:-16}
budget=${2:-2G}
out=${3:-/tmp/xstereo_peak}
mkdir -p "$out"
for m in bm sgm; do
  /usr/bin/time -v xstereo demo --paper-size --runs "$runs" --method "$m" --max-memory "$budget" --no-figures \
    -o "$out/demo_$m" --overwrite > "$out/demo_$m.log" 2>&1
  rc=$?
  rss=$(grep "Maximum resident set size" "$out/demo_$m.log" | awk '{print $NF}')
  wall=$(grep "Elapsed (wall clock)" "$out/demo_$m.log" | awk '{print $NF}')
  echo "$m max_rss_kib=$rss wall=$wall rc=$rc"
done
