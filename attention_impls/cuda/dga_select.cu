// DGA's selection and layout stages on the GPU (DESIGN.md §3, steps 1-5), per (batch, kv head):
//   importance   s_j = Σ_{i∈S, i>=j} Σ_{query heads h of the kv head} softmax_i(scale·q_{h,i}·K)_j.
//                Two passes, each one wave of CTAs over ranges of keys that hold the sampled Q rows
//                in registers and stream the keys (wgmma; bf16/fp16 products exact in fp32): per
//                row and range the max and sum of exp, combined into each row's log-sum-exp, then
//                the probabilities summed over rows per key. No [rows, L] matrix is stored.
//   focal split  a radix select of the top F positions by s (no sort; three levels of digits, each
//                counted by many CTAs into one histogram), then a stable partition into the order
//                non-focal ascending, focal ascending, computed per slice from counts.
//   aggregation  per group of m non-focal tokens: w = softmax(scale · mean_h q_{h,e}·k_j), the
//                weighted sums of K and V, one warp per group with an online softmax.
//   layout       the focal rows copied into the merged rows (the raw keys stay in k / v, read there
//                by the attention as its second source), every row's and position's interval.
#include "attention_impls/cuda/common.cuh"
#include "attention_impls/cuda/wgmma.cuh"

#include <algorithm>
#include <type_traits>

namespace lcb::attn::cuda {
namespace {

using namespace detail;

constexpr int kChunk = 64;       // keys per pipeline stage
constexpr int kStagesI = 4;      // importance: K chunk stages (two being read, two in flight)

struct Rows {  // the sampled rows of one (batch, kv head): row r = head (r / ns) of the group, sample r % ns
  int count, ns;
};

// Dynamic shared memory of an importance CTA: the K stages, swizzled (wgmma.cuh), 1024-aligned.
constexpr size_t importance_smem_bytes(int head_dim) {
  return 1024 + static_cast<size_t>(kStagesI) * kChunk * head_dim * 2;
}

// An empty asm that reads and rewrites every accumulator register of a wgmma (CUTLASS's
// warpgroup_fence_operand): placed right before the issue and right after the wait, it keeps the
// compiler from moving other reads or writes of them into the span where the wgmma owns them.
template <int kBlocks, int kN>
__device__ __forceinline__ void fence_accumulators(float (&acc)[kBlocks][kN]) {
#pragma unroll
  for (int j = 0; j < kBlocks; ++j)
#pragma unroll
    for (int i = 0; i < kN; ++i) asm volatile("" : "+f"(acc[j][i])::"memory");
}

// Both importance passes, per (range of 64-key chunks, kv head, batch). The CTA's kWG warpgroups
// hold kBlocks blocks of 64 sampled rows each, as wgmma A fragments in registers loaded once
// (rows past kWG·kBlocks·64 take further rounds over the range), and stream the range's keys
// through kStagesI cp.async stages: S = Q·K^T per block and chunk on wgmma (bf16/fp16 products
// exact in fp32), logits in base 2 (scale·log2 e).
// Pass 1 (kPass2 = false): per sampled row and range, the maximum and the sum of 2^(x - max) over
// the row's causal keys (key <= its position). Pass 2: per key, Σ over rows of 2^(x - lse2_row):
// each warp's column sums go through shared memory (two buffers, alternating over chunks) and
// are added in a fixed order of warps, so the same inputs give the same bits.
template <typename T, int kD, int kWG, int kBlocks, bool kPass2>
__global__ void __launch_bounds__(128 * kWG) importance_kernel(DgaSelectParams p, int chunks_per_range, float* part_m,
                                                               float* part_l, const float* lse) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  constexpr int kThreads = 128 * kWG, kWarps = kThreads / 32, kRowsPerRound = 64 * kWG * kBlocks;
  constexpr int kStageBytes = kChunk * kD * 2;
  extern __shared__ uint4 smem_dga[];
  unsigned char* stages = reinterpret_cast<unsigned char*>((reinterpret_cast<uintptr_t>(smem_dga) + 1023) & ~uintptr_t(1023));
  __shared__ float s_col[2][kWarps][kChunk];
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32, g = lane / 4, tig = lane % 4;
  const int wg = warp / 4, wq = warp % 4;
  const int range = blockIdx.x, hkv = blockIdx.y, b = blockIdx.z, n_ranges = gridDim.x;
  const int groups = p.q_heads / p.kv_heads;
  const Rows rows{groups * p.n_samples, p.n_samples};
  const int64_t bh = static_cast<int64_t>(b) * p.kv_heads + hkv;
  const int n_chunks = (p.len + kChunk - 1) / kChunk;
  const int c_begin = range * chunks_per_range, n_here = min(n_chunks, c_begin + chunks_per_range) - c_begin;
  const T* kbase = static_cast<const T*>(p.k) + b * p.k_st.b + hkv * p.k_st.h;
  const float scale_log2 = p.scale * 1.4426950408889634f;
  float* imp = p.importance + bh * p.len;

  for (int row0 = 0; row0 < rows.count; row0 += kRowsPerRound) {
    auto load_chunk = [&](int c) {  // chunk c_begin + c into its stage; an empty group past the end
      if (c < n_here) {
        const int key0 = (c_begin + c) * kChunk;
        load_rows_swizzled<T, kD, kChunk, kThreads>(stages + (c % kStagesI) * kStageBytes,
                                                    [&](int r) { return kbase + static_cast<int64_t>(key0 + r) * p.k_st.l; },
                                                    p.len - key0, kbase);
      }
      cp_async_commit();
    };
#pragma unroll
    for (int c = 0; c < kStagesI - 1; ++c) load_chunk(c);

    // This thread's rows: in block j, rows g and g + 8 of its warp's 16 (slot i = 2j + h); their
    // A fragments straight from global memory (zero past the last row).
    int pos[2 * kBlocks];
    float m[2 * kBlocks], l[2 * kBlocks], z[2 * kBlocks];
    uint32_t qa[kBlocks][kD / 16][4];
#pragma unroll
    for (int j = 0; j < kBlocks; ++j) {
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const int row = row0 + (j * kWG + wg) * 64 + wq * 16 + g + h * 8, i = 2 * j + h;
        const bool ok = row < rows.count;
        const uint32_t* q = nullptr;
        if (ok) {
          const int hq = hkv * groups + row / rows.ns;
          pos[i] = p.samples[row % rows.ns];
          q = reinterpret_cast<const uint32_t*>(static_cast<const T*>(p.q) + b * p.q_st.b + hq * p.q_st.h +
                                                static_cast<int64_t>(pos[i]) * p.q_st.l + tig * 2);
        } else {
          pos[i] = -1;
        }
#pragma unroll
        for (int ks = 0; ks < kD / 16; ++ks) {
          qa[j][ks][h] = ok ? q[ks * 8] : 0u;
          qa[j][ks][h + 2] = ok ? q[ks * 8 + 4] : 0u;
        }
        m[i] = -INFINITY;
        l[i] = 0.f;
        z[i] = 0.f;
        if constexpr (kPass2) z[i] = ok ? lse[bh * rows.count + row] : 0.f;
      }
    }
    // Pass 2: chunk c's column sums, from every warp's, into the importance (tid < kChunk).
    auto add_columns = [&](int c) {
      const int key = (c_begin + c) * kChunk + tid;
      if (tid < kChunk && key < p.len) {
        float v = 0.f;
#pragma unroll
        for (int w = 0; w < kWarps; ++w) v += s_col[c & 1][w][tid];
        imp[key] = row0 == 0 ? v : imp[key] + v;  // this thread adds this key for every round of rows
      }
    };

