// Hopper warpgroup MMA (wgmma) wrappers and shared-memory descriptors, sm_90a. Operands in shared
// memory are in the 128-byte swizzled layout TMA writes: a [rows][128] tile of 16-bit elements is
// two column halves of 64 elements, each [rows][128 B], 16-byte chunk c of row r at c ^ (r & 7),
// 1024-byte aligned. A K-major operand's k-step kk (16 elements) starts at half kk / 4, byte
// (kk % 4)·32 of the row.
#pragma once

#include "attention_impls/cuda/common.cuh"

namespace lcb::attn::cuda::detail {

#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
// One wrapper per shape and operand source, defined for bf16 (T = __nv_bfloat16, PTX type "bf16")
// and fp16 (__half, "f16"); the unused pointer argument picks the overload.
// The accumulator operands d[0 .. n-1], read and written ("+f"), in order.
#define LCB_WGMMA_ACC8(d, i)                                                                                    \
  "+f"(d[i]), "+f"(d[i + 1]), "+f"(d[i + 2]), "+f"(d[i + 3]), "+f"(d[i + 4]), "+f"(d[i + 5]), "+f"(d[i + 6]), \
      "+f"(d[i + 7])
#define LCB_WGMMA_ACC32(d) LCB_WGMMA_ACC8(d, 0), LCB_WGMMA_ACC8(d, 8), LCB_WGMMA_ACC8(d, 16), LCB_WGMMA_ACC8(d, 24)
#define LCB_WGMMA_ACC64(d) \
  LCB_WGMMA_ACC32(d), LCB_WGMMA_ACC8(d, 32), LCB_WGMMA_ACC8(d, 40), LCB_WGMMA_ACC8(d, 48), LCB_WGMMA_ACC8(d, 56)
// S (64 x 64) = A (64 x 16, shared, K-major) x B (16 x 64, shared, K-major).
#define LCB_WGMMA_SS_N64(T, TY) \
  __device__ __forceinline__ void wgmma_ss_n64(float* d, uint64_t desc_a, uint64_t desc_b, int scale_d, const T*) { \
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %34, 0;\n" \
                 "wgmma.mma_async.sync.aligned.m64n64k16.f32." TY "." TY " {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, %32, %33, p, 1, 1, 0, 0;\n}\n" \
                 : LCB_WGMMA_ACC32(d) \
                 : "l"(desc_a), "l"(desc_b), "r"(scale_d)); \
  }
// O (64 x 128) += A (64 x 16, registers) x B (16 x 128, shared, MN-major).
#define LCB_WGMMA_RS_N128(T, TY) \
  __device__ __forceinline__ void wgmma_rs_n128(float* d, const uint32_t* a, uint64_t desc_b, int scale_d, const T*) { \
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %69, 0;\n" \
                 "wgmma.mma_async.sync.aligned.m64n128k16.f32." TY "." TY \
                 " {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, {%64, %65, %66, %67}, %68, p, 1, 1, 1;\n}\n" \
                 : LCB_WGMMA_ACC64(d) \
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc_b), "r"(scale_d)); \
  }
// S (64 x 128) = A (64 x 16, shared, K-major) x B (16 x 128, shared, K-major).
#define LCB_WGMMA_SS_N128(T, TY) \
  __device__ __forceinline__ void wgmma_ss_n128(float* d, uint64_t desc_a, uint64_t desc_b, int scale_d, const T*) { \
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n" \
                 "wgmma.mma_async.sync.aligned.m64n128k16.f32." TY "." TY " {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, %64, %65, p, 1, 1, 0, 0;\n}\n" \
                 : LCB_WGMMA_ACC64(d) \
                 : "l"(desc_a), "l"(desc_b), "r"(scale_d)); \
  }
// S (64 x 64) += A (64 x 16, registers) x B (16 x 64, shared, K-major).
#define LCB_WGMMA_RS_N64(T, TY) \
  __device__ __forceinline__ void wgmma_rs_n64(float* d, const uint32_t* a, uint64_t desc_b, int scale_d, const T*) { \
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %37, 0;\n" \
                 "wgmma.mma_async.sync.aligned.m64n64k16.f32." TY "." TY \
                 " {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, {%32, %33, %34, %35}, %36, p, 1, 1, 0;\n}\n" \
                 : LCB_WGMMA_ACC32(d) \
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc_b), "r"(scale_d)); \
  }
LCB_WGMMA_SS_N64(__nv_bfloat16, "bf16")
LCB_WGMMA_SS_N64(__half, "f16")
LCB_WGMMA_RS_N128(__nv_bfloat16, "bf16")
LCB_WGMMA_RS_N128(__half, "f16")
LCB_WGMMA_SS_N128(__nv_bfloat16, "bf16")
LCB_WGMMA_SS_N128(__half, "f16")
LCB_WGMMA_RS_N64(__nv_bfloat16, "bf16")
LCB_WGMMA_RS_N64(__half, "f16")
#undef LCB_WGMMA_SS_N64
#undef LCB_WGMMA_RS_N128
#undef LCB_WGMMA_SS_N128
#undef LCB_WGMMA_RS_N64
#undef LCB_WGMMA_ACC64
#undef LCB_WGMMA_ACC32
#undef LCB_WGMMA_ACC8

__device__ __forceinline__ void wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void wgmma_commit() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
// Returns once at most N of this warpgroup's committed wgmma groups are still running.
template <int N>
__device__ __forceinline__ void wgmma_wait() {
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
}
__device__ __forceinline__ void wgmma_wait_all() { wgmma_wait<0>(); }
// Orders this thread's earlier generic-proxy writes of shared memory (stores, cp.async) before
// later async-proxy reads (wgmma operands); a barrier then publishes them to the warpgroup.
__device__ __forceinline__ void fence_proxy_async() { asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory"); }
#endif

// wgmma shared-memory descriptor: start address, leading / stride byte offsets, 128 B swizzle.
__device__ __forceinline__ uint64_t smem_desc(const void* p, uint32_t lbo, uint32_t sbo) {
  const uint32_t a = smem_addr(p);
  return static_cast<uint64_t>((a >> 4) & 0x3FFF) | (static_cast<uint64_t>((lbo >> 4) & 0x3FFF) << 16) |
         (static_cast<uint64_t>((sbo >> 4) & 0x3FFF) << 32) | (1ull << 62);
}

// Copies kRows rows of kD (64 or 128) 16-bit elements into a swizzled tile with cp.async (the
// caller commits and waits): row r from row_ptr(r) when r < valid, zero-filled otherwise (reading
// nothing from `fallback`). The threads are those of a CTA of kThreads.
template <typename T, int kD, int kRows, int kThreads, typename RowPtr>
__device__ __forceinline__ void load_rows_swizzled(unsigned char* dst, RowPtr row_ptr, int valid, const T* fallback) {
  for (int c = threadIdx.x; c < kRows * (kD / 8); c += kThreads) {
    const int r = c / (kD / 8), ch = c % (kD / 8), half = ch / 8;
    const bool ok = r < valid;
    const int at = half * kRows * 128 + r * 128 + (((ch % 8) ^ (r & 7)) * 16);
    cp_async16(smem_addr(dst + at), ok ? row_ptr(r) + ch * 8 : fallback, ok);
  }
}

}  // namespace lcb::attn::cuda::detail
