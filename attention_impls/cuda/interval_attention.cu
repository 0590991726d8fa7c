// Visibility-interval attention on tensor cores (mma.sync m16n8k16, bf16/fp16 in, fp32
// accumulate), FlashAttention-style online softmax.
//
// One CTA = 128 query rows of one (batch, query head), 4 warps of 32 rows (two CTAs per SM).
// Keys come in tiles of 64. A small kernel first summarises every key tile (min/max of lo and hi); the CTA then lists
// the tiles whose intervals can reach its rows, marks those that are visible to every row
// ("full": no per-element mask) and streams only them, double-buffered with cp.async. Query
// tiles are issued heaviest first (the last rows see the most keys under causal-like patterns).
#include "attention_impls/cuda/common.cuh"

#include <cstdlib>
#include <string>

namespace lcb::attn::cuda {
namespace {

using namespace detail;

constexpr int kBlockM = 128;  // query rows per CTA
constexpr int kBlockN = 64;   // keys per tile
static_assert(kBlockN == kSelectBlock, "the tile summaries are per kSelectBlock keys (interval_summary_bytes())");
constexpr int kWarps = 4;
constexpr int kRowsPerWarp = kBlockM / kWarps;  // two m16 fragments: each K/V fragment read from
constexpr int kFrags = kRowsPerWarp / 16;       // shared memory serves 32 rows
constexpr int kThreads = kWarps * 32;
constexpr int kListCap = kThreads;  // tiles examined per round

// Copies rows [row0, row0 + ROWS) of a [len, D] matrix (row stride `stride` elements) into a
// swizzled tile; rows at or past `len` are zero-filled.
template <typename T, int D, int ROWS>
__device__ __forceinline__ void load_tile(T* tile, const T* base, int64_t stride, int row0, int len) {
  constexpr int kChunks = ROWS * (D / 8);
  for (int c = threadIdx.x; c < kChunks; c += kThreads) {
    const int r = c / (D / 8), ch = c % (D / 8);
    const bool valid = row0 + r < len;
    const T* src = base + (valid ? static_cast<int64_t>(row0 + r) * stride + ch * 8 : 0);
    cp_async16(smem_addr(tile + swz<D>(r, ch) * 8), src, valid);
  }
}

// Per key tile: min lo, max lo, min hi, max hi over the keys of the tile that exist; and the same
// over each kCoarseSub consecutive tiles (interval_summary_bytes()). A CTA per coarse summary, a
// warp per kSubPerWarp tiles, two keys of each per lane (coarse then over the warps in shared
// memory): a thread per tile looping over its 64 keys took about 20 µs at any length,
// latency-bound.
constexpr int kSummaryWarps = 8;
constexpr int kSubPerWarp = kCoarseSub / kSummaryWarps;
__device__ __forceinline__ int4 merge_bounds(int4 a, int4 b) {
  return make_int4(min(a.x, b.x), max(a.y, b.y), min(a.z, b.z), max(a.w, b.w));
}
__global__ void __launch_bounds__(32 * kSummaryWarps) summarise_tiles(const int32_t* lo, const int32_t* hi, int64_t sb,
                                                                      int64_t sh, int batch, int kv_heads, int n,
                                                                      int4* out) {
  static_assert(kBlockN == 64, "two keys per lane");
  const int tiles = summary_tiles(n), groups = coarse_summaries(n);
  const int group = blockIdx.x % groups, bh = blockIdx.x / groups, h = bh % kv_heads, b = bh / kv_heads;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int32_t* l = lo + b * sb + h * sh;
  const int32_t* u = hi + b * sb + h * sh;
  const int t0 = group * kCoarseSub + warp * kSubPerWarp;
  // Each key as (lo, lo, hi, hi), keys past n as `none` (which no bound takes); all loads first.
  const int4 none = make_int4(kNever, -kNever, kNever, -kNever);
  int4 key[kSubPerWarp][2];
#pragma unroll
  for (int i = 0; i < kSubPerWarp; ++i)
#pragma unroll
    for (int c = 0; c < 2; ++c) {
      const int j = (t0 + i) * kBlockN + c * 32 + lane;
      key[i][c] = none;
      if (j < n) {
        const int a = l[j], e = u[j];
        key[i][c] = make_int4(a, a, e, e);
      }
    }
  int4 all = none;
#pragma unroll
  for (int i = 0; i < kSubPerWarp; ++i) {
    const int4 x = merge_bounds(key[i][0], key[i][1]);
    const int4 s = make_int4(__reduce_min_sync(0xffffffffu, x.x), __reduce_max_sync(0xffffffffu, x.y),
                             __reduce_min_sync(0xffffffffu, x.z), __reduce_max_sync(0xffffffffu, x.w));
    if (lane == 0 && t0 + i < tiles) out[static_cast<int64_t>(bh) * tiles + t0 + i] = s;
    all = merge_bounds(all, s);
  }
  __shared__ int4 s_warp[kSummaryWarps];
  if (lane == 0) s_warp[warp] = all;
  __syncthreads();
  if (threadIdx.x == 0) {
#pragma unroll
    for (int w = 1; w < kSummaryWarps; ++w) all = merge_bounds(all, s_warp[w]);
    out[coarse_summary_offset(batch, kv_heads, n) + blockIdx.x] = all;
  }
}

template <typename T, int D>
__global__ void __launch_bounds__(kThreads, 2) interval_kernel(IntervalParams p, const int4* __restrict__ summary) {
  extern __shared__ __align__(128) unsigned char smem_raw[];
  T* sq = reinterpret_cast<T*>(smem_raw);
  T* sk = sq + kBlockM * D;        // 2 buffers of kBlockN x D
  T* sv = sk + 2 * kBlockN * D;    // 2 buffers
  __shared__ int s_list[kListCap];
  __shared__ int s_warp_count[kWarps];

  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const int g = lane / 4, tig = lane % 4;
  const QueryTile qt = query_tile<kBlockM>(p);
  const int hq = qt.hq, b = qt.b, hkv = qt.hkv, m0 = qt.m0, q_first = qt.q_first, q_last = qt.q_last;
  const int q_end = p.q_pos0 + p.q_len;  // one past the last query position

  const T* qbase = static_cast<const T*>(p.q) + b * p.q_st.b + hq * p.q_st.h;
  const T* kbase = static_cast<const T*>(p.k) + b * p.k_st.b + hkv * p.k_st.h;
  const T* vbase = static_cast<const T*>(p.v) + b * p.v_st.b + hkv * p.v_st.h;
  // Key tile t into buffer `buf`: from k / v below p.split, from k2 / v2 at and past it.
  const bool two = p.k2 != nullptr;
  const T* kbase2 = two ? static_cast<const T*>(p.k2) + b * p.k2_st.b + hkv * p.k2_st.h : kbase;
  const T* vbase2 = two ? static_cast<const T*>(p.v2) + b * p.v2_st.b + hkv * p.v2_st.h : vbase;
  auto load_kv = [&](int buf, int t) {
    const int row0 = t * kBlockN;
    if (two && row0 >= p.split) {
      load_tile<T, D, kBlockN>(sk + buf * kBlockN * D, kbase2, p.k2_st.l, row0 - p.split, p.kv_len - p.split);
      load_tile<T, D, kBlockN>(sv + buf * kBlockN * D, vbase2, p.v2_st.l, row0 - p.split, p.kv_len - p.split);
    } else {
      const int rows = two ? p.split : p.kv_len;
      load_tile<T, D, kBlockN>(sk + buf * kBlockN * D, kbase, p.k_st.l, row0, rows);
      load_tile<T, D, kBlockN>(sv + buf * kBlockN * D, vbase, p.v_st.l, row0, rows);
    }
  };
  const int32_t* lo = p.lo + b * p.iv_stride_b + hkv * p.iv_stride_h;
  const int32_t* hi = p.hi + b * p.iv_stride_b + hkv * p.iv_stride_h;
  const uint8_t* sel = p.block_sel ? p.block_sel + b * p.sel_stride_b + hq * p.sel_stride_h : nullptr;
  const int n_tiles = summary_tiles(p.kv_len);
  const int4* summ = summary + static_cast<int64_t>(b * p.kv_heads + hkv) * n_tiles;

  load_tile<T, D, kBlockM>(sq, qbase, p.q_st.l, m0, p.q_len);
  cp_async_commit();

  float o[kFrags][D / 8][4];
#pragma unroll
  for (int f = 0; f < kFrags; ++f)
#pragma unroll
    for (int i = 0; i < D / 8; ++i) o[f][i][0] = o[f][i][1] = o[f][i][2] = o[f][i][3] = 0.f;
  float row_max[kFrags][2], row_sum[kFrags][2];
  const int pos_warp = q_first + warp * kRowsPerWarp + g;  // + f * 16 + r * 8: this thread's rows
#pragma unroll
  for (int f = 0; f < kFrags; ++f)
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      row_max[f][r] = -INFINITY;
      row_sum[f][r] = 0.f;
    }
  const float scale_log2 = p.scale * 1.4426950408889634f;

