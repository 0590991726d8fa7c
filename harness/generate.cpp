#include "harness/generate.h"

#include "harness/measure.h"

#include <ATen/core/grad_mode.h>

#include <algorithm>

namespace lcb::model {

Generation greedy_generate(Llama& model, const std::vector<int64_t>& prompt, int64_t max_new_tokens,
                           const std::vector<int64_t>& stop_ids, at::Device device, int64_t prefill_chunk) {
  at::NoGradGuard no_grad;
  Generation g;
  DecodeState state;
  const at::Tensor tokens = at::tensor(prompt, at::TensorOptions().dtype(at::kLong)).unsqueeze(0).to(device);
  int64_t next = 0;
  g.ttft_ms = harness::time_on(device, 0, 1, [&] {
                const at::Tensor logits = model->prefill(tokens, state, prefill_chunk);
                next = logits.argmax(-1).item<int64_t>();
              }).ms.front();
  g.kv_cache_bytes = state.cache_bytes();
  auto is_stop = [&](int64_t id) { return std::find(stop_ids.begin(), stop_ids.end(), id) != stop_ids.end(); };
  g.stop = "max_new_tokens";
  for (int64_t n = 0; n < max_new_tokens; ++n) {
    if (is_stop(next)) {
      g.stop = "stop_token";
      break;
    }
    g.ids.push_back(next);
    if (n + 1 == max_new_tokens) break;
    const at::Tensor tok = at::full({1, 1}, next, at::TensorOptions().dtype(at::kLong).device(device));
    g.itl_ms.push_back(harness::time_on(device, 0, 1, [&] { next = model->step(tok, state).argmax(-1).item<int64_t>(); }).ms.front());
  }
  return g;
}

std::vector<Generation> greedy_generate_batch(Llama& model, const std::vector<std::vector<int64_t>>& prompts,
                                              int64_t max_new_tokens, const std::vector<int64_t>& stop_ids,
                                              at::Device device) {
  std::vector<Generation> out;
  for (const auto& p : prompts) out.push_back(greedy_generate(model, p, max_new_tokens, stop_ids, device));
  return out;
}

}  // namespace lcb::model
