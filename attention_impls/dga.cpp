// dga:m=16,gamma=0.1,samples=64,sample=last|strided — Dynamic Group Attention (Zhang et al.,
// ICML 2025), exactly as DESIGN.md §3 specifies it. Per (batch, kv head):
//   1. importance s_j = Σ_{i∈S, i>=j} softmax_i(q_i·K·scale)_j over sampled queries S and the
//      query heads of the kv head;
//   2. the top ceil(gamma·L) tokens by s are focal;
//   3. the others, in position order, form consecutive groups of m; group g (last position e_g)
//      aggregates k~ = Σ w_j k_j, v~ = Σ w_j v_j, w = softmax(mean-over-heads q_{e_g}·K_g·scale);
//      a final group shorter than m is not aggregated;
//   4-5. attention over [focal ; aggregates ; raw non-focal] with visibility intervals
//      focal [j, ∞), aggregate [e_g, ∞), raw non-focal [j, e_g) (or [j, ∞) in the short group);
//   6. decode: cache = focal + aggregates + raw tail; once the tail holds T = ceil(m / (1-gamma))
//      tokens, its T - m most attended (by the newest query) become focal and the other m one group.
#include "attention_impls/dga.h"
#include "attention_impls/fast.h"
#include "attention_impls/full_cache.h"
#include "attention_impls/reference.h"
#include "attention_impls/registry.h"

#include <cmath>

namespace lcb::attn {
namespace {

// The attention step's CTA shape: up to 8K tokens each 128-row query tile of DGA's layout has
// few, uneven key tiles and 64-row CTAs (two per SM) finish about as soon or sooner; from 16K on
// the persistent 128-row kernel is as fast or faster (BENCHMARKS.md, seventh session: GQA, whole
// prefill, 64- vs 128-row: 4K 0.329 / 0.334 ms, 8K 0.598 / 0.607, 16K 1.52 / 1.51 and 1.46 /
// 1.32, 32K 4.36 / 3.76; MHA 16K 1.81 / 1.70).
int64_t rows_per_cta(int64_t kv_len) { return kv_len <= 8192 ? 64 : 0; }

using ref::kNever;

// Rows idx [B, Hkv, n] of x [B, Hkv, L, D]: [B, Hkv, n, D].
at::Tensor gather_rows(const at::Tensor& x, const at::Tensor& idx) {
  return x.gather(2, idx.unsqueeze(-1).expand({idx.size(0), idx.size(1), idx.size(2), x.size(3)}));
}

// ceil(x) that ignores floating-point noise (0.1 * 30 must give 3, not 4).
int64_t robust_ceil(double x) {
  return static_cast<int64_t>(std::ceil(x - 1e-9));
}

class DgaCache final : public Cache {
 public:
  int64_t length() const override { return seen; }
  int64_t bytes() const override {
    int64_t n = 0;
    for (const GrowingRows* r : {&focal, &agg, &tail}) {
      n += 2 * r->k.numel() * static_cast<int64_t>(r->k.element_size());
    }
    return n;
  }
  // [B, Hkv, n, D] each, in storage that grows in place: the focal tokens (F), the group
  // aggregates (G) and the raw tokens of the unfinished group (R).
  GrowingRows focal, agg, tail;
  int64_t seen = 0;
};

class Dga final : public Attention {
 public:
  Dga(int64_t m, double gamma, int64_t samples, std::string sample)
      : m_(m), gamma_(gamma), samples_(samples), sample_(std::move(sample)) {}

  std::string family() const override { return "dga"; }
  std::string spec() const override {
    return "dga:m=" + std::to_string(m_) + ",gamma=" + format_number(gamma_) + ",samples=" + std::to_string(samples_) +
           ",sample=" + sample_;
  }

  Support supports(const Shape& s, at::ScalarType dtype, at::Device device) const override {
    Support base = common_support(s, dtype, device);
    if (!base.ok) return base;
    if (s.q_len != s.kv_len) {
      return Support::no("dga forward is a prefill: q length (" + std::to_string(s.q_len) + ") must equal kv length (" +
                         std::to_string(s.kv_len) + "); single tokens go through decode()");
    }
    return Support::yes();
  }

  int64_t focal_count(int64_t L) const { return std::min(L, robust_ceil(gamma_ * static_cast<double>(L))); }
  int64_t tail_limit() const { return robust_ceil(static_cast<double>(m_) / (1.0 - gamma_)); }