  int it = 0;  // tiles processed so far (buffer parity)
  for (int base = 0; base < n_tiles; base += kListCap) {
    const int count = list_tiles<kThreads>(summ, n_tiles, base, q_first, q_last, p.kv_len, kBlockN, sel, p.sel_stride_q,
                                           s_list, s_warp_count);
    if (count > 0) {
      load_kv(it & 1, s_list[0] & ~kMaskedTile);
      cp_async_commit();
    }
    for (int i = 0; i < count; ++i, ++it) {
      cp_async_wait_all();
      __syncthreads();  // tile i (and Q) visible to all; everyone is done with the other buffer
      if (i + 1 < count) {
        load_kv((it + 1) & 1, s_list[i + 1] & ~kMaskedTile);
        cp_async_commit();
      }
      const int e = s_list[i];
      const int tile = e & ~kMaskedTile;
      const bool masked = e < 0;
      const T* ck = sk + (it & 1) * kBlockN * D;
      const T* cv = sv + (it & 1) * kBlockN * D;

      // S = Q K^T: this warp's 32 rows x 64 keys; each K fragment serves both row fragments.
      float s[kFrags][kBlockN / 8][4];
#pragma unroll
      for (int f = 0; f < kFrags; ++f)
#pragma unroll
        for (int nt = 0; nt < kBlockN / 8; ++nt) s[f][nt][0] = s[f][nt][1] = s[f][nt][2] = s[f][nt][3] = 0.f;
#pragma unroll
      for (int kk = 0; kk < D / 16; ++kk) {
        uint32_t qa[kFrags][4];
#pragma unroll
        for (int f = 0; f < kFrags; ++f) {
          const int row = warp * kRowsPerWarp + f * 16 + (lane & 7) + ((lane >> 3) & 1) * 8;
          ldmatrix_x4(qa[f], smem_addr(sq + swz<D>(row, kk * 2 + (lane >> 4)) * 8));
        }
#pragma unroll
        for (int np = 0; np < kBlockN / 16; ++np) {
          uint32_t bf[4];
          const int row = np * 16 + (lane & 7) + ((lane >> 4) << 3);
          ldmatrix_x4(bf, smem_addr(ck + swz<D>(row, kk * 2 + ((lane >> 3) & 1)) * 8));
#pragma unroll
          for (int f = 0; f < kFrags; ++f) {
            Mma<T>::run(s[f][2 * np], qa[f], bf[0], bf[1]);
            Mma<T>::run(s[f][2 * np + 1], qa[f], bf[2], bf[3]);
          }
        }
      }
      if (masked) {
        mask_tile<kBlockN, kFrags>(&s[0][0][0], tile * kBlockN, lo, hi, p.kv_len, pos_warp, sel, p.sel_stride_q, q_end, tig);
      }
      // Online softmax (base 2), rows g and g + 8 of each row fragment.
#pragma unroll
      for (int f = 0; f < kFrags; ++f) {
        float corr[2];
        softmax_tile<kBlockN>(&s[f][0][0], row_max[f], row_sum[f], corr, scale_log2);
        rescale_o<D>(&o[f][0][0], corr);
      }
      // O += P V: the S accumulators of two key octets form one A fragment; each V fragment
      // serves both row fragments.
#pragma unroll
      for (int kc = 0; kc < kBlockN / 16; ++kc) {
        uint32_t pa[kFrags][4];
#pragma unroll
        for (int f = 0; f < kFrags; ++f) {
          pa[f][0] = Mma<T>::pack(s[f][2 * kc][0], s[f][2 * kc][1]);
          pa[f][1] = Mma<T>::pack(s[f][2 * kc][2], s[f][2 * kc][3]);
          pa[f][2] = Mma<T>::pack(s[f][2 * kc + 1][0], s[f][2 * kc + 1][1]);
          pa[f][3] = Mma<T>::pack(s[f][2 * kc + 1][2], s[f][2 * kc + 1][3]);
        }
#pragma unroll
        for (int dp = 0; dp < D / 16; ++dp) {
          uint32_t bf[4];
          const int row = kc * 16 + (lane & 7) + (((lane >> 3) & 1) << 3);
          ldmatrix_x4_trans(bf, smem_addr(cv + swz<D>(row, dp * 2 + (lane >> 4)) * 8));
#pragma unroll
          for (int f = 0; f < kFrags; ++f) {
            Mma<T>::run(o[f][2 * dp], pa[f], bf[0], bf[1]);
            Mma<T>::run(o[f][2 * dp + 1], pa[f], bf[2], bf[3]);
          }
        }
      }
    }
    __syncthreads();  // the list is rewritten by the next round
  }

