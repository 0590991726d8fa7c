// topk_block's prefill in its two stages, for benchmarks that report each stage's share of the time.
#pragma once

#include "attention_impls/attention.h"

namespace lcb::attn {

// Stage 1 of a `topk_block` implementation's prefill: the block summaries and the selection,
// block_sel [B, Hq, nb, nb] (uint8 from the kernel, bool from the reference). Stage 2 is
// fast::interval_attention(q, k, v, causal intervals, 0, scale, block_sel). Throws
// std::invalid_argument when `impl` is not a topk_block.
at::Tensor topk_block_plan(const Attention& impl, const at::Tensor& q, const at::Tensor& k, const Options& opts);

}  // namespace lcb::attn
