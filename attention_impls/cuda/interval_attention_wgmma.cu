// Visibility-interval attention on Hopper (sm_90a), head dim 128: warpgroup MMA (wgmma), TMA
// loads and mbarrier pipelines.
//
// The same algorithm as interval_attention.cu (tile summaries, the list of visible key tiles,
// unmasked full tiles, heaviest query tiles first), in persistent CTAs that take query tiles in
// turn. One CTA = kWG consumer warpgroups of 64 query rows (2; 1 for block selections, whose query
// blocks are 64 rows, so that each warpgroup's tiles are all-or-nothing) and one producer warp
// (with two consumer warpgroups, the working warp of a producer warpgroup that gives its
// registers to the consumers) that lists the visible key tiles and loads Q and those K/V tiles
// with TMA into kStages buffers, signalling full/empty mbarriers per stage. The consumers leave
// each item's output, normalised, in its Q buffer, and the producer stores it with TMA before the
// buffer takes a new Q. S = Q·K^T reads Q and K from shared memory (m64nNk16, both K-major);
// O += P·V takes P from registers (the S accumulators rounded to 16 bits) and V from shared
// memory as an MN-major operand (m64n128k16). Tiles are in the 128-byte swizzled layout both TMA
// and wgmma use: a [rows][128] tile is two column halves of 64 elements, each [rows][128 B],
// 16-byte chunk c of row r at c ^ (r & 7), 1024-byte aligned.
#include "attention_impls/cuda/common.cuh"
#include "attention_impls/cuda/topk_select.h"
#include "attention_impls/cuda/wgmma.cuh"

#include <cuda.h>
#include <cudaTypedefs.h>

#include <algorithm>
#include <cstdint>
#include <type_traits>

namespace lcb::attn::cuda::detail {
namespace {

constexpr int kD = 128;
constexpr int kSummaryKeys = 64;  // keys per summarised tile (and per topk_block selection block)
static_assert(kSummaryKeys == kSelectBlock, "summary_tiles() counts tiles of kSelectBlock keys");
constexpr int kRowBytes = 128;    // one swizzled half-row
// Exact top-k's candidates of a row (`capacity` words): the counts of the row's four lanes, then
// each lane's segment of this many words.
__host__ __device__ constexpr int candidate_segment(int capacity) { return (capacity - 4) / 4; }

#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
// mbarrier and TMA (cp.async.bulk.tensor) primitives.
__device__ __forceinline__ void mbar_init(uint64_t* bar, int count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(smem_addr(bar)), "r"(count) : "memory");
}
__device__ __forceinline__ void mbar_expect_tx(uint64_t* bar, uint32_t bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(smem_addr(bar)), "r"(bytes) : "memory");
}
__device__ __forceinline__ void mbar_arrive(uint64_t* bar) {
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(smem_addr(bar)) : "memory");
}
// Arrives when `pred` holds, without a branch.
__device__ __forceinline__ void mbar_arrive_if(uint64_t* bar, bool pred) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %1, 0;\n@p mbarrier.arrive.shared::cta.b64 _, [%0];\n}\n" ::"r"(smem_addr(bar)),
      "r"(static_cast<int>(pred))
      : "memory");
}
// Adds v to the shared word at `addr` when `pred` holds, else to the word at `sink` (a word of
// its own bank that nothing reads), without a branch: ptxas branches around a predicated shared
// atomic, which cost more than an atomic for every score, and an atomic into the sink meets no
// other lane's.
__device__ __forceinline__ void red_add_or_sink(uint32_t addr, uint32_t sink, uint32_t v, bool pred) {
  asm volatile("{\n.reg .pred p;\n.reg .u32 a;\nsetp.ne.b32 p, %3, 0;\nselp.u32 a, %0, %1, p;\nred.shared.add.u32 [a], %2;\n}\n" ::"r"(addr),
               "r"(sink), "r"(v), "r"(static_cast<int>(pred))
               : "memory");
}
// red_add_or_sink() with the test x >= floor.
__device__ __forceinline__ void red_add_at_least_or_sink(uint32_t addr, uint32_t sink, uint32_t v, float x, float floor) {
  asm volatile("{\n.reg .pred p;\n.reg .u32 a;\nsetp.ge.f32 p, %3, %4;\nselp.u32 a, %0, %1, p;\nred.shared.add.u32 [a], %2;\n}\n" ::"r"(addr),
               "r"(sink), "r"(v), "f"(x), "f"(floor)
               : "memory");
}
// Stores x's bits at *dst and steps dst on when lo <= x < end, without a branch.
__device__ __forceinline__ void copy_if_within(uint32_t*& dst, float x, float lo, float end) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ge.f32 p, %1, %2;\nsetp.lt.and.f32 p, %1, %3, p;\n@p st.global.b32 [%0], %1;\n"
      "@p add.u64 %0, %0, 4;\n}\n"
      : "+l"(dst)
      : "f"(x), "f"(lo), "f"(end)
      : "memory");
}
// Returns once the phase of parity `parity` has completed.
__device__ __forceinline__ void mbar_wait(uint64_t* bar, uint32_t parity) {
  uint32_t done = 0;
  while (!done) {
    asm volatile(
        "{\n.reg .pred p;\nmbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\nselp.u32 %0, 1, 0, p;\n}\n"
        : "=r"(done)
        : "r"(smem_addr(bar)), "r"(parity)
        : "memory");
  }
}
// Box (c0.., c1.., c2, c3) of a 4-d tensor map [B][H][L][D] (D innermost) into shared memory;
// completion counted in bytes on `bar`.
__device__ __forceinline__ void tma_load(void* dst, const CUtensorMap* map, uint64_t* bar, int c0, int c1, int c2,
                                         int c3) {
  asm volatile(
      "cp.async.bulk.tensor.4d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3, %4, %5}], [%6];\n" ::"r"(
          smem_addr(dst)),
      "l"(reinterpret_cast<uint64_t>(map)), "r"(c0), "r"(c1), "r"(c2), "r"(c3), "r"(smem_addr(bar))
      : "memory");
}
// Rows [row0, row0 + kRows) of (batch b, head h) of a [B][H][L][128] tensor map into a swizzled
// [kRows][128] tile (two 64-column halves, kRows rows apart), its bytes expected on `bar`.
template <int kRows>
__device__ __forceinline__ void tma_load_rows(unsigned char* dst, const CUtensorMap* map, uint64_t* bar, int row0,
                                              int h, int b) {
  mbar_expect_tx(bar, kRows * kD * 2);
  tma_load(dst, map, bar, 0, row0, h, b);
  tma_load(dst + kRows * kRowBytes, map, bar, 64, row0, h, b);
}

// Box (c0.., c1.., c2, c3) of a 4-d tensor map from shared memory (bulk group: completion waited
// for with bulk_wait_read()).
__device__ __forceinline__ void tma_store(const CUtensorMap* map, const void* src, int c0, int c1, int c2, int c3) {
  asm volatile(
      "cp.async.bulk.tensor.4d.global.shared::cta.bulk_group [%0, {%1, %2, %3, %4}], [%5];\n" ::"l"(
          reinterpret_cast<uint64_t>(map)),
      "r"(c0), "r"(c1), "r"(c2), "r"(c3), "r"(smem_addr(src))
      : "memory");
}
__device__ __forceinline__ void bulk_commit() { asm volatile("cp.async.bulk.commit_group;\n" ::: "memory"); }
// Returns once the committed bulk stores have read their shared memory / are complete.
__device__ __forceinline__ void bulk_wait_read() { asm volatile("cp.async.bulk.wait_group.read 0;\n" ::: "memory"); }
__device__ __forceinline__ void bulk_wait() { asm volatile("cp.async.bulk.wait_group 0;\n" ::: "memory"); }

