// Decode attention, split-KV (flash-decoding): one new query per (batch, query head) against a
// cache whose keys are all visible, in up to three segments (DGA: focal, aggregates, raw tail).
//
// Grid (splits, kv heads, batch); a CTA reads its block of keys once for all G query heads of
// its kv head and writes an unnormalised partial (max, sum, output); the last CTA of a (batch,
// kv head) to finish, counted by an atomic ticket, combines the splits (LCB_DECODE_COMBINE=kernel:
// a second kernel does, for A/B timings). Two kernels read the keys (use_mma() picks):
// - tensor cores (split_mma_kernel): the G query heads of a kv head are the rows of one m16
//   fragment (rows G..15 zero) and keys stream through shared memory in chunks of 16, each warp
//   taking every fourth chunk of the split through its own three stages (cp.async, no CTA-wide
//   barrier until the warps' partials are merged). On CUDA cores every key's
//   dot products, and their reduction across lanes, cost G times as much; even at G = 1 the
//   copies and the MMA keep more bytes in flight than the CUDA-core kernel;
// - CUDA cores (split_kernel), for one query head per kv head over gathered rows (topk_block):
//   lanes split the head dimension in 16-byte pieces (D/8 lanes per key), so a warp handles
//   32/(D/8) keys at once and unrolls over several to keep loads in flight.
#include "attention_impls/cuda/common.cuh"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <utility>

namespace lcb::attn::cuda {
namespace {

using namespace detail;

constexpr int kWarps = 4;
constexpr int kThreads = kWarps * 32;
constexpr int kMinKeysPerSplit = 256;

__device__ __forceinline__ void to_float8(const uint4& raw, float* f, const __nv_bfloat16*) {
  const __nv_bfloat162* h = reinterpret_cast<const __nv_bfloat162*>(&raw);
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const float2 x = __bfloat1622float2(h[i]);
    f[2 * i] = x.x;
    f[2 * i + 1] = x.y;
  }
}
__device__ __forceinline__ void to_float8(const uint4& raw, float* f, const __half*) {
  const __half2* h = reinterpret_cast<const __half2*>(&raw);
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const float2 x = __half22float2(h[i]);
    f[2 * i] = x.x;
    f[2 * i + 1] = x.y;
  }
}
// Pointers to key n's row of K and V across the segments.
template <typename T>
__device__ __forceinline__ void key_rows(const DecodeParams& p, int b, int h, int n, const T*& k, const T*& v) {
  int s = 0;
  while (s + 1 < p.segments && n >= p.seg[s].len) n -= p.seg[s++].len;
  const DecodeSegment& g = p.seg[s];
  if (g.rows != nullptr) {
    const int64_t row = g.rows[(static_cast<int64_t>(b) * p.kv_heads + h) * g.len + n];
    k = static_cast<const T*>(g.k) + b * g.k_st.b + row * g.k_st.l;
    v = static_cast<const T*>(g.v) + b * g.v_st.b + row * g.v_st.l;
    return;
  }
  k = static_cast<const T*>(g.k) + b * g.k_st.b + h * g.k_st.h + static_cast<int64_t>(n) * g.k_st.l;
  v = static_cast<const T*>(g.v) + b * g.v_st.b + h * g.v_st.h + static_cast<int64_t>(n) * g.v_st.l;
}

// The CTAs of split 0 copy the new token's row of their (batch, kv head), if asked.
template <typename T, int D>
__device__ __forceinline__ void store_row(const DecodeStore& st, int b, int h) {
  if (st.k_dst == nullptr || blockIdx.x != 0) return;
  for (int i = threadIdx.x; i < 2 * (D / 8); i += blockDim.x) {
    const bool is_k = i < D / 8;
    const int piece = (is_k ? i : i - D / 8) * 8;
    const Strides& src_st = is_k ? st.k_st : st.v_st;
    const Strides& dst_st = is_k ? st.k_dst_st : st.v_dst_st;
    const T* src = static_cast<const T*>(is_k ? st.k : st.v) + b * src_st.b + h * src_st.h + piece;
    T* dst = static_cast<T*>(is_k ? st.k_dst : st.v_dst) + b * dst_st.b + h * dst_st.h + piece;
    *reinterpret_cast<uint4*>(dst) = *reinterpret_cast<const uint4*>(src);
  }
}

