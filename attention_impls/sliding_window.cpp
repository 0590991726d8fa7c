// swa:window=w,sink=s — key j visible to the query at position i iff i - w < j <= i, or j < s.
// Fast path on CUDA: the visibility-interval kernel (key j visible for j <= p < j + w, sinks
// forever) for the prefill, the split-KV decode kernel over the window cache.
#include "attention_impls/fast.h"
#include "attention_impls/full_cache.h"
#include "attention_impls/reference.h"
#include "attention_impls/registry.h"

#include <algorithm>
#include <numeric>
#include <vector>

namespace lcb::attn {
namespace {

// Keys kept for decoding: the sinks and the last w - 1 tokens (plus the one being added).
class WindowCache final : public Cache {
 public:
  int64_t length() const override { return seen; }
  int64_t bytes() const override { return 2 * k.numel() * static_cast<int64_t>(k.element_size()); }
  at::Tensor k, v;  // [B, Hkv, n, D]
  at::Tensor pos;   // [n] absolute positions, ascending
  std::vector<int64_t> host_pos;  // the same positions on the host (eviction needs no device sync)
  int64_t seen = 0;
};

class SlidingWindow final : public Attention {
 public:
  SlidingWindow(int64_t window, int64_t sink) : w_(window), s_(sink) {}

  std::string family() const override { return "swa"; }
  std::string spec() const override { return "swa:window=" + std::to_string(w_) + ",sink=" + std::to_string(s_); }

  // Visible keys among `key_pos` [N] for query positions `pos` [rows] -> [rows, N].
  at::Tensor visible(const at::Tensor& pos, const at::Tensor& key_pos) const {
    const at::Tensor p = pos.unsqueeze(1), j = key_pos.unsqueeze(0);
    return j.le(p).logical_and(j.gt(p - w_).logical_or(j.lt(s_)));
  }

  Output forward(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const Options& opts,
                 std::unique_ptr<Cache>* cache) const override {
    check_qkv(q, k, v, "swa");
    const Shape s = Shape::of(q, k);
    const at::Tensor key_pos = at::arange(s.kv_len, at::TensorOptions().dtype(at::kLong).device(q.device()));
    const ref::MaskFn mask = [&](int64_t r0, int64_t rows, const at::Tensor&) {
      return visible(ref::query_positions(s.q_len, s.kv_len, r0, rows, q.device()), key_pos);
    };
    if (cache) {
      auto c = std::make_unique<WindowCache>();
      c->k = k;
      c->v = v;
      c->pos = key_pos;
      c->host_pos.resize(s.kv_len);
      std::iota(c->host_pos.begin(), c->host_pos.end(), int64_t{0});
      c->seen = s.kv_len;
      evict(*c);
      *cache = std::move(c);
    }
    if (fast::reason_not(q, k, v, opts).empty()) {
      Output o;
      o.backend = "cuda-interval";
      const at::Tensor lo = key_pos;
      const at::Tensor hi = at::where(key_pos.lt(s_), at::full({}, ref::kNever, key_pos.options()),
                                       key_pos + std::min<int64_t>(w_, ref::kNever / 2));
      o.out = fast::interval_attention(q, k, v, lo, hi, s.kv_len - s.q_len, ref::softmax_scale(opts, s.head_dim));
      o.cost = *cost(s);
      if (opts.want_recall) o.mass_recall = ref::mass_recall(q, k, ref::softmax_scale(opts, s.head_dim), opts.chunk_rows, mask);
      return o;
    }
    return ref::masked_forward(q, k, v, opts, mask, *cost(s));
  }

  at::Tensor decode(const at::Tensor& q1, const at::Tensor& k1, const at::Tensor& v1, Cache& cache,
                    const Options& opts) const override {
    check_decode_step(q1, k1, v1, "swa");
    auto& c = cache_as<WindowCache>(cache, "swa");
    const int64_t p = c.seen;
    c.k = at::cat({c.k, k1}, 2);
    c.v = at::cat({c.v, v1}, 2);
    c.pos = at::cat({c.pos, at::full({1}, p, c.pos.options())});
    c.host_pos.push_back(p);
    c.seen += 1;
    // After the last eviction every key left is visible to the query at `p`.
    if (fast::reason_not_decode(q1, c.k, c.v, opts).empty()) {
      const at::Tensor out = fast::decode_attention(q1, {{c.k, c.v}}, ref::softmax_scale(opts, q1.size(3)));
      evict(c);
      return out;
    }
    const at::Tensor qpos = at::full({1}, p, c.pos.options());
    const at::Tensor out = ref::masked_attention(q1, c.k, c.v, ref::softmax_scale(opts, q1.size(3)), 1,
                                                 [&](int64_t, int64_t, const at::Tensor&) { return visible(qpos, c.pos); });
    evict(c);
    return out;
  }

  std::optional<Cost> cost(const Shape& s) const override {
    Cost c;
    int64_t per_head = 0;
    for (int64_t i = 0; i < s.q_len; ++i) {
      const int64_t p = s.kv_len - s.q_len + i;
      per_head += std::min(w_, p + 1) + std::max<int64_t>(0, std::min(s_, p - w_ + 1));
    }
    c.kept_pairs = s.batch * s.q_heads * per_head;
    ref::finish_cost(c, s, s.batch * s.kv_heads * std::min(s.kv_len, w_ + s.q_len - 1 + s_));
    return c;
  }

  double requested_density(int64_t L) const override {
    return std::min(1.0, static_cast<double>(w_ + s_) / static_cast<double>(L));
  }

 private:
  // Drops keys no later query can see: the next query sits at position `seen`. Positions are
  // ascending, so the kept ones are a prefix (sinks, < s) and a suffix (> seen - w).
  void evict(WindowCache& c) const {
    const auto& hp = c.host_pos;
    const int64_t n = static_cast<int64_t>(hp.size());
    const int64_t sinks = std::lower_bound(hp.begin(), hp.end(), s_) - hp.begin();
    const int64_t window = std::upper_bound(hp.begin(), hp.end(), c.seen - w_) - hp.begin();
    if (window <= sinks) return;  // nothing between the sinks and the window
    auto keep = [&](const at::Tensor& x, int64_t dim) {
      return at::cat({x.narrow(dim, 0, sinks), x.narrow(dim, window, n - window)}, dim);
    };
    c.k = keep(c.k, 2);
    c.v = keep(c.v, 2);
    c.pos = keep(c.pos, 0);
    c.host_pos.erase(c.host_pos.begin() + sinks, c.host_pos.begin() + window);
  }

  int64_t w_, s_;
};

}  // namespace

RegistryEntry sliding_window_entry() {
  RegistryEntry e;
  e.family = "swa";
  e.summary = "sliding window of w keys (the query's own included), plus s attention-sink tokens";
  e.params = {ParamDef::integer("window", 4096, 1, INT64_MAX, "keys per query, the query's own included"),
              ParamDef::integer("sink", 0, 0, INT64_MAX, "first tokens every query sees")};
  e.examples = {"swa:window=4096,sink=4", "swa:window=64", "swa:window=16,sink=4"};
  e.make = [](const ParsedSpec& p) {
    return std::make_unique<SlidingWindow>(p.params.integer("window"), p.params.integer("sink"));
  };
  return e;
}

}  // namespace lcb::attn
