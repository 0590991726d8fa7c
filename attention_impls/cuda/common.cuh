// Device helpers shared by lcb's CUDA kernels: tensor-core MMA and fragment packing,
// asynchronous copies, ldmatrix, exp2, and the list of key tiles a query tile can see.
#pragma once

#include "attention_impls/cuda/kernels.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

namespace lcb::attn::cuda::detail {

inline void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw std::runtime_error(std::string("lcb CUDA kernel: ") + what + ": " + cudaGetErrorString(e));
}

template <typename T>
struct Mma;

template <>
struct Mma<__nv_bfloat16> {
  __device__ static void run(float* c, const uint32_t* a, uint32_t b0, uint32_t b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  }
  __device__ static uint32_t pack(float x, float y) {
    __nv_bfloat162 h = __floats2bfloat162_rn(x, y);
    return *reinterpret_cast<uint32_t*>(&h);
  }
  __device__ static void store2(__nv_bfloat16* p, float x, float y) {
    *reinterpret_cast<__nv_bfloat162*>(p) = __floats2bfloat162_rn(x, y);
  }
};

template <>
struct Mma<__half> {
  __device__ static void run(float* c, const uint32_t* a, uint32_t b0, uint32_t b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  }
  __device__ static uint32_t pack(float x, float y) {
    __half2 h = __floats2half2_rn(x, y);
    return *reinterpret_cast<uint32_t*>(&h);
  }
  __device__ static void store2(__half* p, float x, float y) { *reinterpret_cast<__half2*>(p) = __floats2half2_rn(x, y); }
};

__device__ __forceinline__ uint32_t smem_addr(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

__device__ __forceinline__ void cp_async16(uint32_t dst, const void* src, bool valid) {
  const int bytes = valid ? 16 : 0;  // 0: zero-fill the destination
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(bytes));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
__device__ __forceinline__ void cp_async_wait_all() { asm volatile("cp.async.wait_group 0;\n" ::); }

__device__ __forceinline__ void ldmatrix_x4(uint32_t* r, uint32_t addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t* r, uint32_t addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}

__device__ __forceinline__ float ex2(float x) {  // 2^x; -inf gives +0
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
  return y;
}

// Whether key `key` (interval lo..hi, already loaded) is visible to the query at `pos`, with the
// optional block selection (`sel` of this (batch, query head); q_end: one past the last query).
__device__ __forceinline__ bool visible(int lo, int hi, int pos, const uint8_t* sel, int64_t sel_stride_q, int tile,
                                        int block, int q_end) {
  bool vis = lo <= pos && pos < hi;
  if (sel != nullptr) vis = vis && pos < q_end && sel[static_cast<int64_t>(pos / block) * sel_stride_q + tile] != 0;
  return vis;
}

// One round of listing. Listed tiles are kSub consecutive summarised tiles of `block` keys
// (n_sub of those in all). Of the listed tiles [base, base + kThreads), those some query row in
// [q_first, q_last] can see go to s_list in order, as tile | 0x80000000 when they need
// per-element masks (tiles visible to every row, complete and fully selected, need none).
// Returns how many. Every thread of the block calls it; s_warp_count has kThreads / 32 slots.
template <int kThreads, int kSub = 1>
__device__ __forceinline__ int list_tiles(const int4* summ, int n_sub, int base, int q_first, int q_last, int kv_len,
                                          int block, const uint8_t* sel, int64_t sel_stride_q, int* s_list,
                                          int* s_warp_count) {
  constexpr int kWarps = kThreads / 32;
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const int n_tiles = (n_sub + kSub - 1) / kSub;
  int entry = -1;
  const int t = base + tid;
  if (t < n_tiles) {
    int4 s = summ[t * kSub];  // min lo, max lo, min hi, max hi
#pragma unroll
    for (int u = 1; u < kSub; ++u) {
      if (t * kSub + u < n_sub) {
        const int4 x = summ[t * kSub + u];
        s = make_int4(min(s.x, x.x), max(s.y, x.y), min(s.z, x.z), max(s.w, x.w));
      }
    }
    bool any = !(s.x > q_last || s.w <= q_first);
    const bool complete = (t + 1) * kSub * block <= kv_len;
    bool full = complete && s.y <= q_first && s.z > q_last;
    if (any && sel != nullptr) {  // block selection: some / every (query block, key block) pair chose it
      bool some = false, every = true;
      for (int qb = q_first / block; qb <= q_last / block; ++qb) {
#pragma unroll
        for (int u = 0; u < kSub; ++u) {
          if (t * kSub + u < n_sub) {
            const bool v = sel[static_cast<int64_t>(qb) * sel_stride_q + t * kSub + u] != 0;
            some |= v;
            every &= v;
          }
        }
      }
      any = some;
      full = full && every;
    }
    if (any) entry = t | (full ? 0 : int(0x80000000u));
  }
  const unsigned ballot = __ballot_sync(0xffffffffu, entry != -1);
  if (lane == 0) s_warp_count[warp] = __popc(ballot);
  __syncthreads();
  int offset = 0, count = 0;
#pragma unroll
  for (int w = 0; w < kWarps; ++w) {
    offset += w < warp ? s_warp_count[w] : 0;
    count += s_warp_count[w];
  }
  if (entry != -1) s_list[offset + __popc(ballot & ((1u << lane) - 1))] = entry;
  __syncthreads();
  return count;
}

// The tensor-core (wgmma, sm_90a) variant for head dim 128 with key tiles of `tile_keys` (64 or
// 128); defined in interval_attention_wgmma.cu.
void launch_interval_wgmma(const IntervalParams& p, Dtype dtype, const int4* summary, int tile_keys, cudaStream_t stream);

}  // namespace lcb::attn::cuda::detail
