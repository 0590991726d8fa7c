// DGA's selection stages on the GPU (DESIGN.md §3, steps 1-3), per (batch, kv head):
//   importance   s_j = Σ_{i∈S, i>=j} Σ_{query heads h of the kv head} softmax_i(scale·q_{h,i}·K)_j.
//                Two passes over 64-key chunks on tensor cores (mma.sync, bf16/fp16 products exact in
//                fp32): partial max / sum-of-exp per sampled row and chunk, combined into each row's
//                log-sum-exp, then the probabilities summed over rows per key. No [rows, L] matrix
//                is stored.
//   focal split  a radix select of the top F positions by s (no sort), then a stable partition
//                into the order non-focal ascending, focal ascending.
//   aggregation  per group of m non-focal tokens: w = softmax(scale · mean_h q_{h,e}·k_j), the
//                weighted sums of K and V, one warp per group with an online softmax.
#include "attention_impls/cuda/common.cuh"

#include <type_traits>

namespace lcb::attn::cuda {
namespace {

using namespace detail;

constexpr int kChunk = 64;      // keys per chunk, sampled rows per row tile
constexpr int kThreadsI = 128;  // importance kernels: 4 warps of 16 rows
constexpr int kThreadsS = 1024; // focal split: one CTA per (batch, kv head)

struct Rows {  // the sampled rows of one (batch, kv head): row r = head (r / ns) of the group, sample r % ns
  int count, ns;
};

// Pass 1 (kPass2 = false): per sampled row and 64-key chunk, the maximum and the sum of exp of the
// scaled logits over the row's causal keys. Pass 2: per key, Σ over rows of exp(logit - lse).
template <typename T, int kD, bool kPass2>
__global__ void __launch_bounds__(kThreadsI) importance_kernel(DgaSelectParams p, float* part_m, float* part_l,
                                                               const float* lse) {
  constexpr int S = kPaddedRow<kD>;
  extern __shared__ uint4 smem_dga[];
  T* sk = reinterpret_cast<T*>(smem_dga);
  T* sq = sk + kChunk * S;
  __shared__ float s_col[kThreadsI / 32][kChunk];

  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32, g = lane / 4, tig = lane % 4;
  const int chunk = blockIdx.x, hkv = blockIdx.y, b = blockIdx.z;
  const int groups = p.q_heads / p.kv_heads;
  const Rows rows{groups * p.n_samples, p.n_samples};
  const int key0 = chunk * kChunk;
  const int n_chunks = gridDim.x;
  const int64_t bh = static_cast<int64_t>(b) * p.kv_heads + hkv;

  const T* kbase = static_cast<const T*>(p.k) + b * p.k_st.b + hkv * p.k_st.h;
  const int64_t ks_l = p.k_st.l;
  load_rows_padded<T, kD, kChunk, kThreadsI>(sk, [&](int r) { return kbase + (key0 + r) * ks_l; }, p.len - key0, kbase);
  float col[kChunk / 8][2];  // pass 2: this thread's column sums (lanes with g == 0 keep them)
#pragma unroll
  for (int nt = 0; nt < kChunk / 8; ++nt) col[nt][0] = col[nt][1] = 0.f;

  for (int rt = 0; rt * kChunk < rows.count; ++rt) {
    const T* q0 = static_cast<const T*>(p.q);
    load_rows_padded<T, kD, kChunk, kThreadsI>(
        sq,
        [&](int r) {  // sampled row rt·64 + r: head row / ns of the group, position samples[row % ns]
          const int row = rt * kChunk + r, hq = hkv * groups + row / rows.ns;
          return q0 + b * p.q_st.b + hq * p.q_st.h + static_cast<int64_t>(p.samples[row % rows.ns]) * p.q_st.l;
        },
        rows.count - rt * kChunk, q0);
    cp_async_commit();
    cp_async_wait_all();
    __syncthreads();

    float acc[kChunk / 8][4];
#pragma unroll
    for (int nt = 0; nt < kChunk / 8; ++nt) acc[nt][0] = acc[nt][1] = acc[nt][2] = acc[nt][3] = 0.f;
    const int r0 = warp * 16 + g;
#pragma unroll
    for (int ks = 0; ks < kD / 16; ++ks) {
      uint32_t a[4];
      load_a_frag<T, kD>(a, sq, warp * 16, ks * 16);
#pragma unroll
      for (int nt = 0; nt < kChunk / 8; ++nt) {
        const uint2 bk = frag_pair<T, kD>(sk, nt * 8 + g, ks * 16 + tig * 2);
        Mma<T>::run(acc[nt], a, bk.x, bk.y);
      }
    }
    // This thread: rows rt·64 + r0 (+ 8), keys key0 + nt·8 + tig·2 + c.
    int pos[2];
    bool row_ok[2];
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      const int row = rt * kChunk + r0 + r * 8;
      row_ok[r] = row < rows.count;
      pos[r] = row_ok[r] ? p.samples[row % rows.ns] : -1;
    }
    if constexpr (!kPass2) {
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        float m = -INFINITY;
#pragma unroll
        for (int nt = 0; nt < kChunk / 8; ++nt) {
#pragma unroll
          for (int c = 0; c < 2; ++c) {
            const int key = key0 + nt * 8 + tig * 2 + c;
            if (key <= pos[r] && key < p.len) m = fmaxf(m, acc[nt][r * 2 + c] * p.scale);
          }
        }
        m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, 1));
        m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, 2));
        float l = 0.f;
