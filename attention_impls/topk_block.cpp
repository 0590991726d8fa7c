// topk_block:block=b,k=K — block-sparse top-k. Keys are cut into blocks of b; each block is
// summarised by its per-dimension min and max (as in Quest), which bound q·k from above:
// ub(q, blk) = Σ_d max(q_d·min_d, q_d·max_d). Per query block (b consecutive query positions) and
// query head, the K blocks with the highest bound (maximum over the block's queries) among the
// blocks strictly between the first and the diagonal one are attended, plus the first block
// and the diagonal block, exactly and causally. In decode the query block holds one query.
// Fast path on CUDA (block = 64, prefill): the same selection, then the interval kernel with
// causal intervals and the selected blocks (tiles not selected are skipped).
#include "attention_impls/fast.h"
#include "attention_impls/full_cache.h"
#include "attention_impls/reference.h"
#include "attention_impls/registry.h"

namespace lcb::attn {
namespace {

// The fast decode's cache: every key, plus per 64-key block the elementwise min and max of the
// keys (the summaries the selection bounds use), kept up to date as tokens are appended.
class BlockSummaryCache final : public FullCache {
 public:
  BlockSummaryCache(at::Tensor k0, at::Tensor v0, int64_t block) : FullCache(std::move(k0), std::move(v0)), block_(block) {
    const int64_t L = k.size(2), nb = (L + block - 1) / block, pad = nb * block - L;
    const int64_t B = k.size(0), H = k.size(1), D = k.size(3);
    kmin = at::constant_pad_nd(k, {0, 0, 0, pad}, INFINITY).view({B, H, nb, block, D}).amin(3);
    kmax = at::constant_pad_nd(k, {0, 0, 0, pad}, -INFINITY).view({B, H, nb, block, D}).amax(3);
  }
  int64_t bytes() const override {
    return FullCache::bytes() + 2 * kmin.numel() * static_cast<int64_t>(kmin.element_size());
  }
  void append_token(const at::Tensor& k1, const at::Tensor& v1) {
    const int64_t p = length();
    append(k1, v1);
    if (p % block_ == 0) {  // a new block starts
      kmin = at::cat({kmin, k1}, 2);
      kmax = at::cat({kmax, k1}, 2);
    } else {
      at::Tensor lo = kmin.narrow(2, p / block_, 1), hi = kmax.narrow(2, p / block_, 1);
      lo.copy_(at::minimum(lo, k1));
      hi.copy_(at::maximum(hi, k1));
    }
  }
  at::Tensor kmin, kmax;  // [B, Hkv, blocks, D], input dtype (min and max are exact)

 private:
  int64_t block_;
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
    at::Tensor sel;
    {
      at::NoGradGuard no_grad;
      sel = select_blocks(q.detach(), k.detach(), opts.chunk_rows);
    }
    const ref::MaskFn mask = [&](int64_t r0, int64_t rows, const at::Tensor&) {
      const at::Tensor pos = ref::query_positions(s.q_len, s.kv_len, r0, rows, q.device());
      const at::Tensor per_block = sel.index_select(2, pos.div(b_, "floor"));  // [B, Hq, rows, nb]
      const at::Tensor per_key = per_block.repeat_interleave(b_, -1).narrow(-1, 0, s.kv_len);
      return per_key.logical_and(ref::causal_mask(s.q_len, s.kv_len, r0, rows, q.device()));
    };
    const bool fast_path = b_ == fast::kSelectBlock && s.q_len == s.kv_len && fast::reason_not(q, k, v, opts).empty();
    if (cache) {
      if (fast_path) {
        *cache = std::make_unique<BlockSummaryCache>(k, v, b_);
      } else {
        *cache = std::make_unique<FullCache>(k, v);
      }
    }
    if (fast_path) {
      Output o;
      o.backend = "cuda-interval";
      const at::Tensor lo = at::arange(s.kv_len, at::TensorOptions().dtype(at::kLong).device(q.device()));
      const double scale = ref::softmax_scale(opts, s.head_dim);
      o.out = fast::interval_attention(q, k, v, lo, at::full({}, ref::kNever, lo.options()).expand({s.kv_len}), 0, scale, sel);
      o.cost = *cost(s);
      if (opts.want_recall) o.mass_recall = ref::mass_recall(q, k, scale, opts.chunk_rows, mask);
      return o;
    }
    return ref::masked_forward(q, k, v, opts, mask, *cost(s));
  }

  // The decode query forms its own query block; selection uses it alone.
  at::Tensor decode(const at::Tensor& q1, const at::Tensor& k1, const at::Tensor& v1, Cache& cache,
                    const Options& opts) const override {
    auto* bc = dynamic_cast<BlockSummaryCache*>(&cache);
    if (bc == nullptr || !fast::reason_not_decode(q1, k1, v1, opts).empty()) {
      if (bc != nullptr) {  // the reference over the same keys; keep the summaries current
        check_decode_step(q1, k1, v1, "topk_block");
        bc->append_token(k1, v1);
        return forward(q1, bc->k, bc->v, opts, nullptr).out;
      }
      return decode_with_full_cache(*this, q1, k1, v1, cache, opts);
    }
    check_decode_step(q1, k1, v1, "topk_block");
    bc->append_token(k1, v1);
    return decode_fast(q1, *bc, ref::softmax_scale(opts, q1.size(3)));
  }

  // Selection as select_blocks() does for one query (bounds in float32 from the kept summaries),
  // then the decode kernel over the selected rows, gathered on the fly.
  at::Tensor decode_fast(const at::Tensor& q1, BlockSummaryCache& c, double scale) const {
    at::NoGradGuard no_grad;
    const int64_t B = q1.size(0), Hq = q1.size(1), D = q1.size(3), Hkv = c.k.size(1), Gq = Hq / Hkv;
    const int64_t L = c.length(), p = L - 1, qb = p / b_, cap = c.k_storage().size(2);
    const auto lopt = at::TensorOptions().dtype(at::kLong).device(q1.device());
    at::Tensor blocks;  // [B, Hq, n] full blocks attended besides the diagonal one
    if (qb >= 1) {
      blocks = at::zeros({B, Hq, 1}, lopt);  // the first block
      const int64_t candidates = qb - 1, chosen = std::min(k_, candidates);
      if (chosen > 0) {
        const at::Tensor qf = q1.to(at::kFloat).reshape({B, Hkv, Gq, D});
        const at::Tensor kmax = c.kmax.narrow(2, 1, candidates).to(at::kFloat);
        const at::Tensor kmin = c.kmin.narrow(2, 1, candidates).to(at::kFloat);
        const at::Tensor ub = at::matmul(qf.clamp_min(0), kmax.transpose(-2, -1)) +
                              at::matmul(qf.clamp_max(0), kmin.transpose(-2, -1));  // [B, Hkv, Gq, candidates]
        const at::Tensor top = std::get<1>(ub.reshape({B, Hq, candidates}).topk(chosen, -1)) + 1;
        blocks = at::cat({blocks, top}, -1);
      }
    }
    const at::Tensor within = at::arange(b_, lopt);
    at::Tensor rows = at::arange(qb * b_, L, lopt).expand({B, Hq, L - qb * b_});  // the diagonal block
    if (blocks.defined()) {
      rows = at::cat({(blocks.unsqueeze(-1) * b_ + within).reshape({B, Hq, -1}), rows}, -1);
    }
    const at::Tensor head_rows = (at::arange(Hq, lopt).div(Gq, "floor") * cap).view({1, Hq, 1});
    return fast::decode_attention_rows(q1, c.k_storage(), c.v_storage(), rows + head_rows, scale);
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