// S = Q K^T for one warpgroup's 64 rows and kN keys from key k0 of a tile of kBN (issued, not
// waited for).
template <typename T, int kBN, int kBM, int kN = kBN>
__device__ __forceinline__ void issue_qk(float* s, const unsigned char* sq_wg, const unsigned char* ck, int k0 = 0) {
  static_assert(kN == 64 || kN == 128, "wgmma n64 or n128");
#pragma unroll
  for (int kk = 0; kk < kD / 16; ++kk) {
    const int half = kk >> 2, off = (kk & 3) * 32;
    const uint64_t da = smem_desc(sq_wg + half * kBM * kRowBytes + off, 16, 1024);
    const uint64_t db = smem_desc(ck + (half * kBN + k0) * kRowBytes + off, 16, 1024);
    if constexpr (kN == 64) {
      wgmma_ss_n64(s, da, db, kk > 0 ? 1 : 0, static_cast<const T*>(nullptr));
    } else {
      wgmma_ss_n128(s, da, db, kk > 0 ? 1 : 0, static_cast<const T*>(nullptr));
    }
  }
}

// Calls f(x, r, col) for each score of this thread in an m64nNk16 accumulator tile: x the score
// (by reference), r its row (0: the thread's row g, 1: g + 8), col its column less 2·tig.
template <int kN, typename F>
__device__ __forceinline__ void for_each_score(float* s, F&& f) {
#pragma unroll
  for (int j = 0; j < kN / 8; ++j)
#pragma unroll
    for (int r = 0; r < 2; ++r)
#pragma unroll
      for (int c = 0; c < 2; ++c) f(s[j * 4 + r * 2 + c], r, j * 8 + c);
}

// O += P V over kN keys from key k0 of a tile of kBN (issued, not waited for). V is an MN-major B
// operand: 64-column halves of the head dim kBN rows apart (LBO), 8-key groups 1024 B apart (SBO).
template <typename T, int kBN, int kN = kBN>
__device__ __forceinline__ void issue_pv(float* o, const uint32_t (*pa)[4], const unsigned char* cv, int k0 = 0) {
#pragma unroll
  for (int kc = 0; kc < kN / 16; ++kc) {
    const uint64_t db = smem_desc(cv + (k0 + kc * 16) * kRowBytes, kBN * kRowBytes, 1024);
    wgmma_rs_n128(o, pa[kc], db, 1, static_cast<const T*>(nullptr));
  }
}

// Packs P (kN keys) into the A fragments of the PV GEMM (two key octets of the S accumulators per
// 16 keys), while no wgmma reads pa.
template <typename T, int kN>
__device__ __forceinline__ void pack_p(const float* s, uint32_t (*pa)[4]) {
#pragma unroll
  for (int kc = 0; kc < kN / 16; ++kc) {
    pa[kc][0] = Mma<T>::pack(s[(2 * kc) * 4 + 0], s[(2 * kc) * 4 + 1]);
    pa[kc][1] = Mma<T>::pack(s[(2 * kc) * 4 + 2], s[(2 * kc) * 4 + 3]);
    pa[kc][2] = Mma<T>::pack(s[(2 * kc + 1) * 4 + 0], s[(2 * kc + 1) * 4 + 1]);
    pa[kc][3] = Mma<T>::pack(s[(2 * kc + 1) * 4 + 2], s[(2 * kc + 1) * 4 + 3]);
  }
}

// Normalises this warp's 16 output rows into the warp's own 16 rows of the item's Q buffer
// `sq_item` (which no wgmma reads any more), in the swizzled layout TMA stores them from (the
// producer does, store_output()). Consumer warp w holds rows 16·w .. 16·w + 15 of the query tile,
// this thread rows g and g + 8 of them; the 8 rows of one store sit in 8 different 16-byte chunks
// (no bank conflict).
template <typename T, int kBM>
__device__ __forceinline__ void stage_rows(const float (&o)[kD / 2], const float (&row_sum)[2], unsigned char* sq_item) {
  const int lane = threadIdx.x % 32, g = lane / 4, tig = lane % 4;
  unsigned char* stage = sq_item + threadIdx.x / 32 * 16 * kRowBytes;
  float inv[2];
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    float l = row_sum[r];
    l += __shfl_xor_sync(0xffffffffu, l, 1);
    l += __shfl_xor_sync(0xffffffffu, l, 2);
    inv[r] = l > 0.f ? 1.f / l : 0.f;
  }
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int row = g + r * 8;
#pragma unroll
    for (int j = 0; j < kD / 8; ++j) {  // columns j·8 + 2·tig, + 1: 16-byte chunk j % 8 of half j / 8
      unsigned char* dst = stage + (j / 8) * kBM * kRowBytes + row * kRowBytes + (((j % 8) ^ (row & 7)) << 4) + tig * 4;
      *reinterpret_cast<uint32_t*>(dst) = Mma<T>::pack(o[j * 4 + r * 2] * inv[r], o[j * 4 + r * 2 + 1] * inv[r]);
    }
  }
  fence_proxy_async();  // read by TMA
}

// The output rows of query tile qt, staged in Q buffer `sq_item` (stage_rows()), to global memory
// with TMA (rows past q_len are not written); returns once TMA has read the buffer.
template <int kBM>
__device__ __forceinline__ void store_output(const CUtensorMap* to, const unsigned char* sq_item, const QueryTile& qt) {
  tma_store(to, sq_item, 0, qt.m0, qt.hq, qt.b);
  tma_store(to, sq_item + kBM * kRowBytes, 64, qt.m0, qt.hq, qt.b);
  bulk_commit();
  bulk_wait_read();
}
#endif

// Persistent CTAs (kWG = 2) take query tiles in turn and hold two Q buffers; with one warpgroup
// (64-row tiles, two CTAs per SM) each CTA takes one tile, blockIdx.x, and the hardware overlaps
// one CTA's start with the other's work: persistent, the block selections' kernel measured 2-6%
// slower at 64K (BENCHMARKS.md).
template <int kWG>
constexpr bool kOneTilePerCta = kWG == 1;
template <int kWG>
constexpr int kQBuffers = kOneTilePerCta<kWG> ? 1 : 2;
// The producer: one warp; with two consumer warpgroups a whole warpgroup, of which the first warp
// works and the others leave, so that setmaxnreg can move registers from it to the consumers
// (168 each at 288 threads, at their limit; 224 after the move).
template <int kWG>
constexpr int kProducerThreads = kWG == 2 ? 128 : 32;
constexpr int kProducerRegs = 56, kConsumerRegs = 224;
// The moved registers must fit what the CTA got at launch (168 per thread at 384 threads): asking
// for more makes the consumers' setmaxnreg.inc wait forever.
static_assert(128 * kProducerRegs + 256 * kConsumerRegs <= 384 * (65536 / 384 / 8 * 8), "register file over-subscribed");

template <int kBN, int kWG, int kStages>
__host__ __device__ constexpr size_t tile_bytes() {  // the Q buffers, the K and V stages
  return kQBuffers<kWG> * 64 * kWG * kD * 2 + 2 * static_cast<size_t>(kStages) * kBN * kD * 2;
}

// Entries of the producer's tile list (tile_entry()'s, with the last of an item marked, and on
// 128-key tiles the masked ones of which the rows see one 64-key half marked with that half).
constexpr int kLastTile = 0x40000000;  // the item's last entry
constexpr int kHalfLo = 0x20000000;    // only keys 0 .. 63 of the tile can be visible
constexpr int kHalfHi = 0x10000000;    // only keys 64 .. 127
constexpr int kTileBits = 0x0fffffff;  // the tile; all set: the item has no visible tile

// tile_entry()'s entry `e` for 128-key tile t (summarised tiles 2t, 2t + 1), with kHalfLo or
// kHalfHi added when it is masked and the rows at positions [q_first, q_last] can see keys of
// only one of its halves: that half alone is computed. Within a query tile's band of visible keys
// (a window's or DGA's raw rows) the first and last tiles often have one half outside it.
__device__ __forceinline__ int with_halves(int e, const int4* summ, int n_sub, int t, int q_first, int q_last) {
  if (e >= 0 || e == -1) return e;  // whole, or not listed
  auto sees = [&](int u) {
    if (u >= n_sub) return false;
    const int4 x = summ[u];
    return !(x.x > q_last || x.w <= q_first);
  };
  const bool lo = sees(2 * t), hi = sees(2 * t + 1);
  return lo == hi ? e : e | (lo ? kHalfLo : kHalfHi);
}

