// topk_block:block=b,k=K — block-sparse top-k. Keys are cut into blocks of b; each block is
// summarised by its per-dimension min and max (as in Quest), which bound q·k from above:
// ub(q, blk) = Σ_d max(q_d·min_d, q_d·max_d). Per query block (b consecutive query positions) and
// query head, the K blocks with the highest bound (maximum over the block's queries) among the
// blocks strictly between the first and the diagonal one are attended, plus the first block
// and the diagonal block, exactly and causally. In decode the query block holds one query.
// Fast path on CUDA (block = 64): the same selection by a kernel (bounds on tensor cores with
// exact products, a radix top-k per query block), then the interval kernel with causal intervals
// and the selected blocks (tiles not selected are skipped); in decode, a bounds kernel, a top-k
// kernel writing the rows to gather, and the decode kernel.
#include "attention_impls/topk_block.h"

#include "attention_impls/fast.h"
#include "attention_impls/full_cache.h"
#include "attention_impls/reference.h"
#include "attention_impls/registry.h"

namespace lcb::attn {
namespace {

// Per block of `block` keys the elementwise min and max, [B, Hkv, blocks, D] in k's dtype (exact).
std::pair<at::Tensor, at::Tensor> block_summaries(const at::Tensor& k, int64_t block) {
  const int64_t B = k.size(0), H = k.size(1), L = k.size(2), D = k.size(3);
  const int64_t nb = (L + block - 1) / block, pad = nb * block - L;
  return {at::constant_pad_nd(k, {0, 0, 0, pad}, INFINITY).view({B, H, nb, block, D}).amin(3),
          at::constant_pad_nd(k, {0, 0, 0, pad}, -INFINITY).view({B, H, nb, block, D}).amax(3)};
}

// The fast decode's cache: every key, plus per block the elementwise min and max of the keys
// (the summaries the selection bounds use), kept current as tokens are appended. The summaries
// live in storage that doubles when full, like the keys.
class BlockSummaryCache final : public FullCache {
 public:
  BlockSummaryCache(at::Tensor k0, at::Tensor v0, int64_t block, std::pair<at::Tensor, at::Tensor> summaries)
      : FullCache(std::move(k0), std::move(v0)), block_(block) {
    kmin_store_ = std::move(summaries.first);
    kmax_store_ = std::move(summaries.second);
    blocks_ = kmin_store_.size(2);
  }
  int64_t bytes() const override {
    return FullCache::bytes() + 2 * kmin().numel() * static_cast<int64_t>(kmin_store_.element_size());
  }
  // Appends one token. With update_summaries its block's min / max are updated here (ATen);
  // otherwise the caller's kernel does it (fast::topk_block_decode_rows).
  void append_token(const at::Tensor& k1, const at::Tensor& v1, bool update_summaries) {
    const int64_t p = length(), blk = p / block_;
    append(k1, v1);
    if (blk >= kmin_store_.size(2)) {  // grow the summaries' storage
      auto grow = [&](const at::Tensor& old) {
        at::Tensor t = at::empty({old.size(0), old.size(1), 2 * (blk + 1), old.size(3)}, old.options());
        t.narrow(2, 0, blocks_).copy_(old.narrow(2, 0, blocks_));
        return t;
      };
      kmin_store_ = grow(kmin_store_);
      kmax_store_ = grow(kmax_store_);
    }
    if (update_summaries) {
      at::Tensor lo = kmin_store_.narrow(2, blk, 1), hi = kmax_store_.narrow(2, blk, 1);
      if (p % block_ == 0) {  // a new block starts
        lo.copy_(k1);
        hi.copy_(k1);
      } else {
        lo.copy_(at::minimum(lo, k1));
        hi.copy_(at::maximum(hi, k1));
      }
    }
    blocks_ = blk + 1;
  }
  at::Tensor kmin() const { return kmin_store_.narrow(2, 0, blocks_); }  // [B, Hkv, blocks, D]
  at::Tensor kmax() const { return kmax_store_.narrow(2, 0, blocks_); }
  const at::Tensor& kmin_storage() const { return kmin_store_; }
  const at::Tensor& kmax_storage() const { return kmax_store_; }

 private:
  int64_t block_, blocks_ = 0;
  at::Tensor kmin_store_, kmax_store_;  // contiguous [B, Hkv, capacity, D]
};

class TopKBlock final : public Attention {
 public:
  TopKBlock(int64_t block, int64_t k) : b_(block), k_(k) {}

  std::string family() const override { return "topk_block"; }
  std::string spec() const override { return "topk_block:block=" + std::to_string(b_) + ",k=" + std::to_string(k_); }