  // Sampled query positions S (ascending, always containing L - 1), in `dtype` (int64 or int32)
  // on `dev`.
  at::Tensor sampled_positions(int64_t L, at::Device dev, at::ScalarType dtype = at::kLong) const {
    const int64_t n = std::min(samples_, L);
    const auto opt = at::TensorOptions().dtype(at::kLong).device(dev);
    if (sample_ == "last") return at::arange(L - n, L, opt.dtype(dtype));
    return ((at::arange(1, n + 1, opt) * L).div(n, "floor") - 1).to(dtype);  // floor((t+1)·L/n) - 1
  }
  // Σ over the sampled positions of (position + 1): the causal keys they score.
  int64_t sampled_pairs(int64_t L) const {
    const int64_t n = std::min(samples_, L);
    int64_t sum = 0;
    for (int64_t t = 0; t < n; ++t) sum += (sample_ == "last" ? L - n + t : (t + 1) * L / n - 1) + 1;
    return sum;
  }

  // The DGA layout of a prefill: compressed keys/values with intervals [focal ; aggregates ; raw
  // non-focal], and where the raw rows came from. On the CUDA fast path focal and aggregates are
  // merged in order of lo and padded to `split` rows, and the raw rows are k / v themselves (k2 /
  // v2, interval_attention()'s second source): lo / hi then give position j's interval at split + j
  // (never for focal positions).
  struct Layout {
    at::Tensor keys, values;  // [B, Hkv, N, D]
    at::Tensor lo, hi;        // [B, Hkv, N] (fast path: [B, Hkv, split + L])
    at::Tensor k2, v2;        // fast path only: the input's k / v
    int64_t split = 0;
    at::Tensor seen_pairs;    // kernels only: int64 [1], seen_by_key()'s sum, counted by the layout kernel
    at::Tensor nonfocal_pos;  // [B, Hkv, raw]: the position of each raw row
    int64_t focal = 0, groups = 0, raw = 0;
    // Decode cache pieces (the fast path leaves tail_k / tail_v to forward(): rows of k2 / v2 at
    // tail_pos, gathered only when a cache is wanted).
    at::Tensor focal_k, focal_v, agg_k, agg_v, tail_k, tail_v, tail_pos;
  };

