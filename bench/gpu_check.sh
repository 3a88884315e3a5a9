#!/usr/bin/env bash
# One-command GPU check of MISO mapping and training (issue 37), under 8 minutes on one H100/H200:
# kernel px/s, FLOP/px, % of bf16 peak, GPU busy %, memory and a torch.profiler table (before/after
# SDPA attention, precision tails, optional torch.compile modes); class flips of GPU bf16 against the
# CPU fp32 path on a trained demo model; `misomap predict` end to end on a cube in a SeaweedFS bucket
# beside the kernel-only rate; MISO training steps/s and memory; statewide Alaska hours at 10 m / 30 m.
#   bench/gpu_check.sh                                   # on a GPU
#   bench/gpu_check.sh --compile reduce-overhead         # also torch.compile with CUDA graphs
#   bench/gpu_check.sh --dry-run-cpu                     # test the script on the CPU at tiny sizes
# Peak bf16 FLOP/s from the GPU's name (A100 312 T, H100/H200 989 T) or PEAK_TFLOPS. The log is
# written to bench/results/gpu_check.log (GPU) or bench/results/gpu_check_dry_run_cpu.log.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
LOG=bench/results/gpu_check.log
for a in "$@"; do [ "$a" = "--dry-run-cpu" ] && LOG=bench/results/gpu_check_dry_run_cpu.log; done
mkdir -p bench/results
"$PY" bench/gpu_check.py "$@" 2>&1 | tee "$LOG.tmp"
mv "$LOG.tmp" "$LOG"
