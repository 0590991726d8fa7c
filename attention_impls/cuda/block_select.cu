// topk_block's selection on the GPU (DESIGN.md §3): per (batch, query head, 64-query block) the
// Quest bound ub(q, kb) = Σ_d max(q_d·kmin_d, q_d·kmax_d) = q⁺·kmax + q⁻·kmin, its maximum over
// the block's queries, and the top-k key blocks among those strictly between the first and the
// diagonal one.
//
// Prefill: one CTA per four consecutive query blocks of a head (one where their keys do not fit in
// shared memory), sharing every load of the summaries. The bound is a matrix product: q⁺ and q⁻
// (exact in bf16/fp16) against the kmax and kmin rows with wgmma and fp32 accumulation, so every
// product is exact and only the summation order differs from the float32 reference. Each block's
// scores stay in shared memory; a radix select (four 8-bit passes) finds the k-th largest and the
// row of block_sel is written. Decode: one kernel computes the bounds of the one query against
// every candidate block (and folds the new key into its block's min/max), a second selects the
// top k and writes the rows the decode kernel gathers.
#include "attention_impls/cuda/common.cuh"
#include "attention_impls/cuda/wgmma.cuh"

#include <cstdlib>

namespace lcb::attn::cuda {
namespace {

using namespace detail;

constexpr int kBlk = kSelectBlock;  // keys per block, queries per query block
constexpr int kThreadsP = 128;      // prefill: 4 warps of 16 query rows
constexpr int kThreadsD = 256;      // decode kernels

template <typename T>
struct Pair;
template <>
struct Pair<__nv_bfloat16> {
  using T2 = __nv_bfloat162;
};
template <>
struct Pair<__half> {
  using T2 = __half2;
};

// The positive / negative parts of a packed pair (exact).
template <typename T, bool kPositive>
__device__ __forceinline__ uint32_t part(uint32_t u) {
  using T2 = typename Pair<T>::T2;
  const T2 x = *reinterpret_cast<const T2*>(&u);
  const uint32_t z = 0;
  const T2 zero = *reinterpret_cast<const T2*>(&z);
  const T2 r = kPositive ? __hmax2(x, zero) : __hmin2(x, zero);
  return *reinterpret_cast<const uint32_t*>(&r);
}

// One CTA per kGroups consecutive query blocks of one head (heaviest first), one warpgroup of 64
// query rows per block. The chunks of 64 key blocks' summaries are loaded once for all of them,
// into two stages (the next chunk copies while this one computes), and each warpgroup multiplies
// them with wgmma: A = its rows' q⁺ / q⁻ from registers, B = the kmax / kmin tile, K-major in the
// swizzled layout (wgmma.cuh), read from shared memory once per warpgroup.
template <typename T, int kD, int kGroups>
__global__ void __launch_bounds__(kThreadsP* kGroups, kGroups == 2 ? 2 : 1) select_prefill_kernel(BlockSelectParams p) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  constexpr int kThreads = kThreadsP * kGroups, kTile = kBlk * kPaddedRow<kD>, kTileBytes = kBlk * kD * 2;
  extern __shared__ uint4 smem_u4[];
  unsigned char* stages =  // [2][kmax, kmin] swizzled tiles
      reinterpret_cast<unsigned char*>((reinterpret_cast<uintptr_t>(smem_u4) + 1023) & ~uintptr_t(1023));
  T* sq = reinterpret_cast<T*>(stages + 4 * kTileBytes);  // [kGroups] padded query tiles, until the fragments are built
  uint32_t* keys = reinterpret_cast<uint32_t*>(sq);       // then [kGroups][n_blocks] (over sq)
  uint8_t* flags = reinterpret_cast<uint8_t*>(keys + kGroups * p.n_blocks);
  __shared__ float s_red[2][kThreads / 32][kBlk];

  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32, g = lane / 4, tig = lane % 4;
  const int gi = warp / 4, wq = warp % 4;  // this warp's query block in the CTA, its 16 rows there
  const int nb = p.n_blocks;
  const int top = nb - 1 - blockIdx.x * kGroups;  // query block of group 0; group i has top - i
  const int hq = blockIdx.y, b = blockIdx.z;
  const int hkv = hq / (p.q_heads / p.kv_heads);
  auto n_cand_of = [&](int i) { return max(top - i - 1, 0); };  // key blocks 1 .. qb-1
  auto ranked = [&](int i) {  // neither none nor all of the candidates chosen
    const int n = n_cand_of(i);
    return top - i >= 0 && p.top_k > 0 && p.top_k < n;
  };