  // With `kernels` (the CUDA fast path) the importance, focal split and aggregation run on the GPU
  // kernels and the compressed keys/values stay in the input dtype; otherwise everything is ATen
  // in the compute dtype (the reference).
  Layout build_layout(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, double scale,
                      bool kernels = false) const {
    const auto cdt = ref::compute_dtype(q.scalar_type());
    const int64_t B = q.size(0), Hq = q.size(1), L = q.size(2), D = q.size(3), Hkv = k.size(1), Gq = Hq / Hkv;
    const auto lopt = at::TensorOptions().dtype(at::kLong).device(q.device());

    Layout lay;
    const int64_t F = focal_count(L), R = L - F, G = R / m_, T = R - G * m_;
    lay.focal = F;
    lay.groups = G;
    lay.raw = R;

    // 1-2. Importance from the sampled queries, then the focal set (selection is not differentiated).
    at::Tensor order;  // [B, Hkv, L]: non-focal positions ascending, then focal positions ascending
    if (kernels) {
      at::NoGradGuard no_grad;
      order = fast::dga_order(q.detach(), k.detach(), sampled_positions(L, q.device(), at::kInt), scale, F).second;
    } else {
      at::NoGradGuard no_grad;
      const at::Tensor S = sampled_positions(L, q.device());
      const int64_t ns = S.size(0);
      const at::Tensor arange_l = at::arange(L, lopt);
      // The kv head's query heads share one matmul: [B, Hkv, Gq·|S|, D] x [B, Hkv, D, L].
      const at::Tensor qs = q.detach().index_select(2, S).to(cdt).reshape({B, Hkv, Gq * ns, D});
      const at::Tensor logits = (at::matmul(qs, k.detach().to(cdt).transpose(-2, -1)) * scale).view({B, Hkv, Gq, ns, L});
      const at::Tensor future = arange_l.unsqueeze(0).gt(S.unsqueeze(1));  // [|S|, L]
      const at::Tensor p = at::softmax(logits.masked_fill(future, -INFINITY), -1);
      const at::Tensor importance = p.sum(3).sum(2);  // [B, Hkv, L]
      at::Tensor is_focal = at::zeros({B, Hkv, L}, lopt);
      if (F > 0) is_focal.scatter_(-1, std::get<1>(importance.topk(F, -1)), 1);
      order = at::argsort(is_focal * L + arange_l, /*stable=*/true, -1, /*descending=*/false);
    }
    const at::Tensor nonfocal_pos = order.narrow(-1, 0, R);  // [B, Hkv, R]
    const at::Tensor focal_pos = order.narrow(-1, R, F);     // [B, Hkv, F]
    lay.nonfocal_pos = nonfocal_pos;
    lay.tail_pos = nonfocal_pos.narrow(-1, G * m_, T);  // the short final group: the decode cache's raw tail

    if (kernels) {  // 3-5 on the GPU: aggregates, focal rows, intervals (int32, INT32_MAX: never)
      fast::DgaLayout out = fast::dga_layout(q.detach(), k.detach(), v.detach(), order, F, m_, scale);
      lay.keys = out.keys;
      lay.values = out.values;
      lay.lo = out.lo;
      lay.hi = out.hi;
      lay.k2 = k.detach();
      lay.v2 = v.detach();
      lay.split = out.keys.size(2);
      lay.seen_pairs = out.seen_pairs;
      // Views into the layout (forward() copies them for a decode cache). Focal rows and aggregates
      // come merged in order of lo here; the decode cache attends to both alike, so they go to it
      // as its focal part, and its aggregates start empty.
      lay.focal_k = lay.keys.narrow(2, 0, F + G);
      lay.focal_v = lay.values.narrow(2, 0, F + G);
      lay.agg_k = lay.keys.narrow(2, F + G, 0);
      lay.agg_v = lay.values.narrow(2, F + G, 0);
      return lay;
    }

    // 3. Groups of m consecutive non-focal tokens; weights from the group's last query.
    const at::Tensor grouped = nonfocal_pos.narrow(-1, 0, G * m_).view({B, Hkv, G, m_});
    const at::Tensor ends = grouped.select(-1, m_ - 1);  // [B, Hkv, G]
    std::tie(lay.agg_k, lay.agg_v) = aggregate_reference(q, k, v, grouped, scale);

    // 4-5. Keys and intervals: [focal ; aggregates ; raw non-focal].
    lay.focal_k = gather_rows(k, focal_pos);
    lay.focal_v = gather_rows(v, focal_pos);
    {  // rows gathered in the input dtype, then converted: no full-size float copies of k and v
      const at::Tensor raw_k = gather_rows(k, nonfocal_pos).to(cdt), raw_v = gather_rows(v, nonfocal_pos).to(cdt);
      lay.keys = at::cat({lay.focal_k.to(cdt), lay.agg_k.to(cdt), raw_k}, 2);
      lay.values = at::cat({lay.focal_v.to(cdt), lay.agg_v.to(cdt), raw_v}, 2);
    }
    const at::Tensor never_f = at::full({B, Hkv, F}, kNever, lopt);
    const at::Tensor raw_hi = at::cat({ends.unsqueeze(-1).expand({B, Hkv, G, m_}).reshape({B, Hkv, G * m_}),
                                       at::full({B, Hkv, T}, kNever, lopt)}, -1);
    lay.lo = at::cat({focal_pos, ends, nonfocal_pos}, -1);
    lay.hi = at::cat({never_f, at::full({B, Hkv, G}, kNever, lopt), raw_hi}, -1);

    // 6. Decode cache after prefill: the short final group is the raw tail.
    lay.tail_k = gather_rows(k, lay.tail_pos);
    lay.tail_v = gather_rows(v, lay.tail_pos);
    return lay;
  }