// Workspace layout: per (batch, query head, split): D floats of output, then max (base 2) and
// sum. Writes one element of query head hq's partial.
template <int D>
__device__ __forceinline__ void store_partial(const DecodeParams& p, int b, int hq, int split, int splits, int d, float o,
                                              float mx, float sum) {
  float* ws = p.workspace + ((static_cast<int64_t>(b) * p.q_heads + hq) * splits + split) * (D + 2);
  ws[d] = o;
  if (d == 0) {
    ws[D] = mx;
    ws[D + 1] = sum;
  }
}

// Query heads h·G .. h·G + G - 1 of batch b from their splits' partials (the workspace, read
// through L2: other CTAs wrote it), each with its log-sum-exp: one warp per head. This is the
// tail of the step, so its loads go out together: the splits come in rounds of 32 (a split's
// maximum and sum per lane), each round's maxima and sums with the outputs of its first kBatch
// splits, and every further batch of outputs before the one before it is summed. Up to kBatch
// splits cost one trip through L2.
template <typename T, int D, int G>
__device__ __forceinline__ void combine_splits(const DecodeParams& p, int b, int h, int splits) {
  constexpr int kE = D / 32, kBatch = 8;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  for (int gq = warp; gq < G; gq += blockDim.x / 32) {
    const int hq = h * G + gq;
    const float* ws = p.workspace + (static_cast<int64_t>(b) * p.q_heads + hq) * splits * (D + 2);
    // Outputs of splits s0 + j0 .. s0 + j0 + kBatch - 1 (below s0 + n) into ob.
    auto load_batch = [&](float (&ob)[kBatch][kE], int s0, int n, int j0) {
#pragma unroll
      for (int j = 0; j < kBatch; ++j)
#pragma unroll
        for (int e = 0; e < kE; ++e) ob[j][e] = j0 + j < n ? __ldcg(ws + (s0 + j0 + j) * (D + 2) + e * 32 + lane) : 0.f;
    };
    float mx = -INFINITY, sum = 0.f, o[kE];
#pragma unroll
    for (int e = 0; e < kE; ++e) o[e] = 0.f;
    for (int s0 = 0; s0 < splits; s0 += 32) {
      const int n = min(32, splits - s0);
      float m_s = -INFINITY, l_s = 0.f;
      if (lane < n) {
        m_s = __ldcg(ws + (s0 + lane) * (D + 2) + D);
        l_s = __ldcg(ws + (s0 + lane) * (D + 2) + D + 1);
      }
      float ob[kBatch][kE];
      load_batch(ob, s0, n, 0);
      float m_round = m_s;
#pragma unroll
      for (int off = 16; off > 0; off >>= 1) m_round = fmaxf(m_round, __shfl_xor_sync(0xffffffffu, m_round, off));
      const float m_next = fmaxf(mx, m_round);
      if (m_next == -INFINITY) continue;  // no key so far
      const float corr = ex2(mx - m_next);
      mx = m_next;
      sum *= corr;
#pragma unroll
      for (int e = 0; e < kE; ++e) o[e] *= corr;
      const float w = ex2(m_s - mx);  // 0 past the round's splits and for empty ones
      sum = fmaf(w, l_s, sum);
      for (int j0 = 0; j0 < n; j0 += kBatch) {
        float next[kBatch][kE];
        load_batch(next, s0, n, j0 + kBatch);
#pragma unroll
        for (int j = 0; j < kBatch; ++j) {
          const float wj = __shfl_sync(0xffffffffu, w, (j0 + j) & 31);  // 0 past n
#pragma unroll
          for (int e = 0; e < kE; ++e) o[e] = fmaf(wj, ob[j][e], o[e]);
        }
#pragma unroll
        for (int j = 0; j < kBatch; ++j)
#pragma unroll
          for (int e = 0; e < kE; ++e) ob[j][e] = next[j][e];
      }
    }
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, off);
    if (p.lse != nullptr && lane == 0) {
      p.lse[static_cast<int64_t>(b) * p.q_heads + hq] = sum > 0.f ? (mx + log2f(sum)) * 0.6931471805599453f : -INFINITY;
    }
    T* dst = static_cast<T*>(p.out) + b * p.o_st.b + hq * p.o_st.h;
#pragma unroll
    for (int e = 0; e < kE; ++e) dst[e * 32 + lane] = from_float<T>(sum > 0.f ? o[e] / sum : 0.f);
  }
}