    using Acc = float[kBlocks][kChunk / 2];  // block j: n-block nt of rows g, g + 8 at [j][nt * 4 ..]
    // S of chunk c into acc (issued and committed, not waited for).
    auto issue = [&](int c, Acc& acc) {
      const unsigned char* ck = stages + (c % kStagesI) * kStageBytes;
      fence_accumulators(acc);
      wgmma_fence();
#pragma unroll
      for (int j = 0; j < kBlocks; ++j) {
#pragma unroll
        for (int ks = 0; ks < kD / 16; ++ks) {
          const int at = (ks / 4) * kChunk * 128 + (ks % 4) * 32;
          wgmma_rs_n64(acc[j], qa[j][ks], smem_desc(ck + at, 16, 1024), ks > 0 ? 1 : 0, static_cast<const T*>(nullptr));
        }
      }
      wgmma_commit();
    };
    // Pass 1's row statistics, or pass 2's column sums, of chunk c from its S.
    auto epilogue = [&](int c, Acc& acc) {
      const int key0 = (c_begin + c) * kChunk;
      // Row i sees column c of this chunk (c = nt·8 + tig·2 + e) when c <= lim[i]; most chunks
      // are wholly visible to all of a thread's rows, and take the unmasked loops.
      int lim[2 * kBlocks];
      bool whole = true;
#pragma unroll
      for (int i = 0; i < 2 * kBlocks; ++i) {
        lim[i] = min(pos[i], p.len - 1) - key0;
        whole = whole && lim[i] >= kChunk - 1;
      }
      auto x_at = [&](int i, int nt, int e) -> float& { return acc[i / 2][nt * 4 + (i % 2) * 2 + e]; };
      if constexpr (!kPass2) {
#pragma unroll
        for (int i = 0; i < 2 * kBlocks; ++i) {
          if (lim[i] < 0) continue;  // no key of the chunk (or a row past the last)
          float cmax = -INFINITY;    // of the raw logits (scale > 0)
          if (whole) {
#pragma unroll
            for (int nt = 0; nt < kChunk / 8; ++nt)
#pragma unroll
              for (int e = 0; e < 2; ++e) cmax = fmaxf(cmax, x_at(i, nt, e));
          } else {
#pragma unroll
            for (int nt = 0; nt < kChunk / 8; ++nt)
#pragma unroll
              for (int e = 0; e < 2; ++e) {
                float& x = x_at(i, nt, e);
                x = nt * 8 + tig * 2 + e <= lim[i] ? x : -INFINITY;
                cmax = fmaxf(cmax, x);
              }
          }
          if (cmax == -INFINITY) continue;  // none of this thread's columns (-inf - -inf: NaN below)
          const float mn = fmaxf(m[i], cmax * scale_log2);
          float sum = 0.f;
#pragma unroll
          for (int nt = 0; nt < kChunk / 8; ++nt)
#pragma unroll
            for (int e = 0; e < 2; ++e) sum += ex2(fmaf(x_at(i, nt, e), scale_log2, -mn));
          l[i] = l[i] * ex2(m[i] - mn) + sum;
          m[i] = mn;
        }
      } else {
        auto sums = [&](bool all) {
#pragma unroll
          for (int nt = 0; nt < kChunk / 8; ++nt)
#pragma unroll
            for (int e = 0; e < 2; ++e) {
              float v = 0.f;
#pragma unroll
              for (int i = 0; i < 2 * kBlocks; ++i) {
                if (all || nt * 8 + tig * 2 + e <= lim[i]) v += ex2(fmaf(x_at(i, nt, e), scale_log2, -z[i]));
              }
              v += __shfl_xor_sync(0xffffffffu, v, 4);
              v += __shfl_xor_sync(0xffffffffu, v, 8);
              v += __shfl_xor_sync(0xffffffffu, v, 16);
              if (g == 0) s_col[c & 1][warp][nt * 8 + tig * 2 + e] = v;
            }
        };
        // A branch on whole, warp-uniform for the shuffles: in a branch-free epilogue ptxas sinks chunk
        // c + 1's wgmma below the exponentials, to give it the registers of this chunk's S.
        if (__all_sync(0xffffffffu, whole)) {
          sums(true);
        } else {
          sums(false);
        }
      }
    };
    // Chunk c + 1's S is issued before chunk c's epilogue, into the other accumulators, and waited
    // for after it, so that the tensor cores work while the exponentials of chunk c are taken.
    // Chunk c's stage is refilled (with chunk c + kStagesI) once every warp is past chunk c's GEMM:
    // at the barrier of iteration c + 1.
    auto begin = [&](int c) {
      cp_async_wait<kStagesI - 3>();
      fence_proxy_async();  // the copies are read by wgmma
      __syncthreads();      // chunk c + 1 landed for all; chunk c - 1's GEMM, stage and column sums are done
      load_chunk(c + kStagesI - 1);
      if constexpr (kPass2) {
        if (c > 0) add_columns(c - 1);
      }
    };
    // ptxas leaves a wgmma running across other instructions only where it can follow which
    // accumulators are in flight: a wgmma still running at a loop back edge (C7514), or an issue
    // under a condition with the masked epilogue's writes to S (C7515), make it wait right after
    // every wgmma of the kernel. So each step issues and waits unconditionally, two steps per
    // iteration name the accumulators statically, and the last step issues a repeat of the last
    // chunk, whose S is never read (its stage is not refilled: the loads past the range are empty).
    auto step = [&](int c, Acc& cur, Acc& next) {
      issue(min(c + 1, n_here - 1), next);
      epilogue(c, cur);
      wgmma_wait<0>();
      fence_accumulators(next);
    };
    Acc acc0, acc1;
    cp_async_wait<kStagesI - 2>();
    fence_proxy_async();
    __syncthreads();  // chunk 0 landed for all
    if (n_here > 0) {
      issue(0, acc0);
      begin(0);
      wgmma_wait<0>();
      fence_accumulators(acc0);
      for (int c = 0;;) {
        step(c, acc0, acc1);
        if (++c == n_here) break;
        begin(c);
        step(c, acc1, acc0);
        if (++c == n_here) break;
        begin(c);
      }
    }
    if constexpr (kPass2) {
      __syncthreads();
      if (n_here > 0) add_columns(n_here - 1);
    } else {  // the row's four lanes (tig) merged; lane tig 0 writes
#pragma unroll
      for (int i = 0; i < 2 * kBlocks; ++i) {
#pragma unroll
        for (int off = 1; off <= 2; off <<= 1) {
          const float mo = __shfl_xor_sync(0xffffffffu, m[i], off), lo = __shfl_xor_sync(0xffffffffu, l[i], off);
          const float mn = fmaxf(m[i], mo);
          if (mn != -INFINITY) {
            l[i] = l[i] * ex2(m[i] - mn) + lo * ex2(mo - mn);
            m[i] = mn;
          }
        }
        const int row = row0 + ((i / 2) * kWG + wg) * 64 + wq * 16 + g + (i % 2) * 8;
        if (tig == 0 && pos[i] >= 0) {
          const int64_t at = (bh * n_ranges + range) * rows.count + row;
          part_m[at] = m[i];
          part_l[at] = l[i];
        }
      }
    }
    cp_async_wait_all();
    __syncthreads();  // the stages and column sums are refilled by the next round of rows
  }
#else
  __trap();  // built without sm_90a
#endif
}