#pragma unroll
        for (int nt = 0; nt < kChunk / 8; ++nt) {
#pragma unroll
          for (int c = 0; c < 2; ++c) {
            const int key = key0 + nt * 8 + tig * 2 + c;
            if (key <= pos[r] && key < p.len) l += expf(acc[nt][r * 2 + c] * p.scale - m);
          }
        }
        l += __shfl_xor_sync(0xffffffffu, l, 1);
        l += __shfl_xor_sync(0xffffffffu, l, 2);
        if (tig == 0 && row_ok[r]) {
          const int64_t at = (bh * n_chunks + chunk) * rows.count + rt * kChunk + r0 + r * 8;
          part_m[at] = m;
          part_l[at] = l;
        }
      }
    } else {
      float z[2];
#pragma unroll
      for (int r = 0; r < 2; ++r) z[r] = row_ok[r] ? lse[bh * rows.count + rt * kChunk + r0 + r * 8] : 0.f;
#pragma unroll
      for (int nt = 0; nt < kChunk / 8; ++nt) {
#pragma unroll
        for (int c = 0; c < 2; ++c) {
          const int key = key0 + nt * 8 + tig * 2 + c;
          float v = 0.f;
#pragma unroll
          for (int r = 0; r < 2; ++r) {
            if (key <= pos[r] && key < p.len) v += expf(acc[nt][r * 2 + c] * p.scale - z[r]);
          }
          v += __shfl_xor_sync(0xffffffffu, v, 4);
          v += __shfl_xor_sync(0xffffffffu, v, 8);
          v += __shfl_xor_sync(0xffffffffu, v, 16);
          col[nt][c] += v;
        }
      }
    }
    __syncthreads();  // sq is rewritten by the next row tile
  }
  if constexpr (kPass2) {
    if (g == 0) {
#pragma unroll
      for (int nt = 0; nt < kChunk / 8; ++nt) {
#pragma unroll
        for (int c = 0; c < 2; ++c) s_col[warp][nt * 8 + tig * 2 + c] = col[nt][c];
      }
    }
    __syncthreads();
    if (tid < kChunk && key0 + tid < p.len) {
      float v = 0.f;
#pragma unroll
      for (int w = 0; w < kThreadsI / 32; ++w) v += s_col[w][tid];
      p.importance[bh * p.len + key0 + tid] = v;
    }
  }
}

// Each sampled row's log-sum-exp from its per-chunk partials: one warp per (batch, kv head, row).
__global__ void combine_kernel(const float* part_m, const float* part_l, float* lse, int n_chunks, int rows, int total) {
  const int w = (blockIdx.x * blockDim.x + threadIdx.x) / 32, lane = threadIdx.x % 32;
  if (w >= total) return;
  const int64_t bh = w / rows, r = w % rows;
  float m = -INFINITY, l = 0.f;
  for (int c = lane; c < n_chunks; c += 32) {
    const int64_t at = (bh * n_chunks + c) * rows + r;
    const float mc = part_m[at], lc = part_l[at];
    if (mc == -INFINITY) continue;
    const float mn = fmaxf(m, mc);
    l = l * expf(m - mn) + lc * expf(mc - mn);
    m = mn;
  }
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) {
    const float mo = __shfl_xor_sync(0xffffffffu, m, off), lo = __shfl_xor_sync(0xffffffffu, l, off);
    const float mn = fmaxf(m, mo);
    if (mn != -INFINITY) {
      l = l * expf(m - mn) + lo * expf(mo - mn);
      m = mn;
    }
  }
  if (lane == 0) lse[w] = m + logf(l);
}