  // Step 3 in ATen, in the compute dtype: {agg_k, agg_v} for groups of positions [B, Hkv, G, m].
  std::pair<at::Tensor, at::Tensor> aggregate_reference(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                                        const at::Tensor& grouped, double scale) const {
    const auto cdt = ref::compute_dtype(q.scalar_type());
    const int64_t B = q.size(0), Hq = q.size(1), L = q.size(2), D = q.size(3), Hkv = k.size(1), Gq = Hq / Hkv;
    const int64_t G = grouped.size(2);
    const at::Tensor ends = grouped.select(-1, m_ - 1);  // [B, Hkv, G]
    const at::Tensor kg = gather_rows(k, grouped.reshape({B, Hkv, G * m_})).to(cdt).view({B, Hkv, G, m_, D});
    const at::Tensor vg = gather_rows(v, grouped.reshape({B, Hkv, G * m_})).to(cdt).view({B, Hkv, G, m_, D});
    // Queries at e_g of every head of the kv head: [B, Hkv, G, Gq, D].
    const at::Tensor q_heads = q.reshape({B, Hkv, Gq, L, D});
    const at::Tensor q_end =
        q_heads.gather(3, ends.unsqueeze(2).unsqueeze(-1).expand({B, Hkv, Gq, G, D})).to(cdt).transpose(2, 3);
    const at::Tensor w = at::softmax(at::matmul(q_end, kg.transpose(-2, -1)).mean(3) * scale, -1);  // [B, Hkv, G, m]
    // Aggregates are stored in the input dtype, as a kernel would store them.
    return {(w.unsqueeze(-1) * kg).sum(3).to(q.scalar_type()), (w.unsqueeze(-1) * vg).sum(3).to(q.scalar_type())};

  }

  Output forward(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const Options& opts,
                 std::unique_ptr<Cache>* cache) const override {
    check_qkv(q, k, v, "dga");
    const Shape s = Shape::of(q, k);
    const Support sup = supports(s, q.scalar_type(), q.device());
    if (!sup.ok) throw std::invalid_argument("dga: " + sup.reason);
    const double scale = ref::softmax_scale(opts, s.head_dim);
    const int64_t groups = s.q_heads / s.kv_heads;
    const bool fast_path = fast::reason_not(q, k, v, opts).empty();
    const Layout lay = build_layout(q, k, v, scale, fast_path);
    // The pairs the layout keeps, summed before the attention is queued: the cost reads them
    // without waiting for it.
    fast::DeferredSum seen_pairs(lay.seen_pairs.defined() ? lay.seen_pairs : seen_by_key(s, lay));

    Output o;
    if (fast_path) {
      o.backend = "cuda-interval";
      o.out = fast::interval_attention(q, lay.keys, lay.values, lay.lo, lay.hi, 0, scale, {}, rows_per_cta(s.kv_len),
                                       lay.k2, lay.v2);
    } else {
      o.backend = "reference";
      o.out = ref::masked_attention(q, lay.keys, lay.values, scale, opts.chunk_rows,
                                    [&](int64_t r0, int64_t rows, const at::Tensor&) {
                                      const at::Tensor pos = ref::query_positions(s.q_len, s.kv_len, r0, rows, q.device());
                                      return ref::interval_mask(lay.lo, lay.hi, pos, groups);
                                    });
    }
    if (opts.want_recall) {
      // Individual visibility of each original token: focal [j, ∞), raw [j, e_g) (∞ in the short group).
      const auto lopt = lay.nonfocal_pos.options();
      const at::Tensor kept_lo = at::arange(s.kv_len, lopt).view({1, 1, s.kv_len}).expand({s.batch, s.kv_heads, s.kv_len});
      // The raw intervals' ends at the non-focal positions (on the fast path the raw intervals are
      // per position already).
      const at::Tensor raw_hi =
          lay.k2.defined() ? lay.hi.narrow(-1, lay.split, s.kv_len).to(at::kLong).gather(-1, lay.nonfocal_pos)
                           : lay.hi.narrow(-1, lay.focal + lay.groups, lay.raw).to(at::kLong);
      const at::Tensor kept_hi = at::full({s.batch, s.kv_heads, s.kv_len}, kNever, lopt).scatter(-1, lay.nonfocal_pos, raw_hi);
      o.mass_recall = ref::mass_recall(q, k, scale, opts.chunk_rows, [&](int64_t r0, int64_t rows, const at::Tensor&) {
        const at::Tensor pos = ref::query_positions(s.q_len, s.kv_len, r0, rows, q.device());
        return ref::interval_mask(kept_lo, kept_hi, pos, groups);
      });
    }
    o.cost = layout_cost(s, lay, seen_pairs.get());
    if (cache) {
      auto c = std::make_unique<DgaCache>();
      // On the fast path focal and aggregates are views into the layout (copies keep only the
      // cache), and the raw tail is gathered here from k / v, where the layout left it.
      auto own = [fast_path](const at::Tensor& t) { return fast_path ? t.clone() : t; };
      c->focal = GrowingRows(own(lay.focal_k), own(lay.focal_v));
      c->agg = GrowingRows(own(lay.agg_k), own(lay.agg_v));
      c->tail = fast_path ? GrowingRows(gather_rows(k, lay.tail_pos), gather_rows(v, lay.tail_pos))
                          : GrowingRows(lay.tail_k, lay.tail_v);
      c->seen = s.kv_len;
      *cache = std::move(c);
    }
    return o;
  }