// Each sampled row's log-sum-exp (base 2) from its per-range partials: one warp per (batch, kv
// head, row).
__global__ void combine_kernel(const float* part_m, const float* part_l, float* lse, int n_ranges, int rows, int total) {
  const int w = (blockIdx.x * blockDim.x + threadIdx.x) / 32, lane = threadIdx.x % 32;
  if (w >= total) return;
  const int64_t bh = w / rows, r = w % rows;
  float m = -INFINITY, l = 0.f;
  for (int c = lane; c < n_ranges; c += 32) {
    const int64_t at = (bh * n_ranges + c) * rows + r;
    const float mc = part_m[at], lc = part_l[at];
    if (mc == -INFINITY) continue;
    const float mn = fmaxf(m, mc);
    l = l * ex2(m - mn) + lc * ex2(mc - mn);
    m = mn;
  }
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) {
    const float mo = __shfl_xor_sync(0xffffffffu, m, off), lo = __shfl_xor_sync(0xffffffffu, l, off);
    const float mn = fmaxf(m, mo);
    if (mn != -INFINITY) {
      l = l * ex2(m - mn) + lo * ex2(mo - mn);
      m = mn;
    }
  }
  if (lane == 0) lse[w] = m + log2f(l);
}

// The focal split (top F positions by importance, then order = non-focal ascending, focal
// ascending) over several CTAs per (batch, kv head), each a slice of the positions: a radix select
// of the F-th largest key t in three levels of digits (12, 12 and 8 bits; each level's CTAs count
// the keys that match the digits above into one histogram per (batch, kv head), and the next
// level's CTAs each pick the digit from it), then a count of the keys above and equal to t per
// slice, then the order: position i is focal when its key is above t, or equal to t and among the
// first take_eq such; the focal positions before i are the keys above t before i plus
// min(the keys equal to t before i, take_eq). focal_split_kernel runs these steps in one
// cooperative launch, a grid barrier between them; the five launches remain for grids that do not
// fit the GPU at once.
constexpr int kThreadsF = 256;
constexpr int kPerF = 16;  // consecutive keys per thread and step
constexpr int kStepF = kThreadsF * kPerF;
constexpr int kLevels = 3;
__host__ __device__ constexpr int level_shift(int level) { return level == 0 ? 20 : level == 1 ? 8 : 0; }
__host__ __device__ constexpr int level_bins(int level) { return level < 2 ? 4096 : 256; }
constexpr int kHistInts = 4096 + 4096 + 256;  // per (batch, kv head)

struct FocalWork {
  int* hist;              // [B·Hkv][kHistInts], zeroed before the first level
  unsigned int* barrier;  // focal_split_kernel's grid barrier, zeroed with hist (right after it)
  int2* count;            // [B·Hkv][slices]: keys above t, keys equal to t
  int slice;              // positions per slice (ceil(len / slices); the last may hold fewer)
};

__device__ __forceinline__ int* level_hist(int* h, int level) { return h + (level == 0 ? 0 : level == 1 ? 4096 : 8192); }
__device__ __forceinline__ const int* level_hist(const int* h, int level) { return level_hist(const_cast<int*>(h), level); }

// Of the keys counted in hist (kBins digits), the digit holding the want-th largest and how many
// lie in higher digits; every thread of the CTA gets both.
template <int kBins>
__device__ int2 block_pick_digit(const int* hist, int want, int* s_warp, int2* s_pick) {
  constexpr int kPer = kBins / kThreadsF;
  const int tid = threadIdx.x, rev = kThreadsF - 1 - tid;  // thread rev holds the highest digits first
  int c[kPer], local = 0;
#pragma unroll
  for (int j = 0; j < kPer; ++j) {
    c[j] = __ldcg(hist + rev * kPer + j);  // L2: in focal_split_kernel other CTAs wrote it in this launch
    local += c[j];
  }
  int total;
  int above = block_sum_before<kThreadsF>(local, s_warp, &total);  // keys in higher digits than this thread's
  if (above < want && above + local >= want) {
#pragma unroll
    for (int j = kPer - 1; j >= 0; --j) {
      if (above + c[j] >= want) {
        *s_pick = make_int2(rev * kPer + j, above);
        break;
      }
      above += c[j];
    }
  }
  __syncthreads();
  const int2 pick = *s_pick;
  __syncthreads();  // s_pick is rewritten by the next call
  return pick;
}

// Adds level lv's digit, picked from its complete histogram, to the prefix of t (and its mask),
// and takes the keys in higher digits off `want`.
__device__ void pick_level(const int* h, int lv, int* s_warp, int2* s_pick, uint32_t* prefix, uint32_t* mask,
                           int* want) {
  const int2 pick = lv < 2 ? block_pick_digit<4096>(level_hist(h, lv), *want, s_warp, s_pick)
                           : block_pick_digit<256>(level_hist(h, lv), *want, s_warp, s_pick);
  *prefix |= static_cast<uint32_t>(pick.x) << level_shift(lv);
  *mask |= static_cast<uint32_t>(level_bins(lv) - 1) << level_shift(lv);
  *want -= pick.y;
}

