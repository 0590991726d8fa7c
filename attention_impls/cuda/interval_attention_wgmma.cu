// Visibility-interval attention on Hopper's warpgroup MMA (wgmma, sm_90a), head dim 128.
//
// The same algorithm as interval_attention.cu (tile summaries, the list of visible key tiles,
// unmasked full tiles, heaviest query tiles first, cp.async double buffering), with the two
// GEMMs on wgmma: one CTA = 128 query rows = two warpgroups of 64 rows (64 rows, one warpgroup, for
// block selections), key tiles of 64 or 128. S = Q·K^T reads Q and K
// from shared memory (m64n64k16, both K-major); O += P·V takes P from registers (the S
// accumulators rounded to 16 bits) and V from shared memory as an MN-major operand
// (m64n128k16). Tiles are stored in the 128-byte swizzled layout wgmma reads: a [rows][128]
// tile is two column halves of 64 elements, each [rows][128 B], 16-byte chunk c of row r at
// c ^ (r & 7), 1024-byte aligned.
#include "attention_impls/cuda/common.cuh"

namespace lcb::attn::cuda::detail {
namespace {

constexpr int kD = 128;
constexpr int kSummaryKeys = 64;  // keys per summarised tile (and per topk_block selection block)
constexpr int kRowBytes = 128;    // one swizzled half-row
// kWG warpgroups of 64 query rows per CTA (2; 1 for block-sparse selections, whose query
// blocks are 64 rows: each warpgroup's tiles are then all-or-nothing), kBN keys per tile.
template <int kBN, int kWG>
constexpr size_t smem_bytes() {
  return 64 * kWG * kD * 2 + 4 * static_cast<size_t>(kBN) * kD * 2 + 1024;  // + alignment slack
}

#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
// S (64 x 64) = A (64 x 16, shared, K-major) x B (16 x 64, shared, K-major), bf16.
__device__ __forceinline__ void wgmma_ss_n64(float* d, uint64_t desc_a, uint64_t desc_b, int scale_d, const __nv_bfloat16*) {
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %34, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, %32, %33, p, 1, 1, 0, 0;\n}\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])
        : "l"(desc_a), "l"(desc_b), "r"(scale_d));
}

// O (64 x 128) += A (64 x 16, registers) x B (16 x 128, shared, MN-major), bf16.
__device__ __forceinline__ void wgmma_rs_n128(float* d, const uint32_t* a, uint64_t desc_b, int scale_d, const __nv_bfloat16*) {
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %69, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, {%64, %65, %66, %67}, %68, p, 1, 1, 1;\n}\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc_b), "r"(scale_d));
}

// S (64 x 64) = A (64 x 16, shared, K-major) x B (16 x 64, shared, K-major), f16.
__device__ __forceinline__ void wgmma_ss_n64(float* d, uint64_t desc_a, uint64_t desc_b, int scale_d, const __half*) {
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %34, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n64k16.f32.f16.f16 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, %32, %33, p, 1, 1, 0, 0;\n}\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])
        : "l"(desc_a), "l"(desc_b), "r"(scale_d));
}

// O (64 x 128) += A (64 x 16, registers) x B (16 x 128, shared, MN-major), f16.
__device__ __forceinline__ void wgmma_rs_n128(float* d, const uint32_t* a, uint64_t desc_b, int scale_d, const __half*) {
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %69, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n128k16.f32.f16.f16 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, {%64, %65, %66, %67}, %68, p, 1, 1, 1;\n}\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc_b), "r"(scale_d));
}

// S (64 x 128) = A (64 x 16, shared, K-major) x B (16 x 128, shared, K-major), bf16.
__device__ __forceinline__ void wgmma_ss_n128(float* d, uint64_t desc_a, uint64_t desc_b, int scale_d, const __nv_bfloat16*) {
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, %64, %65, p, 1, 1, 0, 0;\n}\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
        : "l"(desc_a), "l"(desc_b), "r"(scale_d));
}

// S (64 x 128) = A (64 x 16, shared, K-major) x B (16 x 128, shared, K-major), f16.
__device__ __forceinline__ void wgmma_ss_n128(float* d, uint64_t desc_a, uint64_t desc_b, int scale_d, const __half*) {
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n128k16.f32.f16.f16 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, %64, %65, p, 1, 1, 0, 0;\n}\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
        : "l"(desc_a), "l"(desc_b), "r"(scale_d));
}

