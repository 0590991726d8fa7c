// The attention registry: every implementation family, its parameters and a factory.
// `lcb list impls`, the spec parser and the parametrised test suite all read this one table, so
// registering a family puts it under test and on the command line.
#pragma once

#include "attention_impls/attention.h"
#include "attention_impls/spec.h"

#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace lcb::attn {

struct RegistryEntry {
  std::string family;
  std::string summary;
  std::vector<ParamDef> params;
  std::vector<std::string> examples;  // specs shown by `lcb list impls` and run by the parametrised tests
  std::function<std::unique_ptr<Attention>(const ParsedSpec&)> make;
};

const std::vector<RegistryEntry>& registry();

// Parses and validates a spec such as "swa:window=4096,sink=4". Throws std::invalid_argument
// naming the bad part and what is accepted (an unknown family lists the known ones).
std::unique_ptr<Attention> make_attention(const std::string& spec);

// Canonical form of a spec (every parameter, declaration order); throws like make_attention.
std::string canonical_spec(const std::string& spec);

// Entries of each family, defined beside its implementation.
RegistryEntry dense_entry();
RegistryEntry sliding_window_entry();
RegistryEntry topk_entry();
RegistryEntry topk_block_entry();
RegistryEntry dga_entry();

}  // namespace lcb::attn