// The digits of levels 0 .. level-1 from their histograms: the prefix of t so far, its mask, and
// how many of the keys matching it still belong to the F largest.
__device__ void picked_prefix(const int* h, int level, int focal, int* s_warp, int2* s_pick, uint32_t* prefix,
                              uint32_t* mask, int* want) {
  *prefix = 0;
  *mask = 0;
  *want = focal;
  for (int lv = 0; lv < level; ++lv) pick_level(h, lv, s_warp, s_pick, prefix, mask, want);
}

// This CTA's keys of its slice, kPerF consecutive ones per thread and step (i0: the thread's first).
template <typename Body>
__device__ __forceinline__ void for_slice_steps(const DgaSelectParams& p, int slice, Body body) {
  const int begin = blockIdx.x * slice, end = min(p.len, begin + slice);
  for (int step = begin; step < end; step += kStepF) body(step + threadIdx.x * kPerF, end);
}

__device__ __forceinline__ uint32_t importance_key(const float* imp, int i) { return order_key(imp[i]); }

// Level kLevel of the select over this CTA's slice: counts the digit of every key that matches
// `prefix` (the digits above) under `mask` into the level's histogram.
template <int kLevel>
__device__ void count_digits(const DgaSelectParams& p, const FocalWork& w, uint32_t prefix, uint32_t mask) {
  constexpr int kBins = level_bins(kLevel);
  __shared__ int s_hist[kBins];
  const int64_t bh = static_cast<int64_t>(blockIdx.z) * p.kv_heads + blockIdx.y;
  int* h = w.hist + bh * kHistInts;
  const float* imp = p.importance + bh * p.len;
  for (int i = threadIdx.x; i < kBins; i += kThreadsF) s_hist[i] = 0;
  __syncthreads();
  const int lane = threadIdx.x % 32;
  for_slice_steps(p, w.slice, [&](int i0, int end) {
    uint32_t u[kPerF];
#pragma unroll
    for (int j = 0; j < kPerF; ++j) u[j] = i0 + j < end ? importance_key(imp, i0 + j) : 0u;
#pragma unroll
    for (int j = 0; j < kPerF; ++j) {
      // Lanes with the same digit add to it once: similar keys share their leading digits.
      const int digit = i0 + j < end && (u[j] & mask) == prefix ? static_cast<int>((u[j] >> level_shift(kLevel)) & (kBins - 1)) : -1;
      const unsigned peers = __match_any_sync(0xffffffffu, digit);
      if (digit >= 0 && lane == __ffs(peers) - 1) atomicAdd(&s_hist[digit], __popc(peers));
    }
  });
  __syncthreads();
  int* out = level_hist(h, kLevel);
  for (int i = threadIdx.x; i < kBins; i += kThreadsF) {
    if (s_hist[i] != 0) atomicAdd(&out[i], s_hist[i]);
  }
}

template <int kLevel>
__global__ void __launch_bounds__(kThreadsF) focal_hist_kernel(DgaSelectParams p, FocalWork w) {
  __shared__ int s_warp[kThreadsF / 32];
  __shared__ int2 s_pick;
  uint32_t prefix, mask;
  int want;
  picked_prefix(w.hist + (static_cast<int64_t>(blockIdx.z) * p.kv_heads + blockIdx.y) * kHistInts, kLevel, p.focal,
                s_warp, &s_pick, &prefix, &mask, &want);
  count_digits<kLevel>(p, w, prefix, mask);
}

// This slice's part of the order when no position is focal or every one is: the identity.
__device__ void identity_order(const DgaSelectParams& p, const FocalWork& w) {
  int64_t* order = p.order + (static_cast<int64_t>(blockIdx.z) * p.kv_heads + blockIdx.y) * p.len;
  for_slice_steps(p, w.slice, [&](int i0, int end) {
#pragma unroll
    for (int j = 0; j < kPerF; ++j) {
      if (i0 + j < end) order[i0 + j] = i0 + j;
    }
  });
}

// Given t and take_eq: the keys of this slice above t and equal to t (kCount), or the slice's
// part of the order (the slices' counts complete).
template <bool kCount>
__device__ void order_slice(const DgaSelectParams& p, const FocalWork& w, uint32_t t, int take_eq, int* s_warp) {
  const int64_t bh = static_cast<int64_t>(blockIdx.z) * p.kv_heads + blockIdx.y;
  const float* imp = p.importance + bh * p.len;
  int64_t* order = p.order + bh * p.len;
  const int R = p.len - p.focal;
  int2* count = w.count + bh * gridDim.x;
  int gt_done = 0, eq_done = 0;  // in the slices before this one, then in this one's steps so far
  if constexpr (!kCount) {
    for (int s = 0; s < static_cast<int>(blockIdx.x); ++s) {
      const int2 c = __ldcg(count + s);  // L2, as in block_pick_digit()
      gt_done += c.x;
      eq_done += c.y;
    }
  }
  for_slice_steps(p, w.slice, [&](int i0, int end) {
    uint32_t u[kPerF];
    int packed = 0;  // this thread's keys above t (high 16 bits) and equal to t (low)
#pragma unroll
    for (int j = 0; j < kPerF; ++j) {
      u[j] = i0 + j < end ? importance_key(imp, i0 + j) : 0u;
      if (i0 + j < end) packed += (u[j] > t ? 1 << 16 : 0) + (u[j] == t ? 1 : 0);
    }
    int total;
    const int before = block_sum_before<kThreadsF>(packed, s_warp, &total);
    if constexpr (!kCount) {
      int gt = gt_done + (before >> 16), eq = eq_done + (before & 0xffff);
#pragma unroll
      for (int j = 0; j < kPerF; ++j) {
        if (i0 + j < end) {
          const bool is_eq = u[j] == t, focal = u[j] > t || (is_eq && eq < take_eq);
          const int fb = gt + min(eq, take_eq);
          order[focal ? R + fb : i0 + j - fb] = i0 + j;
          gt += u[j] > t ? 1 : 0;
          eq += is_eq ? 1 : 0;
        }
      }
    }
    gt_done += total >> 16;
    eq_done += total & 0xffff;
  });
  if constexpr (kCount) {
    if (threadIdx.x == 0) count[blockIdx.x] = make_int2(gt_done, eq_done);
  }
}

template <bool kCount>
__global__ void __launch_bounds__(kThreadsF) focal_order_kernel(DgaSelectParams p, FocalWork w) {
  __shared__ int s_warp[kThreadsF / 32];
  __shared__ int2 s_pick;
  if (p.focal <= 0 || p.focal >= p.len) {
    if constexpr (!kCount) identity_order(p, w);
    return;
  }
  uint32_t t, mask;
  int take_eq;
  picked_prefix(w.hist + (static_cast<int64_t>(blockIdx.z) * p.kv_heads + blockIdx.y) * kHistInts, kLevels, p.focal,
                s_warp, &s_pick, &t, &mask, &take_eq);
  order_slice<kCount>(p, w, t, take_eq, s_warp);
}

