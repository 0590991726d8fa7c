// Device helpers shared by lcb's CUDA kernels: tensor-core MMA and fragment packing,
// asynchronous copies, ldmatrix, exp2, and the list of key tiles a query tile can see.
#pragma once

#include "attention_impls/cuda/kernels.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <map>
#include <mutex>
#include <stdexcept>
#include <string>
#include <tuple>
#include <utility>

namespace lcb::attn::cuda::detail {

inline void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw std::runtime_error(std::string("lcb CUDA kernel: ") + what + ": " + cudaGetErrorString(e));
}

// Shared memory one CTA may opt in to on the current device, in bytes.
inline size_t smem_optin() {
  int device = 0, bytes = 0;
  check(cudaGetDevice(&device), "device");
  check(cudaDeviceGetAttribute(&bytes, cudaDevAttrMaxSharedMemoryPerBlockOptin, device), "shared memory limit");
  return static_cast<size_t>(bytes);
}

// Lets `kernel` launch with `bytes` of dynamic shared memory on the current device. The attribute
// persists, so cudaFuncSetAttribute runs only when this device has not yet allowed the kernel as
// much: the launchers run on every forward, and host time between launches can leave the GPU idle.
inline void allow_dynamic_smem(const void* kernel, size_t bytes, const char* what) {
  static std::mutex mu;
  static std::map<std::pair<const void*, int>, size_t> allowed;
  int device = 0;
  check(cudaGetDevice(&device), "device");
  const std::lock_guard<std::mutex> lock(mu);
  size_t& a = allowed[{kernel, device}];
  if (bytes <= a) return;
  check(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes)), what);
  a = bytes;
}

// CTAs of `threads` threads and `smem` bytes of dynamic shared memory that fit an SM at once, on
// the current device; the occupancy query runs once per kernel, device and shape.
inline int ctas_per_sm(const void* kernel, int threads, size_t smem, const char* what) {
  static std::mutex mu;
  static std::map<std::tuple<const void*, int, int, size_t>, int> known;
  int device = 0;
  check(cudaGetDevice(&device), "device");
  const std::lock_guard<std::mutex> lock(mu);
  const auto key = std::make_tuple(kernel, device, threads, smem);
  if (const auto it = known.find(key); it != known.end()) return it->second;
  int n = 0;
  check(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, kernel, threads, smem), what);
  return known[key] = n;
}

// Streaming multiprocessors of the current device.
inline int sm_count() {
  int device = 0, n = 0;
  check(cudaGetDevice(&device), "device");
  check(cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, device), "multiprocessor count");
  return n;
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
// Waits until at most N of this thread's committed groups are still in flight.
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

// Shared-memory tile of `rows` x D 16-bit elements stored as 16-byte chunks, chunk c of row r at
// position c ^ (r & 7): ldmatrix's eight row addresses then hit eight different bank groups.
template <int D>
__device__ __forceinline__ int swz(int row, int chunk) {
  return row * (D / 8) + (chunk ^ (row & 7));
}

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

// 16-bit elements to float and back.
__device__ __forceinline__ float to_float(__nv_bfloat16 x) { return __bfloat162float(x); }
__device__ __forceinline__ float to_float(__half x) { return __half2float(x); }
template <typename T>
__device__ __forceinline__ T from_float(float x);
template <>
__device__ __forceinline__ __nv_bfloat16 from_float(float x) {
  return __float2bfloat16(x);
}
template <>
__device__ __forceinline__ __half from_float(float x) {
  return __float2half(x);
}

// Shared tiles for mma.sync read with plain 32-bit loads: rows of kD 16-bit elements padded to
// kD + 8, so that a warp's fragment loads hit 32 different banks.
template <int kD>
constexpr int kPaddedRow = kD + 8;

// Copies kRows rows into a padded tile with cp.async (the caller commits and waits): row r comes
// from row_ptr(r) when r < valid and is zero-filled otherwise (reading nothing from `fallback`).
template <typename T, int kD, int kRows, int kThreads, typename RowPtr>
__device__ __forceinline__ void load_rows_padded(T* dst, RowPtr row_ptr, int valid, const T* fallback) {
  for (int c = threadIdx.x; c < kRows * (kD / 8); c += kThreads) {
    const int r = c / (kD / 8), ch = c % (kD / 8);
    const bool ok = r < valid;
    cp_async16(smem_addr(dst + r * kPaddedRow<kD> + ch * 8), ok ? row_ptr(r) + ch * 8 : fallback, ok);
  }
}