__device__ __forceinline__ void wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void wgmma_commit() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void wgmma_wait_all() { asm volatile("wgmma.wait_group.sync.aligned 0;\n" ::: "memory"); }
// Makes this thread's completed cp.async writes visible to the async proxy wgmma reads through.
__device__ __forceinline__ void fence_proxy_async() { asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory"); }
#endif

// Byte offset of 16-byte chunk `chunk` (0..15) of row r in a swizzled [ROWS][128] tile.
template <int ROWS>
__device__ __forceinline__ int swz128(int r, int chunk) {
  return (chunk >> 3) * ROWS * kRowBytes + r * kRowBytes + (((chunk & 7) ^ (r & 7)) << 4);
}

template <typename T, int ROWS, int kThreads>
__device__ __forceinline__ void load_tile128(unsigned char* tile, const T* base, int64_t stride, int row0, int len) {
  for (int c = threadIdx.x; c < ROWS * 16; c += kThreads) {
    const int r = c >> 4, ch = c & 15;
    const bool valid = row0 + r < len;
    const T* src = base + (valid ? static_cast<int64_t>(row0 + r) * stride + ch * 8 : 0);
    cp_async16(smem_addr(tile + swz128<ROWS>(r, ch)), src, valid);
  }
}

// wgmma shared-memory descriptor: start address, leading / stride byte offsets, 128 B swizzle.
__device__ __forceinline__ uint64_t smem_desc(const void* p, uint32_t lbo, uint32_t sbo) {
  const uint32_t a = smem_addr(p);
  return static_cast<uint64_t>((a >> 4) & 0x3FFF) | (static_cast<uint64_t>((lbo >> 4) & 0x3FFF) << 16) |
         (static_cast<uint64_t>((sbo >> 4) & 0x3FFF) << 32) | (1ull << 62);
}

// kBN keys per tile: 64 or 128 (two summarised tiles per listed tile); kWG warpgroups.
template <typename T, int kBN, int kWG>
__global__ void __launch_bounds__(128 * kWG, 2 / kWG) interval_wgmma_kernel(IntervalParams p, const int4* __restrict__ summary) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  constexpr int kBM = 64 * kWG, kThreadsW = 128 * kWG;
  constexpr int kTileBytesQ = kBM * kD * 2;
  constexpr int kTileBytesKV = kBN * kD * 2;
  constexpr int kSub = kBN / kSummaryKeys;
  extern __shared__ unsigned char smem_raw[];
  unsigned char* sq = reinterpret_cast<unsigned char*>((reinterpret_cast<uintptr_t>(smem_raw) + 1023) & ~uintptr_t(1023));
  unsigned char* sk = sq + kTileBytesQ;      // 2 buffers
  unsigned char* sv = sk + 2 * kTileBytesKV;  // 2 buffers
  __shared__ int s_list[kThreadsW];
  __shared__ int s_warp_count[kThreadsW / 32];

  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const int wg = warp / 4, wq = warp % 4;  // warpgroup, warp within it
  const int g = lane / 4, tig = lane % 4;
  const int m_tiles = (p.q_len + kBM - 1) / kBM;
  const int m_tile = m_tiles - 1 - blockIdx.x;  // heaviest first
  const int hq = blockIdx.y, b = blockIdx.z;
  const int hkv = hq / (p.q_heads / p.kv_heads);
  const int m0 = m_tile * kBM;
  const int q_first = p.q_pos0 + m0;
  const int q_end = p.q_pos0 + p.q_len;
  const int q_last = p.q_pos0 + min(m0 + kBM, p.q_len) - 1;
  const int row_base = wg * 64 + wq * 16 + g;  // this thread's rows: row_base and row_base + 8
  const int pos_base = q_first + row_base;

  const T* qbase = static_cast<const T*>(p.q) + b * p.q_st.b + hq * p.q_st.h;
  const T* kbase = static_cast<const T*>(p.k) + b * p.k_st.b + hkv * p.k_st.h;
  const T* vbase = static_cast<const T*>(p.v) + b * p.v_st.b + hkv * p.v_st.h;
  const int32_t* lo = p.lo + b * p.iv_stride_b + hkv * p.iv_stride_h;
  const int32_t* hi = p.hi + b * p.iv_stride_b + hkv * p.iv_stride_h;
  const uint8_t* sel = p.block_sel ? p.block_sel + b * p.sel_stride_b + hq * p.sel_stride_h : nullptr;
  const int n_sub = (p.kv_len + kSummaryKeys - 1) / kSummaryKeys;
  const int n_tiles = (n_sub + kSub - 1) / kSub;
  const int4* summ = summary + static_cast<int64_t>(b * p.kv_heads + hkv) * n_sub;

  load_tile128<T, kBM, kThreadsW>(sq, qbase, p.q_st.l, m0, p.q_len);
  cp_async_commit();

  float o[kD / 2];
#pragma unroll
  for (int i = 0; i < kD / 2; ++i) o[i] = 0.f;
  float row_max[2] = {-INFINITY, -INFINITY}, row_sum[2] = {0.f, 0.f};
  const float scale_log2 = p.scale * 1.4426950408889634f;

  int it = 0;
  for (int base = 0; base < n_tiles; base += kThreadsW) {
    const int count = list_tiles<kThreadsW, kSub>(summ, n_sub, base, q_first, q_last, p.kv_len, kSummaryKeys, sel,
                                                  p.sel_stride_q, s_list, s_warp_count);
    if (count > 0) {
      const int t0 = s_list[0] & 0x7fffffff;
      load_tile128<T, kBN, kThreadsW>(sk + (it & 1) * kTileBytesKV, kbase, p.k_st.l, t0 * kBN, p.kv_len);
      load_tile128<T, kBN, kThreadsW>(sv + (it & 1) * kTileBytesKV, vbase, p.v_st.l, t0 * kBN, p.kv_len);
      cp_async_commit();
    }
    for (int i = 0; i < count; ++i, ++it) {
      cp_async_wait_all();
      fence_proxy_async();
      __syncthreads();  // tile i (and Q) visible to every warpgroup; the other buffer is free
      if (i + 1 < count) {
        const int tn = s_list[i + 1] & 0x7fffffff;
        load_tile128<T, kBN, kThreadsW>(sk + ((it + 1) & 1) * kTileBytesKV, kbase, p.k_st.l, tn * kBN, p.kv_len);
        load_tile128<T, kBN, kThreadsW>(sv + ((it + 1) & 1) * kTileBytesKV, vbase, p.v_st.l, tn * kBN, p.kv_len);
        cp_async_commit();
      }
      const int e = s_list[i];
      const int tile = e & 0x7fffffff;
      const unsigned char* ck = sk + (it & 1) * kTileBytesKV;
      const unsigned char* cv = sv + (it & 1) * kTileBytesKV;

      // S = Q K^T (64 rows of this warpgroup x kBN keys), 8 steps of 16 along the head dim.
      float s[kBN / 2];
#pragma unroll
      for (int j = 0; j < kBN / 2; ++j) s[j] = 0.f;
      wgmma_fence();
#pragma unroll
      for (int kk = 0; kk < kD / 16; ++kk) {
        const int half = kk >> 2, off = (kk & 3) * 32;
        const uint64_t da = smem_desc(sq + half * kBM * kRowBytes + wg * 64 * kRowBytes + off, 16, 1024);
        const uint64_t db = smem_desc(ck + half * kBN * kRowBytes + off, 16, 1024);
        if constexpr (kBN == 64) {
          wgmma_ss_n64(s, da, db, kk > 0 ? 1 : 0, static_cast<const T*>(nullptr));
        } else {
          wgmma_ss_n128(s, da, db, kk > 0 ? 1 : 0, static_cast<const T*>(nullptr));
        }
      }
      wgmma_commit();
      wgmma_wait_all();

      if (e < 0) {  // per-element visibility
        const int key0 = tile * kBN;
#pragma unroll
        for (int j = 0; j < kBN / 8; ++j) {
#pragma unroll
          for (int c = 0; c < 2; ++c) {
            const int key = key0 + j * 8 + tig * 2 + c;
            int a = kNever, z = -kNever;
            if (key < p.kv_len) {
              a = lo[key];
              z = hi[key];
            }
#pragma unroll
            for (int r = 0; r < 2; ++r) {
              if (!visible(a, z, pos_base + r * 8, sel, p.sel_stride_q, key / kSummaryKeys, kSummaryKeys, q_end)) {
                s[j * 4 + r * 2 + c] = -INFINITY;
              }
            }
          }
        }
      }
      // Online softmax (base 2) of rows row_base and row_base + 8. Kept inline rather than on
      // common.cuh's softmax_tile(): a version on the helpers (with its tile list built up front)
      // measured 8% slower in the same process (BENCHMARKS.md), and which part cost it is not yet known.
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        float mx = -INFINITY;
#pragma unroll
        for (int j = 0; j < kBN / 8; ++j) mx = fmaxf(mx, fmaxf(s[j * 4 + r * 2], s[j * 4 + r * 2 + 1]));
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
        const float m_new = fmaxf(row_max[r], mx * scale_log2);
        const float m_use = m_new == -INFINITY ? 0.f : m_new;
        const float corr = ex2(row_max[r] - m_use);
        row_max[r] = m_new;
        row_sum[r] *= corr;
#pragma unroll
        for (int j = 0; j < kD / 8; ++j) {
          o[j * 4 + r * 2] *= corr;
          o[j * 4 + r * 2 + 1] *= corr;
        }
#pragma unroll
        for (int j = 0; j < kBN / 8; ++j) {
#pragma unroll
          for (int c = 0; c < 2; ++c) {
            const float pv = ex2(fmaf(s[j * 4 + r * 2 + c], scale_log2, -m_use));
            s[j * 4 + r * 2 + c] = pv;
            row_sum[r] += pv;
          }
        }
      }
      // O += P V, 4 steps of 16 keys; P's A fragments are two key octets of the S accumulators.
      wgmma_fence();
#pragma unroll
      for (int kc = 0; kc < kBN / 16; ++kc) {
        uint32_t a[4];
        a[0] = Mma<T>::pack(s[(2 * kc) * 4 + 0], s[(2 * kc) * 4 + 1]);
        a[1] = Mma<T>::pack(s[(2 * kc) * 4 + 2], s[(2 * kc) * 4 + 3]);
        a[2] = Mma<T>::pack(s[(2 * kc + 1) * 4 + 0], s[(2 * kc + 1) * 4 + 1]);
        a[3] = Mma<T>::pack(s[(2 * kc + 1) * 4 + 2], s[(2 * kc + 1) * 4 + 3]);
        // V as MN-major B: 64-column halves of the head dim kBN rows apart (LBO), 8-key groups
        // 1024 B apart (SBO).
        const uint64_t db = smem_desc(cv + kc * 16 * kRowBytes, kBN * kRowBytes, 1024);
        wgmma_rs_n128(o, a, db, 1, static_cast<const T*>(nullptr));
      }
      wgmma_commit();
      wgmma_wait_all();
    }
    __syncthreads();  // the list is rewritten by the next round
  }

  T* obase = static_cast<T*>(p.out) + b * p.o_st.b + hq * p.o_st.h;
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    float l = row_sum[r];
    l += __shfl_xor_sync(0xffffffffu, l, 1);
    l += __shfl_xor_sync(0xffffffffu, l, 2);
    const float inv = l > 0.f ? 1.f / l : 0.f;
    const int row = m0 + row_base + r * 8;
    if (row < p.q_len) {
      T* dst = obase + static_cast<int64_t>(row) * p.o_st.l + tig * 2;
#pragma unroll
      for (int j = 0; j < kD / 8; ++j) Mma<T>::store2(dst + j * 8, o[j * 4 + r * 2] * inv, o[j * 4 + r * 2 + 1] * inv);
    }
  }
