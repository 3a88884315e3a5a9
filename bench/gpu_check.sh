#!/usr/bin/env bash
# One-command GPU check of dense MISO map inference (issue 19), under 5 minutes on one GPU.
# Prints px/s, peak GPU memory, mean GPU utilisation, FLOP/px (counted), achieved vs peak FLOP/s,
# the statewide Alaska 30 m / 10 m hours from the measured rate beside the FLOP-bound limit, and
# the fraction of demo-map pixels whose class differs between GPU bf16 and the CPU fp32 path.
#   bench/gpu_check.sh                 # on a GPU (bf16 autocast, channels-last, pinned buffers)
#   bench/gpu_check.sh --compile       # also torch.compile the query batch
#   bench/gpu_check.sh --device cpu --small   # check the script itself without a GPU
# Peak bf16 FLOP/s is taken from the GPU's name (A100 312 T, H100/H200 989 T) or PEAK_TFLOPS.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
exec "$PY" - "$@" <<'EOF'
import argparse, copy, os, subprocess, sys, threading, time
import numpy as np, torch
sys.path.insert(0, "bench")
from bench_map import ALASKA_LAND_KM2, IMG, COV, RES, _field, _flops, _model, _spread_head, _scene
from misomap.mapping.predictors.miso import MisoMapPredictor

ap = argparse.ArgumentParser()
ap.add_argument("--device", default="cuda")
ap.add_argument("--compile", action="store_true")
ap.add_argument("--small", action="store_true", help="tiny sizes (a CPU smoke test of this script)")
args = ap.parse_args()
dev = torch.device(args.device)
if dev.type == "cuda" and not torch.cuda.is_available():
    sys.exit("gpu_check: no CUDA device visible (torch %s); use --device cpu --small to test the script" % torch.__version__)
name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"
peak = float(os.environ.get("PEAK_TFLOPS", 0)) * 1e12 or (
    989e12 if ("H100" in name or "H200" in name) else 312e12 if "A100" in name else float("nan"))
print(f"device: {name}; torch {torch.__version__}; peak bf16 {peak / 1e12:.0f} TFLOP/s")

class Util:
    """Samples nvidia-smi utilisation and memory every 200 ms while timing."""
    def __init__(self): self.samples, self.stop = [], threading.Event()
    def run(self):
        while not self.stop.is_set():
            try:
                out = subprocess.run(["nvidia-smi", "--query-gpu=utilization.gpu,memory.used", "--format=csv,noheader,nounits",
                                      "-i", str(dev.index or 0)], capture_output=True, text=True, timeout=5).stdout
                self.samples.append([float(v) for v in out.strip().split(",")])
            except Exception:
                pass
            time.sleep(0.2)
    def __enter__(self):
        if dev.type == "cuda": threading.Thread(target=self.run, daemon=True).start()
        return self
    def __exit__(self, *a): self.stop.set()

def sync():
    if dev.type == "cuda": torch.cuda.synchronize()

def measure(kind, chunk, reps):
    model = _model(kind)
    cpu_pred = MisoMapPredictor(model, torch.device("cpu"))
    window, wx, wy, qx, qy = _scene(cpu_pred, chunk)
    _spread_head(cpu_pred, window, wx, wy)
    pred = MisoMapPredictor(copy.deepcopy(cpu_pred.dense.model), dev)
    if args.compile:
        from misomap.models.miso.dense import DenseMiso
        pred.dense = DenseMiso(pred.dense.model, dev, compile=True)
    pred.predict(window, wx, wy, qx[:64], qy[:64]); sync()  # warm-up (and compile)
    if dev.type == "cuda": torch.cuda.reset_peak_memory_stats(dev)
    with Util() as util:
        t0 = time.perf_counter()
        for _ in range(reps):
            out = pred.predict(window, wx, wy, qx, qy)
        sync()
        sec = (time.perf_counter() - t0) / reps
    rate = chunk * chunk / sec
    mem = torch.cuda.max_memory_allocated(dev) / 2**30 if dev.type == "cuda" else float("nan")
    use = np.mean([s[0] for s in util.samples]) if util.samples else float("nan")
    flop = _flops(lambda: pred.predict(window, wx, wy, qx, qy)) / chunk**2
    print(f"{kind}: tile {pred.dense.grid.tile} px, chunk {chunk}² px, {pred.dense.point_batch} queries/batch: "
          f"{rate:,.0f} px/s, {flop:.3g} FLOP/px → {rate * flop / 1e12:.1f} TFLOP/s "
          f"({100 * rate * flop / peak:.0f}% of peak); peak GPU memory {mem:.1f} GiB; GPU utilisation {use:.0f}%")
    for res in (30, 10):
        px = ALASKA_LAND_KM2 * 1e6 / res**2
        meas, bound = px / rate / 3600, px * flop / peak / 3600
        print(f"   Alaska {res} m ({px:.2e} px): {meas:.2f} h on this device; FLOP-bound limit {bound:.2f} h "
              f"(measured / limit {meas / bound:.1f}×)")
    if kind == "demo":  # GPU (bf16 on CUDA) vs the fp32 CPU path on a sub-chunk
        n = min(chunk, 256)
        a = out.permafrost[:n, :n]
        b = cpu_pred.predict(window, wx, wy, qx[:n], qy[:n])
        so_gpu = out.soil_order[:, :n, :n].argmax(0)
        print(f"   classes vs CPU fp32 on {n}² px: permafrost differ {100 * np.mean((a >= 0.5) != (b.permafrost >= 0.5)):.3f}%, "
              f"soil order differ {100 * np.mean(so_gpu != b.soil_order.argmax(0)):.3f}%, "
              f"mean |ΔP| {np.abs(a - b.permafrost).mean():.4f}")

t_start = time.perf_counter()
measure("demo", 128 if args.small else 2048, 1 if args.small else 3)
if not args.small:
    measure("paper", 1024, 1)
print(f"gpu_check done in {time.perf_counter() - t_start:.0f} s")
EOF