  // Selected key blocks per query block: [B, Hq, nb, nb] bool (query block, key block).
  at::Tensor select_blocks(const at::Tensor& q, const at::Tensor& k, int64_t chunk_rows) const {
    const auto cdt = ref::compute_dtype(q.scalar_type());
    const int64_t B = q.size(0), Hq = q.size(1), lq = q.size(2), lk = k.size(2), D = k.size(3);
    const int64_t nb = (lk + b_ - 1) / b_, pad = nb * b_ - lk;
    const int64_t groups = Hq / k.size(1);
    const at::Tensor kf = k.to(cdt);
    const at::Tensor kmin = ref::repeat_kv(
        at::constant_pad_nd(kf, {0, 0, 0, pad}, INFINITY).view({B, k.size(1), nb, b_, D}).amin(3), groups);
    const at::Tensor kmax = ref::repeat_kv(
        at::constant_pad_nd(kf, {0, 0, 0, pad}, -INFINITY).view({B, k.size(1), nb, b_, D}).amax(3), groups);
    at::Tensor scores = at::full({B, Hq, nb, nb}, -INFINITY, kf.options());
    for (int64_t r0 = 0; r0 < lq; r0 += chunk_rows) {
      const int64_t rows = std::min(chunk_rows, lq - r0);
      const at::Tensor qc = q.narrow(2, r0, rows).to(cdt);
      const at::Tensor ub = at::matmul(qc.clamp_min(0), kmax.transpose(-2, -1)) +
                            at::matmul(qc.clamp_max(0), kmin.transpose(-2, -1));  // [B, Hq, rows, nb]
      const at::Tensor qblock = ref::query_positions(lq, lk, r0, rows, q.device()).div(b_, "floor");
      scores.scatter_reduce_(2, qblock.view({1, 1, rows, 1}).expand({B, Hq, rows, nb}), ub, "amax");
    }
    const at::Tensor kb = at::arange(nb, at::TensorOptions().dtype(at::kLong).device(q.device()));
    const at::Tensor qb = kb.unsqueeze(1);
    const at::Tensor candidate = kb.unsqueeze(0).ge(1).logical_and(kb.unsqueeze(0).lt(qb));  // [nb, nb]
    at::Tensor sel = candidate.expand({B, Hq, nb, nb}).clone();
    if (k_ < nb) {
      const at::Tensor top = std::get<1>(scores.masked_fill(candidate.logical_not(), -INFINITY).topk(k_, -1));
      sel = at::zeros_like(sel).scatter_(-1, top, true).logical_and(candidate);
    }
    return sel.logical_or(kb.unsqueeze(0).eq(0)).logical_or(kb.unsqueeze(0).eq(qb));
  }

  Output forward(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const Options& opts,
                 std::unique_ptr<Cache>* cache) const override {
    check_qkv(q, k, v, "topk_block");
    const Shape s = Shape::of(q, k);
    if (uses_kernel(q, k, v, opts)) {
      at::NoGradGuard no_grad;
      auto summaries = block_summaries(k, b_);
      const at::Tensor sel = fast::topk_block_select(q, summaries.first, summaries.second, k_);
      if (cache) *cache = std::make_unique<BlockSummaryCache>(k, v, b_, std::move(summaries));
      Output o;
      o.backend = "cuda-interval";
      const at::Tensor lo = at::arange(s.kv_len, at::TensorOptions().dtype(at::kLong).device(q.device()));
      const double scale = ref::softmax_scale(opts, s.head_dim);
      o.out = fast::interval_attention(q, k, v, lo, at::full({}, ref::kNever, lo.options()).expand({s.kv_len}), 0, scale, sel);
      o.cost = *cost(s);
      if (opts.want_recall) o.mass_recall = ref::mass_recall(q, k, scale, opts.chunk_rows, mask_of(sel, s, q.device()));
      return o;
    }
    at::Tensor sel;
    {
      at::NoGradGuard no_grad;
      sel = select_blocks(q.detach(), k.detach(), opts.chunk_rows);
    }
    if (cache) *cache = std::make_unique<FullCache>(k, v);
    return ref::masked_forward(q, k, v, opts, mask_of(sel, s, q.device()), *cost(s));
  }

  // The selection alone: the kernel's where forward() would use it, else the reference's.
  at::Tensor plan(const at::Tensor& q, const at::Tensor& k, const Options& opts) const {
    at::NoGradGuard no_grad;
    if (uses_kernel(q, k, k, opts)) {  // the selection reads no values
      const auto summaries = block_summaries(k, b_);
      return fast::topk_block_select(q, summaries.first, summaries.second, k_);
    }
    return select_blocks(q.detach(), k.detach(), opts.chunk_rows);
  }

