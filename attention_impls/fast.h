// The CUDA kernels behind the implementations' fast paths (attention_impls/cuda/), for tensors.
// An implementation asks fast::reason_not() first and falls back to its reference when the
// kernels cannot run the inputs; without a CUDA build every input gets a reason.
#pragma once

#include "attention_impls/attention.h"

#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace lcb::attn::fast {

// Whether this build contains the CUDA kernels.
bool built();

// Stage timings, for benchmarks: while a StageTimer lives on this thread, the fast paths record a
// CUDA event on the current stream at the end of each stage of their pipelines (DGA: importance,
// focal split, aggregation, layout; every interval attention: tile summaries, attention), and
// stages() gives each stage's milliseconds since the previous mark (the first since the timer's
// start). Work queued between two marks (allocations, small ATen kernels) counts in the later
// stage. host_ms is the host's time between the same marks: a stage whose host_ms exceeds its
// ms kept the GPU waiting for launches. One timer at a time per thread (a second one's end
// stops the marks). Throws in a build without the CUDA kernels.
class StageTimer {
 public:
  struct Stage {
    std::string name;
    double ms = 0, host_ms = 0;
  };
  StageTimer();
  ~StageTimer();
  StageTimer(const StageTimer&) = delete;
  StageTimer& operator=(const StageTimer&) = delete;
  // Waits for the stages marked so far; in the order they ran.
  std::vector<Stage> stages();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// The sum of an integer tensor, read on the host without waiting for the work queued after it:
// on CUDA the sum is copied behind the work queued so far and get() waits only for that copy
// (a forward can queue its attention kernel, then read a count it needs for its cost).
class DeferredSum {
 public:
  explicit DeferredSum(const at::Tensor& x);
  ~DeferredSum();
  DeferredSum(const DeferredSum&) = delete;
  DeferredSum& operator=(const DeferredSum&) = delete;
  int64_t get();

 private:
  at::Tensor host_;
  struct Event;
  std::unique_ptr<Event> event_;
};

// Empty when the kernels can run attention of q over k/v (a Hopper GPU, bf16/fp16, head dim 64 or
// 128, no gradient wanted, positive scale, reference not forced); otherwise why not.
std::string reason_not(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const Options& opts);

// reason_not() for decode_attention(), which also needs 1, 2, 4 or 8 query heads per kv head.
std::string reason_not_decode(const at::Tensor& q1, const at::Tensor& k, const at::Tensor& v, const Options& opts);

// Visibility-interval attention: key n of (b, kv head h) is visible to the query at absolute
// position p iff lo[b,h,n] <= p < hi[b,h,n]; query row i sits at q_pos0 + i. lo/hi are integer
// tensors [B, Hkv, N] or broadcastable to it; ends past INT32_MAX mean "never". Returns
// [B, Hq, Lq, D] in q's dtype.
// With block_sel (bool or uint8 [B, Hq, ceil(Lq_end / 64), ceil(N / 64)]), key n is visible to the
// query at position p only if also block_sel[b, hq, p / 64, n / 64] (block-sparse attention).
// rows_per_cta: 64 asks the head-dim-128 kernel for 64-row CTAs (two per SM, one query tile
// each; DGA uses them up to 8K keys), 0 for its default (persistent 128-row CTAs).
// With k2 / v2 [B, Hkv, N2, D] (k's dtype), the keys are k's N rows (a multiple of 128) followed
// by k2's, read where they lie (DGA's raw rows are its input's): lo / hi then cover N + N2 keys.
at::Tensor interval_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& lo,
                              const at::Tensor& hi, int64_t q_pos0, double scale,
                              const at::Tensor& block_sel = at::Tensor(), int64_t rows_per_cta = 0,
                              const at::Tensor& k2 = at::Tensor(), const at::Tensor& v2 = at::Tensor());

// Empty when topk_attention() can run these inputs (reason_not(), head dim 128, at least 64
// queries); otherwise why not.
std::string reason_not_topk(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const Options& opts);

// Exact top-k attention (topk:k=top_k) of q [B, Hq, Lq, D] over the causal keys of k / v: query
// row i sits at position N - Lq + i and keeps its top_k largest scores q·k (keys tied with the
// top_k-th are all kept). Undefined when the kernel cannot address the tensors (the caller then
// uses the reference).
at::Tensor topk_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, int64_t top_k, double scale);
// topk_attention()'s select alone, its first `levels` passes (1 to 5; 5 completes it): int32
// [B, Hq, Lq, 4] per row: the key range (lo, width) holding the top_k-th score, how many scores
// are still to be found in it (0: resolved) and the bound (keys kept: order key >= bound, the
// float's bits made unsigned-monotone); an open row whose first-level range goes to candidates
// holds their count in place of the bound. capacity: candidates per row (-1: the default; 0:
// every row refined by histogram passes alone). For stage timings and tests.
at::Tensor topk_select(const at::Tensor& q, const at::Tensor& k, int64_t top_k, int64_t levels, int64_t capacity = -1);

