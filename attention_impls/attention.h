// The attention interface every implementation in lcb provides (DESIGN.md §3).
//
// Shapes: q [B, Hq, Lq, D], k/v [B, Hkv, Lk, D], Hq % Hkv == 0 (GQA). Attention is causal and
// bottom-right aligned: query i sits at absolute position Lk - Lq + i, so Lq == Lk is a prefill
// and Lq == 1 is one decode step against everything before it.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

namespace lcb::attn {

struct Shape {
  int64_t batch = 1;
  int64_t q_heads = 1;
  int64_t kv_heads = 1;
  int64_t q_len = 1;
  int64_t kv_len = 1;
  int64_t head_dim = 64;
  int64_t elem_size = 2;  // bytes per element of q/k/v (for the bytes count)

  static Shape of(const at::Tensor& q, const at::Tensor& k);
  std::string str() const;
};

// Answer of supports(): ok, or the reason the implementation cannot run this case.
struct Support {
  bool ok = true;
  std::string reason;
  static Support yes() { return {true, {}}; }
  static Support no(std::string why) { return {false, std::move(why)}; }
};

// Work of one forward, counted exactly from the visibility pattern it used.
// Pairs are (batch, query head, query, key) tuples; FLOPs are 4·D per visible pair
// (QK^T and PV, multiply-add = 2), selection overhead (scoring, aggregation) kept apart.
struct Cost {
  int64_t kept_pairs = 0;    // pairs the attention step computes (aggregates count as keys)
  int64_t causal_pairs = 0;  // pairs causal dense computes for the same shape
  double attention_flops = 0;
  double selection_flops = 0;
  double bytes = 0;  // q, k, v (or their compressed form) read once, output written once

  double achieved_density() const {
    return causal_pairs > 0 ? static_cast<double>(kept_pairs) / static_cast<double>(causal_pairs) : 0.0;
  }
};

struct Options {
  std::optional<double> scale;  // softmax scale; 1/sqrt(D) when unset
  bool reference = false;       // force the plain-LibTorch reference even where a fast path exists
  bool want_recall = false;     // also compute attention mass recall against dense
  int64_t chunk_rows = 256;     // query rows per chunk in the reference paths (bounds memory, stays in cache)
};

struct Output {
  at::Tensor out;  // [B, Hq, Lq, D], dtype of q
  Cost cost;
  // Mean over (batch, query head, query) of the dense attention probability that falls on keys
  // this implementation attends to individually (grouped tokens in DGA do not count as kept).
  std::optional<double> mass_recall;
  std::string backend;  // what actually ran, e.g. "sdpa" or "reference"
};

// An implementation's own KV-cache form, built by a prefill and extended by decode().
class Cache {
 public:
  virtual ~Cache() = default;
  virtual int64_t length() const = 0;  // tokens seen so far (prefill + decoded)
  virtual int64_t bytes() const = 0;   // device bytes the cache holds
};

class Attention {
 public:
  virtual ~Attention() = default;

  virtual std::string family() const = 0;  // registry name, e.g. "dga"
  virtual std::string spec() const = 0;    // canonical spec with every parameter, e.g. "dga:m=16,..."

  // Whether forward()/decode() can run this case; the reason names what is not accepted.
  virtual Support supports(const Shape& shape, at::ScalarType dtype, at::Device device) const;

  // Causal attention of q over k/v. With cache != nullptr (and Lq == Lk) the implementation also
  // builds its decode cache from this prefill.
  virtual Output forward(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const Options& opts,
                         std::unique_ptr<Cache>* cache = nullptr) const = 0;

  // One new token: q1 [B, Hq, 1, D], k1/v1 [B, Hkv, 1, D]. Appends k1/v1 to the cache, then
  // attends (the new key is visible to its own query). Returns [B, Hq, 1, D].
  virtual at::Tensor decode(const at::Tensor& q1, const at::Tensor& k1, const at::Tensor& v1, Cache& cache,
                            const Options& opts) const = 0;

  // Exact cost for a shape when the visibility pattern does not depend on the data; nullopt when
  // it does (DGA: which tokens become focal), in which case forward() reports the exact count.
  virtual std::optional<Cost> cost(const Shape& shape) const = 0;

  // Nominal share of keys per query the parameters ask for at context length L (clipped to 1);
  // the achieved density (kept / causal pairs) is reported next to it.
  virtual double requested_density(int64_t context_len) const = 0;
};

// Validates q/k/v against the interface contract; throws std::invalid_argument naming the tensor,
// the dimension, the expected and the actual value.
void check_qkv(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const char* who);

// Checks shared by every implementation (dtype, GQA ratio, non-empty); implementations add theirs.
Support common_support(const Shape& shape, at::ScalarType dtype, at::Device device);

}  // namespace lcb::attn