  if (ranked(0)) {  // the group with the most candidates; otherwise no group ranks
    const T* qbase = static_cast<const T*>(p.q) + b * p.q_st.b + hq * p.q_st.h;
    const T* maxbase = static_cast<const T*>(p.kmax) + b * p.s_st.b + hkv * p.s_st.h;
    const T* minbase = static_cast<const T*>(p.kmin) + b * p.s_st.b + hkv * p.s_st.h;
    const int64_t qs = p.q_st.l, ss = p.s_st.l;
    auto load_chunk = [&](int c) {
      const int kb0 = 1 + c * kBlk, n_here = min(kBlk, top - kb0);
      unsigned char* dst = stages + (c & 1) * 2 * kTileBytes;
      load_rows_swizzled<T, kD, kBlk, kThreads>(dst, [&](int r) { return maxbase + (kb0 + r) * ss; }, n_here, maxbase);
      load_rows_swizzled<T, kD, kBlk, kThreads>(dst + kTileBytes, [&](int r) { return minbase + (kb0 + r) * ss; },
                                                n_here, minbase);
      cp_async_commit();
    };
    for (int i = 0; i < kGroups; ++i) {
      const int qb = top - i, q_rows = qb >= 0 ? min(kBlk, p.q_len - qb * kBlk) : 0;
      load_rows_padded<T, kD, kBlk, kThreads>(sq + i * kTile, [&](int r) { return qbase + (qb * kBlk + r) * qs; },
                                              q_rows, qbase);
    }
    load_chunk(0);
    cp_async_wait_all();
    __syncthreads();
    // A fragments of q⁺ and q⁻ for this warp's 16 rows, kept for every chunk.
    uint32_t apos[kD / 16][4], aneg[kD / 16][4];
    const int r0 = wq * 16 + g, my_rows = top - gi >= 0 ? min(kBlk, p.q_len - (top - gi) * kBlk) : 0;
#pragma unroll
    for (int ks = 0; ks < kD / 16; ++ks) {
      uint32_t a[4];
      load_a_frag<T, kD>(a, sq + gi * kTile, wq * 16, ks * 16);
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        apos[ks][i] = part<T, true>(a[i]);
        aneg[ks][i] = part<T, false>(a[i]);
      }
    }
    const bool valid0 = r0 < my_rows, valid1 = r0 + 8 < my_rows;

    // Chunk c's per-warp maxima (s_red[c & 1]) become the keys of each ranked group's candidates.
    auto store_keys = [&](int c) {
      const int i = tid / kThreadsP, t = tid % kThreadsP, kb = 1 + c * kBlk + t;
      if (t < kBlk && kb < top - i && ranked(i)) {
        float m = s_red[c & 1][i * 4][t];
#pragma unroll
        for (int w = 1; w < 4; ++w) m = fmaxf(m, s_red[c & 1][i * 4 + w][t]);
        keys[i * nb + kb - 1] = order_key(m);
        if (p.scores != nullptr) {
          p.scores[b * p.sel_stride_b + hq * p.sel_stride_h + static_cast<int64_t>(top - i) * p.sel_stride_q + kb] = m;
        }
      }
    };
    const int n_chunks = (top - 1 + kBlk - 1) / kBlk;
    for (int c = 0; c < n_chunks; ++c) {
      cp_async_wait_all();
      fence_proxy_async();  // the copies are read by wgmma
      __syncthreads();      // chunk c has landed; every warp is done with chunk c - 1 (its stage and sums)
      if (c + 1 < n_chunks) load_chunk(c + 1);
      if (c > 0) store_keys(c - 1);
      const unsigned char* smax = stages + (c & 1) * 2 * kTileBytes;
      const unsigned char* smin = smax + kTileBytes;
      float acc[kBlk / 2];  // S (64 x 64): n-block nt of rows g, g + 8 at acc[nt * 4 ..]
      wgmma_fence();
#pragma unroll
      for (int ks = 0; ks < kD / 16; ++ks) {
        const int at = (ks / 4) * kBlk * 128 + (ks % 4) * 32;
        wgmma_rs_n64(acc, apos[ks], smem_desc(smax + at, 16, 1024), ks > 0 ? 1 : 0, static_cast<const T*>(nullptr));
        wgmma_rs_n64(acc, aneg[ks], smem_desc(smin + at, 16, 1024), 1, static_cast<const T*>(nullptr));
      }
      wgmma_commit();
      wgmma_wait_all();
      // Maximum over the block's valid queries: rows g and g + 8 here, then across g.
#pragma unroll
      for (int nt = 0; nt < kBlk / 8; ++nt) {
#pragma unroll
        for (int cc = 0; cc < 2; ++cc) {
          float m = fmaxf(valid0 ? acc[nt * 4 + cc] : -INFINITY, valid1 ? acc[nt * 4 + 2 + cc] : -INFINITY);
          m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, 4));
          m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, 8));
          m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, 16));
          if (g == 0) s_red[c & 1][warp][nt * 8 + tig * 2 + cc] = m;
        }
      }
    }
    __syncthreads();
    store_keys(n_chunks - 1);
    __syncthreads();
    // Each block's 128 threads select its candidates, the blocks side by side (named barriers).
    __shared__ SelectScratch<kThreadsP> s_sel[kGroups];
    if (ranked(gi)) {
      select_largest<kThreadsP>([keys, gi, nb](int j) { return keys[gi * nb + j]; }, n_cand_of(gi), p.top_k,
                                flags + gi * nb, s_sel[gi], kGroups == 1 ? 0 : 1 + gi);
    }
    __syncthreads();
  }
  for (int i = 0; i < kGroups; ++i) {
    const int qb = top - i;
    if (qb < 0) break;
    const int n_cand = n_cand_of(i);
    const bool all = p.top_k >= n_cand, rank = ranked(i);
    uint8_t* row = p.sel + b * p.sel_stride_b + hq * p.sel_stride_h + static_cast<int64_t>(qb) * p.sel_stride_q;
    for (int kb = tid; kb < nb; kb += kThreads) {
      bool v = kb == 0 || kb == qb;
      if (kb >= 1 && kb < qb) v = all || (rank && flags[i * nb + kb - 1] != 0);
      row[kb] = v ? 1 : 0;
    }
  }
