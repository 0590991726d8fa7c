// Exact top-k's radix select, its arithmetic: order keys of scores, the first level's 256 ranges
// (and the word the first pass counts a score in), the split of a range into parts and a row's
// step from one level to the next. Plain C++ that compiles for the GPU
// (interval_attention_wgmma.cu, which counts) and the host (tests/test_topk_select.cpp, which
// checks it against sorting).
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#ifdef __CUDACC__
#define LCB_TOPK_FN __host__ __device__ __forceinline__
#else
#define LCB_TOPK_FN inline
#endif

namespace lcb::attn::cuda::topk {

LCB_TOPK_FN uint32_t bits_of(float x) {
#ifdef __CUDA_ARCH__
  return __float_as_uint(x);
#else
  uint32_t b;
  std::memcpy(&b, &x, sizeof b);
  return b;
#endif
}

LCB_TOPK_FN float float_of(uint32_t b) {
#ifdef __CUDA_ARCH__
  return __uint_as_float(b);
#else
  float x;
  std::memcpy(&x, &b, sizeof x);
  return x;
#endif
}

template <typename T>
LCB_TOPK_FN T min_of(T a, T b) {
#ifdef __CUDA_ARCH__
  return min(a, b);
#else
  return b < a ? b : a;
#endif
}
template <typename T>
LCB_TOPK_FN T max_of(T a, T b) {
#ifdef __CUDA_ARCH__
  return max(a, b);
#else
  return a < b ? b : a;
#endif
}

// Unsigned key with the order of the scores: x + 0 first turns -0 into +0, so equal scores have
// equal keys.
LCB_TOPK_FN uint32_t key(float x) {
  const uint32_t b = bits_of(x + 0.0f);
  return (b & 0x80000000u) ? ~b : (b | 0x80000000u);
}

// The smallest score whose key is at least k: for every score x (not NaN), x >= score_of_key(k)
// iff key(x) >= k. Keys at or below -inf's give -inf (every score).
LCB_TOPK_FN float score_of_key(uint32_t k) {
  if (k <= 0x007fffffu) return -INFINITY;
  return float_of((k & 0x80000000u) ? (k & 0x7fffffffu) : ~k);
}

// First level: 256 ranges of keys, by sign and the top 3 mantissa bits of 16 binary exponents
// per sign (|score| in [2^-6, 2^10)); smaller magnitudes share the innermost range of their sign,
// larger ones the outermost. Monotone in the key.
constexpr int kMagBase = 8 * 121;  // (exponent << 3 | top 3 mantissa bits) of 2^-6
constexpr int kLevels = 5;         // 256^4 parts cover the widest first-level range (< 2^31)

// The step t (0 .. 127) of a score's magnitude among the 128 ranges of its sign, from its bits.
LCB_TOPK_FN int first_level_step(uint32_t b) {
  return min_of(127, max_of(0, static_cast<int>((b & 0x7fffffffu) >> 20) - kMagBase));
}

// The first-level range of a score x with no -0 (x + 0.0f): 128 + t for x >= 0, 127 - t below.
LCB_TOPK_FN int first_level_bin(float x) {
  const uint32_t b = bits_of(x);
  const int t = first_level_step(b);
  return (b >> 31) ? 127 - t : 128 + t;
}

// Where the first pass counts a score x with no -0 (x + 0.0f): first_level_bin(x) spelled without
// the range itself. With 16-bit counts (packed) ranges d and d + 128 share word d % 128, d's count
// in the high half for d >= 128: the word is t or t ^ 127 (127 - t), the half the sign's.
struct FirstLevelCount {
  uint32_t word = 0, one = 0;
};
LCB_TOPK_FN FirstLevelCount first_level_count(float x, bool packed) {
  const uint32_t b = bits_of(x);
  const int t = first_level_step(b);
  const uint32_t neg = static_cast<uint32_t>(static_cast<int32_t>(b) >> 31);  // all ones below 0
  FirstLevelCount c;
  c.word = (static_cast<uint32_t>(t) ^ (neg & 127u)) | (packed ? 0u : ~neg & 128u);
  c.one = packed ? (neg != 0u ? 1u : 0x10000u) : 1u;
  return c;
}

// [lo, lo + width) of first-level range `bin`, in keys (the key of x >= 0 is 2^31 + its bits, of
// x < 0 2^31 - 1 - its magnitude bits).
LCB_TOPK_FN void first_level_range(int bin, uint32_t* lo, uint32_t* width) {
  constexpr uint64_t kHalf = 1ull << 31;
  uint64_t a, z;
  if (bin >= 128) {
    const uint64_t t = bin - 128;
    a = t == 0 ? kHalf : kHalf + ((kMagBase + t) << 20);
    z = t == 127 ? (1ull << 32) : kHalf + ((kMagBase + t + 1) << 20);
  } else {
    const uint64_t t = 127 - bin;
    a = t == 127 ? 0 : kHalf - ((kMagBase + t + 1) << 20);
    z = t == 0 ? kHalf : kHalf - ((kMagBase + t) << 20);
  }
  *lo = static_cast<uint32_t>(a);
  *width = static_cast<uint32_t>(z - a);
}

// Shift that splits a range of `width` keys into at most 256 parts.
LCB_TOPK_FN int level_shift(uint32_t width) {
#ifdef __CUDA_ARCH__
  return width <= 256 ? 0 : 32 - __clz(width - 1) - 8;
#else
  return width <= 256 ? 0 : 32 - __builtin_clz(width - 1) - 8;  // width - 1 >= 256: no clz(0)
#endif
}

// A row's state between levels: the key range [lo, lo + width) that holds its k-th largest
// score, how many of its largest scores are still to be found there (need; 0: resolved) and,
// once resolved, the bound (every score x with key(x) >= bound is kept).
struct RowState {
  uint32_t lo = 0, width = 0, need = 0, bound = 0;
};

// The step after counting level `level`: the counts put the need-th largest in part `part`
// (first level: range `part`; later: part `part` of the range split by level_shift), `higher`
// scores in the parts above it, count_at(part) in it. Resolved when the part holds exactly the scores
// still needed (bound: the part's start) or is a single key (bound: that key; ties all kept).
template <typename CountAt>
LCB_TOPK_FN RowState next_state(int level, const RowState& st, int part, int higher, CountAt count_at) {
  const int left = static_cast<int>(st.need) - higher;  // still to take within the part
  uint32_t nlo, nwidth;
  if (level == 1) {
    first_level_range(part, &nlo, &nwidth);
  } else {
    const int sh = level_shift(st.width);
    nlo = st.lo + (static_cast<uint32_t>(part) << sh);
    const uint64_t end = static_cast<uint64_t>(st.lo) + st.width;
    nwidth = static_cast<uint32_t>(min_of(uint64_t{1} << sh, end - nlo));
  }
  const bool done = count_at(part) == static_cast<uint32_t>(left) || nwidth <= 1;
  return done ? RowState{nlo, nwidth, 0u, nlo} : RowState{nlo, nwidth, static_cast<uint32_t>(left), 0u};
}

}  // namespace lcb::attn::cuda::topk