// Top F positions by importance (radix select), then order = non-focal ascending, focal ascending.
__global__ void __launch_bounds__(kThreadsS) focal_kernel(DgaSelectParams p, uint8_t* flags_all) {
  __shared__ int s_warp[kThreadsS / 32];
  const int tid = threadIdx.x;
  const int64_t bh = static_cast<int64_t>(blockIdx.y) * p.kv_heads + blockIdx.x;
  const int L = p.len, F = p.focal, R = L - F;
  const float* imp = p.importance + bh * L;
  uint8_t* flags = flags_all + bh * L;
  if (F > 0 && F < L) {
    select_largest<kThreadsS>([imp](int i) { return order_key(imp[i]); }, L, F, flags);
  } else {
    for (int i = tid; i < L; i += kThreadsS) flags[i] = F > 0 ? 1 : 0;
  }
  __syncthreads();
  int64_t* order = p.order + bh * L;
  int focal_before = 0;
  for (int base = 0; base < L; base += kThreadsS) {
    const int i = base + tid;
    const bool f = i < L && flags[i] != 0;
    int total;
    const int fb = focal_before + block_count_before<kThreadsS>(f, s_warp, &total);  // focal positions before i
    if (i < L) order[f ? R + fb : i - fb] = i;
    focal_before += total;
  }
}

// How many of at(0 .. n-1) (ascending) are below x.
template <typename At>
__device__ __forceinline__ int count_below(At at, int n, int64_t x) {
  int lo = 0, hi = n;
  while (lo < hi) {
    const int mid = (lo + hi) / 2;
    if (at(mid) < x) {
      lo = mid + 1;
    } else {
      hi = mid;
    }
  }
  return lo;
}

// One warp per group: w = softmax_j(scale · mean over the kv head's query heads of q_{h,e}·k_j)
// (e the group's last position), agg = Σ_j w_j (k_j, v_j), accumulated with an online softmax.
template <typename T, int kD>
__global__ void aggregate_kernel(DgaAggregateParams p) {
  constexpr int kPer = kD / 32;  // head-dim elements per lane
  const int warp_global = (blockIdx.x * blockDim.x + threadIdx.x) / 32, lane = threadIdx.x % 32;
  const int total = p.batch * p.kv_heads * p.n_groups;
  if (warp_global >= total) return;
  const int bh = warp_global / p.n_groups, hkv = bh % p.kv_heads, b = bh / p.kv_heads;
  const int groups = p.q_heads / p.kv_heads;
  const int64_t* pos = p.positions + static_cast<int64_t>(warp_global) * p.m;
  const int64_t e = pos[p.m - 1];
  const T* kbase = static_cast<const T*>(p.k) + b * p.k_st.b + hkv * p.k_st.h;
  const T* vbase = static_cast<const T*>(p.v) + b * p.v_st.b + hkv * p.v_st.h;
  float qsum[kPer];  // Σ_h q_{h,e}: the mean logit is (Σ_h q_h)·k / groups
#pragma unroll
  for (int i = 0; i < kPer; ++i) qsum[i] = 0.f;
  for (int h = 0; h < groups; ++h) {
    const T* q = static_cast<const T*>(p.q) + b * p.q_st.b + (hkv * groups + h) * p.q_st.h + e * p.q_st.l;
#pragma unroll
    for (int i = 0; i < kPer; ++i) qsum[i] += to_float(q[lane + 32 * i]);
  }
  float run_max = -INFINITY, run_sum = 0.f, ak[kPer], av[kPer];
#pragma unroll
  for (int i = 0; i < kPer; ++i) ak[i] = av[i] = 0.f;
  const float scale = p.scale / static_cast<float>(groups);
  for (int j = 0; j < p.m; ++j) {
    const T* kr = kbase + pos[j] * p.k_st.l;
    const T* vr = vbase + pos[j] * p.v_st.l;
    float kx[kPer], dot = 0.f;
#pragma unroll
    for (int i = 0; i < kPer; ++i) {
      kx[i] = to_float(kr[lane + 32 * i]);
      dot += qsum[i] * kx[i];
    }
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) dot += __shfl_xor_sync(0xffffffffu, dot, off);
    const float x = dot * scale, mn = fmaxf(run_max, x);
    const float corr = expf(run_max - mn), w = expf(x - mn);
    run_sum = run_sum * corr + w;
#pragma unroll
    for (int i = 0; i < kPer; ++i) {
      ak[i] = ak[i] * corr + w * kx[i];
      av[i] = av[i] * corr + w * to_float(vr[lane + 32 * i]);
    }
    run_max = mn;
  }
  const int g = warp_global % p.n_groups;
  int64_t row = p.out_row0 + g;
  if (p.focal_pos != nullptr) {  // merged with the focal rows by position
    const int64_t* focal = p.focal_pos + static_cast<int64_t>(bh) * p.focal_stride;
    row = g + count_below([focal](int i) { return focal[i]; }, p.n_focal, e);
  }
  T* ok = static_cast<T*>(p.agg_k) + b * p.out_st.b + hkv * p.out_st.h + row * p.out_st.l;
  T* ov = static_cast<T*>(p.agg_v) + b * p.out_st.b + hkv * p.out_st.h + row * p.out_st.l;