#else
  __trap();  // built without sm_90a
#endif
}

// Dynamic shared memory of select_prefill_kernel<T, kD, kGroups> for n_blocks blocks: two stages
// of swizzled summaries, then the padded query tiles, later the keys and flags of every group in
// their place.
constexpr size_t prefill_smem_bytes(int head_dim, int groups, int n_blocks) {
  const size_t summary = static_cast<size_t>(kBlk) * head_dim * 2;
  const size_t query = static_cast<size_t>(kBlk) * (head_dim + 8) * 2;
  const size_t later = static_cast<size_t>(groups) * n_blocks * 5;
  return 1024 + 4 * summary + (groups * query > later ? groups * query : later);  // 1024: alignment
}

// Static shared memory of select_prefill_kernel<T, kD, kGroups>, looked up once.
template <typename T, int kD, int kGroups>
size_t prefill_static_bytes() {
  static const size_t bytes = [] {
    cudaFuncAttributes a{};
    check(cudaFuncGetAttributes(&a, select_prefill_kernel<T, kD, kGroups>), "block select attributes");
    return a.sharedSizeBytes;
  }();
  return bytes;
}

template <typename T, int kD, int kGroups>
void launch_prefill_groups(const BlockSelectParams& p, size_t smem, cudaStream_t stream) {
  auto* kernel = select_prefill_kernel<T, kD, kGroups>;
  allow_dynamic_smem(reinterpret_cast<const void*>(kernel), smem, "block select shared memory attribute");
  const dim3 grid((p.n_blocks + kGroups - 1) / kGroups, p.q_heads, p.batch);
  kernel<<<grid, kThreadsP * kGroups, smem, stream>>>(p);
  check(cudaGetLastError(), "block select launch");
}

// Four query blocks per CTA where their keys fit in shared memory (up to about 8000 blocks), one
// otherwise. LCB_BLOCK_SELECT_GROUPS=1 or 2 asks for fewer.
template <typename T, int kD>
void launch_prefill(const BlockSelectParams& p, cudaStream_t stream) {
  const char* env = std::getenv("LCB_BLOCK_SELECT_GROUPS");
  const int want = env != nullptr ? std::atoi(env) : 4;
  const auto fits = [&](int groups, size_t fixed) {
    return prefill_smem_bytes(kD, groups, p.n_blocks) + fixed <= smem_optin();
  };
  if (want == 4 && fits(4, prefill_static_bytes<T, kD, 4>())) {
    launch_prefill_groups<T, kD, 4>(p, prefill_smem_bytes(kD, 4, p.n_blocks), stream);
  } else if (want >= 2 && fits(2, prefill_static_bytes<T, kD, 2>())) {
    launch_prefill_groups<T, kD, 2>(p, prefill_smem_bytes(kD, 2, p.n_blocks), stream);
  } else {
    launch_prefill_groups<T, kD, 1>(p, prefill_smem_bytes(kD, 1, p.n_blocks), stream);
  }
}

// ---- decode ----

