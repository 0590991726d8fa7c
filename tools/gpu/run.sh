#!/usr/bin/env bash
# Builds lcb with CUDA on a fresh GPU machine (no network), runs every test including the GPU
# suite, then the GPU demo sweep, and writes logs and the results database into OUT_DIR.
#
#   tools/gpu/run.sh OUT_DIR [DEB_DIR]
#
# DEB_DIR (default .gpu-debs) holds Debian .deb files for what the machine lacks — the SQLite
# headers (`apt-get download libsqlite3-dev` on a machine with the registry); they are unpacked
# into a private prefix, never into /.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT_DIR=${1:?usage: tools/gpu/run.sh OUT_DIR [DEB_DIR]}
DEB_DIR=${2:-.gpu-debs}
mkdir -p "$OUT_DIR"
summary=()
step() { echo "== $*"; }

step "environment"
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader; nvcc --version | tail -n1;
  python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda)'; cmake --version | head -n1; } \
  2>&1 | tee "$OUT_DIR/env.txt"

step "build with CUDA"
source tools/gpu/build.sh
summary+=("build: ok")

step "tests (CPU suites and the GPU suite)"
ctest --test-dir "$BUILD" -j8 --output-on-failure >"$OUT_DIR/ctest.log" 2>&1
summary+=("ctest: $(grep -E 'tests passed|tests failed out of' "$OUT_DIR/ctest.log" | tail -n1)")
"$BUILD/tests/lcb_gpu_test" >"$OUT_DIR/gpu_test.log" 2>&1
summary+=("gpu suite: $(grep -E '^\[  (PASSED|FAILED|SKIPPED) ' "$OUT_DIR/gpu_test.log" | tr '\n' ' ')")
grep -E "^dense bf16" "$OUT_DIR/gpu_test.log" | sed 's/^/  /'

step "GPU demo sweep"
"$BUILD/lcb" run --config harness/configs/gpu.json --db "$OUT_DIR/gpu.sqlite" >"$OUT_DIR/sweep.txt" 2>"$OUT_DIR/sweep.progress"
summary+=("sweep: $(tail -n1 "$OUT_DIR/sweep.txt")")

echo
cat "$OUT_DIR/sweep.txt"
echo
printf '%s\n' "${summary[@]}"