// Persistent (two warpgroups; see kOneTilePerCta): one CTA per SM, taking query tiles from a
// global counter in query_tile()'s order (heaviest first within each head, heads in turn, so that
// the CTAs at work at one time read the same keys); with a second key source (IntervalParams::k2)
// the tiles from split on load through that source's maps. The producer warp works ahead across
// items: it takes the next item as soon as it has listed the current one, loads its Q into the
// other Q buffer, scans the key-tile summaries (the coarse ones, then the tiles of those its rows
// can see) and loads the visible tiles into kStages K/V buffers, passing each tile's entry (and
// each item's query tile) through shared memory, published by the mbarrier arrival that the
// consumers wait on. So one item's first tiles load while the consumers finish the last one, and
// nothing waits for a launch, a list or a first load between items. One consumer loop per
// warpgroup of 64 rows: S_i, wait, mask, softmax, wait for V_i, PV_i, wait, release the stage; a
// masked 128-key tile of which the rows see one 64-key half only (with_halves()) computes that
// half alone. Measured slower here and not kept (BENCHMARKS.md): issuing S_i with PV_{i-1} and
// taking turns between the two warpgroups at the GEMMs, as FlashAttention-3 does.
template <typename T, int kBN, int kWG, int kStages, bool kThr>
__global__ void __launch_bounds__(128 * kWG + kProducerThreads<kWG>, kWG == 1 ? 2 : 1)
    interval_ws_kernel(const __grid_constant__ IntervalParams p, const int4* __restrict__ summary, int* work_counter,
                       int n_items, const __grid_constant__ CUtensorMap tq, const __grid_constant__ CUtensorMap tk,
                       const __grid_constant__ CUtensorMap tv, const __grid_constant__ CUtensorMap to,
                       const __grid_constant__ CUtensorMap tk2, const __grid_constant__ CUtensorMap tv2) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  constexpr int kBM = 64 * kWG;
  constexpr int kTileBytesQ = kBM * kD * 2;
  constexpr int kTileBytesKV = kBN * kD * 2;
  constexpr int kSub = kBN / kSummaryKeys;
  constexpr int kScan = 8;  // tiles per producer lane and round of summary loads
  constexpr int kGroupTiles = kCoarseSub / kSub, kLaneTiles = kGroupTiles / 32;  // tiles per coarse summary, per lane
  static_assert(kScan % kLaneTiles == 0, "whole coarse summaries per round");
  constexpr int kQBufs = kQBuffers<kWG>;
  // Half tiles: on 128-key tiles without score bounds (and so without a block selection, whose
  // tiles are 64 keys).
  constexpr bool kHalves = kBN == 128 && !kThr;
  extern __shared__ unsigned char smem_raw[];
  unsigned char* sq = reinterpret_cast<unsigned char*>((reinterpret_cast<uintptr_t>(smem_raw) + 1023) & ~uintptr_t(1023));
  unsigned char* sk = sq + kQBufs * kTileBytesQ;
  unsigned char* sv = sk + kStages * kTileBytesKV;
  __shared__ __align__(8) uint64_t full_q[2], empty_q[2], full_k[kStages], full_v[kStages], empty[kStages];
  __shared__ int s_item[2], s_entry[kStages];
  __shared__ QueryTile s_tile[2];  // item s_item[i]'s query tile, for the consumers
  // Per consumer warpgroup, two buffers (alternating over its masked tiles): a masked tile's key
  // intervals, loaded one key per thread while S computes, instead of every thread loading the
  // intervals of all its 32 columns from global memory after it.
  __shared__ int2 s_iv[kWG][2][kBN];

  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const int n_sub = summary_tiles(p.kv_len);
  const int n_tiles = (n_sub + kSub - 1) / kSub;
  auto selection = [&](const QueryTile& qt) {
    return p.block_sel ? p.block_sel + qt.b * p.sel_stride_b + qt.hq * p.sel_stride_h : nullptr;
  };

  if (tid == 0) {
    for (int i = 0; i < 2; ++i) {
      mbar_init(&full_q[i], 1);
      mbar_init(&empty_q[i], kWG * 4);  // one arrival per consumer warp
    }
    for (int s = 0; s < kStages; ++s) {
      mbar_init(&full_k[s], 1);
      mbar_init(&full_v[s], 1);
      mbar_init(&empty[s], kWG * 4);
    }
    asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
  }
  __syncthreads();  // the last barrier over the whole CTA: producer warps may leave after it

  if (warp >= kWG * 4) {  // the producer warp: lane 0 waits and issues, the warp scans
    // (Each side's setmaxnreg inside its own branch: code reachable from both would have to fit
    // the smaller count, and ptxas would ignore them.)
    if constexpr (kProducerThreads<kWG> == 128) asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(kProducerRegs));
    if (warp > kWG * 4) return;
    // Keys from here on are rows of k2 / v2. (Decided once: testing p.k2 at every load made ptxas
    // serialise the consumers' wgmma, C7511.)
    const int split = p.k2 != nullptr ? p.split : INT_MAX;
    // (Here, not before the producer's branch: there it made ptxas serialise the consumers' wgmma.)
    const int n_coarse = coarse_summaries(p.kv_len);
    int use = 0;          // K/V stage uses so far
    for (int n = 0;; ++n) {
      const int qb = n % kQBufs;
      int item = 0;
      if (lane == 0) {
        if constexpr (kOneTilePerCta<kWG>) {
          item = n == 0 ? static_cast<int>(blockIdx.x) : n_items;
        } else {
          item = atomicAdd(work_counter, 1);
        }
        if (n >= kQBufs) {  // item n - kQBufs's output is staged in the buffer: stored, then the buffer is free
          mbar_wait(&empty_q[qb], ((n / kQBufs) - 1) & 1);
          store_output<kBM>(&to, sq + qb * kTileBytesQ, s_tile[qb]);
        }
        s_item[qb] = item;
        if (item < n_items) {
          const QueryTile qt = query_tile<kBM>(p, item);
          s_tile[qb] = qt;
          tma_load_rows<kBM>(sq + qb * kTileBytesQ, &tq, &full_q[qb], qt.m0, qt.hq, qt.b);
        } else {
          mbar_arrive(&full_q[qb]);  // no more work: the consumers read the item and stop
        }
      }
      item = __shfl_sync(0xffffffffu, item, 0);
      if (item >= n_items) {
        // The outputs of the items still staged (n - kQBufs + 1 .. n - 1), then the CTA may leave
        // once its stores are complete.
        if (lane == 0) {
          for (int j = max(0, n - kQBufs + 1); j < n; ++j) {
            mbar_wait(&empty_q[j % kQBufs], (j / kQBufs) & 1);
            store_output<kBM>(&to, sq + (j % kQBufs) * kTileBytesQ, s_tile[j % kQBufs]);
          }
          bulk_wait();
        }
        break;
      }
      const QueryTile qt = query_tile<kBM>(p, item);
      const int4* summ = summary + static_cast<int64_t>(qt.b * p.kv_heads + qt.hkv) * n_sub;
      // (coarse_summary_offset(), spelled with n_sub: the call made ptxas serialise the consumers' wgmma.)
      const int4* coarse = summary + static_cast<int64_t>(p.batch) * p.kv_heads * n_sub +
                           static_cast<int64_t>(qt.b * p.kv_heads + qt.hkv) * n_coarse;
      const uint8_t* sel = selection(qt);
      // Stage use `use` gets entry e and, unless the item has no visible tile, tile e's K and V.
      auto issue = [&](int e) {
        const int stage = use % kStages;
        if (use >= kStages) mbar_wait(&empty[stage], ((use / kStages) - 1) & 1);
        s_entry[stage] = e;  // published by the arrivals below (release), read after the waits
        if ((e & kTileBits) == kTileBits) {
          mbar_arrive(&full_k[stage]);
          mbar_arrive(&full_v[stage]);
        } else {
          const int key0 = (e & kTileBits) * kBN;
          const bool second = key0 >= split;  // a row of k2 / v2
          const int row0 = second ? key0 - split : key0;
          tma_load_rows<kBN>(sk + stage * kTileBytesKV, second ? &tk2 : &tk, &full_k[stage], row0, qt.hkv, qt.b);
          tma_load_rows<kBN>(sv + stage * kTileBytesKV, second ? &tv2 : &tv, &full_v[stage], row0, qt.hkv, qt.b);
        }
        ++use;
      };
      // The visible tiles in order; each is issued once the next is found, so that the last can
      // be marked. The coarse summaries first (32 a round), then the tiles of those any row can
      // see (kScan / kLaneTiles coarse summaries a round): a window's item reads the fine
      // summaries of two, not of every tile of the head.
      int pending = -1;
      for (int gbase = 0; gbase < n_coarse; gbase += 32) {
        const int4 c = gbase + lane < n_coarse ? coarse[gbase + lane] : make_int4(kNever, -kNever, kNever, -kNever);
        for (unsigned groups = __ballot_sync(0xffffffffu, !(c.x > qt.q_last || c.w <= qt.q_first)); groups != 0;) {
          int e[kScan];
#pragma unroll
          for (int jg = 0; jg < kScan / kLaneTiles; ++jg) {
            const int g = groups != 0 ? gbase + __ffs(groups) - 1 : -1;
            groups &= groups - 1;
#pragma unroll
            for (int jt = 0; jt < kLaneTiles; ++jt) {
              const int t = g * kGroupTiles + jt * 32 + lane;
              int& x = e[jg * kLaneTiles + jt];
              x = g >= 0 && t < n_tiles ? tile_entry<kSub>(summ, n_sub, t, qt.q_first, qt.q_last, p.kv_len, kSummaryKeys,
                                                           sel, p.sel_stride_q)
                                        : -1;
              if constexpr (kHalves) x = with_halves(x, summ, n_sub, t, qt.q_first, qt.q_last);
            }
          }
#pragma unroll
          for (int j = 0; j < kScan; ++j) {
            for (unsigned found = __ballot_sync(0xffffffffu, e[j] != -1); found != 0; found &= found - 1) {
              const int next = __shfl_sync(0xffffffffu, e[j], __ffs(found) - 1);
              if (lane == 0 && pending != -1) issue(pending);
              pending = next;
            }
          }
        }
      }
      if (lane == 0) issue(pending != -1 ? pending | kLastTile : kLastTile | kTileBits);
      __syncwarp();
    }
    return;
  }

  if constexpr (kProducerThreads<kWG> == 128) asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(kConsumerRegs));
  const int wg = warp / 4, wq = warp % 4, g = lane / 4, tig = lane % 4;
  const int row_base = wg * 64 + wq * 16 + g;  // this thread's rows: row_base and row_base + 8
  const int q_end = p.q_pos0 + p.q_len;
  const float scale_log2 = p.scale * 1.4426950408889634f;
  static_assert(kBN <= 128, "one key of a masked tile per thread of the warpgroup");
  const int t_wg = tid % 128;  // this thread's key of a masked tile
  float o[kD / 2], s[kBN / 2];
  uint32_t pa[kBN / 16][4];
  int use = 0, n_masked = 0;
  for (int n = 0;; ++n) {
    const int qb = n % kQBufs;
    mbar_wait(&full_q[qb], (n / kQBufs) & 1);
    const int item = s_item[qb];
    if (item >= n_items) break;
    // Few registers are free here: what masked tiles and the epilogue use comes from s_tile[qb]
    // where they need it.
    const QueryTile& qt = s_tile[qb];
    const unsigned char* sq_wg = sq + qb * kTileBytesQ + wg * 64 * kRowBytes;
#pragma unroll
    for (int i = 0; i < kD / 2; ++i) o[i] = 0.f;
    float row_max[2] = {-INFINITY, -INFINITY}, row_sum[2] = {0.f, 0.f}, corr[2];
    float thr[2] = {-INFINITY, -INFINITY};  // with kThr: the rows' bounds as scores
    if constexpr (kThr) {
#pragma unroll
      for (int r = 0; r < 2; ++r) {  // rows past the end read the last row's (no branch around the load)
        const int row = min(qt.m0 + row_base + r * 8, p.q_len - 1);
        thr[r] = topk::score_of_key(p.row_state[(static_cast<int64_t>(qt.b * p.q_heads + qt.hq) * p.q_len + row) * 4 + 3]);
      }
    }
    // The item's tiles, each in the stage `use` names: whole tiles (kN = kBN) and, with kHalves,
    // half tiles (kN = 64: S and P·V over the one 64-key half the rows can see, from key k0) in
    // loops of their own, one shape each (one loop branching between the shapes spilled).
    int e = 0;
    uint32_t stage = 0, phase = 0;
    auto next_entry = [&] {
      stage = use % kStages;
      phase = (use / kStages) & 1;
      ++use;
      mbar_wait(&full_k[stage], phase);
      e = s_entry[stage];
    };
    // Tile entry e in `stage`, whose K has landed: S, masks, softmax, P·V, release.
    auto process = [&](auto n_keys) {
      constexpr int kN = decltype(n_keys)::value;
      const int key0 = (e & kTileBits) * kBN, k0 = kN == kBN || (e & kHalfLo) != 0 ? 0 : kBN - kN;
      // A masked tile's interval of this thread's key, loaded before S is issued (its latency hides
      // behind the GEMM; past kv_len never visible).
      int2 iv = make_int2(kNever, -kNever);
      if (e < 0 && t_wg < kN && key0 + k0 + t_wg < p.kv_len) {
        const int64_t n = qt.b * p.iv_stride_b + qt.hkv * p.iv_stride_h + key0 + k0 + t_wg;
        iv = make_int2(p.lo[n], p.hi[n]);
      }
      wgmma_fence();
      issue_qk<T, kBN, kBM, kN>(s, sq_wg, sk + stage * kTileBytesKV, k0);
      wgmma_commit();
      wgmma_wait_all();
      if (e < 0) {
        int2* buf = s_iv[wg][n_masked++ & 1];
        if (t_wg < kN) buf[t_wg] = iv;
        group_sync<128>(1 + wg);  // the warpgroup's intervals stored; the other buffer is no longer read
        mask_tile_by<kN>(s, key0 + k0, [buf](int k) { return buf[k]; }, qt.q_first + row_base, selection(qt),
                         p.sel_stride_q, q_end, tig);
      }
      if constexpr (kThr) for_each_score<kN>(s, [&](float& x, int r, int) { x = x < thr[r] ? -INFINITY : x; });
      // Lazy maxima: most tiles move no row's maximum, and then no row of the warp needs rescaling.
      const bool moved = softmax_tile<kN, true>(s, row_max, row_sum, corr, scale_log2);
      pack_p<T, kN>(s, pa);
      if (__any_sync(0xffffffffu, moved)) rescale_o<kD>(o, corr);
      mbar_wait(&full_v[stage], phase);
      wgmma_fence();
      issue_pv<T, kBN, kN>(o, pa, sv + stage * kTileBytesKV, k0);
      wgmma_commit();
      wgmma_wait_all();
      __syncwarp();  // the warp's reads of the stage (and of its entry) precede lane 0's release
      if (lane == 0) mbar_arrive(&empty[stage]);
    };
    // An item without a visible tile: full_v's phase, arrived at too, is waited for as well (no
    // phase completes unobserved).
    auto finish_empty = [&] {
      mbar_wait(&full_v[stage], phase);
      __syncwarp();  // every lane has read the entry
      if (lane == 0) mbar_arrive(&empty[stage]);
    };
    if constexpr (!kHalves) {  // one shape: the plain loop (the two loops below measured 2-7% slower here)
      for (;;) {
        next_entry();
        if ((e & kTileBits) == kTileBits) {
          finish_empty();
          break;
        }
        process(std::integral_constant<int, kBN>{});
        if ((e & kLastTile) != 0) break;
      }
    } else {
      auto is_half = [&] { return (e & (kHalfLo | kHalfHi)) != 0; };
      next_entry();
      if ((e & kTileBits) == kTileBits) {
        finish_empty();
      } else {
        for (bool more = true; more;) {
          while (!is_half()) {
            process(std::integral_constant<int, kBN>{});
            if ((e & kLastTile) != 0) {
              more = false;
              break;
            }
            next_entry();
          }
          while (more && is_half()) {
            process(std::integral_constant<int, 64>{});
            if ((e & kLastTile) != 0) {
              more = false;
              break;
            }
            next_entry();
          }
        }
      }
    }
    // The warp's rows of Q take its output: the only wgmma that read them, the item's last S
    // (issued by the whole warpgroup together), is complete, as this warp waited for it.
    stage_rows<T, kBM>(o, row_sum, sq + qb * kTileBytesQ);
    __syncwarp();
    if (lane == 0) mbar_arrive(&empty_q[qb]);  // the output staged; s_tile[qb] no longer read
  }