  // Normalise and store rows g and g + 8 of each fragment.
  T* obase = static_cast<T*>(p.out) + b * p.o_st.b + hq * p.o_st.h;
#pragma unroll
  for (int f = 0; f < kFrags; ++f)
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      float l = row_sum[f][r];
      l += __shfl_xor_sync(0xffffffffu, l, 1);
      l += __shfl_xor_sync(0xffffffffu, l, 2);
      const float inv = l > 0.f ? 1.f / l : 0.f;
      const int row = m0 + warp * kRowsPerWarp + f * 16 + g + r * 8;
      if (row < p.q_len) {
        T* dst = obase + static_cast<int64_t>(row) * p.o_st.l + tig * 2;
#pragma unroll
        for (int dt = 0; dt < D / 8; ++dt) Mma<T>::store2(dst + dt * 8, o[f][dt][r * 2] * inv, o[f][dt][r * 2 + 1] * inv);
      }
    }
}

template <typename T, int D>
void launch(const IntervalParams& p, cudaStream_t stream) {
  const size_t smem = static_cast<size_t>(kBlockM + 4 * kBlockN) * D * sizeof(T);
  allow_dynamic_smem(reinterpret_cast<const void*>(interval_kernel<T, D>), smem, "shared memory attribute");
  const dim3 grid((p.q_len + kBlockM - 1) / kBlockM, p.q_heads, p.batch);
  interval_kernel<T, D><<<grid, kThreads, smem, stream>>>(p, reinterpret_cast<const int4*>(p.tile_summary));
  check(cudaGetLastError(), "launch");
}