// Every CTA of the grid at this point before any goes on (the k-th call: target = k · CTAs),
// memory written before it visible after it. Only for grids whose CTAs are all resident at once
// (a cooperative launch).
__device__ void grid_barrier(unsigned int* counter, unsigned int target) {
  __threadfence();
  __syncthreads();
  if (threadIdx.x == 0) {
    atomicAdd(counter, 1u);
    while (*reinterpret_cast<volatile unsigned int*>(counter) < target) __nanosleep(64);
    __threadfence();
  }
  __syncthreads();
}

// The whole focal split in one cooperative launch: the three levels, the counts and the order,
// a grid barrier between each step instead of a launch; each CTA picks each level's digit once
// (the sliced kernels each re-pick every level above theirs).
__global__ void __launch_bounds__(kThreadsF) focal_split_kernel(DgaSelectParams p, FocalWork w) {
  __shared__ int s_warp[kThreadsF / 32];
  __shared__ int2 s_pick;
  if (p.focal <= 0 || p.focal >= p.len) {  // the same for every CTA: none waits at a barrier
    identity_order(p, w);
    return;
  }
  const unsigned int ctas = gridDim.x * gridDim.y * gridDim.z;
  const int* h = w.hist + (static_cast<int64_t>(blockIdx.z) * p.kv_heads + blockIdx.y) * kHistInts;
  uint32_t prefix = 0, mask = 0;
  int want = p.focal;
  count_digits<0>(p, w, prefix, mask);
  grid_barrier(w.barrier, ctas);
  pick_level(h, 0, s_warp, &s_pick, &prefix, &mask, &want);
  count_digits<1>(p, w, prefix, mask);
  grid_barrier(w.barrier, 2 * ctas);
  pick_level(h, 1, s_warp, &s_pick, &prefix, &mask, &want);
  count_digits<2>(p, w, prefix, mask);
  grid_barrier(w.barrier, 3 * ctas);
  pick_level(h, 2, s_warp, &s_pick, &prefix, &mask, &want);  // prefix is t, want take_eq
  order_slice<true>(p, w, prefix, want, s_warp);
  grid_barrier(w.barrier, 4 * ctas);
  order_slice<false>(p, w, prefix, want, s_warp);
}

// One warp per group: w = softmax_j(scale · mean over the kv head's query heads of q_{h,e}·k_j)
// (e the group's last position), agg = Σ_j w_j (k_j, v_j), with an online softmax over batches of
// up to 16 members whose rows are all loaded before any is used. The kernel moves bytes more than
// it computes, and its time goes to the instructions around the loads: each member's row is one
// shuffled 32-bit position and one 32x32-bit multiply-add from the lane's base, the 16 dot
// products are reduced across the warp together (a transposing butterfly: 16 shuffles, not 80,
// leaving member j's logit in lanes 2j and 2j + 1), so each lane takes one exponential and the
// weights come back by one shuffle each. 128 registers at most, for four CTAs per SM (bf16 at head
// dim 128 spills 40 bytes: a store and two loads per batch).
__device__ __forceinline__ uint2 opaque(uint2 x) {  // the same bits, which the compiler cannot see through
  asm("" : "+r"(x.x), "+r"(x.y));
  return x;
}
__device__ __forceinline__ uint32_t opaque(uint32_t x) {
  asm("" : "+r"(x));
  return x;
}