#else
  __trap();  // built without sm_90a
#endif
}

// Exact top-k's radix select (topk_attention()); its arithmetic is topk_select.h's. Per row of
// [B, Hq, Lq] a topk::RowState as 4 words (lo, width, need, bound).
constexpr int kTopkStages = 3;

template <int kWG>
constexpr size_t topk_hist_bytes() {  // Q, the K stages, the histograms (excluding the tile list)
  constexpr int kStride = (kWG == 2 ? 128 : 256) + 1;
  return 1024 + 64 * kWG * kD * 2 + static_cast<size_t>(kTopkStages) * 128 * kD * 2 + 64 * kWG * kStride * 4;
}

// One level of the select for one query tile: S = Q·K^T over the visible (causal) key tiles as in
// the attention kernel (same wgmma sequence, so the same scores), each score of an open row
// counted in its row's histogram of 256 parts of the row's range, then one warp per row finds
// the part holding its need-th largest and updates the state. With two consumer warpgroups the
// counts are 16-bit, two to a word (rows of at most 65535 keys); with one, 32-bit.
// Candidates: a row whose first-level range holds at most capacity - 4 scores gets that count
// as its 4th word (open rows otherwise leave it 0); the second level then copies the bits of
// those scores into the row's `capacity` words of `cand` instead of counting them (in warps whose
// open rows all copy), and topk_finish_kernel completes its select from there.
// The producer: as the attention kernel's (kProducerThreads), so that with two consumer
// warpgroups setmaxnreg gives the consumers the registers of two score buffers.
template <typename T, int kWG>
__global__ void __launch_bounds__(128 * kWG + kProducerThreads<kWG>, 1)
    topk_hist_kernel(const __grid_constant__ IntervalParams p, const int4* __restrict__ summary, uint4* __restrict__ rows,
                     uint32_t* __restrict__ cand, int capacity, int level, int top_k,
                     const __grid_constant__ CUtensorMap tq, const __grid_constant__ CUtensorMap tk) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  constexpr int kBN = 128, kStages = kTopkStages, kBM = 64 * kWG, kThreads = 128 * kWG + kProducerThreads<kWG>;
  constexpr int kTileBytesQ = kBM * kD * 2, kTileBytesK = kBN * kD * 2, kSub = kBN / kSummaryKeys;
  constexpr bool kPacked = kWG == 2;
  constexpr int kStride = (kPacked ? 128 : 256) + 1;  // words per row, padded against bank conflicts
  extern __shared__ unsigned char smem_raw[];
  unsigned char* sq = reinterpret_cast<unsigned char*>((reinterpret_cast<uintptr_t>(smem_raw) + 1023) & ~uintptr_t(1023));
  unsigned char* sk = sq + kTileBytesQ;
  uint32_t* hist = reinterpret_cast<uint32_t*>(sk + kStages * kTileBytesK);
  int* s_list = reinterpret_cast<int*>(hist + kBM * kStride);
  __shared__ __align__(8) uint64_t full_q, full_k[kStages], empty[kStages];
  __shared__ int s_warp_count[kThreads / 32];
  __shared__ uint4 s_state[kBM];
  __shared__ uint32_t s_sink[32];  // red_add_or_sink()'s, one word per bank

  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const QueryTile qt = query_tile<kBM>(p);
  const int hq = qt.hq, b = qt.b, hkv = qt.hkv, m0 = qt.m0, q_first = qt.q_first, q_last = qt.q_last;
  uint4* state = rows + static_cast<int64_t>(b * p.q_heads + hq) * p.q_len + m0;

  bool open = false;
  if (tid < kBM) {
    uint4 st = make_uint4(0u, 0u, 0u, 0u);  // resolved, bound 0: every key kept
    if (m0 + tid < p.q_len) {
      if (level == 1) {
        const int n_vis = min(q_first + tid + 1, p.kv_len);
        if (n_vis > top_k) st.z = static_cast<uint32_t>(top_k);
        state[tid] = st;
      } else {
        st = state[tid];
      }
    }
    s_state[tid] = st;
    open = static_cast<int>(st.z) > 0;
  }
  if (!__syncthreads_or(open)) return;  // every row resolved: nothing loaded, nothing to do

  const int n_sub = summary_tiles(p.kv_len);
  const int n_tiles = (n_sub + kSub - 1) / kSub;
  const int4* summ = summary + static_cast<int64_t>(b * p.kv_heads + hkv) * n_sub;
  const bool producer = warp >= kWG * 4;
  const bool loader = warp == kWG * 4 && lane == 0;  // the producer's working lane
  for (int i = tid; i < kBM * kStride; i += kThreads) hist[i] = 0u;
  if (loader) {
    mbar_init(&full_q, 1);
    for (int st = 0; st < kStages; ++st) {
      mbar_init(&full_k[st], 1);
      mbar_init(&empty[st], kWG * 4);
    }
    asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
  }
  __syncthreads();
  if (loader) {
    tma_load_rows<kBM>(sq, &tq, &full_q, m0, hq, b);
  }
  int count = 0;
  for (int base = 0; base < n_tiles; base += kThreads) {
    count += list_tiles<kThreads, kSub>(summ, n_sub, base, q_first, q_last, p.kv_len, kSummaryKeys, nullptr, 0,
                                        s_list + count, s_warp_count);
  }

  if (producer) {
    if constexpr (kProducerThreads<kWG> == 128) asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(kProducerRegs));
    if (loader) {
      for (int i = 0; i < count; ++i) {
        const int stage = i % kStages;
        if (i >= kStages) mbar_wait(&empty[stage], ((i / kStages) - 1) & 1);
        tma_load_rows<kBN>(sk + stage * kTileBytesK, &tk, &full_k[stage], (s_list[i] & ~kMaskedTile) * kBN, hkv, b);
      }
    }
    return;
  }

  if constexpr (kProducerThreads<kWG> == 128) asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(kConsumerRegs));
  const int wg = warp / 4, wq = warp % 4, g = lane / 4, tig = lane % 4;
  const int row_base = wg * 64 + wq * 16 + g;
  const int pos_base = q_first + row_base;
  const unsigned char* sq_wg = sq + wg * 64 * kRowBytes;
  uint32_t r_lo[2], r_width[2];  // a later level counts the keys in [lo, lo + width), in parts of 2^shift
  int r_shift[2];
  // Candidates (second level, candidate_segment()): each lane holds a quarter of every tile's
  // scores of its rows and copies the bits of those in [r_lo_x, r_end_x), the row's range as
  // scores (NaN: a row that does not copy), into its segment as long as it has room.
  const int seg_cap = candidate_segment(capacity);
  bool r_open[2], r_copy[2];
  float r_lo_x[2], r_end_x[2];
  uint32_t* r_cand[2];
  int r_copied[2] = {0, 0};
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const uint4 st = s_state[row_base + r * 8];
    r_open[r] = static_cast<int>(st.z) > 0;
    r_copy[r] = level == 2 && r_open[r] && st.w != 0u;
    r_lo_x[r] = r_copy[r] ? topk::score_of_key(st.x) : __int_as_float(0x7fffffff);
    r_end_x[r] = r_copy[r] ? topk::score_of_key(st.x + st.y) : __int_as_float(0x7fffffff);
    r_cand[r] = cand + (static_cast<int64_t>(b * p.q_heads + hq) * p.q_len + m0 + row_base + r * 8) * capacity;
    r_lo[r] = st.x;
    r_width[r] = r_open[r] ? st.y : 0u;
    r_shift[r] = topk::level_shift(st.y);
  }
  // A warp copies when all its open rows do; otherwise its rows with candidates count as the
  // rest (their 4th word back to 0), since counting and copying together cost more than counting.
  const bool copy_all = __all_sync(0xffffffffu, (r_copy[0] || !r_open[0]) && (r_copy[1] || !r_open[1])) &&
                        __any_sync(0xffffffffu, r_copy[0] || r_copy[1]);
  if (!copy_all) {
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      if (r_copy[r] && tig == 0) s_state[row_base + r * 8].w = 0u;  // read again after bar.sync 1
      r_copy[r] = false;
    }
  }
  // The shared address of this thread's two rows' counts.
  const uint32_t hist_row[2] = {smem_addr(hist + row_base * kStride), smem_addr(hist + (row_base + 8) * kStride)};
  const uint32_t sink = smem_addr(s_sink + lane);
  // Part d of CTA row `row`; with 16-bit counts parts d and d + 128 share word d % 128 (far apart
  // in value, so that neighbouring common parts do not contend for one word).
  auto count_of = [&](int row, int d) -> uint32_t {
    const uint32_t* h = hist + row * kStride;
    if constexpr (kPacked) {
      return (h[d & 127] >> ((d >> 7) * 16)) & 0xffffu;
    } else {
      return h[d];
    }
  };
  // Counts part `bin` of CTA row `row` when `pred` holds: an atomic for every score, into the
  // sink where it does not count (red_add_or_sink()), and no branch. Even at the later levels,
  // where few scores fall in the row's range, a branch around the atomic per score cost more
  // (BENCHMARKS.md). The first level counts in the same way, spelled out below.
  auto add_if = [&](int row, bool pred, int bin) {
    // (A part computed for a score outside the row's range can lie past 255: the mask keeps even
    // that address inside the row, though the atomic then goes to the sink.)
    const uint32_t* word = &hist[row * kStride + (kPacked ? (bin & 127) : (bin & 255))];
    red_add_or_sink(smem_addr(word), sink, kPacked ? 1u << ((bin >> 7) * 16) : 1u, pred);
  };
  // First level: a row's need-th largest so far is a lower bound of its final one, so parts below
  // it never matter; scores there are not counted. Each warp owns its 16 rows' counts and raises
  // their floors every kFloorEvery tiles. A floor is kept as the smallest score of its range
  // (x >= it iff x's range is at or above the floor's, topk::score_of_key()), so that a score is
  // tested before its range is known; NaN for a resolved row (no score counts). Every score
  // costs an atomic either way (into the sink below the floor): a higher floor only spares the
  // rows' words some bank conflicts, and raising it costs a pick per row, so it is raised rarely
  // (at 16K, first pass: every 8 tiles 6.2 ms, 16 tiles 5.2, 32 tiles 4.65).
  constexpr int kFloorEvery = 32;
  float floor_x[2] = {r_open[0] ? -INFINITY : __int_as_float(0x7fffffff), r_open[1] ? -INFINITY : __int_as_float(0x7fffffff)};
  auto range_floor = [](int bin) {
    uint32_t lo, width;
    topk::first_level_range(bin, &lo, &width);
    return topk::score_of_key(lo);
  };
  auto raise_floors = [&] {
    __syncwarp();
    const int row0 = wg * 64 + wq * 16;
    for (int rr = 0; rr < 16; ++rr) {
      const int need = static_cast<int>(s_state[row0 + rr].z);
      if (need <= 0) continue;  // warp-uniform
      const int2 pick = warp_pick_digit([&](int d) { return count_of(row0 + rr, d); }, need);
      if (g == (rr & 7) && pick.x >= 0) {  // (an open row's floor is not NaN)
        if (rr < 8) {
          floor_x[0] = fmaxf(floor_x[0], range_floor(pick.x));
        } else {
          floor_x[1] = fmaxf(floor_x[1], range_floor(pick.x));
        }
      }
    }
  };
  // S = Q·K^T of tile i into sc, issued (one commit group).
  auto issue_tile = [&](float(&sc)[kBN / 2], int i) {
    const int stage = i % kStages;
    mbar_wait(&full_k[stage], (i / kStages) & 1);
    wgmma_fence();
    issue_qk<T, kBN, kBM>(sc, sq_wg, sk + stage * kTileBytesK);
    wgmma_commit();
  };
  // Counts tile i's scores, its GEMM waited for (its stage released): straight-line predicated
  // counting. The visibility of the select is causal dense (key n visible from position n on;
  // keys past the end lie past every position), applied arithmetically.
  auto count_tile = [&](float(&sc)[kBN / 2], int i) {
    const int key0 = (s_list[i] & ~kMaskedTile) * kBN + tig * 2;
    // A later level: the scores in the row's range [lo, lo + width), by part.
    auto count_later = [&](auto full) {
      for_each_score<kBN>(sc, [&](float x, int r, int col) {
        const uint32_t d = topk::key(x) - r_lo[r];
        const bool visible = decltype(full)::value || key0 + col <= pos_base + r * 8;
        add_if(row_base + r * 8, d < r_width[r] && visible, static_cast<int>(d >> r_shift[r]));
      });
    };
    // The second level, in a warp whose rows copy: the scores in the row's range (by float
    // comparisons: x >= score_of_key(k) iff key(x) >= k), without a branch.
    auto copy_later = [&](auto full) {
      // Tiles every row sees whole, with room in every lane's segment for all its scores of the
      // tile: the test and the store in one asm each, no check of the room per score.
      if constexpr (decltype(full)::value) {
        if (__all_sync(0xffffffffu, r_copied[0] + kBN / 4 <= seg_cap && r_copied[1] + kBN / 4 <= seg_cap)) {
          uint32_t* dst[2];
#pragma unroll
          for (int r = 0; r < 2; ++r) dst[r] = r_cand[r] + 4 + tig * seg_cap + r_copied[r];
          for_each_score<kBN>(sc, [&](float x, int r, int) { copy_if_within(dst[r], x, r_lo_x[r], r_end_x[r]); });
#pragma unroll
          for (int r = 0; r < 2; ++r) r_copied[r] = static_cast<int>(dst[r] - (r_cand[r] + 4 + tig * seg_cap));
          return;
        }
      }
      for_each_score<kBN>(sc, [&](float x, int r, int col) {
        const bool visible = decltype(full)::value || key0 + col <= pos_base + r * 8;
        const bool in = x >= r_lo_x[r] && x < r_end_x[r] && visible;
        if (in && r_copied[r] < seg_cap) r_cand[r][4 + tig * seg_cap + r_copied[r]] = __float_as_uint(x);
        r_copied[r] += in;
      });
    };
    // Tiles every row sees whole (the list's non-negative entries) skip the causal test.
    auto count = [&](auto full) {
      if (level == 1) {
        // The score's word and count (topk::first_level_count()), the floor tested on the score.
        for_each_score<kBN>(sc, [&](float x, int r, int col) {
          const topk::FirstLevelCount c = topk::first_level_count(x + 0.0f, kPacked);
          const bool visible = decltype(full)::value || key0 + col <= pos_base + r * 8;
          red_add_at_least_or_sink(hist_row[r] + c.word * 4, sink, c.one, x, visible ? floor_x[r] : __int_as_float(0x7fffffff));
        });
      } else if (level == 2) {
        if (copy_all) {
          copy_later(full);
        } else {
          count_later(full);
        }
      } else {
        count_later(full);
      }
    };
    if (s_list[i] >= 0) {
      count(std::true_type{});
    } else {
      count(std::false_type{});
    }
  };
  mbar_wait(&full_q, 0);
  auto release = [&](int i) { mbar_arrive_if(&empty[i % kStages], lane == 0); };  // tile i's scores are in registers
  if constexpr (kPacked) {
    // Two score buffers: the GEMM of one tile runs while the other's scores are counted.
    float sa[kBN / 2], sb[kBN / 2];
    if (count > 0) {
      issue_tile(sa, 0);
      wgmma_wait_all();
    }
    for (int i = 0; i < count; i += 2) {
      static_assert(kFloorEvery % 2 == 0, "floors are raised before even tiles");
      if (level == 1 && i > 0 && i % kFloorEvery == 0) raise_floors();
      release(i);
      const bool odd = i + 1 < count;
      if (odd) issue_tile(sb, i + 1);
      count_tile(sa, i);
      wgmma_wait_all();
      if (odd) {
        release(i + 1);
        if (i + 2 < count) issue_tile(sa, i + 2);
        count_tile(sb, i + 1);
        wgmma_wait_all();
      }
    }
  } else {  // 32-bit counts: the registers hold one tile's scores
    float sa[kBN / 2];
    for (int i = 0; i < count; ++i) {
      if (level == 1 && i > 0 && i % kFloorEvery == 0) raise_floors();
      issue_tile(sa, i);
      wgmma_wait_all();
      release(i);
      count_tile(sa, i);
    }
  }
  // Each lane's number of candidates; a row one of whose lanes ran out of room goes back to
  // the histogram passes from its first-level range (its state with a 4th word of 0).
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    int most = r_copied[r];
    most = max(most, __shfl_xor_sync(0xffffffffu, most, 1));  // the row's four lanes: tig 0 .. 3
    most = max(most, __shfl_xor_sync(0xffffffffu, most, 2));
    if (r_copy[r]) {
      r_cand[r][tig] = static_cast<uint32_t>(r_copied[r]);
      const uint4 st = s_state[row_base + r * 8];
      if (tig == 0 && most > seg_cap) state[row_base + r * 8] = make_uint4(st.x, st.y, st.z, 0u);
    }
  }
  asm volatile("bar.sync 1, %0;\n" ::"r"(kWG * 128) : "memory");  // the consumers' counts are complete

  for (int r = warp; r < kBM; r += kWG * 4) {
    const uint4 st = s_state[r];
    const int need = static_cast<int>(st.z);
    if (need <= 0 || st.w != 0u) continue;  // warp-uniform; rows with candidates finish apart
    auto count_at = [&](int d) { return count_of(r, d); };
    const int2 pick = warp_pick_digit(count_at, need);
    if (lane == 0) {
      if (pick.x < 0) {  // cannot happen with identical scores; keep the whole range rather than guess
        state[r] = make_uint4(st.x, st.y, 0u, st.x);
      } else {
        topk::RowState n = topk::next_state(level, {st.x, st.y, st.z, st.w}, pick.x, pick.y, count_at);
        // Candidates for a range of at most 2^24 keys (three later levels resolve it even if the
        // copy runs out of room) that ends below 2^32 (so that its end is a score).
        if (level == 1 && capacity >= 32 && n.need > 0 && n.width <= (1u << 24) && n.lo + n.width > n.lo) {
          const uint32_t in_range = count_at(pick.x);
          if (in_range <= static_cast<uint32_t>(capacity - 4)) n.bound = in_range;  // >= n.need > 0
        }
        state[r] = make_uint4(n.lo, n.width, n.need, n.bound);
      }
    }
  }