// After a CTA's partials are stored: with p.done, the CTA that finishes last among its (batch, kv
// head)'s splits combines them and leaves the count at zero for the next call (the
// threadfence-reduction pattern: every CTA's stores are fenced before its ticket).
template <typename T, int D, int G>
__device__ __forceinline__ void combine_if_last(const DecodeParams& p, int b, int h, int splits) {
  if (p.done == nullptr) return;
  __shared__ bool s_last;
  __threadfence();
  __syncthreads();
  if (threadIdx.x == 0) {
    int* done = p.done + b * p.kv_heads + h;
    s_last = atomicAdd(done, 1) == splits - 1;
    if (s_last) *done = 0;
  }
  __syncthreads();
  if (!s_last) return;
  __threadfence();
  combine_splits<T, D, G>(p, b, h, splits);
}

template <typename T, int D, int G>
__global__ void __launch_bounds__(kThreads) split_kernel(DecodeParams p, int total, int keys_per_split) {
  constexpr int kUnroll = G <= 2 ? 8 : 4;  // keys per lane group and iteration: loads in flight
  constexpr int kLanesPerKey = D / 8;
  constexpr int kKeysPerWarp = 32 / kLanesPerKey;
  const int split = blockIdx.x, h = blockIdx.y, b = blockIdx.z;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int sub = lane / kLanesPerKey, piece = lane % kLanesPerKey;  // key slot in the warp, 8-element piece
  const int splits = gridDim.x;
  store_row<T, D>(p.store, b, h);

  // This lane's 8 elements of every query head, pre-scaled to base 2.
  const float scale_log2 = p.scale * 1.4426950408889634f;
  float q[G][8];
#pragma unroll
  for (int gq = 0; gq < G; ++gq) {
    const T* qp = static_cast<const T*>(p.q) + b * p.q_st.b + (h * G + gq) * p.q_st.h + piece * 8;
    to_float8(*reinterpret_cast<const uint4*>(qp), q[gq], static_cast<const T*>(nullptr));
#pragma unroll
    for (int i = 0; i < 8; ++i) q[gq][i] *= scale_log2;
  }
  float m[G], l[G], acc[G][8];
#pragma unroll
  for (int gq = 0; gq < G; ++gq) {
    m[gq] = -INFINITY;
    l[gq] = 0.f;
#pragma unroll
    for (int i = 0; i < 8; ++i) acc[gq][i] = 0.f;
  }

  const int begin = split * keys_per_split, end = min(total, begin + keys_per_split);
  constexpr int kStep = kWarps * kKeysPerWarp * kUnroll;
  // The loop runs per warp (not per key slot) so every lane reaches the shuffles.
  for (int w0 = begin + warp * kKeysPerWarp * kUnroll; w0 < end; w0 += kStep) {
    const int n0 = w0 + sub * kUnroll;
    uint4 kr[kUnroll], vr[kUnroll];
    bool ok[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int n = n0 + u;
      ok[u] = n < end;
      if (ok[u]) {
        const T *kp, *vp;
        key_rows<T>(p, b, h, n, kp, vp);
        kr[u] = *reinterpret_cast<const uint4*>(kp + piece * 8);
        vr[u] = *reinterpret_cast<const uint4*>(vp + piece * 8);
      } else {
        kr[u] = vr[u] = make_uint4(0, 0, 0, 0);
      }
    }
    // Scores of the kUnroll keys for every head, then one online-softmax update per batch of keys.
    float sc[G][kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      float kf[8];
      to_float8(kr[u], kf, static_cast<const T*>(nullptr));
#pragma unroll
      for (int gq = 0; gq < G; ++gq) {
        float x = 0.f;
#pragma unroll
        for (int i = 0; i < 8; ++i) x = fmaf(q[gq][i], kf[i], x);
        sc[gq][u] = x;
      }
    }
#pragma unroll
    for (int gq = 0; gq < G; ++gq) {
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) {
#pragma unroll
        for (int off = kLanesPerKey / 2; off > 0; off /= 2) sc[gq][u] += __shfl_xor_sync(0xffffffffu, sc[gq][u], off);
        if (!ok[u]) sc[gq][u] = -INFINITY;
      }
    }
    float m_use[G];
#pragma unroll
    for (int gq = 0; gq < G; ++gq) {
      float mx = m[gq];
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) mx = fmaxf(mx, sc[gq][u]);
      m_use[gq] = mx == -INFINITY ? 0.f : mx;
      const float corr = ex2(m[gq] - m_use[gq]);
      m[gq] = mx;
      l[gq] *= corr;
#pragma unroll
      for (int i = 0; i < 8; ++i) acc[gq][i] *= corr;
    }
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      float vf[8];  // converted once, used by every head
      to_float8(vr[u], vf, static_cast<const T*>(nullptr));