#pragma unroll
  for (int i = 0; i < kPer; ++i) {
    ok[lane + 32 * i] = from_float<T>(ak[i] / run_sum);
    ov[lane + 32 * i] = from_float<T>(av[i] / run_sum);
  }
}

// One warp per row of (b, kv head), taken in the order [focal ; aggregates ; raw]: copies the
// focal and raw rows of K and V (the aggregate rows are left to aggregate_kernel) and writes
// every row's interval. Focal row i and aggregate g go to their places in the merged part (no
// focal position equals a group end: those are non-focal).
template <int kD>
__global__ void layout_kernel(DgaLayoutParams p) {
  using Piece = typename std::conditional<kD == 128, uint2, uint32_t>::type;  // kD·2 bytes over 32 lanes
  const int n_rows = p.len + p.groups;
  const int64_t w = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / 32;
  const int lane = threadIdx.x % 32;
  if (w >= static_cast<int64_t>(p.batch) * p.kv_heads * n_rows) return;
  const int n = static_cast<int>(w % n_rows);
  const int64_t bh = w / n_rows;
  const int hkv = static_cast<int>(bh % p.kv_heads), b = static_cast<int>(bh / p.kv_heads);
  const int64_t* order = p.order + bh * p.len;
  const int raw = p.len - p.focal;
  auto group_end = [&](int g) { return static_cast<int32_t>(order[g * p.m + p.m - 1]); };
  int64_t pos = -1;
  int32_t lo, hi = kNever;
  int dst = n;
  if (n < p.focal) {
    pos = order[raw + n];
    lo = static_cast<int32_t>(pos);
    dst = n + count_below(group_end, p.groups, pos);
  } else if (n < p.focal + p.groups) {
    const int g = n - p.focal;
    lo = group_end(g);
    dst = g + count_below([&](int i) { return order[raw + i]; }, p.focal, lo);
  } else {
    const int r = n - p.focal - p.groups, g = r / p.m;
    pos = order[r];
    lo = static_cast<int32_t>(pos);
    if (g < p.groups) hi = group_end(g);
  }
  if (lane == 0) {
    p.lo[bh * n_rows + dst] = lo;
    p.hi[bh * n_rows + dst] = hi;
  }
  if (pos >= 0) {
    const int64_t out = b * p.out_st.b + hkv * p.out_st.h + static_cast<int64_t>(dst) * p.out_st.l;
    const auto* ks = reinterpret_cast<const Piece*>(static_cast<const uint16_t*>(p.k) + b * p.k_st.b + hkv * p.k_st.h + pos * p.k_st.l);
    const auto* vs = reinterpret_cast<const Piece*>(static_cast<const uint16_t*>(p.v) + b * p.v_st.b + hkv * p.v_st.h + pos * p.v_st.l);
    reinterpret_cast<Piece*>(static_cast<uint16_t*>(p.keys) + out)[lane] = ks[lane];
    reinterpret_cast<Piece*>(static_cast<uint16_t*>(p.values) + out)[lane] = vs[lane];
  }
}

struct Work {
  float *part_m, *part_l, *lse;
  uint8_t* flags;
};

Work carve(const DgaSelectParams& p, void* ws) {
  const int64_t bh = static_cast<int64_t>(p.batch) * p.kv_heads;
  const int64_t rows = static_cast<int64_t>(p.q_heads / p.kv_heads) * p.n_samples;
  const int64_t n_chunks = (p.len + kChunk - 1) / kChunk;
  Work w;
  w.part_m = static_cast<float*>(ws);
  w.part_l = w.part_m + bh * n_chunks * rows;
  w.lse = w.part_l + bh * n_chunks * rows;
  w.flags = reinterpret_cast<uint8_t*>(w.lse + bh * rows);
  return w;
}