#else
  __trap();  // built without sm_90a
#endif
}

// The select of the rows with candidates after the second pass: one warp per row takes the
// scores the pass copied (those in the row's first-level range, in four lanes' segments) into
// registers and refines the range level by level exactly as the histogram passes would (the same
// parts, the same topk::next_state), until the row is resolved.
constexpr int kFinishWarps = 8;

__global__ void __launch_bounds__(32 * kFinishWarps)
    topk_finish_kernel(uint4* __restrict__ rows, const uint32_t* __restrict__ cand, int capacity, int64_t n_rows) {
  constexpr int kPerSegment = (candidate_segment(kTopkMaxCapacity) + 31) / 32, kPerLane = 4 * kPerSegment;
  __shared__ uint32_t s_hist[kFinishWarps][256];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kFinishWarps + warp;
  if (row >= n_rows) return;  // warp-uniform; the warps never synchronise with each other
  const uint4 st = rows[row];
  if (static_cast<int>(st.z) <= 0 || st.w == 0u) return;
  const uint32_t* mine = cand + row * capacity;
  const int seg_cap = candidate_segment(capacity);
  uint32_t key[kPerLane], valid = 0u;
#pragma unroll
  for (int t = 0; t < 4; ++t) {
    const int n = min(static_cast<int>(mine[t]), seg_cap);
#pragma unroll
    for (int i = 0; i < kPerSegment; ++i) {
      const int at = i * 32 + lane;
      const bool ok = at < n;
      key[t * kPerSegment + i] = ok ? topk::key(topk::float_of(mine[4 + t * seg_cap + at])) : 0u;
      valid |= static_cast<uint32_t>(ok) << (t * kPerSegment + i);
    }
  }
  uint32_t* hist = s_hist[warp];
  auto count_at = [&](int d) { return hist[d]; };
  topk::RowState s{st.x, st.y, st.z, 0u};
  for (int level = 2; level <= topk::kLevels && s.need > 0; ++level) {
#pragma unroll
    for (int d = lane; d < 256; d += 32) hist[d] = 0u;
    __syncwarp();
    const int shift = topk::level_shift(s.width);
#pragma unroll
    for (int i = 0; i < kPerLane; ++i) {
      const uint32_t d = key[i] - s.lo;
      if (((valid >> i) & 1u) && d < s.width) atomicAdd(&hist[d >> shift], 1u);
    }
    __syncwarp();
    const int2 pick = warp_pick_digit(count_at, static_cast<int>(s.need));
    if (pick.x < 0) {  // as the histogram pass: keep the whole range rather than guess
      s = topk::RowState{s.lo, s.width, 0u, s.lo};
      break;
    }
    s = topk::next_state(level, s, pick.x, pick.y, count_at);
    __syncwarp();  // the counts are read before the next level clears them
  }
  if (lane == 0) rows[row] = make_uint4(s.lo, s.width, s.need, s.bound);
}