#pragma unroll
      for (int gq = 0; gq < G; ++gq) {
        const float pr = ex2(sc[gq][u] - m_use[gq]);
        l[gq] += pr;
#pragma unroll
        for (int i = 0; i < 8; ++i) acc[gq][i] = fmaf(pr, vf[i], acc[gq][i]);
      }
    }
  }

  // Merge the key slots of all warps: slot partials go through shared memory.
  constexpr int kSlots = kWarps * kKeysPerWarp;
  __shared__ float s_ml[kSlots][G][2];
  __shared__ float s_acc[kSlots][G][D];
  const int slot = warp * kKeysPerWarp + sub;
#pragma unroll
  for (int gq = 0; gq < G; ++gq) {
    if (piece == 0) {
      s_ml[slot][gq][0] = m[gq];
      s_ml[slot][gq][1] = l[gq];
    }
#pragma unroll
    for (int i = 0; i < 8; ++i) s_acc[slot][gq][piece * 8 + i] = acc[gq][i];
  }
  __syncthreads();
  for (int idx = threadIdx.x; idx < G * D; idx += kThreads) {
    const int gq = idx / D, d = idx % D;
    float mx = -INFINITY;
    for (int s = 0; s < kSlots; ++s) mx = fmaxf(mx, s_ml[s][gq][0]);
    float sum = 0.f, o = 0.f;
    if (mx != -INFINITY) {
      for (int s = 0; s < kSlots; ++s) {
        const float w = exp2f(s_ml[s][gq][0] - mx);
        sum += w * s_ml[s][gq][1];
        o += w * s_acc[s][gq][d];
      }
    }
    store_partial<D>(p, b, h * G + gq, split, splits, d, o, mx, sum);
  }
  combine_if_last<T, D, G>(p, b, h, splits);
}

constexpr int kWarpChunk = 16;  // keys per stage: each warp streams its own chunks
constexpr int kMmaStages = 3;

template <int D>
__host__ __device__ constexpr size_t mma_smem_bytes() {
  return static_cast<size_t>(kWarps) * kMmaStages * kWarpChunk * D * 2 * 2;  // K and V, 16-bit
}

