#!/usr/bin/env bash
# The CUDA kernels on the GPU machine: builds, runs the GPU suite (kernels against their
# references, every implementation CUDA vs CPU, a sweep), lcb_bench (B=1, then decode at B=16,
# then exact top-k's prefill up to 64K and topk_block at 10% density at 64K), the read floor
# (tools/gpu/read_floor.cu: an empty launch and the fastest plain read of each size), the GPU sweep of
# harness/configs/gpu.json, compute-sanitizer on the kernel tests (memcheck; synccheck on the
# barriers of the interval kernel, its half tiles included, and DGA's selection).
# Logs, bench*.json and gpu.sqlite land in OUT_DIR; the benchmark tables are printed last, then
# every step's status line again.
#
#   tools/gpu/kernels.sh OUT_DIR [DEB_DIR] [lcb_bench flags...]     (LCB_SKIP_SWEEP=1: no sweep)
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT_DIR=${1:?usage: tools/gpu/kernels.sh OUT_DIR [DEB_DIR] [lcb_bench flags...]}
DEB_DIR=${2:-.gpu-debs}
shift $(( $# >= 2 ? 2 : 1 ))
mkdir -p "$OUT_DIR"
LCB_GPU_TARGETS="lcb lcb_gpu_test lcb_bench" source tools/gpu/build.sh
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm --format=csv,noheader | tee "$OUT_DIR/env.txt"

status() { echo "$1" | tee -a "$OUT_DIR/status.txt"; }  # repeated after the tables
: >"$OUT_DIR/status.txt"
status "ptxas: $([ -z "$LCB_PTXAS_SERIALISED" ] && echo "no wgmma serialised" || echo "wgmma serialised in $(echo "$LCB_PTXAS_SERIALISED" | wc -l) kernel(s), see build.log")"

timeout 240 build-gpu/tests/lcb_gpu_test >"$OUT_DIR/gpu_test.log" 2>&1
status "gpu suite: exit $? $(grep -E '^\[  (PASSED|FAILED) ' "$OUT_DIR/gpu_test.log" | tr '\n' ' ')"
grep -E "^\[  FAILED  \]|Failure|error:|^interval|Expected|Which is" "$OUT_DIR/gpu_test.log" | head -n 40

t0=$(date +%s)
timeout 300 build-gpu/lcb_bench --benchmark_out="$OUT_DIR/bench.json" --benchmark_out_format=json \
  --impls="sdpa;dense-interval;swa:window=4096;dga:m=16,gamma=0.1;topk_block:block=64,k=100" "$@" >"$OUT_DIR/bench.txt" 2>&1
status "lcb_bench: exit $? in $(( $(date +%s) - t0 )) s"
# Exact top-k apart, up to 64K (its select passes cost seconds at 128K).
t0=$(date +%s)
timeout 200 build-gpu/lcb_bench --modes=prefill --heads=gqa --lengths=4096,16384,65536 --impls="sdpa;topk:k=2048" \
  --benchmark_out="$OUT_DIR/bench_topk.json" --benchmark_out_format=json >"$OUT_DIR/bench_topk.txt" 2>&1
status "lcb_bench topk: exit $? in $(( $(date +%s) - t0 )) s"
# topk_block at 10% density at 64K (k=100 is 10% at 128K, 19% at 64K).
timeout 100 build-gpu/lcb_bench --modes=prefill --heads=gqa --lengths=65536 --impls="sdpa;topk_block:block=64,k=50" \
  >>"$OUT_DIR/bench_topk.txt" 2>&1
status "lcb_bench topk_block k=50: exit $?"

for kernel in wgmma64 mma; do
  LCB_INTERVAL_KERNEL=$kernel build-gpu/lcb_bench --modes=prefill --heads=gqa --lengths=16384,65536 \
    --impls="sdpa;dense-interval;swa:window=4096;dga:m=16,gamma=0.1" >>"$OUT_DIR/bench_other_kernels.txt" 2>&1
  status "lcb_bench prefill with LCB_INTERVAL_KERNEL=$kernel: exit $?"
done

# What the decode steps' bytes cost at the least under the same protocol: an empty launch and the
# fastest plain read of 2 MiB .. 2 GiB (tools/gpu/read_floor.cu).
nvcc -O3 -arch=sm_90a -o build-gpu/read_floor tools/gpu/read_floor.cu >"$OUT_DIR/read_floor.txt" 2>&1 &&
  build-gpu/read_floor >>"$OUT_DIR/read_floor.txt" 2>&1
status "read floor: exit $?"

build-gpu/lcb_bench --modes=decode --heads=gqa --lengths=16384 --batch=16 --benchmark_out="$OUT_DIR/bench_b16.json" \
  --benchmark_out_format=json >"$OUT_DIR/bench_b16.txt" 2>&1
status "lcb_bench decode B=16: exit $?"

if [ -z "${LCB_SKIP_SWEEP:-}" ]; then
  t0=$(date +%s)
  build-gpu/lcb run --config harness/configs/gpu.json --db "$OUT_DIR/gpu.sqlite" >"$OUT_DIR/sweep.txt" 2>"$OUT_DIR/sweep.progress"
  status "sweep (harness/configs/gpu.json): $(tail -n1 "$OUT_DIR/sweep.txt") [$(( $(date +%s) - t0 )) s]"
fi

timeout 240 compute-sanitizer --tool memcheck --error-exitcode 3 build-gpu/tests/lcb_gpu_test \
  --gtest_filter='IntervalKernel.CausalDense*:IntervalKernel.RandomIntervals*:IntervalKernel.Strided*:IntervalKernel.QueryTiles*:DecodeKernel.SegmentsMatch*:DecodeKernel.Stores*:DecodeKernel.LastSplit*:BlockSelect.*:DecodeKernel.BlockTopK*:DgaKernels.*:TopKKernel.Distinct*' \
  >"$OUT_DIR/sanitizer.log" 2>&1
status "compute-sanitizer memcheck: exit $? ($(grep -E 'ERROR SUMMARY' "$OUT_DIR/sanitizer.log" | tail -n1))"
timeout 150 compute-sanitizer --tool synccheck --error-exitcode 3 build-gpu/tests/lcb_gpu_test \
  --gtest_filter='IntervalKernel.CausalDense*:IntervalKernel.QueryTiles*:IntervalKernel.RegistryFast*:DgaKernels.Importance*:DgaKernels.FocalTies*' \
  >"$OUT_DIR/synccheck.log" 2>&1
status "compute-sanitizer synccheck: exit $? ($(grep -E 'ERROR SUMMARY' "$OUT_DIR/synccheck.log" | tail -n1))"

grep -E "ERROR OCCURRED|error_message" "$OUT_DIR/bench.txt" | head -n 20
sed -n '/^| benchmark/,$p' "$OUT_DIR/bench.txt"
sed -n '/^| benchmark/,$p' "$OUT_DIR/bench_b16.txt"
grep -E "^\| prefill" "$OUT_DIR/bench_topk.txt" | grep -v "/sdpa |"
echo "with LCB_INTERVAL_KERNEL=wgmma64, then mma:"; grep -E "^\| prefill" "$OUT_DIR/bench_other_kernels.txt"
echo "the read floor:"; grep -E "^empty|^\| [0-9]" "$OUT_DIR/read_floor.txt" | cut -d'|' -f1-4
echo; cat "$OUT_DIR/status.txt"
