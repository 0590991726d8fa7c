// Decode attention, split-KV (flash-decoding): one new query per (batch, query head) against a
// cache whose keys are all visible, in up to three segments (DGA: focal, aggregates, raw tail).
//
// Grid (splits, kv heads, batch); a CTA reads its block of keys once for all G query heads of
// its kv head. Lanes split the head dimension in 16-byte pieces (D/8 lanes per key), so a warp
// handles 32/(D/8) keys at once and unrolls over several to keep loads in flight. Each CTA
// writes an unnormalised partial (max, sum, output); a second kernel combines the splits.
#include "attention_impls/cuda/common.cuh"

#include <algorithm>
#include <type_traits>

namespace lcb::attn::cuda {
namespace {

using detail::check;
using detail::ex2;

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

// Workspace layout: per (batch, query head, split): D floats of output, then max and sum.

template <typename T, int D, int G>
__global__ void __launch_bounds__(kThreads) split_kernel(DecodeParams p, int total, int keys_per_split) {
  constexpr int kUnroll = G <= 2 ? 8 : 4;  // keys per lane group and iteration: loads in flight
  constexpr int kLanesPerKey = D / 8;
  constexpr int kKeysPerWarp = 32 / kLanesPerKey;
  const int split = blockIdx.x, h = blockIdx.y, b = blockIdx.z;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int sub = lane / kLanesPerKey, piece = lane % kLanesPerKey;  // key slot in the warp, 8-element piece
  const int splits = gridDim.x;

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
    float* ws = p.workspace + ((static_cast<int64_t>(b) * p.q_heads + h * G + gq) * splits + split) * (D + 2);
    ws[d] = o;
    if (d == 0) {
      ws[D] = mx;
      ws[D + 1] = sum;
    }
  }
}

template <typename T, int D>
__global__ void combine_kernel(DecodeParams p, int splits) {
  const int hq = blockIdx.x, b = blockIdx.y, d = threadIdx.x;
  const float* ws = p.workspace + (static_cast<int64_t>(b) * p.q_heads + hq) * splits * (D + 2);
  float mx = -INFINITY;
  for (int s = 0; s < splits; ++s) mx = fmaxf(mx, ws[s * (D + 2) + D]);
  float sum = 0.f, o = 0.f;
  if (mx != -INFINITY) {
    for (int s = 0; s < splits; ++s) {
      const float w = exp2f(ws[s * (D + 2) + D] - mx);
      sum += w * ws[s * (D + 2) + D + 1];
      o += w * ws[s * (D + 2) + d];
    }
  }
  const float out = sum > 0.f ? o / sum : 0.f;
  if (p.lse != nullptr && d == 0) {
    p.lse[static_cast<int64_t>(b) * p.q_heads + hq] = sum > 0.f ? (mx + log2f(sum)) * 0.6931471805599453f : -INFINITY;
  }
  T* dst = static_cast<T*>(p.out) + b * p.o_st.b + hq * p.o_st.h + d;
  if constexpr (std::is_same_v<T, __nv_bfloat16>) {
    *dst = __float2bfloat16(out);
  } else {
    *dst = __float2half(out);
  }
}

int total_keys(const DecodeParams& p) {
  int n = 0;
  for (int s = 0; s < p.segments; ++s) n += p.seg[s].len;
  return n;
}

template <typename T, int D, int G>
void launch(const DecodeParams& p, cudaStream_t stream) {
  const int total = total_keys(p), splits = decode_splits(p);
  const int per_split = (total + splits - 1) / splits;
  split_kernel<T, D, G><<<dim3(splits, p.kv_heads, p.batch), kThreads, 0, stream>>>(p, total, per_split);
  check(cudaGetLastError(), "split launch");
  combine_kernel<T, D><<<dim3(p.q_heads, p.batch), D, 0, stream>>>(p, splits);
  check(cudaGetLastError(), "combine launch");
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
  // 12 per SM at 16K-128K, BENCHMARKS.md).
  static const int sms = [] {
    int device = 0, n = 132;
    if (cudaGetDevice(&device) == cudaSuccess) cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, device);
    return n;
  }();
  const int ctas_wanted = sms * 4;
  const int by_work = (total + kMinKeysPerSplit - 1) / kMinKeysPerSplit;
  const int by_occupancy = std::max(1, ctas_wanted / std::max(1, p.batch * p.kv_heads));
  return std::max(1, std::min(by_work, by_occupancy));
}

size_t decode_workspace_bytes(const DecodeParams& p) {
  return static_cast<size_t>(p.batch) * p.q_heads * decode_splits(p) * (p.head_dim + 2) * sizeof(float);
}

void decode_attention(const DecodeParams& p, Dtype dtype, cudaStream_t stream) {
  if (p.head_dim != 64 && p.head_dim != 128) throw std::invalid_argument("decode attention: head dim must be 64 or 128");
  if (p.segments < 1 || p.segments > 3) throw std::invalid_argument("decode attention: 1 to 3 key segments");
  if (dtype == Dtype::kBFloat16) {
    p.head_dim == 128 ? launch_groups<__nv_bfloat16, 128>(p, stream) : launch_groups<__nv_bfloat16, 64>(p, stream);
  } else {
    p.head_dim == 128 ? launch_groups<__half, 128>(p, stream) : launch_groups<__half, 64>(p, stream);
  }
}

}  // namespace lcb::attn::cuda