template <typename T, int kD>
__global__ void __launch_bounds__(128, 4) aggregate_kernel(DgaAggregateParams p) {
  constexpr int kPer = kD / 32;  // head-dim elements per lane: lane l holds l·kPer .. l·kPer + kPer - 1
  constexpr int kBatch = 16;     // members per batch; the butterfly below is written for 16
  using Piece = typename std::conditional<kD == 128, uint2, uint32_t>::type;  // kPer 16-bit elements
  const int warp_global = (blockIdx.x * blockDim.x + threadIdx.x) / 32, lane = threadIdx.x % 32;
  const int total = p.batch * p.kv_heads * p.n_groups;
  if (warp_global >= total) return;
  const int bh = warp_global / p.n_groups, hkv = bh % p.kv_heads, b = bh / p.kv_heads;
  const int g = warp_global - bh * p.n_groups, groups = p.q_heads / p.kv_heads;
  const int64_t* pos = p.positions + bh * (p.positions_stride != 0 ? p.positions_stride : int64_t{p.n_groups} * p.m) +
                       static_cast<int64_t>(g) * p.m;
  // The first batch's positions and the group's end, two independent loads. Positions are below
  // len, an int; a row's bytes (stride · element) fit an int, checked by dga_aggregate().
  // Lanes past a batch's n members repeat its last one, so that every row loaded is the group's.
  int my_pos = static_cast<int>(pos[min(lane, min(kBatch, p.m) - 1)]);
  const int64_t e = pos[p.m - 1];
  // The lane's bases, held as they are: left to itself the compiler splits them again into the
  // parameter and an offset, and adds the two for every row.
  uint64_t kbase = reinterpret_cast<uint64_t>(static_cast<const char*>(p.k) + (b * p.k_st.b + hkv * p.k_st.h + lane * kPer) * sizeof(T));
  uint64_t vbase = reinterpret_cast<uint64_t>(static_cast<const char*>(p.v) + (b * p.v_st.b + hkv * p.v_st.h + lane * kPer) * sizeof(T));
  asm("" : "+l"(kbase), "+l"(vbase));
  const unsigned k_row = static_cast<unsigned>(p.k_st.l * sizeof(T)), v_row = static_cast<unsigned>(p.v_st.l * sizeof(T));
  auto unpack = [](Piece x, float* f) {
    const T* h = reinterpret_cast<const T*>(&x);
#pragma unroll
    for (int i = 0; i < kPer; ++i) f[i] = to_float(h[i]);
  };
  Piece kr[kBatch], vr[kBatch];
  auto load_batch = [&]() {  // all kBatch members' rows, past the batch's n the last one's again
#pragma unroll
    for (int j = 0; j < kBatch; ++j) {
      const unsigned at = __shfl_sync(0xffffffffu, my_pos, j);  // 32 x 32 -> 64-bit products below
      kr[j] = __ldg(reinterpret_cast<const Piece*>(kbase + static_cast<uint64_t>(at) * k_row));
      vr[j] = __ldg(reinterpret_cast<const Piece*>(vbase + static_cast<uint64_t>(at) * v_row));
    }
  };
  load_batch();
  float qsum[kPer];  // Σ_h q_{h,e}: the mean logit is (Σ_h q_h)·k / groups
#pragma unroll
  for (int i = 0; i < kPer; ++i) qsum[i] = 0.f;
  for (int h = 0; h < groups; ++h) {
    float f[kPer];
    unpack(*reinterpret_cast<const Piece*>(static_cast<const T*>(p.q) + b * p.q_st.b + (hkv * groups + h) * p.q_st.h +
                                           e * p.q_st.l + lane * kPer),
           f);
#pragma unroll
    for (int i = 0; i < kPer; ++i) qsum[i] += f[i];
  }
  float run_max = -INFINITY, run_sum = 0.f, ak[kPer], av[kPer];
#pragma unroll
  for (int i = 0; i < kPer; ++i) ak[i] = av[i] = 0.f;
  const float scale = p.scale / static_cast<float>(groups);
  const int mine = lane >> 1;  // the member whose logit this lane ends up holding
  for (int j0 = 0; j0 < p.m; j0 += kBatch) {
    const int n = min(kBatch, p.m - j0);
    if (j0 > 0) {
      my_pos = static_cast<int>(pos[j0 + min(lane, n - 1)]);
      load_batch();
    }
    // This lane's part of every member's dot product, reduced by a butterfly: at each step a lane
    // keeps the half of its values that its side of the exchange owns and adds the partner's. The
    // first step is taken as the products are formed, so that only 8 of them are held at once.
    auto partial = [&](int j) {
      float f[kPer], acc = 0.f;
      unpack(kr[j], f);
#pragma unroll
      for (int i = 0; i < kPer; ++i) acc += qsum[i] * f[i];
      return acc;
    };
    float d[kBatch / 2];
#pragma unroll
    for (int i = 0; i < kBatch / 2; ++i) {
      const float lo = partial(i), hi = partial(i + kBatch / 2);
      const bool upper = (lane & 16) != 0;
      d[i] = (upper ? hi : lo) + __shfl_xor_sync(0xffffffffu, upper ? lo : hi, 16);
    }
#pragma unroll
    for (int half = kBatch / 4, off = 8; half >= 1; half >>= 1, off >>= 1) {
      const bool upper = (lane & off) != 0;
#pragma unroll
      for (int i = 0; i < half; ++i) {
        const float keep = upper ? d[i + half] : d[i], send = upper ? d[i] : d[i + half];
        d[i] = keep + __shfl_xor_sync(0xffffffffu, send, off);
      }
    }
    const float dot = d[0] + __shfl_xor_sync(0xffffffffu, d[0], 1);
    const float x = mine < n ? dot * scale : -INFINITY;
    float mx = x;
#pragma unroll
    for (int off = 2; off < 32; off <<= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, off));
    mx = fmaxf(mx, run_max);
    const float w = expf(x - mx), corr = expf(run_max - mx);
    float wsum = w;
#pragma unroll
    for (int off = 2; off < 32; off <<= 1) wsum += __shfl_xor_sync(0xffffffffu, wsum, off);
    run_sum = run_sum * corr + wsum;
#pragma unroll
    for (int i = 0; i < kPer; ++i) {
      ak[i] *= corr;
      av[i] *= corr;
    }
    // Every member, weight 0 past n (a repeated row, finite where the group's rows are). The
    // rows are unpacked again: the floats of the dot products, kept for this, take registers.
#pragma unroll
    for (int j = 0; j < kBatch; ++j) {
      const float wj = __shfl_sync(0xffffffffu, w, 2 * j);
      float fk[kPer], fv[kPer];
      unpack(opaque(kr[j]), fk);
      unpack(vr[j], fv);
#pragma unroll
      for (int i = 0; i < kPer; ++i) {
        ak[i] += wj * fk[i];
        av[i] += wj * fv[i];
      }
    }
    run_max = mx;
  }
  int64_t row = p.out_row0 + g;
  if (p.merged) {  // after the focal positions below e: e - (g + 1)·m + 1 of them (see DgaAggregateParams)
    row = g + e - static_cast<int64_t>(g + 1) * p.m + 1;
  }
  const float inv = 1.f / run_sum;
  Piece pk, pv;
#pragma unroll
  for (int i = 0; i < kPer; ++i) {
    reinterpret_cast<T*>(&pk)[i] = from_float<T>(ak[i] * inv);
    reinterpret_cast<T*>(&pv)[i] = from_float<T>(av[i] * inv);
  }
  T* ok_base = static_cast<T*>(p.agg_k) + b * p.out_st.b + hkv * p.out_st.h + lane * kPer;
  T* ov_base = static_cast<T*>(p.agg_v) + b * p.out_st.b + hkv * p.out_st.h + lane * kPer;
  *reinterpret_cast<Piece*>(ok_base + row * p.out_st.l) = pk;
  *reinterpret_cast<Piece*>(ov_base + row * p.out_st.l) = pv;
}

// The merged rows of (b, kv head), focal row i (n = i) and aggregate g (n = focal + g), go to
// their place dst in order of lo (no focal position equals a group end: those are non-focal).
// Group g is non-focal positions g·m .. g·m + m - 1 (in order), so the group ends below focal
// position x number min(groups, (x - i) / m) (x - i non-focal positions lie below it), and the
// focal positions below group end e_g number e_g - (g + 1)·m + 1.
struct LayoutRow {
  int64_t pos;  // the position whose K/V row it holds; -1 for an aggregate
  int dst;
  int32_t lo;  // visible from lo on, for ever
};
__device__ __forceinline__ LayoutRow layout_row(const DgaLayoutParams& p, const int64_t* order, int n) {
  LayoutRow r{-1, n, 0};
  if (n < p.focal) {
    r.pos = order[p.len - p.focal + n];
    r.lo = static_cast<int32_t>(r.pos);
    r.dst = n + min(p.groups, static_cast<int>((r.pos - n) / p.m));
  } else {
    const int g = n - p.focal;
    r.lo = static_cast<int32_t>(order[g * p.m + p.m - 1]);
    r.dst = g + r.lo - (g + 1) * p.m + 1;
  }
  return r;
}

