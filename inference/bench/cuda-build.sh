#!/usr/bin/env bash
# Builds hearth-intent-eval with the `cuda` feature on a machine with no GPU,
# no NVIDIA driver and no system CUDA toolkit, using only PyPI and crates.io.
#
#   inference/bench/cuda-build.sh            # from anywhere; idempotent
#   CUDA_VENV=DIR CUDA_COMPUTE_CAP=80 inference/bench/cuda-build.sh
#   inference/bench/cuda-build.sh --eval     # then the hold-out evaluation on
#       the CPU through the stub libcuda (models from $HEARTH_MODELS_DIR or
#       ./models of the repository root)
#
# What it does:
#  1. A Python venv ($CUDA_VENV, default .build-venv/cuda) with the
#     CUDA 13.4 toolkit wheels, pinned by NVIDIA's `cuda-toolkit` meta-package.
#     CUDA 12 is not usable this way: the cu12 `nvidia-cuda-nvcc-cu12` wheels
#     (12.4 to 12.9) ship only ptxas, libnvvm and libdevice, no nvcc, cicc,
#     cudafe++ or fatbinary. The CUDA 13 wheels install one merged tree,
#     site-packages/nvidia/cu13/{bin,include,lib,nvvm}, whose bin/nvcc.profile
#     already finds the headers (CCCL included) and cicc: nvcc on PATH is enough
#     to compile. cudarc 0.19.10 (candle 0.11.1) knows CUDA up to 13.4, so 13.5
#     would be refused; 13.4 it reads from `nvcc --version`.
#  2. A link directory $CUDA_VENV/cuda-link laid out like a toolkit
#     (lib64/ and lib64/stubs/), because candle-core turns on cudarc's
#     `dynamic-linking`: the binary is linked with -lcuda -lnvrtc -lcurand
#     -lcublas -lcublasLt -lcudart. lib64/ holds unversioned .so symlinks to the
#     wheels' versioned libraries. libcuda (the driver) is in no wheel, so
#     lib64/stubs/libcuda.so(.1) is a stub built here from the cu* functions
#     cudarc declares: each returns CUDA_ERROR_STUB_LIBRARY (34), like the stub
#     in NVIDIA's toolkit. It is only for linking (and for checking the CPU
#     fallback on a machine without a driver): never install it beside a real
#     driver.
#  3. cargo build --release -p hearth-inference --features cuda
#     --bin hearth-intent-eval under `nice -n 19`, with CUDA_COMPUTE_CAP
#     (default 90, H100) because candle-kernels' build (cudaforge) cannot ask
#     nvidia-smi here.
#
# Running the binary needs the wheels' libraries and a libcuda.so.1: the
# script prints the LD_LIBRARY_PATH to use. With the real driver's libcuda it
# runs on the GPU; with the stub (no GPU) it logs the CUDA error and uses the CPU.
set -euo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
venv=${CUDA_VENV:-$repo/.build-venv/cuda}
export CUDA_COMPUTE_CAP=${CUDA_COMPUTE_CAP:-90}
# Pinned: cuda-toolkit 13.4.3 pins nvcc/crt/runtime/nvvm/nvrtc 13.4.92,
# cccl 13.3.4.3.1, cublas 13.8.0.4, curand 10.4.4.72.
toolkit_req='cuda-toolkit[nvcc,crt,cudart,cccl,cublas,curand,nvrtc]==13.4.3'

# 1. the toolkit from PyPI
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
cu=$("$venv/bin/python" - <<'PY' 2>/dev/null || true
import os, nvidia
print(os.path.join(list(nvidia.__path__)[0], "cu13"))
PY
)
if [ -z "$cu" ] || [ ! -x "$cu/bin/nvcc" ] || ! "$venv/bin/pip" show -q cuda-toolkit 2>/dev/null; then
    nice -n 19 "$venv/bin/pip" install -q --no-cache-dir "$toolkit_req"
    cu=$("$venv/bin/python" -c 'import os, nvidia; print(os.path.join(list(nvidia.__path__)[0], "cu13"))')
fi
export PATH="$cu/bin:$PATH"
nvcc --version | grep -q 'release 13.4,' || { echo "unexpected nvcc: $(nvcc --version | tail -2)" >&2; exit 1; }

# 2. the link directory: unversioned symlinks and the libcuda stub
link="$venv/cuda-link"
mkdir -p "$link/lib64/stubs"
for lib in cudart.so.13 cublas.so.13 cublasLt.so.13 curand.so.10 nvrtc.so.13; do
    ln -sfn "$cu/lib/lib$lib" "$link/lib64/lib${lib%.so.*}.so"
done
if [ ! -e "$link/lib64/stubs/libcuda.so.1" ]; then
    cudarc_src=$(cd "$repo" && cargo metadata --format-version 1 --all-features 2>/dev/null |
        python3 -c 'import json, os, sys
pkgs = json.load(sys.stdin)["packages"]
print(next(os.path.dirname(p["manifest_path"]) for p in pkgs if p["name"] == "cudarc"))')
    {
        echo '/* Stub libcuda: every driver entry point returns CUDA_ERROR_STUB_LIBRARY. */'
        echo '#define STUB(f) int f(void); int f(void) { return 34; }'
        grep -oE '^pub unsafe fn cu[A-Za-z0-9_]+' "$cudarc_src/src/driver/sys/mod.rs" |
            sed 's/^pub unsafe fn //' | sort -u | sed 's/.*/STUB(&)/'
    } >"$link/libcuda-stub.c"
    gcc -shared -fPIC -O1 -Wl,-soname,libcuda.so.1 -o "$link/lib64/stubs/libcuda.so.1" "$link/libcuda-stub.c"
fi
ln -sfn libcuda.so.1 "$link/lib64/stubs/libcuda.so"
# cudarc's build script adds $CUDA_HOME/lib64 and lib64/stubs to the link path.
export CUDA_HOME="$link"

# 3. the build, in its own target directory (the CPU build keeps target/)
cd "$repo"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$repo/target/cuda}
nice -n 19 cargo build --release -p hearth-inference --features cuda --bin hearth-intent-eval
bin=$CARGO_TARGET_DIR/release/hearth-intent-eval
echo "built $bin"
echo "run with: LD_LIBRARY_PATH=$cu/lib  (GPU machine with the NVIDIA driver)"
echo "      or: LD_LIBRARY_PATH=$cu/lib:$link/lib64/stubs  (no driver: the stub libcuda, CPU fallback)"

if [ "${1:-}" = "--eval" ]; then
    report=${TMPDIR:-/tmp}/hearth-cuda-holdout.json
    # Exits 1 when a case fails; the last line says how many.
    LD_LIBRARY_PATH="$cu/lib:$link/lib64/stubs" nice -n 19 "$bin" \
        --cases inference/eval/holdout.jsonl --report "$report" \
        --models "${HEARTH_MODELS_DIR:-models}" || true
    echo "report: $report"
fi
