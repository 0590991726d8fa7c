// Greedy generation with a Llama model and its per-layer attention caches, timed: time to first
// token (prefill plus the first token's logits) and each later token's latency.
#pragma once

#include "harness/llama.h"

#include <string>
#include <vector>

namespace lcb::model {

struct Generation {
  std::vector<int64_t> ids;  // generated tokens, the stop token excluded
  std::string stop;          // "stop_token" or "max_new_tokens"
  double ttft_ms = 0;
  std::vector<double> itl_ms;  // one per token after the first
  int64_t kv_cache_bytes = 0;  // after the prefill
};

Generation greedy_generate(Llama& model, const std::vector<int64_t>& prompt, int64_t max_new_tokens,
                           const std::vector<int64_t>& stop_ids, at::Device device, int64_t prefill_chunk = 4096);

// A batch of prompts with their own lengths, generated one sequence after the other (each keeps its
// own caches, so no padding or masking enters the attention implementations).
std::vector<Generation> greedy_generate_batch(Llama& model, const std::vector<std::vector<int64_t>>& prompts,
                                              int64_t max_new_tokens, const std::vector<int64_t>& stop_ids,
                                              at::Device device);

}  // namespace lcb::model