template <typename T, int kD>
void launch_select(const DgaSelectParams& p, cudaStream_t stream) {
  const Work w = carve(p, p.workspace);
  const int n_chunks = (p.len + kChunk - 1) / kChunk;
  const int rows = p.q_heads / p.kv_heads * p.n_samples;
  const size_t smem = 2 * kChunk * kPaddedRow<kD> * sizeof(T);
  const dim3 grid(n_chunks, p.kv_heads, p.batch);
  importance_kernel<T, kD, false><<<grid, kThreadsI, smem, stream>>>(p, w.part_m, w.part_l, nullptr);
  check(cudaGetLastError(), "dga importance pass 1");
  const int total = p.batch * p.kv_heads * rows;
  combine_kernel<<<(total * 32 + 255) / 256, 256, 0, stream>>>(w.part_m, w.part_l, w.lse, n_chunks, rows, total);
  check(cudaGetLastError(), "dga log-sum-exp");
  importance_kernel<T, kD, true><<<grid, kThreadsI, smem, stream>>>(p, nullptr, nullptr, w.lse);
  check(cudaGetLastError(), "dga importance pass 2");
  focal_kernel<<<dim3(p.kv_heads, p.batch), kThreadsS, 0, stream>>>(p, w.flags);
  check(cudaGetLastError(), "dga focal split");
}

}  // namespace

size_t dga_select_workspace_bytes(const DgaSelectParams& p) {
  const size_t bh = static_cast<size_t>(p.batch) * p.kv_heads;
  const size_t rows = static_cast<size_t>(p.q_heads / p.kv_heads) * p.n_samples;
  const size_t n_chunks = (static_cast<size_t>(p.len) + kChunk - 1) / kChunk;
  return (2 * bh * n_chunks * rows + bh * rows) * sizeof(float) + bh * p.len;
}

void dga_select(const DgaSelectParams& p, Dtype dtype, cudaStream_t stream) {
  if (p.head_dim != 64 && p.head_dim != 128) throw std::invalid_argument("dga select: head dim 64 or 128");
  if (p.len <= 0) return;
  if (dtype == Dtype::kBFloat16) {
    p.head_dim == 128 ? launch_select<__nv_bfloat16, 128>(p, stream) : launch_select<__nv_bfloat16, 64>(p, stream);
  } else {
    p.head_dim == 128 ? launch_select<__half, 128>(p, stream) : launch_select<__half, 64>(p, stream);
  }
}

void dga_aggregate(const DgaAggregateParams& p, Dtype dtype, cudaStream_t stream) {
  if (p.head_dim != 64 && p.head_dim != 128) throw std::invalid_argument("dga aggregate: head dim 64 or 128");
  const int total = p.batch * p.kv_heads * p.n_groups;
  if (total == 0) return;
  const int blocks = (total * 32 + 255) / 256;
  if (dtype == Dtype::kBFloat16) {
    p.head_dim == 128 ? aggregate_kernel<__nv_bfloat16, 128><<<blocks, 256, 0, stream>>>(p)
                      : aggregate_kernel<__nv_bfloat16, 64><<<blocks, 256, 0, stream>>>(p);
  } else {
    p.head_dim == 128 ? aggregate_kernel<__half, 128><<<blocks, 256, 0, stream>>>(p)
                      : aggregate_kernel<__half, 64><<<blocks, 256, 0, stream>>>(p);
  }
  check(cudaGetLastError(), "dga aggregate");
}

void dga_layout(const DgaLayoutParams& p, Dtype, cudaStream_t stream) {
  if (p.head_dim != 64 && p.head_dim != 128) throw std::invalid_argument("dga layout: head dim 64 or 128");
  const int64_t warps = static_cast<int64_t>(p.batch) * p.kv_heads * (p.len + p.groups);
  if (warps == 0) return;
  const unsigned blocks = static_cast<unsigned>((warps * 32 + 255) / 256);
  p.head_dim == 128 ? layout_kernel<128><<<blocks, 256, 0, stream>>>(p) : layout_kernel<64><<<blocks, 256, 0, stream>>>(p);
  check(cudaGetLastError(), "dga layout");
}

}  // namespace lcb::attn::cuda
