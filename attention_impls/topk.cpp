// topk:k=K — exact top-k: per query (and query head) the K largest causal logits are kept, the
// rest masked. A query with at most K causal keys is dense.
// Fast path on CUDA (head dim 128, prefill): a radix select over the scores recomputed on the
// tensor cores, then the interval kernel with per-row score bounds (fast::topk_attention).
#include "attention_impls/fast.h"
#include "attention_impls/full_cache.h"
#include "attention_impls/reference.h"
#include "attention_impls/registry.h"

namespace lcb::attn {
namespace {

class TopK final : public Attention {
 public:
  explicit TopK(int64_t k) : k_(k) {}

  std::string family() const override { return "topk"; }
  std::string spec() const override { return "topk:k=" + std::to_string(k_); }

  // Keeps the k largest causal logits of each row; logits [B, Hq, rows, N].
  at::Tensor keep_topk(const at::Tensor& logits, const at::Tensor& causal) const {
    const int64_t n = logits.size(-1);
    if (k_ >= n) return causal;
    const at::Tensor masked = logits.masked_fill(causal.logical_not(), -INFINITY);
    const at::Tensor idx = std::get<1>(masked.topk(k_, -1));
    const at::Tensor keep = at::zeros(logits.sizes(), logits.options().dtype(at::kBool)).scatter_(-1, idx, true);
    return keep.logical_and(causal);  // rows with fewer than k causal keys picked some masked ones
  }

  Output forward(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const Options& opts,
                 std::unique_ptr<Cache>* cache) const override {
    check_qkv(q, k, v, "topk");
    const Shape s = Shape::of(q, k);
    const ref::MaskFn mask = [&](int64_t r0, int64_t rows, const at::Tensor& logits) {
      return keep_topk(logits, ref::causal_mask(s.q_len, s.kv_len, r0, rows, q.device()).expand_as(logits));
    };
    if (cache) *cache = std::make_unique<FullCache>(k, v);
    if (fast::reason_not_topk(q, k, v, opts).empty()) {
      Output o;
      o.out = fast::topk_attention(q, k, v, k_, ref::softmax_scale(opts, s.head_dim));
      if (o.out.defined()) {
        o.backend = "cuda-topk";
        o.cost = *cost(s);
        if (opts.want_recall) {
          o.mass_recall = ref::mass_recall(q, k, ref::softmax_scale(opts, s.head_dim), opts.chunk_rows, mask);
        }
        return o;
      }
    }
    return ref::masked_forward(q, k, v, opts, mask, *cost(s));
  }

  at::Tensor decode(const at::Tensor& q1, const at::Tensor& k1, const at::Tensor& v1, Cache& cache,
                    const Options& opts) const override {
    return decode_with_full_cache(*this, q1, k1, v1, cache, opts);
  }

  std::optional<Cost> cost(const Shape& s) const override {
    Cost c;
    int64_t per_head = 0;
    for (int64_t i = 0; i < s.q_len; ++i) per_head += std::min(k_, s.kv_len - s.q_len + i + 1);
    c.kept_pairs = s.batch * s.q_heads * per_head;
    ref::finish_cost(c, s, s.batch * s.kv_heads * s.kv_len);
    // Scoring every causal key (q·k) is the selection's price.
    c.selection_flops = 2.0 * s.head_dim * static_cast<double>(c.causal_pairs);
    return c;
  }

  double requested_density(int64_t L) const override {
    return std::min(1.0, static_cast<double>(k_) / static_cast<double>(L));
  }

 private:
  int64_t k_;
};

}  // namespace

RegistryEntry topk_entry() {
  RegistryEntry e;
  e.family = "topk";
  e.summary = "exact top-k: each query keeps its k largest causal logits";
  e.params = {ParamDef::integer("k", 2048, 1, INT64_MAX, "keys kept per query")};
  e.examples = {"topk:k=2048", "topk:k=8"};
  e.make = [](const ParsedSpec& p) { return std::make_unique<TopK>(p.params.integer("k")); };
  return e;
}

}  // namespace lcb::attn
