// The specs every parametrised suite runs: each registry family with its defaults and examples.
#pragma once

#include "attention_impls/registry.h"

#include <gtest/gtest.h>

#include <cctype>
#include <string>
#include <vector>

namespace lcb::test {

inline std::vector<std::string> all_example_specs() {
  std::vector<std::string> specs;
  for (const auto& e : attn::registry()) {
    specs.push_back(e.family);  // defaults
    for (const auto& s : e.examples) specs.push_back(s);
  }
  return specs;
}

inline std::string spec_test_name(const ::testing::TestParamInfo<std::string>& info) {
  std::string n;
  for (char c : info.param) n += std::isalnum(static_cast<unsigned char>(c)) ? c : '_';
  return n + "_" + std::to_string(info.index);
}

}  // namespace lcb::test
