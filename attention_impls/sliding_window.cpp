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

// The fast path's window cache: sinks in their own slots, the window in a ring (position
// j >= s in slot j % w), so a decode step writes one row and the kernel reads the rest in place
// (sinks plus at most two arcs of the ring, and the new token: four segments). The decode kernel
// stores the new token's row itself.
class RingWindowCache final : public Cache {
 public:
  int64_t length() const override { return seen; }
  // Rows the next query can see (what the reference cache keeps).
  int64_t bytes() const override { return (std::min(s, seen) + window_rows(seen)) * row_bytes; }
  // Ring positions before p that the query at position p sees: [max(s, p - w + 1), p).
  int64_t window_rows(int64_t p) const { return std::max<int64_t>(0, p - std::max(s, p - w + 1)); }

  // The storage rows of position p: its sink slot, or its ring slot (which held p - w).
  std::pair<at::Tensor, at::Tensor> slot(int64_t p) const {
    return p < s ? std::make_pair(sink_k.narrow(2, p, 1), sink_v.narrow(2, p, 1))
                 : std::make_pair(ring_k.narrow(2, p % w, 1), ring_v.narrow(2, p % w, 1));
  }
  // The rows of positions before p that the query at position p sees, as (k, v) segments: the
  // sinks and at most two arcs of the ring, none of them slot(p).
  std::vector<std::pair<at::Tensor, at::Tensor>> rows_before(int64_t p) const {
    std::vector<std::pair<at::Tensor, at::Tensor>> out;
    const int64_t n_sink = std::min(s, p);
    if (n_sink > 0) out.emplace_back(sink_k.narrow(2, 0, n_sink), sink_v.narrow(2, 0, n_sink));
    const int64_t count = window_rows(p);
    if (count > 0) {
      const int64_t start = (p - count) % w, head = std::min(count, w - start);
      out.emplace_back(ring_k.narrow(2, start, head), ring_v.narrow(2, start, head));
      if (count > head) out.emplace_back(ring_k.narrow(2, 0, count - head), ring_v.narrow(2, 0, count - head));
    }
    return out;
  }

  at::Tensor sink_k, sink_v;  // [B, Hkv, s, D]
  at::Tensor ring_k, ring_v;  // [B, Hkv, w, D]
  int64_t s = 0, w = 1, seen = 0, row_bytes = 0;
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
    if (cache && use_ring(q, k, v, opts)) {
      *cache = make_ring(k, v);
    } else if (cache) {
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
    if (auto* ring = dynamic_cast<RingWindowCache*>(&cache)) {
      const double scale = ref::softmax_scale(opts, q1.size(3));
      const int64_t p = ring->seen;
      const auto [k_slot, v_slot] = ring->slot(p);
      const auto segs = ring->rows_before(p);
      if (fast::reason_not_decode(q1, k1, v1, opts).empty()) {  // one launch attends and stores the token
        const fast::DecodeStore store{k1, v1, k_slot, v_slot};
        const at::Tensor out = fast::decode_attention(q1, segs, scale, nullptr, &store);
        ring->seen += 1;
        return out;
      }
      // Reference math over the same rows (all visible).
      k_slot.copy_(k1);
      v_slot.copy_(v1);
      ring->seen += 1;
      std::vector<at::Tensor> ks, vs;
      for (const auto& [sk, sv] : segs) {
        ks.push_back(sk);
        vs.push_back(sv);
      }
      ks.push_back(k1);
      vs.push_back(v1);
      return ref::masked_attention(q1, at::cat(ks, 2), at::cat(vs, 2), scale, 1,
                                   [](int64_t, int64_t, const at::Tensor& logits) { return at::ones_like(logits, at::kBool); });
    }
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
  // The ring cache needs the kernels and bounded sink and window slots.
  bool use_ring(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const Options& opts) const {
    return fast::reason_not_decode(q, k, v, opts).empty() && s_ <= (1 << 16) && w_ <= (1 << 17);
  }

  std::unique_ptr<RingWindowCache> make_ring(const at::Tensor& k, const at::Tensor& v) const {
    auto c = std::make_unique<RingWindowCache>();
    const int64_t B = k.size(0), H = k.size(1), L = k.size(2), D = k.size(3);
    c->s = s_;
    c->w = w_;
    c->row_bytes = 2 * B * H * D * static_cast<int64_t>(k.element_size());
    c->sink_k = at::empty({B, H, s_, D}, k.options());
    c->sink_v = at::empty({B, H, s_, D}, v.options());
    c->ring_k = at::empty({B, H, w_, D}, k.options());
    c->ring_v = at::empty({B, H, w_, D}, v.options());
    const int64_t n_sink = std::min(s_, L);
    c->sink_k.narrow(2, 0, n_sink).copy_(k.narrow(2, 0, n_sink));
    c->sink_v.narrow(2, 0, n_sink).copy_(v.narrow(2, 0, n_sink));
    // Positions [max(s, L - w + 1), L) go to slots j % w: at most two contiguous pieces.
    for (int64_t j = std::max(s_, L - w_ + 1); j < L;) {
      const int64_t n = std::min(L - j, w_ - j % w_);
      c->ring_k.narrow(2, j % w_, n).copy_(k.narrow(2, j, n));
      c->ring_v.narrow(2, j % w_, n).copy_(v.narrow(2, j, n));
      j += n;
    }
    c->seen = L;
    return c;
  }

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