// Every interval of the layout, a thread per merged row, per position and per padding row (a
// focal row's thread also writes its position's); with p.seen_pairs, also the pairs the
// intervals keep (a sum per CTA, then one atomic).
constexpr int kThreadsL = 256;
__global__ void __launch_bounds__(kThreadsL) layout_interval_kernel(DgaLayoutParams p) {
  __shared__ unsigned long long s_seen[kThreadsL / 32];
  const int merged = p.focal + p.groups, per_bh = p.len + p.split - p.focal;
  const int64_t t = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  unsigned long long seen = 0;
  if (t < static_cast<int64_t>(p.batch) * p.kv_heads * per_bh) {
    const int64_t bh = t / per_bh;
    const int n = static_cast<int>(t % per_bh);
    const int64_t* order = p.order + bh * p.len;
    int32_t* lo = p.lo + bh * (p.split + p.len);
    int32_t* hi = p.hi + bh * (p.split + p.len);
    int at = 0;  // the interval this thread writes, [l, h); never: [kNever, 0), which widens no
    int32_t l = kNever, h = 0;  // tile summary (summarise_tiles(): a tile is listed for its max hi)
    if (n < merged) {
      const LayoutRow r = layout_row(p, order, n);
      if (r.pos >= 0) {  // a focal position: seen as a merged row
        lo[p.split + r.pos] = kNever;
        hi[p.split + r.pos] = 0;
      }
      at = r.dst;
      l = r.lo;
      h = kNever;
    } else if (n < p.len + p.groups) {  // non-focal position i: raw until its group ends
      const int i = n - merged, g = i / p.m;
      at = p.split + static_cast<int>(order[i]);
      l = static_cast<int32_t>(order[i]);
      h = g < p.groups ? static_cast<int32_t>(order[g * p.m + p.m - 1]) : kNever;
    } else {  // padding of the merged rows
      at = merged + (n - p.len - p.groups);
    }
    lo[at] = l;
    hi[at] = h;
    seen = static_cast<unsigned long long>(max(0, min(h, p.len) - l));
  }
  if (p.seen_pairs == nullptr) return;
  for (int off = 16; off > 0; off >>= 1) seen += __shfl_xor_sync(0xffffffffu, seen, off);
  if (threadIdx.x % 32 == 0) s_seen[threadIdx.x / 32] = seen;
  __syncthreads();
  if (threadIdx.x == 0) {
    unsigned long long sum = 0;
    for (int w = 0; w < kThreadsL / 32; ++w) sum += s_seen[w];
    atomicAdd(p.seen_pairs, sum);
  }
}

// The merged rows aggregate_kernel does not write: the focal rows, copied from k / v, and the
// padding up to split, zeroed; kRowsPerWarp of them per warp, all loads issued before the stores.
constexpr int kRowsPerWarp = 4;

template <int kD>
__global__ void layout_copy_kernel(DgaLayoutParams p) {
  using Piece = typename std::conditional<kD == 128, uint2, uint32_t>::type;  // kD·2 bytes over 32 lanes
  const int pad = p.split - p.focal - p.groups, per_bh = p.focal + pad;
  const int64_t total = static_cast<int64_t>(p.batch) * p.kv_heads * per_bh;
  const int64_t w0 = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / 32 * kRowsPerWarp;
  const int lane = threadIdx.x % 32;
  int64_t out[kRowsPerWarp];
  bool ok[kRowsPerWarp];
  Piece kp[kRowsPerWarp], vp[kRowsPerWarp];
#pragma unroll
  for (int r = 0; r < kRowsPerWarp; ++r) {
    const int64_t w = w0 + r;
    ok[r] = w < total;
    if (!ok[r]) continue;
    const int64_t bh = w / per_bh;
    const int j = static_cast<int>(w % per_bh);
    const int hkv = static_cast<int>(bh % p.kv_heads), b = static_cast<int>(bh / p.kv_heads);
    const int64_t head = b * p.out_st.b + hkv * p.out_st.h;
    if (j >= p.focal) {  // padding
      out[r] = head + static_cast<int64_t>(p.focal + p.groups + j - p.focal) * p.out_st.l;
      kp[r] = vp[r] = Piece{};
      continue;
    }
    const LayoutRow row = layout_row(p, p.order + bh * p.len, j);
    out[r] = head + static_cast<int64_t>(row.dst) * p.out_st.l;
    kp[r] = reinterpret_cast<const Piece*>(static_cast<const uint16_t*>(p.k) + b * p.k_st.b + hkv * p.k_st.h + row.pos * p.k_st.l)[lane];
    vp[r] = reinterpret_cast<const Piece*>(static_cast<const uint16_t*>(p.v) + b * p.v_st.b + hkv * p.v_st.h + row.pos * p.v_st.l)[lane];
  }
#pragma unroll
  for (int r = 0; r < kRowsPerWarp; ++r) {
    if (ok[r]) {
      reinterpret_cast<Piece*>(static_cast<uint16_t*>(p.keys) + out[r])[lane] = kp[r];
      reinterpret_cast<Piece*>(static_cast<uint16_t*>(p.values) + out[r])[lane] = vp[r];
    }
  }
}

// Slices of the focal split per (batch, kv head): about two CTAs per SM in all, 1024 positions or
// more each.
int focal_slices(const DgaSelectParams& p) {
  const int bh = p.batch * p.kv_heads;
  return std::max(1, std::min((p.len + 1023) / 1024, 2 * sm_count() / bh));
}

struct Work {
  float *part_m, *part_l, *lse;
  FocalWork focal;
};

// At most this many key ranges per (batch, kv head): one wave at the most CTAs per SM an
// importance kernel (128 threads or more) may have.
int max_ranges(const DgaSelectParams& p) {
  const int bh = p.batch * p.kv_heads, n_chunks = (p.len + kChunk - 1) / kChunk;
  return std::max(1, std::min(n_chunks, sm_count() * 16 / bh));
}

Work carve(const DgaSelectParams& p, void* ws) {
  const int64_t bh = static_cast<int64_t>(p.batch) * p.kv_heads;
  const int64_t rows = static_cast<int64_t>(p.q_heads / p.kv_heads) * p.n_samples;
  const int64_t parts = bh * max_ranges(p) * rows;
  Work w;
  w.part_m = static_cast<float*>(ws);
  w.part_l = w.part_m + parts;
  w.lse = w.part_l + parts;
  w.focal.hist = reinterpret_cast<int*>(w.lse + bh * rows);
  w.focal.barrier = reinterpret_cast<unsigned int*>(w.focal.hist + bh * kHistInts);
  w.focal.count = reinterpret_cast<int2*>(w.focal.barrier + 2);  // 8-byte aligned: kHistInts is even
  const int slices = focal_slices(p);
  w.focal.slice = (p.len + slices - 1) / slices;
  return w;
}