  // How many query positions see each compressed key: [lo, min(hi, L)).
  static at::Tensor seen_by_key(const Shape& s, const Layout& lay) {
    at::NoGradGuard no_grad;
    return (lay.hi.clamp_max(s.kv_len) - lay.lo).clamp_min(0);
  }

  // Exact pairs from the intervals: `seen_pairs`, seen_by_key()'s sum, per kv head's query heads.
  Cost layout_cost(const Shape& s, const Layout& lay, int64_t seen_pairs) const {
    Cost c;
    c.kept_pairs = seen_pairs * (s.q_heads / s.kv_heads);
    ref::finish_cost(c, s, s.batch * s.kv_heads * (lay.focal + lay.groups + lay.raw));
    const double D = static_cast<double>(s.head_dim);
    // Importance: q·k for each sampled query over its causal keys; groups: q·k of the group's
    // query heads over m keys, then the weighted sums of K and V.
    c.selection_flops = 2.0 * D * static_cast<double>(sampled_pairs(s.kv_len)) * s.batch * s.q_heads +
                        static_cast<double>(lay.groups) * s.batch * (2.0 * D * m_ * s.q_heads + 4.0 * D * m_ * s.kv_heads);
    return c;
  }

  at::Tensor decode(const at::Tensor& q1, const at::Tensor& k1, const at::Tensor& v1, Cache& cache,
                    const Options& opts) const override {
    check_decode_step(q1, k1, v1, "dga");
    auto& c = cache_as<DgaCache>(cache, "dga");
    const int64_t B = q1.size(0), Hq = q1.size(1), D = q1.size(3), Hkv = k1.size(1), Gq = Hq / Hkv;
    const double scale = ref::softmax_scale(opts, D);
    const auto cdt = ref::compute_dtype(q1.scalar_type());
    const int64_t R = c.tail.k.size(2) + 1;  // the tail with the new token
    const bool regroup_now = gamma_ < 1.0 && R >= tail_limit();
    // Everything in the cache is visible to the newest query.
    if (fast::reason_not_decode(q1, k1, v1, opts).empty()) {
      // One launch attends over the cache and the new token and stores the token in the tail.
      const auto [k_slot, v_slot] = c.tail.next_rows(1);
      const fast::DecodeStore store{k1, v1, k_slot, v_slot};
      at::Tensor lse;
      const at::Tensor out = fast::decode_attention(q1, {{c.focal.k, c.focal.v}, {c.agg.k, c.agg.v}, {c.tail.k, c.tail.v}},
                                                    scale, regroup_now ? &lse : nullptr, &store);
      c.tail.commit(1);
      c.seen += 1;
      if (regroup_now) {  // the tail's probabilities, normalised over the whole cache by the kernel's log-sum-exp
        const at::Tensor qf = q1.to(cdt);
        const at::Tensor tail_logits = at::matmul(qf, ref::repeat_kv(c.tail.k.to(cdt), Gq).transpose(-2, -1)) * scale;
        regroup(c, qf, at::exp(tail_logits - lse.view({B, Hq, 1, 1})), scale, B, Hkv, Gq, D);
      }
      return out;
    }
    c.tail.append(k1, v1);
    c.seen += 1;
    const at::Tensor keys = at::cat({c.focal.k, c.agg.k, c.tail.k}, 2).to(cdt);
    const at::Tensor values = at::cat({c.focal.v, c.agg.v, c.tail.v}, 2).to(cdt);
    const at::Tensor logits = at::matmul(q1.to(cdt), ref::repeat_kv(keys, Gq).transpose(-2, -1)) * scale;  // [B, Hq, 1, N]
    const at::Tensor probs = at::softmax(logits, -1);
    const at::Tensor out = at::matmul(probs, ref::repeat_kv(values, Gq)).to(q1.scalar_type());
    if (regroup_now) regroup(c, q1.to(cdt), probs.narrow(-1, probs.size(-1) - R, R), scale, B, Hkv, Gq, D);
    return out;
  }

