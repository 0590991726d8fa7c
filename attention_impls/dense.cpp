// dense: full causal softmax attention, the baseline every implementation is compared to.
// Fast path: at::scaled_dot_product_attention (cuDNN / flash on CUDA); reference: masked math.
#include "attention_impls/full_cache.h"
#include "attention_impls/reference.h"
#include "attention_impls/registry.h"

namespace lcb::attn {

void check_decode_step(const at::Tensor& q1, const at::Tensor& k1, const at::Tensor& v1, const char* who) {
  check_qkv(q1, k1, v1, who);
  if (q1.size(2) != 1 || k1.size(2) != 1) {
    throw std::invalid_argument(std::string(who) + ": decode takes one token (q, k, v with length 1), got q length " +
                                std::to_string(q1.size(2)) + " and kv length " + std::to_string(k1.size(2)));
  }
}

at::Tensor decode_with_full_cache(const Attention& impl, const at::Tensor& q1, const at::Tensor& k1,
                                  const at::Tensor& v1, Cache& cache, const Options& opts) {
  const std::string who = impl.family();
  check_decode_step(q1, k1, v1, who.c_str());
  auto& c = cache_as<FullCache>(cache, who.c_str());
  c.append(k1, v1);
  return impl.forward(q1, c.k, c.v, opts, nullptr).out;
}

namespace {

// Name of the SDPA backend ATen will choose for these inputs.
std::string sdpa_backend(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, bool causal, double scale) {
  const int64_t choice = at::_fused_sdp_choice(q, k, v, {}, 0.0, causal, scale, /*enable_gqa=*/true);
  switch (choice) {
    case 0: return "sdpa-math";
    case 1: return "sdpa-flash";
    case 2: return "sdpa-efficient";
    case 3: return "sdpa-cudnn";
    default: return "sdpa-" + std::to_string(choice);
  }
}

class Dense final : public Attention {
 public:
  std::string family() const override { return "dense"; }
  std::string spec() const override { return "dense"; }

  Output forward(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const Options& opts,
                 std::unique_ptr<Cache>* cache) const override {
    check_qkv(q, k, v, "dense");
    const Shape s = Shape::of(q, k);
    const double scale = ref::softmax_scale(opts, s.head_dim);
    Output o;
    // SDPA's is_causal is top-left aligned; ours is bottom-right, which agrees when Lq == Lk and
    // needs no mask when Lq == 1.
    if (!opts.reference && (s.q_len == s.kv_len || s.q_len == 1)) {
      const bool causal = s.q_len > 1;
      o.backend = sdpa_backend(q, k, v, causal, scale);
      o.out = at::scaled_dot_product_attention(q, k, v, {}, 0.0, causal, scale, /*enable_gqa=*/true);
    } else {
      o.backend = "reference";
      const int64_t lq = s.q_len, lk = s.kv_len;
      const at::Device dev = q.device();
      o.out = ref::masked_attention(q, k, v, scale, opts.chunk_rows, [&](int64_t r0, int64_t rows, const at::Tensor&) {
        return ref::causal_mask(lq, lk, r0, rows, dev);
      });
    }
    o.cost = *cost(s);
    if (opts.want_recall) o.mass_recall = 1.0;  // dense keeps every causal key
    if (cache) *cache = std::make_unique<FullCache>(k, v);
    return o;
  }

  at::Tensor decode(const at::Tensor& q1, const at::Tensor& k1, const at::Tensor& v1, Cache& cache,
                    const Options& opts) const override {
    return decode_with_full_cache(*this, q1, k1, v1, cache, opts);
  }

  std::optional<Cost> cost(const Shape& s) const override {
    Cost c;
    c.kept_pairs = s.batch * s.q_heads * ref::causal_pairs_per_head(s.q_len, s.kv_len);
    ref::finish_cost(c, s, s.batch * s.kv_heads * s.kv_len);
    return c;
  }

  double requested_density(int64_t) const override { return 1.0; }
};

}  // namespace

RegistryEntry dense_entry() {
  RegistryEntry e;
  e.family = "dense";
  e.summary = "full causal softmax attention (SDPA fast path; the baseline)";
  e.examples = {"dense"};
  e.make = [](const ParsedSpec&) { return std::make_unique<Dense>(); };
  return e;
}

}  // namespace lcb::attn