// The block size block_sel is written for.
constexpr int64_t kSelectBlock = 64;

// topk_block's selection with 64-query / 64-key blocks on the GPU. q [B, Hq, L, D] holds the
// queries at positions 0 .. L-1; kmin / kmax [B, Hkv, ceil(L / 64), D], in q's dtype, the
// elementwise min / max of each block of 64 keys. Returns block_sel, uint8 [B, Hq, nb, nb]: per
// query block qb the top_k key blocks among 1 .. qb-1 by the bound (maximum over the block's
// queries of q⁺·kmax + q⁻·kmin), plus blocks 0 and qb. With scores, also those bounds in float32
// for the query blocks that had to rank (more than top_k candidates), -inf elsewhere.
at::Tensor topk_block_select(const at::Tensor& q, const at::Tensor& kmin, const at::Tensor& kmax, int64_t top_k,
                             at::Tensor* scores = nullptr);
// Empty when topk_block_select() can run these shapes (its per-block scores fit shared memory).
std::string reason_not_select(const at::Tensor& q, int64_t n_blocks);

// topk_block's decode selection for the token at position pos, whose key and value are already
// stored at row pos of the cache's storage (cap rows per kv head). kmin_store / kmax_store
// [B, Hkv, > pos / 64, D] are the block summaries; the new key k1 [B, Hkv, 1, D] is folded into
// its block's. Returns the rows to attend as decode_attention_rows() takes them, int32
// [B, Hq, n]: block 0, the top_k blocks by bound among 1 .. pos/64 - 1, and the diagonal block.
at::Tensor topk_block_decode_rows(const at::Tensor& q1, const at::Tensor& k1, const at::Tensor& kmin_store,
                                  const at::Tensor& kmax_store, int64_t pos, int64_t top_k, int64_t cap);

// A decode step's new token for decode_attention(): k1 / v1 [B, Hkv, 1, D] are attended after the
// segments and copied into k_dst / v_dst (its cache slot, same shape, unit last stride, 16-byte
// aligned rows) by the same launch. No segment may cover the slot.
struct DecodeStore {
  at::Tensor k1, v1, k_dst, v_dst;
};

// One query per (batch, head), q1 [B, Hq, 1, D], against every key of the (k, v) segments
// ([B, Hkv, n_i, D] each, all visible; empty ones allowed; at most 4 non-empty, the stored token
// included). Query heads per kv head must be 1, 2, 4 or 8. With lse != nullptr it also returns
// log Σ exp(scale·q·k) per (batch, head), [B, Hq].
at::Tensor decode_attention(const at::Tensor& q1, const std::vector<std::pair<at::Tensor, at::Tensor>>& segments,
                            double scale, at::Tensor* lse = nullptr, const DecodeStore* store = nullptr);

// One query per (batch, query head) against rows gathered on the fly: query head h of batch b
// attends to rows[b, h, :] of k_store/v_store viewed as [B, Hkv·cap, D] (row = kv head · cap +
// position; k_store/v_store contiguous [B, Hkv, cap, D]). All those rows are visible.
at::Tensor decode_attention_rows(const at::Tensor& q1, const at::Tensor& k_store, const at::Tensor& v_store,
                                 const at::Tensor& rows, double scale);

// DGA's importance and focal split on the GPU (DESIGN.md §3, steps 1-2). samples: the sampled
// query positions, ascending. Returns {importance [B, Hkv, L] float32, order [B, Hkv, L] int64:
// the non-focal positions ascending, then the `focal` most important positions ascending}.
std::pair<at::Tensor, at::Tensor> dga_order(const at::Tensor& q, const at::Tensor& k, const at::Tensor& samples,
                                            double scale, int64_t focal);

// DGA's group aggregates (step 3) for groups of positions [B, Hkv, G, m] (ascending; the last is
// the group's end): {agg_k, agg_v}, [B, Hkv, G, D] in q's dtype.
std::pair<at::Tensor, at::Tensor> dga_aggregate(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                                const at::Tensor& positions, double scale);

// DGA's compressed layout (steps 3-5) from dga_order()'s order, for interval_attention() with k / v
// as its second source: keys / values [B, Hkv, S, D] in k's dtype hold the focal tokens and the
// aggregates of the (L - focal) / m full groups, merged in order of lo (`merged` rows), then zeros
// up to S (`merged` rounded up to 128); lo / hi, int32 [B, Hkv, S + L] (INT32_MAX: never), their
// visibility intervals, then position j's as a raw key ([j, e_g) when non-focal; never,
// [INT32_MAX, 0), when focal, as the padding); seen_pairs, int64 [1]: Σ over all of
// max(0, min(hi, L) - lo), the (query position, key) pairs the layout keeps summed over
// (b, kv head).
struct DgaLayout {
  at::Tensor keys, values, lo, hi, seen_pairs;
};
DgaLayout dga_layout(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& order,
                     int64_t focal, int64_t m, double scale);

}  // namespace lcb::attn::fast
