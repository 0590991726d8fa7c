// What a decode step's bytes cost at the least on this GPU, under lcb_bench's protocol (the L2
// flushed by a 256 MB read, CUDA events around one launch): an empty launch, and the fastest of
// several plain reads of the same bytes (streaming loads or not, 1-8 CTAs per SM).
// Standalone (CUDA runtime only):
//
//   nvcc -O3 -arch=sm_90a -o read_floor tools/gpu/read_floor.cu && ./read_floor [MiB ...]
//
// Prints, per size, the median of each variant and the best, in µs and TB/s.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <vector>

#define CHECK(x)                                                                     \
  do {                                                                               \
    const cudaError_t e_ = (x);                                                      \
    if (e_ != cudaSuccess) {                                                         \
      std::fprintf(stderr, "%s: %s\n", #x, cudaGetErrorString(e_));                  \
      std::exit(1);                                                                  \
    }                                                                                \
  } while (0)

__global__ void empty_kernel() {}

// Every thread reads kUnroll 16-byte words per step, grid-strided, as streaming loads
// (ld.global.cs, kStream) or plain ones; the XOR of all is stored only when it equals a value the
// data here never gives (every 16-byte word of it XORs to 0), so nothing is written and nothing
// is optimised away.
template <int kUnroll, bool kStream>
__global__ void read_kernel(const uint4* __restrict__ x, size_t n, unsigned* sink) {
  auto load = [](const uint4* p) { return kStream ? __ldcs(p) : *p; };
  unsigned acc = 0;
  const size_t stride = static_cast<size_t>(gridDim.x) * blockDim.x;
  size_t i = static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  for (; i + (kUnroll - 1) * stride < n; i += kUnroll * stride) {
    uint4 v[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) v[u] = load(x + i + u * stride);
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) acc ^= v[u].x ^ v[u].y ^ v[u].z ^ v[u].w;
  }
  for (; i < n; i += stride) {
    const uint4 v = load(x + i);
    acc ^= v.x ^ v.y ^ v.z ^ v.w;
  }
  if (acc == 0x9e3779b9u) *sink = acc;
}

int main(int argc, char** argv) {
  std::vector<double> mib = {2, 16, 64, 512, 2048};
  if (argc > 1) {
    mib.clear();
    for (int a = 1; a < argc; ++a) mib.push_back(std::atof(argv[a]));
  }
  int sms = 0;
  CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0));
  const size_t flush_bytes = size_t{256} << 20, max_bytes = static_cast<size_t>(*std::max_element(mib.begin(), mib.end()) * (1 << 20));
  uint4 *flush = nullptr, *data = nullptr;
  unsigned* sink = nullptr;
  CHECK(cudaMalloc(&flush, flush_bytes));
  CHECK(cudaMalloc(&data, max_bytes));
  CHECK(cudaMalloc(&sink, sizeof(unsigned)));
  CHECK(cudaMemset(flush, 1, flush_bytes));
  CHECK(cudaMemset(data, 1, max_bytes));
  cudaEvent_t t0, t1;
  CHECK(cudaEventCreate(&t0));
  CHECK(cudaEventCreate(&t1));
  // Plain loads, as lcb_bench's flush (ATen's sum): streaming ones would be the first evicted and
  // could leave the measured bytes in L2.
  auto flush_l2 = [&] { read_kernel<4, false><<<sms * 4, 512>>>(flush, flush_bytes / 16, sink); };
  // Median µs of 100 launches, each after an L2 flush, after 20 untimed ones.
  auto time = [&](auto launch) {
    std::vector<float> ms;
    for (int r = 0; r < 120; ++r) {
      flush_l2();
      CHECK(cudaEventRecord(t0));
      launch();
      CHECK(cudaEventRecord(t1));
      CHECK(cudaEventSynchronize(t1));
      float m = 0.f;
      CHECK(cudaEventElapsedTime(&m, t0, t1));
      if (r >= 20) ms.push_back(m);
    }
    std::sort(ms.begin(), ms.end());
    return 1e3 * ms[ms.size() / 2];
  };
  std::printf("empty launch: %.2f us (median of 100, each after a 256 MB L2 flush)\n", time([] { empty_kernel<<<1, 32>>>(); }));
  std::printf("| MiB | best us | best TB/s | variants (CTAs per SM x threads: us with 4 / 8 streaming loads in flight per thread, 4 plain) |\n|---|---|---|---|\n");
  for (const double m : mib) {
    const size_t bytes = static_cast<size_t>(m * (1 << 20)), n = bytes / 16;
    double best = 1e30;
    std::printf("| %.0f |", m);
    char line[2048];
    int at = 0;
    for (const int per_sm : {1, 2, 4, 8}) {
      for (const int threads : {256, 512, 1024}) {
        if (per_sm * threads > 2048) continue;
        const int ctas = sms * per_sm;
        const double u4 = time([&] { read_kernel<4, true><<<ctas, threads>>>(data, n, sink); });
        const double u8 = time([&] { read_kernel<8, true><<<ctas, threads>>>(data, n, sink); });
        const double p4 = time([&] { read_kernel<4, false><<<ctas, threads>>>(data, n, sink); });
        best = std::min({best, u4, u8, p4});
        at += std::snprintf(line + at, sizeof line - at, " %dx%d: %.1f/%.1f/%.1f", per_sm, threads, u4, u8, p4);
      }
    }
    CHECK(cudaGetLastError());
    std::printf(" %.1f | %.2f |%s |\n", best, bytes / (best * 1e-6) / 1e12, line);
  }
  return 0;
}
