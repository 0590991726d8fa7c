// The plain KV cache: every key and value so far. Used by dense, top-k and topk_block, whose
// decode needs the whole past.
#pragma once

#include "attention_impls/attention.h"

namespace lcb::attn {

class FullCache : public Cache {
 public:
  FullCache(at::Tensor k, at::Tensor v) : k(std::move(k)), v(std::move(v)) {}
  int64_t length() const override { return k.size(2); }
  int64_t bytes() const override { return 2 * k.numel() * static_cast<int64_t>(k.element_size()); }
  void append(const at::Tensor& k1, const at::Tensor& v1) {
    k = at::cat({k, k1}, 2);
    v = at::cat({v, v1}, 2);
  }

  at::Tensor k, v;  // [B, Hkv, L, D]
};

// Checks a decode step's inputs: q1 [B, Hq, 1, D], k1/v1 [B, Hkv, 1, D].
void check_decode_step(const at::Tensor& q1, const at::Tensor& k1, const at::Tensor& v1, const char* who);

// Decode for implementations whose cache is every key: append, then attend as a forward with
// one query at the last position.
at::Tensor decode_with_full_cache(const Attention& impl, const at::Tensor& q1, const at::Tensor& k1,
                                  const at::Tensor& v1, Cache& cache, const Options& opts);

template <typename C>
C& cache_as(Cache& cache, const char* who) {
  auto* c = dynamic_cast<C*>(&cache);
  if (c == nullptr) throw std::invalid_argument(std::string(who) + ": decode got a cache built by another implementation");
  return *c;
}

}  // namespace lcb::attn