// Fills p.tile_summary: per key tile of kBlockN the min / max of lo and hi, then the coarse
// summaries.
void summarise(const IntervalParams& p, cudaStream_t stream) {
  const int ctas = p.batch * p.kv_heads * coarse_summaries(p.kv_len);
  summarise_tiles<<<ctas, 32 * kSummaryWarps, 0, stream>>>(p.lo, p.hi, p.iv_stride_b, p.iv_stride_h, p.batch, p.kv_heads,
                                                           p.kv_len, reinterpret_cast<int4*>(p.tile_summary));
  check(cudaGetLastError(), "tile summary launch");
}

thread_local StageRecorder* stage_recorder = nullptr;

}  // namespace

void set_stage_recorder(StageRecorder* recorder) { stage_recorder = recorder; }

void mark_stage(const char* stage, cudaStream_t stream) {
  if (stage_recorder != nullptr) stage_recorder->mark(stage, stream);
}

size_t interval_workspace_bytes(int batch, int kv_heads, int kv_len) {
  return interval_summary_bytes(batch, kv_heads, kv_len) + 16;  // the summaries, the work counter
}

int topk_capacity(int64_t rows) {
  constexpr int64_t kBudget = int64_t{1} << 30;  // bytes of candidates
  int capacity = kTopkMaxCapacity;
  while (capacity >= 32 && rows * capacity * static_cast<int64_t>(sizeof(uint32_t)) > kBudget) capacity /= 2;
  return capacity >= 32 ? capacity : 0;
}

