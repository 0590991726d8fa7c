// DGA's prefill in its two stages, for benchmarks that report each stage's share of the time.
#pragma once

#include "attention_impls/attention.h"

namespace lcb::attn {

// The compressed keys/values (input dtype) and their visibility intervals, [B, Hkv, N(, D)]. On
// the CUDA fast path the raw keys are the input's own k / v (k2 / v2, a second source after the
// N rows of keys / values; lo / hi then cover N + L keys); elsewhere k2 / v2 are undefined.
struct DgaPlan {
  at::Tensor keys, values, lo, hi, k2, v2;
  int64_t rows_per_cta = 0;  // fast::interval_attention()'s CTA shape for this plan
};

// Stage 1 of a `dga` implementation's prefill: importance from the sampled queries, the focal
// top-γ, group aggregation and the intervals. Stage 2 is
// fast::interval_attention(q, plan.keys, plan.values, plan.lo, plan.hi, 0, scale, {},
// plan.rows_per_cta, plan.k2, plan.v2) (or the reference's masked attention). Throws
// std::invalid_argument when `impl` is not a dga.
DgaPlan dga_plan(const Attention& impl, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, double scale);

}  // namespace lcb::attn