// The two 32-bit words of a padded tile at (row, col .. col+1) and (row, col+8 .. col+9): one row
// of an m16n8k16 fragment (A: rows g and g + 8; B: the key row g), col = k0 + tig·2.
template <typename T, int kD>
__device__ __forceinline__ uint2 frag_pair(const T* tile, int row, int col) {
  const T* p = tile + row * kPaddedRow<kD> + col;
  return make_uint2(*reinterpret_cast<const uint32_t*>(p), *reinterpret_cast<const uint32_t*>(p + 8));
}

// The A fragment (rows row0 + g and row0 + g + 8, columns k0 .. k0 + 15) of a padded tile.
template <typename T, int kD>
__device__ __forceinline__ void load_a_frag(uint32_t* a, const T* tile, int row0, int k0) {
  const int g = (threadIdx.x % 32) / 4, tig = threadIdx.x % 4;
  const uint2 lo = frag_pair<T, kD>(tile, row0 + g, k0 + tig * 2), hi = frag_pair<T, kD>(tile, row0 + g + 8, k0 + tig * 2);
  a[0] = lo.x;
  a[1] = hi.x;
  a[2] = lo.y;
  a[3] = hi.y;
}

__device__ __forceinline__ float ex2(float x) {  // 2^x; -inf gives +0
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
  return y;
}

// Per-element visibility in partially visible tiles: logits of keys this thread's rows cannot
// see become -inf. Accumulator layout (mma.sync m16n8 and wgmma m64nN alike): fragment f is
// s + f·kBN/2, and s[j·4 + r·2 + c] is key key0 + j·8 + tig·2 + c of the row at position
// pos_base + f·16 + r·8. interval(k) gives the (lo, hi) of the tile's key k (0 .. kBN-1). With a
// block selection (`sel` of this (batch, query head); q_end: one past the last query) a key is
// visible only if its 64-key block was chosen for the row's 64-query block, looked up once per
// row and block (key0 is a multiple of kSelectBlock). The element loop is predicated, without
// branches: measured, a per-element selection branch made a masked tile cost 2.5 full tiles of
// instructions.
template <int kBN, int kFrags = 1, typename Interval>
__device__ __forceinline__ void mask_tile_by(float* s, int key0, Interval interval, int pos_base, const uint8_t* sel,
                                             int64_t sel_stride_q, int q_end, int tig) {
  constexpr int kBlocks = (kBN + kSelectBlock - 1) / kSelectBlock;
  // chosen(f, r, blk): whether the selection lets row (f, r) see the tile's 64-key block blk.
  auto apply = [&](auto chosen) {
#pragma unroll
    for (int j = 0; j < kBN / 8; ++j) {
#pragma unroll
      for (int c = 0; c < 2; ++c) {
        const int2 iv = interval(j * 8 + tig * 2 + c);
#pragma unroll
        for (int f = 0; f < kFrags; ++f) {
#pragma unroll
          for (int r = 0; r < 2; ++r) {
            const int pos = pos_base + f * 16 + r * 8;
            float& x = s[f * (kBN / 2) + j * 4 + r * 2 + c];
            x = iv.x <= pos && pos < iv.y && chosen(f, r, j * 8 / kSelectBlock) ? x : -INFINITY;
          }
        }
      }
    }
  };
  if (sel == nullptr) {
    apply([](int, int, int) { return true; });
    return;
  }
  unsigned bits = 0;  // bit (f·2 + r)·kBlocks + blk
#pragma unroll
  for (int f = 0; f < kFrags; ++f)
#pragma unroll
    for (int r = 0; r < 2; ++r)
#pragma unroll
      for (int blk = 0; blk < kBlocks; ++blk) {
        const int pos = pos_base + f * 16 + r * 8;
        if (pos < q_end && sel[static_cast<int64_t>(pos / kSelectBlock) * sel_stride_q + key0 / kSelectBlock + blk] != 0) {
          bits |= 1u << ((f * 2 + r) * kBlocks + blk);
        }
      }
  apply([bits](int f, int r, int blk) { return ((bits >> ((f * 2 + r) * kBlocks + blk)) & 1u) != 0; });
}