#else
  __trap();  // built without sm_90a
#endif
}

template <typename T, int kBN, int kWG>
void launch(const IntervalParams& p, const int4* summary, cudaStream_t stream) {
  constexpr size_t smem = smem_bytes<kBN, kWG>();
  check(cudaFuncSetAttribute(interval_wgmma_kernel<T, kBN, kWG>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                             static_cast<int>(smem)),
        "wgmma shared memory attribute");
  const dim3 grid((p.q_len + 64 * kWG - 1) / (64 * kWG), p.q_heads, p.batch);
  interval_wgmma_kernel<T, kBN, kWG><<<grid, 128 * kWG, smem, stream>>>(p, summary);
  check(cudaGetLastError(), "wgmma launch");
}

}  // namespace

void launch_interval_wgmma(const IntervalParams& p, Dtype dtype, const int4* summary, WgmmaShape shape,
                           cudaStream_t stream) {
  const bool bf16 = dtype == Dtype::kBFloat16;
  switch (shape) {
    case WgmmaShape::kRows128Keys128:
      return bf16 ? launch<__nv_bfloat16, 128, 2>(p, summary, stream) : launch<__half, 128, 2>(p, summary, stream);
    case WgmmaShape::kRows128Keys64:
      return bf16 ? launch<__nv_bfloat16, 64, 2>(p, summary, stream) : launch<__half, 64, 2>(p, summary, stream);
    case WgmmaShape::kRows64Keys64:
      return bf16 ? launch<__nv_bfloat16, 64, 1>(p, summary, stream) : launch<__half, 64, 1>(p, summary, stream);
  }
}

}  // namespace lcb::attn::cuda::detail
