// Launchers of lcb's CUDA kernels (sm_90, bf16/fp16, head dim 64 or 128). Plain pointers and
// strides, no ATen, so the .cu files compile without LibTorch's headers; attention_impls/fast.cpp
// wraps them for tensors.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace lcb::attn::cuda {

enum class Dtype { kBFloat16, kFloat16 };

constexpr int32_t kNever = 0x7fffffff;  // interval end "visible forever"

// Stage marks, for benchmarks: the launchers of multi-kernel pipelines call mark_stage() at the
// end of each stage (DGA: "importance", "focal split"; the interval attention: "tile summaries",
// "attention"). While a recorder is set on this thread it records the mark on the stream (a CUDA
// event); with none (the default) a mark does nothing.
class StageRecorder {
 public:
  virtual ~StageRecorder() = default;
  virtual void mark(const char* stage, cudaStream_t stream) = 0;
};
void set_stage_recorder(StageRecorder* recorder);  // nullptr: none
void mark_stage(const char* stage, cudaStream_t stream);

// Element strides of a [B, H, L, D] tensor whose last dimension is contiguous.
struct Strides {
  int64_t b = 0, h = 0, l = 0;
};

// Visibility-interval attention (DESIGN.md §3): key n of (batch b, kv head h) is visible to the
// query at absolute position p iff lo[n] <= p < hi[n]. Query row i sits at position q_pos0 + i.
// Rows that see no key get zeros.
struct IntervalParams {
  const void* q = nullptr;  // [B, Hq, Lq, D]
  const void* k = nullptr;  // [B, Hkv, N, D] (N = kv_len; with k2, split)
  const void* v = nullptr;  // [B, Hkv, N, D]
  void* out = nullptr;      // [B, Hq, Lq, D]
  Strides q_st, k_st, v_st, o_st;
  // Optional second source of keys / values: keys n >= split (a multiple of 128) are rows
  // n - split of k2 / v2 ([B, Hkv, kv_len - split, D]); keys below split are rows of k / v. DGA's
  // layout keeps its raw rows where they are this way (interval_attention(), exact top-k not).
  const void* k2 = nullptr;
  const void* v2 = nullptr;
  Strides k2_st, v2_st;
  int split = 0;
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
  // Work space of interval_workspace_bytes(): per key tile the min/max of lo and hi, the same per
  // 4096 keys (coarse summaries), then the wgmma kernel's work counter.
  int32_t* tile_summary = nullptr;
  // Query rows per CTA on the head-dim-128 kernel: 0 (or 128) for 128-row CTAs, 64 for 64-row
  // CTAs with 64-key tiles, two per SM, which suit short and uneven tile lists better.
  int rows_per_cta = 0;
  // Optional per-row bounds (topk_attention() sets them): 4 words per row of [B, Hq, Lq], the
  // 4th a key (order_key of the score + 0); the query keeps only the keys whose raw score q·k has
  // a key at or above it.
  const uint32_t* row_state = nullptr;
};

size_t interval_workspace_bytes(int batch, int kv_heads, int kv_len);
constexpr int kSelectBlock = 64;  // the key tile, and the block size block_sel is written for
void interval_attention(const IntervalParams& p, Dtype dtype, cudaStream_t stream);

// Exact top-k attention (topk:k=K, DESIGN.md §3) on the causal keys: the query at position p
// keeps the top_k largest raw scores q·k among keys 0 .. p (all of them when there are at most
// top_k). p's lo / hi must describe causal dense visibility (lo[n] = n, hi = kNever). A radix
// select finds each row's top_k-th score: the first pass recomputes q·K^T on the tensor cores and
// histograms every row's scores into 256 ranges; the second recomputes it and copies the scores
// of the range that holds the top_k-th into the row's candidates, where a warp finishes the
// select (rows whose range holds more than capacity - 4 scores, or that share a warp with such a
// row, refine it by histogram, in up to three more passes; a CTA whose rows are all resolved
// stops at once); then the interval kernel attends with the per-row bounds. Scores are
// bit-identical across the passes (same instructions), so the kept set is exact; keys tied with
// the top_k-th score are all kept.
// workspace: topk_workspace_bytes(), per row of [B, Hq, Lq] its state (4 words: range lo, width,
// still needed, bound), then per row `capacity` candidate words (a multiple of 32, at most
// kTopkMaxCapacity; 0: the histogram passes alone). Returns false, computing
// nothing, where it cannot run (head dim other than 128, a tensor TMA cannot address, over a
// million keys).
constexpr int kTopkMaxCapacity = 512;
int topk_capacity(int64_t rows);  // kTopkMaxCapacity per row, halved until the candidates fit 1 GiB (0 below 32)
size_t topk_workspace_bytes(int batch, int q_heads, int q_len, int capacity);
bool topk_attention(const IntervalParams& p, int top_k, int capacity, uint32_t* workspace, Dtype dtype,
                    cudaStream_t stream);
