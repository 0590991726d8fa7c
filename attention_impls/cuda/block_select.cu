// topk_block's selection on the GPU (DESIGN.md §3): per (batch, query head, 64-query block) the
// Quest bound ub(q, kb) = Σ_d max(q_d·kmin_d, q_d·kmax_d) = q⁺·kmax + q⁻·kmin, its maximum over
// the block's queries, and the top-k key blocks among those strictly between the first and the
// diagonal one.
//
// Prefill: one CTA per query block. The bound is a matrix product: q⁺ and q⁻ (exact in bf16/fp16)
// against the kmax and kmin rows on tensor cores with fp32 accumulation, so every product is
// exact and only the summation order differs from the float32 reference. The block's scores stay
// in shared memory; a radix select (four 8-bit passes) finds the k-th largest and the row of
// block_sel is written. Decode: one kernel computes the bounds of the one query against every
// candidate block (and folds the new key into its block's min/max), a second selects the top k
// and writes the rows the decode kernel gathers.
#include "attention_impls/cuda/common.cuh"

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

template <typename T, int kD>
__global__ void __launch_bounds__(kThreadsP) select_prefill_kernel(BlockSelectParams p) {
  constexpr int S = kPaddedRow<kD>;
  extern __shared__ uint4 smem_u4[];
  T* sq = reinterpret_cast<T*>(smem_u4);
  T* smax = sq + kBlk * S;
  T* smin = smax + kBlk * S;
  uint32_t* keys = reinterpret_cast<uint32_t*>(smin + kBlk * S);
  uint8_t* flags = reinterpret_cast<uint8_t*>(keys + p.n_blocks);
  __shared__ float s_red[kThreadsP / 32][kBlk];

  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32, g = lane / 4, tig = lane % 4;
  const int nb = p.n_blocks;
  const int qb = nb - 1 - blockIdx.x;  // heaviest first
  const int hq = blockIdx.y, b = blockIdx.z;
  const int hkv = hq / (p.q_heads / p.kv_heads);
  const int n_cand = max(qb - 1, 0);  // key blocks 1 .. qb-1
  const int chosen = min(p.top_k, n_cand);
  const bool rank = chosen > 0 && chosen < n_cand;  // otherwise none or all are chosen

  if (rank) {
    const T* qbase = static_cast<const T*>(p.q) + b * p.q_st.b + hq * p.q_st.h;
    const T* maxbase = static_cast<const T*>(p.kmax) + b * p.s_st.b + hkv * p.s_st.h;
    const T* minbase = static_cast<const T*>(p.kmin) + b * p.s_st.b + hkv * p.s_st.h;
    const int q_rows = min(kBlk, p.q_len - qb * kBlk);
    const int64_t qs = p.q_st.l, ss = p.s_st.l;
    load_rows_padded<T, kD, kBlk, kThreadsP>(sq, [&](int r) { return qbase + (qb * kBlk + r) * qs; }, q_rows, qbase);
    cp_async_commit();
    cp_async_wait_all();
    __syncthreads();
    // A fragments of q⁺ and q⁻ for this warp's 16 rows, kept for every chunk of key blocks.
    uint32_t apos[kD / 16][4], aneg[kD / 16][4];
    const int r0 = warp * 16 + g;
#pragma unroll
    for (int ks = 0; ks < kD / 16; ++ks) {
      uint32_t a[4];
      load_a_frag<T, kD>(a, sq, warp * 16, ks * 16);
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        apos[ks][i] = part<T, true>(a[i]);
        aneg[ks][i] = part<T, false>(a[i]);
      }
    }
    const bool valid0 = r0 < q_rows, valid1 = r0 + 8 < q_rows;

    for (int kb0 = 1; kb0 < qb; kb0 += kBlk) {
      const int n_here = min(kBlk, qb - kb0);
      load_rows_padded<T, kD, kBlk, kThreadsP>(smax, [&](int r) { return maxbase + (kb0 + r) * ss; }, n_here, maxbase);
      load_rows_padded<T, kD, kBlk, kThreadsP>(smin, [&](int r) { return minbase + (kb0 + r) * ss; }, n_here, minbase);
      cp_async_commit();
      cp_async_wait_all();
      __syncthreads();
      float acc[kBlk / 8][4];
#pragma unroll
      for (int nt = 0; nt < kBlk / 8; ++nt) {
#pragma unroll
        for (int i = 0; i < 4; ++i) acc[nt][i] = 0.f;
      }
#pragma unroll
      for (int ks = 0; ks < kD / 16; ++ks) {
#pragma unroll
        for (int nt = 0; nt < kBlk / 8; ++nt) {
          const uint2 bmax = frag_pair<T, kD>(smax, nt * 8 + g, ks * 16 + tig * 2);
          const uint2 bmin = frag_pair<T, kD>(smin, nt * 8 + g, ks * 16 + tig * 2);
          Mma<T>::run(acc[nt], apos[ks], bmax.x, bmax.y);
          Mma<T>::run(acc[nt], aneg[ks], bmin.x, bmin.y);
        }
      }
      // Maximum over the block's valid queries: rows g and g + 8 here, then across g, then warps.
#pragma unroll
      for (int nt = 0; nt < kBlk / 8; ++nt) {
#pragma unroll
        for (int c = 0; c < 2; ++c) {
          float m = fmaxf(valid0 ? acc[nt][c] : -INFINITY, valid1 ? acc[nt][2 + c] : -INFINITY);
          m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, 4));
          m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, 8));
          m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, 16));
          if (g == 0) s_red[warp][nt * 8 + tig * 2 + c] = m;
        }
      }
      __syncthreads();
      if (tid < n_here) {
        float m = s_red[0][tid];
#pragma unroll
        for (int w = 1; w < kThreadsP / 32; ++w) m = fmaxf(m, s_red[w][tid]);
        keys[kb0 - 1 + tid] = order_key(m);
        if (p.scores != nullptr) {
          p.scores[b * p.sel_stride_b + hq * p.sel_stride_h + static_cast<int64_t>(qb) * p.sel_stride_q + kb0 + tid] = m;
        }
      }
      __syncthreads();  // the summaries' buffers and s_red are rewritten by the next chunk
    }
    select_largest<kThreadsP>([keys](int i) { return keys[i]; }, n_cand, chosen, flags);
    __syncthreads();
  }
  uint8_t* row = p.sel + b * p.sel_stride_b + hq * p.sel_stride_h + static_cast<int64_t>(qb) * p.sel_stride_q;
  for (int kb = tid; kb < nb; kb += kThreadsP) {
    bool v = kb == 0 || kb == qb;
    if (kb >= 1 && kb < qb) v = chosen == n_cand || (rank && flags[kb - 1] != 0);
    row[kb] = v ? 1 : 0;
  }
}

template <typename T, int kD>
void launch_prefill(const BlockSelectParams& p, cudaStream_t stream) {
  const size_t smem = 3 * kBlk * kPaddedRow<kD> * sizeof(T) + static_cast<size_t>(p.n_blocks) * 5;
  check(cudaFuncSetAttribute(select_prefill_kernel<T, kD>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                             static_cast<int>(smem)),
        "block select shared memory attribute");
  const dim3 grid(p.n_blocks, p.q_heads, p.batch);
  select_prefill_kernel<T, kD><<<grid, kThreadsP, smem, stream>>>(p);
  check(cudaGetLastError(), "block select launch");
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
    check(cudaFuncSetAttribute(decode_rows_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)),
          "block rows shared memory attribute");
  }
  decode_rows_kernel<<<dim3(p.q_heads, p.batch), kThreadsD, smem, stream>>>(p);
  check(cudaGetLastError(), "block rows launch");
}

}  // namespace

size_t block_select_smem_bytes(int head_dim, int n_blocks) {
  return 3 * kBlk * (head_dim + 8) * 2 + static_cast<size_t>(n_blocks) * 5;
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