// The same with the intervals read from global memory (keys past kv_len are never visible).
template <int kBN, int kFrags = 1>
__device__ __forceinline__ void mask_tile(float* s, int key0, const int32_t* lo, const int32_t* hi, int kv_len,
                                          int pos_base, const uint8_t* sel, int64_t sel_stride_q, int q_end, int tig) {
  mask_tile_by<kBN, kFrags>(
      s, key0,
      [&](int k) { return key0 + k < kv_len ? make_int2(lo[key0 + k], hi[key0 + k]) : make_int2(kNever, -kNever); },
      pos_base, sel, sel_stride_q, q_end, tig);
}

// How far (base 2) a tile's maximum may exceed a row's running maximum before softmax_tile<kBN,
// true> moves it.
constexpr float kLazyMax = 8.f;

// Online softmax (base 2) of one fragment's tile of logits, in place: s becomes P, row_max and
// row_sum (rows r = 0, 1) are updated, corr is what the output so far must be multiplied by.
// Returns whether one of the two rows' maxima moved (corr != 1). With kLazy a row's maximum moves
// only when the tile's exceeds it by more than kLazyMax: probabilities may then reach 2^kLazyMax,
// the output and the row sum share the stale maximum (so the normalised result is the same), and
// most tiles move none, so that the caller can skip rescaling the output.
template <int kBN, bool kLazy = false>
__device__ __forceinline__ bool softmax_tile(float* s, float* row_max, float* row_sum, float* corr, float scale_log2) {
  bool moved = false;
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    float mx = -INFINITY;
#pragma unroll
    for (int j = 0; j < kBN / 8; ++j) mx = fmaxf(mx, fmaxf(s[j * 4 + r * 2], s[j * 4 + r * 2 + 1]));
    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
    float m_new;
    if constexpr (kLazy) {  // -inf - -inf is NaN: a row that saw nothing keeps -inf
      m_new = mx * scale_log2 - row_max[r] > kLazyMax ? mx * scale_log2 : row_max[r];
    } else {
      m_new = fmaxf(row_max[r], mx * scale_log2);
    }
    const float m_use = m_new == -INFINITY ? 0.f : m_new;
    corr[r] = m_new == row_max[r] ? 1.f : ex2(row_max[r] - m_use);
    moved |= m_new != row_max[r];
    row_max[r] = m_new;
    float sum = 0.f;
#pragma unroll
    for (int j = 0; j < kBN / 8; ++j) {
#pragma unroll
      for (int c = 0; c < 2; ++c) {
        const float pv = ex2(fmaf(s[j * 4 + r * 2 + c], scale_log2, -m_use));
        s[j * 4 + r * 2 + c] = pv;
        sum += pv;
      }
    }
    row_sum[r] = row_sum[r] * corr[r] + sum;
  }
  return moved;
}

// One fragment's output accumulators (D columns, same layout) times the rows' corrections.
template <int D>
__device__ __forceinline__ void rescale_o(float* o, const float* corr) {
#pragma unroll
  for (int j = 0; j < D / 8; ++j) {
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      o[j * 4 + r * 2] *= corr[r];
      o[j * 4 + r * 2 + 1] *= corr[r];
    }
  }
}

// The query tile of work item `item` of an interval-attention launch: items count tiles of kBM
// rows from the last (the heaviest under causal-like visibility: taken first), then query heads,
// then batches. Rows m0 .. sit at positions q_first .. q_last.
struct QueryTile {
  int b, hq, hkv, m0, q_first, q_last;
};
template <int kBM>
__device__ __forceinline__ QueryTile query_tile(const IntervalParams& p, int item) {
  QueryTile t;
  const int m_tiles = (p.q_len + kBM - 1) / kBM;
  t.m0 = (m_tiles - 1 - item % m_tiles) * kBM;
  t.hq = (item / m_tiles) % p.q_heads;
  t.b = item / m_tiles / p.q_heads;
  t.hkv = t.hq / (p.q_heads / p.kv_heads);
  t.q_first = p.q_pos0 + t.m0;
  t.q_last = p.q_pos0 + min(t.m0 + kBM, p.q_len) - 1;
  return t;
}
// The CTA's query tile where one CTA takes one item: blockIdx.x the tile (from the last), y the
// query head, z the batch.
template <int kBM>
__device__ __forceinline__ QueryTile query_tile(const IntervalParams& p) {
  const int m_tiles = (p.q_len + kBM - 1) / kBM;
  return query_tile<kBM>(p, static_cast<int>(blockIdx.x + m_tiles * (blockIdx.y + p.q_heads * blockIdx.z)));
}