// The select alone, its first `levels` passes (1 to 5): the rows' states as topk_attention()
// leaves them, for timing the stages and for tests.
bool topk_select(const IntervalParams& p, int top_k, int levels, int capacity, uint32_t* workspace, Dtype dtype,
                 cudaStream_t stream);

// One query per (batch, query head) against keys that are all visible, held in up to four
// segments per (batch, kv head) (DGA's cache: focal, aggregates, raw tail, the new token).
// Split-KV: blocks of keys are reduced in parallel, then combined by the last block of each
// (batch, kv head) to finish. The same launch can store the new token's row into its cache slot
// (DecodeStore), which no segment may read.
struct DecodeSegment {
  const void* k = nullptr;  // [B, Hkv, len, D]
  const void* v = nullptr;
  Strides k_st, v_st;
  int len = 0;
  // Optional gather: key n of (b, h) is row rows[(b·Hkv + h)·len + n] of batch b's K/V
  // (address k + b·k_st.b + row·k_st.l; k_st.h is then unused).
  const int32_t* rows = nullptr;
};

// A row to copy while decoding (the new token into its cache slot): per (batch, kv head) the row
// at src + b·src_st.b + h·src_st.h goes to dst + b·dst_st.b + h·dst_st.h, for K and V.
struct DecodeStore {
  const void *k = nullptr, *v = nullptr;
  void *k_dst = nullptr, *v_dst = nullptr;
  Strides k_st, v_st, k_dst_st, v_dst_st;
};

struct DecodeParams {
  const void* q = nullptr;  // [B, Hq, 1, D]
  void* out = nullptr;      // [B, Hq, 1, D]
  Strides q_st, o_st;
  DecodeSegment seg[4];
  int segments = 0;
  DecodeStore store;  // optional (store.k_dst != nullptr): copied by the CTAs of split 0
  int batch = 1, q_heads = 1, kv_heads = 1, head_dim = 128;
  float scale = 1.0f;
  float* workspace = nullptr;  // decode_workspace_bytes()
  float* lse = nullptr;        // optional [B, Hq]: natural-log sum of exp(scale·q·k) over the keys
  // Set by decode_attention(): per (batch, kv head) the splits done so far, zero between calls.
  // The last CTA of a (batch, kv head) combines its splits; null: a second kernel combines.
  int* done = nullptr;
};

// topk_block's prefill selection (DESIGN.md §3) for queries at positions 0 .. q_len-1 and as many
// key blocks: per (batch, query head, query block qb) the top_k key blocks among 1 .. qb-1 by
// the bound max over the block's queries of q⁺·kmax + q⁻·kmin, plus blocks 0 and qb. Writes the
// whole row sel[b, hq, qb, 0 .. n_blocks) (1 = attended).
struct BlockSelectParams {
  const void* q = nullptr;  // [B, Hq, q_len, D]
  Strides q_st;
  const void* kmin = nullptr;  // per-block elementwise min / max of the keys, [B, Hkv, >= n_blocks, D]
  const void* kmax = nullptr;
  Strides s_st;
  uint8_t* sel = nullptr;  // [B, Hq, n_blocks, n_blocks]
  int64_t sel_stride_b = 0, sel_stride_h = 0, sel_stride_q = 0;
  float* scores = nullptr;  // optional, same layout as sel: the bounds of ranked rows' candidates
  int batch = 1, q_heads = 1, kv_heads = 1, q_len = 1, n_blocks = 1, head_dim = 128, top_k = 0;
};
size_t block_select_smem_bytes(int head_dim, int n_blocks);  // must stay within the device's limit
void block_select(const BlockSelectParams& p, Dtype dtype, cudaStream_t stream);

// topk_block's decode selection for the token at position pos (its key already stored at row
// pos): bounds of the query against key blocks 1 .. qb-1 (qb = pos / 64), the top_k of them, and
// the rows each query head attends to, written as kv head · cap + position: block 0, the chosen
// blocks in order, then qb·64 .. pos. Also folds the new key k1 into block qb's min / max (the
// first key of a block sets them).
struct BlockDecodeParams {
  const void* q = nullptr;  // [B, Hq, 1, D]
  Strides q_st;
  const void* k1 = nullptr;  // [B, Hkv, 1, D]
  Strides k1_st;
  void* kmin = nullptr;  // [B, Hkv, > qb, D], updated at block qb
  void* kmax = nullptr;
  Strides s_st;
  float* scores = nullptr;  // work space [B, Hq, score_stride], score_stride >= qb - 1
  int64_t score_stride = 0;
  int32_t* rows = nullptr;  // [B, Hq, n_rows], n_rows = block_decode_rows(pos, top_k)
  int64_t n_rows = 0;
  int64_t cap = 0;  // rows per kv head in the K/V storage
  int batch = 1, q_heads = 1, kv_heads = 1, head_dim = 128, pos = 0, top_k = 0;
};
int block_decode_rows(int pos, int top_k);
void block_decode_select(const BlockDecodeParams& p, Dtype dtype, cudaStream_t stream);

