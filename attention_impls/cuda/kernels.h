// Launchers of lcb's CUDA kernels (sm_90, bf16/fp16, head dim 64 or 128). Plain pointers and
// strides, no ATen, so the .cu files compile without LibTorch's headers; attention_impls/fast.cpp
// wraps them for tensors.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace lcb::attn::cuda {

enum class Dtype { kBFloat16, kFloat16 };

constexpr int32_t kNever = 0x7fffffff;  // interval end "visible forever"

// Element strides of a [B, H, L, D] tensor whose last dimension is contiguous.
struct Strides {
  int64_t b = 0, h = 0, l = 0;
};

// Visibility-interval attention (DESIGN.md §3): key n of (batch b, kv head h) is visible to the
// query at absolute position p iff lo[n] <= p < hi[n]. Query row i sits at position q_pos0 + i.
// Rows that see no key get zeros.
struct IntervalParams {
  const void* q = nullptr;  // [B, Hq, Lq, D]
  const void* k = nullptr;  // [B, Hkv, N, D]
  const void* v = nullptr;  // [B, Hkv, N, D]
  void* out = nullptr;      // [B, Hq, Lq, D]
  Strides q_st, k_st, v_st, o_st;
  const int32_t* lo = nullptr;  // lo/hi [B, Hkv, N] with these element strides (0: shared)
  const int32_t* hi = nullptr;
  int64_t iv_stride_b = 0, iv_stride_h = 0;
  int batch = 1, q_heads = 1, kv_heads = 1, q_len = 1, kv_len = 1, head_dim = 128;
  int q_pos0 = 0;
  float scale = 1.0f;
  // Optional block selection (topk_block with 64-key blocks): key tile t is visible to the query
  // at position p only if block_sel[b, hq, p / 64, t] != 0 (and its interval allows it).
  const uint8_t* block_sel = nullptr;
  int64_t sel_stride_b = 0, sel_stride_h = 0, sel_stride_q = 0;
  // Work space of interval_workspace_bytes(): per key tile the min/max of lo and hi.
  int32_t* tile_summary = nullptr;
};

size_t interval_workspace_bytes(int batch, int kv_heads, int kv_len);
constexpr int kSelectBlock = 64;  // the key tile, and the block size block_sel is written for
void interval_attention(const IntervalParams& p, Dtype dtype, cudaStream_t stream);

// One query per (batch, query head) against keys that are all visible, held in up to three
// segments per (batch, kv head) (DGA's cache: focal, aggregates, raw tail). Split-KV: blocks of
// keys are reduced in parallel, then combined.
struct DecodeSegment {
  const void* k = nullptr;  // [B, Hkv, len, D]
  const void* v = nullptr;
  Strides k_st, v_st;
  int len = 0;
  // Optional gather: key n of (b, h) is row rows[(b·Hkv + h)·len + n] of batch b's K/V
  // (address k + b·k_st.b + row·k_st.l; k_st.h is then unused).
  const int32_t* rows = nullptr;
};

struct DecodeParams {
  const void* q = nullptr;  // [B, Hq, 1, D]
  void* out = nullptr;      // [B, Hq, 1, D]
  Strides q_st, o_st;
  DecodeSegment seg[3];
  int segments = 0;
  int batch = 1, q_heads = 1, kv_heads = 1, head_dim = 128;
  float scale = 1.0f;
  float* workspace = nullptr;  // decode_workspace_bytes()
  float* lse = nullptr;        // optional [B, Hq]: natural-log sum of exp(scale·q·k) over the keys
};

int decode_splits(const DecodeParams& p);  // key blocks per (batch, kv head)
size_t decode_workspace_bytes(const DecodeParams& p);
void decode_attention(const DecodeParams& p, Dtype dtype, cudaStream_t stream);

}  // namespace lcb::attn::cuda