  bool uses_kernel(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const Options& opts) const {
    return b_ == fast::kSelectBlock && q.size(2) == k.size(2) && fast::reason_not(q, k, v, opts).empty() &&
           fast::reason_not_select(q, (k.size(2) + b_ - 1) / b_).empty();
  }

  // The per-key mask of a block selection, for a chunk of query rows.
  ref::MaskFn mask_of(const at::Tensor& sel, const Shape& s, const at::Device& device) const {
    return [sel, s, device, b = b_](int64_t r0, int64_t rows, const at::Tensor&) {
      const at::Tensor pos = ref::query_positions(s.q_len, s.kv_len, r0, rows, device);
      const at::Tensor per_block = sel.index_select(2, pos.div(b, "floor")).to(at::kBool);  // [B, Hq, rows, nb]
      const at::Tensor per_key = per_block.repeat_interleave(b, -1).narrow(-1, 0, s.kv_len);
      return per_key.logical_and(ref::causal_mask(s.q_len, s.kv_len, r0, rows, device));
    };
  }

  // The decode query forms its own query block; selection uses it alone.
  at::Tensor decode(const at::Tensor& q1, const at::Tensor& k1, const at::Tensor& v1, Cache& cache,
                    const Options& opts) const override {
    auto* bc = dynamic_cast<BlockSummaryCache*>(&cache);
    if (bc == nullptr) return decode_with_full_cache(*this, q1, k1, v1, cache, opts);
    check_decode_step(q1, k1, v1, "topk_block");
    if (!fast::reason_not_decode(q1, k1, v1, opts).empty()) {  // the reference over the same keys
      bc->append_token(k1, v1, /*update_summaries=*/true);
      return forward(q1, bc->k, bc->v, opts, nullptr).out;
    }
    // The kernels: bounds of every candidate block, top-k, the rows to gather (the new key folded
    // into its block's summary on the way), then the decode kernel over those rows.
    at::NoGradGuard no_grad;
    bc->append_token(k1, v1, /*update_summaries=*/false);
    const int64_t pos = bc->length() - 1, cap = bc->k_storage().size(2);
    const at::Tensor rows = fast::topk_block_decode_rows(q1, k1, bc->kmin_storage(), bc->kmax_storage(), pos, k_, cap);
    return fast::decode_attention_rows(q1, bc->k_storage(), bc->v_storage(), rows, ref::softmax_scale(opts, q1.size(3)));
  }

  std::optional<Cost> cost(const Shape& s) const override {
    Cost c;
    int64_t per_head = 0;
    for (int64_t i = 0; i < s.q_len; ++i) {
      const int64_t p = s.kv_len - s.q_len + i, qb = p / b_;
      const int64_t off_diagonal = (qb >= 1 ? 1 : 0) + std::min(k_, std::max<int64_t>(0, qb - 1));
      per_head += off_diagonal * b_ + (p - qb * b_ + 1);
    }
    c.kept_pairs = s.batch * s.q_heads * per_head;
    ref::finish_cost(c, s, s.batch * s.kv_heads * s.kv_len);
    const double nb = static_cast<double>((s.kv_len + b_ - 1) / b_);
    c.selection_flops = 4.0 * s.head_dim * nb * s.batch * s.q_heads * s.q_len +  // bounds for every block
                        2.0 * s.head_dim * s.batch * s.kv_heads * s.kv_len;     // min/max summaries
    return c;
  }

  double requested_density(int64_t L) const override {
    return std::min(1.0, static_cast<double>((k_ + 2) * b_) / static_cast<double>(L));
  }

 private:
  int64_t b_, k_;
};

}  // namespace

at::Tensor topk_block_plan(const Attention& impl, const at::Tensor& q, const at::Tensor& k, const Options& opts) {
  const auto* t = dynamic_cast<const TopKBlock*>(&impl);
  if (t == nullptr) throw std::invalid_argument("topk_block_plan: " + impl.spec() + " is not a topk_block implementation");
  return t->plan(q, k, opts);
}

RegistryEntry topk_block_entry() {
  RegistryEntry e;
  e.family = "topk_block";
  e.summary = "block top-k: per query block the k key blocks with the best min/max bound, plus first and diagonal";
  e.params = {ParamDef::integer("block", 64, 1, INT64_MAX, "keys per block (and queries per query block)"),
              ParamDef::integer("k", 16, 0, INT64_MAX, "selected blocks besides the first and the diagonal")};
  e.examples = {"topk_block:block=64,k=32", "topk_block:block=16,k=2"};
  e.make = [](const ParsedSpec& p) {
    return std::make_unique<TopKBlock>(p.params.integer("block"), p.params.integer("k"));
  };
  return e;
}

}  // namespace lcb::attn