template <typename T, int D, int G>
__global__ void __launch_bounds__(kThreads, 2) split_mma_kernel(DecodeParams p, int total, int keys_per_split) {
  static_assert(G >= 1 && G <= 8, "the query heads of a kv head fill rows 0..7 of the fragment");
  static_assert((kWarps * G * D + kWarps * G * 2) * sizeof(float) <= mma_smem_bytes<D>(),
                "the merge after the loop reuses the stages");
  constexpr int kPieces = D / 8;               // 16-byte pieces per row
  constexpr int kRowsPerPass = 32 / kPieces;  // rows one pass of the warp copies
  extern __shared__ __align__(128) unsigned char smem_raw[];
  const int split = blockIdx.x, h = blockIdx.y, b = blockIdx.z, splits = gridDim.x;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, tig = lane % 4;
  // This warp's stages: kMmaStages x {K, V} x [kWarpChunk][D], swizzled.
  T* const stages = reinterpret_cast<T*>(smem_raw) + warp * kMmaStages * 2 * kWarpChunk * D;
  const int begin = split * keys_per_split, end = min(total, begin + keys_per_split);
  // The split's 16-key chunks go to the warps in turn: this warp's j-th is chunk warp + j·kWarps.
  const int n_all = (max(end - begin, 0) + kWarpChunk - 1) / kWarpChunk;
  const int n_mine = n_all > warp ? (n_all - warp + kWarps - 1) / kWarps : 0;
  auto first_key = [&](int j) { return begin + (warp + j * kWarps) * kWarpChunk; };  // of this warp's chunk j
  store_row<T, D>(p.store, b, h);

  // This warp's chunk j into its stage; keys past `end` are zero-filled (and masked below). A
  // chunk inside one segment without a gather (the usual case) steps a pointer; others look up
  // every row.
  const T* fallback = static_cast<const T*>(p.seg[0].k);
  auto load_chunk = [&](int j) {
    if (j < n_mine) {
      T* dk = stages + (j % kMmaStages) * 2 * kWarpChunk * D;
      T* dv = dk + kWarpChunk * D;
      const int piece = lane % kPieces, n0 = first_key(j), rows = min(kWarpChunk, end - n0);
      int sg = 0, local = n0;
      while (sg + 1 < p.segments && local >= p.seg[sg].len) local -= p.seg[sg++].len;
      const DecodeSegment& seg = p.seg[sg];
      if (seg.rows == nullptr && local + rows <= seg.len) {
        const T* kp = static_cast<const T*>(seg.k) + b * seg.k_st.b + h * seg.k_st.h + local * seg.k_st.l + piece * 8;
        const T* vp = static_cast<const T*>(seg.v) + b * seg.v_st.b + h * seg.v_st.h + local * seg.v_st.l + piece * 8;
#pragma unroll
        for (int r = lane / kPieces; r < kWarpChunk; r += kRowsPerPass) {
          const bool ok = r < rows;
          cp_async16(smem_addr(dk + swz<D>(r, piece) * 8), ok ? kp + r * seg.k_st.l : fallback, ok);
          cp_async16(smem_addr(dv + swz<D>(r, piece) * 8), ok ? vp + r * seg.v_st.l : fallback, ok);
        }
      } else {
        for (int r = lane / kPieces; r < kWarpChunk; r += kRowsPerPass) {
          const bool ok = r < rows;
          const T *kp = fallback, *vp = fallback;
          if (ok) key_rows<T>(p, b, h, n0 + r, kp, vp);
          cp_async16(smem_addr(dk + swz<D>(r, piece) * 8), kp + piece * 8, ok);
          cp_async16(smem_addr(dv + swz<D>(r, piece) * 8), vp + piece * 8, ok);
        }
      }
    }
    cp_async_commit();  // an empty group past the end keeps the count of groups uniform
  };
#pragma unroll
  for (int j = 0; j < kMmaStages - 1; ++j) load_chunk(j);

  // A fragments of Q: row g is query head h·G + g (rows G..15 stay zero).
  uint32_t qa[D / 16][4];
  {
    const bool row_ok = g < G;
    const T* qrow = static_cast<const T*>(p.q) + b * p.q_st.b + (h * G + (row_ok ? g : 0)) * p.q_st.h + tig * 2;
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk) {
      const uint32_t* w = reinterpret_cast<const uint32_t*>(qrow + kk * 16);
      qa[kk][0] = row_ok ? w[0] : 0u;
      qa[kk][2] = row_ok ? w[4] : 0u;
      qa[kk][1] = qa[kk][3] = 0u;
    }
  }
  float o[D / 8][4];