// The interval workspace (interval_workspace_bytes()): per (batch, kv head) the summaries of the
// key tiles of kSelectBlock keys (int4 each); then per (batch, kv head) the coarse summaries, the
// same four bounds over kCoarseSub consecutive tiles (4096 keys), by which the wgmma kernel's
// producer skips the stretches that no row of its query tile sees; then that kernel's work
// counter.
constexpr int kCoarseSub = 64;
__host__ __device__ inline int summary_tiles(int kv_len) { return (kv_len + kSelectBlock - 1) / kSelectBlock; }
__host__ __device__ inline int coarse_summaries(int kv_len) {
  return (summary_tiles(kv_len) + kCoarseSub - 1) / kCoarseSub;
}
// Where the coarse summaries start, in summaries (int4) from the first.
__host__ __device__ inline int64_t coarse_summary_offset(int batch, int kv_heads, int kv_len) {
  return static_cast<int64_t>(batch) * kv_heads * summary_tiles(kv_len);
}
inline size_t interval_summary_bytes(int batch, int kv_heads, int kv_len) {
  return (coarse_summary_offset(batch, kv_heads, kv_len) + static_cast<int64_t>(batch) * kv_heads * coarse_summaries(kv_len)) *
         sizeof(int4);
}
inline int* work_counter(const IntervalParams& p) {
  return reinterpret_cast<int*>(reinterpret_cast<unsigned char*>(p.tile_summary) +
                                interval_summary_bytes(p.batch, p.kv_heads, p.kv_len));
}

constexpr int kMaskedTile = static_cast<int>(0x80000000u);  // list entry flag: needs per-element masks

// A listed tile is kSub consecutive summarised tiles of `block` keys (n_sub of those in all).
// Tile t's entry for the query rows at positions [q_first, q_last]: -1 when no row can see it,
// else t, | kMaskedTile when it needs per-element masks (tiles visible to every row, complete and
// fully selected, need none). summ[i]: min lo, max lo, min hi, max hi of summarised tile i.
template <int kSub>
__device__ __forceinline__ int tile_entry(const int4* summ, int n_sub, int t, int q_first, int q_last, int kv_len,
                                          int block, const uint8_t* sel, int64_t sel_stride_q) {
  int4 s = summ[t * kSub];
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
  return any ? (t | (full ? 0 : kMaskedTile)) : -1;
}