constexpr int kLanesPerBlock = 8;                                 // lanes reducing one bound
constexpr int kBlocksPerPass = kThreadsD / kLanesPerBlock;        // 32
constexpr int kBlocksPerCta = 8 * kBlocksPerPass;                 // 256 candidate blocks per CTA

// Bounds of the one query against candidate blocks [1, qb); CTA (x, hq, b) takes
// kBlocksPerCta of them. The first CTA of each kv head also folds the new key into its block's
// min/max (that block is the diagonal one, which this step does not bound).
template <typename T, int kD>
__global__ void __launch_bounds__(kThreadsD) decode_bounds_kernel(BlockDecodeParams p) {
  constexpr int kPer = kD / kLanesPerBlock;  // elements per lane: 8 or 16
  const int tid = threadIdx.x, sub = tid % kLanesPerBlock, slot = tid / kLanesPerBlock;
  const int hq = blockIdx.y, b = blockIdx.z, groups = p.q_heads / p.kv_heads, hkv = hq / groups;
  const int qb = p.pos / kBlk, n_cand = max(qb - 1, 0);
  T* maxbase = static_cast<T*>(p.kmax) + b * p.s_st.b + hkv * p.s_st.h;
  T* minbase = static_cast<T*>(p.kmin) + b * p.s_st.b + hkv * p.s_st.h;

  if (blockIdx.x == 0 && hq % groups == 0) {
    const T* k1 = static_cast<const T*>(p.k1) + b * p.k1_st.b + hkv * p.k1_st.h;
    T* mx = maxbase + static_cast<int64_t>(qb) * p.s_st.l;
    T* mn = minbase + static_cast<int64_t>(qb) * p.s_st.l;
    const bool first = p.pos % kBlk == 0;
    for (int d = tid; d < kD; d += kThreadsD) {
      const T x = k1[d];
      mx[d] = first || to_float(x) > to_float(mx[d]) ? x : mx[d];
      mn[d] = first || to_float(x) < to_float(mn[d]) ? x : mn[d];
    }
  }
  if (n_cand <= p.top_k) return;  // every candidate is chosen: no bounds needed

  const T* q = static_cast<const T*>(p.q) + b * p.q_st.b + hq * p.q_st.h + sub * kPer;
  float qf[kPer];
#pragma unroll
  for (int i = 0; i < kPer; ++i) qf[i] = to_float(q[i]);
  float* scores = p.scores + (static_cast<int64_t>(b) * p.q_heads + hq) * p.score_stride;
  const int end = min(n_cand, (blockIdx.x + 1) * kBlocksPerCta);
  for (int c = blockIdx.x * kBlocksPerCta + slot; c < end; c += kBlocksPerPass) {
    const int kb = c + 1;
    const T* mx = maxbase + static_cast<int64_t>(kb) * p.s_st.l + sub * kPer;
    const T* mn = minbase + static_cast<int64_t>(kb) * p.s_st.l + sub * kPer;
    T vmax[kPer], vmin[kPer];
#pragma unroll
    for (int i = 0; i < kPer; i += 8) {
      *reinterpret_cast<uint4*>(vmax + i) = *reinterpret_cast<const uint4*>(mx + i);
      *reinterpret_cast<uint4*>(vmin + i) = *reinterpret_cast<const uint4*>(mn + i);
    }
    float s = 0.f;
#pragma unroll
    for (int i = 0; i < kPer; ++i) s += qf[i] * (qf[i] > 0.f ? to_float(vmax[i]) : to_float(vmin[i]));
#pragma unroll
    for (int off = 1; off < kLanesPerBlock; off <<= 1) s += __shfl_xor_sync(0xffffffffu, s, off);
    if (sub == 0) scores[c] = s;
  }
}