#pragma unroll
  for (int j = 0; j < D / 8; ++j) o[j][0] = o[j][1] = o[j][2] = o[j][3] = 0.f;
  float row_max[2] = {-INFINITY, -INFINITY}, row_sum[2] = {0.f, 0.f};
  const float scale_log2 = p.scale * 1.4426950408889634f;

  // No CTA-wide barrier in the loop: a warp waits only for its own copies, and issues its next
  // chunk as soon as it has left the stage, whatever the other warps are doing.
  for (int j = 0; j < n_mine; ++j) {
    cp_async_wait<kMmaStages - 2>();
    __syncwarp();                    // chunk j visible to the warp; chunk j-1's stage is free again
    load_chunk(j + kMmaStages - 1);  // into that stage
    const T* ck = stages + (j % kMmaStages) * 2 * kWarpChunk * D;
    const T* cv = ck + kWarpChunk * D;

    // S = Q K^T for this warp's 16 keys, the head dimension's even and odd 16-element steps
    // in separate accumulators (chains of D/32 dependent MMAs, not D/16).
    float s[2][4] = {{0.f, 0.f, 0.f, 0.f}, {0.f, 0.f, 0.f, 0.f}};
    float s_odd[2][4] = {{0.f, 0.f, 0.f, 0.f}, {0.f, 0.f, 0.f, 0.f}};
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk) {
      uint32_t bf[4];
      const int row = (lane & 7) + ((lane >> 4) << 3);
      ldmatrix_x4(bf, smem_addr(ck + swz<D>(row, kk * 2 + ((lane >> 3) & 1)) * 8));
      float (&acc)[2][4] = kk % 2 == 0 ? s : s_odd;
      Mma<T>::run(acc[0], qa[kk], bf[0], bf[1]);
      Mma<T>::run(acc[1], qa[kk], bf[2], bf[3]);
    }
#pragma unroll
    for (int nt = 0; nt < 2; ++nt)
#pragma unroll
      for (int e = 0; e < 4; ++e) s[nt][e] += s_odd[nt][e];
    if (first_key(j) + kWarpChunk > end) {  // the split's last chunk may run past `end`
      const int key0 = first_key(j) + tig * 2;
#pragma unroll
      for (int nt = 0; nt < 2; ++nt)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          if (key0 + nt * 8 + (e & 1) >= end) s[nt][e] = -INFINITY;
        }
    }
    float corr[2];
    const bool moved = softmax_tile<16>(&s[0][0], row_max, row_sum, corr, scale_log2);
    // Once the running maxima settle most chunks leave them unchanged: no rescale then.
    if (__any_sync(0xffffffffu, moved)) rescale_o<D>(&o[0][0], corr);

    // O += P V: the two key octets of S form one A fragment.
    uint32_t pa[4];
    pa[0] = Mma<T>::pack(s[0][0], s[0][1]);
    pa[1] = Mma<T>::pack(s[0][2], s[0][3]);
    pa[2] = Mma<T>::pack(s[1][0], s[1][1]);
    pa[3] = Mma<T>::pack(s[1][2], s[1][3]);