// The driver's tensor-map encoder, through the runtime (no link against libcuda).
PFN_cuTensorMapEncodeTiled_v12000 tensor_map_encoder() {
  static const PFN_cuTensorMapEncodeTiled_v12000 fn = [] {
    void* f = nullptr;
    cudaDriverEntryPointQueryResult q{};
    if (cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &f, 12000, cudaEnableDefault, &q) != cudaSuccess ||
        q != cudaDriverEntryPointSuccess) {
      f = nullptr;
    }
    return reinterpret_cast<PFN_cuTensorMapEncodeTiled_v12000>(f);
  }();
  return fn;
}

// A 4-d tensor map over x [B][H][L][128] (strides in elements, D contiguous; dimensions listed
// innermost first: D, L, H, B) with boxes of 64 x rows, 128-byte swizzled. False when TMA cannot
// address the tensor (an address or stride not a multiple of 16 bytes, a zero stride as in an
// expanded tensor) or the driver has no encoder.
bool make_map(CUtensorMap* map, const void* x, const Strides& st, int batch, int heads, int len, int rows, bool bf16) {
  const auto encode = tensor_map_encoder();
  if (encode == nullptr || reinterpret_cast<uintptr_t>(x) % 16 != 0) return false;
  // A dimension of size 1 is never stepped over; give it a stride TMA accepts.
  const int64_t sl = st.l, sh = heads > 1 ? st.h : 8, sb = batch > 1 ? st.b : 8;
  for (int64_t s : {sl, sh, sb}) {
    if (s <= 0 || s % 8 != 0) return false;
  }
  const cuuint64_t dims[4] = {kD, static_cast<cuuint64_t>(len), static_cast<cuuint64_t>(heads),
                              static_cast<cuuint64_t>(batch)};
  const cuuint64_t strides[3] = {static_cast<cuuint64_t>(sl) * 2, static_cast<cuuint64_t>(sh) * 2,
                                 static_cast<cuuint64_t>(sb) * 2};
  const cuuint32_t box[4] = {64, static_cast<cuuint32_t>(rows), 1, 1};
  const cuuint32_t unit[4] = {1, 1, 1, 1};
  return encode(map, bf16 ? CU_TENSOR_MAP_DATA_TYPE_BFLOAT16 : CU_TENSOR_MAP_DATA_TYPE_FLOAT16, 4, const_cast<void*>(x),
                dims, strides, box, unit, CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B,
                CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE) == CUDA_SUCCESS;
}