// Both importance passes and the log-sum-exp between them, kWG warpgroups of kBlocks row blocks.
template <typename T, int kD, int kWG, int kBlocks>
void launch_importance(const DgaSelectParams& p, const Work& w, cudaStream_t stream) {
  constexpr int kThreads = 128 * kWG;
  const int n_chunks = (p.len + kChunk - 1) / kChunk;
  const int rows = p.q_heads / p.kv_heads * p.n_samples;
  const size_t smem = importance_smem_bytes(kD);
  auto* pass1 = importance_kernel<T, kD, kWG, kBlocks, false>;
  auto* pass2 = importance_kernel<T, kD, kWG, kBlocks, true>;
  int per_sm = 16;  // CTAs per SM both passes reach (16: max_ranges()'s bound)
  for (auto* kernel : {pass1, pass2}) {
    const void* f = reinterpret_cast<const void*>(kernel);
    allow_dynamic_smem(f, smem, "dga importance shared memory attribute");
    per_sm = std::min(per_sm, std::max(1, ctas_per_sm(f, kThreads, smem, "dga importance occupancy")));
  }
  // One wave of CTAs, each a range of whole chunks.
  const int bh = p.batch * p.kv_heads;
  const int wanted = std::max(1, std::min(max_ranges(p), sm_count() * per_sm / bh));
  const int per_range = (n_chunks + wanted - 1) / wanted;
  const int n_ranges = (n_chunks + per_range - 1) / per_range;
  const dim3 grid(n_ranges, p.kv_heads, p.batch);
  pass1<<<grid, kThreads, smem, stream>>>(p, per_range, w.part_m, w.part_l, nullptr);
  check(cudaGetLastError(), "dga importance pass 1");
  const int total = bh * rows;
  combine_kernel<<<(total * 32 + 255) / 256, 256, 0, stream>>>(w.part_m, w.part_l, w.lse, n_ranges, rows, total);
  check(cudaGetLastError(), "dga log-sum-exp");
  pass2<<<grid, kThreads, smem, stream>>>(p, per_range, nullptr, nullptr, w.lse);
  check(cudaGetLastError(), "dga importance pass 2");
}

template <typename T, int kD>
void launch_select(const DgaSelectParams& p, cudaStream_t stream) {
  const Work w = carve(p, p.workspace);
  const int rows = p.q_heads / p.kv_heads * p.n_samples;
  if (rows <= 64) {  // the smallest CTA holding every sampled row (256 at the most, more take rounds)
    launch_importance<T, kD, 1, 1>(p, w, stream);
  } else if (rows <= 128) {
    launch_importance<T, kD, 2, 1>(p, w, stream);
  } else {
    launch_importance<T, kD, 2, 2>(p, w, stream);
  }
  mark_stage("importance", stream);
  const dim3 grid(focal_slices(p), p.kv_heads, p.batch);
  const size_t zeroed = (static_cast<size_t>(p.batch) * p.kv_heads * kHistInts + 2) * sizeof(int);  // + the barrier
  // One cooperative launch when every CTA of the grid fits the GPU at once; else five.
  const void* split = reinterpret_cast<const void*>(focal_split_kernel);
  if (static_cast<int64_t>(grid.x) * grid.y * grid.z <=
      static_cast<int64_t>(ctas_per_sm(split, kThreadsF, 0, "dga focal split occupancy")) * sm_count()) {
    check(cudaMemsetAsync(w.focal.hist, 0, zeroed, stream), "dga focal histograms");
    DgaSelectParams pc = p;
    FocalWork fc = w.focal;
    void* args[] = {&pc, &fc};
    check(cudaLaunchCooperativeKernel(split, grid, dim3(kThreadsF), args, 0, stream), "dga focal split");
    mark_stage("focal split", stream);
    return;
  }
  if (p.focal > 0 && p.focal < p.len) {
    check(cudaMemsetAsync(w.focal.hist, 0, zeroed, stream), "dga focal histograms");
    focal_hist_kernel<0><<<grid, kThreadsF, 0, stream>>>(p, w.focal);
    focal_hist_kernel<1><<<grid, kThreadsF, 0, stream>>>(p, w.focal);
    focal_hist_kernel<2><<<grid, kThreadsF, 0, stream>>>(p, w.focal);
    focal_order_kernel<true><<<grid, kThreadsF, 0, stream>>>(p, w.focal);
  }
  focal_order_kernel<false><<<grid, kThreadsF, 0, stream>>>(p, w.focal);
  check(cudaGetLastError(), "dga focal split");
  mark_stage("focal split", stream);
}

}  // namespace

size_t dga_select_workspace_bytes(const DgaSelectParams& p) {
  const size_t bh = static_cast<size_t>(p.batch) * p.kv_heads;
  const size_t rows = static_cast<size_t>(p.q_heads / p.kv_heads) * p.n_samples;
  return (2 * bh * max_ranges(p) * rows + bh * rows) * sizeof(float) + (bh * kHistInts + 2) * sizeof(int) +
         bh * focal_slices(p) * sizeof(int2);
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
  if (std::max(p.k_st.l, p.v_st.l) > INT32_MAX / 2) throw std::invalid_argument("dga aggregate: a row stride over 2^30 elements");
  const int total = p.batch * p.kv_heads * p.n_groups;
  if (total == 0) return;
  constexpr int kThreads = 128;  // four groups per CTA (a group's 16 rows in flight hold many registers)
  const int blocks = (total * 32 + kThreads - 1) / kThreads;
  if (dtype == Dtype::kBFloat16) {
    p.head_dim == 128 ? aggregate_kernel<__nv_bfloat16, 128><<<blocks, kThreads, 0, stream>>>(p)
                      : aggregate_kernel<__nv_bfloat16, 64><<<blocks, kThreads, 0, stream>>>(p);
  } else {
    p.head_dim == 128 ? aggregate_kernel<__half, 128><<<blocks, kThreads, 0, stream>>>(p)
                      : aggregate_kernel<__half, 64><<<blocks, kThreads, 0, stream>>>(p);
  }
  check(cudaGetLastError(), "dga aggregate");
}

void dga_layout(const DgaLayoutParams& p, Dtype, cudaStream_t stream) {
  if (p.head_dim != 64 && p.head_dim != 128) throw std::invalid_argument("dga layout: head dim 64 or 128");
  if (p.split < p.focal + p.groups) throw std::invalid_argument("dga layout: split below the merged rows");
  const int64_t bh = static_cast<int64_t>(p.batch) * p.kv_heads;
  const int64_t rows = bh * (p.len + p.split - p.focal);
  if (rows == 0) return;
  layout_interval_kernel<<<static_cast<unsigned>((rows + kThreadsL - 1) / kThreadsL), kThreadsL, 0, stream>>>(p);
  check(cudaGetLastError(), "dga layout intervals");
  const int64_t copies = bh * (p.split - p.groups);  // focal rows and padding
  const int64_t warps = (copies + kRowsPerWarp - 1) / kRowsPerWarp;
  if (warps == 0) return;
  const unsigned blocks = static_cast<unsigned>((warps * 32 + 255) / 256);
  p.head_dim == 128 ? layout_copy_kernel<128><<<blocks, 256, 0, stream>>>(p) : layout_copy_kernel<64><<<blocks, 256, 0, stream>>>(p);
  check(cudaGetLastError(), "dga layout copies");
}

}  // namespace lcb::attn::cuda