// One round of listing: of the listed tiles [base, base + kThreads) (tile_entry()), the visible
// ones go to s_list in order. Returns how many. Every thread of the block calls it; s_warp_count
// has kThreads / 32 slots.
template <int kThreads, int kSub = 1>
__device__ __forceinline__ int list_tiles(const int4* summ, int n_sub, int base, int q_first, int q_last, int kv_len,
                                          int block, const uint8_t* sel, int64_t sel_stride_q, int* s_list,
                                          int* s_warp_count) {
  constexpr int kWarps = kThreads / 32;
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const int n_tiles = (n_sub + kSub - 1) / kSub;
  const int t = base + tid;
  const int entry =
      t < n_tiles ? tile_entry<kSub>(summ, n_sub, t, q_first, q_last, kv_len, block, sel, sel_stride_q) : -1;
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

// Unsigned key with the order of the float (larger float, larger key).
__device__ __forceinline__ uint32_t order_key(float f) {
  const uint32_t b = __float_as_uint(f);
  return (b & 0x80000000u) ? ~b : (b | 0x80000000u);
}

// Barrier over a group of kThreads threads of the CTA: named barrier `bar` (1..15, the group's
// threads only), or the whole CTA for bar = 0 (then kThreads is the CTA's size).
template <int kThreads>
__device__ __forceinline__ void group_sync(int bar) {
  if (bar == 0) {
    __syncthreads();
  } else {
    asm volatile("bar.sync %0, %1;\n" ::"r"(bar), "n"(kThreads) : "memory");
  }
}

// The across-warps half of block_count_before() and block_sum_before(): each warp's total (given by
// its lane `writer`) goes through s_warp; returns the sum over the warps before this one, *total
// the sum over all. Two barriers of the group.
template <int kThreads>
__device__ __forceinline__ int warps_before(int warp_total, bool writer, int* s_warp, int* total, int bar) {
  const int warp = (threadIdx.x % kThreads) / 32;
  if (writer) s_warp[warp] = warp_total;
  group_sync<kThreads>(bar);
  int before = 0, all = 0;
#pragma unroll
  for (int w = 0; w < kThreads / 32; ++w) {
    before += w < warp ? s_warp[w] : 0;
    all += s_warp[w];
  }
  group_sync<kThreads>(bar);  // s_warp is rewritten by the next call
  *total = all;
  return before;
}

// Ordered compaction over one chunk of kThreads items, one per thread of a group in thread order
// (the group: threads [i·kThreads, (i+1)·kThreads) of the CTA, synchronised by group_sync(bar)):
// how many threads before this one have `pred`; *total gets how many have it in all. Every thread
// of the group calls it (two barriers); s_warp holds kThreads / 32 ints of shared memory.
template <int kThreads>
__device__ __forceinline__ int block_count_before(bool pred, int* s_warp, int* total, int bar = 0) {
  const int lane = threadIdx.x % 32;
  const unsigned ballot = __ballot_sync(0xffffffffu, pred);
  return warps_before<kThreads>(__popc(ballot), lane == 0, s_warp, total, bar) + __popc(ballot & ((1u << lane) - 1));
}

// Warp-wide step of a radix select: over 256 digit counts count_at(d), the digit holding the
// want-th largest item (1 <= want <= the total) and how many items lie in higher digits; every
// lane gets both ({-1, 0} when the counts hold fewer than want items). Lane l reads digits
// [8l, 8l + 8).
template <typename CountAt>
__device__ __forceinline__ int2 warp_pick_digit(CountAt count_at, int want) {
  const int lane = threadIdx.x % 32;
  int c[8], local = 0;
#pragma unroll
  for (int j = 0; j < 8; ++j) {
    c[j] = static_cast<int>(count_at(lane * 8 + j));
    local += c[j];
  }
  int suffix = local;  // items in this lane's digits or higher
#pragma unroll
  for (int off = 1; off < 32; off <<= 1) {
    const int other = __shfl_down_sync(0xffffffffu, suffix, off);
    if (lane + off < 32) suffix += other;
  }
  int above = suffix - local, digit = -1;
  const bool mine = above < want && suffix >= want;
  if (mine) {
#pragma unroll
    for (int j = 7; j >= 0; --j) {
      if (digit < 0) {
        if (above + c[j] >= want) {
          digit = lane * 8 + j;
        } else {
          above += c[j];
        }
      }
    }
  }
  const unsigned who = __ballot_sync(0xffffffffu, mine);
  if (who == 0) return make_int2(-1, 0);
  const int src = __ffs(who) - 1;
  return make_int2(__shfl_sync(0xffffffffu, digit, src), __shfl_sync(0xffffffffu, above, src));
}

// Shared memory of one select_largest() group.
template <int kThreads>
struct SelectScratch {
  int hist[256];
  int pick[2];
  int warp[kThreads / 32];
};

// Exclusive sum over one group of kThreads threads (as in block_count_before): the sum of v over
// the threads before this one; *total gets the sum over all. Two barriers; s_warp holds
// kThreads / 32 ints.
template <int kThreads>
__device__ __forceinline__ int block_sum_before(int v, int* s_warp, int* total, int bar = 0) {
  const int lane = threadIdx.x % 32;
  int incl = v;
#pragma unroll
  for (int off = 1; off < 32; off <<= 1) {
    const int other = __shfl_up_sync(0xffffffffu, incl, off);
    if (lane >= off) incl += other;
  }
  return warps_before<kThreads>(incl, lane == 31, s_warp, total, bar) + incl - v;
}

// Radix select: marks flag[i] = 1 for the k largest of key_at(0 .. n-1) (unsigned keys; 0 < k < n;
// ties taken lowest index first), 0 for the rest; flag may be shared or global memory. Four
// passes of 8-bit histograms, then one pass for the ties. Every thread of the group (as in
// block_count_before) calls it. Lanes of a warp with the same digit add to its count once: keys
// of similar magnitude share their leading digits, and their atomics would otherwise queue.
template <int kThreads, typename KeyAt>
__device__ void select_largest(KeyAt key_at, int n, int k, uint8_t* flag, SelectScratch<kThreads>& s, int bar) {
  const int tid = threadIdx.x % kThreads, lane = tid % 32, warp = tid / 32;
  uint32_t prefix = 0, mask = 0;
  int remaining = k;  // how many still to take among the keys matching prefix under mask
  for (int shift = 24; shift >= 0; shift -= 8) {
    for (int i = tid; i < 256; i += kThreads) s.hist[i] = 0;
    group_sync<kThreads>(bar);
    for (int base = 0; base < n; base += kThreads) {  // whole warps step together
      const int i = base + tid;
      const uint32_t u = i < n ? key_at(i) : 0u;
      const int digit = i < n && (u & mask) == prefix ? static_cast<int>((u >> shift) & 255u) : -1;
      const unsigned peers = __match_any_sync(0xffffffffu, digit);
      if (digit >= 0 && lane == __ffs(peers) - 1) atomicAdd(&s.hist[digit], __popc(peers));
    }
    group_sync<kThreads>(bar);
    if (warp == 0) {
      const int2 pick = warp_pick_digit([&](int d) { return s.hist[d]; }, remaining);
      if (tid == 0) {
        s.pick[0] = pick.x;
        s.pick[1] = remaining - pick.y;
      }
    }
    group_sync<kThreads>(bar);
    prefix |= static_cast<uint32_t>(s.pick[0]) << shift;
    mask |= 255u << shift;
    remaining = s.pick[1];
    group_sync<kThreads>(bar);
  }
  // prefix is the k-th largest key: take every larger key and the first `remaining` equal ones.
  int taken = 0;
  for (int base = 0; base < n; base += kThreads) {
    const int i = base + tid;
    const uint32_t u = i < n ? key_at(i) : 0u;
    const bool eq = i < n && u == prefix;
    int total;
    const int rank = taken + block_count_before<kThreads>(eq, s.warp, &total, bar);
    if (i < n) flag[i] = u > prefix || (eq && rank < remaining);
    taken += total;
  }
}

// select_largest() by the whole CTA of kThreads threads.
template <int kThreads, typename KeyAt>
__device__ void select_largest(KeyAt key_at, int n, int k, uint8_t* flag) {
  __shared__ SelectScratch<kThreads> s;
  select_largest<kThreads>(key_at, n, k, flag, s, 0);
}

// The Hopper variant for head dim 128 (wgmma, TMA; sm_90a): query rows per CTA x keys per tile.
// False, launching nothing, when TMA cannot address q, k or v (see make_map there). p.tile_summary
// holds the summaries and the work counter (interval_workspace_bytes()). Defined in
// interval_attention_wgmma.cu.
enum class WgmmaShape { kRows128Keys128, kRows128Keys64, kRows64Keys64 };
bool launch_interval_wgmma(const IntervalParams& p, Dtype dtype, const int4* summary, WgmmaShape shape,
                           cudaStream_t stream);
// topk_attention()'s select (its first `levels` passes, at most five) writing the rows' states
// into `workspace` (topk_workspace_bytes()); false, launching nothing, where TMA cannot address q
// or k or the tile list does not fit. Defined in interval_attention_wgmma.cu.
bool launch_topk_select(const IntervalParams& p, Dtype dtype, const int4* summary, uint32_t* workspace, int capacity,
                        int top_k, int levels, cudaStream_t stream);

}  // namespace lcb::attn::cuda::detail