template <typename T, int kBN, int kWG, int kStages, bool kThr = false>
bool launch(const IntervalParams& p, const int4* summary, cudaStream_t stream) {
  constexpr bool bf16 = std::is_same_v<T, __nv_bfloat16>;
  constexpr int kBM = 64 * kWG;
  CUtensorMap tq, tk, tv, to, tk2, tv2;
  const int rows1 = p.k2 != nullptr ? p.split : p.kv_len;  // k / v's rows
  if (!make_map(&tq, p.q, p.q_st, p.batch, p.q_heads, p.q_len, kBM, bf16) ||
      !make_map(&to, p.out, p.o_st, p.batch, p.q_heads, p.q_len, kBM, bf16) ||
      !make_map(&tk, p.k, p.k_st, p.batch, p.kv_heads, rows1, kBN, bf16) ||
      !make_map(&tv, p.v, p.v_st, p.batch, p.kv_heads, rows1, kBN, bf16)) {
    return false;
  }
  if (p.k2 == nullptr) {
    tk2 = tk;
    tv2 = tv;
  } else if (p.split % kBN != 0 || !make_map(&tk2, p.k2, p.k2_st, p.batch, p.kv_heads, p.kv_len - p.split, kBN, bf16) ||
             !make_map(&tv2, p.v2, p.v2_st, p.batch, p.kv_heads, p.kv_len - p.split, kBN, bf16)) {
    return false;
  }
  const int64_t items = static_cast<int64_t>((p.q_len + kBM - 1) / kBM) * p.q_heads * p.batch;
  if (items > INT32_MAX || (p.kv_len + kBN - 1) / kBN > kTileBits) return false;
  const size_t smem = tile_bytes<kBN, kWG, kStages>() + 1024;
  if (smem > smem_optin()) return false;
  auto* kernel = interval_ws_kernel<T, kBN, kWG, kStages, kThr>;
  allow_dynamic_smem(reinterpret_cast<const void*>(kernel), smem, "wgmma shared memory attribute");
  int* counter = work_counter(p);
  int ctas = static_cast<int>(items);
  if constexpr (!kOneTilePerCta<kWG>) {
    check(cudaMemsetAsync(counter, 0, sizeof(int), stream), "wgmma work counter");
    ctas = static_cast<int>(std::min<int64_t>(items, sm_count()));
  }
  kernel<<<ctas, 128 * kWG + kProducerThreads<kWG>, smem, stream>>>(p, summary, counter, static_cast<int>(items), tq, tk, tv, to,
                                                                tk2, tv2);
  check(cudaGetLastError(), "wgmma launch");
  return true;
}