size_t topk_workspace_bytes(int batch, int q_heads, int q_len, int capacity) {
  return static_cast<size_t>(batch) * q_heads * q_len * (4 + static_cast<size_t>(capacity)) * sizeof(uint32_t);
}

bool topk_select(const IntervalParams& p, int top_k, int levels, int capacity, uint32_t* workspace, Dtype dtype,
                 cudaStream_t stream) {
  if (p.head_dim != 128 || p.block_sel != nullptr || p.row_state != nullptr || p.k2 != nullptr || top_k < 1 || capacity < 0 ||
      capacity % 32 != 0 || capacity > kTopkMaxCapacity) {
    return false;
  }
  if (p.q_len <= 0 || p.kv_len <= 0) return true;
  summarise(p, stream);
  return launch_topk_select(p, dtype, reinterpret_cast<const int4*>(p.tile_summary), workspace, capacity, top_k, levels,
                            stream);
}

bool topk_attention(const IntervalParams& p, int top_k, int capacity, uint32_t* workspace, Dtype dtype,
                    cudaStream_t stream) {
  if (!topk_select(p, top_k, 5, capacity, workspace, dtype, stream)) return false;
  if (p.q_len <= 0 || p.kv_len <= 0) return true;
  const int4* summary = reinterpret_cast<const int4*>(p.tile_summary);
  IntervalParams a = p;
  a.row_state = workspace;  // the states lead the work space
  if (!launch_interval_wgmma(a, dtype, summary, WgmmaShape::kRows128Keys128, stream)) {
    throw std::logic_error("topk attention: the select ran but the attention kernel cannot take the same tensors");
  }
  return true;
}

void interval_attention(const IntervalParams& p, Dtype dtype, cudaStream_t stream) {
  if (p.head_dim != 64 && p.head_dim != 128) throw std::invalid_argument("interval attention: head dim must be 64 or 128");
  if (p.row_state != nullptr) throw std::invalid_argument("interval attention: row_state is topk_attention()'s");
  if (p.k2 != nullptr && (p.split < 0 || p.split % 128 != 0 || p.split > p.kv_len)) {
    throw std::invalid_argument("interval attention: split " + std::to_string(p.split) +
                                " (with k2: a multiple of 128, at most kv_len " + std::to_string(p.kv_len) + ")");
  }
  if (p.q_len <= 0 || p.kv_len <= 0) return;
  summarise(p, stream);
  mark_stage("tile summaries", stream);
  // Head dim 128 runs the wgmma kernel: 128 rows x 128-key tiles, or 64 x 64 with a block
  // selection (one query block per work item, one key block per tile: a selected tile needs no
  // per-element mask) or when p.rows_per_cta asks for 64. LCB_INTERVAL_KERNEL=wgmma64 asks for
  // 128 x 64, =wgmma64x1 for 64 x 64, =mma for the mma.sync kernel, which also runs when the wgmma
  // kernel cannot take the tensors (TMA cannot address them).
  const char* env = std::getenv("LCB_INTERVAL_KERNEL");
  const std::string choice = env != nullptr ? env : "";
  const WgmmaShape shape = p.block_sel != nullptr                            ? WgmmaShape::kRows64Keys64
                           : choice == "wgmma64"                             ? WgmmaShape::kRows128Keys64
                           : choice == "wgmma64x1"                           ? WgmmaShape::kRows64Keys64
                           : p.rows_per_cta == 64 && choice != "wgmma"       ? WgmmaShape::kRows64Keys64
                                                                             : WgmmaShape::kRows128Keys128;
  if (p.head_dim == 128 && choice != "mma" &&
      launch_interval_wgmma(p, dtype, reinterpret_cast<const int4*>(p.tile_summary), shape, stream)) {
    mark_stage("attention", stream);
    return;
  }
  if (dtype == Dtype::kBFloat16) {
    p.head_dim == 128 ? launch<__nv_bfloat16, 128>(p, stream) : launch<__nv_bfloat16, 64>(p, stream);
  } else {
    p.head_dim == 128 ? launch<__half, 128>(p, stream) : launch<__half, 64>(p, stream);
  }
  mark_stage("attention", stream);
}

}  // namespace lcb::attn::cuda