#pragma unroll
    for (int dp = 0; dp < D / 16; ++dp) {
      uint32_t bf[4];
      const int row = (lane & 7) + (((lane >> 3) & 1) << 3);
      ldmatrix_x4_trans(bf, smem_addr(cv + swz<D>(row, dp * 2 + (lane >> 4)) * 8));
      Mma<T>::run(o[2 * dp], pa, bf[0], bf[1]);
      Mma<T>::run(o[2 * dp + 1], pa, bf[2], bf[3]);
    }
  }

  // Merge the four warps' partials (rows 0..G-1) through the now idle stages.
  cp_async_wait<0>();
  __syncthreads();
  float* s_o = reinterpret_cast<float*>(smem_raw);  // [kWarps][G][D]
  float* s_ml = s_o + kWarps * G * D;               // [kWarps][G][max, sum]
  float l = row_sum[0];
  l += __shfl_xor_sync(0xffffffffu, l, 1);
  l += __shfl_xor_sync(0xffffffffu, l, 2);
  if (g < G) {
#pragma unroll
    for (int j = 0; j < D / 8; ++j) {
      s_o[(warp * G + g) * D + j * 8 + tig * 2] = o[j][0];
      s_o[(warp * G + g) * D + j * 8 + tig * 2 + 1] = o[j][1];
    }
    if (tig == 0) {
      s_ml[(warp * G + g) * 2] = row_max[0];
      s_ml[(warp * G + g) * 2 + 1] = l;
    }
  }
  __syncthreads();
  for (int idx = threadIdx.x; idx < G * D; idx += kThreads) {
    const int gq = idx / D, d = idx % D;
    float mx = -INFINITY;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) mx = fmaxf(mx, s_ml[(w * G + gq) * 2]);
    float sum = 0.f, acc = 0.f;
    if (mx != -INFINITY) {
#pragma unroll
      for (int w = 0; w < kWarps; ++w) {
        const float wt = exp2f(s_ml[(w * G + gq) * 2] - mx);
        sum += wt * s_ml[(w * G + gq) * 2 + 1];
        acc += wt * s_o[(w * G + gq) * D + d];
      }
    }
    store_partial<D>(p, b, h * G + gq, split, splits, d, acc, mx, sum);
  }
  combine_if_last<T, D, G>(p, b, h, splits);
}

template <typename T, int D, int G>
__global__ void __launch_bounds__(kThreads) combine_kernel(DecodeParams p, int splits) {
  combine_splits<T, D, G>(p, blockIdx.y, blockIdx.x, splits);
}

// Whether environment variable `name` is set to `value` (the A/B switches below).
bool env_is(const char* name, const char* value) {
  const char* env = std::getenv(name);
  return env != nullptr && std::strcmp(env, value) == 0;
}

int total_keys(const DecodeParams& p) {
  int n = 0;
  for (int s = 0; s < p.segments; ++s) n += p.seg[s].len;
  return n;
}

// The tensor-core kernel, except for one query head per kv head over gathered rows (topk_block's
// cache), which the CUDA-core kernel reads faster. H200, MHA at 128K: dense 0.525 -> 0.475 ms,
// window 0.029 -> 0.024, DGA 0.106 -> 0.088 on tensor cores; topk_block 0.078 against 0.105.
// LCB_DECODE_KERNEL=simt or =mma forces one kernel (A/B timings, tests).
bool use_mma(const DecodeParams& p) {
  if (env_is("LCB_DECODE_KERNEL", "simt")) return false;
  if (env_is("LCB_DECODE_KERNEL", "mma")) return true;
  if (p.q_heads / p.kv_heads > 1) return true;
  for (int s = 0; s < p.segments; ++s) {
    if (p.seg[s].rows != nullptr) return false;
  }
  return true;
}

