#include "attention_impls/registry.h"

#include <stdexcept>

namespace lcb::attn {

const std::vector<RegistryEntry>& registry() {
  static const std::vector<RegistryEntry> entries = {dense_entry(), sliding_window_entry(), topk_entry(),
                                                     topk_block_entry(), dga_entry()};
  return entries;
}

static const RegistryEntry& find_entry(const std::string& spec) {
  const std::string family = split_spec(spec).first;
  for (const auto& e : registry()) {
    if (e.family == family) return e;
  }
  std::string known;
  for (const auto& e : registry()) known += (known.empty() ? "" : ", ") + e.family;
  throw std::invalid_argument("unknown attention implementation '" + family + "' in spec '" + spec +
                              "'; known implementations: " + known);
}

std::unique_ptr<Attention> make_attention(const std::string& spec) {
  const RegistryEntry& e = find_entry(spec);
  return e.make(parse_params(spec, "attention implementation '" + e.family + "'", e.params));
}

std::string canonical_spec(const std::string& spec) {
  const RegistryEntry& e = find_entry(spec);
  return parse_params(spec, "attention implementation '" + e.family + "'", e.params).canonical;
}

}  // namespace lcb::attn
