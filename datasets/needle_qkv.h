// Synthetic attention-level haystacks: random q/k/v with planted needles. A needle is a key whose
// direction the final queries share (so those queries attend to it with a chosen logit), with a
// value the queries must retrieve. No model or tokenizer is involved.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <vector>

namespace lcb::datasets {

struct NeedleQkvParams {
  int64_t batch = 1, q_heads = 8, kv_heads = 2, head_dim = 64;
  int64_t length = 1024;
  double depth = 0.5;      // position of the first needle as a share of the haystack before the queries
  int64_t needles = 1;     // further needles sit at depth + n/needles (mod 1)
  int64_t queries = 16;    // final query rows that look for a needle (row r looks for needle r % needles)
  int64_t candidates = 16; // the needle's value plus candidates - 1 fresh decoy values
  double strength = 12.0;  // the needle's logit for its queries (other logits ~ N(0, ~1.8))
  uint64_t seed = 0;
};

struct NeedleQkv {
  at::Tensor q, k, v;                    // float64 on the CPU: [B, Hq, L, D], [B, Hkv, L, D]
  std::vector<int64_t> needle_positions; // one per needle, ascending by needle index
  at::Tensor candidates;                 // [B, Hkv, needles, candidates, D]; index 0 is the needle's value
};

// Deterministic in the parameters (CPU generator seeded with `seed`). Throws std::invalid_argument
// when the haystack is too short for the queries and needles.
NeedleQkv make_needle_qkv(const NeedleQkvParams& p);

}  // namespace lcb::datasets