// DGA's importance and focal split (DESIGN.md §3, steps 1-2) per (batch, kv head): importance
// s_j = Σ over sampled positions i >= j and the kv head's query heads of softmax_i(scale·q·K)_j,
// written to `importance`; the top `focal` positions by s are focal; `order` gets the non-focal
// positions ascending, then the focal ones ascending.
struct DgaSelectParams {
  const void* q = nullptr;  // [B, Hq, len, D]
  Strides q_st;
  const void* k = nullptr;  // [B, Hkv, len, D]
  Strides k_st;
  const int32_t* samples = nullptr;  // n_samples sampled positions, ascending
  int n_samples = 0;
  float* importance = nullptr;  // [B, Hkv, len]
  int64_t* order = nullptr;     // [B, Hkv, len]
  void* workspace = nullptr;    // dga_select_workspace_bytes()
  int batch = 1, q_heads = 1, kv_heads = 1, len = 1, head_dim = 128, focal = 0;
  float scale = 1.0f;
};
size_t dga_select_workspace_bytes(const DgaSelectParams& p);
void dga_select(const DgaSelectParams& p, Dtype dtype, cudaStream_t stream);

// DGA's group aggregation (step 3): group g of (b, kv head) holds the m positions
// positions[b, h, g, :] (ascending, the last is e_g); w = softmax_j(scale · mean over the kv head's
// query heads of q_{e_g}·k_j); agg_k / agg_v [B, Hkv, n_groups, D] (contiguous, input dtype) get
// Σ_j w_j k_j and Σ_j w_j v_j.
struct DgaAggregateParams {
  const void* q = nullptr;
  Strides q_st;
  const void* k = nullptr;
  Strides k_st;
  const void* v = nullptr;
  Strides v_st;
  const int64_t* positions = nullptr;  // [B, Hkv, n_groups, m], groups contiguous within a (b, kv head)
  int64_t positions_stride = 0;        // elements from one (b, kv head) to the next; 0: n_groups·m
  void* agg_k = nullptr;  // aggregate g of (b, h) at row out_row0 + g of [B, Hkv, rows, D] with out_st
  void* agg_v = nullptr;
  Strides out_st;
  int out_row0 = 0;
  // dga_layout()'s merged rows: the groups are the non-focal positions in order, m to a group
  // (positions = the first n_groups·m of them), and aggregate g goes instead to row g + the number
  // of focal positions below its end e_g, which is e_g - (g + 1)·m + 1.
  bool merged = false;
  int batch = 1, q_heads = 1, kv_heads = 1, head_dim = 128, n_groups = 0, m = 1;
  float scale = 1.0f;
};
void dga_aggregate(const DgaAggregateParams& p, Dtype dtype, cudaStream_t stream);

// DGA's compressed layout (steps 4-5) from `order` (non-focal positions ascending, then the
// `focal` focal ones), for interval attention over two sources (IntervalParams::k2): keys n <
// split are rows of keys / values, the focal rows and the aggregates merged in order of lo (the
// aggregates are dga_aggregate()'s, with merged set; this copies the focal rows from k / v and
// zeroes the rows up to split); key split + j is position j of k / v itself, raw. lo / hi get
// their intervals: focal [pos, never), aggregate [e_g, never); position j, when non-focal,
// [j, e_g) or [j, never) in the short final group; focal positions and the padding never,
// [kNever, 0), so that no tile's summary widens for them. Merged, the rows a query tile sees
// from the first part are one prefix, and the raw keys it sees lie in one band of positions that
// ends at its own.
struct DgaLayoutParams {
  const void* k = nullptr;  // [B, Hkv, len, D]
  Strides k_st;
  const void* v = nullptr;
  Strides v_st;
  const int64_t* order = nullptr;  // contiguous [B, Hkv, len]
  void* keys = nullptr;            // [B, Hkv, split, D]
  void* values = nullptr;
  Strides out_st;
  int split = 0;          // at least focal + groups
  int32_t* lo = nullptr;  // contiguous [B, Hkv, split + len]
  int32_t* hi = nullptr;
  // Optional, zeroed by the caller: gets the (query position, row) pairs the layout keeps, Σ over
  // rows of max(0, min(hi, len) - lo), per kv head (DGA's cost without a pass over lo / hi).
  unsigned long long* seen_pairs = nullptr;
  int batch = 1, kv_heads = 1, len = 1, head_dim = 128, focal = 0, groups = 0, m = 1;
};
void dga_layout(const DgaLayoutParams& p, Dtype dtype, cudaStream_t stream);

int decode_splits(const DecodeParams& p);  // key blocks per (batch, kv head)
size_t decode_workspace_bytes(const DecodeParams& p);
void decode_attention(const DecodeParams& p, Dtype dtype, cudaStream_t stream);

}  // namespace lcb::attn::cuda
