// The plain KV cache: every key and value so far. Used by dense, top-k and topk_block, whose
// decode needs the whole past; its growing storage (GrowingRows) also holds DGA's cache parts.
#pragma once

#include "attention_impls/attention.h"

#include <algorithm>
#include <utility>

namespace lcb::attn {

// Rows [0, n) of K and V ([B, H, n, D]) in a storage [B, H, capacity, D] that doubles when full,
// so that appending a token copies O(1) rows amortised instead of every row so far.
class GrowingRows {
 public:
  GrowingRows() = default;
  GrowingRows(at::Tensor k, at::Tensor v) : k(std::move(k)), v(std::move(v)) {}

  // Views of the storage rows [n, n + add), the storage grown to hold them; k and v take them in
  // at commit(add), once they are written.
  std::pair<at::Tensor, at::Tensor> next_rows(int64_t add) {
    const int64_t n = k.size(2);
    if (!k_store_.defined() || n + add > k_store_.size(2)) {
      const int64_t cap = std::max<int64_t>(2 * (n + add), 64);
      at::Tensor ks = at::empty({k.size(0), k.size(1), cap, k.size(3)}, k.options());
      at::Tensor vs = at::empty({v.size(0), v.size(1), cap, v.size(3)}, v.options());
      ks.narrow(2, 0, n).copy_(k);
      vs.narrow(2, 0, n).copy_(v);
      k_store_ = ks;
      v_store_ = vs;
      k = k_store_.narrow(2, 0, n);
      v = v_store_.narrow(2, 0, n);
    }
    return {k_store_.narrow(2, n, add), v_store_.narrow(2, n, add)};
  }
  void commit(int64_t add) {
    const int64_t n = k.size(2) + add;
    k = k_store_.narrow(2, 0, n);
    v = v_store_.narrow(2, 0, n);
  }
  // Appends k1 / v1 [B, H, add, D] in place.
  void append(const at::Tensor& k1, const at::Tensor& v1) {
    const auto [kd, vd] = next_rows(k1.size(2));
    kd.copy_(k1);
    vd.copy_(v1);
    commit(k1.size(2));
  }
  // Drops every row; the storage is kept for the next ones.
  void clear() {
    k = k.narrow(2, 0, 0);
    v = v.narrow(2, 0, 0);
  }

  at::Tensor k, v;  // [B, H, n, D], views of the storage once a row was appended
  // The contiguous storage [B, H, capacity, D] behind k/v (defined after the first append).
  const at::Tensor& k_storage() const { return k_store_; }
  const at::Tensor& v_storage() const { return v_store_; }

 private:
  at::Tensor k_store_, v_store_;
};

class FullCache : public Cache, public GrowingRows {
 public:
  FullCache(at::Tensor k, at::Tensor v) : GrowingRows(std::move(k), std::move(v)) {}
  int64_t length() const override { return k.size(2); }
  // Bytes of the keys and values held (the allocation may reserve up to twice as many rows).
  int64_t bytes() const override { return 2 * k.numel() * static_cast<int64_t>(k.element_size()); }
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