  // The tail is full: its T - m most attended tokens become focal, the other m one group.
  // tail_probs [B, Hq, 1, R]: the newest query's attention probabilities on the tail tokens.
  void regroup(DgaCache& c, const at::Tensor& q1, const at::Tensor& tail_probs, double scale, int64_t B, int64_t Hkv,
               int64_t Gq, int64_t D) const {
    at::NoGradGuard no_grad;
    const int64_t R = c.tail.k.size(2), n_focal = R - m_;
    const at::Tensor tail_attn = tail_probs.reshape({B, Hkv, Gq, R}).sum(2);  // [B, Hkv, R]
    const auto lopt = at::TensorOptions().dtype(at::kLong).device(c.tail.k.device());
    const at::Tensor promote = at::zeros({B, Hkv, R}, lopt);
    if (n_focal > 0) promote.scatter_(-1, std::get<1>(tail_attn.topk(n_focal, -1)), 1);
    const at::Tensor arange_r = at::arange(R, lopt);
    const at::Tensor order = at::argsort(promote * R + arange_r, /*stable=*/true, -1, false);
    const at::Tensor grp = order.narrow(-1, 0, m_), foc = order.narrow(-1, m_, n_focal);
    const auto cdt = q1.scalar_type();
    const at::Tensor kg = gather_rows(c.tail.k, grp).to(cdt), vg = gather_rows(c.tail.v, grp).to(cdt);  // [B, Hkv, m, D]
    // Weights from the newest query, logits averaged over the kv head's query heads.
    const at::Tensor qh = q1.view({B, Hkv, Gq, D});
    const at::Tensor w = at::softmax(at::matmul(qh, kg.transpose(-2, -1)).mean(2) * scale, -1);  // [B, Hkv, m]
    const auto st = c.tail.k.scalar_type();
    c.agg.append((w.unsqueeze(-1) * kg).sum(2, true).to(st), (w.unsqueeze(-1) * vg).sum(2, true).to(st));
    c.focal.append(gather_rows(c.tail.k, foc), gather_rows(c.tail.v, foc));
    c.tail.clear();
  }

  std::optional<Cost> cost(const Shape&) const override { return std::nullopt; }

  double requested_density(int64_t) const override { return std::min(1.0, gamma_ + (1.0 - gamma_) / m_); }

 private:
  int64_t m_;
  double gamma_;
  int64_t samples_;
  std::string sample_;
};

}  // namespace

DgaPlan dga_plan(const Attention& impl, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, double scale) {
  const auto* dga = dynamic_cast<const Dga*>(&impl);
  if (dga == nullptr) throw std::invalid_argument("dga_plan: " + impl.spec() + " is not a dga implementation");
  at::NoGradGuard no_grad;
  auto lay = dga->build_layout(q, k, v, scale, /*kernels=*/fast::reason_not(q, k, v, {}).empty());
  return {lay.keys, lay.values, lay.lo, lay.hi, lay.k2, lay.v2, rows_per_cta(k.size(2))};
}

RegistryEntry dga_entry() {
  RegistryEntry e;
  e.family = "dga";
  e.summary = "Dynamic Group Attention: focal tokens kept, the rest aggregated in groups of m";
  e.params = {ParamDef::integer("m", 16, 1, INT64_MAX, "tokens per group"),
              ParamDef::real("gamma", 0.1, 0.0, 1.0, "share of tokens kept focal"),
              ParamDef::integer("samples", 64, 1, INT64_MAX, "sampled queries for importance"),
              ParamDef::choice("sample", "last", {"last", "strided"}, "which queries are sampled")};
  e.examples = {"dga:m=16,gamma=0.1,samples=64,sample=last", "dga:m=4,gamma=0.25,samples=8,sample=strided"};
  e.make = [](const ParsedSpec& p) {
    return std::make_unique<Dga>(p.params.integer("m"), p.params.real("gamma"), p.params.integer("samples"),
                                 p.params.text("sample"));
  };
  return e;
}

}  // namespace lcb::attn