// The rows query head hq attends to: the first block, the chosen blocks (in block order), the
// diagonal block up to the new token; each as kv head · cap + position.
__global__ void __launch_bounds__(kThreadsD) decode_rows_kernel(BlockDecodeParams p) {
  extern __shared__ uint32_t keys_d[];
  const int tid = threadIdx.x;
  const int hq = blockIdx.x, b = blockIdx.y, hkv = hq / (p.q_heads / p.kv_heads);
  const int qb = p.pos / kBlk, n_cand = max(qb - 1, 0), chosen = min(p.top_k, n_cand);
  uint8_t* flags = reinterpret_cast<uint8_t*>(keys_d + n_cand);
  __shared__ int s_warp[kThreadsD / 32];
  const int64_t head0 = static_cast<int64_t>(hkv) * p.cap;
  int32_t* rows = p.rows + (static_cast<int64_t>(b) * p.q_heads + hq) * p.n_rows;

  const bool rank = chosen > 0 && chosen < n_cand;
  if (rank) {
    const float* scores = p.scores + (static_cast<int64_t>(b) * p.q_heads + hq) * p.score_stride;
    for (int i = tid; i < n_cand; i += kThreadsD) keys_d[i] = order_key(scores[i]);
    __syncthreads();
    const uint32_t* keys = keys_d;
    select_largest<kThreadsD>([keys](int i) { return keys[i]; }, n_cand, chosen, flags);
    __syncthreads();
  }
  int written = 0;  // rows before the diagonal block
  if (qb >= 1) {
    if (tid < kBlk) rows[tid] = static_cast<int32_t>(head0 + tid);
    written = kBlk;
    // Chosen blocks in order: compact the flags, each chosen block then writes its 64 rows.
    int done = 0;
    for (int base = 0; base < n_cand; base += kThreadsD) {
      const int i = base + tid;
      const bool take = i < n_cand && (!rank ? chosen == n_cand : flags[i] != 0);
      int total;
      const int slot = done + block_count_before<kThreadsD>(take, s_warp, &total);
      if (take) {
        int32_t* dst = rows + kBlk + slot * kBlk;
        const int64_t src = head0 + static_cast<int64_t>(i + 1) * kBlk;
        for (int j = 0; j < kBlk; ++j) dst[j] = static_cast<int32_t>(src + j);
      }
      done += total;
    }
    written += chosen * kBlk;
  }
  for (int j = tid; j <= p.pos - qb * kBlk; j += kThreadsD) rows[written + j] = static_cast<int32_t>(head0 + qb * kBlk + j);
}

template <typename T, int kD>
void launch_decode_select(const BlockDecodeParams& p, cudaStream_t stream) {
  const int qb = p.pos / kBlk, n_cand = qb > 1 ? qb - 1 : 0;
  const dim3 grid_b(n_cand > p.top_k ? (n_cand + kBlocksPerCta - 1) / kBlocksPerCta : 1, p.q_heads, p.batch);
  decode_bounds_kernel<T, kD><<<grid_b, kThreadsD, 0, stream>>>(p);
  check(cudaGetLastError(), "block bounds launch");
  const size_t smem = static_cast<size_t>(n_cand) * 5;
  if (smem > 48 * 1024) {
    allow_dynamic_smem(reinterpret_cast<const void*>(decode_rows_kernel), smem, "block rows shared memory attribute");
  }
  decode_rows_kernel<<<dim3(p.q_heads, p.batch), kThreadsD, smem, stream>>>(p);
  check(cudaGetLastError(), "block rows launch");
}

}  // namespace

size_t block_select_smem_bytes(int head_dim, int n_blocks) {
  const size_t fixed = head_dim == 128 ? prefill_static_bytes<__nv_bfloat16, 128, 1>()
                                       : prefill_static_bytes<__nv_bfloat16, 64, 1>();
  return prefill_smem_bytes(head_dim, 1, n_blocks) + fixed;
}

void block_select(const BlockSelectParams& p, Dtype dtype, cudaStream_t stream) {
  if (p.head_dim != 64 && p.head_dim != 128) throw std::invalid_argument("block select: head dim 64 or 128");
  if (dtype == Dtype::kBFloat16) {
    p.head_dim == 128 ? launch_prefill<__nv_bfloat16, 128>(p, stream) : launch_prefill<__nv_bfloat16, 64>(p, stream);
  } else {
    p.head_dim == 128 ? launch_prefill<__half, 128>(p, stream) : launch_prefill<__half, 64>(p, stream);
  }
}

int block_decode_rows(int pos, int top_k) {
  const int qb = pos / kBlk, n_cand = qb > 1 ? qb - 1 : 0;
  return (qb >= 1 ? kBlk * (1 + (top_k < n_cand ? top_k : n_cand)) : 0) + (pos - qb * kBlk + 1);
}

void block_decode_select(const BlockDecodeParams& p, Dtype dtype, cudaStream_t stream) {
  if (p.head_dim != 64 && p.head_dim != 128) throw std::invalid_argument("block decode select: head dim 64 or 128");
  if (dtype == Dtype::kBFloat16) {
    p.head_dim == 128 ? launch_decode_select<__nv_bfloat16, 128>(p, stream)
                      : launch_decode_select<__nv_bfloat16, 64>(p, stream);
  } else {
    p.head_dim == 128 ? launch_decode_select<__half, 128>(p, stream) : launch_decode_select<__half, 64>(p, stream);
  }
}

}  // namespace lcb::attn::cuda
