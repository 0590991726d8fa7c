// Plain-LibTorch building blocks shared by the reference implementations. They run on any
// device, keep autograd, and process query rows in chunks so long contexts fit in memory.
#pragma once

#include "attention_impls/attention.h"

#include <ATen/core/grad_mode.h>

#include <functional>
#include <limits>

namespace lcb::attn::ref {

constexpr int64_t kNever = std::numeric_limits<int64_t>::max();  // "visible forever" interval end

// float64 stays float64; every other dtype is computed in float32 and rounded back at the end.
at::ScalarType compute_dtype(at::ScalarType dtype);

double softmax_scale(const Options& opts, int64_t head_dim);

// Absolute positions of the query rows [row0, row0 + rows) when Lq queries end at key Lk - 1.
at::Tensor query_positions(int64_t q_len, int64_t kv_len, int64_t row0, int64_t rows, at::Device device);

// [B, Hkv, N, ...] -> [B, Hkv * groups, N, ...]: each kv head repeated for its query heads.
at::Tensor repeat_kv(const at::Tensor& x, int64_t groups);

// Visibility of keys for one chunk of query rows. Gets the chunk's first row, its row count and
// the unmasked logits [B, Hq, rows, N] (compute dtype, no grad needed); returns a bool mask
// broadcastable to the logits (true = visible).
using MaskFn = std::function<at::Tensor(int64_t row0, int64_t rows, const at::Tensor& logits)>;

// softmax(q·keys^T·scale masked by mask_fn)·values, chunked over query rows.
// q [B, Hq, Lq, D]; keys/values [B, Hkv, N, D]. Rows with no visible key give zeros.
// Returns [B, Hq, Lq, D] in q's dtype.
at::Tensor masked_attention(const at::Tensor& q, const at::Tensor& keys, const at::Tensor& values, double scale,
                            int64_t chunk_rows, const MaskFn& mask_fn);

// Mean over (batch, query head, query) of the causal dense attention probability on the keys
// that kept_fn marks (k are the original keys, [B, Hkv, Lk, D]).
double mass_recall(const at::Tensor& q, const at::Tensor& k, double scale, int64_t chunk_rows,
                   const MaskFn& kept_fn);

// The forward of implementations that attend over the original keys under a mask: output,
// the given exact cost, and mass recall (kept = visible) when asked for.
Output masked_forward(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const Options& opts,
                      const MaskFn& mask, const Cost& cost);

// Causal mask for rows [row0, row0+rows): [rows, Lk], key j visible iff j <= position of the row.
at::Tensor causal_mask(int64_t q_len, int64_t kv_len, int64_t row0, int64_t rows, at::Device device);

// Visibility from per-key intervals: lo/hi [B, Hkv, N] (key visible to positions lo <= p < hi)
// for the query positions pos [rows]; returns [B, Hq, rows, N] with each kv head repeated.
at::Tensor interval_mask(const at::Tensor& lo, const at::Tensor& hi, const at::Tensor& pos, int64_t groups);

// Sum over queries of the causal row lengths: Σ_i (Lk - Lq + i + 1).
int64_t causal_pairs_per_head(int64_t q_len, int64_t kv_len);

// Fills attention_flops and bytes of a cost from its kept pairs (bytes: q, keys, values, out).
void finish_cost(Cost& c, const Shape& s, int64_t key_rows_read);

}  // namespace lcb::attn::ref