template <typename T, int kWG>
bool launch_hist(const IntervalParams& p, const int4* summary, uint32_t* workspace, int capacity, int level, int top_k,
                 cudaStream_t stream) {
  constexpr bool bf16 = std::is_same_v<T, __nv_bfloat16>;
  CUtensorMap tq, tk;
  if (!make_map(&tq, p.q, p.q_st, p.batch, p.q_heads, p.q_len, 64 * kWG, bf16) ||
      !make_map(&tk, p.k, p.k_st, p.batch, p.kv_heads, p.kv_len, 128, bf16)) {
    return false;
  }
  const int n_tiles = (p.kv_len + 127) / 128;
  const size_t smem = topk_hist_bytes<kWG>() + static_cast<size_t>(n_tiles) * sizeof(int);
  if (smem > smem_optin()) return false;
  auto* kernel = topk_hist_kernel<T, kWG>;
  allow_dynamic_smem(reinterpret_cast<const void*>(kernel), smem, "top-k select shared memory attribute");
  const dim3 grid((p.q_len + 64 * kWG - 1) / (64 * kWG), p.q_heads, p.batch);
  const int64_t n_rows = static_cast<int64_t>(p.batch) * p.q_heads * p.q_len;
  kernel<<<grid, 128 * kWG + kProducerThreads<kWG>, smem, stream>>>(p, summary, reinterpret_cast<uint4*>(workspace), workspace + n_rows * 4,
                                                  capacity, level, top_k, tq, tk);
  check(cudaGetLastError(), "top-k select launch");
  if (level == 2 && capacity > 0) {
    const auto blocks = static_cast<unsigned>((n_rows + kFinishWarps - 1) / kFinishWarps);
    topk_finish_kernel<<<blocks, 32 * kFinishWarps, 0, stream>>>(reinterpret_cast<uint4*>(workspace),
                                                                  workspace + n_rows * 4, capacity, n_rows);
    check(cudaGetLastError(), "top-k candidates launch");
  }
  return true;
}

}  // namespace

bool launch_interval_wgmma(const IntervalParams& p, Dtype dtype, const int4* summary, WgmmaShape shape,
                           cudaStream_t stream) {
  const bool bf16 = dtype == Dtype::kBFloat16;
  if (p.row_state != nullptr) {  // score bounds: topk_attention()'s shape only
    if (shape != WgmmaShape::kRows128Keys128) return false;
    return bf16 ? launch<__nv_bfloat16, 128, 2, 2, true>(p, summary, stream)
                : launch<__half, 128, 2, 2, true>(p, summary, stream);
  }
  switch (shape) {
    case WgmmaShape::kRows128Keys128:
      return bf16 ? launch<__nv_bfloat16, 128, 2, 2>(p, summary, stream) : launch<__half, 128, 2, 2>(p, summary, stream);
    case WgmmaShape::kRows128Keys64:
      return bf16 ? launch<__nv_bfloat16, 64, 2, 4>(p, summary, stream) : launch<__half, 64, 2, 4>(p, summary, stream);
    case WgmmaShape::kRows64Keys64:
      return bf16 ? launch<__nv_bfloat16, 64, 1, 2>(p, summary, stream) : launch<__half, 64, 1, 2>(p, summary, stream);
  }
  return false;
}

bool launch_topk_select(const IntervalParams& p, Dtype dtype, const int4* summary, uint32_t* workspace, int capacity,
                        int top_k, int levels, cudaStream_t stream) {
  // Rows see at most q_pos0 + q_len keys: with at most 65535, 16-bit counts and 128-row tiles.
  const bool packed = static_cast<int64_t>(p.q_pos0) + p.q_len <= 65535;
  const bool bf16 = dtype == Dtype::kBFloat16;
  for (int level = 1; level <= min(levels, topk::kLevels); ++level) {
    const bool ok =
        packed ? (bf16 ? launch_hist<__nv_bfloat16, 2>(p, summary, workspace, capacity, level, top_k, stream)
                       : launch_hist<__half, 2>(p, summary, workspace, capacity, level, top_k, stream))
               : (bf16 ? launch_hist<__nv_bfloat16, 1>(p, summary, workspace, capacity, level, top_k, stream)
                       : launch_hist<__half, 1>(p, summary, workspace, capacity, level, top_k, stream));
    if (!ok) return false;  // only at the first level: the maps and sizes do not change
  }
  return true;
}

}  // namespace lcb::attn::cuda::detail