// Per (device, stream): kMaxDone split counts, zero, each left zero by the CTA that combines.
// Null (a combine kernel then) with LCB_DECODE_COMBINE=kernel or more (batch, kv head) pairs.
constexpr int kMaxDone = 1 << 16;
int* done_counts(int pairs, cudaStream_t stream) {
  if (env_is("LCB_DECODE_COMBINE", "kernel") || pairs > kMaxDone) return nullptr;
  static std::mutex mu;
  static std::map<std::pair<int, cudaStream_t>, int*> counts;
  int device = 0;
  check(cudaGetDevice(&device), "device");
  const std::lock_guard<std::mutex> lock(mu);
  int*& c = counts[{device, stream}];
  if (c == nullptr) {
    check(cudaMalloc(&c, kMaxDone * sizeof(int)), "decode split counts");
    check(cudaMemsetAsync(c, 0, kMaxDone * sizeof(int), stream), "decode split counts");
  }
  return c;
}

template <typename T, int D, int G>
void launch(DecodeParams p, cudaStream_t stream) {
  p.done = done_counts(p.batch * p.kv_heads, stream);
  const int total = total_keys(p), splits = decode_splits(p);
  const int per_split = (total + splits - 1) / splits;
  const dim3 grid(splits, p.kv_heads, p.batch);
  if (use_mma(p)) {
    constexpr size_t smem = mma_smem_bytes<D>();
    allow_dynamic_smem(reinterpret_cast<const void*>(split_mma_kernel<T, D, G>), smem, "decode shared memory attribute");
    split_mma_kernel<T, D, G><<<grid, kThreads, smem, stream>>>(p, total, per_split);
  } else {
    split_kernel<T, D, G><<<grid, kThreads, 0, stream>>>(p, total, per_split);
  }
  check(cudaGetLastError(), "split launch");
  if (p.done == nullptr) {
    combine_kernel<T, D, G><<<dim3(p.kv_heads, p.batch), kThreads, 0, stream>>>(p, splits);
    check(cudaGetLastError(), "combine launch");
  }
}

template <typename T, int D>
void launch_groups(const DecodeParams& p, cudaStream_t stream) {
  switch (p.q_heads / p.kv_heads) {
    case 1: return launch<T, D, 1>(p, stream);
    case 2: return launch<T, D, 2>(p, stream);
    case 4: return launch<T, D, 4>(p, stream);
    case 8: return launch<T, D, 8>(p, stream);
    default: throw std::invalid_argument("decode attention: query heads per kv head must be 1, 2, 4 or 8");
  }
}

}  // namespace

int decode_splits(const DecodeParams& p) {
  const int total = std::max(1, total_keys(p));
  // A few CTAs per SM: more splits cost more than they gain (H200: 4 per SM measured faster than
  // 12 per SM at 16K-128K, BENCHMARKS.md). The tensor-core kernel runs two per SM (each of its
  // warps keeps 2 x 16 keys in flight; one CTA per SM with more stages was slower, BENCHMARKS.md).
  const int ctas_wanted = sm_count() * (use_mma(p) ? 2 : 4);
  const int by_work = (total + kMinKeysPerSplit - 1) / kMinKeysPerSplit;
  const int by_occupancy = std::max(1, ctas_wanted / std::max(1, p.batch * p.kv_heads));
  return std::max(1, std::min(by_work, by_occupancy));
}

size_t decode_workspace_bytes(const DecodeParams& p) {
  return static_cast<size_t>(p.batch) * p.q_heads * decode_splits(p) * (p.head_dim + 2) * sizeof(float);
}

void decode_attention(const DecodeParams& p, Dtype dtype, cudaStream_t stream) {
  if (p.head_dim != 64 && p.head_dim != 128) throw std::invalid_argument("decode attention: head dim must be 64 or 128");
  if (p.segments < 1 || p.segments > 4) throw std::invalid_argument("decode attention: 1 to 4 key segments");
  if (dtype == Dtype::kBFloat16) {
    p.head_dim == 128 ? launch_groups<__nv_bfloat16, 128>(p, stream) : launch_groups<__nv_bfloat16, 64>(p, stream);
  } else {
    p.head_dim == 128 ? launch_groups<__half, 128>(p, stream) : launch_groups<__half, 64>(p, stream);
  }
}

}  // namespace lcb::attn::cuda
